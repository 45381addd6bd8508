//! The embedded default's storage: one SQLite database under the data directory for every
//! durable port (the hot log stays in memory and is rebuilt from the archive on first use), and
//! the start-up load of the compendium (the SRD 5.1 import, or the project's own few templates
//! when the SRD package cannot be had).

use std::path::{Path, PathBuf};

use dlab_core::srd;
use dlab_service::Deps;
use dlab_service::config::ArchiveMode;
use dlab_store::sqlite::SqliteStores;
use dlab_store::{CampaignStore, Chain, StoreError};
use tracing::{info, warn};

use crate::app::Backends;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "dlab.sqlite3";

/// Opens (creating when missing) the embedded database of `data_dir`.
pub async fn open_embedded(data_dir: &Path) -> Result<SqliteStores, StoreError> {
    let path = data_dir.join(DATABASE_FILE);
    let stores = SqliteStores::open(&path).await?;
    info!(path = %path.display(), "embedded database open");
    Ok(stores)
}

/// Where each kind of data lives, for the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSummary {
    /// The embedded database file, when one is open.
    pub database: Option<PathBuf>,
    /// `true` when campaigns, actors, sessions and the archive are in memory only.
    pub ephemeral: bool,
    /// Whether events are confirmed only after their archive write.
    pub confirm_after_archive: bool,
    /// Real servers swapped in, by name (`redis`, `mongodb`, `dynamodb`).
    pub servers: Vec<&'static str>,
}

impl StorageSummary {
    /// The summary of `backends` as built into `deps`.
    pub fn of(backends: &Backends, deps: &Deps) -> Self {
        let mut servers = Vec::new();
        if backends.redis.is_some() {
            servers.push("redis");
        }
        if backends.mongo.is_some() {
            servers.push("mongodb");
        }
        if backends.dynamodb_endpoint.is_some() {
            servers.push("dynamodb");
        }
        let database = backends
            .data_dir
            .as_ref()
            .filter(|_| backends.mongo.is_none())
            .map(|d| d.join(DATABASE_FILE));
        Self {
            ephemeral: database.is_none() && backends.mongo.is_none(),
            database,
            confirm_after_archive: deps.settings.archive_mode == ArchiveMode::ConfirmAfterArchive,
            servers,
        }
    }

    /// One line per fact, for the banner.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        match (&self.database, self.ephemeral) {
            (Some(path), _) => out.push_str(&format!(
                "  Data:      {} (SQLite; survives a restart)\n",
                path.display()
            )),
            (None, true) => out.push_str(
                "  Data:      memory only (--ephemeral): everything is gone when the gateway stops\n",
            ),
            (None, false) => {}
        }
        if !self.servers.is_empty() {
            out.push_str(&format!("  Servers:   {}\n", self.servers.join(", ")));
        }
        if self.confirm_after_archive {
            out.push_str(
                "  Events:    confirmed only once written to the archive (the hot log is in memory)\n",
            );
        }
        out
    }
}

/// What the start-up compendium load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompendiumLoaded {
    /// The SRD was there from an earlier start; nothing was read.
    AlreadyThere,
    /// The SRD 5.1 package was imported.
    Imported {
        /// Monsters, spells and equipment read.
        monsters: usize,
        /// Spells read.
        spells: usize,
        /// Equipment read.
        equipment: usize,
        /// Entries written (0 when everything was already current).
        written: usize,
    },
    /// The package could not be had; the project's own templates were written instead.
    Fallback {
        /// Why the SRD is missing.
        reason: String,
        /// How many templates were written.
        templates: usize,
    },
}

impl CompendiumLoaded {
    /// One line for the banner.
    pub fn describe(&self) -> String {
        match self {
            Self::AlreadyThere => "  Compendium: SRD 5.1 (already imported)\n".into(),
            Self::Imported { written: 0, .. } => {
                "  Compendium: SRD 5.1 (already imported, checked against the package)\n".into()
            }
            Self::Imported {
                monsters,
                spells,
                equipment,
                written,
            } => format!(
                "  Compendium: SRD 5.1 imported: {monsters} monsters, {spells} spells, {equipment} equipment ({written} written)\n"
            ),
            Self::Fallback { reason, templates } => format!(
                "  Compendium: the SRD 5.1 package could not be loaded ({reason});\n              started with {templates} templates written for this project.\n              Load the SRD later with: local-gateway import-compendium\n"
            ),
        }
    }
}

/// The reference whose presence says the SRD is already imported.
const SRD_PROBE: &str = "dnd5e:monsters:goblin";

/// Fills the compendium at start: nothing when the SRD is already there; otherwise the SRD
/// package from `cache_dir` (fetched into it first when missing); and when that fails, the
/// project's own templates, so a table always has something to play with. A store failure is
/// an error (the gateway cannot serve without its store); a fetch or import failure is not.
pub async fn load_compendium(
    store: &dyn CampaignStore,
    cache_dir: &Path,
) -> Result<CompendiumLoaded, StoreError> {
    // With the package at hand the import runs every time: it reads the stored entries and
    // writes only what is missing or different, so an import cut short (a crash half-way)
    // is completed, and an unchanged table costs a read. Without it, an SRD already in the
    // store is trusted rather than waiting on the network at every start.
    let cached = dlab_store::srd::cached_wheel(cache_dir).is_some();
    if !cached && store.compendium_entry(SRD_PROBE).await?.is_some() {
        return Ok(CompendiumLoaded::AlreadyThere);
    }
    match import_srd(store, cache_dir).await {
        Ok(loaded) => Ok(loaded),
        Err(reason) => {
            warn!(reason = %reason, "SRD 5.1 not loaded; writing the built-in templates");
            let templates = srd::builtin_templates();
            store.put_compendium(&templates).await?;
            Ok(CompendiumLoaded::Fallback {
                reason,
                templates: templates.len(),
            })
        }
    }
}

async fn import_srd(
    store: &dyn CampaignStore,
    cache_dir: &Path,
) -> Result<CompendiumLoaded, String> {
    let cache = cache_dir.to_path_buf();
    let package = tokio::task::spawn_blocking(move || {
        let path = dlab_store::srd::fetch_package(&cache).map_err(|e| Chain(&e).to_string())?;
        dlab_store::srd::SrdPackage::open(&path).map_err(|e| Chain(&e).to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let report = dlab_store::srd::import(&package, store, 200, |_| {})
        .await
        .map_err(|e| Chain(&e).to_string())?;
    info!(
        monsters = report.monsters,
        spells = report.spells,
        equipment = report.equipment,
        written = report.written,
        "SRD 5.1 imported"
    );
    Ok(CompendiumLoaded::Imported {
        monsters: report.monsters,
        spells: report.spells,
        equipment: report.equipment,
        written: report.written,
    })
}
