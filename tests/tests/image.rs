//! The container image's root filesystem, assembled offline by `deploy/image/rootfs.sh` (the
//! Containerfile's last stage is the same directory), run under chroot the way a container
//! runtime would run the image: as the non-root user 65532, with the root filesystem mounted
//! read-only, a tmpfs on /tmp and a writable volume on /data. These machines run no container
//! engine, so chroot in a mount namespace of its own stands in for one.
//!
//! Needs root (chroot, mounts), as the test suite's set-up does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use baton_schemas::status::{RunStatus, State};
use baton_tests::{Proc, free_port, nats_server_program, wait_for_port};

const BATON: &str = env!("CARGO_BIN_EXE_baton-under-test");
const USER: &str = "65532:65532";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Assembles the root filesystem into `root` with the test build of Baton, the suite's
/// nats-server and, when the suite has it, Helm.
fn assemble(root: &Path) {
    let mut command = Command::new("bash");
    command
        .arg(repository().join("deploy/image/rootfs.sh"))
        .arg("--out")
        .arg(root)
        .arg("--baton")
        .arg(BATON)
        .arg("--nats-server")
        .arg(nats_server_program());
    if let Some(helm) = std::env::var_os("BATON_TEST_TOOLS_BIN")
        .map(|dir| PathBuf::from(dir).join("helm"))
        .filter(|helm| helm.is_file())
    {
        command.arg("--helm").arg(helm);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "rootfs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` inside `root` as the image's user, in a mount namespace where `root` is
/// read-only, /tmp a tmpfs, /data the host directory `data`, /dev the host's and /proc new.
/// The environment is only what the Containerfile sets (its `ENV`).
fn in_image(root: &Path, data: &Path, args: &[&str]) -> Command {
    let script = r#"set -e
R="$1"; D="$2"; shift 2
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mount --bind "$D" "$R/data"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
exec env -i HOME=/data XDG_RUNTIME_DIR=/tmp BATON_DATA_DIR=/data PATH=/usr/local/bin BATON_LOG=info \
  /usr/sbin/chroot --userspec="$USERSPEC" "$R" /usr/local/bin/baton "$@""#;
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "image",
        ])
        .arg(root)
        .arg(data)
        .args(args)
        .env("USERSPEC", USER);
    command
}

#[test]
fn the_image_runs_baton_up_as_a_non_root_user_on_a_read_only_root() {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    assert!(
        String::from_utf8_lossy(&uid).trim() == "0",
        "this test runs the image under chroot and needs root, as the suite's set-up does"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    assemble(&root);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("baton:x:65532:65532:"),
        "the non-root user: {passwd}"
    );
    assert!(root.join("etc/ssl/certs/ca-certificates.crt").is_file());

    // The volume, owned by the image's user as a pod's fsGroup would make it.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65532), Some(65532)).unwrap();

    let version = in_image(&root, &data, &["--version"]).output().unwrap();
    assert!(
        version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("baton "),
        "baton --version in the image: {version:?}"
    );
    if root.join("usr/local/bin/helm").is_file() {
        let helm = Command::new("/usr/sbin/chroot")
            .args(["--userspec", USER])
            .arg(&root)
            .args(["/usr/local/bin/helm", "version", "--short"])
            .env_clear()
            .env("HOME", "/tmp")
            .output()
            .unwrap();
        assert!(helm.status.success(), "helm in the image: {helm:?}");
    }

    // No shell in the image: the workflow uses kinds that need none.
    std::fs::write(
        data.join("hello.yaml"),
        "apiVersion: baton.dev/v1alpha1\nkind: Workflow\nmetadata: {name: hello}\nspec:\n  nodes:\n    - {name: a, kind: noop}\n    - {name: b, kind: noop, needs: [a]}\n    - {name: c, kind: noop, needs: [a]}\n    - {name: d, kind: noop, needs: [b, c]}\n",
    )
    .unwrap();
    let (nats_port, api_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{api_port}");
    let nats_port_text = nats_port.to_string();
    let up_args = [
        "up",
        "--nats-server",
        "/usr/local/bin/nats-server",
        "--nats-port",
        &nats_port_text,
        "--listen",
        &listen,
        "--apply",
        "/data/hello.yaml",
    ];
    let mut up = Proc::spawn(
        "up-in-image",
        in_image(&root, &data, &up_args),
        dir.path().join("up.log"),
    )
    .unwrap();
    wait_for_port(api_port, Duration::from_secs(60)).unwrap();

    // The CLI outside reads the API token up made in the volume.
    let server = format!("http://127.0.0.1:{api_port}");
    let started = Instant::now();
    let mut runs: Vec<RunStatus> = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        let out = Command::new(BATON)
            .env_remove("BATON_TOKEN")
            .env("BATON_TOKEN_FILE", data.join("api-token"))
            .args(["runs", "-o", "json", "--server", &server])
            .output()
            .unwrap();
        runs = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if runs.iter().any(|r| r.state.is_terminal()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        runs.iter().map(|r| r.state).collect::<Vec<_>>(),
        [State::Succeeded],
        "{runs:?}\n{}",
        up.log()
    );
    up.terminate();
    let status = up.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status:?}\n{}", up.log());

    // Everything it wrote is in the volume; the root filesystem is as assembled.
    assert!(data.join("planner.redb").is_file(), "{}", up.log());
    assert!(data.join("nats").is_dir(), "{}", up.log());
    assert_eq!(
        std::fs::read_dir(root.join("data")).unwrap().count(),
        0,
        "nothing written under the image's own /data"
    );
}
