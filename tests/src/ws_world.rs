//! A seeded table and clients that drive the WebSocket handlers exactly as API Gateway does:
//! each client action becomes an API Gateway event (from the JSON fixtures in
//! `tests/fixtures/apigw/`) handed to [`WsLambda::handle`], and each answer is read from what the
//! notifier posted to the client's connection.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use dlab_core::changes::ACTOR_ADDED;
use dlab_core::ids::{CampaignId, ConnectionId, SessionId, UserId};
use dlab_service::Deps;
use dlab_service::lambda::WsLambda;
use dlab_store::CommitRequest;
use dlab_store::memory::MemoryNotifier;
use dlab_store::model::{Campaign, GameSession, Member, MemberRole, SessionStatus, now_ms};
use serde_json::{Value, json};

/// The secret the test authenticator signs with.
pub const SECRET: &str = "ws-test-secret-of-32-bytes-do-not-use";

/// An API Gateway `$connect` event.
pub fn connect_event(
    connection: &ConnectionId,
    token: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    let mut v: Value =
        serde_json::from_str(include_str!("../fixtures/apigw/connect.json")).unwrap();
    v["requestContext"]["connectionId"] = json!(connection);
    match token {
        Some(t) => {
            v["queryStringParameters"]["token"] = json!(t);
            v["multiValueQueryStringParameters"]["token"] = json!([t]);
        }
        None => {
            v.as_object_mut().unwrap().remove("queryStringParameters");
            v.as_object_mut()
                .unwrap()
                .remove("multiValueQueryStringParameters");
        }
    }
    serde_json::from_value(v).expect("connect fixture parses")
}

/// An API Gateway `MESSAGE` event with `body`.
pub fn message_event(connection: &ConnectionId, body: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut v: Value =
        serde_json::from_str(include_str!("../fixtures/apigw/message.json")).unwrap();
    v["requestContext"]["connectionId"] = json!(connection);
    v["body"] = json!(body);
    serde_json::from_value(v).expect("message fixture parses")
}

/// An API Gateway `$disconnect` event.
pub fn disconnect_event(connection: &ConnectionId) -> ApiGatewayWebsocketProxyRequest {
    let mut v: Value =
        serde_json::from_str(include_str!("../fixtures/apigw/disconnect.json")).unwrap();
    v["requestContext"]["connectionId"] = json!(connection);
    serde_json::from_value(v).expect("disconnect fixture parses")
}

/// The receiving side of a connection.
#[async_trait]
pub trait Link: Send {
    /// The next frame posted to the connection, within `wait`.
    async fn next_frame(&mut self, wait: Duration) -> Option<Value>;
}

struct ClosedLink;

#[async_trait]
impl Link for ClosedLink {
    async fn next_frame(&mut self, _wait: Duration) -> Option<Value> {
        None
    }
}

/// Opens connections whose posts can be read.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A new connection id and its receiving side.
    async fn open(&self) -> (ConnectionId, Box<dyn Link>);
}

/// Connections over the in-process [`MemoryNotifier`].
pub struct MemoryTransport(pub MemoryNotifier);

struct MemoryLink(tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>);

#[async_trait]
impl Link for MemoryLink {
    async fn next_frame(&mut self, wait: Duration) -> Option<Value> {
        let bytes = tokio::time::timeout(wait, self.0.recv()).await.ok()??;
        Some(serde_json::from_slice(&bytes).expect("frames are JSON"))
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn open(&self) -> (ConnectionId, Box<dyn Link>) {
        let id = ConnectionId::new(format!(
            "c{}=",
            &uuid::Uuid::new_v4().simple().to_string()[..14]
        ));
        let rx = self.0.open(&id);
        (id, Box::new(MemoryLink(rx)))
    }
}

/// Users and ids of a seeded table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The campaign.
    pub campaign: CampaignId,
    /// Its session.
    pub session: SessionId,
    /// The GM (owner).
    pub gm: UserId,
    /// Two players.
    pub players: [UserId; 2],
    /// A user of no campaign here.
    pub stranger: UserId,
    /// A second campaign's session the players are not in.
    pub other_session: SessionId,
}

/// A world: the handlers over some dependencies, and a transport to open connections.
pub struct World {
    /// The Lambda edge under test.
    pub lambda: Arc<WsLambda>,
    /// How clients connect.
    pub transport: Arc<dyn Transport>,
}

impl World {
    /// The handlers over `deps` (whose notifier must feed `transport`).
    pub fn new(deps: Deps, transport: Arc<dyn Transport>) -> Self {
        Self {
            lambda: Arc::new(WsLambda::with_deps(deps)),
            transport,
        }
    }

    /// The dependencies.
    pub fn deps(&self) -> &Deps {
        self.lambda.deps()
    }

    /// Seeds a campaign (GM + two players), a session with a 15-HP goblin `goblin1`, and an
    /// unrelated campaign with its own session.
    pub async fn seed(&self) -> Table {
        let deps = self.deps();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let gm = UserId::new(format!("gm-{tag}"));
        let players = [
            UserId::new(format!("p1-{tag}")),
            UserId::new(format!("p2-{tag}")),
        ];
        let stranger = UserId::new(format!("x-{tag}"));
        let campaign = CampaignId::new(format!("camp-{tag}"));
        deps.campaigns
            .create_campaign(&Campaign {
                id: campaign.clone(),
                name: "Lost Mine".into(),
                gm_user_id: gm.clone(),
                members: players
                    .iter()
                    .map(|p| Member {
                        user_id: p.clone(),
                        role: MemberRole::Player,
                    })
                    .collect(),
                created_at: now_ms(),
            })
            .await
            .unwrap();
        let session = SessionId::new(format!("sess-{tag}"));
        self.create_session(&campaign, &session, &gm).await;
        let other_campaign = CampaignId::new(format!("other-{tag}"));
        deps.campaigns
            .create_campaign(&Campaign {
                id: other_campaign.clone(),
                name: "Elsewhere".into(),
                gm_user_id: stranger.clone(),
                members: vec![],
                created_at: now_ms(),
            })
            .await
            .unwrap();
        let other_session = SessionId::new(format!("osess-{tag}"));
        self.create_session(&other_campaign, &other_session, &stranger)
            .await;
        let added = dlab_core::event::GameEvent {
            id: dlab_core::ids::EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: dlab_core::ids::Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: gm.clone(),
            session_id: session.clone(),
            event_type: ACTOR_ADDED.into(),
            payload: json!({"instanceId": "goblin1", "actorId": "actor-goblin",
                "actor": {"name": "Goblin", "type": "monster",
                          "attributes": {"hp": {"value": 15, "max": 15}, "ac": 15, "speed": 30}}}),
            checksum: None,
        };
        let changes = dlab_core::changes::parse_changes(&added.event_type, &added.payload).unwrap();
        dlab_service::pipeline::commit(
            deps,
            CommitRequest {
                event: added,
                changes,
            },
        )
        .await
        .unwrap();
        Table {
            campaign,
            session,
            gm,
            players,
            stranger,
            other_session,
        }
    }

    async fn create_session(&self, campaign: &CampaignId, session: &SessionId, by: &UserId) {
        let deps = self.deps();
        deps.campaigns
            .create_session(
                &GameSession {
                    id: session.clone(),
                    campaign_id: campaign.clone(),
                    name: "Session 1".into(),
                    status: SessionStatus::Active,
                    created_by: by.clone(),
                    created_at: now_ms(),
                    archived_through: 0,
                },
                &dlab_store::model::CampaignQuotas::default(),
            )
            .await
            .unwrap();
        deps.log.init_session(session).await.unwrap();
    }

    /// A user token for `user`.
    pub fn token(&self, user: &UserId) -> String {
        self.deps()
            .auth
            .issue_user_token(user, Duration::from_secs(300))
    }

    /// Connects with a connect ticket for `user`.
    pub async fn connect(&self, user: &UserId) -> Client {
        let ticket = self.deps().auth.issue_ticket(user).ticket;
        let (client, status) = self.connect_with(Some(&ticket)).await;
        assert_eq!(status, 200, "connect of {user} refused");
        client
    }

    /// Connects with any token; returns the client and the `$connect` status.
    pub async fn connect_with(&self, token: Option<&str>) -> (Client, i64) {
        let (id, link) = self.transport.open().await;
        let status = self
            .lambda
            .handle(connect_event(&id, token))
            .await
            .status_code;
        (
            Client {
                id,
                link,
                lambda: self.lambda.clone(),
                pending: VecDeque::new(),
            },
            status,
        )
    }
}

/// A connected client.
pub struct Client {
    /// Its connection id.
    pub id: ConnectionId,
    link: Box<dyn Link>,
    lambda: Arc<WsLambda>,
    pending: VecDeque<Value>,
}

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    /// Sends a text frame through the handler; returns the route's status code.
    pub async fn send_text(&self, body: &str) -> i64 {
        self.lambda
            .handle(message_event(&self.id, body))
            .await
            .status_code
    }

    /// Sends a JSON message.
    pub async fn send(&self, body: Value) -> i64 {
        self.send_text(&body.to_string()).await
    }

    /// Drops the receiving side without a `$disconnect`, as a vanished client does.
    pub fn drop_link(&mut self) {
        self.link = Box::new(ClosedLink);
    }

    /// Runs `$disconnect` for this connection.
    pub async fn disconnect(&self) -> i64 {
        self.lambda
            .handle(disconnect_event(&self.id))
            .await
            .status_code
    }

    /// The next frame named `event` (others received meanwhile are kept for later).
    pub async fn expect(&mut self, event: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|f| f["event"] == event) {
            return self.pending.remove(i).unwrap()["data"].take();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(mut frame) = self.link.next_frame(left).await else {
                panic!(
                    "no {event} frame within {WAIT:?}; pending: {:?}",
                    self.pending
                );
            };
            if frame["event"] == event {
                return frame["data"].take();
            }
            self.pending.push_back(frame);
        }
    }

    /// The next frame of any kind.
    pub async fn next(&mut self) -> Value {
        if let Some(f) = self.pending.pop_front() {
            return f;
        }
        self.link.next_frame(WAIT).await.expect("a frame")
    }

    /// Asserts no frame arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.pending.is_empty(),
            "unexpected frames {:?}",
            self.pending
        );
        if let Some(f) = self.link.next_frame(wait).await {
            panic!("unexpected frame {f}");
        }
    }

    /// Asserts no frame named `event` arrives within `wait` (others are kept).
    pub async fn expect_no(&mut self, event: &str, wait: Duration) {
        assert!(
            !self.pending.iter().any(|f| f["event"] == event),
            "unexpected {event} frame in {:?}",
            self.pending
        );
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.link.next_frame(left).await {
                None => return,
                Some(f) if f["event"] == event => panic!("unexpected frame {f}"),
                Some(f) => self.pending.push_back(f),
            }
        }
    }

    /// The answer to this client's own submit: `event:confirmed` or `event:error` (frame with
    /// its name).
    pub async fn submit_outcome(&mut self) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| f["event"] == "event:confirmed" || f["event"] == "event:error")
        {
            return self.pending.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.link.next_frame(left).await.expect("a submit outcome");
            if f["event"] == "event:confirmed" || f["event"] == "event:error" {
                return f;
            }
            self.pending.push_back(f);
        }
    }

    /// Drops frames already received or arriving within `wait`.
    pub async fn drain(&mut self, wait: Duration) {
        self.pending.clear();
        while self.link.next_frame(wait).await.is_some() {}
    }

    /// Subscribes and reads the answer up to the last catch-up batch; returns the events.
    pub async fn subscribe(&mut self, session: &SessionId, since: u64) -> Vec<Value> {
        self.send(json!({"action": "subscribe", "sessionId": session, "since": since}))
            .await;
        self.expect("session:subscribed").await;
        let mut events = Vec::new();
        loop {
            let batch = self.expect("events:batch").await;
            events.extend(batch["events"].as_array().unwrap().iter().cloned());
            if batch["isLast"] == true {
                return events;
            }
        }
    }
}

/// A memory world: every port in memory, posts over channels.
pub fn memory_world() -> World {
    let (deps, notifier) = Deps::memory_with_channels(
        dlab_service::auth::Authenticator::with_secret(SECRET),
        dlab_service::config::Settings::default(),
    );
    World::new(deps, Arc::new(MemoryTransport(notifier)))
}

/// A goblin hit as a submit message.
pub fn hit_message(session: &SessionId, from: i64, to: i64) -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let msg = json!({"action": "submit", "requestId": format!("r-{id}"), "event": {
        "id": id, "sessionId": session, "type": "plugin:dnd5e:attack",
        "payload": {"target": {"instanceId": "goblin1", "actorId": "actor-goblin"},
                    "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}}}});
    (id, msg)
}

/// Connections registered in the local gateway's hub; the server's posts travel through the
/// real `aws-sdk-apigatewaymanagement` client and the gateway's `@connections` endpoint.
pub struct HubTransport {
    /// The hub the `@connections` endpoint serves.
    pub hub: local_gateway::ConnectionHub,
}

struct HubLink {
    rx: tokio::sync::mpsc::Receiver<local_gateway::connections::Outbound>,
}

#[async_trait]
impl Link for HubLink {
    async fn next_frame(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.rx.recv()).await.ok()?? {
            local_gateway::connections::Outbound::Text(t) => {
                Some(serde_json::from_str(&t).expect("frames are JSON"))
            }
            local_gateway::connections::Outbound::Binary(b) => panic!("binary frame {b:?}"),
        }
    }
}

#[async_trait]
impl Transport for HubTransport {
    async fn open(&self) -> (ConnectionId, Box<dyn Link>) {
        let (id, rx) = self
            .hub
            .register(local_gateway::connections::Identity::default());
        self.hub.open(&id).expect("fresh connection");
        (id, Box::new(HubLink { rx }))
    }
}

/// A world on the real servers: Redis (log, rate limiter), MongoDB (archive, campaigns,
/// snapshots, in a database of its own), DynamoDB on moto (connections, in a table of its own),
/// and the local gateway's `@connections` endpoint behind the real management API client.
/// `None` (after printing why) when the servers are not required and not reachable.
pub async fn real_world() -> Option<(World, local_gateway::ConnectionHub)> {
    use crate::servers::{Server, require};
    for s in Server::ALL {
        if !require(s) {
            return None;
        }
    }
    let hub = local_gateway::ConnectionHub::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = local_gateway::router(hub.clone());
    tokio::spawn(async move { local_gateway::serve(listener, router).await });

    let aws = aws_test_config().await;
    let notifier =
        dlab_store::apigw::ApiGatewayNotifier::from_endpoint(&aws, format!("http://{addr}"));
    let redis = dlab_store::redis::RedisConfig::new(Server::Redis.url())
        .connect()
        .await
        .expect("Redis");
    let mut mongo_cfg = dlab_store::mongo::MongoConfig::new(Server::Mongo.url());
    mongo_cfg.database = format!("dlab_ws_{}", uuid::Uuid::new_v4().simple());
    let mongo = dlab_store::mongo::MongoStores::connect(&mongo_cfg)
        .await
        .expect("MongoDB");
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let table = format!("connections-{}", uuid::Uuid::new_v4().simple());
    dlab_store::dynamo::create_table(&dynamo, &table)
        .await
        .expect("create table");
    let deps = Deps {
        log: Arc::new(dlab_store::redis::RedisEventLog::new(redis.clone())),
        archive: Arc::new(mongo.archive()),
        campaigns: Arc::new(mongo.campaigns()),
        snapshots: Arc::new(mongo.snapshots()),
        registry: Arc::new(dlab_store::dynamo::DynamoConnectionRegistry::new(
            dynamo, table,
        )),
        limiter: Arc::new(dlab_store::redis::RedisRateLimiter::new(redis)),
        conflicts: Arc::new(mongo.conflicts()),
        notifier: Arc::new(notifier),
        auth: dlab_service::auth::Authenticator::with_secret(SECRET),
        settings: dlab_service::config::Settings::default(),
        activity: Default::default(),
        audiences: Default::default(),
        commit_locks: Default::default(),
    };
    let world = World::new(deps, Arc::new(HubTransport { hub: hub.clone() }));
    Some((world, hub))
}

/// SDK configuration for the local test servers (moto), with test credentials.
pub async fn aws_test_config() -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    let endpoint = crate::servers::Server::Moto.url();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "dlab-tests",
        ))
        .load()
        .await
}
