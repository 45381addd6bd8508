//! API Gateway's WebSocket semantics on one machine, hosting the very same handlers as the
//! Lambdas ([`dlab_service::lambda::WsLambda`]), so what passes here behaves the same on AWS:
//!
//! - an upgrade registers the connection as *connecting* and invokes the `$connect` handler with
//!   an API-Gateway-shaped event ([`api_gateway_event`]: connection id, route key, event type,
//!   domain, stage, `connectedAt`, `requestTime(Epoch)`, request ids, identity, and for
//!   `$connect` the handshake's headers and query string); a non-2xx answer refuses the upgrade
//!   with that status, and posts to the connection fail with 410 until the upgrade completes;
//! - each text message is routed on its `action` field (`subscribe`, `submit`, `replay`, else
//!   `$default`) and invokes the handler concurrently, as API Gateway does; handler return
//!   bodies are never sent to the client, only `@connections` posts are;
//! - a message over 128 KB or a frame over 32 KB closes the socket with 1009; a binary frame
//!   closes it with 1003 (API Gateway accepts only text frames from clients);
//! - a client that stops reading is closed with 1006 once one frame could not be written for
//!   [`WRITE_TIMEOUT`], so it cannot hold up posts to it (and the broadcasts making them);
//! - an idle connection is closed after 10 minutes and any connection after 2 hours; a
//!   `$connect` handler slower than the integration timeout (29 s) refuses the upgrade (504);
//! - `$disconnect` runs on close, on error, on timeout and on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dlab_service::lambda::WsLambda;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::connections::{ConnectionHub, ConnectionInfo, Identity, Outbound};

/// API Gateway's message limit.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway's frame limit.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// The stage name the gateway reports in events.
pub const STAGE: &str = "local";
/// The API id the gateway reports in events.
pub const API_ID: &str = "local";
/// The initial read buffer of a socket. tungstenite's default (128 KiB) is allocated for every
/// connection up front, most of a connection's memory; a player's messages are small, and
/// the buffer grows for the rare large one (up to [`MAX_MESSAGE_BYTES`]).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long writing one frame to a socket may take before the client counts as gone (it stopped
/// reading and its TCP buffers are full). API Gateway never lets a post wait on one client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Closed after this long without a client message (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Closed after this long in any case (API Gateway: 2 hours).
    pub max_connection: Duration,
    /// How long the `$connect` handler may take before the upgrade is refused with 504
    /// (API Gateway's integration timeout: 29 s). Message handlers are not cut off: their
    /// answers never reach the client anyway, only their `@connections` posts do.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(600),
            max_connection: Duration::from_secs(7_200),
            connect_timeout: Duration::from_secs(29),
        }
    }
}

/// What a route invokes: API Gateway's Lambda proxy integration. The gateway runs
/// [`WsLambda`], the Lambdas' own handler; tests plug in others to watch the events.
#[async_trait::async_trait]
pub trait Integration: Send + Sync + 'static {
    /// Handles one event; returns the response's status code (only `$connect`'s is used).
    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> i64;
}

#[async_trait::async_trait]
impl Integration for WsLambda {
    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> i64 {
        self.handle(event).await.status_code
    }
}

/// The WebSocket side of the gateway.
#[derive(Clone)]
pub struct WsGateway {
    hub: ConnectionHub,
    integration: Arc<dyn Integration>,
    limits: Limits,
    domain: String,
    shutdown: watch::Receiver<bool>,
    work: Work,
}

/// Counts the connections whose handler work (`$connect`, messages, `$disconnect`) is still
/// running, so shutdown can wait until every `$disconnect` has finished.
#[derive(Debug, Clone, Default)]
pub struct Work(Arc<AtomicUsize>);

impl Work {
    /// Connections with work still running.
    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn start(&self) -> Arc<WorkGuard> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Arc::new(WorkGuard(self.0.clone()))
    }
}

/// Held (shared) by everything a connection runs; the count drops when the last clone does.
#[derive(Debug)]
struct WorkGuard(Arc<AtomicUsize>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WsGateway {
    /// A gateway invoking `integration` for every route; `domain` is reported as `domainName`.
    pub fn new(
        hub: ConnectionHub,
        integration: Arc<dyn Integration>,
        limits: Limits,
        domain: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            hub,
            integration,
            limits,
            domain,
            shutdown,
            work: Work::default(),
        }
    }

    /// The connections with handler work still running.
    pub fn work(&self) -> Work {
        self.work.clone()
    }

    /// `GET /`: the WebSocket endpoint (a plain GET gets a short explanation).
    pub fn routes(self) -> Router {
        Router::new().route("/", get(upgrade)).with_state(self)
    }

    fn event(
        &self,
        connection: &ConnectionInfo,
        kind: &str,
        route: &str,
        extra: Value,
    ) -> ApiGatewayWebsocketProxyRequest {
        api_gateway_event(
            &self.domain,
            connection,
            kind,
            route,
            SystemTime::now(),
            extra,
        )
    }

    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> i64 {
        self.integration.invoke(event).await
    }

    /// Runs `$disconnect` (with the connection's handshake facts even when the hub already
    /// dropped it, e.g. after `DeleteConnection`) and forgets the connection.
    async fn disconnect(&self, connection: &ConnectionInfo, code: u16, reason: &str) {
        let mut event = self.event(connection, "DISCONNECT", "$disconnect", json!({}));
        event.request_context.disconnect_status_code = Some(i64::from(code));
        event.request_context.disconnect_reason = Some(reason.to_owned());
        self.invoke(event).await;
        self.hub.remove(&connection.id);
    }
}

/// The event API Gateway hands a WebSocket integration (Lambda proxy): `kind` is `CONNECT`,
/// `MESSAGE` or `DISCONNECT`; `extra` adds top-level fields (`headers`, `body`, query string).
/// A `MESSAGE` gets a `messageId`; every event gets fresh `requestId` / `extendedRequestId`.
/// `domainName` is `host:port` here (a bare host on AWS).
pub fn api_gateway_event(
    domain: &str,
    connection: &ConnectionInfo,
    kind: &str,
    route: &str,
    now: SystemTime,
    extra: Value,
) -> ApiGatewayWebsocketProxyRequest {
    let request_id = uuid::Uuid::new_v4();
    let mut context = json!({
        "routeKey": route,
        "eventType": kind,
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": ms(connection.connected_at),
        "requestTimeEpoch": ms(now),
        "requestTime": request_time(now),
        "requestId": request_id.to_string(),
        "extendedRequestId": request_id.simple().to_string(),
        "domainName": domain,
        "connectionId": connection.id,
        "apiId": API_ID,
        "identity": {
            "sourceIp": connection.identity.source_ip,
            "userAgent": connection.identity.user_agent,
        },
    });
    if kind == "MESSAGE" {
        context["messageId"] = json!(uuid::Uuid::new_v4().simple().to_string());
    }
    let mut v = json!({"requestContext": context, "isBase64Encoded": false});
    if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
        base.extend(extra);
    }
    serde_json::from_value(v).expect("a well-formed API Gateway event")
}

/// `requestContext.requestTime` as API Gateway writes it: `25/Nov/2026:23:12:50 +0000`.
pub fn request_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let at =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let month = at.month().to_string();
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        at.day(),
        &month[..3],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The handshake's headers as API Gateway passes them: `headers` (one value per name, the last)
/// and `multiValueHeaders` (all of them).
fn handshake_headers(headers: &HeaderMap) -> (Value, Value) {
    let mut single = serde_json::Map::new();
    let mut multi = serde_json::Map::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        single.insert(name.as_str().to_owned(), json!(value));
        if let Value::Array(all) = multi
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!([]))
        {
            all.push(json!(value));
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The route key API Gateway would select for a message (`$request.body.action`).
pub fn route_key(body: &str) -> &'static str {
    let action = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
    match action.as_deref() {
        Some("subscribe") => "subscribe",
        Some("submit") => "submit",
        Some("replay") => "replay",
        _ => "$default",
    }
}

async fn upgrade(
    State(gw): State<WsGateway>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::OK,
            "Dungeon Lab local gateway: connect a WebSocket here with ?token=<connect ticket>; the HTTP API is on this port too.\n",
        )
            .into_response();
    };
    let work = gw.work.start();
    let identity = Identity::of_request(peer.map(|Extension(ConnectInfo(addr))| addr), &headers);
    let (id, outbound) = gw.hub.register(identity);
    let Some(connection) = gw.hub.get(&id) else {
        return StatusCode::GONE.into_response();
    };
    let mut qs = serde_json::Map::new();
    let mut mqs = serde_json::Map::new();
    for (k, v) in &query {
        qs.insert(k.clone(), json!(v));
        if let Value::Array(all) = mqs.entry(k.clone()).or_insert_with(|| json!([])) {
            all.push(json!(v));
        }
    }
    let (single, multi) = handshake_headers(&headers);
    let mut extra = json!({"headers": single, "multiValueHeaders": multi});
    if !qs.is_empty() {
        extra["queryStringParameters"] = Value::Object(qs);
        extra["multiValueQueryStringParameters"] = Value::Object(mqs);
    }
    let connect = gw.invoke(gw.event(&connection, "CONNECT", "$connect", extra));
    let Ok(status) = tokio::time::timeout(gw.limits.connect_timeout, connect).await else {
        gw.hub.remove(&id);
        info!(connection = %id, "upgrade refused: $connect exceeded the integration timeout");
        return (StatusCode::GATEWAY_TIMEOUT, "").into_response();
    };
    if !(200..300).contains(&status) {
        gw.hub.remove(&id);
        info!(connection = %id, status, "upgrade refused by $connect");
        let code = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
        return (code, "").into_response();
    }
    let failed = (gw.clone(), connection.clone(), work.clone());
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_failed_upgrade(move |error| {
            let (gw, connection, work) = failed;
            debug!(connection = %connection.id, %error, "websocket upgrade failed");
            tokio::spawn(async move {
                gw.disconnect(&connection, 1006, "upgrade failed").await;
                drop(work);
            });
        })
        .on_upgrade(move |socket| async move {
            if gw.hub.open(&id).is_ok() {
                let (code, reason) = run(&gw, &connection, socket, outbound, &work).await;
                gw.disconnect(&connection, code, &reason).await;
            } else {
                gw.disconnect(&connection, 1006, "closed before open").await;
            }
            drop(work);
        })
}

/// Frames one write gathers from a socket's queue before it flushes.
const WRITE_BATCH: usize = 64;

/// Writes one frame, giving up after [`WRITE_TIMEOUT`] (the client stopped reading).
async fn write(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
) -> Result<(), &'static str> {
    match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("send failed"),
        Err(_) => Err("write timed out: the client stopped reading"),
    }
}

fn message(frame: Outbound) -> Message {
    match frame {
        Outbound::Text(text) => Message::Text(text.into()),
        Outbound::Binary(bytes) => Message::Binary(bytes.into()),
    }
}

/// Writes `first` and whatever else is already queued (up to [`WRITE_BATCH`] frames), then
/// flushes once: under a burst a socket gets one write (and one timer) for many frames instead
/// of one each. Gives up after [`WRITE_TIMEOUT`] like [`write`]. Order is the queue's.
async fn write_queued(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    first: Outbound,
    queue: &mut mpsc::Receiver<Outbound>,
) -> Result<(), &'static str> {
    let batch = async {
        sink.feed(message(first)).await?;
        for _ in 1..WRITE_BATCH {
            match queue.try_recv() {
                Ok(frame) => sink.feed(message(frame)).await?,
                // Empty, or closed: the caller's next `recv` sees the close.
                Err(_) => break,
            }
        }
        sink.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("send failed"),
        Err(_) => Err("write timed out: the client stopped reading"),
    }
}

/// Pumps one socket until it ends; returns the close code and reason reported to `$disconnect`.
async fn run(
    gw: &WsGateway,
    connection: &ConnectionInfo,
    socket: WebSocket,
    mut outbound: mpsc::Receiver<Outbound>,
    work: &Arc<WorkGuard>,
) -> (u16, String) {
    let id = &connection.id;
    let (mut sink, mut stream) = socket.split();
    let opened = tokio::time::Instant::now();
    // Both deadlines are timers registered once (the idle one is moved on each client
    // message), not new timers on every loop turn: a busy socket turns once per frame.
    let max_end = tokio::time::sleep_until(opened + gw.limits.max_connection);
    let idle_end = tokio::time::sleep_until(opened + gw.limits.idle_timeout);
    tokio::pin!(max_end, idle_end);
    let mut shutdown = gw.shutdown.clone();
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        }))
    };
    loop {
        tokio::select! {
            frame = outbound.recv() => match frame {
                Some(frame) => {
                    if let Err(why) = write_queued(&mut sink, frame, &mut outbound).await {
                        info!(connection = %id, why, "closing a connection that cannot be written to");
                        return (1006, why.into());
                    }
                }
                None => {
                    let _ = write(&mut sink, close(close_code::NORMAL, "")).await;
                    return (1000, "deleted through @connections".into());
                }
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    idle_end.as_mut().reset(tokio::time::Instant::now() + gw.limits.idle_timeout);
                    gw.hub.touch(id);
                    if text.len() > MAX_MESSAGE_BYTES {
                        let _ = write(&mut sink, close(close_code::SIZE, "Message too big")).await;
                        return (1009, "message too big".into());
                    }
                    let body = text.to_string();
                    let route = route_key(&body);
                    let event = gw.event(connection, "MESSAGE", route, json!({"body": body}));
                    let (gw, work) = (gw.clone(), work.clone());
                    tokio::spawn(async move {
                        gw.invoke(event).await;
                        drop(work);
                    });
                }
                Some(Ok(Message::Binary(_))) => {
                    gw.hub.touch(id);
                    let _ = write(&mut sink, close(close_code::UNSUPPORTED, "Binary frames are not supported")).await;
                    return (1003, "binary frame".into());
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                    let code = frame.as_ref().map_or(1005, |f| f.code);
                    return (code, "client closed".into());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("Space limit") || text.contains("capacity") {
                        let _ = write(&mut sink, close(close_code::SIZE, "Message too big")).await;
                        return (1009, "message too big".into());
                    }
                    return (1006, format!("socket error: {text}"));
                }
                None => return (1006, "socket ended".into()),
            },
            _ = &mut idle_end => {
                let _ = write(&mut sink, close(close_code::AWAY, "Going away: idle timeout")).await;
                return (1001, "idle timeout".into());
            }
            _ = &mut max_end => {
                let _ = write(&mut sink, close(close_code::AWAY, "Going away: maximum connection duration")).await;
                return (1001, "maximum connection duration".into());
            }
            _ = shutdown.changed() => {
                let _ = write(&mut sink, close(close_code::AWAY, "Going away: gateway shutting down")).await;
                return (1001, "gateway shutdown".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use dlab_core::ids::ConnectionId;
    use dlab_service::lambda::{WsRoute, parse_ws_event};

    use super::*;
    use crate::connections::ConnectionState;

    fn connection() -> ConnectionInfo {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_649_240_720);
        ConnectionInfo {
            id: ConnectionId::new("Ab12Cd34Ef56Gh="),
            state: ConnectionState::Open,
            connected_at: at,
            last_active_at: at,
            identity: Identity {
                source_ip: "127.0.0.1".into(),
                user_agent: "table/1.0".into(),
            },
        }
    }

    #[test]
    fn request_time_is_written_as_api_gateway_does() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_649_240);
        assert_eq!(request_time(t), "25/Nov/2026:23:27:20 +0000");
        assert_eq!(request_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn connect_events_carry_the_handshake() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("user-agent", "table/1.0".parse().unwrap());
        headers.append("sec-websocket-protocol", "a".parse().unwrap());
        headers.append("sec-websocket-protocol", "b".parse().unwrap());
        let (single, multi) = handshake_headers(&headers);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_649_241);
        let event = api_gateway_event(
            "127.0.0.1:8080",
            &connection(),
            "CONNECT",
            "$connect",
            now,
            json!({"headers": single, "multiValueHeaders": multi,
                   "queryStringParameters": {"token": "t0k"}}),
        );
        let v = serde_json::to_value(&event).unwrap();
        let ctx = &v["requestContext"];
        assert_eq!(ctx["routeKey"], "$connect");
        assert_eq!(ctx["eventType"], "CONNECT");
        assert_eq!(ctx["stage"], STAGE);
        assert_eq!(ctx["domainName"], "127.0.0.1:8080");
        assert_eq!(ctx["connectionId"], "Ab12Cd34Ef56Gh=");
        assert_eq!(ctx["connectedAt"], 1_795_649_240_720_i64);
        assert_eq!(ctx["requestTimeEpoch"], 1_795_649_241_000_i64);
        assert_eq!(ctx["requestTime"], "25/Nov/2026:23:27:21 +0000");
        assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(ctx["identity"]["userAgent"], "table/1.0");
        assert!(ctx["requestId"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(
            ctx["extendedRequestId"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
        assert!(ctx["messageId"].is_null(), "only messages have a messageId");
        assert_eq!(v["headers"]["host"], "127.0.0.1:8080");
        assert_eq!(v["headers"]["user-agent"], "table/1.0");
        assert_eq!(
            v["multiValueHeaders"]["sec-websocket-protocol"],
            json!(["a", "b"])
        );
        // The handlers read it as they would on AWS.
        let parsed = parse_ws_event(&event).unwrap();
        assert_eq!(
            parsed.route,
            WsRoute::Connect {
                token: Some("t0k".into())
            }
        );
        assert_eq!(parsed.connection_id, connection().id);
    }

    #[test]
    fn message_events_have_a_fresh_message_id_and_the_body() {
        let now = SystemTime::now();
        let a = api_gateway_event(
            "h",
            &connection(),
            "MESSAGE",
            "submit",
            now,
            json!({"body": "{}"}),
        );
        let b = api_gateway_event(
            "h",
            &connection(),
            "MESSAGE",
            "submit",
            now,
            json!({"body": "{}"}),
        );
        let (a, b) = (a.request_context, b.request_context);
        assert!(a.message_id.is_some());
        assert_ne!(a.message_id, b.message_id);
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.route_key.as_deref(), Some("submit"));
        let event = api_gateway_event(
            "h",
            &connection(),
            "MESSAGE",
            "submit",
            now,
            json!({"body": "{}"}),
        );
        assert_eq!(
            parse_ws_event(&event).unwrap().route,
            WsRoute::Message { body: "{}".into() }
        );
    }

    #[test]
    fn routes_are_selected_on_the_action_field() {
        assert_eq!(route_key(r#"{"action":"submit","event":{}}"#), "submit");
        assert_eq!(route_key(r#"{"action":"subscribe"}"#), "subscribe");
        assert_eq!(route_key(r#"{"action":"replay"}"#), "replay");
        assert_eq!(route_key(r#"{"action":"ping"}"#), "$default");
        assert_eq!(route_key("not json"), "$default");
        assert_eq!(route_key(r#"{"action":5}"#), "$default");
    }
}
