//! Failpoints for crash tests: named places where a worker can be told to stop, so that a
//! test kills it at exactly the moment that matters (after an effect, before its report).
//!
//! `BATON_FAILPOINTS` lists the armed names, comma-separated. An armed failpoint logs
//! `failpoint reached` with its name and then never returns (the test kills the process),
//! or, for [`sleep_if`], only slows its place down.
//! Nothing is armed unless the variable is set.

use std::sync::OnceLock;

use tracing::warn;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("BATON_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Hangs forever if the failpoint `name` is armed; returns at once otherwise.
pub async fn hang_if(name: &str) {
    if armed().iter().any(|a| a == name) {
        warn!(failpoint = name, "failpoint reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// Waits `delay` if the failpoint `name` is armed; returns at once otherwise.
pub async fn sleep_if(name: &str, delay: std::time::Duration) {
    if armed().iter().any(|a| a == name) {
        tokio::time::sleep(delay).await;
    }
}
