//! The compendium: template search and lookup, and the administrators' batch import.

use axum::Json;
use axum::extract::State;
use dlab_core::actor::{ActorError, CompendiumEntry, CompendiumRef};
use dlab_store::model::{CompendiumQuery, ListKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use super::AppState;
use super::api::{
    BatchWritten, COMPENDIUM_LIMIT, CompendiumBatch, CompendiumPageBody, CompendiumParams,
    MAX_BATCH_ENTRIES, MAX_NAME_CHARS, MAX_SPELL_LEVEL, cr_param, cursor_param, doc, int_param,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, ApiPath, ApiQuery, Caller};

fn non_blank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Where a search page ends: the last reference, and the numeric filters of the search that
/// made it, so its cursor is refused by a search with other filters. It reads the cursors of
/// `CompendiumKey` (same listing, no filters), which were made before the filters existed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SearchKey {
    reference: String,
    #[serde(default, rename = "f", skip_serializing_if = "Option::is_none")]
    filters: Option<String>,
}

impl ListKey for SearchKey {
    const LISTING: &'static str = "compendium";
}

/// The numeric filters of a search as they are bound into its cursors (`None`: no filter).
fn filter_tag(query: &CompendiumQuery) -> Option<String> {
    (query.cr_min.is_some() || query.cr_max.is_some() || query.level.is_some()).then(|| {
        format!(
            "cr={:?}..{:?};level={:?}",
            query.cr_min, query.cr_max, query.level
        )
    })
}

/// The challenge-rating range of `cr`, `crMin` and `crMax`.
fn cr_range(params: &CompendiumParams) -> Result<(Option<f64>, Option<f64>), ApiError> {
    let exact = cr_param(params.cr.as_deref(), "cr")?;
    let min = cr_param(params.cr_min.as_deref(), "crMin")?;
    let max = cr_param(params.cr_max.as_deref(), "crMax")?;
    if let Some(cr) = exact {
        if min.is_some() || max.is_some() {
            return Err(ApiError::bad_request(
                "cr cannot be combined with crMin or crMax",
            ));
        }
        return Ok((Some(cr), Some(cr)));
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        return Err(ApiError::bad_request(format!(
            "crMin must not be above crMax ({lo} > {hi})"
        )));
    }
    Ok((min, max))
}

/// Searches templates by name, category (`type`), system, challenge rating (`cr`, `crMin`,
/// `crMax`) and spell `level`, ordered by reference; a page stops at `limit` entries or before
/// passing the byte budget.
#[utoipa::path(get, operation_id = "searchCompendium", path = "/compendium", tag = "compendium", params(CompendiumParams),
    responses(
        (status = 200, description = "A page of entries", body = doc::CompendiumPage),
        (status = 400, description = "A parameter is invalid (limit outside 1..=100, a challenge rating outside 0..=30 or not a number, `cr` with `crMin`/`crMax`, `crMin` above `crMax`, a level outside 0..=9, or a cursor this search did not make)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
    ))]
pub async fn search(
    State(app): State<AppState>,
    Caller(_user): Caller,
    ApiQuery(params): ApiQuery<CompendiumParams>,
) -> Result<Json<CompendiumPageBody<CompendiumEntry>>, ApiError> {
    let (default, max) = COMPENDIUM_LIMIT;
    let limit = int_param(
        params.limit.as_deref(),
        "limit",
        default as u64,
        1..=max as u64,
    )?;
    let (cr_min, cr_max) = cr_range(&params)?;
    let level = match params.level.as_deref().map(str::trim) {
        None | Some("") => None,
        raw => Some(int_param(raw, "level", 0, 0..=MAX_SPELL_LEVEL)? as i64),
    };
    let mut query = CompendiumQuery {
        q: non_blank(params.q),
        category: non_blank(params.category),
        system: non_blank(params.system),
        cr_min,
        cr_max,
        level,
        limit: limit as usize,
        cursor: None,
        max_bytes: app.settings().max_list_bytes,
    };
    let filters = filter_tag(&query);
    if let Some(key) = cursor_param::<SearchKey>(params.cursor.as_deref())? {
        if key.filters != filters {
            return Err(ApiError::bad_request(
                "cursor: it was made by a search with other cr, crMin, crMax or level filters",
            ));
        }
        query.cursor = Some(key.reference);
    }
    let page = app.deps().campaigns.search_compendium(&query).await?;
    Ok(Json(CompendiumPageBody {
        items: page.items,
        next_cursor: page.next_cursor.map(|reference| {
            SearchKey {
                reference,
                filters: filters.clone(),
            }
            .to_cursor()
        }),
        attribution: app.settings().attribution.clone(),
    }))
}

/// Inserts or replaces templates (administrators only: the user ids of `DLAB_ADMINS`). Every
/// entry is checked first; when one is invalid nothing is written.
#[utoipa::path(post, operation_id = "putCompendiumBatch", path = "/compendium/batch", tag = "compendium",
    request_body(content = doc::CompendiumBatch, description = "At most 1000 entries and 1 MiB"),
    responses(
        (status = 200, description = "Every entry was written", body = BatchWritten),
        (status = 400, description = "The body or an entry is invalid (`entries[3].ref: …`); nothing was written", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "The caller is not an administrator", body = ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB", body = ErrorBody),
    ))]
pub async fn batch(
    State(app): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<CompendiumBatch>,
) -> Result<Json<BatchWritten>, ApiError> {
    if body.entries.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "entries: at most {MAX_BATCH_ENTRIES} entries per batch, got {}",
            body.entries.len()
        )));
    }
    let entries = body
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, raw)| batch_entry(i, raw))
        .collect::<Result<Vec<_>, _>>()?;
    if !entries.is_empty() {
        app.deps().campaigns.put_compendium(&entries).await?;
    }
    info!(user = %user, written = entries.len(), "compendium batch written");
    Ok(Json(BatchWritten {
        written: entries.len(),
    }))
}

/// Checks entry `i` of a batch; errors name it (`entries[3].ref: …`).
fn batch_entry(i: usize, raw: Value) -> Result<CompendiumEntry, ApiError> {
    let bad = |field: &str, reason: &str| {
        ApiError::bad_request(format!("entries[{i}].{field}: {reason}"))
    };
    let Value::Object(mut fields) = raw else {
        return Err(ApiError::bad_request(format!(
            "entries[{i}]: must be an object"
        )));
    };
    const KNOWN: [&str; 5] = ["ref", "system", "category", "name", "data"];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        let unknown: String = unknown.chars().take(40).collect();
        return Err(bad(&unknown, "unknown field"));
    }
    let mut text = |field: &'static str| match fields.remove(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(field, "must be a string")),
        None => Err(bad(field, "is required")),
    };
    let reference = text("ref")?;
    let system = text("system")?;
    let category = text("category")?;
    let name = text("name")?;
    let parsed = CompendiumRef::parse(&reference).map_err(|e| bad("ref", &e.to_string()))?;
    if system != parsed.system() {
        return Err(bad("system", "must be the first part of ref"));
    }
    if category != parsed.category() {
        return Err(bad("category", "must be the second part of ref"));
    }
    if name.trim().is_empty() {
        return Err(bad("name", "must not be blank"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(bad(
            "name",
            &format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("name", "must not contain control characters"));
    }
    let data = match fields.remove("data") {
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err(bad("data", "must be an object")),
        None => return Err(bad("data", "is required")),
    };
    Ok(CompendiumEntry {
        reference,
        system,
        category,
        name,
        data,
    })
}

/// One template by reference.
#[utoipa::path(get, operation_id = "getCompendiumEntry", path = "/compendium/{ref}", tag = "compendium",
    params(("ref" = String, Path, description = "`<system>:<category>:<slug>`", example = "dnd5e:monsters:goblin")),
    responses(
        (status = 200, description = "The entry", body = doc::CompendiumEntry),
        (status = 400, description = "The reference is not `<system>:<category>:<slug>`", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 404, description = "`Compendium entry not found: <ref>`", body = ErrorBody),
    ))]
pub async fn entry(
    State(app): State<AppState>,
    Caller(_user): Caller,
    ApiPath(reference): ApiPath<String>,
) -> Result<Json<CompendiumEntry>, ApiError> {
    let reference = CompendiumRef::parse(&reference)?;
    app.deps()
        .campaigns
        .compendium_entry(reference.as_str())
        .await?
        .map(Json)
        .ok_or_else(|| ActorError::CompendiumNotFound(reference.to_string()).into())
}
