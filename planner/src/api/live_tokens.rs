//! The API's tokens as they are now: a token file is read again within seconds of a change,
//! so a token is granted or revoked without restarting the planner. A file changed into one
//! that does not read (half written, a bad line) is logged and the tokens before it kept.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::auth::{Caller, TokenFileError, Tokens};

/// How often the token file's stamp is looked at.
const RELOAD_PERIOD: Duration = Duration::from_secs(2);

/// When the token file last changed, and its size.
type Stamp = (SystemTime, u64);

/// The tokens the API takes, read again from their file when it changes.
#[derive(Debug)]
pub struct LiveTokens {
    current: RwLock<Arc<Tokens>>,
    file: Option<PathBuf>,
    stamp: Option<Stamp>,
}

impl LiveTokens {
    /// Returns tokens given once (`baton up`'s own), never read again.
    pub fn fixed(tokens: Tokens) -> Self {
        Self {
            current: RwLock::new(Arc::new(tokens)),
            file: None,
            stamp: None,
        }
    }

    /// Reads a token file, to be read again when it changes ([`LiveTokens::watch`]).
    pub fn read(file: PathBuf) -> Result<Self, TokenFileError> {
        // Taken before the read: a change made while reading is seen by the first reload.
        let stamp = stamp_of(&file);
        let tokens = Tokens::read(&file)?;
        Ok(Self {
            current: RwLock::new(Arc::new(tokens)),
            file: Some(file),
            stamp,
        })
    }

    /// Returns the caller a token belongs to now.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.current
            .read()
            .expect("not poisoned")
            .caller(token)
            .cloned()
    }

    /// Reads the file again whenever it changes, until `shutdown` (at once for fixed tokens).
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let mut seen = self.stamp;
        let mut tick = tokio::time::interval(RELOAD_PERIOD);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let stamp = stamp_of(&file);
            if stamp == seen {
                continue;
            }
            seen = stamp;
            match Tokens::read(&file) {
                Ok(tokens) => {
                    *self.current.write().expect("not poisoned") = Arc::new(tokens);
                    info!(file = %file.display(), "API tokens read again");
                }
                // The error names the file and line, never a token.
                Err(e) => {
                    warn!(error = %e, "API tokens not read again; the previous ones are kept")
                }
            }
        }
    }
}

fn stamp_of(file: &std::path::Path) -> Option<Stamp> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
