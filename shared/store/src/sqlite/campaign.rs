//! [`CampaignStore`] over `campaigns`, `campaign_members`, `actors`, `compendium` and
//! `sessions`.

use async_trait::async_trait;
use dlab_core::actor::{Actor, CompendiumEntry};
use dlab_core::ids::{ActorId, CampaignId, SessionId, UserId};
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::debug;

use super::engine::Handle;
use super::{bound, db, from_json, limit_of, to_i64, to_json, to_u64};
use crate::error::StoreError;
use crate::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumPage, CompendiumQuery, GameSession,
    Listed, Member, MemberRole, Page, PageFill, PageRequest, Quota, QuotaError, SessionKey,
};
use crate::ports::CampaignStore;

use super::BACKEND;

/// Campaigns, members, actors, compendium templates and game sessions in SQLite.
///
/// - `campaigns`: the exact [`Campaign`] JSON (members included) and `gm_user_id`;
///   `campaign_members` repeats each member's `(user_id, campaign_id)` for `campaigns_of`. A
///   member change reads, edits and rewrites both inside one write transaction, so concurrent
///   changes are never lost (writes are serialized, even across handles).
/// - `actors`: `(campaign_id, id)` primary key, `name`, and the exact actor as `json`; listed
///   through `(campaign_id, name, id)`.
/// - `compendium`: `ref` primary key, `system`, `category`, `name`, `name_lower` (Rust's
///   Unicode lower case, so the search is the memory adapter's case-insensitive substring;
///   `instr` takes the needle literally), `cr` ([`CompendiumEntry::challenge_rating`]) and
///   `level` ([`CompendiumEntry::spell_level`]) for the numeric filters, and the exact entry.
/// - `sessions`: the exact [`GameSession`] JSON with `campaign_id` and `created_at`, listed
///   through `(campaign_id, created_at desc, id desc)`. `archived_through` is the archive's
///   column: a session update only ever raises it, reads return the stored value, and progress
///   the archive recorded before the session existed is kept when it is created.
///
/// # Listings
///
/// Each page is one range query from the cursor's key along its index, in the index's order,
/// limited to `limit + 1` (the look-ahead), whose rows are decoded and offered to
/// [`PageFill`] one at a time until the page is full: nothing is skipped and the listing is
/// never loaded whole.
///
/// # Quotas
///
/// A create counts the campaign's actors or sessions and inserts in the same write
/// transaction; one transaction writes at a time (one writer thread per handle, and `BEGIN
/// IMMEDIATE` across handles), so the count is exact: of N concurrent creates for the last
/// slot exactly one succeeds, a delete gives its slot back, and a refused insert never took
/// one. No counter can drift.
#[derive(Debug, Clone)]
pub struct SqliteCampaignStore {
    handle: Handle,
}

impl SqliteCampaignStore {
    pub(super) fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

/// One page from a query's rows (fetched with one item of look-ahead), decoding each row's
/// column 0 as JSON and, for sessions, fixing it up with `adjust`.
fn read_page<T, P>(
    conn: &Connection,
    sql: &str,
    params: P,
    limit: usize,
    max_bytes: usize,
    what: &'static str,
    adjust: impl Fn(&rusqlite::Row<'_>, &mut T) -> Result<(), StoreError>,
) -> Result<Page<T, T::Key>, StoreError>
where
    T: Serialize + Listed + DeserializeOwned,
    P: rusqlite::Params,
{
    let mut statement = conn.prepare_cached(sql).map_err(db(what))?;
    let mut rows = statement.query(params).map_err(db(what))?;
    let mut fill = PageFill::new(limit, max_bytes);
    while let Some(row) = rows.next().map_err(db(what))? {
        let json: String = row.get(0).map_err(db(what))?;
        let mut item: T = from_json(&json, what)?;
        adjust(row, &mut item)?;
        if !fill
            .offer(item)
            .map_err(|e| StoreError::corrupt(BACKEND, what, e))?
        {
            break;
        }
    }
    Ok(fill.into_page())
}

/// The JSON document that `sql` (one `?1` parameter, one `json` column) selects for `key`,
/// decoded; `None` when no row matches.
fn json_by_key<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    key: &str,
    what: &'static str,
    op: &'static str,
) -> Result<Option<T>, StoreError> {
    let json: Option<String> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(db(op))?;
    json.map(|j| from_json(&j, what)).transpose()
}

/// Refuses a create when the campaign is missing or already holds `limit` of `quota`; counted
/// inside the create's write transaction.
fn check_count(
    tx: &Transaction<'_>,
    campaign: &CampaignId,
    quota: Quota,
    limit: u64,
) -> Result<(), QuotaError> {
    check_room(tx, campaign, quota, limit, 1)
}

/// Whether `needed` more items fit under the quota (inside the write transaction: exact).
fn check_room(
    tx: &Transaction<'_>,
    campaign: &CampaignId,
    quota: Quota,
    limit: u64,
    needed: usize,
) -> Result<(), QuotaError> {
    let exists: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM campaigns WHERE id = ?1")
        .and_then(|mut s| s.query_row([campaign.as_str()], |r| r.get(0)).optional())
        .map_err(db("read campaign"))?;
    if exists.is_none() {
        return Err(QuotaError::NoCampaign(campaign.clone()));
    }
    let sql = match quota {
        Quota::Actors => "SELECT count(*) FROM actors WHERE campaign_id = ?1",
        Quota::Sessions => "SELECT count(*) FROM sessions WHERE campaign_id = ?1",
    };
    let count: i64 = tx
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([campaign.as_str()], |r| r.get(0)))
        .map_err(db("count for quota"))?;
    if to_u64(count, "quota count")?.saturating_add(needed as u64) > limit {
        debug!(campaign = %campaign, %quota, limit, "quota reached");
        return Err(QuotaError::Exceeded {
            campaign: campaign.clone(),
            quota,
            limit,
        });
    }
    Ok(())
}

/// Reads a campaign inside a write, applies `edit` to its members (it returns whether it
/// changed anything), and stores the list and the member index. `None` when the campaign does
/// not exist.
fn edit_members(
    tx: &Transaction<'_>,
    campaign: &CampaignId,
    edit: impl FnOnce(&mut Vec<Member>) -> bool,
) -> Result<Option<Campaign>, StoreError> {
    let op = "update members";
    let Some(mut current) = json_by_key::<Campaign>(
        tx,
        "SELECT json FROM campaigns WHERE id = ?1",
        campaign.as_str(),
        "campaign",
        op,
    )?
    else {
        return Ok(None);
    };
    let before: Vec<UserId> = current.members.iter().map(|m| m.user_id.clone()).collect();
    if !edit(&mut current.members) {
        return Ok(Some(current));
    }
    let json = to_json(&current, "campaign")?;
    tx.prepare_cached("UPDATE campaigns SET json = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![campaign.as_str(), json]))
        .map_err(db(op))?;
    for gone in before
        .iter()
        .filter(|u| !current.members.iter().any(|m| &m.user_id == *u))
    {
        tx.prepare_cached("DELETE FROM campaign_members WHERE user_id = ?1 AND campaign_id = ?2")
            .and_then(|mut s| s.execute(params![gone.as_str(), campaign.as_str()]))
            .map_err(db(op))?;
    }
    for member in &current.members {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO campaign_members (user_id, campaign_id) VALUES (?1, ?2)",
        )
        .and_then(|mut s| s.execute(params![member.user_id.as_str(), campaign.as_str()]))
        .map_err(db(op))?;
    }
    Ok(Some(current))
}

/// Writes a session's columns, keeping the larger `archived_through`.
fn session_row(session: &GameSession) -> Result<(String, i64, String, i64), StoreError> {
    Ok((
        session.id.to_string(),
        to_i64(session.created_at, "session time")?,
        to_json(session, "session")?,
        to_i64(session.archived_through, "archived_through")?,
    ))
}

/// Sets a session read back's `archivedThrough` from the archive's column (column 1).
fn stored_progress(row: &rusqlite::Row<'_>, session: &mut GameSession) -> Result<(), StoreError> {
    let through: i64 = row.get(1).map_err(db("read session"))?;
    session.archived_through = to_u64(through, "archived_through")?;
    Ok(())
}

#[async_trait]
impl CampaignStore for SqliteCampaignStore {
    async fn create_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let id = campaign.id.clone();
        let gm = campaign.gm_user_id.clone();
        let members: Vec<UserId> = campaign.members.iter().map(|m| m.user_id.clone()).collect();
        let json = to_json(campaign, "campaign")?;
        self.handle
            .write("create campaign", move |tx| {
                let op = "create campaign";
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO campaigns (id, gm_user_id, json) VALUES (?1, ?2, ?3)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![id.as_str(), gm.as_str(), json]))
                    .map_err(db(op))?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists(format!("campaign {id}")));
                }
                for user in &members {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO campaign_members (user_id, campaign_id)
                         VALUES (?1, ?2)",
                    )
                    .and_then(|mut s| s.execute(params![user.as_str(), id.as_str()]))
                    .map_err(db(op))?;
                }
                debug!(campaign = %id, "campaign created");
                Ok(())
            })
            .await
    }

    async fn campaign(&self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        let id = id.clone();
        self.handle
            .read("read campaign", move |conn| {
                json_by_key(
                    conn,
                    "SELECT json FROM campaigns WHERE id = ?1",
                    id.as_str(),
                    "campaign",
                    "read campaign",
                )
            })
            .await
    }

    async fn campaigns_of(
        &self,
        user: &UserId,
        page: &PageRequest<CampaignKey>,
    ) -> Result<Page<Campaign, CampaignKey>, StoreError> {
        let user = user.clone();
        let limit = page.clamped_limit();
        let max_bytes = page.max_bytes;
        let after = page.after.as_ref().map(|k| k.id.clone());
        self.handle
            .read("list campaigns", move |conn| {
                // Two index ranges, by owner and by membership, merged by id.
                let mine = "(gm_user_id = ?1 OR id IN
                             (SELECT campaign_id FROM campaign_members WHERE user_id = ?1))";
                let fetch = limit_of(limit.saturating_add(1));
                let no_adjust = |_: &rusqlite::Row<'_>, _: &mut Campaign| Ok(());
                match &after {
                    Some(after) => read_page(
                        conn,
                        &format!(
                            "SELECT json FROM campaigns WHERE {mine} AND id > ?2
                             ORDER BY id LIMIT ?3"
                        ),
                        params![user.as_str(), after.as_str(), fetch],
                        limit,
                        max_bytes,
                        "list campaigns",
                        no_adjust,
                    ),
                    None => read_page(
                        conn,
                        &format!("SELECT json FROM campaigns WHERE {mine} ORDER BY id LIMIT ?2"),
                        params![user.as_str(), fetch],
                        limit,
                        max_bytes,
                        "list campaigns",
                        no_adjust,
                    ),
                }
            })
            .await
    }

    async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<Option<Campaign>, StoreError> {
        let campaign = campaign.clone();
        let user = user.clone();
        self.handle
            .write("update members", move |tx| {
                edit_members(tx, &campaign, |members| {
                    match members.iter_mut().find(|m| m.user_id == user) {
                        Some(m) if m.role == role => return false,
                        Some(m) => m.role = role,
                        None => members.push(Member {
                            user_id: user.clone(),
                            role,
                        }),
                    }
                    true
                })
            })
            .await
    }

    async fn remove_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let campaign = campaign.clone();
        let user = user.clone();
        self.handle
            .write("update members", move |tx| {
                let mut was_member = false;
                edit_members(tx, &campaign, |members| {
                    let before = members.len();
                    members.retain(|m| m.user_id != user);
                    was_member = members.len() != before;
                    was_member
                })?;
                Ok(was_member)
            })
            .await
    }

    async fn create_actor(&self, actor: &Actor, quotas: &CampaignQuotas) -> Result<(), QuotaError> {
        quotas.check_actor_size(actor)?;
        let campaign = actor.campaign_id.clone();
        let id = actor.id.clone();
        let name = actor.name.clone();
        let json = to_json(actor, "actor")?;
        let max_actors = quotas.max_actors;
        self.handle
            .write("create actor", move |tx| {
                check_count(tx, &campaign, Quota::Actors, max_actors)?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO actors (campaign_id, id, name, json) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (campaign_id, id) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![campaign.as_str(), id.as_str(), name, json])
                    })
                    .map_err(db("create actor"))?;
                if inserted == 0 {
                    return Err(StoreError::AlreadyExists(format!("actor {id}")).into());
                }
                debug!(campaign = %campaign, actor = %id, "actor created");
                Ok(())
            })
            .await
    }

    async fn create_actors(
        &self,
        actors: &[Actor],
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let Some(campaign) = crate::model::batch_campaign(actors)?.cloned() else {
            return Ok(());
        };
        let mut rows = Vec::with_capacity(actors.len());
        for actor in actors {
            quotas.check_actor_size(actor)?;
            rows.push((
                actor.id.clone(),
                actor.name.clone(),
                to_json(actor, "actor")?,
            ));
        }
        let max_actors = quotas.max_actors;
        // One job, so one savepoint: a refusal part-way rolls every insert of the batch back.
        self.handle
            .write("create actors", move |tx| {
                check_room(tx, &campaign, Quota::Actors, max_actors, rows.len())?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO actors (campaign_id, id, name, json) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (campaign_id, id) DO NOTHING",
                    )
                    .map_err(db("create actors"))?;
                for (id, name, json) in &rows {
                    let inserted = insert
                        .execute(params![campaign.as_str(), id.as_str(), name, json])
                        .map_err(db("create actors"))?;
                    if inserted == 0 {
                        return Err(StoreError::AlreadyExists(format!("actor {id}")).into());
                    }
                }
                debug!(campaign = %campaign, count = rows.len(), "actors created");
                Ok(())
            })
            .await
    }

    async fn actor(
        &self,
        campaign: &CampaignId,
        id: &ActorId,
    ) -> Result<Option<Actor>, StoreError> {
        let campaign = campaign.clone();
        let id = id.clone();
        self.handle
            .read("read actor", move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT json FROM actors WHERE campaign_id = ?1 AND id = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![campaign.as_str(), id.as_str()], |r| r.get(0))
                            .optional()
                    })
                    .map_err(db("read actor"))?;
                json.map(|j| from_json(&j, "actor")).transpose()
            })
            .await
    }

    async fn actors(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<ActorKey>,
    ) -> Result<Page<Actor, ActorKey>, StoreError> {
        let campaign = campaign.clone();
        let limit = page.clamped_limit();
        let max_bytes = page.max_bytes;
        let after = page.after.clone();
        self.handle
            .read("list actors", move |conn| {
                let fetch = limit_of(limit.saturating_add(1));
                let no_adjust = |_: &rusqlite::Row<'_>, _: &mut Actor| Ok(());
                match &after {
                    Some(key) => read_page(
                        conn,
                        "SELECT json FROM actors WHERE campaign_id = ?1 AND (name, id) > (?2, ?3)
                         ORDER BY name, id LIMIT ?4",
                        params![campaign.as_str(), key.name, key.id.as_str(), fetch],
                        limit,
                        max_bytes,
                        "list actors",
                        no_adjust,
                    ),
                    None => read_page(
                        conn,
                        "SELECT json FROM actors WHERE campaign_id = ?1 ORDER BY name, id LIMIT ?2",
                        params![campaign.as_str(), fetch],
                        limit,
                        max_bytes,
                        "list actors",
                        no_adjust,
                    ),
                }
            })
            .await
    }

    async fn update_actor(
        &self,
        actor: &Actor,
        quotas: &CampaignQuotas,
    ) -> Result<bool, QuotaError> {
        quotas.check_actor_size(actor)?;
        let campaign = actor.campaign_id.clone();
        let id = actor.id.clone();
        let name = actor.name.clone();
        let json = to_json(actor, "actor")?;
        self.handle
            .write("update actor", move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE actors SET name = ?3, json = ?4 WHERE campaign_id = ?1 AND id = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![campaign.as_str(), id.as_str(), name, json])
                    })
                    .map_err(db("update actor"))?;
                Ok::<_, QuotaError>(changed > 0)
            })
            .await
    }

    async fn delete_actor(&self, campaign: &CampaignId, id: &ActorId) -> Result<bool, StoreError> {
        let campaign = campaign.clone();
        let id = id.clone();
        self.handle
            .write("delete actor", move |tx| {
                let removed = tx
                    .prepare_cached("DELETE FROM actors WHERE campaign_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.execute(params![campaign.as_str(), id.as_str()]))
                    .map_err(db("delete actor"))?;
                Ok(removed > 0)
            })
            .await
    }

    async fn put_compendium(&self, entries: &[CompendiumEntry]) -> Result<(), StoreError> {
        let rows = entries
            .iter()
            .map(|e| {
                Ok((
                    e.reference.clone(),
                    e.system.clone(),
                    e.category.clone(),
                    e.name.clone(),
                    e.name.to_lowercase(),
                    e.challenge_rating(),
                    e.spell_level(),
                    to_json(e, "compendium entry")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let count = rows.len();
        self.handle
            .write("put compendium", move |tx| {
                let mut statement = tx
                    .prepare_cached(
                        "INSERT INTO compendium
                             (ref, system, category, name, name_lower, cr, level, json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (ref) DO UPDATE SET
                             system = excluded.system, category = excluded.category,
                             name = excluded.name, name_lower = excluded.name_lower,
                             cr = excluded.cr, level = excluded.level, json = excluded.json",
                    )
                    .map_err(db("put compendium"))?;
                for (reference, system, category, name, lower, cr, level, json) in &rows {
                    statement
                        .execute(params![
                            reference, system, category, name, lower, cr, level, json
                        ])
                        .map_err(db("put compendium"))?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        debug!(count, "compendium entries stored");
        Ok(())
    }

    async fn compendium_entry(
        &self,
        reference: &str,
    ) -> Result<Option<CompendiumEntry>, StoreError> {
        let reference = reference.to_owned();
        self.handle
            .read("read compendium entry", move |conn| {
                json_by_key(
                    conn,
                    "SELECT json FROM compendium WHERE ref = ?1",
                    &reference,
                    "compendium entry",
                    "read compendium entry",
                )
            })
            .await
    }

    async fn search_compendium(
        &self,
        query: &CompendiumQuery,
    ) -> Result<CompendiumPage, StoreError> {
        let limit = query.limit.clamp(1, 100);
        let query = query.clone();
        self.handle
            .read("search compendium", move |conn| {
                let mut sql = String::from("SELECT json FROM compendium WHERE ref > ?");
                let mut values: Vec<rusqlite::types::Value> =
                    vec![query.cursor.clone().unwrap_or_default().into()];
                if let Some(system) = &query.system {
                    sql.push_str(" AND system = ?");
                    values.push(system.clone().into());
                }
                if let Some(category) = &query.category {
                    sql.push_str(" AND category = ?");
                    values.push(category.clone().into());
                }
                if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
                    // `instr` takes the needle literally: no wildcard or pattern characters.
                    sql.push_str(" AND instr(name_lower, ?) > 0");
                    values.push(q.to_lowercase().into());
                }
                if query.cr_min.is_some() || query.cr_max.is_some() {
                    sql.push_str(" AND cr IS NOT NULL");
                }
                if let Some(min) = query.cr_min {
                    sql.push_str(" AND cr >= ?");
                    values.push(min.into());
                }
                if let Some(max) = query.cr_max {
                    sql.push_str(" AND cr <= ?");
                    values.push(max.into());
                }
                if let Some(level) = query.level {
                    sql.push_str(" AND level = ?");
                    values.push(level.into());
                }
                sql.push_str(" ORDER BY ref LIMIT ?");
                values.push(limit_of(limit + 1).into());
                let page = read_page::<CompendiumEntry, _>(
                    conn,
                    &sql,
                    params_from_iter(values),
                    limit,
                    query.max_bytes,
                    "search compendium",
                    |_, _| Ok(()),
                )?;
                Ok(CompendiumPage {
                    items: page.items,
                    next_cursor: page.next.map(|k| k.reference),
                })
            })
            .await
    }

    async fn create_session(
        &self,
        session: &GameSession,
        quotas: &CampaignQuotas,
    ) -> Result<(), QuotaError> {
        let campaign = session.campaign_id.clone();
        let (id, created_at, json, archived_through) = session_row(session)?;
        let max_sessions = quotas.max_sessions;
        self.handle
            .write("create session", move |tx| {
                let op = "create session";
                check_count(tx, &campaign, Quota::Sessions, max_sessions)?;
                // A row the archive made first (campaign_id NULL) is completed, keeping its
                // bookkeeping; a real session is a duplicate.
                let written = tx
                    .prepare_cached(
                        "INSERT INTO sessions (id, campaign_id, created_at, json, archived_through)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (id) DO UPDATE SET
                             campaign_id = excluded.campaign_id,
                             created_at = excluded.created_at,
                             json = excluded.json,
                             archived_through = max(archived_through, excluded.archived_through)
                         WHERE campaign_id IS NULL",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            id,
                            campaign.as_str(),
                            created_at,
                            json,
                            archived_through
                        ])
                    })
                    .map_err(db(op))?;
                if written == 0 {
                    return Err(StoreError::AlreadyExists(format!("session {id}")).into());
                }
                debug!(campaign = %campaign, session = %id, "session created");
                Ok(())
            })
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<GameSession>, StoreError> {
        let id = id.clone();
        self.handle
            .read("read session", move |conn| {
                let row: Option<(String, i64)> = conn
                    .prepare_cached(
                        "SELECT json, archived_through FROM sessions
                         WHERE id = ?1 AND campaign_id IS NOT NULL",
                    )
                    .and_then(|mut s| {
                        s.query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(db("read session"))?;
                let Some((json, through)) = row else {
                    return Ok(None);
                };
                let mut session: GameSession = from_json(&json, "session")?;
                session.archived_through = to_u64(through, "archived_through")?;
                Ok(Some(session))
            })
            .await
    }

    async fn sessions(
        &self,
        campaign: &CampaignId,
        page: &PageRequest<SessionKey>,
    ) -> Result<Page<GameSession, SessionKey>, StoreError> {
        let campaign = campaign.clone();
        let limit = page.clamped_limit();
        let max_bytes = page.max_bytes;
        let after = page.after.clone();
        self.handle
            .read("list sessions", move |conn| {
                let fetch = limit_of(limit.saturating_add(1));
                match &after {
                    Some(key) => read_page(
                        conn,
                        "SELECT json, archived_through FROM sessions
                         WHERE campaign_id = ?1 AND (created_at, id) < (?2, ?3)
                         ORDER BY created_at DESC, id DESC LIMIT ?4",
                        params![
                            campaign.as_str(),
                            bound(key.created_at),
                            key.id.as_str(),
                            fetch
                        ],
                        limit,
                        max_bytes,
                        "list sessions",
                        stored_progress,
                    ),
                    None => read_page(
                        conn,
                        "SELECT json, archived_through FROM sessions WHERE campaign_id = ?1
                         ORDER BY created_at DESC, id DESC LIMIT ?2",
                        params![campaign.as_str(), fetch],
                        limit,
                        max_bytes,
                        "list sessions",
                        stored_progress,
                    ),
                }
            })
            .await
    }

    async fn update_session(&self, session: &GameSession) -> Result<bool, StoreError> {
        let campaign = session.campaign_id.clone();
        let (id, created_at, json, archived_through) = session_row(session)?;
        self.handle
            .write("update session", move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE sessions SET campaign_id = ?2, created_at = ?3, json = ?4,
                             archived_through = max(archived_through, ?5)
                         WHERE id = ?1 AND campaign_id IS NOT NULL",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            id,
                            campaign.as_str(),
                            created_at,
                            json,
                            archived_through
                        ])
                    })
                    .map_err(db("update session"))?;
                Ok(changed > 0)
            })
            .await
    }
}
