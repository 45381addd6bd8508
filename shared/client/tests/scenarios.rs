//! Given/when/then scenarios of the protocol core, with a scripted clock and no sockets.

mod common;

use common::*;
use dlab_client::{
    ConflictInfo, EventDraft, HttpRequest, Notification, Output, PendingStatus, Rebase, Rebaser,
    Status, parse_loaded_state,
};
use dlab_core::codes::ErrorCode;
use dlab_core::compaction::Snapshot;
use dlab_core::ids::{EventId, Sequence};
use dlab_core::protocol::{ClientMessage, ServerFrame};
use dlab_core::state::GameSessionState;
use serde_json::json;

fn log3() -> Vec<dlab_core::event::GameEvent> {
    vec![
        goblin_added(1),
        event(2, OTHER, "plugin:test:hit", inc_payload(-2)),
        event(3, OTHER, "core:chat", json!({"text": "hi"})),
    ]
}

#[test]
fn a_persisting_gap_gets_exactly_one_replay_for_exactly_the_gap() {
    let mut log = log3();
    for seq in 4..=6 {
        log.push(event(seq, OTHER, "plugin:test:hit", inc_payload(-1)));
    }
    let mut c = live_client(1, &log[..3], 0);

    let out = c.on_frame(ServerFrame::EventApplied(log[5].clone()), 1_000);
    assert!(replays(&out).is_empty());
    assert_eq!(c.last_applied(), Sequence(3), "6 waits for 4 and 5");
    assert!(out.contains(&Output::WakeAt(1_250)), "{out:?}");
    assert!(
        replays(&c.tick(1_249)).is_empty(),
        "frames overtake each other: wait"
    );

    let out = c.tick(1_250);
    let sent = replays(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].1, sent[0].2),
        (3, Some(5)),
        "exactly the missing range"
    );
    let rid = sent[0].0.clone();
    for t in [1_300, 2_000, 4_000] {
        assert!(replays(&c.tick(t)).is_empty(), "one replay in flight");
    }
    // A late live copy of 5 and the replay's answer: duplicates are dropped.
    c.on_frame(ServerFrame::EventApplied(log[4].clone()), 4_100);
    c.on_frame(batch(&log[3..5], true, true, Some(&rid)), 4_200);
    assert_eq!(c.last_applied(), Sequence(6));
    assert_eq!(c.duplicates(), 1);
    assert_eq!(c.confirmed(), &fold(&log));
    assert!(replays(&c.tick(10_000)).is_empty());
}

#[test]
fn pong_heads_above_the_last_applied_are_a_silent_gap() {
    let log = log3();
    let mut c = live_client(2, &log, 0);
    c.on_frame(pong(5), 100);
    assert!(replays(&c.tick(300)).is_empty());
    let sent = replays(&c.tick(350));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1, sent[0].2), (3, Some(5)));
}

#[test]
fn an_incomplete_catch_up_continues_with_replay_where_it_stopped() {
    let mut log = log3();
    log.push(event(4, OTHER, "plugin:test:hit", inc_payload(-1)));
    log.push(event(5, OTHER, "plugin:test:hit", inc_payload(-1)));
    log.push(event(6, OTHER, "plugin:test:hit", inc_payload(-1)));
    let mut c = client(3);
    c.start(0);
    let (rid, _) = subscribe_rid(&c.on_connected(0)).unwrap();
    // A live event overtakes the whole catch-up: no gap replay while the catch-up runs.
    c.on_frame(ServerFrame::EventApplied(log[5].clone()), 1);
    c.on_frame(subscribed(5, 0, Some(&rid)), 2);
    let out = c.on_frame(batch(&log[..2], true, false, Some(&rid)), 3);
    let sent = replays(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].1, sent[0].2),
        (2, None),
        "from where the server stopped, to the head"
    );
    assert!(replays(&c.tick(1_000)).is_empty());
    assert!(!c.is_live());
    let out = c.on_frame(batch(&log[2..5], true, true, Some(&sent[0].0)), 1_001);
    assert!(notes(&out).contains(&&Notification::Live));
    assert_eq!(c.confirmed(), &fold(&log));
}

#[test]
fn snapshot_required_loads_the_state_and_continues_from_its_sequence() {
    let mut log = log3();
    for seq in 4..=10 {
        log.push(event(seq, OTHER, "plugin:test:hit", inc_payload(-1)));
    }
    let mut c = client(4);
    c.start(0);
    let (rid, _) = subscribe_rid(&c.on_connected(0)).unwrap();
    c.on_frame(subscribed(10, 0, Some(&rid)), 1);
    let out = c.on_frame(
        ServerFrame::SnapshotRequired {
            session_id: sid(),
            snapshot_sequence: Sequence(7),
            href: "/sessions/s-1/snapshot".into(),
            request_id: Some(rid.clone()),
        },
        2,
    );
    assert!(out.contains(&Output::Http(HttpRequest::LoadSnapshot {
        href: "/sessions/s-1/snapshot".into(),
        snapshot_sequence: Sequence(7),
    })));
    // Live events while the load runs are kept; no gap replay races the load.
    c.on_frame(ServerFrame::EventApplied(log[9].clone()), 3);
    assert!(replays(&c.tick(2_000)).is_empty());

    let body = serde_json::to_string(&Snapshot::of(fold(&log[..7]), 5)).unwrap();
    let state = parse_loaded_state(&body).unwrap();
    let out = c.on_snapshot(state, 2_001).unwrap();
    let sent = replays(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].1, sent[0].2), (7, None));
    let out = c.on_frame(batch(&log[7..9], true, true, Some(&sent[0].0)), 2_002);
    assert!(notes(&out).contains(&&Notification::Live));
    assert_eq!(c.confirmed(), &fold(&log));

    let other = GameSessionState::new(dlab_core::ids::SessionId::new("elsewhere"), None);
    assert!(c.on_snapshot(other, 2_003).is_err());
}

#[test]
fn a_damaged_snapshot_is_refused_and_a_plain_state_is_accepted() {
    let mut snap = Snapshot::of(fold(&log3()), 5);
    snap.checksum = format!("sha256:{}", "0".repeat(64));
    assert!(parse_loaded_state(&serde_json::to_string(&snap).unwrap()).is_err());
    let plain = serde_json::to_string(&fold(&log3())).unwrap();
    assert_eq!(parse_loaded_state(&plain).unwrap(), fold(&log3()));
    assert!(parse_loaded_state("{\"nope\": 1}").is_err());
}

#[test]
fn a_submit_shows_at_once_and_becomes_final_on_confirmation() {
    let log = log3();
    let mut c = live_client(5, &log, 0);
    let (id, out) = c.submit(hit(-5), 100).unwrap();
    assert_eq!(submitted_ids(&out), vec![id.0.clone()]);
    assert_eq!(hp(c.view()), Some(json!(8)));
    assert_eq!(hp(c.confirmed()), Some(json!(13)));

    let out = c.on_frame(
        ServerFrame::EventConfirmed {
            temp_id: id.clone(),
            event_id: id.clone(),
            sequence: Sequence(4),
            timestamp: 9_999,
            duplicate: false,
            result: None,
            request_id: None,
        },
        120,
    );
    assert!(notes(&out).contains(&&Notification::Confirmed {
        id: id.clone(),
        sequence: Sequence(4)
    }));
    assert_eq!(c.pending().count(), 0);
    assert_eq!(hp(c.confirmed()), Some(json!(8)));
    assert_eq!(c.view(), c.confirmed());
    // The server's copy (as a later batch or a duplicate's re-broadcast) changes nothing.
    let mut stored = event(4, ME, "plugin:test:hit", inc_payload(-5));
    stored.id = id;
    stored.timestamp = 9_999;
    stored.client_timestamp = Some(100);
    c.on_frame(ServerFrame::EventApplied(stored.clone()), 130);
    let mut server = log.clone();
    server.push(stored);
    assert_eq!(c.confirmed(), &fold(&server));
}

#[test]
fn the_event_may_arrive_before_its_confirmation_without_double_applying() {
    let log = log3();
    let mut c = live_client(6, &log, 0);
    let (id, _) = c.submit(hit(-5), 100).unwrap();
    let mut stored = event(4, ME, "plugin:test:hit", inc_payload(-5));
    stored.id = id.clone();
    c.on_frame(ServerFrame::EventApplied(stored), 110);
    assert_eq!(c.pending().count(), 0);
    c.on_frame(
        ServerFrame::EventConfirmed {
            temp_id: id.clone(),
            event_id: id,
            sequence: Sequence(4),
            timestamp: 1,
            duplicate: true,
            result: None,
            request_id: None,
        },
        120,
    );
    assert_eq!(hp(c.confirmed()), Some(json!(8)));
    assert_eq!(c.view(), c.confirmed());
}

#[test]
fn a_confirmation_ahead_of_a_gap_stays_pending_until_the_gap_is_filled() {
    let log = log3();
    let mut c = live_client(7, &log, 0);
    let (id, _) = c.submit(hit(-5), 100).unwrap();
    c.on_frame(
        ServerFrame::EventConfirmed {
            temp_id: id.clone(),
            event_id: id.clone(),
            sequence: Sequence(5),
            timestamp: 1,
            duplicate: false,
            result: None,
            request_id: None,
        },
        110,
    );
    let status: Vec<_> = c.pending().map(|p| p.status).collect();
    assert_eq!(status, vec![PendingStatus::Committed(Sequence(5))]);
    assert_eq!(hp(c.view()), Some(json!(8)), "applied once in the view");
    c.on_frame(
        ServerFrame::EventApplied(event(4, OTHER, "plugin:test:hit", inc_payload(-1))),
        120,
    );
    assert_eq!(c.pending().count(), 0);
    assert_eq!(hp(c.confirmed()), Some(json!(7)));
    assert_eq!(c.view(), c.confirmed());
}

#[test]
fn an_event_error_rolls_back_and_reports() {
    let mut c = live_client(8, &log3(), 0);
    let before = c.view().clone();
    let (id, _) = c.submit(hit(-5), 100).unwrap();
    let out = c.on_frame(
        ServerFrame::EventError {
            temp_id: id.clone(),
            code: ErrorCode::Forbidden,
            message: "no".into(),
            current: None,
            retry_after_ms: None,
            request_id: None,
        },
        110,
    );
    assert!(notes(&out).iter().any(|n| matches!(n,
        Notification::RolledBack { id: i, rejection, .. } if *i == id && rejection.code == ErrorCode::Forbidden)));
    assert_eq!(c.view(), &before);
    assert_eq!(c.pending().count(), 0);
}

#[test]
fn a_rate_limited_event_is_retried_with_the_same_id() {
    let mut c = live_client(9, &log3(), 0);
    let (id, _) = c.submit(hit(-5), 100).unwrap();
    c.on_frame(
        ServerFrame::EventError {
            temp_id: id.clone(),
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            current: None,
            retry_after_ms: Some(500),
            request_id: None,
        },
        110,
    );
    assert_eq!(hp(c.view()), Some(json!(8)), "still pending");
    assert!(submitted_ids(&c.tick(609)).is_empty());
    assert_eq!(submitted_ids(&c.tick(610)), vec![id.0]);
}

struct HalveAgain;

impl Rebaser for HalveAgain {
    fn rebase(
        &self,
        rejected: &EventDraft,
        conflict: &ConflictInfo,
        _: &GameSessionState,
    ) -> Rebase {
        match conflict.current.get(HP).and_then(|v| v.as_i64()) {
            Some(now) => Rebase::Resubmit(EventDraft::new(
                rejected.event_type.clone(),
                cas_payload(&json!(now), now - 5),
            )),
            None => Rebase::Report,
        }
    }
}

struct AskTheGm;

impl Rebaser for AskTheGm {
    fn rebase(&self, _: &EventDraft, _: &ConflictInfo, _: &GameSessionState) -> Rebase {
        Rebase::Escalate("both players changed the goblin".into())
    }
}

#[test]
fn an_escalating_rebase_hook_reports_the_refused_event_for_the_gm_and_sends_nothing() {
    let mut c = live_client(12, &log3(), 0);
    c.set_rebaser(Box::new(AskTheGm));
    let draft = EventDraft::new("plugin:test:hit", cas_payload(&json!(13), 8));
    let (id, _) = c.submit(draft.clone(), 100).unwrap();
    let out = c.on_frame(
        ServerFrame::EventError {
            temp_id: id.clone(),
            code: ErrorCode::Conflict,
            message: "state changed".into(),
            current: Some([(HP.to_owned(), json!(10))].into()),
            retry_after_ms: None,
            request_id: None,
        },
        110,
    );
    let n = notes(&out);
    let rolled = n
        .iter()
        .position(|n| matches!(n, Notification::RolledBack { id: i, .. } if *i == id))
        .expect("rolled back");
    let escalated = n
        .iter()
        .position(|n| {
            **n == Notification::Escalate {
                id: id.clone(),
                draft: draft.clone(),
                reason: "both players changed the goblin".into(),
            }
        })
        .expect("escalated");
    assert!(rolled < escalated, "the rollback comes first: {n:?}");
    assert!(submitted_ids(&out).is_empty());
    assert_eq!(c.pending().count(), 0);
}

#[test]
fn a_conflict_is_reported_and_the_rebase_hook_resubmits_with_a_new_id() {
    let mut c = live_client(10, &log3(), 0);
    c.set_rebaser(Box::new(HalveAgain));
    let draft = EventDraft::new("plugin:test:hit", cas_payload(&json!(13), 8));
    let (id, _) = c.submit(draft, 100).unwrap();
    // Someone else hit first; the server's copy is not here yet.
    let out = c.on_frame(
        ServerFrame::EventError {
            temp_id: id.clone(),
            code: ErrorCode::Conflict,
            message: "state changed".into(),
            current: Some([(HP.to_owned(), json!(10))].into()),
            retry_after_ms: None,
            request_id: None,
        },
        110,
    );
    let n = notes(&out);
    assert!(
        n.iter()
            .any(|n| matches!(n, Notification::RolledBack { id: i, .. } if *i == id))
    );
    let rebased = n.iter().find_map(|n| match n {
        Notification::Rebased {
            rejected,
            resubmitted,
        } if *rejected == id => Some(resubmitted.clone()),
        _ => None,
    });
    let new_id = rebased.expect("rebased");
    assert_ne!(new_id, id);
    assert_eq!(submitted_ids(&out), vec![new_id.0.clone()]);
    let pending: Vec<EventId> = c.pending().map(|p| p.id.clone()).collect();
    assert_eq!(pending, vec![new_id]);
}

#[test]
fn unconfirmed_events_go_out_again_with_the_same_id_after_reconnect_and_after_timeouts() {
    let log = log3();
    let mut c = live_client(11, &log, 0);
    let (a, out) = c.submit(hit(-1), 100).unwrap();
    assert_eq!(submitted_ids(&out), vec![a.0.clone()]);
    c.on_disconnected(200);
    let Status::Reconnecting {
        attempt: 1,
        next_at,
    } = c.status()
    else {
        panic!("{:?}", c.status())
    };
    assert!((325..=450).contains(&next_at), "{next_at}");
    let (b, out) = c.submit(chat("offline"), 250).unwrap();
    assert!(submitted_ids(&out).is_empty(), "offline: queued");
    assert_eq!(hp(c.view()), Some(json!(12)));
    assert!(c.tick(next_at).contains(&Output::Connect));
    let out = c.on_connected(next_at + 10);
    assert!(
        submitted_ids(&out).is_empty(),
        "nothing before the catch-up"
    );
    let (rid, since) = subscribe_rid(&out).unwrap();
    assert_eq!(since, 3, "resume from the last applied");
    c.on_frame(subscribed(3, 3, Some(&rid)), next_at + 20);
    let out = c.on_frame(batch(&[], true, true, Some(&rid)), next_at + 30);
    assert_eq!(
        submitted_ids(&out),
        vec![a.0.clone(), b.0.clone()],
        "same ids, in order"
    );
    let t = next_at + 30;
    assert!(submitted_ids(&c.tick(t + 9_999)).is_empty());
    assert_eq!(
        submitted_ids(&c.tick(t + 10_000)),
        vec![a.0, b.0],
        "timeout resend, same ids"
    );
}

#[test]
fn reconnect_delays_grow_within_their_bounds() {
    let mut c = client(12);
    c.start(0);
    let mut now = 0;
    for attempt in 1..=12u32 {
        c.on_disconnected(now);
        let Status::Reconnecting {
            attempt: a,
            next_at,
        } = c.status()
        else {
            panic!()
        };
        assert_eq!(a, attempt);
        let exp = (250u64 << (attempt - 1)).min(30_000);
        let delay = next_at - now;
        assert!(
            delay >= exp / 2 && delay <= exp,
            "attempt {attempt}: {delay} vs {exp}"
        );
        assert!(c.tick(next_at).contains(&Output::Connect));
        now = next_at + 1;
    }
}

#[test]
fn heartbeat_every_minute_and_a_fresh_socket_before_two_hours() {
    let mut c = live_client(13, &log3(), 0);
    let pings = |out: &[Output]| {
        sends(out)
            .iter()
            .filter(|(_, m)| matches!(m, ClientMessage::Ping))
            .count()
    };
    assert_eq!(pings(&c.tick(59_999)), 0);
    assert_eq!(pings(&c.tick(60_000)), 1);
    assert_eq!(pings(&c.tick(60_001)), 0);
    let out = c.tick(115 * 60_000);
    assert!(out.contains(&Output::Reconnect), "{out:?}");
    let out = c.on_connected(115 * 60_000 + 50);
    assert_eq!(subscribe_rid(&out).map(|(_, s)| s), Some(3));
}

#[test]
fn unknown_types_stay_in_the_log_and_bad_frames_are_ignored() {
    let mut log = log3();
    log.push(event(4, OTHER, "plugin:nobody:dance", json!({"steps": 3})));
    let mut c = live_client(14, &log, 0);
    assert_eq!(
        c.log().last().map(|e| e.event_type.as_str()),
        Some("plugin:nobody:dance")
    );
    let out = c.on_text("{\"event\": \"nonsense\"}", 1);
    assert!(matches!(notes(&out)[..], [Notification::BadFrame(_)]));
    assert!(
        c.submit(EventDraft::new("core:session:actor_added", json!({})), 2)
            .is_err()
    );
    assert!(c.submit(EventDraft::new("Bad Type", json!({})), 2).is_err());
    assert!(
        c.submit(
            EventDraft::new("plugin:test:hit", cas_payload(&json!(99), 1)),
            2
        )
        .is_err(),
        "a stale compare-and-set is refused before it is queued"
    );
}

#[test]
fn a_confirmation_of_an_event_already_in_a_loaded_state_makes_it_final() {
    let log = log3();
    let mut c = live_client(15, &log, 0);
    let (id, _) = c.submit(hit(-5), 100).unwrap();
    let mut mine = event(4, ME, "plugin:test:hit", inc_payload(-5));
    mine.id = id.clone();
    let mut server = log.clone();
    server.push(mine);
    c.on_snapshot(fold(&server), 200).unwrap();
    assert_eq!(
        c.pending().count(),
        1,
        "a state does not say which ids it holds"
    );
    let out = c.on_frame(
        ServerFrame::EventConfirmed {
            temp_id: id.clone(),
            event_id: id.clone(),
            sequence: Sequence(4),
            timestamp: 1,
            duplicate: true,
            result: None,
            request_id: None,
        },
        210,
    );
    assert!(notes(&out).contains(&&Notification::Confirmed {
        id,
        sequence: Sequence(4)
    }));
    assert_eq!(c.pending().count(), 0);
    assert_eq!(c.view(), c.confirmed());
    assert_eq!(hp(c.view()), Some(json!(8)));
}
