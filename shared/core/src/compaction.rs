//! The compaction fold.
//!
//! A snapshot is the session state (base values and overrides, with provenance) after
//! sequence N. Because the state is self-contained, `state(snapshot_k + events k+1..N)` equals
//! `state(events 1..N)`, so the hot log below the snapshot can be trimmed while every event
//! stays in the archive.
//!
//! Counts, after the seed's `CompactionResult`:
//! - `originalEventCount`: events folded into this snapshot (since the previous one);
//! - `compactedEventCount`: records that stand for them in the snapshot: one per actor instance
//!   and one per override (each override is the net effect of any number of events on a path);
//! - `spaceSaved`: bytes of the folded events plus the previous snapshot's state, minus the new
//!   state's bytes (compact JSON); negative when the state grew more than the events weigh.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::canonical::{canonical_json, checksum};
use crate::event::GameEvent;
use crate::ids::{CampaignId, Sequence, SessionId};
use crate::state::{ApplyError, GameSessionState};

/// A session's state after `up_to_sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The session.
    pub session_id: SessionId,
    /// The last event folded in.
    pub up_to_sequence: Sequence,
    /// The state after it.
    pub state: GameSessionState,
    /// `sha256:` of the canonical JSON of `state`, to detect a damaged snapshot.
    pub checksum: String,
    /// Server time of the fold.
    pub created_at: u64,
}

impl Snapshot {
    /// Wraps a state as a snapshot.
    pub fn of(state: GameSessionState, created_at: u64) -> Self {
        let checksum = state_checksum(&state);
        Self {
            session_id: state.session_id.clone(),
            up_to_sequence: state.last_event_sequence,
            state,
            checksum,
            created_at,
        }
    }

    /// Whether the checksum matches the state.
    pub fn verify(&self) -> bool {
        state_checksum(&self.state) == self.checksum
            && self.state.last_event_sequence == self.up_to_sequence
    }
}

/// `sha256:` of the canonical JSON of a state.
pub fn state_checksum(state: &GameSessionState) -> String {
    checksum(&serde_json::to_value(state).expect("a state always serializes"))
}

/// What a fold did, with the seed's field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionReport {
    /// Events folded.
    pub original_event_count: u64,
    /// Records standing for them (instances + overrides).
    pub compacted_event_count: u64,
    /// Whether a new snapshot was produced (false when there was nothing to fold).
    pub snapshot_created: bool,
    /// Bytes saved (may be negative).
    pub space_saved: i64,
}

/// Why a fold failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FoldError {
    /// The previous snapshot's checksum does not match its state.
    #[error("snapshot of session {0} up to {1} fails its checksum")]
    DamagedSnapshot(SessionId, Sequence),
    /// An event did not apply (a gap, or an event that could never have been committed).
    #[error("event {sequence} does not apply")]
    Apply {
        /// The failing event's sequence.
        sequence: Sequence,
        /// Why.
        #[source]
        source: ApplyError,
    },
}

/// A fold in progress, fed one event at a time, so a compaction holds one page of events in
/// memory however many it folds.
#[derive(Debug, Clone)]
pub struct Folder {
    state: GameSessionState,
    folded: u64,
    event_bytes: usize,
    previous_bytes: usize,
    had_previous: bool,
}

impl Folder {
    /// Starts from `previous` (checked against its checksum), or from an empty state.
    pub fn start(
        session_id: &SessionId,
        campaign_id: Option<CampaignId>,
        previous: Option<&Snapshot>,
    ) -> Result<Self, FoldError> {
        let (state, previous_bytes) = match previous {
            Some(s) => {
                if !s.verify() {
                    return Err(FoldError::DamagedSnapshot(
                        s.session_id.clone(),
                        s.up_to_sequence,
                    ));
                }
                (s.state.clone(), json_len(&s.state))
            }
            None => (GameSessionState::new(session_id.clone(), campaign_id), 0),
        };
        Ok(Self {
            state,
            folded: 0,
            event_bytes: 0,
            previous_bytes,
            had_previous: previous.is_some(),
        })
    }

    /// Applies the next event (it must be the one right after the last folded).
    pub fn push(&mut self, event: &GameEvent) -> Result<(), FoldError> {
        self.state.apply(event).map_err(|source| FoldError::Apply {
            sequence: event.sequence,
            source,
        })?;
        self.folded += 1;
        self.event_bytes += json_len(event);
        Ok(())
    }

    /// The last sequence folded in (the previous snapshot's when nothing was pushed).
    pub fn last_sequence(&self) -> Sequence {
        self.state.last_event_sequence
    }

    /// How many events were pushed.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// The snapshot after the last event, and the seed's counts.
    pub fn finish(self, created_at: u64) -> (Snapshot, CompactionReport) {
        let state = self.state;
        let records = state.active_actors.len()
            + state
                .active_actors
                .values()
                .map(|a| a.overrides.len())
                .sum::<usize>()
            + state.session_overrides.len();
        let new_bytes = json_len(&state);
        let report = CompactionReport {
            original_event_count: self.folded,
            compacted_event_count: records as u64,
            snapshot_created: self.folded > 0 || !self.had_previous,
            space_saved: (self.event_bytes + self.previous_bytes) as i64 - new_bytes as i64,
        };
        (Snapshot::of(state, created_at), report)
    }
}

/// Folds `events` (the ones right after `previous`, in order) into a new snapshot.
pub fn fold(
    session_id: &SessionId,
    campaign_id: Option<CampaignId>,
    previous: Option<&Snapshot>,
    events: &[GameEvent],
    created_at: u64,
) -> Result<(Snapshot, CompactionReport), FoldError> {
    let mut folder = Folder::start(session_id, campaign_id, previous)?;
    for event in events {
        folder.push(event)?;
    }
    Ok(folder.finish(created_at))
}

fn json_len<T: Serialize>(value: &T) -> usize {
    canonical_json(&serde_json::to_value(value).expect("domain types always serialize")).len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::ACTOR_ADDED;
    use crate::ids::{EventId, UserId};
    use serde_json::{Value, json};

    fn ev(seq: u64, event_type: &str, payload: Value) -> GameEvent {
        GameEvent {
            id: EventId::new(format!("e{seq}")),
            sequence: Sequence(seq),
            timestamp: seq * 10,
            client_timestamp: None,
            user_id: UserId::new("u"),
            session_id: SessionId::new("s"),
            event_type: event_type.into(),
            payload,
            checksum: None,
        }
    }

    fn goblin_fight(hits: u64) -> Vec<GameEvent> {
        let mut events = vec![ev(
            1,
            ACTOR_ADDED,
            json!({"instanceId": "g", "actorId": "a", "actor": {"attributes": {"hp": {"value": 1000}}}}),
        )];
        for i in 0..hits {
            events.push(ev(
                i + 2,
                "plugin:dnd5e:attack",
                json!({"target": {"instanceId": "g"},
                       "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -1}}}),
            ));
        }
        events
    }

    #[test]
    fn given_many_hits_on_one_path_when_folded_then_they_compact_to_one_override() {
        let events = goblin_fight(100);
        let (snap, report) = fold(&SessionId::new("s"), None, None, &events, 5).unwrap();
        assert_eq!(snap.up_to_sequence, Sequence(101));
        assert!(snap.verify());
        assert_eq!(report.original_event_count, 101);
        assert_eq!(
            report.compacted_event_count, 2,
            "one instance + one override"
        );
        assert!(report.snapshot_created);
        assert!(report.space_saved > 0);
        assert_eq!(
            snap.state.current(&"g".into(), "attributes.hp.value"),
            Some(json!(900))
        );
    }

    #[test]
    fn folding_on_a_previous_snapshot_equals_folding_everything() {
        let events = goblin_fight(10);
        let s = SessionId::new("s");
        let (all, _) = fold(&s, None, None, &events, 1).unwrap();
        let (first, _) = fold(&s, None, None, &events[..4], 1).unwrap();
        let (second, report) = fold(&s, None, Some(&first), &events[4..], 1).unwrap();
        assert_eq!(second.state, all.state);
        assert_eq!(report.original_event_count, 7);
    }

    #[test]
    fn a_damaged_snapshot_or_a_gap_is_refused() {
        let events = goblin_fight(3);
        let s = SessionId::new("s");
        let (mut snap, _) = fold(&s, None, None, &events[..2], 1).unwrap();
        snap.state.last_event_sequence = Sequence(1);
        assert!(matches!(
            fold(&s, None, Some(&snap), &events[2..], 1),
            Err(FoldError::DamagedSnapshot(..))
        ));
        let (snap, _) = fold(&s, None, None, &events[..1], 1).unwrap();
        assert!(matches!(
            fold(&s, None, Some(&snap), &events[2..], 1),
            Err(FoldError::Apply { .. })
        ));
    }
}
