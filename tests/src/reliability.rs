//! The reliability suite of issue 12: the local gateway under load while things go wrong, driven
//! from outside by WebSocket clients, each following the session with its own session client
//! (`dlab_client::SessionClient`, in [`crate::e2e::WsClient`]).
//!
//! Every scenario runs [`Players`] — clients that submit compare-and-set attacks, increments and
//! chat lines, re-send some events under the same id on purpose, drop their socket abruptly in
//! the middle of the stream, reconnect with `since` and re-submit what was not confirmed — while
//! a [`Fault`] strikes: none (chaos alone), a private Redis killed with SIGKILL and restarted on
//! its append-only file, a private Redis wiped with FLUSHALL, or the archive (MongoDB) down for a
//! while. Afterwards [`Outcome::check`] asserts the invariants the server promises:
//!
//! - the log (`GET /sessions/{id}/events`) is exactly the sequences 1..=head, no id twice;
//! - every event any client saw confirmed is in the log, at the sequence it was confirmed with
//!   (a sequence issued twice would break this), and no refused event is;
//! - every client's own state reaches the head and hashes equal to the server's state
//!   (and to the state folded from the log).
//!
//! [`dropped_mid_stream_and_a_handler_that_stops_after_commit`] covers the two ways a single
//! frame goes missing: the reader's socket dies mid-stream, and a handler stops between commit
//! and broadcast (a notifier that loses every frame of one event).
//!
//! # Sizes
//! Each scenario has a short variant (a few seconds to about 30 s, run by `cargo test` and so by
//! CI) and a long one, chosen with `DLAB_RELIABILITY_LONG=1` ([`long`]). The random choices come
//! from one seed, printed at the start; `DLAB_CHAOS_SEED=<n>` repeats a run's choices (network
//! timing still varies).
//!
//! No assertion is about timing: every wait is a bounded loop that fails with what it waited
//! for. All traffic stays on 127.0.0.1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::canonical::checksum;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, Sequence, SessionId};
use dlab_core::state::GameSessionState;
use dlab_service::Deps;
use dlab_service::config::RateBudget;
use dlab_store::{Notifier, NotifyError, PostOutcome};
use futures::StreamExt;
use local_gateway::app::{Running, start_with};
use local_gateway::gateway::Limits;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::e2e::{
    self, Backend, Http, Table, WsClient, chat, event, hit, ids_of, say, sequences_of, setup_table,
};
use crate::lifecycle_cases::FlakyArchive;
use crate::private::{PrivateRedis, redis_server_available};
use crate::servers::servers_required;

/// `DLAB_RELIABILITY_LONG=1` selects the long variants.
pub const LONG_VAR: &str = "DLAB_RELIABILITY_LONG";
/// `DLAB_CHAOS_SEED=<u64>` fixes the seed of the random choices.
pub const SEED_VAR: &str = "DLAB_CHAOS_SEED";

/// A submit with no outcome for this long is sent again (same id).
const RESEND_AFTER: Duration = Duration::from_secs(3);
/// A submit answered `unavailable` or `rate_limited` is sent again after this long.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// How long a client may take to apply everything at the end: through `@connections` a long
/// run leaves a backlog of frames that drains slowly.
const CONVERGE_WITHIN: Duration = Duration::from_secs(180);
/// How long a re-subscribe after a reconnect keeps trying while the stores are down.
const RESUBSCRIBE_FOR: Duration = Duration::from_secs(60);

/// Whether the long variants run.
pub fn long() -> bool {
    std::env::var(LONG_VAR).is_ok_and(|v| v == "1")
}

/// The seed: `DLAB_CHAOS_SEED`, or a fresh one; printed either way so a run can be repeated.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_VAR) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR} must be a u64, not {v:?}")),
        Err(_) => u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        ),
    };
    println!("{test}: seed {seed} (repeat with {SEED_VAR}={seed})");
    seed
}

/// SplitMix64: a tiny, well-mixed generator, so one `u64` seed repeats a run's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

// ---------------------------------------------------------------------------------------------
// Faults injected through the gateway's dependencies

/// A notifier that loses the confirmation and the broadcasts of one event while told to: what
/// the clients see when the handler that committed the event stops before it confirms or
/// broadcasts (a Lambda timing out or crashing right after the commit). Replays still carry it.
pub struct LosingNotifier {
    inner: Arc<dyn Notifier>,
    lose: std::sync::Mutex<Option<String>>,
    lost: AtomicUsize,
}

impl LosingNotifier {
    /// Wraps `inner`; loses nothing until [`Self::lose`].
    pub fn new(inner: Arc<dyn Notifier>) -> Self {
        Self {
            inner,
            lose: std::sync::Mutex::new(None),
            lost: AtomicUsize::new(0),
        }
    }

    /// From now on, loses the `event:confirmed` and `event:applied` frames of `event_id`
    /// (`None`: none).
    pub fn lose(&self, event_id: Option<&str>) {
        *self.lose.lock().expect("not poisoned") = event_id.map(str::to_owned);
    }

    /// Frames lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Notifier for LosingNotifier {
    async fn post(
        &self,
        connection: &ConnectionId,
        data: &[u8],
    ) -> Result<PostOutcome, NotifyError> {
        let lose = self.lose.lock().expect("not poisoned").clone();
        if let Some(id) = lose
            && data.windows(id.len()).any(|w| w == id.as_bytes())
            && publish_frame(data)
        {
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Ok(PostOutcome::Delivered);
        }
        self.inner.post(connection, data).await
    }
}

/// Whether a frame is one of a publish's own: `event:confirmed` or `event:applied` (a replay's
/// `events:batch` is another handler's work, and is how a client heals).
fn publish_frame(data: &[u8]) -> bool {
    serde_json::from_slice::<Value>(data)
        .is_ok_and(|f| f["event"] == "event:confirmed" || f["event"] == "event:applied")
}

/// Rate limits out of the way: the suite is about faults, and its clients reconnect and replay
/// far more often than players do (the limits have their own tests).
fn generous_limits(deps: &mut Deps) {
    let plenty = RateBudget::new(10_000.0, 10_000);
    let rates = &mut deps.settings.rates;
    rates.connection = plenty;
    rates.submit = plenty;
    rates.read = plenty;
    rates.control = plenty;
}

/// What goes wrong during a scenario.
pub enum Fault {
    /// Nothing but the clients' own chaos.
    None,
    /// The gateway's Redis (private, AOF `appendfsync always`) is killed with SIGKILL `times`
    /// times mid-load and restarted on the same files.
    RedisKilled {
        /// The private instance behind the gateway.
        redis: PrivateRedis,
        /// How many kills.
        times: usize,
    },
    /// The gateway's Redis (private) is wiped with FLUSHALL `times` times, each once the
    /// archive holds everything (`archivedThrough == head`).
    RedisWiped {
        /// The private instance behind the gateway.
        redis: PrivateRedis,
        /// How many wipes.
        times: usize,
    },
    /// Archive writes fail (MongoDB unreachable) for the middle third of the load; afterwards a
    /// maintenance sweep completes the archive.
    ArchiveDown {
        /// A private Redis for the gateway on the real servers: the sweep backfills every
        /// session marked in its Redis, and on the shared one that would copy (and unmark)
        /// other tests' sessions.
        redis: Option<PrivateRedis>,
    },
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::None => "chaos",
            Fault::RedisKilled { .. } => "redis-sigkill",
            Fault::RedisWiped { .. } => "redis-wiped",
            Fault::ArchiveDown { .. } => "archive-down",
        }
    }
}

/// A private Redis, or `None` (skip) when `redis-server` is missing and the servers are not
/// required.
pub fn private_redis(aof: bool) -> Option<PrivateRedis> {
    if !redis_server_available() {
        assert!(
            !servers_required(),
            "redis-server is not installed: run `bash infra/services.sh install`"
        );
        eprintln!("skipping: redis-server is not installed");
        return None;
    }
    Some(PrivateRedis::start(aof))
}

// ---------------------------------------------------------------------------------------------
// Players

/// The shape of a scenario's load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Clients (one player each).
    pub clients: usize,
    /// New events each client submits.
    pub events: usize,
    /// Goblins in the session.
    pub goblins: usize,
    /// Chance (percent) that a submit is sent twice back to back, same id.
    pub duplicate_percent: u64,
    /// Chance (percent) per step that the socket is dropped abruptly (no close frame), then
    /// reopened with `since` and every unconfirmed event re-submitted.
    pub drop_percent: u64,
    /// Chance (percent) per step of a clean close and reconnect.
    pub reconnect_percent: u64,
    /// Bound on the whole scenario.
    pub within: Duration,
}

impl Load {
    /// A load of `clients` × `events`, with the default chaos rates.
    pub fn new(clients: usize, events: usize, within: Duration) -> Self {
        Self {
            clients,
            events,
            goblins: clients.div_ceil(4).max(2),
            duplicate_percent: 15,
            drop_percent: 6,
            reconnect_percent: 3,
            within,
        }
    }

    fn total(&self) -> u64 {
        (self.clients * self.events) as u64
    }
}

/// State the players and the fault share.
#[derive(Default)]
struct Shared {
    /// While set, players send nothing new (not even re-sends); they keep reading.
    hold: AtomicBool,
    /// Players parked by `hold`.
    parked: AtomicUsize,
    /// New events confirmed so far (first confirmations only).
    confirmed: AtomicU64,
    /// New events with an outcome so far: confirmed or refused.
    outcomes: AtomicU64,
    /// Players whose run is over.
    finished: AtomicUsize,
    /// While the archive is down: the head when it went down (`u64::MAX` otherwise).
    down_from: AtomicU64,
    /// Events committed after the archive went down and confirmed while it was still down.
    confirmed_while_down: AtomicU64,
}

/// One submit waiting for its outcome.
#[derive(Debug, Clone)]
struct Pending {
    event: Value,
    /// When to send it again without an answer.
    resend_at: Instant,
}

/// What one player did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayerStats {
    /// New events submitted.
    pub submitted: usize,
    /// Deliberate back-to-back duplicate sends.
    pub duplicates_sent: usize,
    /// Re-sends of unconfirmed events (after a drop, an error, or silence).
    pub resends: usize,
    /// Abrupt drops.
    pub drops: usize,
    /// Clean reconnects.
    pub reconnects: usize,
    /// `event:confirmed` frames with `duplicate: true`.
    pub duplicate_confirmations: usize,
    /// Submits refused with `conflict` (a stale compare-and-set).
    pub conflicts: usize,
    /// Retryable errors (`unavailable`, `rate_limited`, `internal`).
    pub retryable_errors: usize,
}

/// One client and its bookkeeping.
pub struct Player {
    /// The client, with its session client.
    pub client: WsClient,
    /// Every event this player saw confirmed, with its sequence.
    pub confirmed: HashMap<String, u64>,
    /// Events refused with `conflict` (never committed).
    pub refused: HashSet<String>,
    /// What it did.
    pub stats: PlayerStats,
    pending: BTreeMap<String, Pending>,
    rng: Rng,
    url: String,
    session: String,
    goblins: Vec<String>,
    load: Load,
    shared: Arc<Shared>,
}

impl Player {
    fn name(&self) -> &str {
        &self.client.user.id
    }

    /// The chaos sends raw submits: its duplicates and resends under one id are deliberate,
    /// and it keeps the outcome of every id itself. The client's session client learns each
    /// committed own event from its `event:confirmed` and replays it.
    async fn send_submit(&mut self, event: &Value) {
        self.client.submit_raw(event, None).await;
    }

    /// A new event: a compare-and-set attack from the HP this client sees (stale ones are
    /// refused with `conflict`), an increment (never refused), or a chat line.
    fn next_event(&mut self) -> Value {
        let s = self.session.as_str();
        let goblin = self.goblins[self.rng.below(self.goblins.len() as u64) as usize].clone();
        match self.rng.below(10) {
            0..=3 => match self.client.hp(&goblin) {
                Some(hp) => hit(s, &goblin, hp, hp - 1),
                None => chat(s, "no goblin yet"),
            },
            4..=6 => event(
                s,
                "plugin:dnd5e:attack",
                json!({"target": {"instanceId": goblin},
                       "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -1}}}),
            ),
            n => chat(s, &format!("{} says {n}", self.client.user.id)),
        }
    }

    /// Takes every frame received: records outcomes, schedules retries.
    fn settle(&mut self) {
        for frame in self.client.drain_inbox() {
            let data = &frame["data"];
            let Some(id) = data["tempId"].as_str() else {
                continue;
            };
            match frame["event"].as_str() {
                Some("event:confirmed") => {
                    let sequence = data["sequence"].as_u64().expect("a sequence");
                    if data["duplicate"] == true {
                        self.stats.duplicate_confirmations += 1;
                    }
                    assert!(
                        !self.refused.contains(id),
                        "{}: {id} was refused, then confirmed: {frame}",
                        self.client.user.id
                    );
                    match self.confirmed.insert(id.to_owned(), sequence) {
                        Some(before) => assert_eq!(
                            before, sequence,
                            "{}: {id} confirmed at two sequences",
                            self.client.user.id
                        ),
                        None => {
                            if sequence > self.shared.down_from.load(Ordering::SeqCst) {
                                self.shared
                                    .confirmed_while_down
                                    .fetch_add(1, Ordering::SeqCst);
                            }
                            self.shared.confirmed.fetch_add(1, Ordering::SeqCst);
                            self.shared.outcomes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    self.pending.remove(id);
                }
                Some("event:error") => match data["code"].as_str() {
                    Some("conflict") => {
                        if self.pending.remove(id).is_some() {
                            assert!(
                                !self.confirmed.contains_key(id),
                                "{}: {id} was confirmed, then refused: {frame}",
                                self.client.user.id
                            );
                            self.refused.insert(id.to_owned());
                            self.stats.conflicts += 1;
                            self.shared.outcomes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Some("unavailable" | "rate_limited" | "internal") => {
                        self.stats.retryable_errors += 1;
                        if let Some(p) = self.pending.get_mut(id) {
                            p.resend_at = Instant::now() + RETRY_AFTER;
                        }
                    }
                    _ => panic!("{}: unexpected refusal: {frame}", self.client.user.id),
                },
                _ => {}
            }
        }
    }

    /// Re-sends every pending submit that is due.
    async fn resend_due(&mut self) {
        if !self.client.is_open() {
            self.rejoin().await;
            return;
        }
        let now = Instant::now();
        let due: Vec<Value> = self
            .pending
            .values_mut()
            .filter(|p| p.resend_at <= now)
            .map(|p| {
                p.resend_at = now + RESEND_AFTER;
                p.event.clone()
            })
            .collect();
        for event in due {
            self.stats.resends += 1;
            self.send_submit(&event).await;
        }
    }

    /// Opens a new socket, subscribes from the last sequence applied, and re-submits every
    /// unconfirmed event under its id.
    async fn rejoin(&mut self) {
        self.client.reconnect(&self.url).await;
        resubscribe(&mut self.client, &self.session).await;
        let pending: Vec<Value> = self.pending.values().map(|p| p.event.clone()).collect();
        let now = Instant::now();
        for p in self.pending.values_mut() {
            p.resend_at = now + RESEND_AFTER;
        }
        for event in pending {
            self.stats.resends += 1;
            self.send_submit(&event).await;
        }
    }

    /// Reads until the hold is lifted, sending nothing.
    async fn park(&mut self, deadline: Instant) {
        if !self.shared.hold.load(Ordering::SeqCst) {
            return;
        }
        self.shared.parked.fetch_add(1, Ordering::SeqCst);
        while self.shared.hold.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "{}: held too long", self.name());
            if self.client.is_open() {
                self.client.tick().await;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.settle();
        }
        self.shared.parked.fetch_sub(1, Ordering::SeqCst);
    }

    /// The player's run: submit, duplicate, drop, reconnect, until every event has an outcome.
    async fn play(mut self, deadline: Instant) -> Self {
        for _ in 0..self.load.events {
            self.park(deadline).await;
            if !self.client.is_open() {
                self.rejoin().await;
            }
            let event = self.next_event();
            let id = event["id"].as_str().expect("an id").to_owned();
            self.pending.insert(
                id,
                Pending {
                    event: event.clone(),
                    resend_at: Instant::now() + RESEND_AFTER,
                },
            );
            self.stats.submitted += 1;
            self.send_submit(&event).await;
            if self.rng.percent(self.load.duplicate_percent) {
                self.stats.duplicates_sent += 1;
                self.send_submit(&event).await;
            }
            if self.rng.percent(self.load.drop_percent) {
                // Mid-stream: the outcome of what was just sent, and whatever the session
                // broadcasts meanwhile, is lost with the socket.
                self.stats.drops += 1;
                self.client.drop_abruptly().await;
                self.rejoin().await;
            } else if self.rng.percent(self.load.reconnect_percent) {
                self.stats.reconnects += 1;
                self.client.close().await;
                self.rejoin().await;
            }
            self.client.tick().await;
            self.settle();
            self.park(deadline).await;
            self.resend_due().await;
        }
        while !self.pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{}: {} submits never got an outcome: {:?}",
                self.name(),
                self.pending.len(),
                self.pending.keys().collect::<Vec<_>>()
            );
            self.park(deadline).await;
            self.client.tick().await;
            self.settle();
            self.resend_due().await;
        }
        self.shared.finished.fetch_add(1, Ordering::SeqCst);
        self
    }
}

/// Subscribes again through the client's session client (from its last applied sequence);
/// retries while the stores answer `unavailable` (Redis down), bounded by [`RESUBSCRIBE_FOR`].
pub async fn resubscribe(client: &mut WsClient, session: &str) {
    assert_eq!(
        client
            .session_client()
            .map(|c| c.confirmed().session_id.as_str()),
        Some(session),
        "{} follows the session",
        client.user.id
    );
    let started = Instant::now();
    loop {
        let rid = client.start_subscribe().await;
        // A loaded gateway (the long variants) may take longer than a single wait's bound.
        let mut answer = None;
        client
            .wait_until_within(&format!("the answer to {rid}"), RESUBSCRIBE_FOR, |c| {
                answer = c.take(|f| {
                    (f["event"] == "session:subscribed" || f["event"] == "error")
                        && f["data"]["requestId"] == rid.as_str()
                });
                answer.is_some()
            })
            .await;
        let answer = answer.expect("found");
        if answer["event"] == "session:subscribed" {
            // The catch-up batches feed the session client as they arrive.
            return;
        }
        assert!(
            answer["data"]["code"] == "unavailable" || answer["data"]["code"] == "rate_limited",
            "{}: subscribe refused: {answer}",
            client.user.id
        );
        assert!(
            started.elapsed() < RESUBSCRIBE_FOR,
            "{}: could not subscribe again within {RESUBSCRIBE_FOR:?}: {answer}",
            client.user.id
        );
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// The hash of a state as both sides compute it: the canonical JSON checksum of the state
/// without the campaign id (clients do not know it; a session client does not need it).
pub fn state_hash(state: &GameSessionState) -> String {
    let mut state = state.clone();
    state.campaign_id = None;
    checksum(&serde_json::to_value(&state).expect("a state serializes"))
}

// ---------------------------------------------------------------------------------------------
// The scenario

/// What a scenario left behind, for [`Outcome::check`].
pub struct Outcome {
    /// The gateway, still running.
    pub running: Running,
    /// The table.
    pub table: Table,
    /// The players after their runs.
    pub players: Vec<Player>,
}

impl Outcome {
    /// The invariants: a gap-free log without repeated ids, every confirmed event in it at its
    /// confirmed sequence, no refused event in it, and every client's state equal to the server's
    /// state. Returns the head.
    pub async fn check(&mut self) -> u64 {
        let http = Http::new(&self.running);
        let session = self.table.session.clone();
        let events = http.all_events(&session, &self.table.gm.token).await;
        let head = events.len() as u64;
        assert_eq!(
            sequences_of(&events),
            (1..=head).collect::<Vec<_>>(),
            "the log is 1..=head, gap-free"
        );
        // The head through the service, which rebuilds a hot state a wipe removed.
        let server_head =
            dlab_service::pipeline::head(&self.running.deps, &self.table.session_id())
                .await
                .expect("the head");
        assert_eq!(server_head.get(), head, "GET /events ends at the head");
        let ids = ids_of(&events);
        let at: HashMap<&str, u64> = ids
            .iter()
            .zip(1u64..)
            .map(|(id, seq)| (id.as_str(), seq))
            .collect();
        assert_eq!(at.len(), ids.len(), "no event id is in the log twice");
        let mut confirmed = 0usize;
        for p in &self.players {
            for (id, seq) in &p.confirmed {
                confirmed += 1;
                assert_eq!(
                    at.get(id.as_str()),
                    Some(seq),
                    "{}: {id}, confirmed at sequence {seq}, is in the log there",
                    p.client.user.id
                );
            }
            for id in &p.refused {
                assert!(
                    !at.contains_key(id.as_str()),
                    "{}: {id} was refused but is in the log",
                    p.client.user.id
                );
            }
        }
        let submitted: usize = self.players.iter().map(|p| p.stats.submitted).sum();
        let refused: usize = self.players.iter().map(|p| p.refused.len()).sum();
        assert_eq!(
            confirmed + refused,
            submitted,
            "every submitted event ended confirmed or refused"
        );
        assert_eq!(
            head,
            self.table.setup_head() + confirmed as u64,
            "the log holds the setup and exactly the confirmed events"
        );

        let mut folded = GameSessionState::new(self.table.session_id(), None);
        for e in &events {
            let e: GameEvent = serde_json::from_value(e.clone()).expect("a GameEvent");
            folded.apply(&e).expect("every logged event applies");
        }
        let server = self
            .running
            .deps
            .log
            .state(&self.table.session_id())
            .await
            .expect("the state")
            .expect("a hot state");
        let expected = state_hash(&server);
        assert_eq!(
            state_hash(&folded),
            expected,
            "the server's state is the fold of its log"
        );
        let url = self.running.ws_url();
        futures::stream::iter(self.players.iter_mut())
            .for_each_concurrent(16, |p| {
                let (url, session, expected) = (&url, &session, &expected);
                async move {
                    let c = &mut p.client;
                    if !c.is_open() {
                        c.reconnect(url).await;
                        resubscribe(c, session).await;
                    }
                    // The pong's heads reveal a lost tail; the session client replays it.
                    c.ping(&format!("final-{}", e2e::tag())).await;
                    c.wait_applied_within(head, CONVERGE_WITHIN).await;
                    assert_eq!(
                        c.applied(),
                        (1..=head).collect::<Vec<_>>(),
                        "{} applied every event once, in order",
                        c.user.id
                    );
                    let own = c.state().expect("a session client");
                    assert_eq!(
                        state_hash(own),
                        *expected,
                        "{}: its state equals the server's state",
                        c.user.id
                    );
                }
            })
            .await;
        head
    }

    /// Sums the players' stats.
    pub fn stats(&self) -> PlayerStats {
        let mut t = PlayerStats::default();
        for p in &self.players {
            let s = p.stats;
            t.submitted += s.submitted;
            t.duplicates_sent += s.duplicates_sent;
            t.resends += s.resends;
            t.drops += s.drops;
            t.reconnects += s.reconnects;
            t.duplicate_confirmations += s.duplicate_confirmations;
            t.conflicts += s.conflicts;
            t.retryable_errors += s.retryable_errors;
        }
        t
    }
}

/// Runs `load` on a gateway of `backend` while `fault` strikes, checks the invariants, and
/// shuts the gateway down.
pub async fn scenario(backend: Backend, load: Load, fault: Fault, seed: u64) {
    let _alone = e2e::exclusive().await;
    let t0 = Instant::now();
    let name = fault.name();
    let mut options = backend.options(Limits::default());
    match &fault {
        Fault::RedisKilled { redis, .. }
        | Fault::RedisWiped { redis, .. }
        | Fault::ArchiveDown { redis: Some(redis) } => {
            options.backends.redis = Some(redis.url());
            options.backends.redis_cluster = false;
        }
        Fault::None | Fault::ArchiveDown { redis: None } => {}
    }
    // Every scenario's archive can be taken down; only `ArchiveDown` does.
    let mut archive = None;
    let running = start_with(options, |mut deps| {
        generous_limits(&mut deps);
        let flaky = Arc::new(FlakyArchive {
            inner: deps.archive.clone(),
            down: AtomicBool::new(false),
        });
        deps.archive = flaky.clone();
        archive = Some(flaky);
        deps
    })
    .await
    .unwrap_or_else(|e| panic!("the gateway on {backend:?} did not start: {e:?}"));
    let http = Http::new(&running);
    let table = setup_table(&http, load.clients, load.goblins).await;
    let url = running.ws_url();
    let shared = Arc::new(Shared {
        down_from: AtomicU64::new(u64::MAX),
        ..Shared::default()
    });
    let mut clients: Vec<WsClient> = futures::stream::iter(table.players.iter())
        .map(|u| WsClient::connect(&url, u))
        .buffered(10)
        .collect()
        .await;
    futures::stream::iter(clients.iter_mut())
        .for_each_concurrent(10, |c| {
            let s = table.session.as_str();
            async move {
                c.subscribe(s, 0).await;
            }
        })
        .await;
    println!(
        "{name} ({backend:?}): {} clients joined after {} ms",
        load.clients,
        t0.elapsed().as_millis()
    );
    let deadline = t0 + load.within;
    let mut rng = Rng::new(seed);
    // The players run concurrently with the fault, on this task: a session client is not
    // `Send` (its entropy and rebase hook are plain boxed trait objects).
    let plays = futures::future::join_all(clients.into_iter().map(|client| {
        let player = Player {
            client,
            confirmed: HashMap::new(),
            refused: HashSet::new(),
            stats: PlayerStats::default(),
            pending: BTreeMap::new(),
            rng: Rng::new(rng.next_u64()),
            url: url.clone(),
            session: table.session.clone(),
            goblins: table.goblins.clone(),
            load,
            shared: shared.clone(),
        };
        player.play(deadline)
    }));

    let archive = archive.expect("the archive was wrapped");
    let mut fault = fault;
    let (players, struck) = tokio::join!(
        plays,
        strike(
            &running, &table, &mut fault, &archive, &load, &shared, deadline,
        )
    );
    let played_ms = t0.elapsed().as_millis();
    if let Fault::ArchiveDown { .. } = &fault {
        complete_archive_after_outage(&running, &table, &archive, struck).await;
    }
    let mut outcome = Outcome {
        running,
        table,
        players,
    };
    let head = outcome.check().await;
    if !matches!(fault, Fault::None) {
        // An archive write that timed out during the fault (the commit stands) is copied by
        // the next maintenance run, as on AWS; then the archive is the log.
        let report = sweep(&outcome.running).await;
        println!("{name}: sweep before the archive check: {report:?}");
        archive_matches_log(&outcome, head).await;
    }
    let s = outcome.stats();
    println!(
        "{name} ({backend:?}): seed {seed}, {} clients × {} events: head {head}; {} submitted, \
         {} deliberate duplicates ({} confirmed duplicate), {} re-sends, {} drops, {} \
         reconnects, {} conflicts, {} retryable errors; fault: {struck:?}; played in {played_ms} \
         ms, total {} ms",
        load.clients,
        load.events,
        s.submitted,
        s.duplicates_sent,
        s.duplicate_confirmations,
        s.resends,
        s.drops,
        s.reconnects,
        s.conflicts,
        s.retryable_errors,
        t0.elapsed().as_millis()
    );
    assert!(
        s.drops > 0 || load.drop_percent == 0,
        "the run dropped sockets"
    );
    outcome.running.shutdown().await;
}

/// What the fault did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Struck {
    /// Times it struck.
    pub times: usize,
    /// The head when it first struck.
    pub head_before: u64,
    /// Events committed after the archive went down and confirmed before it came back.
    pub confirmed_during: u64,
}

/// Waits until `target` new events have an outcome.
async fn progress(shared: &Shared, target: u64, deadline: Instant) {
    while shared.outcomes.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "the load stalled at {} of {target} outcomes",
            shared.outcomes.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn strike(
    running: &Running,
    table: &Table,
    fault: &mut Fault,
    archive: &FlakyArchive,
    load: &Load,
    shared: &Shared,
    deadline: Instant,
) -> Struck {
    let session = table.session_id();
    let total = load.total();
    let mut struck = Struck::default();
    match fault {
        Fault::None => {}
        Fault::RedisKilled { redis, times } => {
            for k in 0..*times {
                progress(
                    shared,
                    total * (k as u64 + 1) / (*times as u64 + 2),
                    deadline,
                )
                .await;
                let head = service_head(running, &session).await;
                if k == 0 {
                    struck.head_before = head;
                }
                let sequence = kill_and_restart(redis, &session).await;
                assert!(
                    sequence >= head,
                    "the append-only file kept every acknowledged commit: head {sequence} after \
                     the restart, {head} before the kill"
                );
                struck.times += 1;
            }
        }
        Fault::RedisWiped { redis, times } => {
            for k in 0..*times {
                progress(
                    shared,
                    total * (k as u64 + 1) / (*times as u64 + 2),
                    deadline,
                )
                .await;
                shared.hold.store(true, Ordering::SeqCst);
                let head = caught_up(running, &session, shared, load, deadline).await;
                if k == 0 {
                    struck.head_before = head;
                }
                flushall(redis).await;
                shared.hold.store(false, Ordering::SeqCst);
                struck.times += 1;
            }
        }
        Fault::ArchiveDown { .. } => {
            progress(shared, total / 3, deadline).await;
            archive.down.store(true, Ordering::SeqCst);
            struck.head_before = service_head(running, &session).await;
            shared.down_from.store(struck.head_before, Ordering::SeqCst);
            struck.times = 1;
            progress(shared, total * 2 / 3, deadline).await;
            let head = service_head(running, &session).await;
            let archived = archive
                .inner
                .archived_through(&session)
                .await
                .expect("archived");
            assert!(
                archived.get() < head,
                "the outage left the archive behind ({archived} < {head})"
            );
            archive.down.store(false, Ordering::SeqCst);
            shared.down_from.store(u64::MAX, Ordering::SeqCst);
            struck.confirmed_during = shared.confirmed_while_down.load(Ordering::SeqCst);
            assert!(
                struck.confirmed_during > 0,
                "commits continued while the archive was down: events committed after it went \
                 down were confirmed before it came back"
            );
        }
    }
    struck
}

/// Kills the private Redis with SIGKILL, restarts it on its append-only file, and returns the
/// session's head as the restarted server has it (read before the gateway, whose clients retry,
/// could rebuild a lost hot state from the archive and hide the loss).
async fn kill_and_restart(redis: &mut PrivateRedis, session: &SessionId) -> u64 {
    redis.kill9();
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.restart();
    let log = dlab_store::redis::RedisEventLog::new(
        dlab_store::redis::RedisConfig::new(redis.url())
            .connect()
            .await
            .expect("the restarted redis"),
    );
    use dlab_store::EventLog;
    // A restarted Redis answers `LOADING` while it replays a long append-only file.
    for _ in 0..400 {
        match log.head(session).await {
            Ok(head) => return head.get(),
            Err(e @ dlab_store::StoreError::HotStateMissing(_)) => {
                panic!("the restarted redis lost the session's hot state: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the restarted redis did not answer within 20 s");
}

/// The session's head through the service (which rebuilds a wiped hot state, as a subscriber's
/// ping would), retried while the store is briefly unavailable (a loaded machine).
async fn service_head(running: &Running, session: &SessionId) -> u64 {
    let mut last = None;
    for _ in 0..100 {
        match dlab_service::pipeline::head(&running.deps, session).await {
            Ok(head) => return head.get(),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no head for {session}: {last:?}");
}

/// With every player parked, waits until nothing is in flight and the archive holds every
/// committed event (`archivedThrough == head`, the same three polls in a row); returns the head.
async fn caught_up(
    running: &Running,
    session: &SessionId,
    shared: &Shared,
    load: &Load,
    deadline: Instant,
) -> u64 {
    // A player whose run is over parks no more: it counts as parked.
    while shared.parked.load(Ordering::SeqCst) + shared.finished.load(Ordering::SeqCst)
        < load.clients
    {
        assert!(Instant::now() < deadline, "the players did not park");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut same = 0;
    let mut last = None;
    loop {
        assert!(Instant::now() < deadline, "the archive never caught up");
        let head = Sequence(service_head(running, session).await);
        let archived = running
            .deps
            .archive
            .archived_through(session)
            .await
            .expect("archivedThrough");
        if last == Some(head) {
            same += 1;
        } else {
            same = 0;
        }
        last = Some(head);
        if same >= 3 {
            if archived == head {
                return head.get();
            }
            // The head is still but the archive lags: an archive write timed out. Backfill
            // copies it, as the next maintenance run would.
            let report = sweep(running).await;
            println!("redis-wiped: the archive lagged ({archived} < {head}): {report:?}");
            same = 0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn flushall(redis: &PrivateRedis) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the private redis");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
}

/// After the archive outage: it lags behind the head; one sweep completes it; a second sweep
/// copies nothing.
async fn complete_archive_after_outage(
    running: &Running,
    table: &Table,
    archive: &FlakyArchive,
    struck: Struck,
) {
    let session = table.session_id();
    let head = Sequence(service_head(running, &session).await);
    // The strike saw the archive behind when it came back; an inline compaction (every
    // `DLAB_COMPACTION_THRESHOLD` events) may have backfilled part of it since.
    let report = sweep(running).await;
    println!(
        "archive-down: sweep after the outage ({} confirmed during it): {report:?}",
        struck.confirmed_during
    );
    assert_eq!(
        archive
            .inner
            .archived_through(&session)
            .await
            .expect("archived"),
        head,
        "the archive is complete"
    );
    // Another sweep leaves this session's archive as it is (other sessions of the shared
    // servers may still have work: its report is not this session's).
    sweep(running).await;
    assert_eq!(
        archive
            .inner
            .archived_through(&session)
            .await
            .expect("archived"),
        head,
        "the archive is still complete"
    );
}

/// One maintenance run (backfill, compaction, idle release), as the gateway's timer makes it.
async fn sweep(running: &Running) -> dlab_service::maintenance::SweepReport {
    dlab_service::maintenance::sweep(
        &running.deps,
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await
}

/// The archive holds 1..=head exactly once, each event equal to the log's.
async fn archive_matches_log(outcome: &Outcome, head: u64) {
    let session = outcome.table.session_id();
    let archived = outcome
        .running
        .deps
        .archive
        .read(&session, Sequence::ZERO, None, 100_000)
        .await
        .expect("the archive");
    let seqs: Vec<u64> = archived.iter().map(|e| e.sequence.get()).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "the archive holds 1..=head, each once"
    );
    // A compaction (every `DLAB_COMPACTION_THRESHOLD` events) trims the hot log's start.
    let floor = outcome
        .running
        .deps
        .log
        .floor(&session)
        .await
        .expect("the hot log's floor");
    let logged = outcome
        .running
        .deps
        .log
        .read(&session, Sequence(floor.get() - 1), None, 100_000)
        .await
        .expect("the hot log");
    for e in &logged {
        assert_eq!(
            &archived[(e.sequence.get() - 1) as usize],
            e,
            "archive and hot log agree at {}",
            e.sequence
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A frame that never arrives

/// Two ways one client misses frames, and how it converges:
///
/// 1. A reader's socket dies in the middle of a stream of events: it reconnects with `since` =
///    its last applied sequence and the catch-up brings exactly what it missed.
/// 2. A client drops right after a submit, before its outcome: the event was committed; the
///    same id re-submitted after the reconnect is `duplicate: true` with the original sequence.
/// 3. The handler that committed an event stops before confirming or broadcasting it (every
///    frame of that event is lost): nobody hears of it, no later event reveals the gap, and
///    still a reader converges through `ping` (`pong.heads` shows the head, the session client
///    replays the tail), and the sender's re-submit under the same id is `duplicate: true` with
///    the original sequence and re-broadcast, which heals a client that never asked.
pub async fn dropped_mid_stream_and_a_handler_that_stops_after_commit(backend: Backend) {
    let _turn = e2e::shared().await;
    let t0 = Instant::now();
    let mut wrapped = None;
    let running = start_with(backend.options(Limits::default()), |mut deps| {
        generous_limits(&mut deps);
        let losing = Arc::new(LosingNotifier::new(deps.notifier.clone()));
        deps.notifier = losing.clone();
        wrapped = Some(losing);
        deps
    })
    .await
    .unwrap_or_else(|e| panic!("the gateway on {backend:?} did not start: {e:?}"));
    let losing = wrapped.expect("the notifier was wrapped");
    let url = running.ws_url();
    let http = Http::new(&running);
    let t = setup_table(&http, 3, 1).await;
    let s = t.session.as_str();
    let session = t.session_id();
    let mut clients =
        e2e::join_session(&running, &[&t.players[0], &t.players[1], &t.players[2]], s).await;
    let [sender, reader, quiet] = clients.as_mut_slice() else {
        unreachable!()
    };

    // 1. The reader's socket dies mid-stream.
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(sender.submit(say(&format!("line {i}")), None).await);
        if i == 4 {
            reader.drop_abruptly().await;
        }
    }
    for id in &ids {
        sender.confirmed(id).await;
    }
    let mut head = t.setup_head() + 10;
    assert!(reader.last() < head, "the reader missed the end");
    reader.reconnect(&url).await;
    resubscribe(reader, s).await;
    reader.wait_applied(head).await;
    quiet.wait_applied(head).await;

    // 2. The reader's socket dies after its submit was committed and before it read the
    //    outcome (whatever its socket received is dropped unread with it).
    // Raw: the same envelope is sent again on purpose after the reconnect.
    let attack = hit(s, "goblin1", 15, 11);
    let id = reader.submit_raw(&attack, None).await;
    sender
        .wait_until("the reader's attack", |c| c.has_applied(&id))
        .await;
    reader.drop_abruptly().await;
    assert!(!reader.has_applied(&id));
    head += 1;
    let stored = http.all_events(s, &t.gm.token).await;
    assert_eq!(stored.last().expect("events")["id"], id.as_str());
    reader.reconnect(&url).await;
    resubscribe(reader, s).await;
    reader.submit_raw(&attack, Some("again")).await;
    let again = reader.expect_rid("event:confirmed", "again").await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["sequence"], head, "the original sequence: {again}");
    reader.wait_applied(head).await;

    // 3. Every frame of one event is lost, as if its handler stopped right after the commit.
    let lost = hit(s, "goblin1", 11, 8);
    let lost_id = lost["id"].as_str().expect("an id").to_owned();
    losing.lose(Some(&lost_id));
    sender.submit_raw(&lost, None).await;
    head += 1;
    e2e::eventually(
        "the lost event is committed and its frames lost",
        async || {
            running.deps.log.head(&session).await.ok() == Some(Sequence(head)) && losing.lost() >= 3
        },
    )
    .await;
    assert!(
        !reader.has_applied(&lost_id),
        "no frame of the lost event reached the reader"
    );
    let heads = reader.ping("after-the-loss").await;
    assert_eq!(heads[s], head, "pong.heads shows the head: {heads}");
    reader.wait_applied(head).await;
    assert_eq!(reader.hp("goblin1"), Some(8));
    losing.lose(None);
    sender.submit_raw(&lost, Some("heal")).await;
    let healed = sender.expect_rid("event:confirmed", "heal").await;
    assert_eq!(healed["duplicate"], true, "{healed}");
    assert_eq!(healed["sequence"], head, "the original sequence: {healed}");
    sender.wait_applied(head).await;
    quiet.wait_applied(head).await;

    let server = running
        .deps
        .log
        .state(&session)
        .await
        .expect("the state")
        .expect("a hot state");
    for c in [&*sender, &*reader, &*quiet] {
        assert_eq!(
            c.applied(),
            (1..=head).collect::<Vec<_>>(),
            "{} applied every event once, in order",
            c.user.id
        );
        assert_eq!(
            state_hash(c.state().expect("a session client")),
            state_hash(&server),
            "{} converged on the server's state",
            c.user.id
        );
    }
    let stored = http.all_events(s, &t.gm.token).await;
    assert_eq!(sequences_of(&stored), (1..=head).collect::<Vec<_>>());
    assert_eq!(
        ids_of(&stored).iter().filter(|i| **i == lost_id).count(),
        1,
        "the re-submitted event is stored once"
    );
    println!(
        "lost frames ({backend:?}): converged at {head} after {} frames lost, total {} ms",
        losing.lost(),
        t0.elapsed().as_millis()
    );
    running.shutdown().await;
}
