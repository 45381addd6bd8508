//! Foundation hardening of the WebSocket use cases: rebuilds and reads never cross an archive
//! hole, a corrupt archive is `internal`, catch-ups stream within their budget, every action
//! is rate limited (per connection before any lookup, per user per class), and extreme
//! numbers in any field are refused without changing anything.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::{RateBudget, Settings};
use dlab_store::memory::MemoryNotifier;
use dlab_store::model::{Connection, Subscription};
use dlab_store::{
    ArchiveError, ConnectionRegistry, EventArchive, EventLog, Notifier, NotifyError, PostOutcome,
    StoreError,
};
use dlab_tests::ws_world::{Client, MemoryTransport, SECRET, Table, World, hit_message};
use serde_json::{Value, json};

fn world_with(settings: Settings, edit: impl FnOnce(&mut Deps)) -> World {
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    edit(&mut deps);
    World::new(deps, Arc::new(MemoryTransport(notifier)))
}

fn chat(session: &SessionId, text: &str) -> Value {
    json!({"action": "submit", "event": {"id": uuid::Uuid::new_v4().to_string(),
        "sessionId": session, "type": "core:chat", "payload": {"text": text}}})
}

/// Commits `n` chats through `client` (subscribed), each confirmed.
async fn chats(client: &mut Client, session: &SessionId, n: usize) {
    for i in 0..n {
        client.send(chat(session, &format!("m{i}"))).await;
        client.expect("event:confirmed").await;
    }
}

/// What an archive wrapper hides or breaks.
#[derive(Clone, Copy)]
enum Damage {
    /// These sequences are missing (never archived).
    Missing(u64, u64),
    /// Everything above this sequence is missing.
    Above(u64),
    /// This sequence holds an event that cannot apply (corrupt data).
    Corrupt(u64),
}

/// The memory archive behind a [`Damage`], switched on when the test says so.
struct DamagedArchive {
    inner: Arc<dyn EventArchive>,
    damage: Damage,
    on: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl EventArchive for DamagedArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        self.inner.insert(event).await
    }
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        let events = self.inner.read(session, after, to, limit).await?;
        if !self.on.load(Ordering::SeqCst) {
            return Ok(events);
        }
        Ok(events
            .into_iter()
            .filter_map(|mut e| {
                let s = e.sequence.get();
                match self.damage {
                    Damage::Missing(a, b) if (a..=b).contains(&s) => None,
                    Damage::Above(a) if s > a => None,
                    Damage::Corrupt(c) if s == c => {
                        // Removes an instance that was never added: it cannot apply.
                        e.event_type = "core:session:actor_removed".into();
                        e.payload = json!({"instanceId": "nobody-here"});
                        Some(e)
                    }
                    _ => Some(e),
                }
            })
            .collect())
    }
    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        let through = self.inner.archived_through(session).await?;
        Ok(match (self.on.load(Ordering::SeqCst), self.damage) {
            (true, Damage::Missing(a, _)) => Sequence(through.get().min(a - 1)),
            // The archive claims more than it returns (events deleted behind its back): the
            // floor says everything is replayable, and the read must still refuse the hole.
            (true, Damage::Above(_)) => through,
            _ => through,
        })
    }
    async fn ids(
        &self,
        session: &SessionId,
    ) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        self.inner.ids(session).await
    }
    async fn touch(&self, s: &SessionId, at: u64) -> Result<(), ArchiveError> {
        self.inner.touch(s, at).await
    }
    async fn active_since(
        &self,
        since: u64,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        self.inner.active_since(since, after, limit).await
    }
    async fn idle_hot(&self, before: u64, limit: usize) -> Result<Vec<SessionId>, ArchiveError> {
        self.inner.idle_hot(before, limit).await
    }
    async fn set_hot(&self, s: &SessionId, hot: bool) -> Result<(), ArchiveError> {
        self.inner.set_hot(s, hot).await
    }
    async fn prune(
        &self,
        s: &SessionId,
        through: Sequence,
        older: u64,
    ) -> Result<u64, ArchiveError> {
        self.inner.prune(s, through, older).await
    }
    async fn pruned_through(&self, s: &SessionId) -> Result<Sequence, ArchiveError> {
        self.inner.pruned_through(s).await
    }
}

/// A memory world whose archive takes `damage` once [`DamagedArchive::on`] is set.
fn damaged_world(settings: Settings, damage: Damage) -> (World, Arc<DamagedArchive>) {
    let (deps, notifier) = Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    let archive = Arc::new(DamagedArchive {
        inner: deps.archive.clone(),
        damage,
        on: false.into(),
    });
    let mut deps = deps;
    deps.archive = archive.clone();
    (
        World::new(deps, Arc::new(MemoryTransport(notifier))),
        archive,
    )
}

async fn head_of(world: &World, session: &SessionId) -> Result<Sequence, StoreError> {
    world.deps().log.head(session).await
}

#[tokio::test]
async fn a_rebuild_over_an_archive_hole_is_refused_as_unavailable_and_rebuilds_nothing() {
    let (world, archive) = damaged_world(Settings::default(), Damage::Missing(3, 4));
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    chats(&mut p1, &t.session, 5).await; // sequences 2..=6
    archive.on.store(true, Ordering::SeqCst);
    world.deps().log.release(&t.session).await.unwrap(); // a wiped Redis
    let (id, hit) = hit_message(&t.session, 15, 7);
    p1.send(hit).await;
    let e = p1.expect("event:error").await;
    assert_eq!(e["tempId"], id.as_str());
    assert_eq!(e["code"], "unavailable", "{e}");
    assert!(
        matches!(
            head_of(&world, &t.session).await,
            Err(StoreError::HotStateMissing(_))
        ),
        "nothing was rebuilt over the hole"
    );
    // Once the hole is closed (backfill), the same submit rebuilds and commits at 7.
    archive.on.store(false, Ordering::SeqCst);
    let (_, hit) = hit_message(&t.session, 15, 7);
    p1.send(hit).await;
    assert_eq!(p1.expect("event:confirmed").await["sequence"], 7);
}

#[tokio::test]
async fn a_corrupt_archived_event_is_internal_not_invalid_event() {
    let (world, archive) = damaged_world(Settings::default(), Damage::Corrupt(3));
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    chats(&mut p1, &t.session, 3).await;
    archive.on.store(true, Ordering::SeqCst);
    world.deps().log.release(&t.session).await.unwrap();
    let (_, hit) = hit_message(&t.session, 15, 7);
    p1.send(hit).await;
    let e = p1.expect("event:error").await;
    assert_eq!(e["code"], "internal", "{e}");
    assert_eq!(e["message"], "internal error", "details stay in the log");
}

#[tokio::test]
async fn a_range_whose_archive_part_stops_short_is_unavailable_never_complete() {
    let settings = Settings {
        read_page: 2,
        ..Settings::default()
    };
    let (world, archive) = damaged_world(settings, Damage::Above(3));
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    chats(&mut p1, &t.session, 9).await; // head 10
    world
        .deps()
        .log
        .trim_below(&t.session, Sequence(8))
        .await
        .unwrap();
    archive.on.store(true, Ordering::SeqCst); // the archive holds 1..=3 only
    p1.send(json!({"action": "replay", "sessionId": t.session, "from": 0, "requestId": "r"}))
        .await;
    let mut seen = Vec::new();
    let error = loop {
        let f = p1.next().await;
        match f["event"].as_str() {
            Some("events:batch") => {
                assert_ne!(
                    (
                        f["data"]["isLast"].as_bool(),
                        f["data"]["complete"].as_bool()
                    ),
                    (Some(true), Some(true)),
                    "a range with a hole was answered as complete: {f}"
                );
                for e in f["data"]["events"].as_array().unwrap() {
                    seen.push(e["sequence"].as_u64().unwrap());
                }
            }
            Some("error") => break f["data"].clone(),
            _ => {}
        }
    };
    assert_eq!(error["code"], "unavailable", "{error}");
    assert_eq!(error["action"], "replay");
    assert_eq!(error["requestId"], "r");
    assert!(
        seen.iter().all(|s| *s <= 3),
        "nothing past the hole: {seen:?}"
    );
}

/// A notifier that takes `delay` per post and records every post's first bytes.
struct SlowNotifier {
    inner: MemoryNotifier,
    delay: Duration,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl Notifier for SlowNotifier {
    async fn post(&self, c: &ConnectionId, data: &[u8]) -> Result<PostOutcome, NotifyError> {
        tokio::time::sleep(self.delay).await;
        self.log
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned());
        self.inner.post(c, data).await
    }
}

#[tokio::test]
async fn the_catch_up_budget_covers_posting_and_ends_with_complete_false() {
    // Reading is instant in memory and one page holds the whole log; each post takes 40 ms
    // and the budget is 300 ms, so the budget runs out while posting that one page.
    let memory = MemoryNotifier::new();
    let slow = Arc::new(SlowNotifier {
        inner: memory.clone(),
        delay: Duration::from_millis(40),
        log: Mutex::new(Vec::new()),
    });
    let settings = Settings {
        catchup_budget: Duration::from_millis(300),
        read_page: 100,
        ..Settings::default()
    };
    let fast = world_with(settings.clone(), |_| {});
    let t = fast.seed().await;
    let mut writer = fast.connect(&t.players[0]).await;
    writer.subscribe(&t.session, 0).await;
    let text = "x".repeat(9_000); // three events per 28 KB frame
    for _ in 0..40 {
        writer.send(chat(&t.session, &text)).await;
        writer.expect("event:confirmed").await;
    }
    let mut deps = fast.deps().clone();
    deps.notifier = slow.clone();
    let world = World::new(deps, Arc::new(MemoryTransport(memory)));
    let mut p2 = world.connect(&t.players[1]).await;
    p2.send(json!({"action": "subscribe", "sessionId": t.session, "since": 0}))
        .await;
    p2.expect("session:subscribed").await;
    let mut next = 1;
    loop {
        let b = p2.expect("events:batch").await;
        for e in b["events"].as_array().unwrap() {
            assert_eq!(e["sequence"], next, "contiguous from the start");
            next += 1;
        }
        if b["isLast"] == true {
            assert_eq!(b["complete"], false, "stopped early: {} of 41", next - 1);
            break;
        }
    }
    assert!(
        next - 1 < 41,
        "the budget ran out before all 41 events were posted"
    );
    println!(
        "catch-up posted {} of 41 events within its budget",
        next - 1
    );
}

/// An event log that records the order of reads, to show a catch-up posts a page before
/// reading the next one.
struct RecordingLog {
    inner: Arc<dyn EventLog>,
    trace: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl EventLog for RecordingLog {
    async fn init_session(&self, s: &SessionId) -> Result<(), StoreError> {
        self.inner.init_session(s).await
    }
    async fn commit(
        &self,
        r: dlab_store::CommitRequest,
    ) -> Result<dlab_store::Committed, dlab_store::CommitError> {
        self.inner.commit(r).await
    }
    async fn read(
        &self,
        s: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        self.trace
            .lock()
            .unwrap()
            .push(format!("read {} limit {limit}", after.get()));
        self.inner.read(s, after, to, limit).await
    }
    async fn head(&self, s: &SessionId) -> Result<Sequence, StoreError> {
        self.inner.head(s).await
    }
    async fn set_audience(&self, s: &SessionId, token: u64) -> Result<(), StoreError> {
        self.inner.set_audience(s, token).await
    }
    async fn floor(&self, s: &SessionId) -> Result<Sequence, StoreError> {
        self.inner.floor(s).await
    }
    async fn trim_below(
        &self,
        s: &SessionId,
        q: Sequence,
    ) -> Result<dlab_store::Trimmed, StoreError> {
        self.inner.trim_below(s, q).await
    }
    async fn state(
        &self,
        s: &SessionId,
    ) -> Result<Option<dlab_core::state::GameSessionState>, StoreError> {
        self.inner.state(s).await
    }
    async fn rehydrate(
        &self,
        state: &dlab_core::state::GameSessionState,
        events: &[GameEvent],
        ids: &[(EventId, Sequence, String)],
    ) -> Result<dlab_store::Rehydration, StoreError> {
        self.inner.rehydrate(state, events, ids).await
    }
    async fn release(&self, s: &SessionId) -> Result<(), StoreError> {
        self.inner.release(s).await
    }
    async fn release_if_head(&self, s: &SessionId, head: Sequence) -> Result<bool, StoreError> {
        self.inner.release_if_head(s, head).await
    }
    async fn end_session(&self, s: &SessionId) -> Result<(), StoreError> {
        self.inner.end_session(s).await
    }
    async fn try_lease(
        &self,
        s: &SessionId,
        ttl: std::time::Duration,
    ) -> Result<Option<dlab_store::LeaseToken>, StoreError> {
        self.inner.try_lease(s, ttl).await
    }
    async fn release_lease(
        &self,
        s: &SessionId,
        t: &dlab_store::LeaseToken,
    ) -> Result<(), StoreError> {
        self.inner.release_lease(s, t).await
    }
    async fn remember_rejection(
        &self,
        r: &dlab_store::Rejection,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.inner.remember_rejection(r, ttl).await
    }
    async fn rejection(
        &self,
        s: &SessionId,
        id: &EventId,
    ) -> Result<Option<dlab_store::Rejection>, StoreError> {
        self.inner.rejection(s, id).await
    }
    async fn mark_unarchived(&self, s: &SessionId) -> Result<(), StoreError> {
        self.inner.mark_unarchived(s).await
    }
    async fn unarchived(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        self.inner.unarchived(limit).await
    }
    async fn clear_unarchived(&self, s: &SessionId) -> Result<(), StoreError> {
        self.inner.clear_unarchived(s).await
    }
}

/// A notifier that appends each post to a shared trace.
struct TracingNotifier {
    inner: MemoryNotifier,
    trace: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Notifier for TracingNotifier {
    async fn post(&self, c: &ConnectionId, data: &[u8]) -> Result<PostOutcome, NotifyError> {
        let frame: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
        self.trace
            .lock()
            .unwrap()
            .push(format!("post {}", frame["event"]));
        self.inner.post(c, data).await
    }
}

#[tokio::test]
async fn a_catch_up_streams_page_by_page_instead_of_loading_the_whole_log() {
    let settings = Settings {
        read_page: 5,
        ..Settings::default()
    };
    let trace = Arc::new(Mutex::new(Vec::new()));
    let memory = MemoryNotifier::new();
    let world = world_with(settings, |d| {
        d.log = Arc::new(RecordingLog {
            inner: d.log.clone(),
            trace: trace.clone(),
        });
        d.notifier = Arc::new(TracingNotifier {
            inner: memory.clone(),
            trace: trace.clone(),
        });
    });
    let world = World::new(world.deps().clone(), Arc::new(MemoryTransport(memory)));
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let text = "y".repeat(9_000);
    for _ in 0..29 {
        p1.send(chat(&t.session, &text)).await;
        p1.expect("event:confirmed").await;
    }
    trace.lock().unwrap().clear();
    let mut p2 = world.connect(&t.players[1]).await;
    let events = p2.subscribe(&t.session, 0).await;
    assert_eq!(events.len(), 30);
    let trace = trace.lock().unwrap().clone();
    let reads: Vec<usize> = trace
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("read"))
        .map(|(i, _)| i)
        .collect();
    let first_batch = trace
        .iter()
        .position(|l| l.contains("events:batch"))
        .expect("batches were posted");
    assert!(reads.len() >= 6, "30 events read 5 at a time: {trace:?}");
    assert!(
        trace
            .iter()
            .all(|l| !l.starts_with("read") || l.ends_with("limit 5")),
        "every read is one page: {trace:?}"
    );
    assert!(
        first_batch < *reads.last().unwrap(),
        "a batch was posted before the last page was read (streaming): {trace:?}"
    );
}

/// A registry that counts connection lookups.
struct CountingRegistry {
    inner: Arc<dyn ConnectionRegistry>,
    lookups: AtomicUsize,
}

#[async_trait]
impl ConnectionRegistry for CountingRegistry {
    async fn add_connection(
        &self,
        c: &Connection,
        limit: usize,
    ) -> Result<dlab_store::Admission, StoreError> {
        self.inner.add_connection(c, limit).await
    }
    async fn claim_ticket(&self, jti: uuid::Uuid, expires_at_ms: u64) -> Result<bool, StoreError> {
        self.inner.claim_ticket(jti, expires_at_ms).await
    }
    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.connection(id).await
    }
    async fn subscribe(&self, s: &Subscription) -> Result<(), StoreError> {
        self.inner.subscribe(s).await
    }
    async fn unsubscribe(&self, c: &ConnectionId, s: &SessionId) -> Result<bool, StoreError> {
        self.inner.unsubscribe(c, s).await
    }
    async fn is_subscribed(&self, c: &ConnectionId, s: &SessionId) -> Result<bool, StoreError> {
        self.inner.is_subscribed(c, s).await
    }
    async fn subscriptions_of(&self, c: &ConnectionId) -> Result<Vec<SessionId>, StoreError> {
        self.inner.subscriptions_of(c).await
    }
    async fn session_connections(&self, s: &SessionId) -> Result<Vec<Subscription>, StoreError> {
        self.inner.session_connections(s).await
    }
    async fn remove_connection(&self, id: &ConnectionId) -> Result<Vec<Subscription>, StoreError> {
        self.inner.remove_connection(id).await
    }
    async fn remove_user_subscriptions(
        &self,
        u: &UserId,
        s: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        self.inner.remove_user_subscriptions(u, s).await
    }
}

/// Budgets that never refill within a test (no timing), with the given bursts.
fn frozen(connection: u32, per_user: u32) -> Settings {
    let mut s = Settings::default();
    let per_user = RateBudget::new(0.001, per_user);
    s.rates.connection = RateBudget::new(0.001, connection);
    s.rates.submit = per_user;
    s.rates.read = per_user;
    s.rates.ephemeral = per_user;
    s.rates.control = per_user;
    s
}

/// Sends `messages` and sorts the answers into accepted and `rate_limited`.
async fn flood(client: &mut Client, messages: Vec<Value>, answer: &str) -> (usize, usize) {
    let total = messages.len();
    for m in messages {
        client.send(m).await;
    }
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..total {
        let f = loop {
            let f = client.next().await;
            let name = f["event"].as_str().unwrap_or_default();
            if name == answer || name == "error" || name == "event:error" {
                break f;
            }
        };
        if f["event"] == answer {
            ok += 1;
        } else {
            assert_eq!(f["data"]["code"], "rate_limited", "{f}");
            let retry = f["data"]["retryAfterMs"].as_u64().expect("retryAfterMs");
            assert!(retry > 0, "{f}");
            limited += 1;
        }
    }
    (ok, limited)
}

async fn seeded(settings: Settings) -> (World, Table, Client) {
    let world = world_with(settings, |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    (world, t, p1)
}

#[tokio::test]
async fn replay_subscribe_ping_unsubscribe_and_ephemeral_are_rate_limited_per_user() {
    // Budgets of 3 per class (the subscribe in `seeded` took one read token).
    let (world, t, mut p1) = seeded(frozen(1_000, 3)).await;
    let replay = json!({"action": "replay", "sessionId": t.session, "from": 0});
    let (ok, limited) = flood(&mut p1, vec![replay; 6], "events:batch").await;
    assert_eq!((ok, limited), (2, 4), "replay");
    let (ok, limited) = flood(&mut p1, vec![json!({"action": "ping"}); 6], "pong").await;
    assert_eq!((ok, limited), (3, 3), "ping");
    // A second connection of the same user shares the user's buckets.
    let mut again = world.connect(&t.players[0]).await;
    let sub = json!({"action": "subscribe", "sessionId": t.session, "since": 0});
    let (ok, limited) = flood(&mut again, vec![sub], "session:subscribed").await;
    assert_eq!((ok, limited), (0, 1), "the user's read budget is spent");
    let eph =
        json!({"action": "ephemeral", "sessionId": t.session, "type": "cursor", "payload": {}});
    let mut p2 = world.connect(&t.players[1]).await;
    p2.subscribe(&t.session, 0).await;
    for _ in 0..6 {
        p1.send(eph.clone()).await;
    }
    let mut relayed = 0;
    while tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if p2.next().await["event"] == "ephemeral" {
                break;
            }
        }
    })
    .await
    .is_ok()
    {
        relayed += 1;
    }
    assert_eq!(relayed, 3, "ephemeral relayed within the budget only");
    let e = p1.expect("error").await;
    assert_eq!(e["code"], "rate_limited");
    assert_eq!(e["action"], "ephemeral");
}

#[tokio::test]
async fn submits_are_limited_per_user_across_connections() {
    let (world, t, mut p1) = seeded(frozen(1_000, 4)).await;
    let mut p1b = world.connect(&t.players[0]).await;
    p1b.subscribe(&t.session, 0).await;
    let a = flood(
        &mut p1,
        (0..3).map(|i| chat(&t.session, &format!("a{i}"))).collect(),
        "event:confirmed",
    )
    .await;
    let b = flood(
        &mut p1b,
        (0..3).map(|i| chat(&t.session, &format!("b{i}"))).collect(),
        "event:confirmed",
    )
    .await;
    assert_eq!(a.0 + b.0, 4, "one budget for the user: {a:?} {b:?}");
    assert_eq!(
        world.deps().log.head(&t.session).await.unwrap(),
        Sequence(5),
        "refused submits are not stored"
    );
}

#[tokio::test]
async fn the_connection_bucket_refuses_before_any_store_lookup() {
    let (deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), frozen(10, 1_000));
    let counting = Arc::new(CountingRegistry {
        inner: deps.registry.clone(),
        lookups: AtomicUsize::new(0),
    });
    let mut deps = deps;
    deps.registry = counting.clone();
    let world = World::new(deps, Arc::new(MemoryTransport(notifier)));
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    counting.lookups.store(0, Ordering::SeqCst);
    // 40 frames: pings and garbage alike draw from the connection's bucket of 10.
    let mut sent = 0;
    for i in 0..40 {
        if i % 2 == 0 {
            p1.send(json!({"action": "ping"})).await;
        } else {
            p1.send_text("{not json").await;
        }
        sent += 1;
    }
    let mut limited = 0;
    for _ in 0..sent {
        let f = p1.next().await;
        if f["data"]["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert_eq!(limited, 30, "10 frames pass, 30 are refused");
    assert_eq!(
        counting.lookups.load(Ordering::SeqCst),
        5,
        "only the 5 pings among the 10 admitted frames read the connection record"
    );
}

/// Every numeric field of every action, with extreme values: each refused with its documented
/// code, nothing committed, nothing posted to others.
#[tokio::test]
async fn extreme_numbers_and_shapes_are_refused_without_changing_anything() {
    let (world, t, mut p1) = seeded(Settings::default()).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p2.subscribe(&t.session, 0).await;
    let s = t.session.as_str();
    let huge = "x".repeat(100_000);
    let deep = (0..200).fold("1".to_owned(), |inner, _| format!("{{\"a\":{inner}}}"));
    let extremes: Vec<(&str, String)> = vec![
        ("u64::MAX", u64::MAX.to_string()),
        ("2^53", (1u64 << 53).to_string()),
        ("i64::MIN", i64::MIN.to_string()),
        ("-0", "-0".into()),
        ("1e308", "1e308".into()),
        ("1e1000", "1e1000".into()),
        ("huge string", format!("\"{huge}\"")),
        ("deep nesting", deep.clone()),
    ];
    let id = || uuid::Uuid::new_v4().to_string();
    let mut cases: Vec<(String, String, &str, &str)> = Vec::new(); // (name, frame, answer, code)
    for (label, v) in &extremes {
        // A number JSON cannot hold, or nesting past the parser's limit, is not a frame at all.
        let unparsable = *label == "1e1000" || *label == "deep nesting";
        let frame_code = "invalid_message";
        cases.push((
            format!("subscribe.since = {label}"),
            format!(r#"{{"action":"subscribe","sessionId":"{s}","since":{v}}}"#),
            "error",
            frame_code,
        ));
        cases.push((
            format!("replay.from = {label}"),
            format!(r#"{{"action":"replay","sessionId":"{s}","from":{v}}}"#),
            "error",
            frame_code,
        ));
        cases.push((
            format!("replay.to = {label}"),
            format!(r#"{{"action":"replay","sessionId":"{s}","from":0,"to":{v}}}"#),
            "error",
            frame_code,
        ));
        let (answer, code) = if unparsable {
            ("error", "invalid_message")
        } else {
            ("event:error", "invalid_event")
        };
        cases.push((
            format!("submit.event.clientTimestamp = {label}"),
            format!(
                r#"{{"action":"submit","event":{{"id":"{}","sessionId":"{s}","type":"core:chat","payload":{{}},"clientTimestamp":{v}}}}}"#,
                id()
            ),
            answer,
            code,
        ));
        let (answer_by, code_by) = if *label == "huge string" {
            ("event:error", "payload_too_large")
        } else {
            (answer, code)
        };
        cases.push((
            format!("submit.event.payload inc.by = {label}"),
            format!(
                r#"{{"action":"submit","event":{{"id":"{}","sessionId":"{s}","type":"plugin:dnd5e:heal","payload":{{"target":{{"instanceId":"goblin1"}},"stateChanges":{{"attributes.hp.value":{{"op":"inc","by":{v}}}}}}}}}}}"#,
                id()
            ),
            answer_by,
            code_by,
        ));
        cases.push((
            format!("requestId = {label}"),
            format!(r#"{{"action":"ping","requestId":{v}}}"#),
            "error",
            "invalid_message",
        ));
        cases.push((
            format!("sessionId = {label}"),
            format!(r#"{{"action":"subscribe","sessionId":{v},"since":0}}"#),
            "error",
            "invalid_message",
        ));
    }
    let before = world.deps().log.head(&t.session).await.unwrap();
    for (name, frame, answer, code) in &cases {
        p1.send_text(frame).await;
        let f = loop {
            let f = p1.next().await;
            let n = f["event"].as_str().unwrap_or_default();
            if n == "error"
                || n == "event:error"
                || n == "events:batch"
                || n == "session:subscribed"
            {
                break f;
            }
        };
        assert_eq!(f["event"], *answer, "{name}: {f}");
        assert_eq!(f["data"]["code"], *code, "{name}: {f}");
    }
    assert_eq!(
        world.deps().log.head(&t.session).await.unwrap(),
        before,
        "nothing was committed"
    );
    p2.expect_no("event:applied", Duration::from_millis(200))
        .await;
    println!("{} extreme cases refused", cases.len());
}
