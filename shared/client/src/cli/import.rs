//! `dlab compendium import`: templates into a server's compendium through
//! `POST /compendium/batch` (administrators only).
//!
//! # Why the SRD package goes through `local-gateway`
//!
//! The SRD 5.1 package is a Python wheel holding an SQLite database; its reader lives in the
//! server's storage crate (`dlab-store`, feature `srd`, with a bundled SQLite). A client crate
//! must not link the server's storage, so for the package `dlab` runs the documented
//! `local-gateway import-compendium --url BASE --token JWT [--source PATH]`, which reads it and
//! posts the same batches. What `dlab` posts itself needs no reader: the project's built-in
//! templates (`--builtin`, from `dlab-core`) and JSON files of entries (`--source x.json`, e.g.
//! the `--json` output of `dlab compendium search`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use thiserror::Error;

/// The largest body of one `POST /compendium/batch` (the server refuses more than 1 MiB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// The most entries of one batch (the server refuses more than 1000).
pub const MAX_BATCH_ENTRIES: usize = 1000;
/// The local gateway's binary, looked up next to `dlab` and then on `PATH`.
pub const GATEWAY_BINARY: &str = "local-gateway";

/// Why an import could not be prepared or delegated.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The JSON source could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JSON source is not JSON.
    #[error("{path} is not JSON")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The JSON holds no list of entries.
    #[error(
        "{path}: expected an array of compendium entries, or an object with `entries` or `items`"
    )]
    Shape {
        /// The file.
        path: PathBuf,
    },
    /// One entry alone is bigger than a batch may be.
    #[error(
        "entry {index} ({reference}) is {bytes} bytes, over the {MAX_BATCH_BYTES}-byte batch limit"
    )]
    TooBig {
        /// Its position in the source.
        index: usize,
        /// Its `ref`.
        reference: String,
        /// Its size as compact JSON.
        bytes: usize,
    },
    /// The local gateway could not be started.
    #[error("running {binary} (install it, or pass --gateway-bin PATH)")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The local gateway's import failed.
    #[error("{binary} import-compendium failed ({status}): {stderr}")]
    Delegated {
        /// The binary.
        binary: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed on stderr.
        stderr: String,
    },
}

/// The entries of a JSON source: an array of entries, or an object with `entries` (the batch
/// body) or `items` (a search answer).
pub fn read_entries(path: &Path) -> Result<Vec<Value>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| ImportError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut map) => match map.remove("entries").or_else(|| map.remove("items")) {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(ImportError::Shape {
                    path: path.to_owned(),
                });
            }
        },
        _ => {
            return Err(ImportError::Shape {
                path: path.to_owned(),
            });
        }
    };
    Ok(list)
}

/// `{"entries": [...]}` bodies of at most `max_bytes` bytes and `max_entries` entries each,
/// in source order, covering every entry once.
pub fn batches(
    entries: &[Value],
    max_bytes: usize,
    max_entries: usize,
) -> Result<Vec<String>, ImportError> {
    const OPEN: &str = "{\"entries\":[";
    const CLOSE: &str = "]}";
    let mut bodies = Vec::new();
    let mut body = String::from(OPEN);
    let mut count = 0;
    for (index, entry) in entries.iter().enumerate() {
        let json = entry.to_string();
        if OPEN.len() + json.len() + CLOSE.len() > max_bytes {
            return Err(ImportError::TooBig {
                index,
                reference: entry["ref"].as_str().unwrap_or("?").to_owned(),
                bytes: json.len(),
            });
        }
        let comma = usize::from(count > 0);
        if count == max_entries || body.len() + comma + json.len() + CLOSE.len() > max_bytes {
            body.push_str(CLOSE);
            bodies.push(std::mem::replace(&mut body, String::from(OPEN)));
            count = 0;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(&json);
        count += 1;
    }
    if count > 0 {
        body.push_str(CLOSE);
        bodies.push(body);
    }
    Ok(bodies)
}

/// Whether `path` names a JSON file of entries (rather than the SRD wheel or database).
pub fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// The local gateway binary: `explicit`, else the one next to this executable (a cargo build
/// puts both in one directory), else `local-gateway` from `PATH`.
pub fn gateway_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    let name = format!("{GATEWAY_BINARY}{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What the delegated import printed, and the counts read from its summary line
/// (`import-compendium: 334 monsters, 319 spells, 237 equipment; 890 written, 0 unchanged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated {
    /// Its whole standard output (the summary and the attribution).
    pub output: String,
    /// Entries written, when the summary says.
    pub written: Option<u64>,
}

/// Runs `binary import-compendium --url BASE --token TOKEN [--source PATH]`: the gateway reads
/// the SRD package (fetching it into its cache when no source is given) and posts the batches.
/// Its progress bar goes to the terminal unless `quiet`.
pub fn delegate(
    binary: &Path,
    base: &str,
    token: &str,
    source: Option<&Path>,
    quiet: bool,
) -> Result<Delegated, ImportError> {
    let mut command = Command::new(binary);
    command
        .arg("import-compendium")
        .args(["--url", base, "--token", token]);
    if let Some(source) = source {
        command.arg("--source").arg(source);
    }
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    let output = command.output().map_err(|source| ImportError::Spawn {
        binary: binary.to_owned(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(ImportError::Delegated {
            binary: binary.to_owned(),
            status: output.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    if !quiet {
        eprint!("{stderr}");
    }
    let output = String::from_utf8_lossy(&output.stdout).into_owned();
    let written = summary_written(&output);
    Ok(Delegated { output, written })
}

/// The `N written` count of the gateway's summary line.
fn summary_written(output: &str) -> Option<u64> {
    let line = output
        .lines()
        .find(|l| l.starts_with("import-compendium:"))?;
    let before = line.split(" written").next()?;
    before.rsplit([' ', ';']).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(i: usize, pad: usize) -> Value {
        json!({"ref": format!("dnd5e:monsters:m{i}"), "system": "dnd5e", "category": "monsters",
               "name": format!("M{i}"), "data": {"pad": "x".repeat(pad)}})
    }

    #[test]
    fn batches_cover_every_entry_in_order_within_both_limits() {
        let entries: Vec<Value> = (0..50).map(|i| entry(i, (i * 37) % 250)).collect();
        for (max_bytes, max_entries) in [(400, 1000), (2000, 3), (MAX_BATCH_BYTES, 1000), (5000, 7)]
        {
            let bodies = batches(&entries, max_bytes, max_entries).unwrap();
            let mut seen = Vec::new();
            for body in &bodies {
                assert!(body.len() <= max_bytes, "{} > {max_bytes}", body.len());
                let parsed: Value = serde_json::from_str(body).unwrap();
                let list = parsed["entries"].as_array().unwrap();
                assert!(!list.is_empty() && list.len() <= max_entries);
                seen.extend(list.iter().cloned());
            }
            assert_eq!(seen, entries, "{max_bytes}/{max_entries}");
        }
        assert_eq!(batches(&[], 100, 10).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_entry_over_the_limit_is_named() {
        let entries = vec![entry(0, 10), entry(1, 5000)];
        match batches(&entries, 1000, 10) {
            Err(ImportError::TooBig {
                index, reference, ..
            }) => assert_eq!((index, reference.as_str()), (1, "dnd5e:monsters:m1")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_summary_line_gives_the_written_count() {
        let out = "import-compendium: 334 monsters, 319 spells, 237 equipment; 890 written, 0 unchanged\nAttribution …";
        assert_eq!(summary_written(out), Some(890));
        assert_eq!(summary_written("nothing"), None);
    }

    #[test]
    fn json_sources_take_arrays_batch_bodies_and_search_answers() {
        let dir = std::env::temp_dir().join(format!("dlab-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (json!([entry(1, 1)]), true),
            (json!({"entries": [entry(1, 1)]}), true),
            (json!({"items": [entry(1, 1)], "attribution": "a"}), true),
            (json!({"other": []}), false),
            (json!(3), false),
        ];
        for (i, (value, ok)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, value.to_string()).unwrap();
            assert_eq!(read_entries(&path).is_ok(), ok, "{value}");
            if ok {
                assert_eq!(read_entries(&path).unwrap(), vec![entry(1, 1)]);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_json(Path::new("a/b.JSON")));
        assert!(!is_json(Path::new("pkg.whl")));
    }
}
