//! The HTTP API driven in-process: requests go through the very router the `http-api` Lambda
//! and the local gateway serve (`tower::ServiceExt::oneshot`), over some dependencies, and
//! WebSocket connections are read from the notifier's channels.
//!
//! Each case is a function of an [`HttpWorld`]; `tests/tests/http_api.rs` runs them against
//! the memory backend ([`memory_world`]) and against the real servers ([`real_world`]: Redis
//! for the event log, MongoDB through nx-27017 for archive, campaigns and snapshots, a fresh
//! database per world).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use dlab_core::actor::CompendiumEntry;
use dlab_core::compaction::Snapshot;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ConnectionId, EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::auth::{Authenticator, Claims};
use dlab_service::config::Settings;
use dlab_service::http::{CorsConfig, HttpSettings, router_with};
use dlab_store::CommitRequest;
use dlab_store::memory::MemoryNotifier;
use dlab_store::model::{CampaignQuotas, Connection, SessionStatus, Subscription, now_ms};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tower::ServiceExt;

/// The secret the test authenticator signs with.
pub const SECRET: &str = "http-test-secret-of-32-bytes-do-not-use";

/// The compendium attribution the test router answers with.
pub const ATTRIBUTION: &str = "Test data: no license needed.";

/// Every route of the contract this API serves, as the OpenAPI document names them.
pub const ROUTES: [(&str, &str); 30] = [
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("post", "/connect-ticket"),
    ("get", "/compendium"),
    ("get", "/compendium/{ref}"),
    ("post", "/compendium/batch"),
    ("get", "/campaigns"),
    ("post", "/campaigns"),
    ("get", "/campaigns/{id}"),
    ("post", "/campaigns/{id}/members"),
    ("delete", "/campaigns/{id}/members/{userId}"),
    ("post", "/campaigns/{id}/actors"),
    ("post", "/campaigns/{id}/actors/bulk"),
    ("get", "/campaigns/{id}/actors"),
    ("get", "/campaigns/{id}/actors/{actorId}"),
    ("patch", "/campaigns/{id}/actors/{actorId}"),
    ("delete", "/campaigns/{id}/actors/{actorId}"),
    ("post", "/campaigns/{id}/sessions"),
    ("get", "/campaigns/{id}/sessions"),
    ("get", "/sessions/{id}"),
    ("post", "/sessions/{id}/actors"),
    ("delete", "/sessions/{id}/actors/{instanceId}"),
    ("get", "/sessions/{id}/actors/{instanceId}"),
    ("get", "/sessions/{id}/events"),
    ("get", "/sessions/{id}/snapshot"),
    ("post", "/sessions/{id}/end"),
    ("post", "/sessions/{id}/compact"),
    ("get", "/sessions/{id}/conflicts"),
    ("post", "/sessions/{id}/conflicts"),
    ("post", "/sessions/{id}/conflicts/{conflictId}/resolve"),
];

/// POST routes that take no body.
pub const BODYLESS_POSTS: [&str; 3] = [
    "/connect-ticket",
    "/sessions/{id}/end",
    "/sessions/{id}/compact",
];

/// Routes open without a token.
pub const PUBLIC_ROUTES: [&str; 2] = ["/healthz", "/openapi.json"];

/// An answer: status, headers and the body as JSON (`null` when empty, a string when not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Parsed body.
    pub body: Value,
}

impl Resp {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        &self.body
    }

    /// Asserts an error answer `{"error": {code, message}}` with this status and code; returns
    /// the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        let err = self.body["error"].as_object().unwrap_or_else(|| {
            panic!("no error object in {}", self.body);
        });
        assert_eq!(
            err.len(),
            2,
            "error has exactly code and message: {}",
            self.body
        );
        assert_eq!(err["code"], code, "{}", self.body);
        err["message"]
            .as_str()
            .expect("message is a string")
            .to_owned()
    }
}

/// Users of a seeded table.
#[derive(Debug, Clone)]
pub struct People {
    /// The campaign's owner.
    pub gm: UserId,
    /// A player member.
    pub player: UserId,
    /// A user of no campaign here.
    pub stranger: UserId,
}

/// A seeded table: campaign (GM + one player), one session, the goblin template.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// The users.
    pub people: People,
    /// The campaign id.
    pub campaign: String,
    /// The session id.
    pub session: String,
}

/// The router over some dependencies.
pub struct HttpWorld {
    /// The dependencies (inspect stores, registry, log).
    pub deps: Deps,
    /// Posts to connections land here.
    pub notifier: MemoryNotifier,
    /// The router under test.
    pub app: Router,
}

/// The settings every world's router starts with.
pub fn test_settings() -> HttpSettings {
    HttpSettings {
        cors: CorsConfig::Origins(vec!["https://gm.example.org".into()]),
        attribution: ATTRIBUTION.into(),
        ..HttpSettings::default()
    }
}

/// A memory world: every port in memory, the compendium attribution [`ATTRIBUTION`].
pub fn memory_world() -> HttpWorld {
    let (deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), Settings::default());
    let app = router_with(deps.clone(), test_settings());
    HttpWorld {
        deps,
        notifier,
        app,
    }
}

/// A world on the real servers: the event log in Redis (sessions are UUIDs, so worlds share
/// it), archive, campaigns, compendium and snapshots in a fresh MongoDB database; connections
/// and the rate limiter in memory (their adapters have their own contract suites), posts
/// landing in channels. `None` (after saying why) when the servers are not required and not
/// reachable.
pub async fn real_world() -> Option<HttpWorld> {
    use crate::servers::{Server, require};
    if !require(Server::Redis) || !require(Server::Mongo) {
        return None;
    }
    let redis = dlab_store::redis::RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("Redis");
    let mut mongo_cfg = dlab_store::mongo::MongoConfig::new(Server::Mongo.url());
    mongo_cfg.database = format!("dlab_http_{}", uuid::Uuid::new_v4().simple());
    let mongo = dlab_store::mongo::MongoStores::connect(&mongo_cfg)
        .await
        .expect("MongoDB");
    let (mut deps, notifier) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), Settings::default());
    deps.log = Arc::new(dlab_store::redis::RedisEventLog::new(redis));
    deps.archive = Arc::new(mongo.archive());
    deps.campaigns = Arc::new(mongo.campaigns());
    deps.snapshots = Arc::new(mongo.snapshots());
    deps.conflicts = Arc::new(mongo.conflicts());
    let app = router_with(deps.clone(), test_settings());
    Some(HttpWorld {
        deps,
        notifier,
        app,
    })
}

/// The goblin template.
pub fn goblin_template() -> CompendiumEntry {
    CompendiumEntry {
        reference: "dnd5e:monsters:goblin".into(),
        system: "dnd5e".into(),
        category: "monsters".into(),
        name: "Goblin".into(),
        data: json!({
            "type": "monster",
            "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15, "speed": 30,
                           "abilities": {"dex": 14}, "skills": {"stealth": 6}},
            "equipment": [{"name": "Scimitar"}, {"name": "Shortbow"}],
            "features": [{"name": "Nimble Escape"}]
        }),
    }
}

fn entry(reference: &str, name: &str) -> CompendiumEntry {
    let parts: Vec<&str> = reference.split(':').collect();
    CompendiumEntry {
        reference: reference.into(),
        system: parts[0].into(),
        category: parts[1].into(),
        name: name.into(),
        data: json!({"level": 1}),
    }
}

impl HttpWorld {
    /// The same dependencies behind a router with other settings (byte budgets, quotas).
    pub fn with_settings(&self, edit: impl FnOnce(&mut HttpSettings)) -> HttpWorld {
        let mut settings = test_settings();
        edit(&mut settings);
        HttpWorld {
            deps: self.deps.clone(),
            notifier: self.notifier.clone(),
            app: router_with(self.deps.clone(), settings),
        }
    }

    /// The same dependencies behind a router whose administrators (`DLAB_ADMINS`) are
    /// `admins`.
    pub fn with_admins(&self, admins: &[&UserId]) -> HttpWorld {
        let mut deps = self.deps.clone();
        deps.settings.admins = admins.iter().map(|u| (*u).clone()).collect();
        HttpWorld {
            app: router_with(deps.clone(), test_settings()),
            deps,
            notifier: self.notifier.clone(),
        }
    }

    /// A fresh user id.
    pub fn user(&self, prefix: &str) -> UserId {
        UserId::new(format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
    }

    /// A user token valid for five minutes.
    pub fn token(&self, user: &UserId) -> String {
        self.deps
            .auth
            .issue_user_token(user, Duration::from_secs(300))
    }

    /// Sends a request with an optional bearer token and raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_owned())
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .expect("the router never fails");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `GET` as `user`.
    pub async fn get(&self, path: &str, user: &UserId) -> Resp {
        self.raw("GET", path, Some(&self.token(user)), None).await
    }

    /// `DELETE` as `user`.
    pub async fn delete(&self, path: &str, user: &UserId) -> Resp {
        self.raw("DELETE", path, Some(&self.token(user)), None)
            .await
    }

    /// `POST` of a JSON body as `user`.
    pub async fn post(&self, path: &str, user: &UserId, body: Value) -> Resp {
        self.raw(
            "POST",
            path,
            Some(&self.token(user)),
            Some(&body.to_string()),
        )
        .await
    }

    /// `PATCH` of a JSON body as `user`.
    pub async fn patch(&self, path: &str, user: &UserId, body: Value) -> Resp {
        self.raw(
            "PATCH",
            path,
            Some(&self.token(user)),
            Some(&body.to_string()),
        )
        .await
    }

    /// A campaign (GM + one player), a session and the goblin template, all through the API
    /// (the template through the store: the importer's job).
    pub async fn seed(&self) -> Seeded {
        let people = People {
            gm: self.user("gm"),
            player: self.user("player"),
            stranger: self.user("stranger"),
        };
        self.deps
            .campaigns
            .put_compendium(&[goblin_template()])
            .await
            .unwrap();
        let campaign = self
            .post("/campaigns", &people.gm, json!({"name": "Lost Mine"}))
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.post(
            &format!("/campaigns/{campaign}/members"),
            &people.gm,
            json!({"userId": people.player, "role": "player"}),
        )
        .await
        .ok(200);
        let session = self
            .post(
                &format!("/campaigns/{campaign}/sessions"),
                &people.gm,
                json!({"name": "Session 1"}),
            )
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Seeded {
            people,
            campaign,
            session,
        }
    }

    /// Opens a WebSocket connection of `user` subscribed to `session` (registry + notifier
    /// channel, as `$connect` and `subscribe` leave them).
    pub async fn live_connection(
        &self,
        user: &UserId,
        session: &str,
    ) -> (ConnectionId, UnboundedReceiver<Vec<u8>>) {
        let id = ConnectionId::new(format!(
            "c{}=",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        let rx = self.notifier.open(&id);
        let expires_at = now_ms() + 3_600_000;
        self.deps
            .registry
            .put_connection(&Connection {
                id: id.clone(),
                user_id: user.clone(),
                connected_at: now_ms(),
                expires_at,
            })
            .await
            .unwrap();
        self.deps
            .registry
            .subscribe(&Subscription {
                connection_id: id.clone(),
                session_id: SessionId::new(session),
                user_id: user.clone(),
                expires_at,
            })
            .await
            .unwrap();
        (id, rx)
    }

    /// Commits a chat event to a session (as a client submit would).
    pub async fn chat(&self, session: &str, user: &UserId, text: &str) -> GameEvent {
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: user.clone(),
            session_id: SessionId::new(session),
            event_type: "core:chat".into(),
            payload: json!({"text": text}),
            checksum: None,
        };
        let changes = dlab_core::changes::parse_changes(&event.event_type, &event.payload).unwrap();
        dlab_service::pipeline::commit(&self.deps, CommitRequest { event, changes })
            .await
            .unwrap()
            .event
            .unwrap()
    }
}

/// The next frame posted to a connection, within a few seconds.
pub async fn next_frame(rx: &mut UnboundedReceiver<Vec<u8>>) -> Value {
    let bytes = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a frame within 5 s")
        .expect("the channel is open");
    serde_json::from_slice(&bytes).expect("frames are JSON")
}

/// The next frame named `event`, skipping others.
pub async fn expect_frame(rx: &mut UnboundedReceiver<Vec<u8>>, event: &str) -> Value {
    loop {
        let frame = next_frame(rx).await;
        if frame["event"] == event {
            return frame["data"].clone();
        }
    }
}

fn concrete(path: &str) -> String {
    path.replace("{ref}", "dnd5e:monsters:goblin")
        .replace("{id}", "x")
        .replace("{userId}", "u")
        .replace("{actorId}", "a")
        .replace("{instanceId}", "i")
}

fn signed(claims: &Claims, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// `/healthz` and `/openapi.json` answer without a token.
pub async fn public_routes_need_no_token(w: &HttpWorld) {
    let health = w.raw("GET", "/healthz", None, None).await;
    assert_eq!(health.ok(200), &json!({"status": "ok"}));
    let doc = w.raw("GET", "/openapi.json", None, None).await;
    assert!(doc.ok(200)["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc.headers["content-type"], "application/json");
}

/// Every other route refuses a missing, malformed, garbage, expired, foreign-signed token and
/// a connect ticket with 401 `unauthorized` (and `WWW-Authenticate: Bearer`).
pub async fn every_protected_route_needs_a_valid_bearer(w: &HttpWorld) {
    let user = w.user("u");
    let now = now_ms() / 1000;
    let expired = signed(
        &Claims {
            sub: user.to_string(),
            exp: now - 120,
            iat: now - 180,
            aud: None,
        },
        SECRET,
    );
    let foreign = signed(
        &Claims {
            sub: user.to_string(),
            exp: now + 300,
            iat: now,
            aud: None,
        },
        "another-secret",
    );
    let ticket = w.deps.auth.issue_ticket(&user).ticket;
    for (method, path) in ROUTES {
        if PUBLIC_ROUTES.contains(&path) {
            continue;
        }
        let uri = concrete(path);
        let method = method.to_uppercase();
        let body = (method == "POST" || method == "PATCH").then_some("{}");
        let missing = w.raw(&method, &uri, None, body).await;
        let message = missing.error(401, "unauthorized");
        assert_eq!(message, "a token is required", "{method} {uri}");
        assert_eq!(missing.headers["www-authenticate"], "Bearer");
        for (what, token) in [
            ("garbage", "not.a.jwt"),
            ("expired", expired.as_str()),
            ("foreign", foreign.as_str()),
            ("ticket", ticket.as_str()),
        ] {
            let resp = w.raw(&method, &uri, Some(token), body).await;
            assert_eq!(
                resp.status, 401,
                "{what} token on {method} {uri}: {}",
                resp.body
            );
            resp.error(401, "unauthorized");
        }
        let basic = {
            let req = Request::builder()
                .method(method.as_str())
                .uri(&uri)
                .header("authorization", "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .unwrap();
            w.app.clone().oneshot(req).await.unwrap().status().as_u16()
        };
        assert_eq!(basic, 401, "Basic auth on {method} {uri}");
    }
    let expired_msg = w
        .raw("GET", "/campaigns", Some(&expired), None)
        .await
        .error(401, "unauthorized");
    assert_eq!(expired_msg, "the token has expired");
}

/// A connect ticket is issued for the caller and opens a WebSocket, not the HTTP API.
pub async fn connect_ticket_is_for_the_websocket(w: &HttpWorld) {
    let user = w.user("alice");
    let resp = w
        .raw("POST", "/connect-ticket", Some(&w.token(&user)), None)
        .await;
    let body = resp.ok(200);
    let ticket = body["ticket"].as_str().unwrap();
    let expires_at = body["expiresAt"].as_u64().unwrap();
    assert!(expires_at > now_ms() && expires_at <= now_ms() + 120_000);
    assert_eq!(
        w.deps.auth.verify_connect(Some(ticket)).await.unwrap().user,
        user
    );
    w.raw("GET", "/campaigns", Some(ticket), None)
        .await
        .error(401, "unauthorized");
}

/// Campaigns: create (caller becomes GM), read, list; 404 unknown, 403 outsider.
pub async fn campaigns_are_created_listed_and_guarded(w: &HttpWorld) {
    let t = w.seed().await;
    let c = w
        .get(&format!("/campaigns/{}", t.campaign), &t.people.gm)
        .await;
    let c = c.ok(200);
    assert_eq!(c["name"], "Lost Mine");
    assert_eq!(c["gmUserId"], json!(t.people.gm));
    assert!(uuid::Uuid::parse_str(c["id"].as_str().unwrap()).is_ok());
    assert_eq!(
        c["members"],
        json!([{"userId": t.people.player, "role": "player"}])
    );
    w.get(&format!("/campaigns/{}", t.campaign), &t.people.player)
        .await
        .ok(200);
    let list = w.get("/campaigns", &t.people.player).await;
    assert_eq!(list.ok(200)["nextCursor"], Value::Null);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["items"][0]["id"], json!(t.campaign));
    let empty = w.get("/campaigns", &t.people.stranger).await;
    assert_eq!(empty.ok(200), &json!({"items": [], "nextCursor": null}));
    w.get(&format!("/campaigns/{}", t.campaign), &t.people.stranger)
        .await
        .error(403, "forbidden");
    let msg = w
        .get("/campaigns/no-such-campaign", &t.people.gm)
        .await
        .error(404, "not_found");
    assert!(msg.contains("no-such-campaign"), "{msg}");
    w.post("/campaigns", &t.people.gm, json!({"name": "   "}))
        .await
        .error(400, "invalid_message");
    w.post("/campaigns", &t.people.gm, json!({"name": "x".repeat(201)}))
        .await
        .error(400, "invalid_message");
}

/// Members: GM only; the owner cannot be added or removed; role and userId are checked.
pub async fn members_are_managed_by_gms(w: &HttpWorld) {
    let t = w.seed().await;
    let members = format!("/campaigns/{}/members", t.campaign);
    let newcomer = w.user("newcomer");
    w.post(
        &members,
        &t.people.player,
        json!({"userId": newcomer, "role": "player"}),
    )
    .await
    .error(403, "forbidden");
    w.post(
        &members,
        &t.people.stranger,
        json!({"userId": newcomer, "role": "player"}),
    )
    .await
    .error(403, "forbidden");
    w.post(
        "/campaigns/nope/members",
        &t.people.gm,
        json!({"userId": newcomer, "role": "player"}),
    )
    .await
    .error(404, "not_found");
    let bad_role = w
        .post(
            &members,
            &t.people.gm,
            json!({"userId": newcomer, "role": "wizard"}),
        )
        .await
        .error(400, "invalid_message");
    assert!(bad_role.contains("role"), "{bad_role}");
    let bad_type = w
        .post(&members, &t.people.gm, json!({"userId": 42, "role": "gm"}))
        .await
        .error(400, "invalid_message");
    assert!(bad_type.contains("userId"), "{bad_type}");
    let missing = w
        .post(&members, &t.people.gm, json!({"role": "gm"}))
        .await
        .error(400, "invalid_message");
    assert!(missing.contains("userId"), "{missing}");
    w.post(
        &members,
        &t.people.gm,
        json!({"userId": t.people.gm, "role": "player"}),
    )
    .await
    .error(400, "invalid_message");

    // A co-GM counts as GM.
    let cogm = w.user("cogm");
    let c = w
        .post(
            &members,
            &t.people.gm,
            json!({"userId": cogm, "role": "gm"}),
        )
        .await;
    assert!(
        c.ok(200)["members"]
            .as_array()
            .unwrap()
            .contains(&json!({"userId": cogm, "role": "gm"}))
    );
    w.post(
        &members,
        &cogm,
        json!({"userId": newcomer, "role": "player"}),
    )
    .await
    .ok(200);
    w.get(&format!("/campaigns/{}", t.campaign), &newcomer)
        .await
        .ok(200);

    w.delete(&format!("{members}/{}", t.people.gm), &cogm)
        .await
        .error(400, "invalid_message");
    w.delete(&format!("{members}/{}", newcomer), &t.people.player)
        .await
        .error(403, "forbidden");
    w.delete(&format!("{members}/{}", t.people.stranger), &t.people.gm)
        .await
        .error(404, "not_found");
    let gone = w.delete(&format!("{members}/{newcomer}"), &cogm).await;
    assert_eq!(gone.status, 204);
    assert_eq!(gone.body, Value::Null);
    w.get(&format!("/campaigns/{}", t.campaign), &newcomer)
        .await
        .error(403, "forbidden");
}

/// Removing a member drops their live subscriptions: the connection gets
/// `session:unsubscribed`, the others `presence left`, and the registry forgets it.
pub async fn removing_a_member_unsubscribes_their_connections(w: &HttpWorld) {
    let t = w.seed().await;
    let (player_conn, mut player_rx) = w.live_connection(&t.people.player, &t.session).await;
    let (gm_conn, mut gm_rx) = w.live_connection(&t.people.gm, &t.session).await;
    let session = SessionId::new(t.session.as_str());
    assert!(
        w.deps
            .registry
            .is_subscribed(&player_conn, &session)
            .await
            .unwrap()
    );

    let resp = w
        .delete(
            &format!("/campaigns/{}/members/{}", t.campaign, t.people.player),
            &t.people.gm,
        )
        .await;
    assert_eq!(resp.status, 204, "{}", resp.body);

    let frame = next_frame(&mut player_rx).await;
    assert_eq!(
        frame,
        json!({"event": "session:unsubscribed", "data": {"sessionId": t.session}})
    );
    assert!(
        !w.deps
            .registry
            .is_subscribed(&player_conn, &session)
            .await
            .unwrap()
    );
    assert!(
        w.deps
            .registry
            .is_subscribed(&gm_conn, &session)
            .await
            .unwrap()
    );
    let presence = expect_frame(&mut gm_rx, "presence").await;
    assert_eq!(
        presence,
        json!({"sessionId": t.session, "userId": t.people.player, "status": "left"})
    );
    // Later events no longer reach the removed member.
    w.chat(&t.session, &t.people.gm, "bye").await;
    let add = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"name": "Bob"}),
        )
        .await;
    let actor = add.ok(201)["id"].clone();
    w.post(
        &format!("/sessions/{}/actors", t.session),
        &t.people.gm,
        json!({"actorId": actor}),
    )
    .await
    .ok(201);
    expect_frame(&mut gm_rx, "event:applied").await;
    assert!(player_rx.try_recv().is_err(), "no frame after removal");
}

/// Compendium search (paged, filtered, with attribution) and lookup.
pub async fn compendium_is_searched_and_read(w: &HttpWorld) {
    let user = w.user("reader");
    let mut entries = vec![goblin_template()];
    for i in 0..5 {
        entries.push(entry(
            &format!("dnd5e:spells:spell-{i}"),
            &format!("Spell {i}"),
        ));
    }
    entries.push(entry("pf2e:monsters:goblin-warrior", "Goblin Warrior"));
    w.deps.campaigns.put_compendium(&entries).await.unwrap();

    let all = w.get("/compendium", &user).await;
    let body = all.ok(200);
    assert_eq!(body["attribution"], ATTRIBUTION);
    assert_eq!(body["items"].as_array().unwrap().len(), 7);
    assert_eq!(body["nextCursor"], Value::Null);
    assert_eq!(body["items"][0]["ref"], "dnd5e:monsters:goblin");

    let goblins = w.get("/compendium?q=GOBLIN", &user).await;
    assert_eq!(goblins.ok(200)["items"].as_array().unwrap().len(), 2);
    let dnd_goblins = w
        .get("/compendium?q=goblin&system=dnd5e&type=monsters", &user)
        .await;
    assert_eq!(
        dnd_goblins.ok(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ref"].clone())
            .collect::<Vec<_>>(),
        vec![json!("dnd5e:monsters:goblin")]
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/compendium?type=spells&limit=2&cursor={c}"),
            None => "/compendium?type=spells&limit=2".to_owned(),
        };
        let page = w.get(&path, &user).await;
        let body = page.ok(200).clone();
        assert!(body["items"].as_array().unwrap().len() <= 2);
        assert_eq!(body["attribution"], ATTRIBUTION);
        seen.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["ref"].clone()),
        );
        match body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);

    for bad in ["0", "101", "abc", "-1", "2.5"] {
        let msg = w
            .get(&format!("/compendium?limit={bad}"), &user)
            .await
            .error(400, "invalid_message");
        assert!(msg.contains("limit"), "{msg}");
    }
    w.get("/compendium?limit=100", &user).await.ok(200);
    w.get("/compendium?limit=1", &user).await.ok(200);

    let goblin = w.get("/compendium/dnd5e:monsters:goblin", &user).await;
    assert_eq!(goblin.ok(200)["name"], "Goblin");
    assert_eq!(goblin.body["data"]["attributes"]["ac"], 15);
    let missing = w
        .get("/compendium/dnd5e:monsters:beholder", &user)
        .await
        .error(404, "not_found");
    assert_eq!(
        missing,
        "Compendium entry not found: dnd5e:monsters:beholder"
    );
    w.get("/compendium/not-a-ref", &user)
        .await
        .error(400, "invalid_message");
}

/// `POST /compendium/batch`: administrators only, every entry checked before any is written,
/// at most 1 MiB (while the other routes keep their own limit) and 1000 entries.
pub async fn compendium_batch_is_for_admins(w: &HttpWorld) {
    let admin = w.user("admin");
    let other = w.user("gm");
    let w = &w.with_admins(&[&admin]);
    let slug = uuid::Uuid::new_v4().simple().to_string();
    let spell = |name: &str| {
        json!({"ref": format!("batch:spells:{name}-{slug}"), "system": "batch",
               "category": "spells", "name": name, "data": {"level": 1}})
    };
    let path = |name: &str| format!("/compendium/batch:spells:{name}-{slug}");

    let ok = w
        .post(
            "/compendium/batch",
            &admin,
            json!({"entries": [spell("a"), spell("b")]}),
        )
        .await;
    assert_eq!(ok.ok(200), &json!({"written": 2}));
    assert_eq!(w.get(&path("a"), &other).await.ok(200)["name"], "a");
    let again = w
        .post(
            "/compendium/batch",
            &admin,
            json!({"entries": [spell("a")]}),
        )
        .await;
    assert_eq!(again.ok(200), &json!({"written": 1}), "a re-put replaces");
    let empty = w
        .post("/compendium/batch", &admin, json!({"entries": []}))
        .await;
    assert_eq!(empty.ok(200), &json!({"written": 0}));

    w.post(
        "/compendium/batch",
        &other,
        json!({"entries": [spell("c")]}),
    )
    .await
    .error(403, "forbidden");
    w.raw(
        "POST",
        "/compendium/batch",
        None,
        Some(&json!({"entries": [spell("c")]}).to_string()),
    )
    .await
    .error(401, "unauthorized");
    w.get(&path("c"), &other).await.error(404, "not_found");

    let mut bad_ref = spell("d");
    bad_ref["ref"] = json!("Not A Ref");
    let mut other_system = spell("d");
    other_system["system"] = json!("dnd5e");
    let mut other_category = spell("d");
    other_category["category"] = json!("monsters");
    let mut blank = spell("d");
    blank["name"] = json!("  ");
    let mut long = spell("d");
    long["name"] = json!("x".repeat(201));
    let mut array_data = spell("d");
    array_data["data"] = json!([1]);
    let mut no_data = spell("d");
    no_data.as_object_mut().unwrap().remove("data");
    let mut number_name = spell("d");
    number_name["name"] = json!(5);
    let mut extra = spell("d");
    extra["colour"] = json!("red");
    for (entry, field) in [
        (bad_ref, "entries[1].ref"),
        (other_system, "entries[1].system"),
        (other_category, "entries[1].category"),
        (blank, "entries[1].name"),
        (long, "entries[1].name"),
        (array_data, "entries[1].data"),
        (no_data, "entries[1].data"),
        (number_name, "entries[1].name"),
        (extra, "entries[1].colour"),
        (json!("spell"), "entries[1]"),
    ] {
        let msg = w
            .post(
                "/compendium/batch",
                &admin,
                json!({"entries": [spell("e"), entry]}),
            )
            .await
            .error(400, "invalid_message");
        assert!(msg.starts_with(field), "{field}: {msg}");
    }
    w.get(&path("e"), &other).await.error(404, "not_found");
    for body in [
        json!({}),
        json!({"entries": {}}),
        json!({"entries": [], "x": 1}),
    ] {
        w.post("/compendium/batch", &admin, body)
            .await
            .error(400, "invalid_message");
    }
    let too_many: Vec<Value> = (0..1001).map(|i| spell(&format!("n{i}"))).collect();
    let msg = w
        .post("/compendium/batch", &admin, json!({"entries": too_many}))
        .await
        .error(400, "invalid_message");
    assert!(msg.contains("1000"), "{msg}");
    w.get(&path("n0"), &other).await.error(404, "not_found");

    // 900 KB fits the batch route (1 MiB) though it is over the other routes' 256 KiB.
    let mut big = spell("big");
    big["data"]["text"] = json!("x".repeat(900_000));
    let answer = w
        .post("/compendium/batch", &admin, json!({"entries": [big]}))
        .await;
    assert_eq!(answer.ok(200), &json!({"written": 1}));
    let mut huge = spell("huge");
    huge["data"]["text"] = json!("x".repeat(1_048_576));
    w.post("/compendium/batch", &admin, json!({"entries": [huge]}))
        .await
        .error(413, "payload_too_large");
    w.get(&path("huge"), &other).await.error(404, "not_found");
    w.post(
        "/campaigns",
        &admin,
        json!({"name": "x", "pad": "x".repeat(300_000)}),
    )
    .await
    .error(413, "payload_too_large");
}

/// `cr`, `crMin`, `crMax` and `level` filter `GET /compendium`; bad values name the parameter,
/// and a filtered search's cursor is refused by a search with other filters.
pub async fn compendium_filters_are_checked(w: &HttpWorld) {
    let user = w.user("reader");
    let system = format!("f{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let monster = |slug: &str, cr: f64| CompendiumEntry {
        reference: format!("{system}:monsters:{slug}"),
        system: system.clone(),
        category: "monsters".into(),
        name: slug.into(),
        data: json!({"attributes": {"challengeRating": cr}}),
    };
    let spell = |slug: &str, level: i64| CompendiumEntry {
        reference: format!("{system}:spells:{slug}"),
        system: system.clone(),
        category: "spells".into(),
        name: slug.into(),
        data: json!({"level": level}),
    };
    w.deps
        .campaigns
        .put_compendium(&[
            monster("rat", 0.0),
            monster("kobold", 0.125),
            monster("goblin", 0.25),
            monster("gnoll", 0.5),
            monster("ogre", 2.0),
            monster("tarrasque", 30.0),
            spell("light", 0),
            spell("fireball", 3),
            spell("fly", 3),
            spell("wish", 9),
        ])
        .await
        .unwrap();
    let slugs = |query: &str| {
        let path = format!("/compendium?system={system}&limit=100&{query}");
        let user = &user;
        async move {
            w.get(&path, user).await.ok(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(slugs("cr=1/4").await, ["goblin"]);
    assert_eq!(slugs("cr=0.25").await, ["goblin"]);
    assert_eq!(slugs("cr=0").await, ["rat"]);
    assert_eq!(slugs("cr=30").await, ["tarrasque"]);
    assert_eq!(slugs("crMax=1/4").await, ["goblin", "kobold", "rat"]);
    assert_eq!(slugs("crMin=1/2&crMax=2").await, ["gnoll", "ogre"]);
    assert_eq!(slugs("crMin=1/8&crMax=1/8").await, ["kobold"]);
    assert_eq!(slugs("crMin=2.5").await, ["tarrasque"]);
    assert_eq!(slugs("level=3").await, ["fireball", "fly"]);
    assert_eq!(slugs("level=0").await, ["light"]);
    assert_eq!(slugs("level=9&type=spells").await, ["wish"]);
    assert!(slugs("level=5").await.is_empty());
    assert_eq!(
        slugs("cr=&level=").await.len(),
        10,
        "blank values filter nothing"
    );

    for (query, name) in [
        ("cr=abc", "cr"),
        ("cr=31", "cr"),
        ("cr=-1", "cr"),
        ("cr=1/3", "cr"),
        ("cr=NaN", "cr"),
        ("cr=inf", "cr"),
        ("crMin=x", "crMin"),
        ("crMin=30.5", "crMin"),
        ("crMax=1e1", "crMax"),
        ("crMax=1/0", "crMax"),
        ("level=10", "level"),
        ("level=-1", "level"),
        ("level=1.5", "level"),
        ("level=three", "level"),
        ("cr=1&crMin=1", "cr"),
        ("cr=1&crMax=2", "cr"),
        ("crMin=2&crMax=1", "crMin"),
    ] {
        let msg = w
            .get(&format!("/compendium?{query}"), &user)
            .await
            .error(400, "invalid_message");
        assert!(msg.starts_with(name), "{query}: {msg}");
    }

    let first = w
        .get(
            &format!("/compendium?system={system}&crMax=1&limit=1"),
            &user,
        )
        .await;
    let cursor = first.ok(200)["nextCursor"].as_str().unwrap().to_owned();
    let next = w
        .get(
            &format!("/compendium?system={system}&crMax=1&limit=1&cursor={cursor}"),
            &user,
        )
        .await;
    assert_eq!(first.body["items"][0]["name"], "gnoll");
    assert_eq!(next.ok(200)["items"][0]["name"], "goblin");
    for other in ["crMax=2", "", "level=3", "cr=1"] {
        let msg = w
            .get(
                &format!("/compendium?system={system}&{other}&limit=1&cursor={cursor}"),
                &user,
            )
            .await
            .error(400, "invalid_message");
        assert!(msg.starts_with("cursor"), "{other}: {msg}");
    }
    let plain = w
        .get(&format!("/compendium?system={system}&limit=1"), &user)
        .await;
    let plain_cursor = plain.ok(200)["nextCursor"].as_str().unwrap().to_owned();
    w.get(
        &format!("/compendium?system={system}&limit=1&cursor={plain_cursor}"),
        &user,
    )
    .await
    .ok(200);
    w.get(
        &format!("/compendium?system={system}&level=3&limit=1&cursor={plain_cursor}"),
        &user,
    )
    .await
    .error(400, "invalid_message");
}

/// Campaign actors: from a template (a full copy), custom, read, patched and deleted under the
/// GM-or-creator rule.
pub async fn actors_are_created_patched_and_deleted(w: &HttpWorld) {
    let t = w.seed().await;
    let actors = format!("/campaigns/{}/actors", t.campaign);

    let goblin = w
        .post(
            &actors,
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin", "name": "Goblin Scout",
                   "customizations": {"attributes": {"hp": {"max": 12}}}}),
        )
        .await;
    let goblin = goblin.ok(201).clone();
    assert_eq!(goblin["name"], "Goblin Scout");
    assert_eq!(goblin["type"], "monster");
    assert_eq!(goblin["compendiumRef"], "dnd5e:monsters:goblin");
    assert_eq!(goblin["campaignId"], json!(t.campaign));
    assert_eq!(goblin["createdBy"], json!(t.people.gm));
    assert_eq!(goblin["attributes"]["hp"], json!({"value": 7, "max": 12}));
    assert_eq!(goblin["attributes"]["abilities"]["dex"], 14);
    assert_eq!(goblin["equipment"].as_array().unwrap().len(), 2);

    let missing = w
        .post(
            &actors,
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:beholder"}),
        )
        .await
        .error(404, "not_found");
    assert_eq!(
        missing,
        "Compendium entry not found: dnd5e:monsters:beholder"
    );
    w.post(&actors, &t.people.gm, json!({"compendiumRef": "Not A Ref"}))
        .await
        .error(400, "invalid_message");
    let typed = w
        .post(&actors, &t.people.gm, json!({"compendiumRef": 5}))
        .await
        .error(400, "invalid_message");
    assert!(typed.contains("compendiumRef: invalid type"), "{typed}");
    let mixed = w
        .post(
            &actors,
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin", "attributes": {}}),
        )
        .await
        .error(400, "invalid_message");
    assert!(mixed.contains("attributes"), "{mixed}");

    let mine = w
        .post(
            &actors,
            &t.people.player,
            json!({"name": "Aria", "type": "character",
                   "attributes": {"hp": {"value": 12, "max": 12}}}),
        )
        .await;
    let mine = mine.ok(201).clone();
    assert_eq!(mine["attributes"]["ac"], 10);
    assert!(mine.get("compendiumRef").is_none());
    let wrong = w
        .post(
            &actors,
            &t.people.player,
            json!({"attributes": {"ac": "x"}}),
        )
        .await
        .error(400, "invalid_message");
    assert!(wrong.contains("attributes.ac"), "{wrong}");
    w.post(&actors, &t.people.player, json!({"id": "mine"}))
        .await
        .error(400, "invalid_message");
    w.post(&actors, &t.people.stranger, json!({"name": "Sneaky"}))
        .await
        .error(403, "forbidden");
    w.post(
        "/campaigns/nope/actors",
        &t.people.gm,
        json!({"name": "Lost"}),
    )
    .await
    .error(404, "not_found");

    let list = w.get(&actors, &t.people.player).await;
    let names: Vec<&str> = list.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Aria", "Goblin Scout"]);
    assert_eq!(list.body["nextCursor"], Value::Null);
    w.get(&actors, &t.people.stranger)
        .await
        .error(403, "forbidden");

    let goblin_path = format!("{actors}/{}", goblin["id"].as_str().unwrap());
    let mine_path = format!("{actors}/{}", mine["id"].as_str().unwrap());
    assert_eq!(w.get(&goblin_path, &t.people.player).await.ok(200), &goblin);
    w.get(&format!("{actors}/nope"), &t.people.gm)
        .await
        .error(404, "not_found");
    w.get(&goblin_path, &t.people.stranger)
        .await
        .error(403, "forbidden");

    // Players may not edit the GM's goblin; the GM may edit anything; creators their own.
    w.patch(&goblin_path, &t.people.player, json!({"name": "Mine now"}))
        .await
        .error(403, "forbidden");
    let patched = w
        .patch(
            &mine_path,
            &t.people.player,
            json!({"attributes": {"hp": {"value": 5}}}),
        )
        .await;
    assert_eq!(
        patched.ok(200)["attributes"]["hp"],
        json!({"value": 5, "max": 12})
    );
    w.patch(&mine_path, &t.people.gm, json!({"name": "Aria the Bold"}))
        .await
        .ok(200);
    let protected = w
        .patch(&mine_path, &t.people.gm, json!({"campaignId": "elsewhere"}))
        .await
        .error(400, "invalid_message");
    assert!(protected.contains("campaignId"), "{protected}");
    let mut fetched = w.get(&mine_path, &t.people.gm).await.body;
    fetched["name"] = json!("Round Trip");
    assert_eq!(
        w.patch(&mine_path, &t.people.gm, fetched).await.ok(200)["name"],
        "Round Trip"
    );
    w.patch(
        &mine_path,
        &t.people.gm,
        json!({"attributes": {"ac": "high"}}),
    )
    .await
    .error(400, "invalid_message");
    w.patch(
        &format!("{actors}/nope"),
        &t.people.gm,
        json!({"name": "x"}),
    )
    .await
    .error(404, "not_found");

    w.delete(&goblin_path, &t.people.player)
        .await
        .error(403, "forbidden");
    assert_eq!(w.delete(&mine_path, &t.people.player).await.status, 204);
    w.get(&mine_path, &t.people.gm)
        .await
        .error(404, "not_found");
    assert_eq!(w.delete(&goblin_path, &t.people.gm).await.status, 204);
    w.delete(&goblin_path, &t.people.gm)
        .await
        .error(404, "not_found");
}

/// Sessions: GM creates (with hot state), members list and read; 404 and 403 otherwise.
pub async fn sessions_are_created_and_read(w: &HttpWorld) {
    let t = w.seed().await;
    let sessions = format!("/campaigns/{}/sessions", t.campaign);
    w.post(&sessions, &t.people.player, json!({"name": "Mine"}))
        .await
        .error(403, "forbidden");
    w.post(&sessions, &t.people.gm, json!({"name": 7}))
        .await
        .error(400, "invalid_message");
    let second = w
        .post(&sessions, &t.people.gm, json!({"name": "Session 2"}))
        .await;
    let second = second.ok(201).clone();
    assert_eq!(second["status"], "active");
    assert_eq!(second["campaignId"], json!(t.campaign));
    assert_eq!(second["createdBy"], json!(t.people.gm));
    let id = SessionId::new(second["id"].as_str().unwrap());
    assert_eq!(w.deps.log.head(&id).await.unwrap(), Sequence::ZERO);

    let list = w.get(&sessions, &t.people.player).await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 2);
    assert_eq!(list.body["nextCursor"], Value::Null);
    w.get(&sessions, &t.people.stranger)
        .await
        .error(403, "forbidden");

    let state = w
        .get(&format!("/sessions/{}", t.session), &t.people.player)
        .await;
    let state = state.ok(200);
    assert_eq!(state["sessionId"], json!(t.session));
    assert_eq!(state["campaignId"], json!(t.campaign));
    assert_eq!(state["lastEventSequence"], 0);
    assert_eq!(state["activeActors"], json!({}));
    assert_eq!(state["encounter"]["round"], 0);
    assert_eq!(state["environment"]["lighting"], "bright");
    let msg = w
        .get("/sessions/no-such-session", &t.people.gm)
        .await
        .error(404, "session_not_found");
    assert!(msg.contains("no-such-session"), "{msg}");
    w.get(&format!("/sessions/{}", t.session), &t.people.stranger)
        .await
        .error(403, "forbidden");
}

/// Adding an actor commits `core:session:actor_added` and broadcasts it; the session holds the
/// actor's base values; later edits of the campaign actor do not reach it (invariant 7);
/// removing commits `actor_removed`.
pub async fn adding_an_actor_commits_broadcasts_and_copies(w: &HttpWorld) {
    let t = w.seed().await;
    w.chat(&t.session, &t.people.gm, "welcome").await;
    let (_conn, mut rx) = w.live_connection(&t.people.player, &t.session).await;
    let actor = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin"}),
        )
        .await
        .ok(201)
        .clone();
    let actor_id = actor["id"].as_str().unwrap();

    let added = w
        .post(
            &format!("/sessions/{}/actors", t.session),
            &t.people.gm,
            json!({"actorId": actor_id}),
        )
        .await;
    let added = added.ok(201).clone();
    let instance = added["instanceId"].as_str().unwrap().to_owned();
    assert!(instance.starts_with("goblin-"), "{instance}");
    assert_eq!(instance.len(), "goblin-".len() + 4);
    assert!(dlab_core::changes::parse_instance(&instance).is_ok());
    let event = &added["event"];
    assert_eq!(event["sequence"], 2);
    assert_eq!(event["type"], "core:session:actor_added");
    assert_eq!(event["userId"], json!(t.people.gm));
    assert_eq!(event["sessionId"], json!(t.session));
    assert!(uuid::Uuid::parse_str(event["id"].as_str().unwrap()).is_ok());
    assert_eq!(
        event["payload"],
        json!({"instanceId": instance, "actorId": actor_id, "actor": actor})
    );

    let applied = expect_frame(&mut rx, "event:applied").await;
    assert_eq!(&applied, event);
    assert_eq!(applied["payload"]["actor"], actor);
    let archived = w
        .deps
        .archive
        .read(&SessionId::new(t.session.as_str()), Sequence(1), None, 10)
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(&archived[0]).unwrap(), *event);

    let state = w
        .get(&format!("/sessions/{}", t.session), &t.people.player)
        .await;
    let state = state.ok(200).clone();
    assert_eq!(state["lastEventSequence"], 2);
    let active = &state["activeActors"][&instance];
    assert_eq!(active["actorId"], json!(actor_id));
    assert_eq!(active["addedBy"], json!(t.people.gm));
    assert_eq!(active["actor"], actor);
    assert_eq!(active["overrides"], json!({}));

    let runtime_path = format!("/sessions/{}/actors/{instance}", t.session);
    let runtime = w.get(&runtime_path, &t.people.player).await;
    let runtime = runtime.ok(200).clone();
    assert_eq!(runtime["instanceId"], json!(instance));
    assert_eq!(runtime["attributes"]["hp"]["value"], 7);
    assert_eq!(runtime["name"], "Goblin");
    w.get(
        &format!("/sessions/{}/actors/nobody", t.session),
        &t.people.gm,
    )
    .await
    .error(404, "not_found");
    w.get(&runtime_path, &t.people.stranger)
        .await
        .error(403, "forbidden");

    // Invariant 7: editing the campaign actor leaves the running session alone.
    w.patch(
        &format!("/campaigns/{}/actors/{actor_id}", t.campaign),
        &t.people.gm,
        json!({"name": "Renamed Goblin", "attributes": {"hp": {"value": 99, "max": 99}}}),
    )
    .await
    .ok(200);
    let after = w
        .get(&format!("/sessions/{}", t.session), &t.people.gm)
        .await;
    assert_eq!(after.ok(200)["activeActors"][&instance]["actor"], actor);
    assert_eq!(w.get(&runtime_path, &t.people.gm).await.ok(200), &runtime);

    // An explicit instance id, and the same one again.
    let named = w
        .post(
            &format!("/sessions/{}/actors", t.session),
            &t.people.gm,
            json!({"actorId": actor_id, "instanceId": "boss_1"}),
        )
        .await;
    assert_eq!(named.ok(201)["instanceId"], "boss_1");
    assert_eq!(
        named.body["event"]["payload"]["actor"]["name"],
        "Renamed Goblin"
    );
    expect_frame(&mut rx, "event:applied").await;
    let taken = w
        .post(
            &format!("/sessions/{}/actors", t.session),
            &t.people.gm,
            json!({"actorId": actor_id, "instanceId": "boss_1"}),
        )
        .await
        .error(409, "conflict");
    assert!(taken.contains("boss_1"), "{taken}");

    // Removal.
    w.delete(&runtime_path, &t.people.player)
        .await
        .error(403, "forbidden");
    let removed = w.delete(&runtime_path, &t.people.gm).await;
    let removed = removed.ok(200).clone();
    assert_eq!(removed["instanceId"], json!(instance));
    assert_eq!(removed["event"]["type"], "core:session:actor_removed");
    assert_eq!(removed["event"]["payload"], json!({"instanceId": instance}));
    assert_eq!(removed["event"]["sequence"], 4);
    assert_eq!(
        expect_frame(&mut rx, "event:applied").await,
        removed["event"]
    );
    w.get(&runtime_path, &t.people.gm)
        .await
        .error(404, "not_found");
    w.delete(&runtime_path, &t.people.gm)
        .await
        .error(404, "not_found");
    assert_eq!(
        w.deps
            .log
            .head(&SessionId::new(t.session.as_str()))
            .await
            .unwrap(),
        Sequence(4),
        "refused requests commit nothing"
    );
}

/// Only actors of the session's own campaign may join it; bad instance ids and players are
/// refused; an ended session takes no actors; nothing is committed by a refusal.
pub async fn session_actor_rules(w: &HttpWorld) {
    let t = w.seed().await;
    let other = w.seed().await;
    let foreign = w
        .post(
            &format!("/campaigns/{}/actors", other.campaign),
            &other.people.gm,
            json!({"name": "Foreigner"}),
        )
        .await
        .ok(201)["id"]
        .clone();
    let add = format!("/sessions/{}/actors", t.session);
    let msg = w
        .post(&add, &t.people.gm, json!({"actorId": foreign}))
        .await
        .error(404, "not_found");
    assert!(msg.contains(&t.campaign), "{msg}");
    w.post(&add, &t.people.gm, json!({"actorId": "nope"}))
        .await
        .error(404, "not_found");

    let local = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"name": "Local Hero!!"}),
        )
        .await
        .ok(201)["id"]
        .clone();
    w.post(&add, &t.people.player, json!({"actorId": local}))
        .await
        .error(403, "forbidden");
    w.post(&add, &t.people.stranger, json!({"actorId": local}))
        .await
        .error(403, "forbidden");
    w.post(
        "/sessions/nope/actors",
        &t.people.gm,
        json!({"actorId": local}),
    )
    .await
    .error(404, "session_not_found");
    for bad in ["$session", "has space", "", &"x".repeat(65)] {
        let msg = w
            .post(
                &add,
                &t.people.gm,
                json!({"actorId": local, "instanceId": bad}),
            )
            .await
            .error(400, "invalid_message");
        assert!(msg.contains("instanceId"), "{msg}");
    }
    w.post(&add, &t.people.gm, json!({"actorId": 5}))
        .await
        .error(400, "invalid_message");
    w.post(&add, &t.people.gm, json!({"actorId": local, "extra": true}))
        .await
        .error(400, "invalid_message");
    let session = SessionId::new(t.session.as_str());
    assert_eq!(w.deps.log.head(&session).await.unwrap(), Sequence::ZERO);

    let ok = w.post(&add, &t.people.gm, json!({"actorId": local})).await;
    assert!(
        ok.ok(201)["instanceId"]
            .as_str()
            .unwrap()
            .starts_with("local-hero-")
    );

    let mut doc = w.deps.campaigns.session(&session).await.unwrap().unwrap();
    doc.status = SessionStatus::Ended;
    w.deps.campaigns.update_session(&doc).await.unwrap();
    w.post(&add, &t.people.gm, json!({"actorId": local}))
        .await
        .error(409, "conflict");
}

/// An actor document larger than one event payload cannot join a session (413).
pub async fn an_actor_too_large_for_an_event_is_refused(w: &HttpWorld) {
    let t = w.seed().await;
    let features: Vec<Value> = (0..300)
        .map(|i| json!({"name": format!("Feature {i}"), "text": "x".repeat(100)}))
        .collect();
    let big = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"name": "Tarrasque", "features": features}),
        )
        .await
        .ok(201)["id"]
        .clone();
    w.post(
        &format!("/sessions/{}/actors", t.session),
        &t.people.gm,
        json!({"actorId": big}),
    )
    .await
    .error(413, "payload_too_large");
}

/// Events are paged with `after` and `limit`; `nextCursor` is the last sequence while more
/// exist.
pub async fn events_are_paged(w: &HttpWorld) {
    let t = w.seed().await;
    for i in 0..5 {
        w.chat(&t.session, &t.people.player, &format!("line {i}"))
            .await;
    }
    let base = format!("/sessions/{}/events", t.session);
    let all = w.get(&base, &t.people.player).await;
    let all = all.ok(200).clone();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["nextCursor"], Value::Null);

    let mut seqs = Vec::new();
    let mut after = "0".to_owned();
    let mut pages = 0;
    loop {
        let page = w
            .get(&format!("{base}?after={after}&limit=2"), &t.people.gm)
            .await;
        let page = page.ok(200).clone();
        pages += 1;
        seqs.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_u64().unwrap()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(pages, 3);
    let tail = w.get(&format!("{base}?after=3"), &t.people.gm).await;
    assert_eq!(tail.ok(200)["items"][0]["sequence"], 4);
    let beyond = w.get(&format!("{base}?after=99"), &t.people.gm).await;
    assert_eq!(beyond.ok(200), &json!({"items": [], "nextCursor": null}));
    for bad in ["limit=0", "limit=1001", "limit=x", "after=-1", "after=one"] {
        let msg = w
            .get(&format!("{base}?{bad}"), &t.people.gm)
            .await
            .error(400, "invalid_message");
        let name = bad.split('=').next().unwrap();
        assert!(msg.contains(name), "{msg}");
    }
    w.get(&format!("{base}?limit=1000"), &t.people.gm)
        .await
        .ok(200);
    w.get(&base, &t.people.stranger)
        .await
        .error(403, "forbidden");
    w.get("/sessions/nope/events", &t.people.gm)
        .await
        .error(404, "session_not_found");
}

/// The latest snapshot, or 404 before the first one.
pub async fn snapshot_is_served_when_there_is_one(w: &HttpWorld) {
    let t = w.seed().await;
    let path = format!("/sessions/{}/snapshot", t.session);
    let msg = w.get(&path, &t.people.player).await.error(404, "not_found");
    assert!(msg.contains("snapshot"), "{msg}");
    w.chat(&t.session, &t.people.gm, "one").await;
    let session = SessionId::new(t.session.as_str());
    let state = w.deps.log.state(&session).await.unwrap().unwrap();
    let snapshot = Snapshot::of(state, now_ms());
    w.deps.snapshots.put(&snapshot).await.unwrap();
    let got = w.get(&path, &t.people.player).await;
    assert_eq!(got.ok(200), &serde_json::to_value(&snapshot).unwrap());
    assert_eq!(got.body["upToSequence"], 1);
    w.get(&path, &t.people.stranger)
        .await
        .error(403, "forbidden");
}

/// `GET /sessions/{id}` rebuilds a missing hot state from the archive.
pub async fn session_state_is_rehydrated_when_hot_state_is_gone(w: &HttpWorld) {
    let t = w.seed().await;
    let actor = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin"}),
        )
        .await
        .ok(201)["id"]
        .clone();
    let added = w
        .post(
            &format!("/sessions/{}/actors", t.session),
            &t.people.gm,
            json!({"actorId": actor, "instanceId": "g1"}),
        )
        .await;
    added.ok(201);
    let before = w
        .get(&format!("/sessions/{}", t.session), &t.people.gm)
        .await
        .body;
    w.deps
        .log
        .release(&SessionId::new(t.session.as_str()))
        .await
        .unwrap();
    let after = w
        .get(&format!("/sessions/{}", t.session), &t.people.gm)
        .await;
    assert_eq!(after.ok(200), &before);
    assert_eq!(after.body["activeActors"]["g1"]["actor"]["name"], "Goblin");
}

/// Malformed bodies are 400 `invalid_message` naming the problem; nothing is created.
pub async fn bad_bodies_are_refused(w: &HttpWorld) {
    let gm = w.user("gm");
    let token = w.token(&gm);
    let not_json = w
        .raw("POST", "/campaigns", Some(&token), Some("{name: oops"))
        .await
        .error(400, "invalid_message");
    assert!(not_json.contains("not valid JSON"), "{not_json}");
    let empty = w
        .raw("POST", "/campaigns", Some(&token), Some(""))
        .await
        .error(400, "invalid_message");
    assert!(empty.contains("body is required"), "{empty}");
    let wrong = w
        .raw("POST", "/campaigns", Some(&token), Some(r#"{"name": 5}"#))
        .await
        .error(400, "invalid_message");
    assert_eq!(
        wrong,
        "invalid request body: name: invalid type: integer `5`, expected a string"
    );
    let unknown = w
        .raw(
            "POST",
            "/campaigns",
            Some(&token),
            Some(r#"{"name": "A", "gm": "me"}"#),
        )
        .await
        .error(400, "invalid_message");
    assert!(unknown.contains("gm"), "{unknown}");
    let array = w
        .raw("POST", "/campaigns", Some(&token), Some("[]"))
        .await
        .error(400, "invalid_message");
    assert_eq!(array, "the request body must be a JSON object");
    let missing = w
        .raw("POST", "/campaigns", Some(&token), Some("{}"))
        .await
        .error(400, "invalid_message");
    assert_eq!(missing, "invalid request body: missing field `name`");
    let trailing = w
        .raw(
            "POST",
            "/campaigns",
            Some(&token),
            Some(r#"{"name": "A"} x"#),
        )
        .await;
    trailing.error(400, "invalid_message");
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(300 * 1024));
    w.raw("POST", "/campaigns", Some(&token), Some(&huge))
        .await
        .error(413, "payload_too_large");
    assert_eq!(
        w.get("/campaigns", &gm).await.ok(200)["items"],
        json!([]),
        "nothing was created"
    );
    // Any content type is read as JSON.
    let req = Request::builder()
        .method("POST")
        .uri("/campaigns")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"name": "Plain"}"#))
        .unwrap();
    assert_eq!(w.app.clone().oneshot(req).await.unwrap().status(), 201);
}

/// Unknown routes are 404 and known routes with another method 405, both with the error body.
pub async fn unknown_routes_and_methods(w: &HttpWorld) {
    let user = w.user("u");
    w.get("/nowhere", &user).await.error(404, "not_found");
    w.raw("GET", "/sessions/x/teleport", None, None)
        .await
        .error(404, "not_found");
    w.raw("PUT", "/campaigns", Some(&w.token(&user)), Some("{}"))
        .await
        .error(405, "invalid_message");
    w.raw("DELETE", "/healthz", None, None)
        .await
        .error(405, "invalid_message");
}

/// CORS: the allowed origin gets the headers on preflight and answers; others do not.
pub async fn cors_allows_only_configured_origins(w: &HttpWorld) {
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/campaigns")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let ok = w
        .app
        .clone()
        .oneshot(preflight("https://gm.example.org"))
        .await
        .unwrap();
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://gm.example.org"
    );
    let methods = ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let evil = w
        .app
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let simple = Request::builder()
        .uri("/healthz")
        .header("origin", "https://gm.example.org")
        .body(Body::empty())
        .unwrap();
    let answer = w.app.clone().oneshot(simple).await.unwrap();
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://gm.example.org"
    );

    let (deps, _) =
        Deps::memory_with_channels(Authenticator::with_secret(SECRET), Settings::default());
    let none = dlab_service::http::router(deps.clone(), CorsConfig::None);
    let r = none
        .oneshot(preflight("https://gm.example.org"))
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let any = dlab_service::http::router(deps, CorsConfig::Any);
    let r = any
        .oneshot(preflight("https://anywhere.example"))
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

/// The OpenAPI document lists every route with its method, parameters, request bodies and the
/// bearer scheme.
pub async fn openapi_lists_every_route(w: &HttpWorld) {
    let doc = w.raw("GET", "/openapi.json", None, None).await.body;
    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            listed.insert((method.clone(), path.clone()));
            let params: BTreeSet<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            assert_eq!(params, in_path, "path parameters of {method} {path}");
            if (method == "post" || method == "patch") && !BODYLESS_POSTS.contains(&path.as_str()) {
                assert!(
                    op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} documents its body"
                );
            }
            let public = PUBLIC_ROUTES.contains(&path.as_str());
            match op.get("security") {
                Some(sec) => assert_eq!(sec, &json!([{}]), "{method} {path}"),
                None => assert!(!public, "{method} {path} must be open"),
            }
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    let mut operation_ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"]
                .as_str()
                .expect("every operation has an id");
            assert!(
                operation_ids.insert(id.to_owned()),
                "operationId {id} is repeated"
            );
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );
    let compendium = &doc["paths"]["/compendium"]["get"]["parameters"];
    let names: BTreeSet<&str> = compendium
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "q", "type", "system", "cr", "crMin", "crMax", "level", "limit", "cursor"
        ])
    );
    let events = &doc["paths"]["/sessions/{id}/events"]["get"]["parameters"];
    let names: BTreeSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["id", "after", "cursor", "limit"]));
    for path in [
        "/campaigns",
        "/campaigns/{id}/actors",
        "/campaigns/{id}/sessions",
    ] {
        let names: BTreeSet<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, BTreeSet::from(["limit", "cursor"]), "{path}");
    }
}

/// The documented schemas name exactly the fields the routes answer with.
pub async fn openapi_schemas_match_the_answers(w: &HttpWorld) {
    let t = w.seed().await;
    let doc = w.raw("GET", "/openapi.json", None, None).await.body;
    let props = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect()
    };
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let campaign = w
        .get(&format!("/campaigns/{}", t.campaign), &t.people.gm)
        .await
        .body;
    assert_eq!(keys(&campaign), props("Campaign"));
    assert_eq!(keys(&campaign["members"][0]), props("Member"));
    let actor = w
        .post(
            &format!("/campaigns/{}/actors", t.campaign),
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin"}),
        )
        .await
        .body;
    assert_eq!(keys(&actor), props("Actor"));
    let session = &w
        .get(&format!("/campaigns/{}/sessions", t.campaign), &t.people.gm)
        .await
        .body["items"][0];
    assert_eq!(keys(session), props("GameSession"));
    let added = w
        .post(
            &format!("/sessions/{}/actors", t.session),
            &t.people.gm,
            json!({"actorId": actor["id"]}),
        )
        .await
        .body;
    assert_eq!(keys(&added), props("SessionActorChange"));
    let mut event_keys = keys(&added["event"]);
    event_keys.extend(["clientTimestamp".to_owned(), "checksum".to_owned()]);
    assert_eq!(event_keys, props("GameEvent"));
    let state = w
        .get(&format!("/sessions/{}", t.session), &t.people.gm)
        .await
        .body;
    assert_eq!(keys(&state), props("GameSessionState"));
    let instance = added["instanceId"].as_str().unwrap();
    assert_eq!(keys(&state["activeActors"][instance]), props("ActiveActor"));
    let entry = w
        .get("/compendium/dnd5e:monsters:goblin", &t.people.gm)
        .await
        .body;
    assert_eq!(keys(&entry), props("CompendiumEntry"));
    let page = w.get("/compendium", &t.people.gm).await.body;
    assert_eq!(keys(&page), props("CompendiumPage"));
    let ticket = w
        .raw(
            "POST",
            "/connect-ticket",
            Some(&w.token(&t.people.gm)),
            None,
        )
        .await
        .body;
    assert_eq!(keys(&ticket), props("TicketBody"));
    let error = w.get("/campaigns/nope", &t.people.gm).await.body;
    assert_eq!(keys(&error), props("ErrorBody"));
    assert_eq!(keys(&error["error"]), props("ErrorDetail"));
}

// ---------------------------------------------------------------------------------------------
// Paging and quotas.

/// Every page of a list route from its first page, following `nextCursor` (appended as
/// `cursor=`); a page with a cursor is never empty. Returns the pages' items.
pub async fn walk_list(w: &HttpWorld, path: &str, user: &UserId) -> Vec<Vec<Value>> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..500 {
        let url = match &cursor {
            Some(c) => format!("{path}{separator}cursor={c}"),
            None => path.to_owned(),
        };
        let body = w.get(&url, user).await.ok(200).clone();
        let items = body["items"].as_array().expect("items").clone();
        match body["nextCursor"].as_str() {
            Some(next) => {
                assert!(!items.is_empty(), "{url}: an empty page with a nextCursor");
                pages.push(items);
                cursor = Some(next.to_owned());
            }
            None => {
                pages.push(items);
                return pages;
            }
        }
    }
    panic!("{path} did not end");
}

/// The bytes a page's items take in the answer (compact JSON, separators included).
fn items_bytes(items: &[Value]) -> usize {
    serde_json::to_string(items).unwrap().len() - 2
}

fn ids_of(pages: &[Vec<Value>]) -> Vec<String> {
    pages
        .concat()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Campaigns (by id), actors (by name then id) and sessions (newest first) page by `cursor`
/// and `limit`: every item once, in order, `nextCursor` null only on the last page. `limit`
/// outside 1..=1000 and cursors this list did not make are 400 naming the parameter; the
/// events route takes `cursor` as another name of `after`.
pub async fn lists_page_by_cursor_and_limit(w: &HttpWorld) {
    let t = w.seed().await;
    let gm = &t.people.gm;
    let mut campaigns = vec![t.campaign.clone()];
    for i in 0..4 {
        let c = w
            .post("/campaigns", gm, json!({"name": format!("Campaign {i}")}))
            .await;
        campaigns.push(c.ok(201)["id"].as_str().unwrap().to_owned());
    }
    campaigns.sort();
    let pages = walk_list(w, "/campaigns?limit=2", gm).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(ids_of(&pages), campaigns, "by id, each once");
    let whole = w.get("/campaigns?limit=5", gm).await;
    assert_eq!(whole.ok(200)["nextCursor"], Value::Null, "a full last page");
    assert_eq!(whole.body["items"].as_array().unwrap().len(), 5);

    let actors_path = format!("/campaigns/{}/actors", t.campaign);
    let mut actors = Vec::new();
    for name in ["Zed", "Alpha", "Mid", "Alpha", "Bob", "Alpha"] {
        let a = w.post(&actors_path, gm, json!({"name": name})).await;
        let a = a.ok(201);
        actors.push((
            a["name"].as_str().unwrap().to_owned(),
            a["id"].as_str().unwrap().to_owned(),
        ));
    }
    actors.sort();
    let pages = walk_list(w, &format!("{actors_path}?limit=2"), &t.people.player).await;
    assert_eq!(pages.len(), 3);
    assert_eq!(
        ids_of(&pages),
        actors.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
        "by name then id, ties split across pages"
    );

    let sessions_path = format!("/campaigns/{}/sessions", t.campaign);
    for i in 0..4 {
        w.post(&sessions_path, gm, json!({"name": format!("S{i}")}))
            .await
            .ok(201);
    }
    let pages = walk_list(w, &format!("{sessions_path}?limit=3"), gm).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 2]);
    let listed: Vec<(u64, String)> = pages
        .concat()
        .iter()
        .map(|s| {
            (
                s["createdAt"].as_u64().unwrap(),
                s["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut newest_first = listed.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, newest_first, "newest first, ties by id");
    assert!(listed.iter().any(|(_, id)| id == &t.session));

    let campaign_cursor = w.get("/campaigns?limit=1", gm).await.body["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/campaigns", actors_path.as_str(), sessions_path.as_str()] {
        for bad in ["0", "1001", "abc", "-1", "2.5"] {
            let msg = w
                .get(&format!("{path}?limit={bad}"), gm)
                .await
                .error(400, "invalid_message");
            assert!(msg.contains("limit"), "{path}: {msg}");
        }
        w.get(&format!("{path}?limit=1000"), gm).await.ok(200);
        for bad in ["zz", "abc", "7b7d", "%E2%82%AC", "00"] {
            let msg = w
                .get(&format!("{path}?cursor={bad}"), gm)
                .await
                .error(400, "invalid_message");
            assert!(msg.contains("cursor"), "{path}: {msg}");
        }
        let foreign = w.get(&format!("{path}?cursor={campaign_cursor}"), gm).await;
        if path == "/campaigns" {
            foreign.ok(200);
        } else {
            let msg = foreign.error(400, "invalid_message");
            assert!(msg.contains("cursor"), "{path}: {msg}");
        }
    }
    let msg = w
        .get(&format!("/compendium?cursor={campaign_cursor}"), gm)
        .await
        .error(400, "invalid_message");
    assert!(msg.contains("cursor"), "{msg}");

    for i in 0..3 {
        w.chat(&t.session, gm, &format!("line {i}")).await;
    }
    let events = format!("/sessions/{}/events", t.session);
    let by_after = w.get(&format!("{events}?after=1&limit=1"), gm).await;
    let by_cursor = w.get(&format!("{events}?cursor=1&limit=1"), gm).await;
    assert_eq!(by_after.ok(200), by_cursor.ok(200));
    assert_eq!(by_after.body["items"][0]["sequence"], 2);
    assert_eq!(by_after.body["nextCursor"], "2");
    w.get(&format!("{events}?after=1&cursor=1"), gm)
        .await
        .ok(200);
    let msg = w
        .get(&format!("{events}?after=1&cursor=2"), gm)
        .await
        .error(400, "invalid_message");
    assert!(msg.contains("cursor"), "{msg}");
    let msg = w
        .get(&format!("{events}?cursor=x"), gm)
        .await
        .error(400, "invalid_message");
    assert!(msg.contains("cursor"), "{msg}");
}

/// Walks `path` through `small` (a router with a byte budget of `budget`) and `big` (the
/// default budget): the same items in the same order, more than one page under the small
/// budget, each page within it (or a single item), and each cut tight (the next page's first
/// item would not have fitted).
async fn assert_cut_by_bytes(
    small: &HttpWorld,
    big: &HttpWorld,
    path: &str,
    user: &UserId,
    budget: usize,
) {
    let pages = walk_list(small, path, user).await;
    let whole = walk_list(big, path, user).await;
    assert_eq!(whole.len(), 1, "{path}: one page under the default budget");
    assert_eq!(
        pages.concat(),
        whole.concat(),
        "{path}: same items, same order"
    );
    assert!(pages.len() > 1, "{path}: the budget cut the list");
    for (i, page) in pages.iter().enumerate() {
        assert!(
            page.len() == 1 || items_bytes(page) <= budget,
            "{path}: page {i} is {} bytes, over {budget}",
            items_bytes(page)
        );
        if let Some(next) = pages.get(i + 1) {
            assert!(
                items_bytes(page) + 1 + items_bytes(&next[..1]) > budget,
                "{path}: page {i} was cut although the next item fitted"
            );
        }
    }
}

/// Every list route stops a page before the item that would pass the byte budget
/// (`DLAB_MAX_LIST_BYTES`), whatever `limit` allows, and still pages through everything.
pub async fn lists_are_cut_by_the_byte_budget(w: &HttpWorld) {
    const BUDGET: usize = 2500;
    let small = w.with_settings(|s| s.max_list_bytes = BUDGET);
    let t = w.seed().await;
    let gm = &t.people.gm;
    for i in 0..9 {
        w.post(
            "/campaigns",
            gm,
            json!({"name": format!("{i} {}", "c".repeat(190))}),
        )
        .await
        .ok(201);
        w.post(
            &format!("/campaigns/{}/sessions", t.campaign),
            gm,
            json!({"name": format!("{i} {}", "s".repeat(190))}),
        )
        .await
        .ok(201);
        w.post(
            &format!("/campaigns/{}/actors", t.campaign),
            gm,
            json!({"name": format!("Actor {i}"), "attributes": {"lore": "a".repeat(300 * i)}}),
        )
        .await
        .ok(201);
        w.chat(&t.session, gm, &"e".repeat(400)).await;
    }
    let system = format!("bytes{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let entries: Vec<CompendiumEntry> = (0..9)
        .map(|i| CompendiumEntry {
            reference: format!("{system}:items:item-{i}"),
            system: system.clone(),
            category: "items".into(),
            name: format!("Item {i}"),
            data: json!({"blob": "b".repeat(500)}),
        })
        .collect();
    w.deps.campaigns.put_compendium(&entries).await.unwrap();
    for path in [
        "/campaigns".to_owned(),
        format!("/campaigns/{}/actors", t.campaign),
        format!("/campaigns/{}/sessions", t.campaign),
        format!("/compendium?system={system}"),
        format!("/sessions/{}/events", t.session),
    ] {
        assert_cut_by_bytes(&small, w, &path, gm, BUDGET).await;
    }
    // The events route's `nextCursor` is still the last sequence of the page.
    let first = small
        .get(&format!("/sessions/{}/events", t.session), gm)
        .await;
    let first = first.ok(200);
    let last = first["items"].as_array().unwrap().last().unwrap()["sequence"].clone();
    assert_eq!(first["nextCursor"], json!(last.to_string()));
}

/// Under the default 1 MiB budget, five actors of about 250 KiB are answered four and one: no
/// answer comes near Lambda's 6 MB.
pub async fn the_default_budget_is_one_mebibyte(w: &HttpWorld) {
    let t = w.seed().await;
    let path = format!("/campaigns/{}/actors", t.campaign);
    for i in 0..5 {
        w.post(
            &path,
            &t.people.gm,
            json!({"name": format!("Tome {i}"), "attributes": {"lore": "t".repeat(250_000)}}),
        )
        .await
        .ok(201);
    }
    let first = w.get(&path, &t.people.gm).await;
    let body = first.ok(200);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items_bytes(items) <= 1024 * 1024);
    assert!(body["nextCursor"].is_string());
    let pages = walk_list(w, &path, &t.people.gm).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
}

/// Per-campaign quotas: the count quotas refuse with 409 `conflict` naming the quota, its limit
/// and its variable, hold when many creates race for the last slot, and give a slot back on
/// delete; an actor over the size quota (created, or grown by PATCH) is 413
/// `payload_too_large`; refusals change nothing, and other campaigns are not affected.
pub async fn quotas_are_enforced_per_campaign(w: &HttpWorld) {
    let q = w.with_settings(|s| {
        s.quotas = CampaignQuotas {
            max_actors: 3,
            max_actor_bytes: 4096,
            max_sessions: 2,
        }
    });
    let t = q.seed().await;
    let gm = &t.people.gm;
    let actors = format!("/campaigns/{}/actors", t.campaign);
    let mut ids = Vec::new();
    for name in ["One", "Two"] {
        let a = q
            .post(&actors, &t.people.player, json!({"name": name}))
            .await;
        ids.push(a.ok(201)["id"].as_str().unwrap().to_owned());
    }
    let racers = (0..8).map(|i| q.post(&actors, gm, json!({"name": format!("Racer {i}")})));
    let answers = futures::future::join_all(racers).await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 201).count(),
        1,
        "exactly one racer gets the last slot"
    );
    let quota_message = format!(
        "campaign {} has reached its quota of 3 actors (DLAB_MAX_ACTORS_PER_CAMPAIGN)",
        t.campaign
    );
    for a in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(a.error(409, "conflict"), quota_message);
    }
    assert_eq!(count_items(&q, &actors, gm).await, 3);
    let refused = q.post(&actors, gm, json!({"name": "Four"})).await;
    assert_eq!(refused.error(409, "conflict"), quota_message);

    let gone = q.delete(&format!("{actors}/{}", ids[0]), gm).await;
    assert_eq!(gone.status, 204);
    let big = json!({"name": "Big", "attributes": {"lore": "x".repeat(5000)}});
    let msg = q
        .post(&actors, gm, big.clone())
        .await
        .error(413, "payload_too_large");
    assert!(
        msg.contains("4096") && msg.contains("DLAB_MAX_ACTOR_BYTES"),
        "{msg}"
    );
    assert_eq!(
        count_items(&q, &actors, gm).await,
        2,
        "a refused create stores nothing"
    );
    let before = q.get(&format!("{actors}/{}", ids[1]), gm).await.body;
    let msg = q
        .patch(
            &format!("{actors}/{}", ids[1]),
            gm,
            json!({"attributes": {"lore": "x".repeat(5000)}}),
        )
        .await
        .error(413, "payload_too_large");
    assert!(msg.contains("DLAB_MAX_ACTOR_BYTES"), "{msg}");
    assert_eq!(
        q.get(&format!("{actors}/{}", ids[1]), gm).await.body,
        before,
        "a refused patch changes nothing"
    );
    q.post(&actors, gm, json!({"name": "Back"})).await.ok(201);
    q.post(&actors, gm, json!({"name": "Over"}))
        .await
        .error(409, "conflict");
    // The default quotas let the same campaign grow; another campaign has its own count.
    w.post(&actors, gm, json!({"name": "Default quotas"}))
        .await
        .ok(201);
    let other = q.seed().await;
    q.post(
        &format!("/campaigns/{}/actors", other.campaign),
        &other.people.gm,
        json!({"name": "Elsewhere"}),
    )
    .await
    .ok(201);

    let sessions = format!("/campaigns/{}/sessions", t.campaign);
    let racers = (0..6).map(|i| q.post(&sessions, gm, json!({"name": format!("S{i}")})));
    let answers = futures::future::join_all(racers).await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 201).count(),
        1,
        "the seeded session plus exactly one racer"
    );
    let session_message = format!(
        "campaign {} has reached its quota of 2 sessions (DLAB_MAX_SESSIONS_PER_CAMPAIGN)",
        t.campaign
    );
    for a in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(a.error(409, "conflict"), session_message);
    }
    assert_eq!(
        q.get(&sessions, gm).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn count_items(w: &HttpWorld, path: &str, user: &UserId) -> usize {
    w.get(path, user).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len()
}

/// Commits `count` chat events straight to the hot log (nothing archived).
async fn commit_unarchived(
    w: &HttpWorld,
    session: &SessionId,
    user: &UserId,
    count: usize,
) -> Vec<GameEvent> {
    let mut committed = Vec::new();
    for i in 0..count {
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: user.clone(),
            session_id: session.clone(),
            event_type: "core:chat".into(),
            payload: json!({"text": format!("unarchived {i}")}),
            checksum: None,
        };
        let changes = dlab_core::changes::parse_changes(&event.event_type, &event.payload).unwrap();
        let done = w
            .deps
            .log
            .commit(CommitRequest { event, changes })
            .await
            .unwrap();
        committed.push(done.event.unwrap());
    }
    committed
}

/// `GET /sessions/{id}/events` never answers `nextCursor: null` while events after the page
/// remain: over a hole (events trimmed from the hot log and missing from the archive) it pages
/// up to the hole and then answers 503 `unavailable`, never an empty "complete" page.
pub async fn events_never_end_early_over_a_hole(w: &HttpWorld) {
    let t = w.seed().await;
    let session = SessionId::new(t.session.as_str());
    let committed = commit_unarchived(w, &session, &t.people.gm, 5).await;
    for event in &committed[..2] {
        w.deps.archive.insert(event).await.unwrap();
    }
    w.deps.log.trim_below(&session, Sequence(4)).await.unwrap();
    let path = format!("/sessions/{}/events", t.session);
    // Up to the hole, a page may be served (its cursor then points at the hole), or the
    // whole range refused; never a page that claims to be complete.
    let first = w.get(&path, &t.people.gm).await;
    if first.status == 503 {
        first.error(503, "unavailable");
    } else {
        let first = first.ok(200);
        assert_eq!(
            first["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(first["nextCursor"], "2", "more events exist after 2");
    }
    w.get(&format!("{path}?after=2"), &t.people.gm)
        .await
        .error(503, "unavailable");
    let rest = w.get(&format!("{path}?after=3"), &t.people.gm).await;
    assert_eq!(rest.ok(200)["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest.body["nextCursor"], Value::Null);

    // A page read in several chunks stops at the hole with a cursor: 1..=100 archived, 101..=139
    // lost, 140.. hot.
    let long = w.seed().await;
    let session = SessionId::new(long.session.as_str());
    let committed = commit_unarchived(w, &session, &long.people.gm, 150).await;
    for event in &committed[..100] {
        w.deps.archive.insert(event).await.unwrap();
    }
    w.deps
        .log
        .trim_below(&session, Sequence(140))
        .await
        .unwrap();
    let page = w
        .get(
            &format!("/sessions/{}/events?limit=1000", long.session),
            &long.people.gm,
        )
        .await;
    let page = page.ok(200);
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert_eq!(page["nextCursor"], "100");
}
