//! Dotted leaf paths (`attributes.hp.value`) over JSON documents.
//!
//! The hot state keeps each actor as *leaves*: one entry per path, holding a canonical JSON
//! string (so Redis can compare-and-set a path without parsing JSON). This module defines what a
//! leaf is, so every adapter flattens a document the same way:
//!
//! - an object is descended into when it is non-empty and every key is a valid path segment;
//! - anything else is a leaf: scalars, `null`, arrays, `{}`, and objects with keys that are not
//!   path segments (such an object is addressed as a whole);
//! - a path names a leaf; the current value of a path that names no leaf is `null`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

/// Longest accepted path.
pub const MAX_PATH_LEN: usize = 256;
/// Most segments in one path.
pub const MAX_PATH_SEGMENTS: usize = 16;

/// A path is not of the form `segment(.segment)*` with segments of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("path {path:?} is invalid: {reason}")]
pub struct PathError {
    /// The offending path (truncated).
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Whether `segment` may appear in a path.
pub fn is_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 64
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a dotted path.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    let bad = |reason| PathError {
        path: path.chars().take(80).collect(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(bad("longer than 256 characters"));
    }
    let mut count = 0;
    for segment in path.split('.') {
        if !is_segment(segment) {
            return Err(bad("segments are 1-64 characters of [A-Za-z0-9_-]"));
        }
        count += 1;
    }
    if count > MAX_PATH_SEGMENTS {
        return Err(bad("more than 16 segments"));
    }
    Ok(())
}

fn descends(map: &Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| is_segment(k))
}

/// Whether a value is a leaf under the flattening rule.
pub fn is_leaf(value: &Value) -> bool {
    match value {
        Value::Object(map) => !descends(map),
        _ => true,
    }
}

/// Flattens a document into its leaves, keyed by dotted path.
pub fn flatten(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match doc {
        Value::Object(map) if descends(map) => flatten_into(map, "", &mut out),
        _ => {}
    }
    out
}

fn flatten_into(map: &Map<String, Value>, prefix: &str, out: &mut BTreeMap<String, Value>) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if descends(inner) => flatten_into(inner, &path, out),
            _ => {
                out.insert(path, value.clone());
            }
        }
    }
}

/// The leaf of `doc` at `path`, if `path` names one (consistent with [`flatten`]).
pub fn leaf_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = doc;
    for segment in path.split('.') {
        match current {
            Value::Object(map) if descends(map) => current = map.get(segment)?,
            _ => return None,
        }
    }
    is_leaf(current).then_some(current)
}

/// Writes `value` at `path`, creating objects on the way and replacing non-objects that stand
/// in the way. Used to assemble a runtime document from base values and overrides.
pub fn set_path(doc: &mut Value, path: &str, value: Value) {
    let mut current = doc;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let map = current.as_object_mut().expect("just made an object");
        if segments.peek().is_none() {
            map.insert(segment.to_owned(), value);
            return;
        }
        current = map
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_a_stat_block_when_flattened_then_leaves_are_dotted_paths() {
        let doc = json!({"attributes": {"hp": {"value": 7, "max": 15}, "ac": 15, "saves": {}},
                         "features": [{"name": "Nimble Escape"}], "notes": {"Animal Handling": 2}});
        let leaves = flatten(&doc);
        assert_eq!(leaves["attributes.hp.value"], json!(7));
        assert_eq!(leaves["attributes.hp.max"], json!(15));
        assert_eq!(leaves["attributes.saves"], json!({}));
        assert_eq!(leaves["features"], json!([{"name": "Nimble Escape"}]));
        assert_eq!(leaves["notes"], json!({"Animal Handling": 2}));
        assert!(!leaves.contains_key("attributes.hp"));
        assert_eq!(leaves.len(), 6);
    }

    #[test]
    fn leaf_at_agrees_with_flatten() {
        let doc = json!({"a": {"b": 1, "c": [1, 2]}, "d": {"x y": 1}});
        for (path, value) in flatten(&doc) {
            assert_eq!(leaf_at(&doc, &path), Some(&value), "{path}");
        }
        assert_eq!(leaf_at(&doc, "a"), None, "interior nodes are not leaves");
        assert_eq!(leaf_at(&doc, "a.missing"), None);
        assert_eq!(leaf_at(&doc, "a.b.deeper"), None);
        assert_eq!(leaf_at(&doc, "d.x y"), None);
    }

    #[test]
    fn set_path_creates_and_replaces() {
        let mut doc = json!({"a": 1});
        set_path(&mut doc, "b.c", json!(2));
        set_path(&mut doc, "a.z", json!(3));
        assert_eq!(doc, json!({"a": {"z": 3}, "b": {"c": 2}}));
    }

    #[test]
    fn paths_are_validated() {
        assert!(validate_path("attributes.hp.value").is_ok());
        assert!(validate_path("conditions").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a b", "a.$x", &"a.".repeat(17)] {
            assert!(validate_path(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_path(&"x".repeat(257)).is_err());
    }
}
