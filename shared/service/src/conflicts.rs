//! The GM conflict flow (ARCHITECTURE.md, "GM conflict report").
//!
//! - **Blind writes**: each commit returns the overrides its blind writes replaced, read in the
//!   same atomic step; a replaced write by another user inside the window is a conflict. `inc`
//!   never is (it cannot lose an update) and compare-and-set never is (a stale one is refused).
//! - **Escalations**: a compare-and-set rejection is remembered briefly; its sender may escalate
//!   it (`POST /sessions/{id}/conflicts`) instead of rebasing.
//! - Each new conflict is stored once (its id names the race) and sent to the GM's connections
//!   as `conflict:resolution_needed`. The GM resolves it with a `core:gm_override`, committed
//!   and broadcast like any event.
//!
//! Reporting never fails a submit: the event is committed; a report that cannot be stored is
//! logged.

use std::collections::BTreeMap;

use dlab_core::changes::{Change, ChangeSet, GM_OVERRIDE, parse_changes};
use dlab_core::conflict::{ConflictReport, ConflictingWrite};
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConflictId, EventId, Sequence, SessionId, UserId};
use dlab_core::protocol::ServerFrame;
use dlab_store::model::{ConflictKind, ConflictRecord, Resolution, now_ms};
use dlab_store::{Rejection, ReplacedWrite};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::pipeline::{self, Origin};

/// Remembers a compare-and-set rejection so its sender can escalate it; a failure is logged
/// (the rejection itself is already the answer).
pub async fn remember_rejection(
    deps: &Deps,
    event: dlab_core::event::GameEvent,
    current: &BTreeMap<String, Value>,
) {
    let rejection = Rejection {
        event,
        current: current.clone(),
        rejected_at: now_ms(),
    };
    if let Err(e) = deps
        .log
        .remember_rejection(&rejection, deps.settings.lifecycle.rejection_ttl)
        .await
    {
        warn!(session = %rejection.event.session_id, event = %rejection.event.id,
              error = %dlab_store::Chain(&e), "could not remember a rejection for escalation");
    }
}

/// The value an event's blind write sets at `path`, if it blind-writes it.
fn blind_value(event: &GameEvent, path: &str) -> Option<Value> {
    match parse_changes(&event.event_type, &event.payload).ok()? {
        ChangeSet::Update { changes, .. } => changes.into_iter().find_map(|c| match c.change {
            Change::Blind { to } if c.path == path => Some(to),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether the replaced write was itself a blind write of its path (read back from the hot
/// log, or the archive once trimmed; only done for another user's write inside the window).
async fn was_blind(deps: &Deps, session: &SessionId, write: &ReplacedWrite) -> bool {
    let before = Sequence(write.sequence.get().saturating_sub(1));
    let mut reader = pipeline::RangeReader::new(deps, session, before, write.sequence);
    match reader.next_page(1).await {
        Ok(Some(page)) => page
            .first()
            .is_some_and(|e| e.id == write.event_id && blind_value(e, &write.path).is_some()),
        Ok(None) => false,
        Err(e) => {
            warn!(session = %session, seq = write.sequence.get(), error = %dlab_store::Chain(&e),
                  "could not read a replaced write; no conflict reported for it");
            false
        }
    }
}

/// Reports the races of a committed event's blind writes: each replaced write by another user
/// inside the window is stored once and sent to the GM.
pub async fn report_blind_writes(deps: &Deps, event: &GameEvent, replaced: &[ReplacedWrite]) {
    let window = deps.settings.lifecycle.conflict_window_ms;
    for earlier in replaced {
        if earlier.user_id == event.user_id || event.timestamp.abs_diff(earlier.timestamp) > window
        {
            continue;
        }
        let Some(value) = blind_value(event, &earlier.path) else {
            continue;
        };
        // Only a race of two blind writes: an `inc` or a compare-and-set before this write
        // could not lose anything. The replaced write's event says which it was.
        if !was_blind(deps, &event.session_id, earlier).await {
            continue;
        }
        let mut writes = vec![
            ConflictingWrite {
                event_id: earlier.event_id.clone(),
                sequence: earlier.sequence,
                user_id: earlier.user_id.clone(),
                timestamp: earlier.timestamp,
                value: earlier.value.clone(),
            },
            ConflictingWrite {
                event_id: event.id.clone(),
                sequence: event.sequence,
                user_id: event.user_id.clone(),
                timestamp: event.timestamp,
                value,
            },
        ];
        // The report's order: timestamp, then user id (the seed's tiebreak), then sequence.
        writes.sort_by(|a, b| {
            (a.timestamp, &a.user_id, a.sequence).cmp(&(b.timestamp, &b.user_id, b.sequence))
        });
        let report = ConflictReport {
            conflict_id: ConflictId::new(format!(
                "{}:{}:{}",
                earlier.instance, earlier.path, earlier.sequence
            )),
            session_id: event.session_id.clone(),
            instance_id: earlier.instance.clone(),
            path: earlier.path.clone(),
            writes,
        };
        let choices: serde_json::Map<String, Value> = report
            .writes
            .iter()
            .map(|w| {
                (
                    w.event_id.to_string(),
                    json!({report.instance_id.as_str(): {report.path.as_str(): w.value}}),
                )
            })
            .collect();
        let record = ConflictRecord {
            conflict_id: report.conflict_id.clone(),
            session_id: report.session_id.clone(),
            kind: ConflictKind::BlindWrite,
            description: report.description(),
            options: report.options(),
            events: report
                .writes
                .iter()
                .map(|w| serde_json::to_value(w).unwrap_or(Value::Null))
                .collect(),
            choices: Value::Object(choices),
            created_at: now_ms(),
            resolved: false,
            resolution: None,
        };
        store_and_notify(deps, &record).await;
    }
}

/// Stores a new conflict and tells the GM; a failure is logged.
async fn store_and_notify(deps: &Deps, record: &ConflictRecord) -> bool {
    match deps.conflicts.create(record).await {
        Ok(true) => {
            info!(session = %record.session_id, conflict = %record.conflict_id, kind = ?record.kind,
                  "conflict reported to the GM");
            notify_gms(deps, record).await;
            true
        }
        Ok(false) => false,
        Err(e) => {
            warn!(session = %record.session_id, conflict = %record.conflict_id,
                  error = %dlab_store::Chain(&e), "could not store a conflict");
            false
        }
    }
}

/// Sends `conflict:resolution_needed` to the connections of the session's GMs.
async fn notify_gms(deps: &Deps, record: &ConflictRecord) {
    let campaign = match crate::access::session_campaign(deps, &record.session_id).await {
        Ok((_, campaign)) => campaign,
        Err(e) => {
            warn!(session = %record.session_id, error = %e, "no campaign to notify of a conflict");
            return;
        }
    };
    let targets = match deps.registry.session_connections(&record.session_id).await {
        Ok(subs) => subs,
        Err(e) => {
            warn!(session = %record.session_id, error = %e, "could not list the GM's connections");
            return;
        }
    };
    let frame = ServerFrame::ConflictResolutionNeeded {
        conflict_id: record.conflict_id.clone(),
        session_id: record.session_id.clone(),
        description: record.description.clone(),
        options: record.options.clone(),
    };
    for sub in targets.iter().filter(|s| campaign.is_gm(&s.user_id)) {
        pipeline::send(deps, &sub.connection_id, &frame).await;
    }
}

/// A member escalates their own rejected compare-and-set to the GM. Returns the conflict and
/// whether it is new (escalating twice answers the same conflict).
pub async fn escalate(
    deps: &Deps,
    user: &UserId,
    session: &SessionId,
    event_id: &EventId,
    reason: &str,
) -> Result<(ConflictRecord, bool), ServiceError> {
    let rejection = deps
        .log
        .rejection(session, event_id)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no rejected event {event_id} in session {session} to escalate (a rejection can be escalated for {} s)",
                deps.settings.lifecycle.rejection_ttl.as_secs()
            ))
        })?;
    if &rejection.event.user_id != user {
        return Err(ServiceError::Forbidden(
            "only the sender of a rejected event may escalate it".to_owned(),
        ));
    }
    let id = ConflictId::new(format!("cas:{event_id}"));
    if let Some(existing) = deps.conflicts.get(session, &id).await? {
        return Ok((existing, false));
    }
    let (instance, wanted) =
        match parse_changes(&rejection.event.event_type, &rejection.event.payload)? {
            ChangeSet::Update { instance, changes } => {
                let wanted: serde_json::Map<String, Value> = changes
                    .into_iter()
                    .filter_map(|c| match c.change {
                        Change::Cas { to, .. } | Change::Blind { to } => Some((c.path, to)),
                        Change::Inc { .. } => None,
                    })
                    .collect();
                (instance, wanted)
            }
            _ => {
                return Err(ServiceError::BadRequest(format!(
                    "event {event_id} changes no state to decide on"
                )));
            }
        };
    let current: serde_json::Map<String, Value> = rejection
        .current
        .iter()
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect();
    let reason: String = reason.trim().chars().take(500).collect();
    let paths: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let record = ConflictRecord {
        conflict_id: id,
        session_id: session.clone(),
        kind: ConflictKind::CasRejection,
        description: format!(
            "{user} could not apply {} to {instance} ({}): the values changed first{}",
            rejection.event.event_type,
            paths.join(", "),
            if reason.is_empty() {
                String::new()
            } else {
                format!("; {reason}")
            }
        ),
        options: vec![
            json!({"eventId": event_id, "userId": user, "choice": "apply", "values": wanted}),
            json!({"choice": "keep", "values": current}),
        ],
        events: vec![serde_json::to_value(&rejection).unwrap_or(Value::Null)],
        choices: json!({ event_id.as_str(): { instance.as_str(): wanted } }),
        created_at: now_ms(),
        resolved: false,
        resolution: None,
    };
    if store_and_notify(deps, &record).await {
        return Ok((record, true));
    }
    // Stored meanwhile by a concurrent escalation, or the store failed.
    match deps.conflicts.get(session, &record.conflict_id).await? {
        Some(existing) => Ok((existing, false)),
        None => Err(ServiceError::Unavailable(
            dlab_store::StoreError::unavailable(
                "conflicts",
                "store conflict",
                "the conflict could not be stored",
            ),
        )),
    }
}

/// What the GM decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// One of the conflict's events: its values are force-set.
    Chosen(EventId),
    /// These values (`{instanceId: {path: value}}`) are force-set.
    FinalState(Value),
}

/// The GM resolves a conflict: the decision is recorded (one resolve wins a race) and committed
/// as a `core:gm_override` (sequenced and broadcast like any event). A retried resolve with the
/// same decision commits the very same override (same event id) again, which dedup answers.
pub async fn resolve(
    deps: &Deps,
    gm: &UserId,
    session: &SessionId,
    id: &ConflictId,
    decision: Decision,
) -> Result<(ConflictRecord, GameEvent), ServiceError> {
    let conflict = deps.conflicts.get(session, id).await?.ok_or_else(|| {
        ServiceError::NotFound(format!("conflict {id} not found in session {session}"))
    })?;
    let (final_state, chosen) = match decision {
        Decision::Chosen(event) => {
            let values = conflict
                .choices
                .get(event.as_str())
                .cloned()
                .ok_or_else(|| {
                    ServiceError::BadRequest(format!(
                        "chosenEventId {event} is not one of the options of conflict {id}"
                    ))
                })?;
            (values, Some(event))
        }
        Decision::FinalState(values) => (values, None),
    };
    let payload = json!({
        "reason": "conflict_resolution",
        "conflictId": id,
        "originalEvents": conflict.events.iter().filter_map(|e| e.get("eventId").or_else(|| e.pointer("/event/id"))).collect::<Vec<_>>(),
        "finalState": final_state,
    });
    parse_changes(GM_OVERRIDE, &payload)?;
    let (record, override_id) = match &conflict.resolution {
        Some(done) if done.final_state == final_state => {
            (conflict.clone(), done.override_event_id.clone())
        }
        Some(_) => {
            return Err(ServiceError::ConflictResolved(id.clone()));
        }
        None => {
            let override_id = EventId::new(uuid::Uuid::new_v4().to_string());
            let resolution = Resolution {
                resolved_by: gm.clone(),
                resolved_at: now_ms(),
                override_event_id: override_id.clone(),
                chosen_event_id: chosen,
                final_state: final_state.clone(),
            };
            let record = deps
                .conflicts
                .resolve(session, id, &resolution)
                .await?
                .ok_or_else(|| ServiceError::ConflictResolved(id.clone()))?;
            (record, override_id)
        }
    };
    let event = GameEvent {
        id: override_id,
        sequence: Sequence::ZERO,
        timestamp: now_ms(),
        client_timestamp: None,
        user_id: gm.clone(),
        session_id: session.clone(),
        event_type: GM_OVERRIDE.to_owned(),
        payload,
        checksum: None,
    };
    let published = pipeline::publish(deps, event, Origin::Server).await?;
    info!(session = %session, conflict = %id, seq = published.event.sequence.get(), "conflict resolved by the GM");
    Ok((record, published.event))
}
