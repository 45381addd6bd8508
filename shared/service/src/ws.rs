//! The WebSocket use cases. Every answer goes to the client through the notifier
//! (`@connections`), never as a route response: API Gateway drops those unless configured.
//!
//! Answers echo the client's `requestId`; failures of non-submit actions are
//! `error {code, message, action}`; a submit with a usable event id fails as `event:error`.

use std::time::Instant;

use dlab_core::codes::ErrorCode;
use dlab_core::event::{
    GameEvent, Sender, TypePermission, check_type_permission, type_permission, usable_id,
    validate_submission,
};
use dlab_core::ids::{ConnectionId, Sequence, SessionId, UserId};
use dlab_core::protocol::{
    ClientMessage, ClientRequest, PresenceStatus, RequestId, ServerFrame, parse_client_message,
    split_into_batches,
};
use dlab_store::Acquire;
use dlab_store::Admission;
use dlab_store::model::{Connection, Subscription, now_ms};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::auth::AuthError;
use crate::config::RateClass;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::pipeline::{self, Origin, broadcast, send};

/// `$connect`: verifies the token, spends the ticket (single use) and stores the connection
/// unless its user is at the per-user limit. Nothing may be posted to the connection yet (API
/// Gateway refuses it), so failures are only the status code.
pub async fn connect(
    deps: &Deps,
    connection: &ConnectionId,
    token: Option<&str>,
) -> Result<UserId, ServiceError> {
    let grant = deps.auth.verify_connect(token).await?;
    let user = grant.user;
    if let Some(ticket) = grant.ticket
        && !deps
            .registry
            .claim_ticket(ticket.jti, ticket.expires_at_ms)
            .await?
    {
        warn!(connection = %connection, user = %user, jti = %ticket.jti, "connect refused: ticket replayed");
        return Err(AuthError::TicketReused.into());
    }
    let now = now_ms();
    let record = Connection {
        id: connection.clone(),
        user_id: user.clone(),
        connected_at: now,
        expires_at: now + deps.settings.connection_ttl.as_millis() as u64,
    };
    let limit = deps.settings.max_connections_per_user;
    match deps.registry.add_connection(&record, limit).await? {
        Admission::Admitted => {}
        Admission::Refused { open } => {
            warn!(connection = %connection, user = %user, open, limit, "connect refused: too many open connections");
            return Err(ServiceError::TooManyConnections { limit });
        }
    }
    info!(connection = %connection, user = %user, "connected");
    Ok(user)
}

/// `$disconnect`: removes the connection and its subscriptions, and tells each session.
pub async fn disconnect(deps: &Deps, connection: &ConnectionId) -> Result<(), ServiceError> {
    let removed = deps.registry.remove_connection(connection).await?;
    for sub in removed {
        crate::audience::left(deps, &sub.session_id).await;
        let frame = ServerFrame::Presence {
            session_id: sub.session_id.clone(),
            user_id: sub.user_id.clone(),
            status: PresenceStatus::Left,
        };
        broadcast(deps, &sub.session_id, &frame, Some(connection)).await?;
    }
    info!(connection = %connection, "disconnected");
    Ok(())
}

/// Any message on an open connection: the connection's own bucket first (before any store
/// lookup, so a flood of frames, even malformed ones, costs only the flooder), then parse once,
/// then apply. Every failure is answered to the sender.
pub async fn message(deps: &Deps, connection: &ConnectionId, body: &str) {
    let parsed = parse_client_message(body);
    if let Err(e) = rate_limit(deps, RateClass::Connection, connection.as_str()).await {
        reply_error(deps, connection, parsed.as_ref().ok(), e).await;
        return;
    }
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            debug!(connection = %connection, code = %e.code, "bad frame");
            send(deps, connection, &ServerFrame::from(e)).await;
            return;
        }
    };
    if let Err(e) = apply(deps, connection, &request).await {
        reply_error(deps, connection, Some(&request), e).await;
    }
}

/// Reads the connection record (its verified user), draws from that user's bucket of the
/// action's class, and runs the action.
async fn apply(
    deps: &Deps,
    connection: &ConnectionId,
    request: &ClientRequest,
) -> Result<(), ServiceError> {
    // The session whose subscription the action needs is read with the connection record:
    // one registry round trip for a submit, not two.
    let (conn, subscribed) = match needs_subscription(&request.message) {
        Some(session) => match deps.registry.connection_in(connection, &session).await? {
            Some((conn, yes)) => (conn, Some(Subscribed { session, yes })),
            None => return Err(ServiceError::Auth(crate::auth::AuthError::Missing)),
        },
        None => match deps.registry.connection(connection).await? {
            Some(conn) => (conn, None),
            None => return Err(ServiceError::Auth(crate::auth::AuthError::Missing)),
        },
    };
    let known = subscribed.as_ref();
    let class = match &request.message {
        ClientMessage::Submit { .. } => RateClass::Submit,
        ClientMessage::Subscribe { .. } | ClientMessage::Replay { .. } => RateClass::Read,
        ClientMessage::Ephemeral { .. } => RateClass::Ephemeral,
        ClientMessage::Ping | ClientMessage::Unsubscribe { .. } => RateClass::Control,
    };
    rate_limit(deps, class, conn.user_id.as_str()).await?;
    let rid = request.request_id.as_ref();
    match &request.message {
        ClientMessage::Subscribe { session_id, since } => {
            subscribe(deps, &conn, session_id, *since, rid).await
        }
        ClientMessage::Submit { event } => submit(deps, &conn, known, event, rid).await,
        ClientMessage::Replay {
            session_id,
            from,
            to,
        } => replay(deps, &conn, known, session_id, *from, *to, rid).await,
        ClientMessage::Unsubscribe { session_id } => {
            unsubscribe(deps, &conn, session_id, rid).await
        }
        ClientMessage::Ping => ping(deps, &conn, rid).await,
        ClientMessage::Ephemeral {
            session_id,
            event_type,
            payload,
        } => ephemeral(deps, &conn, known, session_id, event_type, payload).await,
    }
}

/// Whether a connection is subscribed to a session, as read with its record.
#[derive(Debug)]
struct Subscribed {
    session: SessionId,
    yes: bool,
}

/// The session an action must be subscribed to (checked after the rate limit, in PROTOCOL
/// order): a submit's (when its event names one at all), a replay's, an ephemeral's.
fn needs_subscription(message: &ClientMessage) -> Option<SessionId> {
    match message {
        ClientMessage::Submit { event } => event
            .get("sessionId")
            .and_then(Value::as_str)
            .map(SessionId::new),
        ClientMessage::Replay { session_id, .. } | ClientMessage::Ephemeral { session_id, .. } => {
            Some(session_id.clone())
        }
        ClientMessage::Subscribe { .. }
        | ClientMessage::Unsubscribe { .. }
        | ClientMessage::Ping => None,
    }
}

/// Answers a failed action: `event:error` for a submit whose event has a usable id (PROTOCOL),
/// `error {action}` otherwise.
async fn reply_error(
    deps: &Deps,
    connection: &ConnectionId,
    request: Option<&ClientRequest>,
    e: ServiceError,
) {
    let code = e.code();
    let action = request.map(|r| r.message.action_name());
    if matches!(code, ErrorCode::Unavailable | ErrorCode::Internal) {
        warn!(connection = %connection, action, code = %code, error = %dlab_store::Chain(&e), "action failed");
    } else {
        debug!(connection = %connection, action, code = %code, "action refused");
    }
    let request_id = request.and_then(|r| r.request_id.clone());
    let temp_id = match request.map(|r| &r.message) {
        Some(ClientMessage::Submit { event }) => usable_id(event),
        _ => None,
    };
    let frame = match temp_id {
        Some(temp_id) => ServerFrame::EventError {
            temp_id,
            code,
            message: e.public_message(),
            retry_after_ms: e.retry_after_ms(),
            current: match e {
                ServiceError::Conflict { current } => Some(current),
                _ => None,
            },
            request_id,
        },
        None => ServerFrame::Error {
            code,
            message: e.public_message(),
            action: action.map(str::to_owned),
            retry_after_ms: e.retry_after_ms(),
            request_id,
        },
    };
    send(deps, connection, &frame).await;
}

/// Takes one token from `who`'s bucket of `class`; `rate_limited` with the time until a token
/// is back when it is empty. Bucket keys are `<class>:<who>`, each in its own Redis slot.
async fn rate_limit(deps: &Deps, class: RateClass, who: &str) -> Result<(), ServiceError> {
    let budget = deps.settings.rates.get(class);
    let key = format!("{}:{who}", class.key_name());
    match deps
        .limiter
        .try_acquire(&key, budget.per_second, budget.burst)
        .await?
    {
        Acquire::Taken => Ok(()),
        Acquire::Limited { retry_after } => {
            debug!(
                class = class.key_name(),
                who,
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "rate limited"
            );
            Err(ServiceError::RateLimited { retry_after })
        }
    }
}

/// Whether the user is GM (owner or `role: gm`) of the session's campaign; errors when the
/// session is unknown or the user is neither GM nor member.
async fn role_in_session(
    deps: &Deps,
    user: &UserId,
    session: &SessionId,
) -> Result<Sender, ServiceError> {
    let (_, campaign) = crate::access::session_campaign(deps, session).await?;
    if campaign.is_gm(user) {
        Ok(Sender::Gm)
    } else if campaign.is_member(user) {
        Ok(Sender::Player)
    } else {
        Err(ServiceError::Forbidden(format!(
            "you are not a member of the campaign of session {session}"
        )))
    }
}

/// `subscribe`: register FIRST (so no live event committed meanwhile is missed), then read the
/// head and catch up.
async fn subscribe(
    deps: &Deps,
    conn: &Connection,
    session: &SessionId,
    since: Sequence,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    role_in_session(deps, &conn.user_id, session).await?;
    deps.registry
        .subscribe(&Subscription {
            connection_id: conn.id.clone(),
            session_id: session.clone(),
            user_id: conn.user_id.clone(),
            expires_at: conn.expires_at,
        })
        .await?;
    // The new token orders this subscription with commits: every event committed under the old
    // one is at most the head read below (see `audience`).
    if let Err(e) = crate::audience::joined(deps, session).await {
        // A process may have cached the list with this subscription in it meanwhile, under the
        // old token: undo, and replace the token (bounded by the cache's age if that fails).
        if let Err(undo) = deps.registry.unsubscribe(&conn.id, session).await {
            warn!(connection = %conn.id, session = %session, error = %dlab_store::Chain(&undo),
                  "could not undo a subscription whose audience token failed");
        }
        crate::audience::left(deps, session).await;
        return Err(e);
    }
    // A member removed between the check and the registration must not keep the subscription,
    // nor stay in a list cached under the token just set.
    if let Err(e) = role_in_session(deps, &conn.user_id, session).await {
        deps.registry.unsubscribe(&conn.id, session).await?;
        crate::audience::left(deps, session).await;
        return Err(e);
    }
    let head = pipeline::head(deps, session).await?;
    let floor = pipeline::floor(deps, session).await?;
    send(
        deps,
        &conn.id,
        &ServerFrame::SessionSubscribed {
            session_id: session.clone(),
            head,
            since,
            floor,
            request_id: rid.cloned(),
        },
    )
    .await;
    if since.next() < floor || since > head {
        snapshot_required(deps, &conn.id, session, rid).await?;
    } else {
        catch_up(deps, &conn.id, session, since, head, rid, started).await?;
    }
    let presence = ServerFrame::Presence {
        session_id: session.clone(),
        user_id: conn.user_id.clone(),
        status: PresenceStatus::Joined,
    };
    broadcast(deps, session, &presence, Some(&conn.id)).await?;
    Ok(())
}

/// Tells a client its position cannot be replayed: load the snapshot (or the whole state)
/// over HTTP and continue from there; the subscription stays live.
async fn snapshot_required(
    deps: &Deps,
    connection: &ConnectionId,
    session: &SessionId,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let snapshot = deps.snapshots.latest(session).await?;
    let (snapshot_sequence, href) = match snapshot {
        Some(s) => (s.up_to_sequence, format!("/sessions/{session}/snapshot")),
        None => (Sequence::ZERO, format!("/sessions/{session}")),
    };
    send(
        deps,
        connection,
        &ServerFrame::SnapshotRequired {
            session_id: session.clone(),
            snapshot_sequence,
            href,
            request_id: rid.cloned(),
        },
    )
    .await;
    Ok(())
}

/// Streams `after < sequence <= to` as `events:batch` frames: page → frames → posts, one page
/// in memory at a time. The budget covers reading AND posting: when it runs out the batch in
/// hand goes out as the last one with `complete: false`, and the client continues with
/// `replay`.
async fn catch_up(
    deps: &Deps,
    connection: &ConnectionId,
    session: &SessionId,
    after: Sequence,
    to: Sequence,
    rid: Option<&RequestId>,
    started: Instant,
) -> Result<(), ServiceError> {
    let deadline = started + deps.settings.catchup_budget;
    let frame = |events: Vec<GameEvent>, is_last: bool, complete: bool| ServerFrame::EventsBatch {
        session_id: session.clone(),
        events,
        is_last,
        complete,
        request_id: rid.cloned(),
    };
    let mut reader = pipeline::RangeReader::new(deps, session, after, to);
    // The newest batch, held back until we know whether it is the last one.
    let mut held: Option<Vec<GameEvent>> = None;
    let mut complete = true;
    'read: while Instant::now() < deadline {
        let Some(page) = reader.next_page(deps.settings.read_page).await? else {
            break;
        };
        for batch in split_into_batches(&page, deps.settings.max_frame_bytes) {
            if let Some(previous) = held.take() {
                if Instant::now() >= deadline {
                    held = Some(previous);
                    complete = false;
                    break 'read;
                }
                send(deps, connection, &frame(previous, false, true)).await;
            }
            held = Some(batch);
        }
    }
    if !reader.is_done() {
        complete = false;
    }
    send(
        deps,
        connection,
        &frame(held.unwrap_or_default(), true, complete),
    )
    .await;
    Ok(())
}

/// `not_subscribed` unless the connection is subscribed to `session`; uses what was read with
/// the connection record when it is about the same session.
async fn require_subscription(
    deps: &Deps,
    conn: &Connection,
    known: Option<&Subscribed>,
    session: &SessionId,
) -> Result<(), ServiceError> {
    let yes = match known {
        Some(k) if &k.session == session => k.yes,
        _ => deps.registry.is_subscribed(&conn.id, session).await?,
    };
    if yes {
        Ok(())
    } else {
        Err(ServiceError::NotSubscribed(session.clone()))
    }
}

/// `replay`: a contiguous range, in batches.
async fn replay(
    deps: &Deps,
    conn: &Connection,
    known: Option<&Subscribed>,
    session: &SessionId,
    from: Sequence,
    to: Option<Sequence>,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    require_subscription(deps, conn, known, session).await?;
    let head = pipeline::head(deps, session).await?;
    let to = to.map_or(head, |t| t.min(head));
    if from < to && from.next() < pipeline::floor(deps, session).await? {
        // Below the floor nothing is replayable (a retention period pruned it).
        return snapshot_required(deps, &conn.id, session, rid).await;
    }
    catch_up(deps, &conn.id, session, from, to, rid, started).await
}

async fn unsubscribe(
    deps: &Deps,
    conn: &Connection,
    session: &SessionId,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let was = deps.registry.unsubscribe(&conn.id, session).await?;
    if was {
        crate::audience::left(deps, session).await;
    }
    send(
        deps,
        &conn.id,
        &ServerFrame::SessionUnsubscribed {
            session_id: session.clone(),
            request_id: rid.cloned(),
        },
    )
    .await;
    if was {
        let presence = ServerFrame::Presence {
            session_id: session.clone(),
            user_id: conn.user_id.clone(),
            status: PresenceStatus::Left,
        };
        broadcast(deps, session, &presence, Some(&conn.id)).await?;
    }
    Ok(())
}

async fn ping(deps: &Deps, conn: &Connection, rid: Option<&RequestId>) -> Result<(), ServiceError> {
    let sessions = deps.registry.subscriptions_of(&conn.id).await?;
    let mut heads = std::collections::BTreeMap::new();
    for s in sessions {
        heads.insert(s.clone(), pipeline::head(deps, &s).await?);
    }
    send(
        deps,
        &conn.id,
        &ServerFrame::Pong {
            heads,
            request_id: rid.cloned(),
        },
    )
    .await;
    Ok(())
}

async fn ephemeral(
    deps: &Deps,
    conn: &Connection,
    known: Option<&Subscribed>,
    session: &SessionId,
    event_type: &str,
    payload: &Value,
) -> Result<(), ServiceError> {
    require_subscription(deps, conn, known, session).await?;
    deps.settings.envelope_limits().check_payload(payload)?;
    let frame = ServerFrame::Ephemeral {
        session_id: session.clone(),
        user_id: conn.user_id.clone(),
        event_type: event_type.to_owned(),
        payload: payload.clone(),
    };
    broadcast(deps, session, &frame, Some(&conn.id)).await?;
    Ok(())
}

/// `submit`: subscription (whenever the event names a session at all, so `not_subscribed`
/// comes before any envelope complaint), envelope, type permission, then the one publish path.
async fn submit(
    deps: &Deps,
    conn: &Connection,
    known: Option<&Subscribed>,
    raw: &Value,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    if let Some(session) = raw.get("sessionId").and_then(Value::as_str) {
        require_subscription(deps, conn, known, &SessionId::new(session)).await?;
    }
    // A valid envelope's sessionId is a string, so the subscription was checked above.
    let submitted = validate_submission(raw, &deps.settings.envelope_limits())?;
    let sender = match type_permission(&submitted.event_type) {
        TypePermission::Client => Sender::Player,
        TypePermission::Gm | TypePermission::ServerOnly => {
            role_in_session(deps, &conn.user_id, &submitted.session_id).await?
        }
    };
    check_type_permission(&submitted.event_type, sender)?;
    let event = submitted.into_event(Sequence::ZERO, now_ms(), conn.user_id.clone());
    pipeline::publish(
        deps,
        event,
        Origin::Connection {
            id: &conn.id,
            request_id: rid,
        },
    )
    .await?;
    Ok(())
}
