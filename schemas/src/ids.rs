//! Identifier newtypes. Each is a validated string with `Display` and serde.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string that the caller has already checked.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// The FNV-1a 64-bit offset basis: the usual seed of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Returns the 64-bit FNV-1a hash of `bytes` from `seed` ([`FNV_OFFSET`] for the standard
/// hash). Stable across builds and platforms, unlike std's hashers: ids and trace contexts
/// derived from it must never change, since they are stored and on the bus.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>, seed: u64) -> u64 {
    bytes.into_iter().fold(seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

string_id!(
    /// The id of one run of a workflow: lowercase letters and digits, usable in subjects,
    /// message ids and Kubernetes names.
    RunId
);
string_id!(
    /// The name of a node inside a workflow (a DNS-1123 label).
    NodeName
);
string_id!(
    /// The name of a registered workflow (a DNS-1123 subdomain without dots).
    WorkflowName
);

impl RunId {
    /// Returns whether `value` is a well-formed run id: 1 to 40 characters of `[a-z0-9-]`,
    /// starting and ending with a letter or digit. Run ids become NATS subject tokens.
    pub fn is_valid(value: &str) -> bool {
        is_dns_label(value) && value.len() <= 40
    }
}

/// The number of one try of a node, starting at 1. A retry is a new attempt; a redelivery of
/// the same job is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(pub u32);

impl Attempt {
    /// The first attempt of every node.
    pub const FIRST: Attempt = Attempt(1);

    /// Returns the attempt after this one.
    pub fn next(self) -> Attempt {
        Attempt(self.0 + 1)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Returns whether `value` is a DNS-1123 label: at most 63 characters of `[a-z0-9-]`, starting
/// and ending with a letter or digit.
pub fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Returns the lowercase hex SHA-256 of `text`.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Returns `name` when it has at most `max` characters, else its head and the first 8 hex
/// digits of its SHA-256, `max` bytes in all: two long names that share a head stay apart.
/// Names are ASCII (DNS names), so characters are bytes; another name is cut at the last
/// character boundary that fits, never inside a character.
pub fn cut_with_hash(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = &sha256_hex(name)[..8];
    let mut end = max.saturating_sub(hash.len() + 1);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let head = name[..end].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// Returns a new run id: 12 lowercase letters and digits from the clock and a random seed.
pub fn new_run_id() -> RunId {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut n = std::collections::hash_map::RandomState::new().hash_one(nanos);
    let mut id = String::with_capacity(12);
    for _ in 0..12 {
        id.push(char::from_digit((n % 36) as u32, 36).expect("below 36"));
        n /= 36;
    }
    RunId::new(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_ascii_is_cut_between_characters() {
        let name = format!("a{}", "é".repeat(40));
        let cut = cut_with_hash(&name, 59);
        assert!(cut.len() <= 59, "{cut}");
        assert!(cut.starts_with('a') && cut.contains('-'), "{cut}");
    }

    #[test]
    fn long_names_are_cut_with_a_hash_of_the_whole() {
        assert_eq!(cut_with_hash("short", 63), "short");
        let a = cut_with_hash(&format!("uninstall-{}-a", "x".repeat(60)), 63);
        let b = cut_with_hash(&format!("uninstall-{}-b", "x".repeat(60)), 63);
        assert_eq!(a.len(), 63);
        assert_ne!(a, b);
        assert!(is_dns_label(&a), "{a}");
        assert_eq!(
            cut_with_hash(&format!("{}-{}", "a".repeat(54), "b".repeat(20)), 63).len(),
            63
        );
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("build-2"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("Build"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label("a.b"));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
