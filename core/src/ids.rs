//! Run ids derived from what names a run, so that deciding it again (a replay after a crash,
//! a second planner) names the same run. One hash for all: FNV-1a, 64 bits, which is stable
//! across builds and platforms, unlike std's hashers, and whose values must never change:
//! ids already stored and on the bus were made with it.

use baton_schemas::RunId;
use baton_schemas::ids::FNV_OFFSET;

/// Returns the standard 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    baton_schemas::ids::fnv1a(bytes, FNV_OFFSET)
}

/// Returns the run id `<letter>` and 12 lowercase letters and digits of the hash of `bytes`
/// (its lowest base-36 digits first).
pub fn hashed_run_id(letter: char, bytes: impl IntoIterator<Item = u8>) -> RunId {
    let mut n = fnv1a(bytes);
    let mut id = String::with_capacity(13);
    id.push(letter);
    for _ in 0..12 {
        id.push(char::from_digit((n % 36) as u32, 36).expect("below 36"));
        n /= 36;
    }
    RunId::new(id)
}

/// Returns the run id a request with `Idempotency-Key: key` starts for `workflow`: `i` and 12
/// letters and digits of a hash of both, so that a request sent again with its key names the
/// run the first one started (which the core does not start twice) and one key used for two
/// workflows starts one run of each.
pub fn idempotent_run_id(key: &str, workflow: &str) -> RunId {
    let bytes = format!("idempotency\0{workflow}\0{key}");
    hashed_run_id('i', bytes.into_bytes())
}

/// Returns the run id `<name>-<suffix>` of a run a named document starts, at most 40
/// characters: a name too long is cut and a hash of the whole name added, so that two long
/// names with one beginning still name different runs.
pub fn named_run_id(name: &str, suffix: &str) -> RunId {
    let room = 40 - suffix.len() - 1;
    let base = if name.len() <= room {
        name.to_owned()
    } else {
        let hash = fnv1a(name.bytes());
        let head: String = name.chars().take(room - 7).collect();
        format!("{}-{:06x}", head.trim_end_matches('-'), hash & 0xff_ffff)
    };
    RunId::new(format!("{base}-{suffix}"))
}

/// Returns the run id of a trigger that names none: `t` and 12 lowercase letters and digits
/// derived from the message's place in its stream, so that applying the trigger again (after
/// a crash, from the stream) starts nothing new.
pub fn trigger_run_id(stream_created: u64, seq: u64) -> RunId {
    hashed_run_id(
        't',
        [stream_created, seq].iter().flat_map(|v| v.to_le_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_never_change() {
        // Ids made before stay the ids made now: a replay must name the same runs.
        assert_eq!(fnv1a(*b""), FNV_OFFSET);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hashed_run_id('x', *b"a").as_str().len(), 13);
        assert!(RunId::is_valid(hashed_run_id('f', *b"seed").as_str()));
    }

    #[test]
    fn long_names_are_cut_and_told_apart() {
        assert_eq!(named_run_id("web", "3").as_str(), "web-3");
        let long = "a".repeat(60);
        let (a, b) = (
            named_run_id(&format!("{long}x"), "12r"),
            named_run_id(&format!("{long}y"), "12r"),
        );
        assert_ne!(a, b);
        assert!(a.as_str().len() <= 40 && RunId::is_valid(a.as_str()), "{a}");
    }
}
