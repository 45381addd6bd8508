//! Shared helpers: a scripted server built from `dlab-core`'s projection, and output filters.
#![allow(dead_code)]

use std::collections::BTreeMap;

use dlab_client::{ClientConfig, EventDraft, Notification, Output, SessionClient, SplitMix64};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, Sequence, SessionId, UserId};
use dlab_core::protocol::{ClientMessage, RequestId, ServerFrame};
use dlab_core::state::GameSessionState;
use serde_json::{Value, json};

pub const SESSION: &str = "s-1";
pub const ME: &str = "me";
pub const OTHER: &str = "other";
pub const GOBLIN: &str = "goblin1";
pub const HP: &str = "attributes.hp.value";

pub fn sid() -> SessionId {
    SessionId::new(SESSION)
}

pub fn client(seed: u64) -> SessionClient {
    SessionClient::new(
        ClientConfig::new(sid(), UserId::new(ME)),
        Box::new(SplitMix64::new(seed)),
    )
}

pub fn event(seq: u64, user: &str, event_type: &str, payload: Value) -> GameEvent {
    GameEvent {
        id: EventId::new(format!("00000000-0000-4000-8000-{seq:012}")),
        sequence: Sequence(seq),
        timestamp: 1_000 + seq,
        client_timestamp: None,
        user_id: UserId::new(user),
        session_id: sid(),
        event_type: event_type.to_owned(),
        payload,
        checksum: None,
    }
}

pub fn goblin_added(seq: u64) -> GameEvent {
    event(
        seq,
        "gm",
        "core:session:actor_added",
        json!({"instanceId": GOBLIN, "actorId": "a-goblin",
               "actor": {"name": "Goblin", "attributes": {"hp": {"value": 15, "max": 15}}}}),
    )
}

pub fn inc_payload(by: i64) -> Value {
    json!({"target": {"instanceId": GOBLIN}, "stateChanges": {HP: {"op": "inc", "by": by}}})
}

pub fn cas_payload(from: &Value, to: i64) -> Value {
    json!({"target": {"instanceId": GOBLIN}, "stateChanges": {HP: {"from": from, "to": to}}})
}

pub fn hit(by: i64) -> EventDraft {
    EventDraft::new("plugin:test:hit", inc_payload(by))
}

pub fn chat(text: &str) -> EventDraft {
    EventDraft::new("core:chat", json!({"text": text}))
}

/// The server's state: the events folded with the reference projection.
pub fn fold(events: &[GameEvent]) -> GameSessionState {
    let mut state = GameSessionState::new(sid(), None);
    for e in events {
        state.apply(e).expect("the scripted log is valid");
    }
    state
}

pub fn hp(state: &GameSessionState) -> Option<Value> {
    state.current(&InstanceId::new(GOBLIN), HP)
}

pub fn sends(out: &[Output]) -> Vec<(Option<RequestId>, ClientMessage)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(r) => Some((r.request_id.clone(), r.message.clone())),
            _ => None,
        })
        .collect()
}

/// `(requestId, from, to)` of every replay sent.
pub fn replays(out: &[Output]) -> Vec<(RequestId, u64, Option<u64>)> {
    sends(out)
        .into_iter()
        .filter_map(|(rid, m)| match m {
            ClientMessage::Replay { from, to, .. } => Some((
                rid.expect("replays carry a request id"),
                from.0,
                to.map(|t| t.0),
            )),
            _ => None,
        })
        .collect()
}

/// Ids of the submits sent, in order.
pub fn submitted_ids(out: &[Output]) -> Vec<String> {
    sends(out)
        .into_iter()
        .filter_map(|(_, m)| match m {
            ClientMessage::Submit { event } => event["id"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

pub fn subscribe_rid(out: &[Output]) -> Option<(RequestId, u64)> {
    sends(out).into_iter().find_map(|(rid, m)| match m {
        ClientMessage::Subscribe { since, .. } => rid.map(|r| (r, since.0)),
        _ => None,
    })
}

pub fn notes(out: &[Output]) -> Vec<&Notification> {
    out.iter()
        .filter_map(|o| match o {
            Output::Notify(n) => Some(n),
            _ => None,
        })
        .collect()
}

pub fn subscribed(head: u64, since: u64, rid: Option<&RequestId>) -> ServerFrame {
    ServerFrame::SessionSubscribed {
        session_id: sid(),
        head: Sequence(head),
        since: Sequence(since),
        floor: Sequence(1),
        request_id: rid.cloned(),
    }
}

pub fn batch(
    events: &[GameEvent],
    is_last: bool,
    complete: bool,
    rid: Option<&RequestId>,
) -> ServerFrame {
    ServerFrame::EventsBatch {
        session_id: sid(),
        events: events.to_vec(),
        is_last,
        complete,
        request_id: rid.cloned(),
    }
}

pub fn pong(head: u64) -> ServerFrame {
    ServerFrame::Pong {
        heads: BTreeMap::from([(sid(), Sequence(head))]),
        request_id: None,
    }
}

/// Connects a fresh client and answers its subscribe with `log` in one complete batch.
pub fn live_client(seed: u64, log: &[GameEvent], now: u64) -> SessionClient {
    let mut c = client(seed);
    c.start(now);
    let out = c.on_connected(now);
    let (rid, since) = subscribe_rid(&out).expect("a subscribe");
    assert_eq!(since, 0);
    c.on_frame(subscribed(log.len() as u64, 0, Some(&rid)), now);
    let out = c.on_frame(batch(log, true, true, Some(&rid)), now);
    assert!(notes(&out).contains(&&Notification::Live), "{out:?}");
    c
}

/// The optimistic view as the invariant defines it: the confirmed state, then every pending
/// event applied as a provisional event (sequence last + 1, timestamps = its submit time, the
/// configured user), skipping any that do not apply.
pub fn expected_view(c: &SessionClient) -> GameSessionState {
    let mut view = c.confirmed().clone();
    for p in c.pending() {
        let e = GameEvent {
            id: p.id.clone(),
            sequence: view.last_event_sequence.next(),
            timestamp: p.submitted_at,
            client_timestamp: Some(p.submitted_at),
            user_id: UserId::new(ME),
            session_id: sid(),
            event_type: p.draft.event_type.clone(),
            payload: p.draft.payload.clone(),
            checksum: None,
        };
        let _ = view.apply(&e);
    }
    view
}
