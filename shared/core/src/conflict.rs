//! The GM conflict report.
//!
//! The log's order is its sequence, always. Blind writes (`{to}` without `from`) are last writer
//! wins, which is right for a token drag and wrong when two players set the same hit points a
//! moment apart. This report finds such races so the GM can decide: blind writes to the same
//! path of the same instance by **different users** whose server timestamps fall inside a
//! window (default 1 s). Within a report the writes are ordered by timestamp, then user id (the
//! seed's tiebreak), then sequence. `inc` and compare-and-set never conflict: the first cannot
//! lose an update and the second is refused when stale. The report never reorders the log; the
//! GM resolves with `core:gm_override` (see [`ConflictReport::override_payload`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::changes::{Change, ChangeSet, GM_OVERRIDE, parse_changes};
use crate::event::GameEvent;
use crate::ids::{ConflictId, EventId, InstanceId, Sequence, SessionId, UserId};

/// The default conflict window: one second, as in the seed.
pub const DEFAULT_WINDOW_MS: u64 = 1_000;

/// One blind write that took part in a race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictingWrite {
    /// The writing event.
    pub event_id: EventId,
    /// Its sequence (the order it actually took effect in).
    pub sequence: Sequence,
    /// Who sent it.
    pub user_id: UserId,
    /// Server time.
    pub timestamp: u64,
    /// The value it wrote.
    pub value: Value,
}

/// Blind writes to one path by different users inside the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictReport {
    /// Stable id: `<instance>:<path>:<first sequence>`.
    pub conflict_id: ConflictId,
    /// The session.
    pub session_id: SessionId,
    /// The instance (or `$session`).
    pub instance_id: InstanceId,
    /// The contested path.
    pub path: String,
    /// The writes, ordered by timestamp, then user id, then sequence.
    pub writes: Vec<ConflictingWrite>,
}

impl ConflictReport {
    /// A one-line description for the GM.
    pub fn description(&self) -> String {
        let users: BTreeSet<&str> = self.writes.iter().map(|w| w.user_id.as_str()).collect();
        format!(
            "{} users wrote {}.{} within {} ms ({})",
            users.len(),
            self.instance_id,
            self.path,
            self.span_ms(),
            users.into_iter().collect::<Vec<_>>().join(", ")
        )
    }

    /// Time between the first and the last write.
    pub fn span_ms(&self) -> u64 {
        let min = self.writes.iter().map(|w| w.timestamp).min().unwrap_or(0);
        let max = self.writes.iter().map(|w| w.timestamp).max().unwrap_or(0);
        max - min
    }

    /// The options offered to the GM: one per write.
    pub fn options(&self) -> Vec<Value> {
        self.writes
            .iter()
            .map(|w| {
                json!({"eventId": w.event_id, "userId": w.user_id, "sequence": w.sequence,
                       "timestamp": w.timestamp, "value": w.value})
            })
            .collect()
    }

    /// The payload of a `core:gm_override` that settles this conflict on `value`.
    pub fn override_payload(&self, value: Value) -> Value {
        let ids: Vec<&EventId> = self.writes.iter().map(|w| &w.event_id).collect();
        json!({
            "reason": "conflict_resolution",
            "conflictId": self.conflict_id,
            "originalEvents": ids,
            "finalState": {self.instance_id.as_str(): {self.path.as_str(): value}},
        })
    }

    /// The event type a resolution is committed as.
    pub fn resolution_type() -> &'static str {
        GM_OVERRIDE
    }
}

/// Finds blind-write races in committed events (in any order; they are grouped per path and
/// sorted by timestamp, user id, sequence). Events whose payload is not a valid update are
/// skipped: they could not have been committed.
pub fn detect_conflicts(events: &[GameEvent], window_ms: u64) -> Vec<ConflictReport> {
    let mut by_path: BTreeMap<(SessionId, InstanceId, String), Vec<ConflictingWrite>> =
        BTreeMap::new();
    for event in events {
        let Ok(ChangeSet::Update { instance, changes }) =
            parse_changes(&event.event_type, &event.payload)
        else {
            continue;
        };
        for c in changes {
            if let Change::Blind { to } = c.change {
                by_path
                    .entry((event.session_id.clone(), instance.clone(), c.path))
                    .or_default()
                    .push(ConflictingWrite {
                        event_id: event.id.clone(),
                        sequence: event.sequence,
                        user_id: event.user_id.clone(),
                        timestamp: event.timestamp,
                        value: to,
                    });
            }
        }
    }

    let mut reports = Vec::new();
    for ((session_id, instance_id, path), mut writes) in by_path {
        writes.sort_by(|a, b| {
            (a.timestamp, &a.user_id, a.sequence).cmp(&(b.timestamp, &b.user_id, b.sequence))
        });
        let mut cluster: Vec<ConflictingWrite> = Vec::new();
        let mut flush = |cluster: &mut Vec<ConflictingWrite>| {
            let users: BTreeSet<&UserId> = cluster.iter().map(|w| &w.user_id).collect();
            if users.len() >= 2 {
                let first = cluster.iter().map(|w| w.sequence).min().unwrap_or_default();
                reports.push(ConflictReport {
                    conflict_id: ConflictId::new(format!("{instance_id}:{path}:{first}")),
                    session_id: session_id.clone(),
                    instance_id: instance_id.clone(),
                    path: path.clone(),
                    writes: std::mem::take(cluster),
                });
            } else {
                cluster.clear();
            }
        };
        for w in writes {
            if let Some(start) = cluster.first()
                && w.timestamp - start.timestamp >= window_ms
            {
                flush(&mut cluster);
            }
            cluster.push(w);
        }
        flush(&mut cluster);
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(seq: u64, user: &str, ts: u64, change: Value) -> GameEvent {
        GameEvent {
            id: EventId::new(format!("e{seq}")),
            sequence: Sequence(seq),
            timestamp: ts,
            client_timestamp: None,
            user_id: UserId::new(user),
            session_id: SessionId::new("s"),
            event_type: "plugin:dnd5e:set_hp".into(),
            payload: json!({"target": {"instanceId": "g"}, "stateChanges": {"attributes.hp.value": change}}),
            checksum: None,
        }
    }

    #[test]
    fn given_blind_writes_by_two_users_inside_the_window_then_one_report_in_timestamp_then_user_order()
     {
        let events = [
            write(1, "zed", 1_000, json!({"to": 7})),
            write(2, "amy", 1_000, json!({"to": 10})),
            write(3, "bob", 1_400, json!({"to": 3})),
        ];
        let reports = detect_conflicts(&events, DEFAULT_WINDOW_MS);
        assert_eq!(reports.len(), 1);
        let users: Vec<&str> = reports[0]
            .writes
            .iter()
            .map(|w| w.user_id.as_str())
            .collect();
        assert_eq!(users, ["amy", "zed", "bob"]);
        assert_eq!(
            reports[0].conflict_id,
            ConflictId::new("g:attributes.hp.value:1")
        );
        assert!(reports[0].description().contains("3 users"));
        assert_eq!(reports[0].options().len(), 3);
    }

    #[test]
    fn writes_outside_the_window_or_by_one_user_do_not_conflict() {
        let apart = [
            write(1, "amy", 1_000, json!({"to": 7})),
            write(2, "bob", 2_000, json!({"to": 3})),
        ];
        assert!(detect_conflicts(&apart, DEFAULT_WINDOW_MS).is_empty());
        let same_user = [
            write(1, "amy", 1_000, json!({"to": 7})),
            write(2, "amy", 1_100, json!({"to": 3})),
        ];
        assert!(detect_conflicts(&same_user, DEFAULT_WINDOW_MS).is_empty());
    }

    #[test]
    fn inc_and_compare_and_set_never_conflict() {
        let events = [
            write(1, "amy", 1_000, json!({"op": "inc", "by": -5})),
            write(2, "bob", 1_001, json!({"op": "inc", "by": -8})),
            write(3, "cat", 1_002, json!({"from": 2, "to": 0})),
            write(4, "dan", 1_003, json!({"from": 0, "to": -1})),
        ];
        assert!(detect_conflicts(&events, DEFAULT_WINDOW_MS).is_empty());
    }

    #[test]
    fn resolution_payload_is_a_valid_gm_override() {
        let events = [
            write(1, "amy", 1_000, json!({"to": 7})),
            write(2, "bob", 1_010, json!({"to": 3})),
        ];
        let report = &detect_conflicts(&events, DEFAULT_WINDOW_MS)[0];
        let payload = report.override_payload(json!(5));
        let parsed = parse_changes(ConflictReport::resolution_type(), &payload).unwrap();
        assert_eq!(
            parsed,
            ChangeSet::ForceSet {
                targets: vec![(
                    InstanceId::new("g"),
                    vec![("attributes.hp.value".into(), json!(5))]
                )]
            }
        );
        assert_eq!(payload["originalEvents"], json!(["e1", "e2"]));
    }
}
