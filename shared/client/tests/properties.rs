//! Property tests against a scripted server built on `dlab-core`'s projection: the client
//! converges whatever the order, duplication or loss of frames, and its optimistic view always
//! equals the confirmed state plus its pending events.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::*;
use dlab_client::{Entropy, Output, SplitMix64};
use dlab_core::codes::ErrorCode;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, UserId};
use dlab_core::protocol::{ClientMessage, RequestId, ServerFrame};
use dlab_core::state::{ApplyError, GameSessionState};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The server: a gap-free log, dedup by id, compare-and-set by the reference projection.
struct Server {
    log: Vec<GameEvent>,
    state: GameSessionState,
    ids: BTreeMap<EventId, Sequence>,
    /// Submits received and not yet processed.
    received: VecDeque<Value>,
    /// Stop catch-ups early now and then (`complete: false`).
    cut_short: bool,
}

impl Server {
    fn new(log: Vec<GameEvent>) -> Self {
        let state = fold(&log);
        Self {
            ids: log.iter().map(|e| (e.id.clone(), e.sequence)).collect(),
            log,
            state,
            received: VecDeque::new(),
            cut_short: false,
        }
    }

    fn head(&self) -> u64 {
        self.log.len() as u64
    }

    fn commit(&mut self, mut event: GameEvent) -> Result<(GameEvent, bool), ApplyError> {
        if let Some(seq) = self.ids.get(&event.id) {
            return Ok((self.log[seq.0 as usize - 1].clone(), true));
        }
        event.sequence = Sequence(self.head() + 1);
        event.timestamp = 50_000 + event.sequence.0;
        self.state.apply(&event)?;
        self.ids.insert(event.id.clone(), event.sequence);
        self.log.push(event.clone());
        Ok((event, false))
    }

    fn batches(
        &self,
        from: u64,
        to: u64,
        rid: &RequestId,
        rng: &mut SplitMix64,
    ) -> Vec<ServerFrame> {
        let events: Vec<GameEvent> = self.log[from.min(to) as usize..to as usize].to_vec();
        let (events, complete) =
            if self.cut_short && events.len() > 1 && rng.next_u64().is_multiple_of(3) {
                (events[..events.len() / 2].to_vec(), false)
            } else {
                (events, true)
            };
        let chunks: Vec<&[GameEvent]> = if events.is_empty() {
            vec![&[]]
        } else {
            events.chunks(3).collect()
        };
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| batch(c, i + 1 == n, complete || i + 1 < n, Some(rid)))
            .collect()
    }

    /// Frames answering one client action.
    fn answer(
        &mut self,
        rid: Option<RequestId>,
        m: ClientMessage,
        rng: &mut SplitMix64,
    ) -> Vec<ServerFrame> {
        let rid = rid.unwrap_or_else(|| RequestId::new("none").unwrap());
        match m {
            ClientMessage::Subscribe { since, .. } => {
                let mut out = vec![subscribed(self.head(), since.0, Some(&rid))];
                out.extend(self.batches(since.0, self.head(), &rid, rng));
                out
            }
            ClientMessage::Replay { from, to, .. } => {
                let to = to.map_or(self.head(), |t| t.0.min(self.head()));
                self.batches(from.0, to, &rid, rng)
            }
            ClientMessage::Ping => vec![pong(self.head())],
            ClientMessage::Submit { event } => {
                self.received.push_back(event);
                vec![]
            }
            _ => vec![],
        }
    }

    /// Processes the oldest received submit: `event:confirmed`, or `event:error` on conflict.
    fn process(&mut self, reject: bool) -> Option<ServerFrame> {
        let raw = self.received.pop_front()?;
        let id = EventId::new(raw["id"].as_str()?);
        let event = GameEvent {
            id: id.clone(),
            sequence: Sequence(0),
            timestamp: 0,
            client_timestamp: raw["clientTimestamp"].as_u64(),
            user_id: UserId::new(ME),
            session_id: sid(),
            event_type: raw["type"].as_str()?.to_owned(),
            payload: raw["payload"].clone(),
            checksum: None,
        };
        if reject && !self.ids.contains_key(&id) {
            return Some(error_frame(id, ErrorCode::InvalidEvent, None));
        }
        Some(match self.commit(event) {
            Ok((e, duplicate)) => ServerFrame::EventConfirmed {
                temp_id: e.id.clone(),
                event_id: e.id,
                sequence: e.sequence,
                timestamp: e.timestamp,
                duplicate,
                result: None,
                request_id: None,
            },
            Err(ApplyError::Conflict { current }) => {
                error_frame(id, ErrorCode::Conflict, Some(current))
            }
            Err(_) => error_frame(id, ErrorCode::InvalidEvent, None),
        })
    }
}

fn error_frame(
    id: EventId,
    code: ErrorCode,
    current: Option<BTreeMap<String, Value>>,
) -> ServerFrame {
    ServerFrame::EventError {
        temp_id: id,
        code,
        message: "refused".into(),
        current,
        retry_after_ms: None,
        request_id: None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Inc(i64),
    Blind(i64),
    Cas(i64),
    Chat,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (-6i64..6).prop_map(Op::Inc),
        (0i64..30).prop_map(Op::Blind),
        (0i64..30).prop_map(Op::Cas),
        Just(Op::Chat),
    ]
}

/// The payload of `op` against `state` (a compare-and-set names the current value).
fn payload(op: &Op, state: &GameSessionState) -> (&'static str, Value) {
    match op {
        Op::Inc(by) => ("plugin:test:hit", inc_payload(*by)),
        Op::Blind(to) => (
            "plugin:test:set",
            json!({"target": {"instanceId": GOBLIN}, "stateChanges": {HP: {"to": to}}}),
        ),
        Op::Cas(to) => (
            "plugin:test:hit",
            cas_payload(&hp(state).unwrap_or(Value::Null), *to),
        ),
        Op::Chat => ("core:chat", json!({"text": "hello"})),
    }
}

fn insert_somewhere(inbox: &mut VecDeque<ServerFrame>, frame: ServerFrame, rng: &mut SplitMix64) {
    let span = inbox.len().min(4) + 1;
    let at = (rng.next_u64() % span as u64) as usize;
    inbox.insert(at, frame);
}

/// Feeds outputs to the server; its answers land in the inbox, a little shuffled. Returns
/// whether a connect was asked for.
fn route(
    out: Vec<Output>,
    server: &mut Server,
    inbox: &mut VecDeque<ServerFrame>,
    rng: &mut SplitMix64,
) -> bool {
    let mut connect = false;
    for o in out {
        match o {
            Output::Send(r) => {
                for f in server.answer(r.request_id, r.message, rng) {
                    insert_somewhere(inbox, f, rng);
                }
            }
            Output::Connect | Output::Reconnect => connect = true,
            _ => {}
        }
    }
    connect
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Scripted frames reordered, duplicated and dropped: the client still ends with the
    /// server's state, through gap replays, catch-up continuations and heartbeats.
    #[test]
    fn the_client_converges_whatever_happens_to_the_frames(
        ops in prop::collection::vec(op(), 1..40),
        head_fraction in 0usize..=100,
        seed in any::<u64>(),
        drop_per_mille in 0u64..400,
        dup_per_mille in 0u64..400,
        cut_short in any::<bool>(),
    ) {
        let mut log = vec![goblin_added(1)];
        let mut state = fold(&log);
        for (i, op) in ops.iter().enumerate() {
            let (t, p) = payload(op, &state);
            let e = event(i as u64 + 2, OTHER, t, p);
            if state.apply(&e).is_ok() {
                log.push(e);
            } else {
                let mut chat = event(i as u64 + 2, OTHER, "core:chat", json!({}));
                chat.id = e.id;
                state.apply(&chat).unwrap();
                log.push(chat);
            }
        }
        let n = log.len() as u64;
        let k = n * head_fraction as u64 / 100;
        let mut rng = SplitMix64::new(seed);
        let mut server = Server::new(log[..k as usize].to_vec());
        server.cut_short = cut_short;

        let mut c = client(seed ^ 1);
        c.start(0);
        let out = c.on_connected(0);
        let mut inbox = VecDeque::new();
        // The subscribe is answered when the head was k; the rest arrives live.
        route(out, &mut server, &mut inbox, &mut rng);
        for e in &log[k as usize..] {
            server.log.push(e.clone());
            server.ids.insert(e.id.clone(), e.sequence);
            inbox.push_back(ServerFrame::EventApplied(e.clone()));
        }
        // Perturb: shuffle, drop, duplicate.
        let mut frames: Vec<ServerFrame> = inbox.drain(..).collect();
        for i in (1..frames.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            frames.swap(i, j);
        }
        for f in frames {
            let roll = rng.next_u64() % 1000;
            if roll < drop_per_mille {
                continue;
            }
            if roll < drop_per_mille + dup_per_mille {
                inbox.push_back(f.clone());
            }
            inbox.push_back(f);
        }

        let mut now = 0u64;
        while now < 400_000 {
            let out = match inbox.pop_front() {
                Some(f) => {
                    now += rng.next_u64() % 40;
                    c.on_frame(f, now)
                }
                None => {
                    if c.last_applied().0 == n && c.is_live() {
                        break;
                    }
                    now = c.next_wake().unwrap_or(now + 1_000).max(now + 1);
                    c.tick(now)
                }
            };
            if route(out, &mut server, &mut inbox, &mut rng) {
                let out = c.on_connected(now);
                route(out, &mut server, &mut inbox, &mut rng);
            }
        }
        prop_assert_eq!(c.last_applied().0, n);
        prop_assert_eq!(c.confirmed(), &fold(&log));
        prop_assert_eq!(c.view(), c.confirmed());
    }

    /// Whatever interleaving of submits, confirmations, refusals, other players' events,
    /// drops and reconnects: view == confirmed + pending re-applied in order, after every step;
    /// and once everything settles, the client holds the server's state.
    #[test]
    fn the_view_is_always_confirmed_plus_pending(
        steps in prop::collection::vec((0u8..9, op()), 1..60),
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix64::new(seed);
        let mut server = Server::new(vec![goblin_added(1)]);
        let mut c = live_client(seed ^ 2, &server.log.clone(), 0);
        let mut inbox: VecDeque<ServerFrame> = VecDeque::new();
        let mut now = 0u64;
        let mut connected = true;
        let mut other = 0u64;
        for (kind, op) in steps {
            now += 1 + rng.next_u64() % 300;
            let out = match kind {
                0 | 1 => {
                    let (t, p) = payload(&op, c.view());
                    match c.submit(dlab_client::EventDraft::new(t, p), now) {
                        Ok((_, out)) => out,
                        Err(_) => vec![],
                    }
                }
                2 => {
                    let (t, p) = payload(&op, &server.state);
                    other += 1;
                    let mut e = event(0, OTHER, t, p);
                    e.id = EventId::new(format!("00000000-0000-4000-9000-{other:012}"));
                    if let Ok((e, _)) = server.commit(e) && connected {
                        insert_somewhere(&mut inbox, ServerFrame::EventApplied(e), &mut rng);
                    }
                    vec![]
                }
                3 | 4 => {
                    if let Some(f) = server.process(false) && connected {
                        insert_somewhere(&mut inbox, f, &mut rng);
                    }
                    vec![]
                }
                5 => {
                    if let Some(f) = server.process(true) && connected {
                        insert_somewhere(&mut inbox, f, &mut rng);
                    }
                    vec![]
                }
                6 if connected => {
                    connected = false;
                    inbox.clear();
                    c.on_disconnected(now)
                }
                7 => match inbox.pop_front() {
                    Some(f) => c.on_frame(f, now),
                    None => c.tick(now),
                },
                _ => {
                    now += rng.next_u64() % 20_000;
                    c.tick(now)
                }
            };
            if route(out, &mut server, &mut inbox, &mut rng) {
                connected = true;
                let out = c.on_connected(now);
                route(out, &mut server, &mut inbox, &mut rng);
            }
            if !connected {
                server.received.clear();
            }
            prop_assert_eq!(c.view(), &expected_view(&c));
        }
        // Settle: reconnect if needed, process every submit, deliver every frame.
        for _ in 0..2_000 {
            now += 100;
            let out = if let Some(f) = inbox.pop_front() {
                c.on_frame(f, now)
            } else if let Some(f) = server.process(false) {
                if connected { inbox.push_back(f); }
                vec![]
            } else if c.pending().count() == 0 && c.last_applied().0 == server.head() && c.is_live() {
                break;
            } else {
                now = c.next_wake().unwrap_or(now + 1_000).max(now);
                c.tick(now)
            };
            if route(out, &mut server, &mut inbox, &mut rng) {
                connected = true;
                let out = c.on_connected(now);
                route(out, &mut server, &mut inbox, &mut rng);
            }
            prop_assert_eq!(c.view(), &expected_view(&c));
        }
        prop_assert_eq!(c.pending().count(), 0);
        prop_assert_eq!(c.confirmed(), &fold(&server.log));
        prop_assert_eq!(c.view(), c.confirmed());
    }
}
