//! Game sessions: creation, state, actor instances (committed as server events and broadcast
//! like any event), paged events and the latest snapshot.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dlab_core::changes::{ACTOR_ADDED, ACTOR_REMOVED, parse_instance};
use dlab_core::codes::ErrorCode;
use dlab_core::compaction::Snapshot;
use dlab_core::event::{GameEvent, Sender, check_type_permission};
use dlab_core::ids::{ActorId, CampaignId, EventId, InstanceId, Sequence, SessionId, UserId};
use dlab_core::state::GameSessionState;
use dlab_store::model::{GameSession, PageFill, SessionKey, SessionStatus, now_ms};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::AppState;
use super::access::{campaign_access, session_access};
use super::api::{
    AddSessionActor, CreateSession, EVENTS_LIMIT, EventsParams, ListParams, Page,
    SessionActorChange, display_name, doc, int_param,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::pipeline;

/// How many generated instance ids are tried before giving up on a taken one.
const INSTANCE_ID_ATTEMPTS: usize = 4;
/// Events read per store call while filling a page of `GET /sessions/{id}/events`, so a page
/// cut by its byte budget never had the whole `limit` in memory.
const EVENTS_READ_CHUNK: u64 = 100;

/// Creates a game session (GM only): the session document, then its hot state.
#[utoipa::path(post, operation_id = "createSession", path = "/campaigns/{id}/sessions", tag = "sessions", request_body = CreateSession,
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 201, description = "The new session", body = doc::GameSession),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign has reached its quota of sessions (`DLAB_MAX_SESSIONS_PER_CAMPAIGN`)", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<GameSession>), ApiError> {
    let deps = app.deps();
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    access.require_gm()?;
    let session = GameSession {
        id: SessionId::new(uuid::Uuid::new_v4().to_string()),
        campaign_id: access.campaign.id.clone(),
        name: display_name(&body.name)?,
        status: SessionStatus::Active,
        created_by: user.clone(),
        created_at: now_ms(),
        archived_through: 0,
    };
    deps.campaigns
        .create_session(&session, &app.settings().quotas)
        .await?;
    deps.log.init_session(&session.id).await?;
    info!(campaign = %session.campaign_id, session = %session.id, user = %user, "session created");
    Ok((StatusCode::CREATED, Json(session)))
}

/// The campaign's sessions (members), newest first, one page at a time.
#[utoipa::path(get, operation_id = "listSessions", path = "/campaigns/{id}/sessions", tag = "sessions",
    params(("id" = String, Path, description = "Campaign id"), ListParams),
    responses(
        (status = 200, description = "A page of the campaign's sessions", body = doc::SessionList),
        (status = 400, description = "A parameter is invalid (limit outside 1..=1000, or a cursor this list did not make)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<GameSession>>, ApiError> {
    let deps = app.deps();
    let request = params.request::<SessionKey>(app.settings())?;
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    let page = deps
        .campaigns
        .sessions(&access.campaign.id, &request)
        .await?;
    Ok(Json(Page::from_store(page)))
}

/// The live state, rehydrating the hot state when it is missing. An ended session whose hot
/// state was released is read, never brought back: see [`ended_state`].
async fn live_state(deps: &Deps, session: &GameSession) -> Result<GameSessionState, ApiError> {
    if let Some(state) = deps.log.state(&session.id).await? {
        return Ok(state);
    }
    if session.status == SessionStatus::Ended {
        return ended_state(deps, &session.id).await;
    }
    pipeline::rehydrate(deps, &session.id).await?;
    deps.log.state(&session.id).await?.ok_or_else(|| {
        ServiceError::Unavailable(dlab_store::StoreError::HotStateMissing(session.id.clone()))
            .into()
    })
}

/// An ended session's state, built in memory from its latest snapshot and the archived events
/// after it. Its final snapshot usually covers everything, but not always: ending a session
/// that never had an event makes no snapshot, and neither does ending one whose hot state was
/// already released as idle. Either way the state must stay readable (the log does), so this
/// never answers `session_ended` (schemathesis found `GET /sessions/{id}` doing that).
async fn ended_state(deps: &Deps, session: &SessionId) -> Result<GameSessionState, ApiError> {
    let mut state = match deps.snapshots.latest(session).await? {
        Some(snapshot) if snapshot.verify() => snapshot.state,
        _ => GameSessionState::new(session.clone(), None),
    };
    let head = pipeline::head(deps, session).await?;
    let mut reader = pipeline::RangeReader::new(deps, session, state.last_event_sequence, head);
    while let Some(chunk) = reader.next_page(EVENTS_READ_CHUNK as usize).await? {
        for event in &chunk {
            state.apply(event).map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!(
                        "archived event {} does not apply: {e}",
                        event.sequence.get()
                    ),
                )
            })?;
        }
    }
    Ok(state)
}

/// The whole current state of a session (members): the latest snapshot plus the events after
/// it (the live hot state, or for an ended session its final snapshot). Paged by actor instance
/// (`?cursor=`, `nextCursor`) when bigger than the state byte budget.
#[utoipa::path(get, operation_id = "getSessionState", path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), super::lifecycle::StateParams),
    responses(
        (status = 200, description = "The session's state", body = doc::GameSessionState),
        (status = 400, description = "A malformed cursor", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
    ))]
pub async fn state(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<super::lifecycle::StateParams>,
) -> Result<Json<Value>, ApiError> {
    let deps = app.deps();
    let after = super::lifecycle::state_cursor(&params)?;
    let (session, _) = session_access(deps, &user, &SessionId::new(id)).await?;
    let mut state = live_state(deps, &session).await?;
    state.campaign_id = Some(session.campaign_id);
    let value = serde_json::to_value(&state)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("state: {e}")))?;
    let (page, _) =
        super::lifecycle::page_state(value, after.as_ref(), app.settings().max_state_bytes);
    Ok(Json(page))
}

/// A generated instance id: `<slug of the name>-<4 hex>`.
fn generated_instance(name: &str) -> InstanceId {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "actor" } else { slug };
    let hex = &uuid::Uuid::new_v4().simple().to_string()[..4];
    InstanceId::new(format!("{slug}-{hex}"))
}

fn requested_instance(raw: &str) -> Result<InstanceId, ApiError> {
    let instance =
        parse_instance(raw).map_err(|e| ApiError::bad_request(format!("instanceId: {e}")))?;
    if instance.is_session() {
        return Err(ApiError::bad_request(
            "instanceId: `$session` addresses the session itself, not an actor",
        ));
    }
    Ok(instance)
}

fn require_active(session: &GameSession) -> Result<(), ApiError> {
    match session.status {
        SessionStatus::Active => Ok(()),
        SessionStatus::Ended => Err(ApiError::conflict(format!(
            "session {} has ended",
            session.id
        ))),
    }
}

/// Publishes a server event through the one publish path (the same atomic commit as a
/// submit, broadcast to every connection of the session). `taken` maps the commit's refusal
/// (the only one an add or remove can meet once parsed: instance taken or missing) to the
/// route's own answer.
async fn commit_server_event(
    deps: &Deps,
    session: &SessionId,
    user: &UserId,
    event_type: &str,
    payload: Value,
    taken: impl FnOnce() -> ApiError,
) -> Result<GameEvent, ApiError> {
    check_type_permission(event_type, Sender::Server).map_err(ServiceError::from)?;
    let event = GameEvent {
        id: EventId::new(uuid::Uuid::new_v4().to_string()),
        sequence: Sequence::ZERO,
        timestamp: now_ms(),
        client_timestamp: None,
        user_id: user.clone(),
        session_id: session.clone(),
        event_type: event_type.to_owned(),
        payload,
        checksum: None,
    };
    let stored = match pipeline::publish(deps, event, pipeline::Origin::Server).await {
        Ok(published) => published.event,
        Err(ServiceError::Refused(_)) => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    info!(session = %session, seq = stored.sequence.get(), event_type, "server event committed");
    Ok(stored)
}

/// Places an actor of the session's campaign in the session (GM only): its whole document
/// becomes the instance's base values in a `core:session:actor_added` event, committed and
/// broadcast as `event:applied`.
#[utoipa::path(post, operation_id = "addSessionActor", path = "/sessions/{id}/actors", tag = "sessions", request_body = AddSessionActor,
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 201, description = "The instance and the committed event", body = doc::SessionActorChange),
        (status = 400, description = "Invalid body or instance id", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session, or no such actor in the session's campaign", body = ErrorBody),
        (status = 409, description = "The instance id is taken, or the session has ended", body = ErrorBody),
        (status = 413, description = "The actor document does not fit one event payload", body = ErrorBody),
    ))]
pub async fn add_actor(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddSessionActor>,
) -> Result<(StatusCode, Json<SessionActorChange<GameEvent>>), ApiError> {
    let deps = app.deps();
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    require_active(&session)?;
    let requested = body
        .instance_id
        .as_deref()
        .map(requested_instance)
        .transpose()?;
    let actor = deps
        .campaigns
        .actor(&session.campaign_id, &ActorId::new(body.actor_id.as_str()))
        .await?
        .filter(|a| a.campaign_id == session.campaign_id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "actor {} not found in campaign {} of session {}",
                body.actor_id, session.campaign_id, session.id
            ))
        })?;
    let attempts = if requested.is_some() {
        1
    } else {
        INSTANCE_ID_ATTEMPTS
    };
    let mut last = None;
    for _ in 0..attempts {
        let instance = requested
            .clone()
            .unwrap_or_else(|| generated_instance(&actor.name));
        let payload = json!({
            "instanceId": instance,
            "actorId": actor.id,
            "actor": actor.to_value(),
        });
        let taken = || ApiError::conflict(format!("instance {instance} is already in the session"));
        match commit_server_event(deps, &session.id, &user, ACTOR_ADDED, payload, taken).await {
            Ok(event) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(SessionActorChange {
                        instance_id: instance.0,
                        event,
                    }),
                ));
            }
            Err(e) if e.code == dlab_core::codes::ErrorCode::Conflict => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::conflict("instance id taken")))
}

/// Removes an actor instance from the session (GM only) with a `core:session:actor_removed`
/// event, committed and broadcast.
#[utoipa::path(delete, operation_id = "removeSessionActor", path = "/sessions/{id}/actors/{instanceId}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"),
           ("instanceId" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance and the committed event", body = doc::SessionActorChange),
        (status = 400, description = "Invalid instance id", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session or instance", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
    ))]
pub async fn remove_actor(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, instance)): ApiPath<(String, String)>,
) -> Result<Json<SessionActorChange<GameEvent>>, ApiError> {
    let deps = app.deps();
    let (session, access) = session_access(deps, &user, &SessionId::new(id)).await?;
    access.require_gm()?;
    require_active(&session)?;
    let instance = requested_instance(&instance)?;
    let missing = || {
        ApiError::not_found(format!(
            "instance {instance} is not in session {}",
            session.id
        ))
    };
    let state = live_state(deps, &session).await?;
    if !state.active_actors.contains_key(&instance) {
        return Err(missing());
    }
    let payload = json!({ "instanceId": instance });
    let event =
        commit_server_event(deps, &session.id, &user, ACTOR_REMOVED, payload, missing).await?;
    Ok(Json(SessionActorChange {
        instance_id: instance.0,
        event,
    }))
}

/// The runtime actor of an instance (members): its base document with the session's overrides
/// applied, plus `instanceId`.
#[utoipa::path(get, operation_id = "getRuntimeActor", path = "/sessions/{id}/actors/{instanceId}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"),
           ("instanceId" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The runtime actor", body = doc::RuntimeActor),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session or instance", body = ErrorBody),
    ))]
pub async fn runtime_actor(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, instance)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let deps = app.deps();
    let (session, _) = session_access(deps, &user, &SessionId::new(id)).await?;
    let state = live_state(deps, &session).await?;
    state
        .runtime_actor(&InstanceId::new(instance.as_str()))
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "instance {instance} is not in session {}",
                session.id
            ))
        })
}

/// Committed events after `after` (or `cursor`), contiguous and in order (members): replay
/// over HTTP. A page stops at `limit` events or before the event that would pass the byte
/// budget; `nextCursor` is `null` only when the page reaches the head.
#[utoipa::path(get, operation_id = "listSessionEvents", path = "/sessions/{id}/events", tag = "sessions", params(("id" = String, Path, description = "Session id"), EventsParams),
    responses(
        (status = 200, description = "A page of events", body = doc::EventPage),
        (status = 400, description = "A parameter is invalid (limit outside 1..=1000, after or cursor not a sequence, or both given and different)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 503, description = "Events after `after` cannot be read now (a hole in the archive)", body = ErrorBody),
    ))]
pub async fn events(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Json<Page<GameEvent>>, ApiError> {
    let deps = app.deps();
    let (default, max) = EVENTS_LIMIT;
    let after = int_param(params.after.as_deref(), "after", 0, 0..=u64::MAX)?;
    let cursor = int_param(params.cursor.as_deref(), "cursor", after, 0..=u64::MAX)?;
    if params
        .after
        .as_deref()
        .is_some_and(|a| !a.trim().is_empty())
        && cursor != after
    {
        return Err(ApiError::bad_request(
            "after and cursor name the same position: give one of them",
        ));
    }
    let after = cursor;
    let limit = int_param(
        params.limit.as_deref(),
        "limit",
        default as u64,
        1..=max as u64,
    )?;
    let (session, _) = session_access(deps, &user, &SessionId::new(id)).await?;
    let head = pipeline::head(deps, &session.id).await?;
    if after >= head.get() {
        return Ok(Json(Page::all(vec![])));
    }
    let end = Sequence(after.saturating_add(limit).min(head.get()));
    let mut fill = PageFill::new(limit as usize, app.settings().max_list_bytes);
    let mut reader = pipeline::RangeReader::new(deps, &session.id, Sequence(after), end);
    let mut read_to = after;
    'read: loop {
        let chunk = match reader.next_page(EVENTS_READ_CHUNK as usize).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // The events read so far are contiguous: serve them, with a cursor that resumes
            // where the failure was.
            Err(e) if read_to > after => {
                warn!(session = %session.id, after = read_to, error = %e,
                      "events page ends early: the rest could not be read");
                break;
            }
            Err(e) => return Err(e.into()),
        };
        for event in chunk {
            let sequence = event.sequence.get();
            let taken = fill.offer(event).map_err(|e| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("an event could not be serialized: {e}"),
                )
            })?;
            if !taken {
                break 'read;
            }
            read_to = sequence;
        }
    }
    let (items, _) = fill.into_parts();
    let Some(last) = items.last().map(|e| e.sequence) else {
        warn!(session = %session.id, after, head = head.get(), "events after the cursor could not be read");
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "events after {after} of session {} cannot be read now; retry later",
                session.id
            ),
        ));
    };
    let next_cursor = (last < head).then(|| last.to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// The latest snapshot of a session (members). Paged by actor instance of its `state`
/// (`?cursor=`, `nextCursor`) when bigger than the state byte budget.
#[utoipa::path(get, operation_id = "getSnapshot", path = "/sessions/{id}/snapshot", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), super::lifecycle::StateParams),
    responses(
        (status = 200, description = "The latest snapshot", body = doc::Snapshot),
        (status = 400, description = "A malformed cursor", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the session's campaign", body = ErrorBody),
        (status = 404, description = "No such session, or no snapshot yet", body = ErrorBody),
    ))]
pub async fn snapshot(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<super::lifecycle::StateParams>,
) -> Result<Json<Value>, ApiError> {
    let deps = app.deps();
    let after = super::lifecycle::state_cursor(&params)?;
    let (session, _) = session_access(deps, &user, &SessionId::new(id)).await?;
    let snapshot: Snapshot = deps.snapshots.latest(&session.id).await?.ok_or_else(|| {
        ApiError::not_found(format!("session {} has no snapshot yet", session.id))
    })?;
    let mut value = serde_json::to_value(&snapshot)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("snapshot: {e}")))?;
    let state = value["state"].take();
    let (page, next) =
        super::lifecycle::page_state(state, after.as_ref(), app.settings().max_state_bytes);
    value["state"] = page;
    if let Some(next) = next
        && let Some(state) = value["state"].as_object_mut()
    {
        state.remove("nextCursor");
        value["nextCursor"] = Value::String(next);
    }
    Ok(Json(value))
}
