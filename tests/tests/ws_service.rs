//! Use-case rules that need a particular backend state: rehydration, the archive below the hot
//! floor, early stops, fencing, bounded broadcast concurrency, and the `unavailable`,
//! `internal` and `unauthorized` codes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::Settings;
use dlab_store::memory::MemoryNotifier;
use dlab_store::model::{Subscription, now_ms};
use dlab_store::{ArchiveError, EventArchive, Notifier, NotifyError, PostOutcome, StoreError};
use dlab_tests::ws_world::{MemoryTransport, SECRET, World, hit_message};
use serde_json::json;

fn world_with(settings: Settings, edit: impl FnOnce(&mut Deps)) -> World {
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    edit(&mut deps);
    World::new(deps, Arc::new(MemoryTransport(notifier)))
}

fn chat(session: &SessionId, text: &str) -> serde_json::Value {
    json!({"action": "submit", "event": {"id": uuid::Uuid::new_v4().to_string(),
        "sessionId": session, "type": "core:chat", "payload": {"text": text}}})
}

#[tokio::test]
async fn a_lost_hot_state_is_rehydrated_from_the_archive_on_submit() {
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let (_, hit) = hit_message(&t.session, 15, 7);
    p1.send(hit).await;
    p1.expect("event:confirmed").await;
    world.deps().log.release(&t.session).await.unwrap(); // as a wiped Redis would
    let (_, hit) = hit_message(&t.session, 7, 3);
    p1.send(hit).await;
    let confirmed = p1.expect("event:confirmed").await;
    assert_eq!(
        confirmed["sequence"], 3,
        "continues after the archived head"
    );
    let state = world.deps().log.state(&t.session).await.unwrap().unwrap();
    assert_eq!(
        state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(3))
    );
}

#[tokio::test]
async fn replay_below_the_hot_floor_reads_the_archive_and_stays_contiguous() {
    let settings = Settings {
        read_page: 3,
        ..Settings::default()
    };
    let world = world_with(settings, |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    for i in 0..10 {
        p1.send(chat(&t.session, &format!("m{i}"))).await;
        p1.expect("event:confirmed").await;
    }
    assert_eq!(
        world
            .deps()
            .log
            .trim_below(&t.session, Sequence(8))
            .await
            .unwrap()
            .events,
        7
    );
    p1.send(json!({"action": "replay", "sessionId": t.session, "from": 2, "to": 10}))
        .await;
    let mut seqs = Vec::new();
    loop {
        let b = p1.expect("events:batch").await;
        seqs.extend(
            b["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_u64().unwrap()),
        );
        if b["isLast"] == true {
            assert_eq!(b["complete"], true);
            break;
        }
    }
    assert_eq!(seqs, (3..=10).collect::<Vec<u64>>());
    // The floor stays 1: the archive holds everything below the hot window.
    let mut p2 = world.connect(&t.players[1]).await;
    p2.send(json!({"action": "subscribe", "sessionId": t.session, "since": 0}))
        .await;
    assert_eq!(p2.expect("session:subscribed").await["floor"], 1);
    let b = p2.expect("events:batch").await;
    assert_eq!(b["events"][0]["sequence"], 1);
}

#[tokio::test]
async fn a_catch_up_out_of_time_stops_early_with_complete_false() {
    let settings = Settings {
        catchup_budget: Duration::ZERO,
        ..Settings::default()
    };
    let world = world_with(settings, |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.send(json!({"action": "subscribe", "sessionId": t.session, "since": 0}))
        .await;
    p1.expect("session:subscribed").await;
    let b = p1.expect("events:batch").await;
    assert_eq!(b["isLast"], true);
    assert_eq!(b["complete"], false);
}

#[tokio::test]
async fn large_catch_ups_are_split_into_frames_under_the_limit() {
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let text = "x".repeat(4_000);
    for _ in 0..30 {
        p1.send(chat(&t.session, &text)).await;
        p1.expect("event:confirmed").await;
    }
    let mut p2 = world.connect(&t.players[1]).await;
    p2.send(json!({"action": "subscribe", "sessionId": t.session, "since": 0}))
        .await;
    p2.expect("session:subscribed").await;
    let mut frames = 0;
    let mut count = 0;
    loop {
        let b = p2.expect("events:batch").await;
        let size = json!({"event": "events:batch", "data": b})
            .to_string()
            .len();
        assert!(size < 32 * 1024, "frame of {size} bytes");
        frames += 1;
        count += b["events"].as_array().unwrap().len();
        if b["isLast"] == true {
            break;
        }
    }
    assert_eq!(count, 31);
    assert!(frames > 1, "split into {frames} frames");
}

#[tokio::test]
async fn a_message_from_an_unknown_connection_is_unauthorized() {
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    world
        .deps()
        .registry
        .remove_connection(&p1.id)
        .await
        .unwrap();
    p1.send(json!({"action": "ping", "requestId": "r"})).await;
    let e = p1.expect("error").await;
    assert_eq!(e["code"], "unauthorized");
    assert_eq!(e["requestId"], "r");
}

/// An archive that refuses every write with a collision, as after a lost Redis write.
struct CollidingArchive;

#[async_trait]
impl EventArchive for CollidingArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        Err(ArchiveError::SequenceCollision {
            session: event.session_id.clone(),
            sequence: event.sequence,
            existing: "someone-else".into(),
        })
    }
    async fn read(
        &self,
        _: &SessionId,
        _: Sequence,
        _: Option<Sequence>,
        _: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        Ok(vec![])
    }
    async fn archived_through(&self, _: &SessionId) -> Result<Sequence, ArchiveError> {
        Ok(Sequence::ZERO)
    }
    async fn ids(&self, _: &SessionId) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        Ok(vec![])
    }
    async fn touch(&self, _: &SessionId, _: u64) -> Result<(), ArchiveError> {
        Ok(())
    }
    async fn active_since(
        &self,
        _: u64,
        _: Option<&SessionId>,
        _: usize,
    ) -> Result<Vec<SessionId>, ArchiveError> {
        Ok(vec![])
    }
    async fn idle_hot(&self, _: u64, _: usize) -> Result<Vec<SessionId>, ArchiveError> {
        Ok(vec![])
    }
    async fn set_hot(&self, _: &SessionId, _: bool) -> Result<(), ArchiveError> {
        Ok(())
    }
    async fn prune(&self, _: &SessionId, _: Sequence, _: u64) -> Result<u64, ArchiveError> {
        Ok(0)
    }
    async fn pruned_through(&self, _: &SessionId) -> Result<Sequence, ArchiveError> {
        Ok(Sequence::ZERO)
    }
}

#[tokio::test]
async fn an_archive_collision_fences_the_session_as_unavailable() {
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    let mut deps = world.deps().clone();
    deps.archive = Arc::new(CollidingArchive);
    let fenced = World::new(deps, world.transport.clone());
    let (id, hit) = hit_message(&t.session, 15, 7);
    let status = fenced
        .lambda
        .handle(dlab_tests::ws_world::message_event(
            &p1.id,
            &hit.to_string(),
        ))
        .await;
    assert_eq!(status.status_code, 200);
    let e = p1.expect("event:error").await;
    assert_eq!(e["code"], "unavailable");
    assert_eq!(e["tempId"], id.as_str());
    p2.expect_no("event:applied", Duration::from_millis(300))
        .await;
    assert!(
        world.deps().log.state(&t.session).await.unwrap().is_none(),
        "hot state dropped"
    );
}

#[tokio::test]
async fn a_backend_outage_is_unavailable_and_corrupt_data_is_internal() {
    // Unavailable: the event log is unreachable (a real Redis adapter pointed at a closed port).
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let mut deps = world.deps().clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = dlab_store::redis::RedisConfig::new(format!("redis://127.0.0.1:{closed}"));
    cfg.connection_timeout = Duration::from_millis(200);
    cfg.response_timeout = Duration::from_millis(200);
    match cfg.connect().await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    deps.log = Arc::new(BrokenLog(false));
    let broken = World::new(deps.clone(), world.transport.clone());
    broken
        .lambda
        .handle(dlab_tests::ws_world::message_event(
            &p1.id,
            &json!({"action": "ping"}).to_string(),
        ))
        .await;
    let e = p1.expect("error").await;
    assert_eq!(e["code"], "unavailable");
    assert_eq!(e["action"], "ping");
    // Internal: stored data that cannot be decoded; the message hides the details.
    deps.log = Arc::new(BrokenLog(true));
    let corrupt = World::new(deps, world.transport.clone());
    corrupt
        .lambda
        .handle(dlab_tests::ws_world::message_event(
            &p1.id,
            &json!({"action": "ping"}).to_string(),
        ))
        .await;
    let e = p1.expect("error").await;
    assert_eq!(e["code"], "internal");
    assert_eq!(e["message"], "internal error");
}

/// An event log whose every call fails: unreachable (`false`) or corrupt (`true`).
struct BrokenLog(bool);

impl BrokenLog {
    fn err(&self) -> StoreError {
        if self.0 {
            StoreError::corrupt("redis", "event", "garbage in the hot log")
        } else {
            StoreError::unavailable("redis", "head", "connection refused")
        }
    }
}

#[async_trait]
impl dlab_store::EventLog for BrokenLog {
    async fn init_session(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn commit(
        &self,
        _: dlab_store::CommitRequest,
    ) -> Result<dlab_store::Committed, dlab_store::CommitError> {
        Err(self.err().into())
    }
    async fn read(
        &self,
        _: &SessionId,
        _: Sequence,
        _: Option<Sequence>,
        _: usize,
    ) -> Result<Vec<GameEvent>, StoreError> {
        Err(self.err())
    }
    async fn head(&self, _: &SessionId) -> Result<Sequence, StoreError> {
        Err(self.err())
    }
    async fn set_audience(&self, _: &SessionId, _: u64) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn floor(&self, _: &SessionId) -> Result<Sequence, StoreError> {
        Err(self.err())
    }
    async fn trim_below(
        &self,
        _: &SessionId,
        _: Sequence,
    ) -> Result<dlab_store::Trimmed, StoreError> {
        Err(self.err())
    }
    async fn state(
        &self,
        _: &SessionId,
    ) -> Result<Option<dlab_core::state::GameSessionState>, StoreError> {
        Err(self.err())
    }
    async fn rehydrate(
        &self,
        _: &dlab_core::state::GameSessionState,
        _: &[GameEvent],
        _: &[(EventId, Sequence, String)],
    ) -> Result<dlab_store::Rehydration, StoreError> {
        Err(self.err())
    }
    async fn release(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn release_if_head(&self, _: &SessionId, _: Sequence) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn end_session(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn try_lease(
        &self,
        _: &SessionId,
        _: Duration,
    ) -> Result<Option<dlab_store::LeaseToken>, StoreError> {
        Err(self.err())
    }
    async fn release_lease(
        &self,
        _: &SessionId,
        _: &dlab_store::LeaseToken,
    ) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn remember_rejection(
        &self,
        _: &dlab_store::Rejection,
        _: Duration,
    ) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn rejection(
        &self,
        _: &SessionId,
        _: &EventId,
    ) -> Result<Option<dlab_store::Rejection>, StoreError> {
        Err(self.err())
    }
    async fn mark_unarchived(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
    async fn unarchived(&self, _: usize) -> Result<Vec<SessionId>, StoreError> {
        Err(self.err())
    }
    async fn clear_unarchived(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(self.err())
    }
}

/// A notifier that takes a while per post and records the most posts in flight at once.
struct SlowNotifier {
    inner: MemoryNotifier,
    in_flight: AtomicUsize,
    max: AtomicUsize,
}

#[async_trait]
impl Notifier for SlowNotifier {
    async fn post(&self, c: &ConnectionId, data: &[u8]) -> Result<PostOutcome, NotifyError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = self.inner.post(c, data).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_many_spectators_posts_concurrently_with_a_bound() {
    let memory = MemoryNotifier::new();
    let slow = Arc::new(SlowNotifier {
        inner: memory.clone(),
        in_flight: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let world = world_with(Settings::default(), |d| d.notifier = slow.clone());
    let world = World::new(
        world.deps().clone(),
        Arc::new(MemoryTransport(memory.clone())),
    );
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    // 300 spectators subscribed directly in the registry, each with a live channel.
    let mut receivers = Vec::new();
    for i in 0..300 {
        let id = ConnectionId::new(format!("spectator-{i}"));
        receivers.push(memory.open(&id));
        world
            .deps()
            .registry
            .subscribe(&Subscription {
                connection_id: id,
                session_id: t.session.clone(),
                user_id: UserId::new(format!("s{i}")),
                expires_at: now_ms() + 60_000,
            })
            .await
            .unwrap();
    }
    slow.max.store(0, Ordering::SeqCst);
    p1.send(chat(&t.session, "to everyone")).await;
    p1.expect("event:confirmed").await;
    for rx in &mut receivers {
        let frame: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        assert_eq!(frame["event"], "event:applied");
    }
    let max = slow.max.load(Ordering::SeqCst);
    println!("most posts in flight at once: {max}");
    assert!(max > 1, "posts were made one by one");
    assert!(max <= 64, "more than 64 posts in flight: {max}");
}

#[tokio::test]
async fn with_mongodb_unreachable_a_submit_is_still_committed_and_confirmed() {
    // The archive is a real MongoDB adapter pointed at a closed loopback port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stores = dlab_store::mongo::MongoStores::open(&dlab_store::mongo::MongoConfig::new(
        format!("mongodb://127.0.0.1:{closed}/?directConnection=true"),
    ))
    .await
    .expect("a client needs no server to be built");
    let world = world_with(Settings::default(), |_| {});
    let t = world.seed().await;
    let mut deps = world.deps().clone();
    deps.archive = Arc::new(stores.archive());
    let down = World::new(deps, world.transport.clone());
    let mut p1 = down.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let started = std::time::Instant::now();
    let (_, hit) = hit_message(&t.session, 15, 7);
    p1.send(hit).await;
    let confirmed = p1.expect("event:confirmed").await;
    let waited = started.elapsed();
    println!(
        "submit with the archive down answered in {} ms",
        waited.as_millis()
    );
    assert_eq!(confirmed["sequence"], 2, "the commit stands");
    // Not a speed check: without the bound the driver would wait its 30 s server selection.
    assert!(
        waited < Duration::from_secs(5),
        "the archive wait is bounded"
    );
}
