//! The planner's lease: one key in the `<P>_LEADER` key-value bucket, whose entries the
//! server drops `ttl` after they were written. The planner that creates the key holds the
//! lease and rewrites it, expecting its own last revision, well within `ttl`; when it stops
//! (killed, paused, cut off), the server drops the key on its own clock and the next planner
//! to create it holds the lease. A holder whose rewrite finds another revision has lost it.
//! The revision a holder took the lease at is its epoch.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::{Bus, BusError, BusErrorKind};

/// The key the lease is held under.
const LEASE_KEY: &str = "planner";

/// A lease held: rewrite it with [`Lease::renew`] within its ttl.
#[derive(Debug)]
pub struct Lease {
    store: kv::Store,
    holder: String,
    /// The revision the lease was taken at.
    pub epoch: u64,
    revision: u64,
}

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another planner holds the lease now.
    #[error("another planner holds the lease")]
    Lost,
    /// The bus did not answer: the lease may still be this planner's, until its ttl.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl Bus {
    /// Returns the lease bucket, made with `ttl` if missing (or configured otherwise).
    async fn lease_bucket(&self, ttl: Duration) -> Result<kv::Store, BusError> {
        let bucket = self.stream_name("LEADER");
        let config = kv::Config {
            bucket: bucket.clone(),
            description: "the active planner's lease".to_owned(),
            history: 1,
            max_age: ttl,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        if let Ok(store) = self.js.get_key_value(&bucket).await
            && store.status().await.is_ok_and(|s| s.max_age() == ttl)
        {
            return Ok(store);
        }
        self.js
            .create_or_update_key_value(config)
            .await
            .map_err(|e| BusError::with_source(BusErrorKind::Other, format!("bucket {bucket}"), e))
    }

    /// Takes the lease for `holder` if no planner holds it, or if the planner holding it is
    /// `planner` itself (an earlier process on the same data directory, which the caller knows
    /// gone); `None` when another planner holds it. `holder` begins with `planner` and a space.
    pub async fn try_lease(
        &self,
        holder: &str,
        planner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BusError> {
        let store = self.lease_bucket(ttl).await?;
        let value = Bytes::copy_from_slice(holder.as_bytes());
        let failed = |e: &dyn std::fmt::Display| {
            BusError::new(
                BusErrorKind::TimedOut,
                format!("taking the planner lease: {e}"),
            )
        };
        let revision = match store.create(LEASE_KEY, value.clone()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let Some(entry) = store.entry(LEASE_KEY).await.map_err(|e| failed(&e))? else {
                    return Ok(None);
                };
                let mine = std::str::from_utf8(&entry.value)
                    .is_ok_and(|v| v.split(' ').next() == Some(planner));
                if !mine || entry.operation != kv::Operation::Put {
                    return Ok(None);
                }
                match store.update(LEASE_KEY, value, entry.revision).await {
                    Ok(revision) => revision,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        return Ok(None);
                    }
                    Err(e) => return Err(failed(&e)),
                }
            }
            Err(e) => return Err(failed(&e)),
        };
        Ok(Some(Lease {
            store,
            holder: holder.to_owned(),
            epoch: revision,
            revision,
        }))
    }

    /// Returns who holds the lease, if anyone.
    pub async fn lease_holder(&self, ttl: Duration) -> Result<Option<String>, BusError> {
        let store = self.lease_bucket(ttl).await?;
        store
            .get(LEASE_KEY)
            .await
            .map(|value| value.map(|v| String::from_utf8_lossy(&v).into_owned()))
            .map_err(|e| BusError::with_source(BusErrorKind::TimedOut, "reading the lease", e))
    }
}

impl Lease {
    /// Rewrites the lease, expecting it unchanged since this holder's last write.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let value = Bytes::copy_from_slice(self.holder.as_bytes());
        match self.store.update(LEASE_KEY, value, self.revision).await {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(LeaseError::Lost),
            Err(e) => {
                Err(BusError::with_source(BusErrorKind::TimedOut, "renewing the lease", e).into())
            }
        }
    }

    /// Gives the lease up at once (a planner that stops cleanly): the next planner need not
    /// wait for its ttl.
    pub async fn release(self) {
        self.store
            .delete_expect_revision(LEASE_KEY, Some(self.revision))
            .await
            .ok();
    }
}
