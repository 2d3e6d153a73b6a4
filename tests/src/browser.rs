//! The dashboard's browser tests: a script under `tests/browser/` run by node, driving
//! Debian's Chromium headless through playwright-core (`scripts/tools.sh --test` installs
//! both). A script prints what it saw as its last line, one JSON object.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the browser tests' screenshots go: `target/dashboard/`.
pub fn output_dir() -> PathBuf {
    root().join("target/dashboard")
}

/// Runs `tests/browser/<script>` with `vars` set, beside `PLAYWRIGHT_HOME`, `OUT` (the
/// output directory) and `CHROMIUM` (`$BATON_CHROMIUM`, else `/usr/bin/chromium`), and
/// returns the JSON line it printed last. Panics with the script's output if there is none.
pub fn run(script: &str, vars: &[(&str, String)]) -> Value {
    let playwright = root().join(".tools/node");
    assert!(
        playwright.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/tools.sh --test"
    );
    std::fs::create_dir_all(output_dir()).expect("making the output directory");
    let result = Command::new("node")
        .arg(root().join("tests/browser").join(script))
        .env("PLAYWRIGHT_HOME", &playwright)
        .env("OUT", output_dir())
        .env(
            "CHROMIUM",
            std::env::var("BATON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
        )
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&result.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|_| {
        panic!(
            "the browser script printed no result: {stdout}{}",
            String::from_utf8_lossy(&result.stderr)
        )
    })
}
