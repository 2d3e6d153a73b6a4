//! The workspace's layout holds: the decision core does no I/O, so none of the crates that do
//! (runtimes, stores, HTTP, Kubernetes and NATS clients, the AWS SDK) is among its normal
//! dependencies.

use std::process::Command;

#[test]
fn the_core_depends_on_no_io_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "baton-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"baton-schemas"), "{tree}");
    let io = |name: &str| {
        [
            "tokio",
            "redb",
            "axum",
            "kube",
            "async-nats",
            "reqwest",
            "hyper",
            "mio",
        ]
        .contains(&name)
            || name.starts_with("aws-")
    };
    let found: Vec<&str> = crates.iter().copied().filter(|n| io(n)).collect();
    assert!(found.is_empty(), "baton-core depends on {found:?}");
}
