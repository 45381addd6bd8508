//! Session lifecycle routes: end, compact, the GM conflict report, and paged state documents.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConflictId, EventId, InstanceId, SessionId};
use dlab_store::model::{ConflictKey, ConflictRecord, GameSession, ListKey, SessionStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::access::session_access;
use super::api::{ListParams, Page, cursor_param, doc};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::conflicts::{self, Decision};
use crate::maintenance::{self, CompactionOutcome};

/// Ends a session (GM): final backfill and snapshot, hot state released, status `ended`;
/// submits are then refused with `session_ended`, and the log stays readable. Ending an ended
/// session again is harmless (it finishes what an interrupted end left undone).
#[utoipa::path(post, operation_id = "endSession", path = "/sessions/{id}/end", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The ended session", body = doc::GameSession),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "A store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn end(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GameSession>, ApiError> {
    let deps = app.deps();
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    Ok(Json(maintenance::end_session(deps, session).await?))
}

/// The seed's compaction result.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionResult {
    /// Events folded into the new snapshot.
    pub original_event_count: u64,
    /// Records standing for them in the snapshot (actor instances plus overrides).
    pub compacted_event_count: u64,
    /// Whether a snapshot was made (false when nothing new was archived).
    pub snapshot_created: bool,
    /// Bytes removed from the hot log.
    pub space_saved: i64,
}

/// Compacts a session now (GM): a snapshot of every archived event since the last one, and
/// the hot log trimmed below it (keeping the tail).
#[utoipa::path(post, operation_id = "compactSession", path = "/sessions/{id}/compact", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "What the compaction did", body = CompactionResult),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Another compaction of this session is running; retry", body = ErrorBody),
    ))]
pub async fn compact(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CompactionResult>, ApiError> {
    let deps = app.deps();
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    let nothing = CompactionResult {
        original_event_count: 0,
        compacted_event_count: 0,
        snapshot_created: false,
        space_saved: 0,
    };
    match maintenance::compact_now(deps, &session.id).await? {
        CompactionOutcome::Done(r) => Ok(Json(CompactionResult {
            original_event_count: r.original_event_count,
            compacted_event_count: r.compacted_event_count,
            snapshot_created: r.snapshot_created,
            space_saved: r.space_saved,
        })),
        CompactionOutcome::NoHotState => Ok(Json(nothing)),
        CompactionOutcome::Busy => Err(ApiError::conflict(format!(
            "a compaction of session {} is running; retry",
            session.id
        ))),
    }
}

/// The session's conflict report (GM), newest first, paged.
#[utoipa::path(get, operation_id = "listConflicts", path = "/sessions/{id}/conflicts", tag = "conflicts",
    params(("id" = String, Path, description = "Session id"), ListParams),
    responses(
        (status = 200, description = "A page of conflicts", body = ConflictList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
pub async fn list_conflicts(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<ConflictRecord>>, ApiError> {
    let deps = app.deps();
    let request = params.request::<ConflictKey>(app.settings())?;
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    let page = deps.conflicts.list(&session.id, &request).await?;
    Ok(Json(Page::from_store(page)))
}

/// `{items, nextCursor}` of conflicts (OpenAPI).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictList {
    /// Conflicts: `{conflictId, sessionId, kind, description, options, events, choices,
    /// createdAt, resolved, resolution?}`.
    pub items: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` only when the list is complete.
    pub next_cursor: Option<String>,
}

/// `POST /sessions/{id}/conflicts`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Escalation {
    /// The id of the submit that was refused with `conflict`.
    pub event_id: String,
    /// Why the GM should decide (shown in the report; at most 500 characters are kept).
    #[serde(default)]
    pub reason: String,
}

/// A member escalates their own rejected compare-and-set to the GM instead of rebasing (within
/// ten minutes of the rejection). The GM gets `conflict:resolution_needed`.
#[utoipa::path(post, operation_id = "escalateConflict", path = "/sessions/{id}/conflicts", tag = "conflicts", request_body = Escalation,
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 201, description = "The new conflict", body = Value),
        (status = 200, description = "The event was escalated before: the same conflict", body = Value),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member, or not the sender of the event", body = ErrorBody),
        (status = 404, description = "No such session, or no recent rejection of that event", body = ErrorBody),
    ))]
pub async fn escalate(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Escalation>,
) -> Result<(StatusCode, Json<ConflictRecord>), ApiError> {
    let deps = app.deps();
    let (session, _) = session_access(deps, &user, &SessionId::new(id)).await?;
    let event_id = uuid::Uuid::parse_str(body.event_id.trim())
        .map(|u| EventId::new(u.hyphenated().to_string()))
        .map_err(|_| ApiError::bad_request("eventId must be the UUID of the rejected event"))?;
    let (record, created) =
        conflicts::escalate(deps, &user, &session.id, &event_id, &body.reason).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record)))
}

/// `POST /sessions/{id}/conflicts/{conflictId}/resolve`: exactly one of the two.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveBody {
    /// One of the conflict's events: its values are force-set.
    #[serde(default)]
    pub chosen_event_id: Option<String>,
    /// `{instanceId: {path: value}}` to force-set.
    #[serde(default)]
    pub final_state: Option<Value>,
}

/// The resolved conflict and the committed `core:gm_override`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// The conflict, now `resolved`.
    pub conflict: ConflictRecord,
    /// The override, sequenced and broadcast like any event.
    pub event: GameEvent,
}

/// The GM resolves a conflict: the decision is committed as a `core:gm_override` (force-set),
/// broadcast as `event:applied`; one resolve wins a race (the others get 409).
#[utoipa::path(post, operation_id = "resolveConflict", path = "/sessions/{id}/conflicts/{conflictId}/resolve", tag = "conflicts", request_body = ResolveBody,
    params(("id" = String, Path, description = "Session id"),
           ("conflictId" = String, Path, description = "Conflict id")),
    responses(
        (status = 200, description = "The resolved conflict and the override event", body = Value),
        (status = 400, description = "Invalid body (neither or both fields, an unknown event, a bad finalState)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session or conflict", body = ErrorBody),
        (status = 409, description = "Already resolved otherwise, or the session has ended", body = ErrorBody),
    ))]
pub async fn resolve(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, conflict)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<Resolved>, ApiError> {
    let deps = app.deps();
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    if session.status == SessionStatus::Ended {
        return Err(crate::error::ServiceError::SessionEnded(session.id).into());
    }
    let decision = match (body.chosen_event_id, body.final_state) {
        (Some(chosen), None) => Decision::Chosen(EventId::new(chosen.trim())),
        (None, Some(state)) => Decision::FinalState(state),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of chosenEventId and finalState",
            ));
        }
    };
    let (conflict, event) = conflicts::resolve(
        deps,
        &user,
        &session.id,
        &ConflictId::new(conflict),
        decision,
    )
    .await?;
    Ok(Json(Resolved { conflict, event }))
}

/// `?cursor=` of the paged state documents.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The previous page's `nextCursor`: the document is paged by actor instance when it is
    /// bigger than the state byte budget (4 MiB by default, under Lambda's 6 MB response).
    pub cursor: Option<String>,
}

/// The instance a paged state document continues after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateKey {
    /// The last instance of the previous page.
    pub instance: InstanceId,
}

impl ListKey for StateKey {
    const LISTING: &'static str = "state";
}

/// Cuts a state document (a `GameSessionState`, or a snapshot's `state`) into a page: every
/// field but `activeActors` on each page, and the instances (in id order) after `after` while
/// they fit `max_bytes` (at least one). Returns the page and the cursor of the next one.
pub fn page_state(
    state: Value,
    after: Option<&InstanceId>,
    max_bytes: usize,
) -> (Value, Option<String>) {
    let Value::Object(mut doc) = state else {
        return (state, None);
    };
    let actors = match doc.remove("activeActors") {
        Some(Value::Object(actors)) => actors,
        other => {
            if let Some(v) = other {
                doc.insert("activeActors".to_owned(), v);
            }
            return (Value::Object(doc), None);
        }
    };
    let mut used = serde_json::to_vec(&doc).map_or(0, |v| v.len());
    let mut page = Map::new();
    let mut next = None;
    for (instance, actor) in actors
        .into_iter()
        .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a.as_str()))
    {
        let size = instance.len() + serde_json::to_vec(&actor).map_or(0, |v| v.len()) + 4;
        if !page.is_empty() && used + size > max_bytes {
            let last = page.keys().next_back().cloned().unwrap_or_default();
            next = Some(
                StateKey {
                    instance: InstanceId::new(last),
                }
                .to_cursor(),
            );
            break;
        }
        used += size;
        page.insert(instance, actor);
    }
    doc.insert("activeActors".to_owned(), Value::Object(page));
    if let Some(cursor) = &next {
        doc.insert("nextCursor".to_owned(), Value::String(cursor.clone()));
    }
    (Value::Object(doc), next)
}

/// Decodes `?cursor=` of a state document.
pub fn state_cursor(params: &StateParams) -> Result<Option<InstanceId>, ApiError> {
    Ok(cursor_param::<StateKey>(params.cursor.as_deref())?.map(|k| k.instance))
}
