//! `ArchiveMode::ConfirmAfterArchive`, the embedded local run's rule: the hot log dies with the
//! process, so an event is confirmed only after its archive write has committed, a failed write
//! is an error to the sender that undoes the commit, and no later event lands above a hole.
//! The deployment's `BestEffort` rule is run beside it to show the two differ.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::{ArchiveMode, Settings};
use dlab_store::{ArchiveError, EventArchive, StoreError};
use dlab_tests::ws_world::{Client, MemoryTransport, SECRET, World};
use serde_json::{Value, json};

/// The memory archive, with writes that fail or are slowed on demand.
struct FlakyArchive {
    inner: Arc<dyn EventArchive>,
    /// Every insert fails while set.
    failing: AtomicBool,
    /// The insert with this 1-based number fails (0: none).
    fail_nth: AtomicUsize,
    inserts: AtomicUsize,
    /// Inserts that have answered.
    answered: AtomicUsize,
    /// Each insert waits this long first.
    delay: Duration,
}

#[async_trait]
impl EventArchive for FlakyArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        let n = self.inserts.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let outcome =
            if self.failing.load(Ordering::SeqCst) || self.fail_nth.load(Ordering::SeqCst) == n {
                Err(ArchiveError::Store(StoreError::unavailable(
                    "test",
                    "archive insert",
                    std::io::Error::other("disk full"),
                )))
            } else {
                self.inner.insert(event).await
            };
        self.answered.fetch_add(1, Ordering::SeqCst);
        outcome
    }
    async fn read(
        &self,
        session: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        self.inner.read(session, after, to, limit).await
    }
    async fn archived_through(&self, session: &SessionId) -> Result<Sequence, ArchiveError> {
        self.inner.archived_through(session).await
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

fn world(mode: ArchiveMode, delay: Duration) -> (World, Arc<FlakyArchive>) {
    let settings = Settings {
        archive_mode: mode,
        archive_timeout: Duration::from_millis(10),
        ..Settings::default()
    };
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
    let archive = Arc::new(FlakyArchive {
        inner: deps.archive.clone(),
        failing: false.into(),
        fail_nth: 0.into(),
        inserts: 0.into(),
        answered: 0.into(),
        delay,
    });
    deps.archive = archive.clone();
    (
        World::new(deps, Arc::new(MemoryTransport(notifier))),
        archive,
    )
}

fn chat(session: &SessionId, text: &str) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let frame = json!({"action": "submit", "event": {"id": id,
        "sessionId": session, "type": "core:chat", "payload": {"text": text}}});
    (id, frame)
}

async fn archived(world: &World, session: &SessionId) -> Vec<u64> {
    world
        .deps()
        .archive
        .read(session, Sequence(0), None, 10_000)
        .await
        .expect("archive read")
        .iter()
        .map(|e| e.sequence.get())
        .collect()
}

async fn subscribed_pair(world: &World) -> (SessionId, Client, Client) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    (t.session, p1, p2)
}

#[tokio::test]
async fn a_failed_archive_write_is_an_error_confirms_nothing_and_the_sequence_is_issued_again() {
    let (world, archive) = world(ArchiveMode::ConfirmAfterArchive, Duration::ZERO);
    let (session, mut p1, mut p2) = subscribed_pair(&world).await;
    let head = world.deps().log.head(&session).await.unwrap().get();

    archive.failing.store(true, Ordering::SeqCst);
    let (id, frame) = chat(&session, "lost to a full disk");
    p1.send(frame).await;
    let outcome = p1.submit_outcome().await;
    assert_eq!(outcome["event"], "event:error", "{outcome}");
    assert_eq!(outcome["data"]["code"], "unavailable", "{outcome}");
    assert_eq!(outcome["data"]["tempId"], id.as_str());
    p2.expect_no("event:applied", Duration::from_millis(100))
        .await;

    archive.failing.store(false, Ordering::SeqCst);
    let (_, frame) = chat(&session, "after the disk was freed");
    p1.send(frame).await;
    let confirmed = p1.expect("event:confirmed").await;
    assert_eq!(
        confirmed["sequence"],
        head + 1,
        "the undone event's sequence is issued again: no gap"
    );
    assert_eq!(p2.expect("event:applied").await["sequence"], head + 1);
    assert_eq!(
        archived(&world, &session).await,
        (1..=head + 1).collect::<Vec<_>>(),
        "the archive is contiguous and holds only confirmed events"
    );
}

#[tokio::test]
async fn best_effort_confirms_over_a_failed_archive_write() {
    // The deployment's rule (the hot log is Redis): the commit stands, backfill copies it.
    let (world, archive) = world(ArchiveMode::BestEffort, Duration::ZERO);
    let (session, mut p1, _p2) = subscribed_pair(&world).await;
    archive.failing.store(true, Ordering::SeqCst);
    let (_, frame) = chat(&session, "kept in the hot log");
    p1.send(frame).await;
    let outcome = p1.submit_outcome().await;
    assert_eq!(outcome["event"], "event:confirmed", "{outcome}");
}

#[tokio::test]
async fn the_confirmation_comes_only_after_the_archive_holds_the_event() {
    // Every archive write outlasts the best-effort bound (10 ms) by far.
    let (world, _archive) = world(ArchiveMode::ConfirmAfterArchive, Duration::from_millis(150));
    let (session, mut p1, _p2) = subscribed_pair(&world).await;
    for i in 0..3 {
        let (_, frame) = chat(&session, &format!("m{i}"));
        p1.send(frame).await;
        let confirmed = p1.expect("event:confirmed").await;
        let seq = confirmed["sequence"].as_u64().unwrap();
        assert!(
            archived(&world, &session).await.contains(&seq),
            "event {seq} was confirmed before it was archived"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_around_a_failed_write_leave_no_hole() {
    let (world, archive) = world(ArchiveMode::ConfirmAfterArchive, Duration::from_millis(5));
    let t = world.seed().await;
    let session = t.session.clone();
    let start = archive.inserts.load(Ordering::SeqCst);
    archive.fail_nth.store(start + 4, Ordering::SeqCst);
    let publishes = (0..12).map(|i| {
        let deps = world.deps().clone();
        let session = session.clone();
        tokio::spawn(async move {
            let event = GameEvent {
                id: EventId::new(uuid::Uuid::new_v4().to_string()),
                sequence: Sequence::ZERO,
                timestamp: 0,
                client_timestamp: None,
                user_id: dlab_core::ids::UserId::new("gm"),
                session_id: session,
                event_type: "core:chat".into(),
                payload: json!({"text": format!("m{i}")}),
                checksum: None,
            };
            dlab_service::pipeline::publish(&deps, event, dlab_service::pipeline::Origin::Server)
                .await
        })
    });
    let mut confirmed = Vec::new();
    let mut errors = 0;
    for outcome in futures::future::join_all(publishes).await {
        match outcome.expect("no panic") {
            Ok(published) => confirmed.push(published.event.sequence.get()),
            Err(e) => {
                assert!(
                    matches!(e, dlab_service::ServiceError::Unavailable(_)),
                    "{e:?}"
                );
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 1, "exactly the one failed write is an error");
    confirmed.sort_unstable();
    let archive_seqs = archived(&world, &session).await;
    let head = world.deps().log.head(&session).await.unwrap().get();
    assert_eq!(
        archive_seqs,
        (1..=head).collect::<Vec<_>>(),
        "contiguous archive up to the head"
    );
    assert_eq!(confirmed.len(), 11);
    let mut unique = confirmed.clone();
    unique.dedup();
    assert_eq!(unique, confirmed, "no sequence confirmed twice");
    assert!(
        confirmed.iter().all(|s| archive_seqs.contains(s)),
        "every confirmed event is archived: {confirmed:?} vs {archive_seqs:?}"
    );
}

/// A caller that goes away mid-publish (an HTTP client disconnecting drops its handler) must not
/// cut the commit off from its archive write or skip the undo of a failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_dropped_mid_write_is_still_undone() {
    let (world, archive) = world(ArchiveMode::ConfirmAfterArchive, Duration::from_millis(200));
    let t = world.seed().await;
    let session = t.session.clone();
    let head = world.deps().log.head(&session).await.unwrap().get();
    let before = archive.answered.load(Ordering::SeqCst);
    archive.failing.store(true, Ordering::SeqCst);
    let event = |text: &str| GameEvent {
        id: EventId::new(uuid::Uuid::new_v4().to_string()),
        sequence: Sequence::ZERO,
        timestamp: 0,
        client_timestamp: None,
        user_id: dlab_core::ids::UserId::new("gm"),
        session_id: session.clone(),
        event_type: "core:chat".into(),
        payload: json!({"text": text}),
        checksum: None,
    };
    let publish = dlab_service::pipeline::publish(
        world.deps(),
        event("abandoned"),
        dlab_service::pipeline::Origin::Server,
    );
    // The caller gives up while the archive write is in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), publish)
            .await
            .is_err(),
        "the write takes 200 ms: the publish cannot have finished"
    );
    // The write still answers (it failed) and the commit is still undone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while archive.answered.load(Ordering::SeqCst) == before
        || world.deps().log.head(&session).await.is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned commit was never undone"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    archive.failing.store(false, Ordering::SeqCst);
    let published = dlab_service::pipeline::publish(
        world.deps(),
        event("next"),
        dlab_service::pipeline::Origin::Server,
    )
    .await
    .expect("publish");
    assert_eq!(
        published.event.sequence.get(),
        head + 1,
        "the abandoned event's sequence is issued again"
    );
    assert_eq!(
        archived(&world, &session).await,
        (1..=head + 1).collect::<Vec<_>>()
    );
}
