//! Session lifecycle cases (issue 11): backfill, compaction, bounded hot log, idle release,
//! session end, retention and the GM conflict flow, over the HTTP router and WebSocket
//! clients sharing one set of dependencies. Each case takes a [`LifeWorld`], so the same body
//! runs on memory and on the real servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::auth::Authenticator;
use dlab_service::config::Settings;
use dlab_service::http::router_with;
use dlab_service::maintenance::{self, CompactionOutcome, Trigger};
use dlab_service::metrics;
use dlab_store::memory::MemoryNotifier;
use dlab_store::{ArchiveError, EventArchive, StoreError};
use serde_json::{Value, json};

use crate::http_cases::{HttpWorld, test_settings};
use crate::metrics_probe;
use crate::ws_world::{Client, MemoryTransport, SECRET, World};

/// The HTTP router and the WebSocket handlers over one set of dependencies.
pub struct LifeWorld {
    /// HTTP.
    pub http: HttpWorld,
    /// WebSocket.
    pub ws: World,
}

/// Small lifecycle numbers so a test reaches them with few events.
pub fn small_lifecycle(settings: &mut Settings) {
    settings.lifecycle.compaction_threshold = 10;
    settings.lifecycle.hot_tail = 5;
    settings.rates.submit.burst = 100_000;
    settings.rates.submit.per_second = 100_000.0;
    settings.rates.read.burst = 100_000;
    settings.rates.read.per_second = 100_000.0;
    settings.rates.connection.burst = 100_000;
    settings.rates.connection.per_second = 100_000.0;
}

impl LifeWorld {
    /// A world over `deps`, whose notifier must be `notifier`.
    pub fn over(deps: Deps, notifier: MemoryNotifier) -> Self {
        let app = router_with(deps.clone(), test_settings());
        Self {
            ws: World::new(deps.clone(), Arc::new(MemoryTransport(notifier.clone()))),
            http: HttpWorld {
                deps,
                notifier,
                app,
            },
        }
    }

    /// Every port in memory with `settings`.
    pub fn memory(settings: Settings) -> Self {
        let (deps, notifier) =
            Deps::memory_with_channels(Authenticator::with_secret(SECRET), settings);
        Self::over(deps, notifier)
    }

    /// The dependencies.
    pub fn deps(&self) -> &Deps {
        &self.http.deps
    }

    /// A campaign (GM, two players), a session, and a 15-HP goblin `goblin` in it.
    pub async fn table(&self) -> Table {
        let seeded = self.http.seed().await;
        let player2 = self.http.user("player2");
        let campaign = seeded.campaign.clone();
        self.http
            .post(
                &format!("/campaigns/{campaign}/members"),
                &seeded.people.gm,
                json!({"userId": player2, "role": "player"}),
            )
            .await
            .ok(200);
        let actor = self
            .http
            .post(
                &format!("/campaigns/{campaign}/actors"),
                &seeded.people.gm,
                json!({"name": "Goblin", "type": "monster",
                       "attributes": {"hp": {"value": 15, "max": 15}, "ac": 15}}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.http
            .post(
                &format!("/sessions/{}/actors", seeded.session),
                &seeded.people.gm,
                json!({"actorId": actor, "instanceId": "goblin"}),
            )
            .await
            .ok(201);
        Table {
            session: SessionId::new(seeded.session),
            gm: seeded.people.gm,
            players: [seeded.people.player, player2],
        }
    }

    /// A client of `user`, subscribed from the start (catch-up read).
    pub async fn joined(&self, user: &UserId, session: &SessionId) -> Client {
        let mut c = self.ws.connect(user).await;
        c.subscribe(session, 0).await;
        c
    }

    /// The session's head in the log.
    pub async fn head(&self, session: &SessionId) -> Sequence {
        dlab_service::pipeline::head(self.deps(), session)
            .await
            .expect("head")
    }
}

/// A seeded table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The session.
    pub session: SessionId,
    /// The GM.
    pub gm: UserId,
    /// Two players.
    pub players: [UserId; 2],
}

/// A submit message.
pub fn submit(session: &SessionId, event_type: &str, payload: Value) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    (
        id.clone(),
        json!({"action": "submit", "event": {"id": id, "sessionId": session,
            "type": event_type, "payload": payload}}),
    )
}

/// Sends `n` chats and waits for each confirmation.
pub async fn chats(client: &mut Client, session: &SessionId, n: usize) {
    for i in 0..n {
        let (_, m) = submit(session, "core:chat", json!({"text": format!("line {i}")}));
        client.send(m).await;
        client.expect("event:confirmed").await;
    }
}

/// Every event of `1..=head`, read through `replay` (contiguous batches).
pub async fn replay_all(client: &mut Client, session: &SessionId) -> Vec<u64> {
    client
        .send(json!({"action": "replay", "sessionId": session, "from": 0}))
        .await;
    let mut seqs = Vec::new();
    loop {
        let b = client.expect("events:batch").await;
        for e in b["events"].as_array().unwrap() {
            seqs.push(e["sequence"].as_u64().unwrap());
        }
        if b["isLast"] == true {
            assert_eq!(b["complete"], true, "{b}");
            return seqs;
        }
    }
}

/// The archive's events of a session, 1..=through, checked contiguous and each once.
pub async fn archived(deps: &Deps, session: &SessionId) -> Vec<GameEvent> {
    let events = deps
        .archive
        .read(session, Sequence::ZERO, None, 1_000_000)
        .await
        .expect("archive read");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.sequence.get(),
            i as u64 + 1,
            "the archive holds 1..n once, in order"
        );
    }
    events
}

/// Compaction folds, trims below the snapshot keeping the tail, reports the seed's counts, and
/// every event stays replayable in order (the archive below the hot window).
pub async fn compaction_snapshots_trims_and_keeps_replay_contiguous(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 40).await;
    let head = w.head(&t.session).await;
    let r = w
        .http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.gm,
            json!({}),
        )
        .await;
    let report = r.ok(200).clone();
    println!("compact: {report}");
    assert_eq!(report["snapshotCreated"], true, "{report}");
    assert!(
        report["originalEventCount"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(report["spaceSaved"].as_i64().unwrap() > 0, "{report}");
    let snapshot = w
        .deps()
        .snapshots
        .latest(&t.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        snapshot.up_to_sequence, head,
        "everything was archived and folded"
    );
    let floor = w.deps().log.floor(&t.session).await.unwrap();
    assert_eq!(
        floor.get(),
        head.get() - 5 + 1,
        "trimmed below the snapshot, keeping a tail of 5"
    );
    // A player replays everything: 1..=head, in order, the archive below the hot window.
    assert_eq!(
        replay_all(&mut p1, &t.session).await,
        (1..=head.get()).collect::<Vec<_>>()
    );
    // The player's state through snapshot + tail equals the log's state.
    let state = w
        .http
        .get(&format!("/sessions/{}", t.session), &t.players[0])
        .await;
    assert_eq!(state.ok(200)["lastEventSequence"], head.get());
    // Non-GMs may not compact.
    w.http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.players[0],
            json!({}),
        )
        .await
        .error(403, "forbidden");
}

/// A resubmitted id whose event left the hot window is still a duplicate with its original
/// sequence (the dedup map is never trimmed).
pub async fn dedup_survives_a_trim(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    let (early_id, early) = submit(&t.session, "core:chat", json!({"text": "early"}));
    p1.send(early.clone()).await;
    let first = p1.expect("event:confirmed").await;
    chats(&mut p1, &t.session, 30).await;
    w.http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.gm,
            json!({}),
        )
        .await
        .ok(200);
    assert!(
        w.deps().log.floor(&t.session).await.unwrap()
            > Sequence(first["sequence"].as_u64().unwrap()),
        "the early event left the hot window"
    );
    let head = w.head(&t.session).await;
    p1.send(early).await;
    let again = p1.expect("event:confirmed").await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["eventId"], early_id.as_str());
    assert_eq!(
        again["sequence"], first["sequence"],
        "the original sequence"
    );
    assert_eq!(w.head(&t.session).await, head, "nothing new was committed");
}

/// An archive whose writes fail while it is "down" (MongoDB unreachable), reads still work.
pub struct FlakyArchive {
    /// The real archive.
    pub inner: Arc<dyn EventArchive>,
    /// Whether writes fail now.
    pub down: AtomicBool,
}

#[async_trait]
impl EventArchive for FlakyArchive {
    async fn insert(&self, event: &GameEvent) -> Result<(), ArchiveError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "mongodb",
                "archive insert",
                "server selection timed out",
            )
            .into());
        }
        self.inner.insert(event).await
    }
    async fn read(
        &self,
        s: &SessionId,
        after: Sequence,
        to: Option<Sequence>,
        limit: usize,
    ) -> Result<Vec<GameEvent>, ArchiveError> {
        self.inner.read(s, after, to, limit).await
    }
    async fn archived_through(&self, s: &SessionId) -> Result<Sequence, ArchiveError> {
        self.inner.archived_through(s).await
    }
    async fn ids(&self, s: &SessionId) -> Result<Vec<(EventId, Sequence, String)>, ArchiveError> {
        self.inner.ids(s).await
    }
    async fn touch(&self, s: &SessionId, at: u64) -> Result<(), ArchiveError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("mongodb", "touch", "down").into());
        }
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

/// A world whose archive can be taken down and brought back.
pub fn with_flaky_archive(w: LifeWorld) -> (LifeWorld, Arc<FlakyArchive>) {
    let flaky = Arc::new(FlakyArchive {
        inner: w.deps().archive.clone(),
        down: AtomicBool::new(false),
    });
    let mut deps = w.deps().clone();
    deps.archive = flaky.clone();
    (LifeWorld::over(deps, w.http.notifier.clone()), flaky)
}

/// MongoDB is down while players submit (every submit is still confirmed); once it is back one
/// maintenance run completes the archive, 1..=head exactly once.
pub async fn one_run_completes_the_archive_after_an_outage(w: LifeWorld) {
    let (w, archive) = with_flaky_archive(w);
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    metrics_probe::recorder();
    let commits_before = metrics_probe::count(metrics::COMMIT_LATENCY);
    chats(&mut p1, &t.session, 3).await;
    archive.down.store(true, Ordering::SeqCst);
    chats(&mut p1, &t.session, 12).await;
    assert!(
        metrics_probe::count(metrics::COMMIT_LATENCY) >= commits_before + 15,
        "every commit reports its latency"
    );
    let head = w.head(&t.session).await;
    let before = w.deps().archive.archived_through(&t.session).await.unwrap();
    assert!(
        before < head,
        "the outage left the archive behind ({before} < {head})"
    );
    assert!(
        w.deps()
            .log
            .unarchived(10)
            .await
            .unwrap()
            .contains(&t.session),
        "the session is marked for backfill"
    );
    archive.down.store(false, Ordering::SeqCst);
    let report = maintenance::sweep(
        w.deps(),
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await;
    println!("sweep after the outage: {report:?}");
    assert!(report.copied >= head.get() - before.get(), "{report:?}");
    assert_eq!(
        w.deps().archive.archived_through(&t.session).await.unwrap(),
        head
    );
    assert_eq!(
        archived(w.deps(), &t.session).await.len() as u64,
        head.get()
    );
    assert!(
        !w.deps()
            .log
            .unarchived(10)
            .await
            .unwrap()
            .contains(&t.session),
        "the mark is cleared"
    );
    let copied: f64 = metrics_probe::session_values(metrics::BACKFILLED_EVENTS, &t.session)
        .iter()
        .sum();
    assert_eq!(
        copied,
        (head.get() - before.get()) as f64,
        "the copied events are reported"
    );
    let lag = metrics_probe::session_values(metrics::ARCHIVE_LAG, &t.session);
    assert_eq!(
        lag.last(),
        Some(&0.0),
        "the lag is reported, and is 0 now: {lag:?}"
    );
    assert!(
        !metrics_probe::session_values(metrics::COMPACTION_RUNS, &t.session).is_empty(),
        "the run's compaction is reported"
    );
    assert!(
        metrics_probe::session_values(metrics::BACKFILL_FAILURES, &t.session).is_empty(),
        "no failure to report"
    );
}

/// When the hot log no longer holds events the archive lacks, backfill reports the failure
/// and compaction never trims the session further.
pub async fn a_session_whose_archive_cannot_be_completed_is_never_trimmed_further(w: LifeWorld) {
    metrics_probe::recorder();
    let (w, archive) = with_flaky_archive(w);
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 3).await;
    archive.down.store(true, Ordering::SeqCst);
    chats(&mut p1, &t.session, 4).await;
    let through = w.deps().archive.archived_through(&t.session).await.unwrap();
    // Events lost from the hot log behind the archive's back, before any backfill (what a
    // trim below an unarchived event would do; compaction itself never does).
    w.deps()
        .log
        .trim_below(&t.session, Sequence(through.get() + 3))
        .await
        .unwrap();
    archive.down.store(false, Ordering::SeqCst);
    let floor = w.deps().log.floor(&t.session).await.unwrap();
    let outcome = maintenance::backfill_session(w.deps(), &t.session)
        .await
        .unwrap();
    assert!(!outcome.complete, "{outcome:?}");
    assert_eq!(outcome.archived_through, through);
    assert!(
        !metrics_probe::session_values(metrics::BACKFILL_FAILURES, &t.session).is_empty(),
        "the failure raises the error metric"
    );
    let lag = metrics_probe::session_values(metrics::ARCHIVE_LAG, &t.session);
    assert!(
        lag.last().is_some_and(|l| *l > 0.0),
        "the lag stays visible: {lag:?}"
    );
    match maintenance::compact_session(w.deps(), &t.session, Trigger::Manual)
        .await
        .unwrap()
    {
        CompactionOutcome::Done(_) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.deps().log.floor(&t.session).await.unwrap(),
        floor,
        "never trimmed further"
    );
}

/// A snapshot store whose `put` waits at a gate, so a compaction can be held in the middle of
/// its run while another one starts.
pub struct GatedSnapshots {
    inner: Arc<dyn dlab_store::SnapshotStore>,
    entered: tokio::sync::Notify,
    gate: tokio::sync::Notify,
    armed: AtomicBool,
    puts: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl dlab_store::SnapshotStore for GatedSnapshots {
    async fn put(&self, snapshot: &dlab_core::compaction::Snapshot) -> Result<(), StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        self.inner.put(snapshot).await
    }
    async fn latest(
        &self,
        session: &SessionId,
    ) -> Result<Option<dlab_core::compaction::Snapshot>, StoreError> {
        self.inner.latest(session).await
    }
}

/// Two compactions of one session at once, while players keep submitting: the second finds
/// the lease taken, one snapshot is made, and no player sees an error.
pub async fn two_runs_at_once_make_one_snapshot(w: LifeWorld) {
    let gated = Arc::new(GatedSnapshots {
        inner: w.deps().snapshots.clone(),
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Notify::new(),
        armed: AtomicBool::new(false),
        puts: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut deps = w.deps().clone();
    deps.snapshots = gated.clone();
    let w = LifeWorld::over(deps, w.http.notifier.clone());
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 4).await;
    gated.armed.store(true, Ordering::SeqCst);
    let first = {
        let deps = w.deps().clone();
        let session = t.session.clone();
        tokio::spawn(
            async move { maintenance::compact_session(&deps, &session, Trigger::Manual).await },
        )
    };
    gated.entered.notified().await; // the first run is inside its snapshot write
    let second = maintenance::compact_session(w.deps(), &t.session, Trigger::Manual)
        .await
        .unwrap();
    assert_eq!(second, CompactionOutcome::Busy, "the lease is held");
    chats(&mut p1, &t.session, 3).await; // players are not held up
    gated.gate.notify_one();
    match first.await.unwrap().unwrap() {
        CompactionOutcome::Done(r) => assert!(r.snapshot_created, "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        gated.puts.load(Ordering::SeqCst),
        1,
        "one snapshot written while the lease was held"
    );
    p1.expect_no("event:error", Duration::from_millis(200))
        .await;
    p1.expect_no("error", Duration::from_millis(10)).await;
}

/// A client that was away resumes from sequence 10 after the hot log was trimmed far above it:
/// every event comes, from the archive, in order. With a retention period that pruned them it
/// gets `snapshot:required` and converges from the snapshot.
pub async fn resume_below_the_hot_window_and_after_retention(w: &LifeWorld, retention: bool) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 60).await;
    let head = w.head(&t.session).await;
    w.http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.gm,
            json!({}),
        )
        .await
        .ok(200);
    assert!(w.deps().log.floor(&t.session).await.unwrap() > Sequence(11));
    let mut p2 = w.ws.connect(&t.players[1]).await;
    p2.send(json!({"action": "subscribe", "sessionId": t.session, "since": 10}))
        .await;
    let subscribed = p2.expect("session:subscribed").await;
    if !retention {
        assert_eq!(subscribed["floor"], 1, "the archive holds everything");
        let mut seqs = Vec::new();
        loop {
            let b = p2.expect("events:batch").await;
            seqs.extend(
                b["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["sequence"].as_u64().unwrap()),
            );
            if b["isLast"] == true {
                break;
            }
        }
        assert_eq!(seqs, (11..=head.get()).collect::<Vec<_>>());
        return;
    }
    let floor = subscribed["floor"].as_u64().unwrap();
    assert!(
        floor > 11,
        "retention pruned below the snapshot: floor {floor}"
    );
    let required = p2.expect("snapshot:required").await;
    let href = required["href"].as_str().unwrap().to_owned();
    let snap = w.http.get(&href, &t.players[1]).await.ok(200).clone();
    let upto = snap["upToSequence"].as_u64().unwrap();
    // Continue from the snapshot: everything after it, in order, and the same final state.
    p2.send(json!({"action": "subscribe", "sessionId": t.session, "since": upto}))
        .await;
    p2.expect("session:subscribed").await;
    let mut state =
        serde_json::from_value::<dlab_core::state::GameSessionState>(snap["state"].clone())
            .expect("a state");
    loop {
        let b = p2.expect("events:batch").await;
        for e in b["events"].as_array().unwrap() {
            let e: GameEvent = serde_json::from_value(e.clone()).unwrap();
            state.apply(&e).expect("applies in order");
        }
        if b["isLast"] == true {
            break;
        }
    }
    let live = w.deps().log.state(&t.session).await.unwrap().unwrap();
    assert_eq!(state.last_event_sequence, live.last_event_sequence);
    assert_eq!(
        serde_json::to_value(&state).unwrap(),
        serde_json::to_value(&live).unwrap(),
        "converged from the snapshot"
    );
    // A replay below the floor is told the same.
    p2.send(json!({"action": "replay", "sessionId": t.session, "from": 0}))
        .await;
    p2.expect("snapshot:required").await;
}

/// The GM ends the session: a final snapshot, hot state released, submits refused with
/// `session_ended`, and the log still readable (subscribe and replay from the archive).
pub async fn an_ended_session_is_readable_and_refuses_submits(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 8).await;
    let head = w.head(&t.session).await;
    w.http
        .post(
            &format!("/sessions/{}/end", t.session),
            &t.players[0],
            json!({}),
        )
        .await
        .error(403, "forbidden");
    let ended = w
        .http
        .post(&format!("/sessions/{}/end", t.session), &t.gm, json!({}))
        .await;
    assert_eq!(ended.ok(200)["status"], "ended");
    assert!(
        w.deps().log.state(&t.session).await.unwrap().is_none(),
        "hot state released"
    );
    let snapshot = w
        .deps()
        .snapshots
        .latest(&t.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snapshot.up_to_sequence, head, "final snapshot");
    let (id, m) = submit(&t.session, "core:chat", json!({"text": "too late"}));
    p1.send(m).await;
    let e = p1.expect("event:error").await;
    assert_eq!(e["code"], "session_ended", "{e}");
    assert_eq!(e["tempId"], id.as_str());
    assert!(
        w.deps().log.state(&t.session).await.unwrap().is_none(),
        "the refused submit did not bring the hot state back"
    );
    let mut p2 = w.ws.connect(&t.players[1]).await;
    let events = p2.subscribe(&t.session, 0).await;
    assert_eq!(events.len() as u64, head.get(), "served from the archive");
    assert_eq!(
        replay_all(&mut p2, &t.session).await,
        (1..=head.get()).collect::<Vec<_>>()
    );
    let state = w.http.get(&format!("/sessions/{}", t.session), &t.gm).await;
    assert_eq!(state.ok(200)["lastEventSequence"], head.get());
    // Ending again is harmless.
    w.http
        .post(&format!("/sessions/{}/end", t.session), &t.gm, json!({}))
        .await
        .ok(200);
}

/// An ended session stays readable over HTTP when ending made no usable snapshot: one that
/// never had an event (schemathesis found `GET /sessions/{id}` answering 409 `session_ended`
/// for it), and one whose latest snapshot is damaged, whose state is then folded from the
/// archive in memory. Neither brings the hot state back.
pub async fn an_ended_session_without_a_snapshot_is_readable(w: &LifeWorld) {
    // Never had an event: ending it makes no snapshot.
    let seeded = w.http.seed().await;
    let (gm, player) = (&seeded.people.gm, &seeded.people.player);
    let empty = SessionId::new(seeded.session.as_str());
    w.http
        .post(&format!("/sessions/{empty}/end"), gm, json!({}))
        .await
        .ok(200);
    assert!(w.deps().snapshots.latest(&empty).await.unwrap().is_none());
    for user in [gm, player] {
        let state = w
            .http
            .get(&format!("/sessions/{empty}"), user)
            .await
            .ok(200)
            .clone();
        assert_eq!(state["sessionId"], empty.as_str(), "{state}");
        assert_eq!(state["campaignId"], seeded.campaign.as_str(), "{state}");
        assert_eq!(state["lastEventSequence"], 0, "{state}");
        assert_eq!(state["activeActors"], json!({}), "{state}");
    }
    w.http
        .get(&format!("/sessions/{empty}/actors/goblin"), gm)
        .await
        .error(404, "not_found");
    assert!(w.deps().log.state(&empty).await.unwrap().is_none());

    // Events, and a damaged latest snapshot: the state comes from the archive.
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 3).await;
    let (_, hit) = submit(
        &t.session,
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "goblin"},
               "stateChanges": {"attributes.hp.value": {"from": 15, "to": 9}}}),
    );
    p1.send(hit).await;
    p1.expect("event:confirmed").await;
    let before = w
        .http
        .get(&format!("/sessions/{}", t.session), &t.gm)
        .await
        .ok(200)
        .clone();
    w.http
        .post(&format!("/sessions/{}/end", t.session), &t.gm, json!({}))
        .await
        .ok(200);
    let mut damaged = w
        .deps()
        .snapshots
        .latest(&t.session)
        .await
        .unwrap()
        .expect("final snapshot");
    damaged.checksum = dlab_core::compaction::state_checksum(
        &dlab_core::state::GameSessionState::new(t.session.clone(), None),
    );
    damaged.created_at += 1;
    w.deps().snapshots.put(&damaged).await.unwrap();
    assert!(
        !w.deps()
            .snapshots
            .latest(&t.session)
            .await
            .unwrap()
            .unwrap()
            .verify()
    );
    let after = w
        .http
        .get(&format!("/sessions/{}", t.session), &t.gm)
        .await
        .ok(200)
        .clone();
    assert_eq!(after, before, "the state folded from the archive");
    let goblin = w
        .http
        .get(
            &format!("/sessions/{}/actors/goblin", t.session),
            &t.players[1],
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(goblin["attributes"]["hp"]["value"], 9, "{goblin}");
    assert!(w.deps().log.state(&t.session).await.unwrap().is_none());
}

/// An idle session's hot state is released (after a final snapshot); the next submit rebuilds
/// it and continues at head + 1, and dedup still answers an old id.
pub async fn idle_sessions_are_released_and_come_back(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    let (old_id, old) = submit(&t.session, "core:chat", json!({"text": "remember me"}));
    p1.send(old.clone()).await;
    let first = p1.expect("event:confirmed").await;
    chats(&mut p1, &t.session, 4).await;
    let head = w.head(&t.session).await;
    assert!(
        maintenance::release_idle(w.deps(), &t.session)
            .await
            .unwrap()
    );
    assert!(w.deps().log.state(&t.session).await.unwrap().is_none());
    assert_eq!(
        w.deps()
            .snapshots
            .latest(&t.session)
            .await
            .unwrap()
            .unwrap()
            .up_to_sequence,
        head,
        "a final snapshot"
    );
    p1.send(old).await;
    let again = p1.expect("event:confirmed").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["sequence"], first["sequence"]);
    assert_eq!(again["eventId"], old_id.as_str());
    chats(&mut p1, &t.session, 1).await;
    assert_eq!(w.head(&t.session).await, head.next());
}

/// Two players blind-write one path within the window: the GM is told and resolves by choosing
/// one write; the override is committed and broadcast, everyone converges, a player's resolve
/// is refused, and a second decision is 409.
pub async fn the_gm_resolves_a_blind_write_race(w: &LifeWorld) {
    let t = w.table().await;
    let mut gm = w.joined(&t.gm, &t.session).await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    let mut p2 = w.joined(&t.players[1], &t.session).await;
    let set = |hp: i64| {
        json!({"target": {"instanceId": "goblin"},
               "stateChanges": {"attributes.hp.value": {"to": hp}}})
    };
    let (_, a) = submit(&t.session, "plugin:dnd5e:heal", set(12));
    p1.send(a).await;
    p1.expect("event:confirmed").await;
    let (b_id, b) = submit(&t.session, "plugin:dnd5e:heal", set(9));
    p2.send(b).await;
    p2.expect("event:confirmed").await;
    let notice = gm.expect("conflict:resolution_needed").await;
    let conflict_id = notice["conflictId"].as_str().unwrap().to_owned();
    assert_eq!(notice["options"].as_array().unwrap().len(), 2, "{notice}");
    p1.expect_no("conflict:resolution_needed", Duration::from_millis(100))
        .await;
    let list = w
        .http
        .get(&format!("/sessions/{}/conflicts", t.session), &t.gm)
        .await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["resolved"], false);
    w.http
        .get(&format!("/sessions/{}/conflicts", t.session), &t.players[0])
        .await
        .error(403, "forbidden");
    let resolve = format!("/sessions/{}/conflicts/{conflict_id}/resolve", t.session);
    w.http
        .post(&resolve, &t.players[0], json!({"chosenEventId": b_id}))
        .await
        .error(403, "forbidden");
    let done = w
        .http
        .post(
            &resolve,
            &t.gm,
            json!({"finalState": {"goblin": {"attributes.hp.value": 11}}}),
        )
        .await;
    let done = done.ok(200).clone();
    assert_eq!(done["conflict"]["resolved"], true);
    assert_eq!(done["event"]["type"], "core:gm_override");
    for c in [&mut gm, &mut p1, &mut p2] {
        let applied = loop {
            let e = c.expect("event:applied").await;
            if e["type"] == "core:gm_override" {
                break e;
            }
        };
        assert_eq!(applied["sequence"], done["event"]["sequence"]);
    }
    let hp = w
        .http
        .get(
            &format!("/sessions/{}/actors/goblin", t.session),
            &t.players[0],
        )
        .await;
    assert_eq!(hp.ok(200)["attributes"]["hp"]["value"], 11);
    // A retried identical decision is the same override; another decision is refused.
    let head = w.head(&t.session).await;
    w.http
        .post(
            &resolve,
            &t.gm,
            json!({"finalState": {"goblin": {"attributes.hp.value": 11}}}),
        )
        .await
        .ok(200);
    assert_eq!(
        w.head(&t.session).await,
        head,
        "the same override, not a second one"
    );
    w.http
        .post(&resolve, &t.gm, json!({"chosenEventId": b_id}))
        .await
        .error(409, "conflict");
}

/// A player whose compare-and-set was refused escalates it; the GM resolves by choosing it.
pub async fn a_refused_compare_and_set_is_escalated_and_resolved(w: &LifeWorld) {
    let t = w.table().await;
    let mut gm = w.joined(&t.gm, &t.session).await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    let hit = |from: i64, to: i64| {
        json!({"target": {"instanceId": "goblin"},
               "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}})
    };
    let (_, first) = submit(&t.session, "plugin:dnd5e:attack", hit(15, 8));
    p1.send(first).await;
    p1.expect("event:confirmed").await;
    let (stale_id, stale) = submit(&t.session, "plugin:dnd5e:attack", hit(15, 10));
    p1.send(stale).await;
    assert_eq!(p1.expect("event:error").await["code"], "conflict");
    let path = format!("/sessions/{}/conflicts", t.session);
    w.http
        .post(
            &path,
            &t.players[1],
            json!({"eventId": stale_id, "reason": "mine"}),
        )
        .await
        .error(403, "forbidden");
    w.http
        .post(
            &path,
            &t.players[0],
            json!({"eventId": uuid::Uuid::new_v4().to_string()}),
        )
        .await
        .error(404, "not_found");
    let created = w
        .http
        .post(
            &path,
            &t.players[0],
            json!({"eventId": stale_id, "reason": "I rolled first"}),
        )
        .await;
    let conflict = created.ok(201).clone();
    assert_eq!(conflict["kind"], "cas_rejection");
    let notice = gm.expect("conflict:resolution_needed").await;
    assert_eq!(notice["conflictId"], conflict["conflictId"]);
    let again = w
        .http
        .post(&path, &t.players[0], json!({"eventId": stale_id}))
        .await;
    assert_eq!(
        again.ok(200)["conflictId"],
        conflict["conflictId"],
        "escalated once"
    );
    let resolve = format!(
        "{path}/{}/resolve",
        conflict["conflictId"].as_str().unwrap()
    );
    w.http
        .post(&resolve, &t.gm, json!({"chosenEventId": stale_id}))
        .await
        .ok(200);
    let hp = w
        .http
        .get(&format!("/sessions/{}/actors/goblin", t.session), &t.gm)
        .await;
    assert_eq!(
        hp.ok(200)["attributes"]["hp"]["value"],
        10,
        "the escalated value"
    );
}

/// `inc` never conflicts, and blind writes by the same user never do.
pub async fn increments_and_own_rewrites_are_not_conflicts(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    let mut p2 = w.joined(&t.players[1], &t.session).await;
    let inc = json!({"target": {"instanceId": "goblin"},
                     "stateChanges": {"attributes.hp.value": {"op": "inc", "by": -1}}});
    for c in [&mut p1, &mut p2] {
        let (_, m) = submit(&t.session, "plugin:dnd5e:attack", inc.clone());
        c.send(m).await;
        c.expect("event:confirmed").await;
    }
    for hp in [5, 6] {
        let (_, m) = submit(
            &t.session,
            "plugin:dnd5e:heal",
            json!({"target": {"instanceId": "goblin"},
                   "stateChanges": {"attributes.hp.value": {"to": hp}}}),
        );
        p1.send(m).await;
        p1.expect("event:confirmed").await;
    }
    let list = w
        .http
        .get(&format!("/sessions/{}/conflicts", t.session), &t.gm)
        .await;
    assert_eq!(list.ok(200)["items"], json!([]));
}

/// A generated combat (3 players and the GM, 12 monsters; attacks as compare-and-set with
/// rebase on conflict, heals, moves, chat and dice), `events` long, committed through the
/// publish path with compaction at its defaults (inline every threshold-th event) and one
/// scheduled run at the end. Returns the bytes every event takes and the bytes the hot log
/// holds afterwards; asserts the hot log shrank by at least 90%.
pub async fn combat_session_shrinks_the_hot_log(w: &LifeWorld, events: usize) -> (u64, u64) {
    use dlab_service::pipeline::{Origin, publish};
    let t = w.table().await;
    let deps = w.deps();
    let monsters: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let campaign = deps
        .campaigns
        .session(&t.session)
        .await
        .unwrap()
        .unwrap()
        .campaign_id;
    for m in &monsters {
        let actor = w
            .http
            .post(
                &format!("/campaigns/{campaign}/actors"),
                &t.gm,
                json!({"name": format!("Orc {m}"), "type": "monster",
                       "attributes": {"hp": {"value": 1000, "max": 1000}, "ac": 13}}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        w.http
            .post(
                &format!("/sessions/{}/actors", t.session),
                &t.gm,
                json!({"actorId": actor, "instanceId": m}),
            )
            .await
            .ok(201);
    }
    let users = [t.players[0].clone(), t.players[1].clone(), t.gm.clone()];
    let mut next = combat::rng();
    let mut all_bytes = 0u64;
    let mut committed = 0usize;
    while committed < events {
        let r = next();
        let user = users[(r % 3) as usize].clone();
        let target = &monsters[((r >> 8) % 12) as usize];
        let hp = if combat::attacks(r) {
            let state = deps.log.state(&t.session).await.unwrap().unwrap();
            combat::hp(&state, target)
        } else {
            0
        };
        let (event_type, payload) = combat::action(r, committed, user.as_str(), target, hp);
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: dlab_store::model::now_ms(),
            client_timestamp: None,
            user_id: user,
            session_id: t.session.clone(),
            event_type: event_type.to_owned(),
            payload,
            checksum: None,
        };
        match publish(deps, event, Origin::Server).await {
            Ok(p) => {
                all_bytes += serde_json::to_vec(&p.event).unwrap().len() as u64;
                committed += 1;
            }
            Err(dlab_service::ServiceError::Conflict { .. }) => {} // rebase: the next attack reads afresh
            Err(e) => panic!("combat submit failed: {e}"),
        }
    }
    maintenance::sweep(deps, std::time::Instant::now() + Duration::from_secs(120)).await;
    let head = w.head(&t.session).await;
    let floor = deps.log.floor(&t.session).await.unwrap();
    let hot: Vec<GameEvent> = deps
        .log
        .read(&t.session, Sequence(floor.get() - 1), Some(head), 1_000_000)
        .await
        .unwrap();
    let hot_bytes: u64 = hot
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len() as u64)
        .sum();
    let shrink = 100.0 - 100.0 * hot_bytes as f64 / all_bytes as f64;
    println!(
        "combat: {committed} events ({head} with setup), {all_bytes} bytes in all; the hot log holds {} events, {hot_bytes} bytes after compaction: {shrink:.1}% smaller",
        hot.len()
    );
    assert!(shrink >= 90.0, "the hot log shrank by only {shrink:.1}%");
    assert_eq!(
        archived(deps, &t.session).await.len() as u64,
        head.get(),
        "every event stays in the archive"
    );
    (all_bytes, hot_bytes)
}

/// The scheduled run finds a quiet session through the activity index and releases its hot
/// state after a final snapshot (the world's idle time is a few milliseconds); a subscribe
/// from 0 then gets every event back from the archive, in order, and the next submit continues
/// the sequence without a gap or a reuse.
pub async fn a_sweep_releases_quiet_sessions_and_they_come_back(w: &LifeWorld) {
    let idle = w.deps().settings.lifecycle.idle_release_after;
    assert!(
        idle < Duration::from_secs(1),
        "a world with a tiny idle time"
    );
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 12).await;
    let head = w.head(&t.session).await;
    // Let the last event become older than the idle time (this is the premise, not a check).
    tokio::time::sleep(idle * 4).await;
    let report = maintenance::sweep(
        w.deps(),
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await;
    assert!(report.released >= 1, "{report:?}");
    assert!(!report.stopped_early, "{report:?}");
    assert!(
        w.deps().log.state(&t.session).await.unwrap().is_none(),
        "the hot state is released"
    );
    assert_eq!(
        w.deps()
            .snapshots
            .latest(&t.session)
            .await
            .unwrap()
            .unwrap()
            .up_to_sequence,
        head,
        "after a final snapshot"
    );
    assert_eq!(
        w.deps().archive.archived_through(&t.session).await.unwrap(),
        head,
        "and a complete archive"
    );
    let mut p2 = w.ws.connect(&t.players[1]).await;
    let events = p2.subscribe(&t.session, 0).await;
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=head.get()).collect::<Vec<_>>());
    chats(&mut p2, &t.session, 1).await;
    assert_eq!(w.head(&t.session).await, head.next());
}

/// `GET /sessions/{id}` and `GET /sessions/{id}/snapshot` page a state bigger than the byte
/// budget by actor instance: following `nextCursor` gives every instance exactly once, the
/// other fields on every page, and the same document as one unpaged answer; a cursor that is
/// not one is 400.
pub async fn state_documents_are_paged_by_instance(w: &LifeWorld) {
    let t = w.table().await;
    let campaign = w
        .http
        .get(&format!("/sessions/{}", t.session), &t.gm)
        .await
        .ok(200)["campaignId"]
        .as_str()
        .unwrap()
        .to_owned();
    let actor = w
        .http
        .post(
            &format!("/campaigns/{campaign}/actors"),
            &t.gm,
            json!({"name": "Orc", "type": "monster",
                   "attributes": {"hp": {"value": 15, "max": 15}, "notes": "x".repeat(300)}}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..8 {
        w.http
            .post(
                &format!("/sessions/{}/actors", t.session),
                &t.gm,
                json!({"actorId": actor, "instanceId": format!("orc-{i}")}),
            )
            .await
            .ok(201);
    }
    maintenance::compact_now(w.deps(), &t.session)
        .await
        .unwrap();
    let paged = HttpWorld {
        deps: w.deps().clone(),
        notifier: w.http.notifier.clone(),
        app: router_with(
            w.deps().clone(),
            dlab_service::http::HttpSettings {
                max_state_bytes: 1200,
                ..test_settings()
            },
        ),
    };
    for route in [
        format!("/sessions/{}", t.session),
        format!("/sessions/{}/snapshot", t.session),
    ] {
        let whole = w.http.get(&route, &t.players[0]).await.ok(200).clone();
        let state_of = |doc: &Value| -> Value {
            if route.ends_with("/snapshot") {
                doc["state"].clone()
            } else {
                doc.clone()
            }
        };
        let all = state_of(&whole)["activeActors"]
            .as_object()
            .unwrap()
            .clone();
        assert!(all.len() >= 9, "{route}: {}", all.len());
        let mut seen = serde_json::Map::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("{route}?cursor={c}"),
                None => route.clone(),
            };
            let page = paged.get(&path, &t.players[0]).await.ok(200).clone();
            pages += 1;
            assert!(pages <= all.len(), "{route}: the pages never end");
            let mut state = state_of(&page);
            for (instance, actor) in state["activeActors"].as_object().unwrap() {
                assert!(
                    seen.insert(instance.clone(), actor.clone()).is_none(),
                    "{route}: {instance} twice"
                );
            }
            let mut rest = state_of(&whole);
            for doc in [&mut state, &mut rest] {
                let doc = doc.as_object_mut().unwrap();
                doc.remove("activeActors");
                doc.remove("nextCursor");
            }
            assert_eq!(state, rest, "{route}: every page has the other fields");
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        assert!(pages > 1, "{route}: a state over the budget is paged");
        assert_eq!(seen, all, "{route}: every instance once");
        paged
            .get(&format!("{route}?cursor=not-a-cursor"), &t.players[0])
            .await
            .error(400, "invalid_message");
    }
}

/// `POST /sessions/{id}/compact` waits a little for a run that holds the session's lease and
/// then answers 409 naming it, rather than running a second compaction.
pub async fn compact_is_409_while_another_run_holds_the_lease(w: &LifeWorld) {
    let t = w.table().await;
    let mut p1 = w.joined(&t.players[0], &t.session).await;
    chats(&mut p1, &t.session, 3).await;
    let token = w
        .deps()
        .log
        .try_lease(&t.session, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lease is free");
    let refused = w
        .http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.gm,
            json!({}),
        )
        .await;
    let message = refused.error(409, "conflict");
    assert!(!message.is_empty());
    assert!(
        w.deps()
            .snapshots
            .latest(&t.session)
            .await
            .unwrap()
            .is_none(),
        "no snapshot while the lease is held"
    );
    w.deps()
        .log
        .release_lease(&t.session, &token)
        .await
        .unwrap();
    let done = w
        .http
        .post(
            &format!("/sessions/{}/compact", t.session),
            &t.gm,
            json!({}),
        )
        .await;
    assert_eq!(done.ok(200)["snapshotCreated"], true, "{}", done.body);
}

/// The long combat's workload, shared by the lifecycle tests and the `compaction` benchmark so
/// both measure the same session: a seeded random draw per event picks the user, the monster
/// and the kind of move (40 % attacks, 10 % heals, 20 % moves, 20 % chat, 10 % dice).
pub mod combat {
    use dlab_core::state::GameSessionState;
    use serde_json::{Value, json};

    /// The draws: a fixed-seed xorshift, so every run makes the same session.
    pub fn rng() -> impl FnMut() -> u64 {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Whether draw `r` is an attack, which needs the target's current hit points.
    pub fn attacks(r: u64) -> bool {
        (r >> 16) % 10 <= 3
    }

    /// The target's current hit points (1000 when it has none).
    pub fn hp(state: &GameSessionState, target: &str) -> i64 {
        state
            .current(&target.into(), "attributes.hp.value")
            .and_then(|v| v.as_i64())
            .unwrap_or(1000)
    }

    /// The event of draw `r`, the `committed`-th of the combat, by `user` on `target` (whose hit
    /// points are `hp` for an attack).
    pub fn action(
        r: u64,
        committed: usize,
        user: &str,
        target: &str,
        hp: i64,
    ) -> (&'static str, Value) {
        match (r >> 16) % 10 {
            0..=3 => {
                let dmg = ((r >> 24) % 8 + 1) as i64;
                (
                    "plugin:dnd5e:attack",
                    json!({"target": {"instanceId": target}, "attackRoll": (r >> 32) % 20 + 1,
                           "stateChanges": {"attributes.hp.value": {"from": hp, "to": hp - dmg}}}),
                )
            }
            4 => (
                "plugin:dnd5e:heal",
                json!({"target": {"instanceId": target},
                       "stateChanges": {"attributes.hp.value": {"op": "inc", "by": (r >> 24) % 6 + 1}}}),
            ),
            5 | 6 => (
                "core:token:move",
                json!({"target": {"instanceId": target},
                       "stateChanges": {"position.x": {"to": (r >> 24) % 40}, "position.y": {"to": (r >> 32) % 40}}}),
            ),
            7 | 8 => (
                "core:chat",
                json!({"text": format!("{user} shouts at {target} (round {})", committed / 30)}),
            ),
            _ => (
                "core:dice:roll",
                json!({"formula": "1d20+5", "purpose": format!("initiative for {target}")}),
            ),
        }
    }
}
