//! Assembles the gateway: backends (memory by default, or the real servers), the same handlers
//! as the Lambdas, the HTTP API, dev tokens and demo data on the public port, and
//! `@connections` on a second, loopback-only port (API Gateway's management API is IAM-signed;
//! this one checks nothing, so it must not be reachable by clients). The hosted handlers
//! deliver in-process by default ([`Delivery`]); with `--delivery apigw` they post to that port
//! through the AWS SDK, as on AWS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use dlab_core::ids::UserId;
use dlab_service::Deps;
use dlab_service::auth::{Authenticator, ConnectTokens};
use dlab_service::config::{HsSecret, JWT_SECRET, JwtConfig, Settings};
use dlab_service::lambda::WsLambda;
use dlab_store::memory::{
    MemoryCampaignStore, MemoryConnectionRegistry, MemoryEventArchive, MemoryEventLog,
    MemoryRateLimiter, MemorySnapshotStore,
};
use serde::Deserialize;
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::connections::{ConnectionHub, management};
use crate::delivery::{Delivery, HubNotifier};
use crate::gateway::{Limits, STAGE, WsGateway};

/// What backs each port: the embedded SQLite database under `data_dir` (or memory when it is
/// `None`), with any real server named here swapped in for its ports.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    /// The directory of the embedded database (`dlab.sqlite3`): archive, campaigns, actors,
    /// compendium, sessions, snapshots and conflicts, kept across restarts. `None`: memory,
    /// gone when the gateway stops (`--ephemeral`, and the tests' default).
    pub data_dir: Option<std::path::PathBuf>,
    /// Redis URL for the event log and rate limiter.
    pub redis: Option<String>,
    /// Speak the Redis Cluster protocol to `redis`.
    pub redis_cluster: bool,
    /// MongoDB URI for the archive, campaigns and snapshots.
    pub mongo: Option<String>,
    /// MongoDB database (`None`: the default, `dungeon_lab`).
    pub mongo_database: Option<String>,
    /// DynamoDB endpoint (e.g. moto or LocalStack) for connections.
    pub dynamodb_endpoint: Option<String>,
    /// DynamoDB table of connections (created when missing).
    pub connections_table: String,
}

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Backends.
    pub backends: Backends,
    /// Dev mode: serve `POST /dev/token` and accept user tokens at `$connect` (refused on a
    /// non-loopback address).
    pub dev_tokens: bool,
    /// Seed a demo campaign.
    pub demo: bool,
    /// Connection timeouts.
    pub limits: Limits,
    /// HS256 secret for tokens, at least 32 bytes (a random one per run when `None`).
    pub jwt_secret: Option<String>,
    /// How often the maintenance run (backfill, compaction, idle release) runs; `None` turns
    /// the timer off (a GM can still compact with `POST /sessions/{id}/compact`).
    pub maintenance_every: Option<Duration>,
    /// How the hosted handlers' frames reach the sockets (in-process by default).
    pub delivery: Delivery,
    /// Fill an empty compendium at start ([`crate::storage::load_compendium`]).
    pub compendium: CompendiumLoad,
    /// Serve the web console built into this directory under `/app/` ([`crate::console`]);
    /// `None`: no console routes, and `/` redirects nobody.
    pub web_dir: Option<std::path::PathBuf>,
    /// LAN mode ([`crate::lan`]): listen on a LAN address (with the port of [`Options::listen`])
    /// and on loopback, with a random per-run secret and `POST /lan/invites`.
    pub lan: Option<crate::lan::LanOptions>,
}

/// How the gateway fills an empty compendium when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CompendiumLoad {
    /// Leave it as it is (tests, and `--no-compendium`).
    #[default]
    Off,
    /// Import the SRD 5.1 package from this cache directory, fetching it there first when it
    /// is missing; when it cannot be had, write the project's own few templates instead.
    Srd {
        /// Where the package is kept (`./.dlab/srd`).
        cache_dir: std::path::PathBuf,
    },
}

/// The default of [`Options::maintenance_every`]: the schedule of the `compaction` Lambda.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(300);

/// The shortest maintenance interval: a shorter one would only make runs queue up.
pub const MAINTENANCE_MIN: Duration = Duration::from_secs(1);

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The port could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A backend could not be reached.
    #[error(transparent)]
    Store(#[from] dlab_store::StoreError),
    /// Nobody could get a token: dev tokens are off (`--no-dev-tokens`, or a non-loopback
    /// address) and the token secret is random, known to no one.
    #[error(
        "no way to get a token on {addr}: dev tokens are off (--no-dev-tokens, or not a loopback address) and no --jwt-secret / JWT_SECRET is set"
    )]
    NoTokenSource {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A setting in the environment is unusable (the Lambdas refuse it at cold start too).
    #[error("invalid configuration")]
    Config(#[from] dlab_store::error::ConfigError),
    /// LAN mode could not find its address.
    #[error(transparent)]
    Lan(#[from] crate::lan::LanError),
    /// LAN mode with a fixed secret: links would outlive a restart, so it is refused.
    #[error(
        "--lan signs with a new random secret every run (old invite links die on restart); unset --jwt-secret / JWT_SECRET"
    )]
    LanWithSecret,
}

/// How long shutdown waits for the handlers still running (every `$disconnect` included).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A running gateway.
pub struct Running {
    /// The bound (public) address: WebSocket, HTTP API, dev tokens; the LAN address in LAN
    /// mode.
    pub addr: SocketAddr,
    /// LAN mode with a non-loopback address: the second, loopback listener (same port), where
    /// this machine's browser gets dev tokens.
    pub loopback_addr: Option<SocketAddr>,
    /// LAN mode: the address players use, and the invite signer.
    pub lan: Option<crate::lan::Lan>,
    /// The directory the console is served from (`None`: no console).
    pub web_dir: Option<std::path::PathBuf>,
    /// The loopback address of `@connections` (API Gateway's management API), used by the
    /// hosted handlers' notifier; the public address answers 404 there.
    pub management_addr: SocketAddr,
    /// Dev mode: `/dev/token` is served and `$connect` accepts user tokens.
    pub dev_tokens: bool,
    /// Demo tokens, when seeded: (user, token).
    pub demo: Option<crate::demo::Demo>,
    /// The dependencies (tests inspect them).
    pub deps: Deps,
    /// The live connections.
    pub hub: ConnectionHub,
    /// How often the maintenance run runs (`None`: the timer is off).
    pub maintenance_every: Option<Duration>,
    /// How the hosted handlers' frames reach the sockets.
    pub delivery: Delivery,
    /// Where the data lives (for the banner).
    pub storage: crate::storage::StorageSummary,
    /// What the start-up compendium load did (`None`: it was off).
    pub compendium: Option<crate::storage::CompendiumLoaded>,
    work: crate::gateway::Work,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    management: tokio::task::JoinHandle<std::io::Result<()>>,
    loopback_server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    maintenance: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// `ws://addr/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// `http://addr`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://<loopback>`: the URL for this machine (the loopback listener in LAN mode,
    /// else [`Running::http_url`]); dev tokens are served here.
    pub fn local_http_url(&self) -> String {
        format!("http://{}", self.loopback_addr.unwrap_or(self.addr))
    }

    /// The console for this machine's browser, when served.
    pub fn console_url(&self) -> Option<String> {
        self.web_dir
            .as_ref()
            .map(|_| format!("{}/app/", self.local_http_url()))
    }

    /// `http://management_addr`: the `@connections` endpoint (stage prefix optional).
    pub fn management_url(&self) -> String {
        format!("http://{}", self.management_addr)
    }

    /// Closes every socket with a close frame, waits (up to [`SHUTDOWN_GRACE`]) until every
    /// handler has finished, each connection's `$disconnect` included, and stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.work.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.work.running();
        if left > 0 {
            warn!(
                connections = left,
                "shutdown grace elapsed with handlers still running"
            );
        }
        if let Some(timer) = self.maintenance {
            timer.abort();
            let _ = timer.await;
        }
        self.server.abort();
        self.management.abort();
        let _ = self.server.await;
        let _ = self.management.await;
        if let Some(loopback) = self.loopback_server {
            loopback.abort();
            let _ = loopback.await;
        }
    }
}

/// Posts to `@connections` in flight at once, across every handler in this process.
///
/// On AWS each Lambda invocation bounds its own broadcast (`broadcast_concurrency`) and API
/// Gateway absorbs the sum; here every handler shares one process and one listener, so a burst
/// of 100 concurrent broadcasts × 64 posts would open thousands of loopback connections to
/// ourselves, overflow the listen backlog and time out in the SDK. The cap keeps the SDK's
/// connection pool small and reused; posts wait for a permit instead of failing.
pub const MAX_POSTS_IN_FLIGHT: usize = 128;

/// The listen backlog: WebSocket upgrades, HTTP calls and the handlers' own `@connections`
/// posts all arrive on the one port, in bursts when many clients join at once.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The SDK's connect timeout for `@connections` posts to ourselves. Loopback connects are
/// instant unless the accept queue is full; waiting beats failing and retrying then.
const NOTIFIER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Notifier`](dlab_store::Notifier) that lets at most `limit` posts be in flight at once
/// (see [`MAX_POSTS_IN_FLIGHT`]).
#[derive(Debug, Clone)]
pub struct BoundedNotifier<N> {
    inner: N,
    permits: Arc<tokio::sync::Semaphore>,
}

impl<N> BoundedNotifier<N> {
    /// Wraps `inner`, allowing `limit` (at least 1) posts in flight.
    pub fn new(inner: N, limit: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(limit.max(1))),
        }
    }

    /// Permits free right now (tests check that every post gave its permit back).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[async_trait::async_trait]
impl<N: dlab_store::Notifier> dlab_store::Notifier for BoundedNotifier<N> {
    async fn post(
        &self,
        connection: &dlab_core::ids::ConnectionId,
        data: &[u8],
    ) -> Result<dlab_store::PostOutcome, dlab_store::NotifyError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| dlab_store::NotifyError::Failed(Box::new(e)))?;
        self.inner.post(connection, data).await
    }
}

/// SDK configuration for a local AWS stand-in at `endpoint` (moto, LocalStack).
pub(crate) async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    // Local endpoints accept any signature; the SDK still signs, so give it credentials.
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "local".into());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "local".into());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "local-gateway",
        ))
        .load()
        .await
}

/// The notifier of `delivery`: straight into `hub`'s sockets, or through the SDK to our own
/// `@connections` port at `management`.
async fn notifier(
    delivery: Delivery,
    hub: &ConnectionHub,
    management: SocketAddr,
) -> Arc<dyn dlab_store::Notifier> {
    match delivery {
        Delivery::InProcess => Arc::new(HubNotifier::new(hub.clone())),
        Delivery::Apigw => {
            let own = format!("http://{management}");
            let sdk = aws_config(&own).await.into_builder().timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(NOTIFIER_CONNECT_TIMEOUT)
                    .build(),
            );
            Arc::new(BoundedNotifier::new(
                dlab_store::apigw::ApiGatewayNotifier::from_endpoint(&sdk.build(), own),
                MAX_POSTS_IN_FLIGHT,
            ))
        }
    }
}

async fn build_deps(
    options: &Options,
    notifier: Arc<dyn dlab_store::Notifier>,
    auth: Authenticator,
    settings: Settings,
) -> Result<Deps, StartError> {
    let mut deps = Deps {
        log: Arc::new(MemoryEventLog::new()),
        archive: Arc::new(MemoryEventArchive::new()),
        campaigns: Arc::new(MemoryCampaignStore::new()),
        snapshots: Arc::new(MemorySnapshotStore::new()),
        registry: Arc::new(MemoryConnectionRegistry::new()),
        limiter: Arc::new(MemoryRateLimiter::new()),
        conflicts: Arc::new(dlab_store::memory::MemoryConflictStore::new()),
        notifier,
        auth,
        settings,
        activity: Default::default(),
        audiences: Default::default(),
        commit_locks: Default::default(),
    };
    let b = &options.backends;
    // `--mongo` takes every port SQLite would hold: no database file is opened then.
    if let Some(dir) = b.data_dir.as_ref().filter(|_| b.mongo.is_none()) {
        let sqlite = crate::storage::open_embedded(dir).await?;
        deps.archive = Arc::new(sqlite.archive());
        deps.campaigns = Arc::new(sqlite.campaigns());
        deps.snapshots = Arc::new(sqlite.snapshots());
        deps.conflicts = Arc::new(sqlite.conflicts());
    }
    if let Some(url) = &b.redis {
        let conn = dlab_store::redis::RedisConfig {
            cluster: b.redis_cluster,
            ..dlab_store::redis::RedisConfig::new(url)
        }
        .connect()
        .await?;
        deps.log = Arc::new(dlab_store::redis::RedisEventLog::new(conn.clone()));
        deps.limiter = Arc::new(dlab_store::redis::RedisRateLimiter::new(conn));
    }
    if let Some(uri) = &b.mongo {
        let mut cfg = dlab_store::mongo::MongoConfig::new(uri);
        if let Some(db) = &b.mongo_database {
            cfg.database = db.clone();
        }
        // The gateway runs the `migrate` step itself: the archive refuses to write without its
        // unique indexes.
        let mongo = dlab_store::mongo::MongoStores::connect(&cfg).await?;
        deps.archive = Arc::new(mongo.archive());
        deps.campaigns = Arc::new(mongo.campaigns());
        deps.snapshots = Arc::new(mongo.snapshots());
        deps.conflicts = Arc::new(mongo.conflicts());
    }
    if let Some(endpoint) = &b.dynamodb_endpoint {
        let client = aws_sdk_dynamodb::Client::new(&aws_config(endpoint).await);
        dlab_store::dynamo::create_table(&client, &b.connections_table).await?;
        deps.registry = Arc::new(dlab_store::dynamo::DynamoConnectionRegistry::new(
            client,
            b.connections_table.clone(),
        ));
    }
    // A hot log in this process's memory dies with it: over a durable archive, confirm only
    // what the archive holds (see `ArchiveMode`).
    if b.redis.is_none() && (b.data_dir.is_some() || b.mongo.is_some()) {
        deps.settings.archive_mode = dlab_service::config::ArchiveMode::ConfirmAfterArchive;
    }
    Ok(deps)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevTokenRequest {
    user_id: String,
}

async fn dev_token(
    State(auth): State<Authenticator>,
    body: Result<Json<DevTokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(req)) if !req.user_id.trim().is_empty() && req.user_id.len() <= 128 => {
            let token = auth.issue_user_token(&UserId::new(req.user_id), Duration::from_secs(12 * 3600));
            Json(json!({"token": token})).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "invalid_message", "message": "body must be {\"userId\": \"<1-128 characters>\"}"}})),
        )
            .into_response(),
    }
}

/// Serves `/dev/token` only to requests whose `Host` is a loopback name (`localhost`,
/// `127.0.0.1`, `[::1]`, with any port): a web page that points its own domain at 127.0.0.1
/// (DNS rebinding) sends its domain as `Host` and gets 403, so it cannot mint tokens.
///
/// The peer must be on loopback too: in LAN mode a device on the network reaches the gateway
/// and could write any `Host` it likes.
async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !crate::lan::from_loopback_peer(&request) {
        warn!(
            host = host.unwrap_or(""),
            "dev route refused: the peer is not on loopback"
        );
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": "forbidden", "message": "dev routes answer only to this machine (a loopback peer and Host)"}})),
        )
            .into_response();
    }
    if host.is_some_and(is_loopback_host) {
        return next.run(request).await;
    }
    warn!(
        host = host.unwrap_or(""),
        "dev route refused: Host is not a loopback name"
    );
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": {"code": "forbidden", "message": "dev routes answer only to Host localhost, 127.0.0.1 or [::1] (with any port)"}})),
    )
        .into_response()
}

/// `localhost`, `127.0.0.1` or `[::1]`, optionally with `:port`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|name| match host.strip_prefix(name) {
            Some("") => true,
            Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
                (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
            }),
            None => false,
        })
}

/// Binds `addr` with [`LISTEN_BACKLOG`] (the kernel may cap it lower) and address reuse, so a
/// restart does not wait for old sockets in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds, builds and serves the gateway.
pub async fn start(options: Options) -> Result<Running, StartError> {
    start_with(options, |deps| deps).await
}

/// [`start`], with `wrap` given the built dependencies before any handler or route gets them.
///
/// Fault tests use it to put a port behind a wrapper that fails on command (an archive that is
/// "down", a notifier that loses the frames of one event, a log that fails after committing):
/// faults that cannot be caused from outside the process, and that the gateway must survive
/// exactly as the Lambdas on AWS do. The gateway itself never wraps anything.
pub async fn start_with(
    options: Options,
    wrap: impl FnOnce(Deps) -> Deps,
) -> Result<Running, StartError> {
    // LAN mode listens on the LAN address, with the port asked for, and serves dev tokens to
    // this machine through a second, loopback listener.
    let listen = match &options.lan {
        Some(lan) => {
            if options.jwt_secret.is_some() {
                return Err(StartError::LanWithSecret);
            }
            let ip = match lan.addr {
                Some(ip) => ip,
                None => crate::lan::detect_lan_ip()?,
            };
            SocketAddr::new(ip, options.listen.port())
        }
        None => options.listen,
    };
    let dev_tokens = options.dev_tokens && (options.lan.is_some() || listen.ip().is_loopback());
    if !dev_tokens && options.jwt_secret.is_none() {
        return Err(StartError::NoTokenSource { addr: listen });
    }
    let raw_secret = options.jwt_secret.clone().unwrap_or_else(|| {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    });
    let secret = HsSecret::new(JWT_SECRET, raw_secret.clone())?;
    let settings = Settings::from_env()?;
    let listener = bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let loopback_listener = match &options.lan {
        Some(_) if !addr.ip().is_loopback() => {
            let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
            Some(bind(local).map_err(|source| StartError::Bind {
                addr: local,
                source,
            })?)
        }
        _ => None,
    };
    let loopback_addr = loopback_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()
        .map_err(|source| StartError::Bind { addr, source })?;
    let lan = options.lan.as_ref().map(|lan| crate::lan::Lan {
        addr,
        signer: crate::lan::InviteSigner::new(&raw_secret, lan.invite_ttl),
    });
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let management_listener = bind(loopback).map_err(|source| StartError::Bind {
        addr: loopback,
        source,
    })?;
    let management_addr = management_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: loopback,
            source,
        })?;
    // User tokens in `?token=` only in loopback dev mode: in LAN mode a URL may be seen by
    // other devices' tools and logs, so `$connect` takes single-use tickets only.
    let connect = if dev_tokens && lan.is_none() {
        ConnectTokens::TicketsAndUserTokens
    } else {
        ConnectTokens::TicketsOnly
    };
    let auth = Authenticator::new(&JwtConfig::secret(secret), settings.ticket_ttl, connect);
    let hub = ConnectionHub::new();
    let notifier = notifier(options.delivery, &hub, management_addr).await;
    let deps = wrap(build_deps(&options, notifier, auth.clone(), settings).await?);
    let storage = crate::storage::StorageSummary::of(&options.backends, &deps);
    let compendium = match &options.compendium {
        CompendiumLoad::Off => None,
        CompendiumLoad::Srd { cache_dir } => {
            Some(crate::storage::load_compendium(deps.campaigns.as_ref(), cache_dir).await?)
        }
    };
    if options.dev_tokens && !dev_tokens {
        warn!(%addr, "dev tokens are refused on a non-loopback address");
    }
    let demo = if options.demo {
        Some(crate::demo::seed(&deps).await?)
    } else {
        None
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let lambda = Arc::new(WsLambda::with_deps(deps.clone()));
    let ws = WsGateway::new(
        hub.clone(),
        lambda,
        options.limits,
        addr.to_string(),
        shutdown_rx,
    );
    let work = ws.work();
    let mut app = Router::new()
        .merge(ws.routes())
        .merge(dlab_service::http::router_with(
            deps.clone(),
            dlab_service::http::HttpSettings::from_env()?,
        ));
    if dev_tokens {
        app = app.merge(
            Router::new()
                .route("/dev/token", post(dev_token))
                .route_layer(middleware::from_fn(loopback_host_only))
                .with_state(auth),
        );
    }
    if let Some(lan) = &lan {
        app = app.merge(crate::lan::routes(deps.clone(), lan.clone()));
    }
    if let Some(dir) = &options.web_dir {
        app = app
            .merge(crate::console::routes(dir.clone()))
            .layer(middleware::from_fn(crate::console::browser_redirect));
    }
    if let Some(lan) = &lan {
        app = app.layer(middleware::from_fn_with_state(
            lan.addr,
            crate::lan::host_check,
        ));
    }
    let loopback_server =
        loopback_listener.map(|listener| tokio::spawn(crate::serve(listener, app.clone())));
    let server = tokio::spawn(crate::serve(listener, app));
    let management = tokio::spawn(crate::serve(
        management_listener,
        management::routes().with_state(hub.clone()),
    ));
    let maintenance = options.maintenance_every.map(|every| {
        let deps = deps.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(MAINTENANCE_MIN));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let deadline = std::time::Instant::now() + every;
                dlab_service::maintenance::sweep(&deps, deadline).await;
            }
        })
    });
    info!(%addr, %management_addr, stage = STAGE, dev_tokens, delivery = %options.delivery,
          lan = lan.is_some(), loopback_addr = ?loopback_addr,
          web_dir = ?options.web_dir,
          maintenance_every_secs = options.maintenance_every.map(|d| d.as_secs()),
          "local gateway listening");
    Ok(Running {
        addr,
        loopback_addr,
        lan,
        web_dir: options.web_dir.clone(),
        management_addr,
        dev_tokens,
        demo,
        deps,
        hub,
        maintenance_every: options.maintenance_every.map(|d| d.max(MAINTENANCE_MIN)),
        delivery: options.delivery,
        storage,
        compendium,
        work,
        shutdown,
        server,
        management,
        loopback_server,
        maintenance,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use dlab_core::ids::ConnectionId;
    use dlab_store::{Notifier, NotifyError, PostOutcome};

    use super::*;

    /// Records how many posts run at once.
    #[derive(Default)]
    struct Counts {
        now: AtomicUsize,
        most: AtomicUsize,
        total: AtomicUsize,
    }

    #[derive(Clone, Default)]
    struct Counting(Arc<Counts>);

    #[async_trait::async_trait]
    impl Notifier for Counting {
        async fn post(&self, _: &ConnectionId, _: &[u8]) -> Result<PostOutcome, NotifyError> {
            let c = &self.0;
            let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
            c.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            c.now.fetch_sub(1, Ordering::SeqCst);
            c.total.fetch_add(1, Ordering::SeqCst);
            Ok(PostOutcome::Delivered)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_in_flight_never_exceed_the_cap() {
        let counting = Counting::default();
        let bounded = Arc::new(BoundedNotifier::new(counting.clone(), 4));
        // 10 concurrent "broadcasts" of 20 posts each, as many handlers would.
        let tasks: Vec<_> = (0..10)
            .map(|b| {
                let bounded = bounded.clone();
                tokio::spawn(async move {
                    futures::future::join_all((0..20).map(|i| {
                        let id = ConnectionId::new(format!("c{b}-{i}"));
                        let bounded = bounded.clone();
                        async move { bounded.post(&id, b"{}").await }
                    }))
                    .await
                })
            })
            .collect();
        for task in tasks {
            for outcome in task.await.expect("task") {
                assert!(matches!(outcome, Ok(PostOutcome::Delivered)));
            }
        }
        assert_eq!(
            counting.0.total.load(Ordering::SeqCst),
            200,
            "every post was made"
        );
        assert_eq!(
            counting.0.most.load(Ordering::SeqCst),
            4,
            "at most the cap in flight"
        );
        assert_eq!(bounded.available(), 4, "every permit was given back");
    }

    #[tokio::test]
    async fn refuses_to_start_when_nobody_could_get_a_token() {
        let options = Options {
            listen: "127.0.0.1:0".parse().expect("addr"),
            backends: Backends::default(),
            dev_tokens: false,
            demo: false,
            limits: Limits::default(),
            jwt_secret: None,
            maintenance_every: None,
            delivery: Default::default(),
            compendium: Default::default(),
            web_dir: None,
            lan: None,
        };
        match start(options.clone()).await {
            Err(StartError::NoTokenSource { addr }) => assert_eq!(addr, options.listen),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("started without any way to get a token"),
        }
        // With a secret the same options start.
        let running = start(Options {
            jwt_secret: Some("a-shared-secret-for-this-test-32b".into()),
            ..options
        })
        .await
        .expect("starts with a secret");
        assert!(!running.dev_tokens);
        running.shutdown().await;
    }

    #[tokio::test]
    async fn a_short_secret_refuses_to_start() {
        let options = Options {
            listen: "127.0.0.1:0".parse().expect("addr"),
            backends: Backends::default(),
            dev_tokens: true,
            demo: false,
            limits: Limits::default(),
            jwt_secret: Some("31-bytes-are-one-byte-too-short".into()),
            maintenance_every: None,
            delivery: Default::default(),
            compendium: Default::default(),
            web_dir: None,
            lan: None,
        };
        match start(options).await {
            Err(StartError::Config(dlab_store::error::ConfigError::Invalid { name, reason })) => {
                assert_eq!(name, JWT_SECRET);
                assert!(reason.contains("at least 32 bytes"), "{reason}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("started with a 31-byte secret"),
        }
    }

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "localhost.:8080",
            "127.0.0.1.nip.io",
            "127.0.0.1:",
            "127.0.0.1:80a",
            "127.0.0.1:123456",
            "127.0.0.2",
            "0.0.0.0:8080",
            "[::1]x",
            "[::2]:80",
            "localhost:8080@evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host:?}");
        }
    }

    #[tokio::test]
    async fn binds_loopback_with_a_backlog() {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        // Connections queue before any accept, up to the backlog.
        let mut queued = Vec::new();
        for _ in 0..200 {
            queued.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        assert_eq!(queued.len(), 200);
    }
}
