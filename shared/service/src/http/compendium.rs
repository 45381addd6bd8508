//! The compendium: template search and lookup.

use axum::Json;
use axum::extract::State;
use dlab_core::actor::{ActorError, CompendiumEntry, CompendiumRef};
use dlab_store::model::{CompendiumKey, CompendiumQuery, ListKey};

use super::AppState;
use super::api::{
    COMPENDIUM_LIMIT, CompendiumPageBody, CompendiumParams, cursor_param, doc, int_param,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, Caller};

fn non_blank(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Searches templates by name, category (`type`) and system, ordered by reference; a page
/// stops at `limit` entries or before passing the byte budget.
#[utoipa::path(get, operation_id = "searchCompendium", path = "/compendium", tag = "compendium", params(CompendiumParams),
    responses(
        (status = 200, description = "A page of entries", body = doc::CompendiumPage),
        (status = 400, description = "A parameter is invalid (limit outside 1..=100, or a cursor this search did not make)", body = ErrorBody),
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
    let query = CompendiumQuery {
        q: non_blank(params.q),
        category: non_blank(params.category),
        system: non_blank(params.system),
        cr_min: None,
        cr_max: None,
        level: None,
        limit: limit as usize,
        cursor: cursor_param::<CompendiumKey>(params.cursor.as_deref())?.map(|k| k.reference),
        max_bytes: app.settings().max_list_bytes,
    };
    let page = app.deps().campaigns.search_compendium(&query).await?;
    Ok(Json(CompendiumPageBody {
        items: page.items,
        next_cursor: page
            .next_cursor
            .map(|reference| CompendiumKey { reference }.to_cursor()),
        attribution: app.settings().attribution.clone(),
    }))
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
