//! The schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! [`MIGRATIONS`]`[n]` takes the database from version `n` to `n + 1`. [`migrate`] applies the
//! missing ones at open inside ONE `BEGIN IMMEDIATE` transaction, reading the version inside
//! it: two processes opening a new file at once migrate it once (the second waits for the write
//! lock, then finds the schema current), and a failed migration leaves the previous version
//! whole. A database of a newer version than this build knows is refused rather than written
//! with rules it does not know.

use rusqlite::{Connection, TransactionBehavior};
use tracing::info;

use super::{BACKEND, db};
use crate::error::StoreError;

/// The migrations, in order; never edit a released one, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: every table of the four ports.
    r#"
    -- Campaigns: the exact Campaign JSON (members included); members also indexed by user for
    -- campaigns_of.
    CREATE TABLE campaigns (
        id          TEXT PRIMARY KEY NOT NULL,
        gm_user_id  TEXT NOT NULL,
        json        TEXT NOT NULL
    );
    CREATE INDEX campaigns_by_gm ON campaigns (gm_user_id, id);
    CREATE TABLE campaign_members (
        user_id      TEXT NOT NULL,
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, campaign_id)
    );

    -- Actors of a campaign, listed by (name, id).
    CREATE TABLE actors (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        id           TEXT NOT NULL,
        name         TEXT NOT NULL,
        json         TEXT NOT NULL,
        PRIMARY KEY (campaign_id, id)
    );
    CREATE INDEX actors_by_name ON actors (campaign_id, name, id);

    -- Compendium templates; name_lower (Unicode lower case, computed in Rust) for the
    -- substring search, cr and level for the numeric filters.
    CREATE TABLE compendium (
        ref         TEXT PRIMARY KEY NOT NULL,
        system      TEXT NOT NULL,
        category    TEXT NOT NULL,
        name        TEXT NOT NULL,
        name_lower  TEXT NOT NULL,
        cr          REAL,
        level       INTEGER,
        json        TEXT NOT NULL
    );
    CREATE INDEX compendium_by_system ON compendium (system, category, ref);

    -- Game sessions, and the archive's bookkeeping of each session (archived_through,
    -- pruned_through, last_event_at, hot). A row with campaign_id NULL holds only the
    -- bookkeeping (the archive got there first): it is not a session until create_session
    -- completes it.
    CREATE TABLE sessions (
        id                TEXT PRIMARY KEY NOT NULL,
        campaign_id       TEXT REFERENCES campaigns (id),
        created_at        INTEGER,
        json              TEXT,
        archived_through  INTEGER NOT NULL DEFAULT 0,
        pruned_through    INTEGER NOT NULL DEFAULT 0,
        last_event_at     INTEGER,
        hot               INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_campaign ON sessions (campaign_id, created_at DESC, id DESC);
    CREATE INDEX sessions_by_activity ON sessions (last_event_at, id);
    CREATE INDEX sessions_hot ON sessions (hot, last_event_at, id);

    -- The archive: one row per event, unique by sequence and by id within the session.
    CREATE TABLE events (
        session_id  TEXT NOT NULL,
        sequence    INTEGER NOT NULL,
        id          TEXT NOT NULL,
        timestamp   INTEGER NOT NULL,
        hash        TEXT NOT NULL,
        json        TEXT NOT NULL,
        PRIMARY KEY (session_id, sequence),
        UNIQUE (session_id, id)
    );

    -- Snapshots of session state, one per (session, upToSequence).
    CREATE TABLE snapshots (
        session_id      TEXT NOT NULL,
        up_to_sequence  INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        json            TEXT NOT NULL,
        PRIMARY KEY (session_id, up_to_sequence)
    );

    -- The GM's conflict report: the record as created, and the resolution once resolved.
    CREATE TABLE conflicts (
        session_id       TEXT NOT NULL,
        conflict_id      TEXT NOT NULL,
        kind             TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        resolved         INTEGER NOT NULL,
        json             TEXT NOT NULL,
        resolution_json  TEXT,
        PRIMARY KEY (session_id, conflict_id)
    );
    CREATE INDEX conflicts_newest ON conflicts (session_id, created_at DESC, conflict_id DESC);
    "#,
];

/// The schema version this build writes.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`VERSION`]; see the module docs.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin migration"))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db("read schema version"))?;
    if found > VERSION {
        return Err(StoreError::unavailable(
            BACKEND,
            "read schema version",
            format!("the database has schema version {found}, newer than this build's {VERSION}"),
        ));
    }
    if found == VERSION {
        return Ok(());
    }
    for (from, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.execute_batch(sql).map_err(db("migrate schema"))?;
        info!(from, to = from + 1, "sqlite schema migrated");
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(db("write schema version"))?;
    tx.commit().map_err(db("commit migration"))
}
