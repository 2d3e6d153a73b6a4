//! Job signatures: a worker runs a job only when the planner sent it. The planner signs each
//! job with HMAC-SHA256 under a key it shares with the workers; a worker holding the key sets
//! aside any job whose signature is missing or does not match, so a client that may publish on
//! `<p>.jobs.<kind>` (or alter a stored job) still cannot make a worker run anything.
//!
//! The signature covers the subject, the `Nats-Msg-Id` and the body: the body is all a worker
//! acts on (run, node, attempt, kind and spec are in it), the subject says which workers take
//! it, and the id is what deduplicates it.

use std::path::Path;

use ring::hmac;

use crate::credentials::read_secret;
use crate::{BusError, BusErrorKind};

/// The header that carries a job's signature: `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "Baton-Signature";

/// The shortest key accepted: 32 bytes, as long as the hash, so that guessing the key is no
/// easier than forging the hash.
pub const MIN_KEY_BYTES: usize = 32;

/// A job signing key (`Debug` prints no key material).
#[derive(Clone)]
pub struct JobSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for JobSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobSigner(HMAC-SHA256)")
    }
}

/// Why a job's signature was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The job has no signature header.
    #[error(
        "the job is not signed (a job this worker runs must come from a planner started with the same --job-signing-key-file)"
    )]
    Missing,
    /// The header is there but is not a `v1=` signature of this job under this key.
    #[error("the job's signature does not match it: forged, altered, or signed with another key")]
    Mismatch,
}

impl JobSigner {
    /// Makes a signer from key material (at least [`MIN_KEY_BYTES`]).
    pub fn new(key: &[u8]) -> Result<Self, BusError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(BusError::new(
                BusErrorKind::Config,
                format!(
                    "a job signing key needs at least {MIN_KEY_BYTES} bytes, this one has {}",
                    key.len()
                ),
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// Reads the key from a file (its final line break dropped); errors name the file only.
    pub fn read(file: &Path) -> Result<Self, BusError> {
        let key = read_secret(file)?;
        Self::new(key.as_bytes())
            .map_err(|e| BusError::new(BusErrorKind::Config, format!("{}: {e}", file.display())))
    }

    /// Returns the signature header's value for a job.
    pub fn sign(&self, subject: &str, msg_id: &str, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, &signed_bytes(subject, msg_id, body));
        format!("v1={}", hex(tag.as_ref()))
    }

    /// Checks a job's signature header (`None` when it has none), in constant time.
    pub fn verify(
        &self,
        subject: &str,
        msg_id: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(), SignatureError> {
        let signature = signature.ok_or(SignatureError::Missing)?;
        let tag = signature
            .strip_prefix("v1=")
            .and_then(unhex)
            .ok_or(SignatureError::Mismatch)?;
        hmac::verify(&self.key, &signed_bytes(subject, msg_id, body), &tag)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The bytes signed: each part length-prefixed, so that no two (subject, id, body) triples
/// sign the same bytes however their parts are cut.
fn signed_bytes(subject: &str, msg_id: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(24 + subject.len() + msg_id.len() + body.len());
    for part in [subject.as_bytes(), msg_id.as_bytes(), body] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    bytes
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> JobSigner {
        JobSigner::new(key.as_bytes()).unwrap()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_job_verifies_and_any_change_does_not() {
        let s = signer(KEY);
        let sig = s.sign("baton.jobs.exec", "r1.a.1", br#"{"cmd":"true"}"#);
        assert_eq!(
            s.verify(
                "baton.jobs.exec",
                "r1.a.1",
                br#"{"cmd":"true"}"#,
                Some(&sig)
            ),
            Ok(())
        );
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(
            s.verify("baton.jobs.exec", "r1.a.1", br#"{"cmd":"rm"}"#, Some(&sig)),
            mismatch
        );
        assert_eq!(
            s.verify(
                "baton.jobs.noop",
                "r1.a.1",
                br#"{"cmd":"true"}"#,
                Some(&sig)
            ),
            mismatch
        );
        assert_eq!(
            s.verify(
                "baton.jobs.exec",
                "r1.a.2",
                br#"{"cmd":"true"}"#,
                Some(&sig)
            ),
            mismatch
        );
        let other = signer("another key of thirty-two bytes!");
        assert_eq!(
            other.verify(
                "baton.jobs.exec",
                "r1.a.1",
                br#"{"cmd":"true"}"#,
                Some(&sig)
            ),
            mismatch
        );
        assert_eq!(
            s.verify("baton.jobs.exec", "r1.a.1", b"{}", None),
            Err(SignatureError::Missing)
        );
        for bad in ["", "v1=", "v1=zz", "v2=00", &sig[..sig.len() - 1]] {
            assert_eq!(
                s.verify("baton.jobs.exec", "r1.a.1", b"{}", Some(bad)),
                mismatch
            );
        }
    }

    #[test]
    fn parts_are_framed_so_moving_a_boundary_changes_the_signature() {
        let s = signer(KEY);
        assert_ne!(s.sign("a.b", "c", b"d"), s.sign("a.", "bc", b"d"));
    }

    #[test]
    fn a_short_key_is_refused_and_no_key_is_printed() {
        assert!(JobSigner::new(b"short").is_err());
        assert_eq!(format!("{:?}", signer(KEY)), "JobSigner(HMAC-SHA256)");
    }
}
