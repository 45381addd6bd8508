//! RFC 8785 canonical JSON and the payload checksum.
//!
//! Canonical JSON is the one representation in which two equal JSON values are equal byte
//! strings: keys sorted, no whitespace, numbers in ECMAScript form (`1.0` and `1` both become
//! `1`). Everything that compares JSON values across processes relies on it: compare-and-set
//! (the Redis script compares these strings and never parses JSON), idempotency (a re-submitted
//! id must carry the same content), and the optional client checksum.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The prefix of every checksum string.
pub const CHECKSUM_PREFIX: &str = "sha256:";

/// The RFC 8785 canonical form of a JSON value.
pub fn canonical_json(value: &Value) -> String {
    // A `serde_json::Value` always serializes: its map keys are strings and its numbers finite.
    serde_jcs::to_string(value).expect("a JSON value always has a canonical form")
}

/// Lower-case hex SHA-256 of arbitrary bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of the canonical JSON of `value`: the form of the envelope's `checksum`.
pub fn checksum(value: &Value) -> String {
    format!(
        "{CHECKSUM_PREFIX}{}",
        sha256_hex(canonical_json(value).as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v: Value = serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x"] }"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":[true,null,"x"],"b":1}"#);
    }

    #[test]
    fn number_spellings_collapse() {
        let a: Value = serde_json::from_str("1.0").unwrap();
        let b: Value = serde_json::from_str("1").unwrap();
        let c: Value = serde_json::from_str("1e0").unwrap();
        assert_eq!(canonical_json(&a), "1");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&b), canonical_json(&c));
        assert_eq!(canonical_json(&json!(0.5)), "0.5");
    }

    #[test]
    fn checksum_has_prefix_and_changes_with_content() {
        let one = checksum(&json!({"hp": 7}));
        assert!(one.starts_with("sha256:"));
        assert_eq!(one.len(), "sha256:".len() + 64);
        assert_ne!(one, checksum(&json!({"hp": 8})));
    }
}
