//! Contract of [`ConnectionRegistry`]: every adapter must pass each body here.
//!
//! Each body takes the registry under test and uses fresh uuid ids, so bodies can share a
//! registry (or a table) and run in parallel. Forcing small query pages is adapter-specific and
//! done by the caller (see `tests/tests/contract_registry.rs`).

use dlab_core::ids::{ConnectionId, SessionId, UserId};
use dlab_store::model::{Connection, Subscription, now_ms};
use dlab_store::{Admission, ConnectionRegistry};
use futures::{StreamExt, TryStreamExt, stream};
use uuid::Uuid;

/// Two hours, API Gateway's maximum connection duration.
const LIVE_FOR_MS: u64 = 2 * 60 * 60 * 1000;

/// How many live connections [`large_session_is_listed_completely`] puts in one session.
pub const LARGE_SESSION: usize = 250;

/// How many expired subscriptions it mixes in.
const LARGE_SESSION_EXPIRED: usize = 30;

fn connection_id() -> ConnectionId {
    ConnectionId::new(format!("c-{}=", Uuid::new_v4().simple()))
}

fn session_id() -> SessionId {
    SessionId::new(format!("s-{}", Uuid::new_v4()))
}

fn user_id() -> UserId {
    UserId::new(format!("u-{}", Uuid::new_v4()))
}

fn live() -> u64 {
    now_ms() + LIVE_FOR_MS
}

fn expired() -> u64 {
    now_ms() - 1_000
}

fn subscription(
    connection: &ConnectionId,
    session: &SessionId,
    user: &UserId,
    expires_at: u64,
) -> Subscription {
    Subscription {
        connection_id: connection.clone(),
        session_id: session.clone(),
        user_id: user.clone(),
        expires_at,
    }
}

async fn subscribe(
    registry: &dyn ConnectionRegistry,
    connection: &ConnectionId,
    session: &SessionId,
    user: &UserId,
) -> Subscription {
    let sub = subscription(connection, session, user, live());
    registry.subscribe(&sub).await.expect("subscribe");
    sub
}

async fn listed(registry: &dyn ConnectionRegistry, session: &SessionId) -> Vec<ConnectionId> {
    registry
        .session_connections(session)
        .await
        .expect("session_connections")
        .into_iter()
        .map(|s| s.connection_id)
        .collect()
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

fn by_key(mut subs: Vec<Subscription>) -> Vec<Subscription> {
    subs.sort_by(|a, b| (&a.session_id, &a.connection_id).cmp(&(&b.session_id, &b.connection_id)));
    subs
}

/// A stored connection reads back unchanged; an unknown id reads `None`.
pub async fn put_and_get_connection(registry: &dyn ConnectionRegistry) {
    let now = now_ms();
    let connection = Connection {
        id: connection_id(),
        user_id: user_id(),
        connected_at: now,
        expires_at: now + LIVE_FOR_MS,
    };
    registry.put_connection(&connection).await.unwrap();
    assert_eq!(
        registry.connection(&connection.id).await.unwrap(),
        Some(connection.clone())
    );
    assert_eq!(registry.connection(&connection_id()).await.unwrap(), None);

    let renewed = Connection {
        expires_at: connection.expires_at + 1,
        ..connection.clone()
    };
    registry.put_connection(&renewed).await.unwrap();
    assert_eq!(
        registry.connection(&connection.id).await.unwrap(),
        Some(renewed),
        "put_connection replaces the record"
    );
}

/// An expired connection is not returned (its record may still exist: TTL deletion lags).
pub async fn expired_connection_is_not_returned(registry: &dyn ConnectionRegistry) {
    let connection = Connection {
        id: connection_id(),
        user_id: user_id(),
        connected_at: now_ms() - LIVE_FOR_MS,
        expires_at: expired(),
    };
    registry.put_connection(&connection).await.unwrap();
    assert_eq!(registry.connection(&connection.id).await.unwrap(), None);
}

/// Subscribing twice keeps one subscription (the second write wins); `is_subscribed` and
/// `subscriptions_of` see it; expired subscriptions are neither subscribed nor listed.
pub async fn subscribe_is_idempotent(registry: &dyn ConnectionRegistry) {
    let (c, s, u) = (connection_id(), session_id(), user_id());
    assert!(!registry.is_subscribed(&c, &s).await.unwrap());

    let first = subscribe(registry, &c, &s, &u).await;
    let second = Subscription {
        expires_at: first.expires_at + 5,
        ..first.clone()
    };
    registry.subscribe(&second).await.unwrap();
    registry.subscribe(&second).await.unwrap();

    assert!(registry.is_subscribed(&c, &s).await.unwrap());
    assert_eq!(
        registry.session_connections(&s).await.unwrap(),
        vec![second]
    );
    assert_eq!(
        registry.subscriptions_of(&c).await.unwrap(),
        vec![s.clone()]
    );
    assert!(!registry.is_subscribed(&c, &session_id()).await.unwrap());
    assert!(!registry.is_subscribed(&connection_id(), &s).await.unwrap());

    let (old, s2) = (connection_id(), session_id());
    registry
        .subscribe(&subscription(&old, &s2, &u, expired()))
        .await
        .unwrap();
    assert!(
        !registry.is_subscribed(&old, &s2).await.unwrap(),
        "an expired subscription is not subscribed"
    );
    assert!(registry.session_connections(&s2).await.unwrap().is_empty());
}

/// `subscriptions_of` lists every session of the connection, sorted, and only its own.
pub async fn subscriptions_of_lists_sessions_sorted(registry: &dyn ConnectionRegistry) {
    let (c, other, u) = (connection_id(), connection_id(), user_id());
    let sessions: Vec<SessionId> = (0..5).map(|_| session_id()).collect();
    for s in &sessions {
        subscribe(registry, &c, s, &u).await;
    }
    subscribe(registry, &other, &session_id(), &u).await;
    assert_eq!(
        registry.subscriptions_of(&c).await.unwrap(),
        sorted(sessions)
    );
    assert!(
        registry
            .subscriptions_of(&connection_id())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A session with [`LARGE_SESSION`] live connections lists every one of them (all pages),
/// ordered by connection id, and none of the expired ones mixed in.
pub async fn large_session_is_listed_completely(registry: &dyn ConnectionRegistry) {
    let s = session_id();
    let subs: Vec<Subscription> = (0..LARGE_SESSION + LARGE_SESSION_EXPIRED)
        .map(|i| {
            let expires_at = if i < LARGE_SESSION { live() } else { expired() };
            subscription(&connection_id(), &s, &user_id(), expires_at)
        })
        .collect();
    stream::iter(&subs)
        .map(|sub| registry.subscribe(sub))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("subscribe");

    let listed = registry.session_connections(&s).await.unwrap();
    let expected = sorted(
        subs[..LARGE_SESSION]
            .iter()
            .map(|s| s.connection_id.clone())
            .collect(),
    );
    let got: Vec<ConnectionId> = listed.iter().map(|s| s.connection_id.clone()).collect();
    assert_eq!(
        got.len(),
        LARGE_SESSION,
        "every live subscription of a large session is listed"
    );
    assert_eq!(got, expected, "listed once each, by connection id");
    assert_eq!(by_key(listed), by_key(subs[..LARGE_SESSION].to_vec()));
}

/// `unsubscribe` removes one subscription (both views) and says whether it existed.
pub async fn unsubscribe_removes_one_subscription(registry: &dyn ConnectionRegistry) {
    let (c, c2, s, s2, u) = (
        connection_id(),
        connection_id(),
        session_id(),
        session_id(),
        user_id(),
    );
    subscribe(registry, &c, &s, &u).await;
    subscribe(registry, &c, &s2, &u).await;
    subscribe(registry, &c2, &s, &u).await;

    assert!(registry.unsubscribe(&c, &s).await.unwrap());
    assert!(!registry.unsubscribe(&c, &s).await.unwrap());
    assert!(!registry.unsubscribe(&connection_id(), &s).await.unwrap());

    assert!(!registry.is_subscribed(&c, &s).await.unwrap());
    assert!(registry.is_subscribed(&c, &s2).await.unwrap());
    assert_eq!(listed(registry, &s).await, vec![c2.clone()]);
    assert_eq!(registry.subscriptions_of(&c).await.unwrap(), vec![s2]);
}

/// `remove_connection` deletes the connection and every subscription of it (the session
/// listings no longer show it) and returns those subscriptions, ordered by session.
pub async fn remove_connection_removes_all_subscriptions(registry: &dyn ConnectionRegistry) {
    let (c, c2, u, u2) = (connection_id(), connection_id(), user_id(), user_id());
    let (s1, s2, s3) = (session_id(), session_id(), session_id());
    let now = now_ms();
    registry
        .put_connection(&Connection {
            id: c.clone(),
            user_id: u.clone(),
            connected_at: now,
            expires_at: now + LIVE_FOR_MS,
        })
        .await
        .unwrap();
    let mut subs = Vec::new();
    for s in [&s1, &s2, &s3] {
        subs.push(subscribe(registry, &c, s, &u).await);
    }
    subscribe(registry, &c2, &s1, &u2).await;

    let removed = registry.remove_connection(&c).await.unwrap();
    let mut expected = subs.clone();
    expected.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    assert_eq!(removed, expected, "returns its subscriptions by session");

    assert_eq!(registry.connection(&c).await.unwrap(), None);
    assert!(registry.subscriptions_of(&c).await.unwrap().is_empty());
    assert_eq!(listed(registry, &s1).await, vec![c2.clone()]);
    assert!(listed(registry, &s2).await.is_empty());
    assert!(listed(registry, &s3).await.is_empty());
    for s in [&s1, &s2, &s3] {
        assert!(!registry.is_subscribed(&c, s).await.unwrap());
    }
    assert!(registry.is_subscribed(&c2, &s1).await.unwrap());

    assert!(registry.remove_connection(&c).await.unwrap().is_empty());
    assert!(
        registry
            .remove_connection(&connection_id())
            .await
            .unwrap()
            .is_empty()
    );
}

/// `remove_user_subscriptions` removes exactly that user's subscriptions to the given
/// sessions, in both views, and returns them; other users, other sessions and the connection
/// records stay.
pub async fn remove_user_subscriptions_removes_only_that_user(registry: &dyn ConnectionRegistry) {
    let (u, v) = (user_id(), user_id());
    let (c1, c2, c3) = (connection_id(), connection_id(), connection_id());
    let (s1, s2, s3) = (session_id(), session_id(), session_id());
    let now = now_ms();
    registry
        .put_connection(&Connection {
            id: c1.clone(),
            user_id: u.clone(),
            connected_at: now,
            expires_at: now + LIVE_FOR_MS,
        })
        .await
        .unwrap();

    let mut expected = Vec::new();
    expected.push(subscribe(registry, &c1, &s1, &u).await);
    expected.push(subscribe(registry, &c1, &s2, &u).await);
    expected.push(subscribe(registry, &c2, &s1, &u).await);
    subscribe(registry, &c1, &s3, &u).await;
    subscribe(registry, &c3, &s1, &v).await;
    subscribe(registry, &c3, &s2, &v).await;

    let removed = registry
        .remove_user_subscriptions(&u, &[s1.clone(), s2.clone()])
        .await
        .unwrap();
    assert_eq!(by_key(removed), by_key(expected));

    assert_eq!(listed(registry, &s1).await, vec![c3.clone()]);
    assert_eq!(listed(registry, &s2).await, vec![c3.clone()]);
    assert_eq!(listed(registry, &s3).await, vec![c1.clone()]);
    assert_eq!(
        registry.subscriptions_of(&c1).await.unwrap(),
        vec![s3.clone()]
    );
    assert!(registry.subscriptions_of(&c2).await.unwrap().is_empty());
    assert_eq!(
        registry.subscriptions_of(&c3).await.unwrap(),
        sorted(vec![s1.clone(), s2.clone()])
    );
    assert!(!registry.is_subscribed(&c1, &s1).await.unwrap());
    assert!(registry.is_subscribed(&c1, &s3).await.unwrap());
    assert!(
        registry.connection(&c1).await.unwrap().is_some(),
        "the connection itself stays"
    );

    let again = registry
        .remove_user_subscriptions(&u, &[s1.clone(), s2.clone(), s1.clone()])
        .await
        .unwrap();
    assert!(again.is_empty());
    let none = registry
        .remove_user_subscriptions(&user_id(), std::slice::from_ref(&s3))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(listed(registry, &s3).await, vec![c1]);
}

fn connection_of(user: &UserId, expires_at: u64) -> Connection {
    Connection {
        id: connection_id(),
        user_id: user.clone(),
        connected_at: now_ms(),
        expires_at,
    }
}

async fn admit(registry: &dyn ConnectionRegistry, c: &Connection, limit: usize) -> Admission {
    registry
        .add_connection(c, limit)
        .await
        .expect("add_connection")
}

/// A user gets `limit` connections; the next one is refused and not stored; storing an
/// admitted id again (a renewal) is admitted and does not count twice; other users are not
/// affected.
pub async fn connection_limit_admits_up_to_the_limit(registry: &dyn ConnectionRegistry) {
    let (u, v) = (user_id(), user_id());
    let admitted: Vec<Connection> = (0..3).map(|_| connection_of(&u, live())).collect();
    for c in &admitted {
        assert_eq!(admit(registry, c, 3).await, Admission::Admitted);
        assert_eq!(registry.connection(&c.id).await.unwrap().as_ref(), Some(c));
    }
    let over = connection_of(&u, live());
    assert_eq!(
        admit(registry, &over, 3).await,
        Admission::Refused { open: 3 }
    );
    assert_eq!(
        registry.connection(&over.id).await.unwrap(),
        None,
        "a refused connection is not stored"
    );
    let renewed = Connection {
        expires_at: admitted[0].expires_at + 1_000,
        ..admitted[0].clone()
    };
    assert_eq!(admit(registry, &renewed, 3).await, Admission::Admitted);
    assert_eq!(
        registry.connection(&renewed.id).await.unwrap(),
        Some(renewed)
    );
    assert_eq!(
        admit(registry, &connection_of(&u, live()), 3).await,
        Admission::Refused { open: 3 },
        "a renewal does not count twice"
    );
    assert_eq!(
        admit(registry, &connection_of(&v, live()), 3).await,
        Admission::Admitted,
        "another user has slots of their own"
    );
    assert_eq!(
        admit(registry, &connection_of(&u, live()), 4).await,
        Admission::Admitted,
        "a higher limit admits more"
    );
}

/// Expired connection records never count, so a lost `$disconnect` cannot lock a user out.
pub async fn expired_connections_do_not_count(registry: &dyn ConnectionRegistry) {
    let u = user_id();
    for _ in 0..3 {
        let stale = connection_of(&u, expired());
        registry.put_connection(&stale).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(
            admit(registry, &connection_of(&u, live()), 3).await,
            Admission::Admitted
        );
    }
    assert_eq!(
        admit(registry, &connection_of(&u, live()), 3).await,
        Admission::Refused { open: 3 }
    );
}

/// `remove_connection` frees its slot at once.
pub async fn disconnect_frees_a_slot(registry: &dyn ConnectionRegistry) {
    let u = user_id();
    let (a, b) = (connection_of(&u, live()), connection_of(&u, live()));
    assert_eq!(admit(registry, &a, 2).await, Admission::Admitted);
    assert_eq!(admit(registry, &b, 2).await, Admission::Admitted);
    let c = connection_of(&u, live());
    assert_eq!(admit(registry, &c, 2).await, Admission::Refused { open: 2 });
    registry.remove_connection(&a.id).await.unwrap();
    assert_eq!(admit(registry, &c, 2).await, Admission::Admitted);
    assert_eq!(
        admit(registry, &connection_of(&u, live()), 2).await,
        Admission::Refused { open: 2 }
    );
    registry.remove_connection(&b.id).await.unwrap();
    registry.remove_connection(&c.id).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            admit(registry, &connection_of(&u, live()), 2).await,
            Admission::Admitted
        );
    }
}

/// How many connects of one user [`concurrent_connects_never_pass_the_limit`] runs at once.
pub const CONCURRENT_CONNECTS: usize = 50;

/// [`CONCURRENT_CONNECTS`] connects of one user at once, with a limit of 10: exactly 10 are
/// admitted and stored, every other one is refused and not stored.
pub async fn concurrent_connects_never_pass_the_limit(registry: &dyn ConnectionRegistry) {
    const LIMIT: usize = 10;
    let u = user_id();
    let attempts: Vec<Connection> = (0..CONCURRENT_CONNECTS)
        .map(|_| connection_of(&u, live()))
        .collect();
    let outcomes = futures::future::join_all(
        attempts
            .iter()
            .map(|c| async move { (c, registry.add_connection(c, LIMIT).await) }),
    )
    .await;
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for (c, outcome) in outcomes {
        match outcome.expect("add_connection under contention") {
            Admission::Admitted => admitted.push(c),
            Admission::Refused { open } => {
                assert!(open >= LIMIT, "refused with only {open} open");
                refused.push(c);
            }
        }
    }
    assert_eq!(
        admitted.len(),
        LIMIT,
        "{} of {CONCURRENT_CONNECTS} concurrent connects admitted with a limit of {LIMIT}",
        admitted.len()
    );
    assert_eq!(refused.len(), CONCURRENT_CONNECTS - LIMIT);
    for c in &admitted {
        assert!(registry.connection(&c.id).await.unwrap().is_some());
    }
    for c in &refused {
        assert_eq!(registry.connection(&c.id).await.unwrap(), None);
    }
    assert_eq!(
        admit(registry, &connection_of(&u, live()), LIMIT).await,
        Admission::Refused { open: LIMIT }
    );
}

/// A ticket id is claimed once: every later claim (a replay) answers `false`; other ids are
/// independent.
pub async fn tickets_are_claimed_once(registry: &dyn ConnectionRegistry) {
    let jti = Uuid::new_v4();
    let expires_at = now_ms() + 60_000;
    assert!(registry.claim_ticket(jti, expires_at).await.unwrap());
    assert!(!registry.claim_ticket(jti, expires_at).await.unwrap());
    assert!(
        !registry
            .claim_ticket(jti, expires_at + 5_000)
            .await
            .unwrap()
    );
    assert!(
        registry
            .claim_ticket(Uuid::new_v4(), expires_at)
            .await
            .unwrap()
    );
}

/// `connection_in` answers what `connection` and `is_subscribed` answer, together: `None` for
/// an unknown or expired connection; the connection and `false` before subscribing, after
/// unsubscribing, for another session, and when the subscription expired; `true` while it is
/// live.
pub async fn connection_in_reads_the_connection_and_its_subscription(
    registry: &dyn ConnectionRegistry,
) {
    let (s, other, u) = (session_id(), session_id(), user_id());
    let now = now_ms();
    let connection = Connection {
        id: connection_id(),
        user_id: u.clone(),
        connected_at: now,
        expires_at: now + LIVE_FOR_MS,
    };
    assert_eq!(
        registry.connection_in(&connection.id, &s).await.unwrap(),
        None
    );
    registry.put_connection(&connection).await.unwrap();
    assert_eq!(
        registry.connection_in(&connection.id, &s).await.unwrap(),
        Some((connection.clone(), false))
    );
    subscribe(registry, &connection.id, &s, &u).await;
    assert_eq!(
        registry.connection_in(&connection.id, &s).await.unwrap(),
        Some((connection.clone(), true))
    );
    assert_eq!(
        registry
            .connection_in(&connection.id, &other)
            .await
            .unwrap(),
        Some((connection.clone(), false)),
        "a subscription to one session says nothing of another"
    );
    registry
        .subscribe(&subscription(&connection.id, &other, &u, expired()))
        .await
        .unwrap();
    assert_eq!(
        registry
            .connection_in(&connection.id, &other)
            .await
            .unwrap(),
        Some((connection.clone(), false)),
        "an expired subscription is not one"
    );
    registry.unsubscribe(&connection.id, &s).await.unwrap();
    assert_eq!(
        registry.connection_in(&connection.id, &s).await.unwrap(),
        Some((connection.clone(), false))
    );
    // A live subscription of an expired connection is no connection at all.
    let stale = Connection {
        id: connection_id(),
        user_id: u.clone(),
        connected_at: now - LIVE_FOR_MS,
        expires_at: expired(),
    };
    registry.put_connection(&stale).await.unwrap();
    subscribe(registry, &stale.id, &s, &u).await;
    assert_eq!(registry.connection_in(&stale.id, &s).await.unwrap(), None);
}

/// Runs every body against one registry, one after the other.
pub async fn run_all(registry: &dyn ConnectionRegistry) {
    put_and_get_connection(registry).await;
    expired_connection_is_not_returned(registry).await;
    subscribe_is_idempotent(registry).await;
    subscriptions_of_lists_sessions_sorted(registry).await;
    large_session_is_listed_completely(registry).await;
    unsubscribe_removes_one_subscription(registry).await;
    remove_connection_removes_all_subscriptions(registry).await;
    remove_user_subscriptions_removes_only_that_user(registry).await;
    connection_limit_admits_up_to_the_limit(registry).await;
    expired_connections_do_not_count(registry).await;
    disconnect_frees_a_slot(registry).await;
    concurrent_connects_never_pass_the_limit(registry).await;
    tickets_are_claimed_once(registry).await;
    connection_in_reads_the_connection_and_its_subscription(registry).await;
}
