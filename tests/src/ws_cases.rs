//! WebSocket use cases, end to end through the Lambda handlers: each case takes a [`World`]
//! so it runs against the memory backend and the real servers alike.

use std::time::Duration;

use dlab_core::canonical::checksum;
use dlab_core::ids::Sequence;
use serde_json::{Value, json};

use crate::ws_world::{Client, World, hit_message};

const QUIET: Duration = Duration::from_millis(300);

fn event(session: &dlab_core::ids::SessionId, event_type: &str, payload: Value) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    (
        id.clone(),
        json!({"id": id, "sessionId": session, "type": event_type, "payload": payload}),
    )
}

async fn head(world: &World, session: &dlab_core::ids::SessionId) -> Sequence {
    world.deps().log.head(session).await.unwrap()
}

/// The seed's multi-client synchronization: P1 hits the goblin for 8, everyone sees 7.
pub async fn attack_is_confirmed_and_broadcast(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    let mut gm = world.connect(&t.gm).await;
    for c in [&mut p1, &mut p2, &mut gm] {
        let caught_up = c.subscribe(&t.session, 0).await;
        assert_eq!(caught_up.len(), 1, "the actor_added event");
        assert_eq!(caught_up[0]["type"], "core:session:actor_added");
    }
    let (id, msg) = hit_message(&t.session, 15, 7);
    assert_eq!(p1.send(msg).await, 200);
    let confirmed = p1.expect("event:confirmed").await;
    assert_eq!(confirmed["tempId"], id.as_str());
    assert_eq!(confirmed["eventId"], id.as_str());
    assert_eq!(confirmed["sequence"], 2);
    assert_eq!(confirmed["duplicate"], false);
    assert_eq!(confirmed["requestId"], format!("r-{id}"));
    for c in [&mut p2, &mut gm] {
        let applied = c.expect("event:applied").await;
        assert_eq!(applied["id"], id.as_str());
        assert_eq!(applied["sequence"], 2);
        assert_eq!(applied["userId"], t.players[0].as_str());
        assert_eq!(
            applied["payload"]["stateChanges"]["attributes.hp.value"]["to"],
            7
        );
        assert!(applied.get("requestId").is_none());
    }
    let state = world.deps().log.state(&t.session).await.unwrap().unwrap();
    assert_eq!(
        state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(7))
    );
    // The sender does not get its own event back as event:applied.
    p1.expect_no("event:applied", QUIET).await;
}

/// Two hits race: one is a conflict with `current`, the client rebases and everyone ends at 2.
pub async fn concurrent_attacks_rebase_to_two(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    let (_, a) = hit_message(&t.session, 15, 7);
    let (id_b, b) = hit_message(&t.session, 15, 10);
    let (ra, rb) = tokio::join!(p1.send(a), p2.send(b));
    assert_eq!((ra, rb), (200, 200));
    // Exactly one of them was refused.
    let first = p1.submit_outcome().await;
    let second = p2.submit_outcome().await;
    let (loser, loser_frame) = match (first["event"].as_str(), second["event"].as_str()) {
        (Some("event:error"), Some("event:confirmed")) => (&mut p1, first),
        (Some("event:confirmed"), Some("event:error")) => (&mut p2, second),
        _ => panic!("expected one event:error, got {first} and {second}"),
    };
    assert_eq!(loser_frame["data"]["code"], "conflict");
    let current = loser_frame["data"]["current"]["attributes.hp.value"]
        .as_i64()
        .unwrap();
    let damage = if loser_frame["data"]["tempId"] == id_b.as_str() {
        5
    } else {
        8
    };
    let (_, rebased) = hit_message(&t.session, current, current - damage);
    loser.send(rebased).await;
    loser.expect("event:confirmed").await;
    let state = world.deps().log.state(&t.session).await.unwrap().unwrap();
    assert_eq!(
        state.current(&"goblin1".into(), "attributes.hp.value"),
        Some(json!(2))
    );
    assert_eq!(head(world, &t.session).await, Sequence(3));
}

/// Subscribing with `since` gets exactly the missing events, in order; presence is announced.
pub async fn reconnect_with_since_gets_exactly_the_missing_events(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    let joined = p1.expect("presence").await;
    assert_eq!(joined["status"], "joined");
    assert_eq!(joined["userId"], t.players[1].as_str());
    assert_eq!(p2.disconnect().await, 200);
    let left = p1.expect("presence").await;
    assert_eq!(left["status"], "left");
    let mut ids = Vec::new();
    for i in 0..5 {
        let (id, e) = event(&t.session, "core:chat", json!({"text": format!("msg {i}")}));
        p1.send(json!({"action": "submit", "event": e})).await;
        p1.expect("event:confirmed").await;
        ids.push(id);
    }
    let mut p2 = world.connect(&t.players[1]).await;
    let missed = p2.subscribe(&t.session, 1).await;
    let got: Vec<&str> = missed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let seqs: Vec<u64> = missed
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    // Up to date: one empty last batch.
    let mut p3 = world.connect(&t.gm).await;
    assert!(p3.subscribe(&t.session, 6).await.is_empty());
}

/// A duplicate submit is confirmed with the original sequence and re-broadcast; nothing new
/// is stored.
pub async fn duplicate_submit_is_confirmed_and_rebroadcast(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut gm = world.connect(&t.gm).await;
    p1.subscribe(&t.session, 0).await;
    gm.subscribe(&t.session, 0).await;
    let (id, msg) = hit_message(&t.session, 15, 9);
    p1.send(msg.clone()).await;
    let first = p1.expect("event:confirmed").await;
    gm.expect("event:applied").await;
    p1.send(msg).await;
    let again = p1.expect("event:confirmed").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["sequence"], first["sequence"]);
    assert_eq!(again["tempId"], id.as_str());
    let re = gm.expect("event:applied").await;
    assert_eq!(re["id"], id.as_str());
    assert_eq!(head(world, &t.session).await, Sequence(2));
}

/// `ping` answers the heads of subscribed sessions, echoing the requestId; `unsubscribe`
/// answers and stops the stream.
pub async fn ping_unsubscribe_and_request_ids(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.send(json!({"action": "ping", "requestId": "r1"})).await;
    let pong = p1.expect("pong").await;
    assert_eq!(pong["heads"], json!({}));
    assert_eq!(pong["requestId"], "r1");
    p1.send(json!({"action": "subscribe", "sessionId": t.session, "since": 0, "requestId": "r2"}))
        .await;
    let sub = p1.expect("session:subscribed").await;
    assert_eq!(sub["requestId"], "r2");
    assert_eq!(sub["head"], 1);
    assert_eq!(sub["since"], 0);
    assert_eq!(sub["floor"], 1);
    let batch = p1.expect("events:batch").await;
    assert_eq!(batch["requestId"], "r2");
    assert_eq!(batch["isLast"], true);
    assert_eq!(batch["complete"], true);
    p1.send(json!({"action": "ping"})).await;
    let pong = p1.expect("pong").await;
    assert_eq!(pong["heads"][t.session.as_str()], 1);
    assert!(pong.get("requestId").is_none());
    p1.send(json!({"action": "replay", "sessionId": t.session, "from": 0, "requestId": "r3"}))
        .await;
    let replay = p1.expect("events:batch").await;
    assert_eq!(replay["events"].as_array().unwrap().len(), 1);
    assert_eq!(replay["requestId"], "r3");
    p1.send(json!({"action": "unsubscribe", "sessionId": t.session, "requestId": "r4"}))
        .await;
    let unsub = p1.expect("session:unsubscribed").await;
    assert_eq!(unsub["requestId"], "r4");
    let mut gm = world.connect(&t.gm).await;
    gm.subscribe(&t.session, 0).await;
    let (_, e) = event(&t.session, "core:chat", json!({"text": "anyone?"}));
    gm.send(json!({"action": "submit", "event": e})).await;
    gm.expect("event:confirmed").await;
    p1.expect_no("event:applied", QUIET).await;
    // Unsubscribing when not subscribed still answers.
    p1.send(json!({"action": "unsubscribe", "sessionId": t.session}))
        .await;
    p1.expect("session:unsubscribed").await;
}

/// Ephemeral messages reach the others and are never stored.
pub async fn ephemeral_is_relayed_not_stored(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    p1.expect("presence").await;
    p1.send(json!({"action": "ephemeral", "sessionId": t.session, "type": "cursor", "payload": {"x": 3, "y": 4}})).await;
    let e = p2.expect("ephemeral").await;
    assert_eq!(e["userId"], t.players[0].as_str());
    assert_eq!(e["type"], "cursor");
    assert_eq!(e["payload"], json!({"x": 3, "y": 4}));
    p1.expect_no("ephemeral", QUIET).await;
    assert_eq!(head(world, &t.session).await, Sequence(1));
}

/// Catch-up behind the floor or ahead of the head gets `snapshot:required`; the subscription
/// stays live.
pub async fn snapshot_required_when_since_is_ahead(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.send(json!({"action": "subscribe", "sessionId": t.session, "since": 50}))
        .await;
    let sub = p1.expect("session:subscribed").await;
    assert_eq!(sub["head"], 1);
    let req = p1.expect("snapshot:required").await;
    assert_eq!(req["snapshotSequence"], 0);
    assert_eq!(req["href"], format!("/sessions/{}", t.session));
    let mut gm = world.connect(&t.gm).await;
    gm.subscribe(&t.session, 0).await;
    let (_, e) = event(&t.session, "core:chat", json!({"text": "still live"}));
    gm.send(json!({"action": "submit", "event": e})).await;
    let applied = p1.expect("event:applied").await;
    assert_eq!(applied["sequence"], 2);
}

/// A connection whose socket vanished is removed when a broadcast gets `Gone`.
pub async fn gone_connections_are_removed(world: &World, vanish: impl AsyncFnOnce(&mut Client)) {
    crate::metrics_probe::recorder();
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    p1.subscribe(&t.session, 0).await;
    p2.subscribe(&t.session, 0).await;
    vanish(&mut p2).await;
    let (_, e) = event(&t.session, "core:chat", json!({"text": "hello?"}));
    p1.send(json!({"action": "submit", "event": e})).await;
    p1.expect("event:confirmed").await;
    let subs = world
        .deps()
        .registry
        .session_connections(&t.session)
        .await
        .unwrap();
    assert_eq!(subs.len(), 1, "the vanished connection was removed");
    assert_eq!(subs[0].connection_id, p1.id);
    assert_eq!(
        crate::metrics_probe::session_values(dlab_service::metrics::GONE_CONNECTIONS, &t.session),
        vec![1.0],
        "the 410 is counted"
    );
    assert!(
        world
            .deps()
            .registry
            .connection(&p2.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn assert_error(c: &mut Client, frame: &str, code: &str) -> Value {
    let data = c.expect(frame).await;
    assert_eq!(data["code"], code, "{data}");
    assert!(!data["message"].as_str().unwrap_or_default().is_empty());
    data
}

/// Usable after an error: a ping still answers.
async fn still_usable(c: &mut Client) {
    c.send(json!({"action": "ping", "requestId": "alive"}))
        .await;
    assert_eq!(c.expect("pong").await["requestId"], "alive");
}

/// Every bad input gets its code, changes nothing, and leaves the connection usable.
pub async fn bad_input_is_refused_and_changes_nothing(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let before = world.deps().log.state(&t.session).await.unwrap();

    // Frames.
    p1.send_text("not json {").await;
    assert_error(&mut p1, "error", "invalid_message").await;
    p1.send(json!({"sessionId": t.session})).await;
    assert_error(&mut p1, "error", "invalid_message").await;
    p1.send(json!({"action": "dance", "requestId": "r-d"}))
        .await;
    let e = assert_error(&mut p1, "error", "unknown_action").await;
    assert_eq!(e["action"], "dance");
    assert_eq!(e["requestId"], "r-d");
    p1.send(json!({"action": "submit"})).await;
    let e = assert_error(&mut p1, "error", "invalid_message").await;
    assert_eq!(e["action"], "submit");
    still_usable(&mut p1).await;

    // Before subscribing: submit, replay and ephemeral are not_subscribed.
    let (id, e) = event(&t.session, "core:chat", json!({"text": "early"}));
    p1.send(json!({"action": "submit", "event": e})).await;
    let err = assert_error(&mut p1, "event:error", "not_subscribed").await;
    assert_eq!(err["tempId"], id.as_str());
    p1.send(json!({"action": "replay", "sessionId": t.session, "from": 0}))
        .await;
    assert_eq!(
        assert_error(&mut p1, "error", "not_subscribed").await["action"],
        "replay"
    );
    p1.send(
        json!({"action": "ephemeral", "sessionId": t.session, "type": "cursor", "payload": {}}),
    )
    .await;
    assert_error(&mut p1, "error", "not_subscribed").await;
    // Even for a session that does not exist.
    p1.send(json!({"action": "replay", "sessionId": "no-such-session", "from": 0}))
        .await;
    assert_error(&mut p1, "error", "not_subscribed").await;

    // Subscribe refusals.
    p1.send(json!({"action": "subscribe", "sessionId": t.other_session, "since": 0}))
        .await;
    assert_eq!(
        assert_error(&mut p1, "error", "forbidden").await["action"],
        "subscribe"
    );
    p1.send(json!({"action": "subscribe", "sessionId": "no-such-session", "since": 0}))
        .await;
    assert_error(&mut p1, "error", "session_not_found").await;

    p1.subscribe(&t.session, 1).await;
    let submit = |e: Value| json!({"action": "submit", "event": e});

    // Envelope errors.
    let (_, mut e) = event(&t.session, "core:chat", json!({}));
    e["id"] = json!("not-a-uuid");
    p1.send(submit(e)).await;
    let err = assert_error(&mut p1, "error", "invalid_event").await;
    assert_eq!(err["action"], "submit");
    let (id, mut e) = event(&t.session, "core:chat", json!({}));
    e["type"] = json!("Plugin:Bad Type");
    p1.send(submit(e)).await;
    assert_eq!(
        assert_error(&mut p1, "event:error", "invalid_event").await["tempId"],
        id.as_str()
    );
    let (_, mut e) = event(&t.session, "core:chat", json!({}));
    e["sessionId"] = json!(42);
    p1.send(submit(e)).await;
    assert_error(&mut p1, "event:error", "invalid_event").await;
    let (_, e) = event(
        &t.session,
        "core:chat",
        json!({"blob": "x".repeat(25 * 1024)}),
    );
    p1.send(submit(e)).await;
    assert_error(&mut p1, "event:error", "payload_too_large").await;
    let (_, mut e) = event(&t.session, "core:chat", json!({"text": "hi"}));
    e["checksum"] = json!(checksum(&json!({"text": "bye"})));
    p1.send(submit(e)).await;
    assert_error(&mut p1, "event:error", "checksum_mismatch").await;
    let (_, e) = event(
        &t.session,
        "plugin:dnd5e:attack",
        json!({"target": {"instanceId": "nobody"}, "stateChanges": {"attributes.hp.value": {"to": 1}}}),
    );
    p1.send(submit(e)).await;
    assert_error(&mut p1, "event:error", "invalid_event").await;
    still_usable(&mut p1).await;

    // Type permissions.
    let (_, e) = event(
        &t.session,
        "core:gm_override",
        json!({"finalState": {"goblin1": {"attributes.hp.value": 1}}}),
    );
    p1.send(submit(e)).await;
    assert_error(&mut p1, "event:error", "forbidden").await;
    let (_, e) = event(
        &t.session,
        "core:session:actor_added",
        json!({"instanceId": "g2", "actorId": "a", "actor": {"name": "Evil"}}),
    );
    p1.send(submit(e.clone())).await;
    assert_error(&mut p1, "event:error", "forbidden").await;
    let mut gm = world.connect(&t.gm).await;
    gm.subscribe(&t.session, 1).await;
    gm.send(submit(e)).await;
    assert_error(&mut gm, "event:error", "forbidden").await;

    assert_eq!(
        world.deps().log.state(&t.session).await.unwrap(),
        before,
        "nothing changed"
    );

    // Same id, other content.
    let (id, e) = event(&t.session, "core:chat", json!({"text": "first"}));
    p1.send(submit(e.clone())).await;
    p1.expect("event:confirmed").await;
    let mut changed = e;
    changed["payload"] = json!({"text": "second"});
    p1.send(submit(changed)).await;
    assert_eq!(
        assert_error(&mut p1, "event:error", "invalid_event").await["tempId"],
        id.as_str()
    );
    assert_eq!(head(world, &t.session).await, Sequence(2));

    // A client-supplied userId is ignored.
    let (_, mut e) = event(&t.session, "core:chat", json!({"text": "I am the GM"}));
    e["userId"] = json!(t.gm.as_str());
    p1.send(submit(e)).await;
    p1.expect("event:confirmed").await;
    let stored = world
        .deps()
        .log
        .read(&t.session, Sequence(2), None, 1)
        .await
        .unwrap();
    assert_eq!(stored[0].user_id, t.players[0]);
    still_usable(&mut p1).await;
}

/// A conflict answer carries `current` for every path.
pub async fn conflict_carries_current(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let (id, msg) = hit_message(&t.session, 14, 6);
    p1.send(msg).await;
    let err = assert_error(&mut p1, "event:error", "conflict").await;
    assert_eq!(err["tempId"], id.as_str());
    assert_eq!(err["current"], json!({"attributes.hp.value": 15}));
    assert_eq!(err["requestId"], format!("r-{id}"));
    assert_eq!(head(world, &t.session).await, Sequence(1));
}

/// A flood over the limit is refused with `rate_limited`: twice the burst, sent at once.
pub async fn flood_is_rate_limited(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let burst = world.deps().settings.rates.submit.burst as usize;
    let total = burst * 2;
    let messages: Vec<Value> = (0..total)
        .map(|i| json!({"action": "submit", "event": event(&t.session, "core:chat", json!({"i": i})).1}))
        .collect();
    futures::future::join_all(messages.into_iter().map(|m| p1.send(m))).await;
    let mut confirmed = 0;
    let mut limited = 0;
    for _ in 0..total {
        let f = p1.submit_outcome().await;
        match f["event"].as_str().unwrap() {
            "event:confirmed" => confirmed += 1,
            _ => {
                assert_eq!(f["data"]["code"], "rate_limited", "{f}");
                limited += 1;
            }
        }
    }
    assert!(limited > 0, "nothing was limited ({confirmed} confirmed)");
    assert!(confirmed >= burst, "the burst is allowed ({confirmed})");
    assert_eq!(
        head(world, &t.session).await.get() as usize,
        1 + confirmed,
        "refused events are not stored"
    );
}

/// Tokens: another key, expired ticket, garbage, missing, a user token (outside dev mode) and
/// a replayed ticket → 401 at `$connect`; a fresh ticket → 200.
pub async fn bad_tokens_are_refused_at_connect(world: &World) {
    use dlab_service::auth::Authenticator;
    let t = world.seed().await;
    let foreign = Authenticator::with_secret("another-key-of-at-least-32-bytes!")
        .issue_ticket(&t.players[0])
        .ticket;
    assert_eq!(world.connect_with(Some(&foreign)).await.1, 401);
    assert_eq!(world.connect_with(Some("garbage")).await.1, 401);
    assert_eq!(world.connect_with(None).await.1, 401);
    let short = Authenticator::new(
        &dlab_service::config::JwtConfig::secret(
            dlab_service::config::HsSecret::new("SECRET", crate::ws_world::SECRET).unwrap(),
        ),
        Duration::from_secs(1),
        dlab_service::auth::ConnectTokens::TicketsOnly,
    );
    let ticket = short.issue_ticket(&t.players[0]).ticket;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        world.connect_with(Some(&ticket)).await.1,
        401,
        "expired ticket"
    );
    let user_token = world.token(&t.players[0]);
    assert_eq!(
        world.connect_with(Some(&user_token)).await.1,
        401,
        "a long-lived user token in the URL"
    );
    let ticket = world.deps().auth.issue_ticket(&t.players[0]).ticket;
    assert_eq!(world.connect_with(Some(&ticket)).await.1, 200);
    assert_eq!(
        world.connect_with(Some(&ticket)).await.1,
        401,
        "a replayed ticket"
    );
}

/// The per-user connection limit: over it `$connect` answers 429 and stores nothing; a
/// `$disconnect` frees a slot; other users are not affected.
pub async fn connection_limit_is_enforced_at_connect(world: &World) {
    let t = world.seed().await;
    let limit = world.deps().settings.max_connections_per_user;
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(world.connect(&t.players[0]).await);
    }
    let ticket = world.deps().auth.issue_ticket(&t.players[0]).ticket;
    let (refused, status) = world.connect_with(Some(&ticket)).await;
    assert_eq!(status, 429, "connection {} of a user", limit + 1);
    assert!(
        world
            .deps()
            .registry
            .connection(&refused.id)
            .await
            .unwrap()
            .is_none(),
        "a refused connection is not stored"
    );
    world.connect(&t.players[1]).await;
    assert_eq!(open.pop().expect("one").disconnect().await, 200);
    world.connect(&t.players[0]).await;
}

/// The store calls of one submit, per port and method, once the session is hot and this
/// process has seen the session's audience: deterministic, so asserted exactly. They are the
/// round trips of `BENCHMARKS.md`: two rate-limit buckets (connection, then user), one
/// registry read (the connection record and its subscription together), the commit, and the
/// archive write. The broadcast reads no registry: the commit's audience token matches the
/// list this process cached.
pub async fn one_submit_makes_five_store_calls_and_one_registry_read(world: &World) {
    let (counted, tally) = crate::counting::counted(world.deps());
    let world = World::new(counted, world.transport.clone());
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    let mut gm = world.connect(&t.gm).await;
    for c in [&mut p1, &mut p2, &mut gm] {
        c.subscribe(&t.session, 0).await;
    }
    let mut hit = async |from: i64, to: i64| {
        let (id, msg) = hit_message(&t.session, from, to);
        assert_eq!(p1.send(msg).await, 200);
        assert_eq!(p1.expect("event:confirmed").await["eventId"], id.as_str());
        for c in [&mut p2, &mut gm] {
            assert_eq!(c.expect("event:applied").await["id"], id.as_str());
        }
    };
    // The first event after the subscriptions reads the registry once and caches the list.
    tally.reset();
    hit(15, 7).await;
    let first = tally.take();
    assert_eq!(
        first.get(&("registry", "session_connections")),
        Some(&1),
        "{first:?}"
    );
    hit(7, 3).await;
    let calls = tally.take();
    let expected = std::collections::BTreeMap::from([
        (("limiter", "try_acquire"), 2),
        (("registry", "connection_in"), 1),
        (("log", "commit"), 1),
        (("archive", "insert"), 1),
    ]);
    assert_eq!(calls, expected, "the store calls of one submit");
}

/// Two processes (two warm Lambda containers) share the stores but not their caches. One has
/// cached the session's audience; a player subscribes through the other. The next event
/// published by the first reaches the new subscriber: the subscription replaced the audience
/// token, so the cached list is not used.
pub async fn a_subscriber_of_another_process_hears_the_next_event(world: &World) {
    let mut other_deps = world.deps().clone();
    other_deps.audiences = Default::default();
    other_deps.activity = Default::default();
    let other = World::new(other_deps, world.transport.clone());
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut gm = world.connect(&t.gm).await;
    p1.subscribe(&t.session, 0).await;
    gm.subscribe(&t.session, 0).await;
    let (id, msg) = hit_message(&t.session, 15, 7);
    p1.send(msg).await;
    assert_eq!(p1.expect("event:confirmed").await["eventId"], id.as_str());
    assert_eq!(gm.expect("event:applied").await["id"], id.as_str());
    assert!(
        !world.deps().audiences.is_empty(),
        "the first process cached the audience"
    );

    let mut p2 = other.connect(&t.players[1]).await;
    let caught_up = p2.subscribe(&t.session, 0).await;
    assert_eq!(caught_up.len(), 2, "actor added and the first hit");
    let (id, msg) = hit_message(&t.session, 7, 3);
    p1.send(msg).await;
    assert_eq!(p1.expect("event:confirmed").await["eventId"], id.as_str());
    assert_eq!(gm.expect("event:applied").await["id"], id.as_str());
    let applied = p2.expect("event:applied").await;
    assert_eq!(applied["id"], id.as_str(), "the new subscriber hears it");
    assert_eq!(applied["sequence"], 3);

    // And one that leaves through the other process stops hearing the session at once.
    p2.send(json!({"action": "unsubscribe", "sessionId": t.session}))
        .await;
    p2.expect("session:unsubscribed").await;
    let (id, msg) = hit_message(&t.session, 3, 1);
    p1.send(msg).await;
    assert_eq!(p1.expect("event:confirmed").await["eventId"], id.as_str());
    assert_eq!(gm.expect("event:applied").await["id"], id.as_str());
    p2.expect_no("event:applied", QUIET).await;
}

/// A `core:dice:roll` submit message (`requestId` `r-<id>`).
fn roll_message(session: &dlab_core::ids::SessionId, id: &str, payload: Value) -> Value {
    json!({"action": "submit", "requestId": format!("r-{id}"), "event": {
        "id": id, "sessionId": session, "type": "core:dice:roll", "payload": payload}})
}

/// Checks a server roll of `4d6kh3+2`: four d6, three kept, the total their sum plus 2.
fn assert_4d6kh3_plus_2(result: &Value) {
    let dice = result["dice"].as_array().expect("result.dice");
    assert_eq!(dice.len(), 4, "{result}");
    let mut kept_sum = 0;
    let mut kept = 0;
    for d in dice {
        assert_eq!(d["sides"], 6, "{result}");
        let v = d["value"].as_i64().unwrap();
        assert!((1..=6).contains(&v), "{result}");
        if d["kept"] == true {
            kept += 1;
            kept_sum += v;
        }
    }
    assert_eq!(kept, 3, "{result}");
    let total = result["total"].as_i64().unwrap();
    assert_eq!(total, kept_sum + 2, "{result}");
    assert!((5..=20).contains(&total), "{result}");
}

/// Trusted dice: the server rolls, the sender's confirmation carries the result, everyone else
/// gets the identical stored event, and a forged client `result` never survives.
pub async fn dice_roll_is_rolled_by_the_server_and_broadcast(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut p2 = world.connect(&t.players[1]).await;
    let mut gm = world.connect(&t.gm).await;
    for c in [&mut p1, &mut p2, &mut gm] {
        c.subscribe(&t.session, 0).await;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let forged = json!({"dice": [{"sides": 6, "value": 6, "kept": true}], "total": 999});
    let msg = roll_message(
        &t.session,
        &id,
        json!({"formula": "4d6kh3+2", "purpose": "strength", "result": forged}),
    );
    assert_eq!(p1.send(msg).await, 200);
    let confirmed = p1.expect("event:confirmed").await;
    assert_eq!(confirmed["eventId"], id.as_str());
    assert_eq!(confirmed["sequence"], 2);
    assert_eq!(confirmed["duplicate"], false);
    assert_eq!(confirmed["requestId"], format!("r-{id}"));
    let result = confirmed["result"].clone();
    assert_4d6kh3_plus_2(&result);
    assert_ne!(result, forged);
    let mut seen = Vec::new();
    for c in [&mut p2, &mut gm] {
        let applied = c.expect("event:applied").await;
        assert_eq!(applied["id"], id.as_str());
        assert_eq!(applied["sequence"], 2);
        assert_eq!(applied["type"], "core:dice:roll");
        assert_eq!(applied["userId"], t.players[0].as_str());
        assert_eq!(applied["payload"]["formula"], "4d6kh3+2");
        assert_eq!(applied["payload"]["purpose"], "strength");
        assert_eq!(applied["payload"]["result"], result);
        seen.push(applied);
    }
    assert_eq!(seen[0], seen[1], "broadcast identically");
    // The stored event carries the server's result too.
    let stored = world
        .deps()
        .log
        .read(&t.session, Sequence(1), None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload["result"], result);
    assert_eq!(serde_json::to_value(&stored[0]).unwrap(), seen[0]);
    p1.expect_no("event:applied", QUIET).await;
}

/// A re-sent roll (same id, same submitted content, whatever `result` it forges) is a duplicate
/// with the original result and sequence; the same id with another formula is refused.
pub async fn resent_dice_roll_is_a_duplicate_with_the_original_result(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut gm = world.connect(&t.gm).await;
    p1.subscribe(&t.session, 0).await;
    gm.subscribe(&t.session, 0).await;
    let id = uuid::Uuid::new_v4().to_string();
    let payload = json!({"formula": "4d6kh3+2"});
    p1.send(roll_message(&t.session, &id, payload.clone()))
        .await;
    let first = p1.expect("event:confirmed").await;
    let original = gm.expect("event:applied").await;
    assert_eq!(original["payload"]["result"], first["result"]);
    assert_4d6kh3_plus_2(&first["result"]);
    for resent in [
        payload.clone(),
        json!({"formula": "4d6kh3+2", "result": {"dice": [], "total": 20}}),
    ] {
        p1.send(roll_message(&t.session, &id, resent)).await;
        let again = p1.expect("event:confirmed").await;
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["sequence"], first["sequence"]);
        assert_eq!(again["timestamp"], first["timestamp"]);
        assert_eq!(again["result"], first["result"], "the original result");
        let re = gm.expect("event:applied").await;
        assert_eq!(re, original, "the original event is re-broadcast");
    }
    assert_eq!(head(world, &t.session).await, Sequence(2));
    // After the hot state is dropped and rebuilt from the archive (whose ids carry the hash of
    // the stored, rolled event), the re-sent roll is still the same duplicate.
    world.deps().log.release(&t.session).await.unwrap();
    p1.send(roll_message(&t.session, &id, payload.clone()))
        .await;
    let rebuilt = p1.expect("event:confirmed").await;
    assert_eq!(rebuilt["duplicate"], true, "{rebuilt}");
    assert_eq!(rebuilt["sequence"], first["sequence"]);
    assert_eq!(rebuilt["result"], first["result"]);
    assert_eq!(gm.expect("event:applied").await, original);
    assert_eq!(head(world, &t.session).await, Sequence(2));
    // Same id, other content: refused, nothing stored.
    p1.send(roll_message(&t.session, &id, json!({"formula": "1d20"})))
        .await;
    let err = assert_error(&mut p1, "event:error", "invalid_event").await;
    assert_eq!(err["tempId"], id.as_str());
    assert_eq!(head(world, &t.session).await, Sequence(2));
}

/// The checksum of a roll covers the payload as submitted without `result`: one computed that
/// way is accepted even when the client also sent a (forged) result.
pub async fn dice_roll_checksum_covers_the_submission_without_result(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let submitted = json!({"formula": "1d20+5", "purpose": "attack"});
    let sum = checksum(&submitted);
    for payload in [
        submitted.clone(),
        json!({"formula": "1d20+5", "purpose": "attack", "result": {"total": 25}}),
    ] {
        let id = uuid::Uuid::new_v4().to_string();
        let mut msg = roll_message(&t.session, &id, payload);
        msg["event"]["checksum"] = json!(sum);
        p1.send(msg).await;
        let confirmed = p1.expect("event:confirmed").await;
        assert_eq!(confirmed["duplicate"], false);
        let total = confirmed["result"]["total"].as_i64().unwrap();
        assert!((6..=25).contains(&total), "{confirmed}");
    }
    // A checksum over a payload that includes a result is not the submission's.
    let with_result = json!({"formula": "1d20+5", "purpose": "attack", "result": {"total": 25}});
    let id = uuid::Uuid::new_v4().to_string();
    let mut msg = roll_message(&t.session, &id, with_result.clone());
    msg["event"]["checksum"] = json!(checksum(&with_result));
    p1.send(msg).await;
    assert_error(&mut p1, "event:error", "checksum_mismatch").await;
    let stored = world
        .deps()
        .log
        .read(&t.session, Sequence(1), None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    for e in &stored {
        assert_eq!(e.checksum.as_deref(), Some(sum.as_str()));
        // The server's result (the forged one had no dice), not a coincidence of totals.
        let dice = e.payload["result"]["dice"].as_array().expect("server dice");
        assert_eq!(dice.len(), 1);
        assert_eq!(
            e.payload["result"]["total"].as_i64().unwrap(),
            dice[0]["value"].as_i64().unwrap() + 5
        );
    }
    assert_eq!(head(world, &t.session).await, Sequence(3));
}

/// A bad formula or roll payload is `invalid_event` naming the problem, and stores nothing.
pub async fn bad_dice_rolls_are_refused_and_store_nothing(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    p1.subscribe(&t.session, 0).await;
    let before = world.deps().log.state(&t.session).await.unwrap();
    for (payload, names) in [
        (json!({"formula": "1d0"}), "sides"),
        (json!({"formula": "101d6"}), "101 dice"),
        (json!({"formula": "1d1001"}), "sides"),
        (json!({"formula": "abc"}), "unexpected 'a'"),
        (json!({"formula": "4d6kh5"}), "keep"),
        (json!({"formula": "1d20+1000001"}), "constant"),
        (
            json!({"formula": format!("1d6{}", "+1".repeat(49))}),
            "101 characters",
        ),
        (json!({"purpose": "no formula"}), "formula is required"),
        (json!({"formula": 20}), "formula must be a string"),
        (json!({"formula": "1d20", "bonus": 2}), "unknown field"),
        (json!("1d20"), "must be an object"),
    ] {
        let id = uuid::Uuid::new_v4().to_string();
        p1.send(roll_message(&t.session, &id, payload.clone()))
            .await;
        let err = assert_error(&mut p1, "event:error", "invalid_event").await;
        assert_eq!(err["tempId"], id.as_str(), "{payload}");
        assert_eq!(err["requestId"], format!("r-{id}"));
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(names), "{payload}: {message}");
    }
    assert_eq!(head(world, &t.session).await, Sequence(1));
    assert_eq!(world.deps().log.state(&t.session).await.unwrap(), before);
    still_usable(&mut p1).await;
}

/// `settings.requireServerRolls` is the GM's: a player's `stateChanges` on `$session`
/// `settings.*` is `invalid_event` and changes nothing; the GM's `core:gm_override` sets it, and
/// every subscriber's projection (and the stored state) then requires server rolls.
pub async fn session_settings_are_written_by_the_gm_only(world: &World) {
    let t = world.seed().await;
    let mut p1 = world.connect(&t.players[0]).await;
    let mut gm = world.connect(&t.gm).await;
    p1.subscribe(&t.session, 0).await;
    gm.subscribe(&t.session, 0).await;
    let submit = |e: Value| json!({"action": "submit", "event": e});
    let before = world
        .deps()
        .log
        .state(&t.session)
        .await
        .unwrap()
        .expect("hot state");
    assert!(!before.require_server_rolls());
    for spec in [json!({"to": false}), json!({"from": false, "to": true})] {
        let (id, e) = event(
            &t.session,
            "plugin:dnd5e:settings",
            json!({"target": {"instanceId": "$session"},
                   "stateChanges": {"settings.requireServerRolls": spec}}),
        );
        p1.send(submit(e)).await;
        let err = assert_error(&mut p1, "event:error", "invalid_event").await;
        assert_eq!(err["tempId"], id.as_str());
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("core:gm_override"), "{message}");
    }
    assert_eq!(
        world.deps().log.state(&t.session).await.unwrap().as_ref(),
        Some(&before)
    );
    let (id, e) = event(
        &t.session,
        "core:gm_override",
        json!({"reason": "table rule",
               "finalState": {"$session": {"settings.requireServerRolls": true}}}),
    );
    gm.send(submit(e)).await;
    let confirmed = gm.expect("event:confirmed").await;
    assert_eq!(confirmed["eventId"], id.as_str());
    let applied = p1.expect("event:applied").await;
    assert_eq!(applied["id"], id.as_str());
    let after = world
        .deps()
        .log
        .state(&t.session)
        .await
        .unwrap()
        .expect("hot state");
    assert!(after.require_server_rolls());
    assert_eq!(after.last_event_sequence, before.last_event_sequence.next());
}
