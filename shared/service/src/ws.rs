//! The WebSocket use cases. Every answer goes to the client through the notifier
//! (`@connections`), never as a route response: API Gateway drops those unless configured.
//!
//! Answers echo the client's `requestId`; failures of non-submit actions are
//! `error {code, message, action}`; a submit with a usable event id fails as `event:error`.

use std::time::Instant;

use dlab_core::changes::parse_changes;
use dlab_core::event::{
    EnvelopeLimits, Sender, TypePermission, check_type_permission, type_permission, usable_id,
    validate_submission,
};
use dlab_core::ids::{ConnectionId, EventId, Sequence, SessionId, UserId};
use dlab_core::protocol::{
    ClientMessage, ClientRequest, PresenceStatus, RequestId, ServerFrame, batch_frames,
    parse_client_message,
};
use dlab_store::model::{Connection, Subscription, now_ms};
use dlab_store::{Admission, CommitRequest};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::auth::AuthError;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::pipeline::{self, broadcast, send};

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

/// Any message on an open connection: parse once, then apply.
pub async fn message(deps: &Deps, connection: &ConnectionId, body: &str) {
    let request = match parse_client_message(body) {
        Ok(r) => r,
        Err(e) => {
            debug!(connection = %connection, code = %e.code, "bad frame");
            send(deps, connection, &ServerFrame::from(e)).await;
            return;
        }
    };
    let Some(conn) = (match deps.registry.connection(connection).await {
        Ok(c) => c,
        Err(e) => {
            fail(deps, connection, &request, ServiceError::from(e)).await;
            return;
        }
    }) else {
        let err = ServiceError::Auth(crate::auth::AuthError::Missing);
        fail(deps, connection, &request, err).await;
        return;
    };
    let rid = request.request_id.clone();
    let result = match &request.message {
        ClientMessage::Subscribe { session_id, since } => {
            subscribe(deps, &conn, session_id, *since, rid.as_ref()).await
        }
        ClientMessage::Submit { event } => {
            submit(deps, &conn, event, rid.as_ref()).await;
            Ok(())
        }
        ClientMessage::Replay {
            session_id,
            from,
            to,
        } => replay(deps, &conn, session_id, *from, *to, rid.as_ref()).await,
        ClientMessage::Unsubscribe { session_id } => {
            unsubscribe(deps, &conn, session_id, rid.as_ref()).await
        }
        ClientMessage::Ping => ping(deps, &conn, rid.as_ref()).await,
        ClientMessage::Ephemeral {
            session_id,
            event_type,
            payload,
        } => ephemeral(deps, &conn, session_id, event_type, payload).await,
    };
    if let Err(e) = result {
        fail(deps, connection, &request, e).await;
    }
}

async fn fail(deps: &Deps, connection: &ConnectionId, request: &ClientRequest, e: ServiceError) {
    if e.code() == dlab_core::codes::ErrorCode::Unavailable
        || e.code() == dlab_core::codes::ErrorCode::Internal
    {
        warn!(connection = %connection, action = request.message.action_name(), error = %e, "action failed");
    }
    let frame = ServerFrame::Error {
        code: e.code(),
        message: e.public_message(),
        action: Some(request.message.action_name().to_owned()),
        request_id: request.request_id.clone(),
    };
    send(deps, connection, &frame).await;
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
    // A member removed between the check and the registration must not keep the subscription.
    if let Err(e) = role_in_session(deps, &conn.user_id, session).await {
        deps.registry.unsubscribe(&conn.id, session).await?;
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
    if since.get() + 1 < floor.get() || since > head {
        let snapshot = deps.snapshots.latest(session).await?;
        let (snapshot_sequence, href) = match snapshot {
            Some(s) => (s.up_to_sequence, format!("/sessions/{session}/snapshot")),
            None => (Sequence::ZERO, format!("/sessions/{session}")),
        };
        send(
            deps,
            &conn.id,
            &ServerFrame::SnapshotRequired {
                session_id: session.clone(),
                snapshot_sequence,
                href,
                request_id: rid.cloned(),
            },
        )
        .await;
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
    let (events, complete) = pipeline::read_range(deps, session, after, to, Some(deadline)).await?;
    for frame in batch_frames(
        session,
        &events,
        complete,
        rid,
        deps.settings.max_frame_bytes,
    ) {
        send(deps, connection, &frame).await;
    }
    Ok(())
}

async fn require_subscription(
    deps: &Deps,
    conn: &Connection,
    session: &SessionId,
) -> Result<(), ServiceError> {
    if deps.registry.is_subscribed(&conn.id, session).await? {
        Ok(())
    } else {
        Err(ServiceError::NotSubscribed(session.clone()))
    }
}

/// `replay`: a contiguous range, in batches.
async fn replay(
    deps: &Deps,
    conn: &Connection,
    session: &SessionId,
    from: Sequence,
    to: Option<Sequence>,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    require_subscription(deps, conn, session).await?;
    let head = pipeline::head(deps, session).await?;
    let to = to.map_or(head, |t| t.min(head));
    catch_up(deps, &conn.id, session, from, to, rid, started).await
}

async fn unsubscribe(
    deps: &Deps,
    conn: &Connection,
    session: &SessionId,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    let was = deps.registry.unsubscribe(&conn.id, session).await?;
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
    session: &SessionId,
    event_type: &str,
    payload: &Value,
) -> Result<(), ServiceError> {
    require_subscription(deps, conn, session).await?;
    let size = serde_json::to_vec(payload)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > deps.settings.max_payload_bytes {
        return Err(ServiceError::Envelope(
            dlab_core::event::EnvelopeError::PayloadTooLarge {
                size,
                limit: deps.settings.max_payload_bytes,
            },
        ));
    }
    rate_limit(deps, &conn.id).await?;
    let frame = ServerFrame::Ephemeral {
        session_id: session.clone(),
        user_id: conn.user_id.clone(),
        event_type: event_type.to_owned(),
        payload: payload.clone(),
    };
    broadcast(deps, session, &frame, Some(&conn.id)).await?;
    Ok(())
}

async fn rate_limit(deps: &Deps, connection: &ConnectionId) -> Result<(), ServiceError> {
    let ok = deps
        .limiter
        .try_acquire(
            connection.as_str(),
            deps.settings.rate_per_second,
            deps.settings.rate_burst,
        )
        .await?;
    if ok {
        Ok(())
    } else {
        Err(ServiceError::RateLimited)
    }
}

/// `submit`: every failure is answered here, as `event:error` when the event has a usable id
/// and as `error {action: "submit"}` otherwise.
async fn submit(deps: &Deps, conn: &Connection, raw: &Value, rid: Option<&RequestId>) {
    let temp_id = usable_id(raw);
    match submit_inner(deps, conn, raw, rid).await {
        Ok(()) => {}
        Err(e) => {
            let frame = match temp_id {
                Some(temp_id) => ServerFrame::EventError {
                    temp_id,
                    code: e.code(),
                    message: e.public_message(),
                    current: match &e {
                        ServiceError::Conflict { current } => Some(current.clone()),
                        _ => None,
                    },
                    request_id: rid.cloned(),
                },
                None => ServerFrame::Error {
                    code: e.code(),
                    message: e.public_message(),
                    action: Some("submit".to_owned()),
                    request_id: rid.cloned(),
                },
            };
            send(deps, &conn.id, &frame).await;
        }
    }
}

async fn submit_inner(
    deps: &Deps,
    conn: &Connection,
    raw: &Value,
    rid: Option<&RequestId>,
) -> Result<(), ServiceError> {
    // The subscription is checked first whenever the event names a session at all.
    if let Some(session) = raw.get("sessionId").and_then(Value::as_str) {
        require_subscription(deps, conn, &SessionId::new(session)).await?;
    }
    let limits = EnvelopeLimits {
        max_payload_bytes: deps.settings.max_payload_bytes,
    };
    let submitted = validate_submission(raw, &limits)?;
    require_subscription(deps, conn, &submitted.session_id).await?;
    let sender = match type_permission(&submitted.event_type) {
        TypePermission::Client => Sender::Player,
        TypePermission::Gm | TypePermission::ServerOnly => {
            role_in_session(deps, &conn.user_id, &submitted.session_id).await?
        }
    };
    check_type_permission(&submitted.event_type, sender)?;
    rate_limit(deps, &conn.id).await?;
    let changes = parse_changes(&submitted.event_type, &submitted.payload)
        .map_err(|e| ServiceError::InvalidEvent(e.to_string()))?;
    let event = submitted.into_event(Sequence::ZERO, now_ms(), conn.user_id.clone());
    let session = event.session_id.clone();
    let event_id: EventId = event.id.clone();
    let committed = pipeline::commit(deps, CommitRequest { event, changes }).await?;
    let stored = match committed.event {
        Some(e) => e,
        None => {
            // A duplicate whose original left the hot window: fetch it from the archive.
            let seq = committed.sequence;
            deps.archive
                .read(&session, Sequence(seq.get() - 1), Some(seq), 1)
                .await
                .ok()
                .and_then(|mut v| v.pop())
                .ok_or_else(|| {
                    // The archive has not caught up with the original yet: retry later.
                    ServiceError::Unavailable(dlab_store::StoreError::unavailable(
                        "archive",
                        "read duplicate",
                        format!("original of {event_id} (sequence {seq}) is not archived yet"),
                    ))
                })?
        }
    };
    send(
        deps,
        &conn.id,
        &ServerFrame::EventConfirmed {
            temp_id: stored.id.clone(),
            event_id: stored.id.clone(),
            sequence: stored.sequence,
            timestamp: stored.timestamp,
            duplicate: committed.duplicate,
            request_id: rid.cloned(),
        },
    )
    .await;
    broadcast(
        deps,
        &session,
        &ServerFrame::EventApplied(stored),
        Some(&conn.id),
    )
    .await?;
    Ok(())
}
