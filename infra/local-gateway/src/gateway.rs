//! API Gateway's WebSocket semantics on one machine, hosting the very same handlers as the
//! Lambdas ([`dlab_service::lambda::WsLambda`]), so what passes here behaves the same on AWS:
//!
//! - an upgrade registers the connection as *connecting* and invokes the `$connect` handler with
//!   an API-Gateway-shaped event (connection id, route key, event type, domain, stage,
//!   `connectedAt`, `requestTimeEpoch`, query string); a non-2xx answer refuses the upgrade with
//!   that status, and posts to the connection fail with 410 until the upgrade completes;
//! - each text message is routed on its `action` field (`subscribe`, `submit`, `replay`, else
//!   `$default`) and invokes the handler concurrently, as API Gateway does; handler return
//!   bodies are never sent to the client, only `@connections` posts are;
//! - a message over 128 KB or a frame over 32 KB closes the socket with 1009;
//! - an idle connection is closed after 10 minutes and any connection after 2 hours;
//! - `$disconnect` runs on close, on error, on timeout and on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, Query, State};
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dlab_core::ids::ConnectionId;
use dlab_service::lambda::WsLambda;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::connections::{ConnectionHub, Identity, Outbound};

/// API Gateway's message limit.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway's frame limit.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// The stage name the gateway reports in events.
pub const STAGE: &str = "local";

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Closed after this long without a client message (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Closed after this long in any case (API Gateway: 2 hours).
    pub max_connection: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(600),
            max_connection: Duration::from_secs(7_200),
        }
    }
}

/// The WebSocket side of the gateway.
#[derive(Clone)]
pub struct WsGateway {
    hub: ConnectionHub,
    lambda: Arc<WsLambda>,
    limits: Limits,
    domain: String,
    shutdown: watch::Receiver<bool>,
}

impl WsGateway {
    /// A gateway invoking `lambda` for every route; `domain` is reported as `domainName`.
    pub fn new(
        hub: ConnectionHub,
        lambda: Arc<WsLambda>,
        limits: Limits,
        domain: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            hub,
            lambda,
            limits,
            domain,
            shutdown,
        }
    }

    /// `GET /`: the WebSocket endpoint (a plain GET gets a short explanation).
    pub fn routes(self) -> Router {
        Router::new().route("/", get(upgrade)).with_state(self)
    }

    fn event(
        &self,
        id: &ConnectionId,
        kind: &str,
        route: &str,
        extra: Value,
    ) -> ApiGatewayWebsocketProxyRequest {
        let now = now_ms();
        let mut v = json!({
            "requestContext": {
                "routeKey": route,
                "eventType": kind,
                "messageDirection": "IN",
                "stage": STAGE,
                "connectedAt": self.hub.get(id).map(|c| ms(c.connected_at)).unwrap_or(now),
                "requestTimeEpoch": now,
                "requestId": uuid::Uuid::new_v4().to_string(),
                "domainName": self.domain,
                "connectionId": id,
                "apiId": "local",
                "identity": {"sourceIp": self.hub.get(id).map(|c| c.identity.source_ip).unwrap_or_default()},
            },
            "isBase64Encoded": false,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
            base.extend(extra);
        }
        serde_json::from_value(v).expect("a well-formed API Gateway event")
    }

    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> i64 {
        self.lambda.handle(event).await.status_code
    }

    async fn disconnect(&self, id: &ConnectionId, code: u16, reason: &str) {
        let mut event = self.event(id, "DISCONNECT", "$disconnect", json!({}));
        event.request_context.disconnect_status_code = Some(i64::from(code));
        event.request_context.disconnect_reason = Some(reason.to_owned());
        self.invoke(event).await;
        self.hub.remove(id);
    }
}

fn now_ms() -> i64 {
    ms(SystemTime::now())
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
    let identity = Identity::of_request(peer.map(|Extension(ConnectInfo(addr))| addr), &headers);
    let (id, outbound) = gw.hub.register(identity);
    let mut qs = serde_json::Map::new();
    let mut mqs = serde_json::Map::new();
    for (k, v) in &query {
        qs.insert(k.clone(), json!(v));
        mqs.entry(k.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(json!(v));
    }
    let mut extra = json!({"headers": {"User-Agent": headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default()}});
    if !qs.is_empty() {
        extra["queryStringParameters"] = Value::Object(qs);
        extra["multiValueQueryStringParameters"] = Value::Object(mqs);
    }
    let status = gw.invoke(gw.event(&id, "CONNECT", "$connect", extra)).await;
    if !(200..300).contains(&status) {
        gw.hub.remove(&id);
        info!(connection = %id, status, "upgrade refused by $connect");
        let code = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
        return (code, "").into_response();
    }
    let failed = (gw.clone(), id.clone());
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_failed_upgrade(move |error| {
            debug!(connection = %failed.1, %error, "websocket upgrade failed");
            let (gw, id) = failed;
            tokio::spawn(async move { gw.disconnect(&id, 1006, "upgrade failed").await });
        })
        .on_upgrade(move |socket| async move {
            if gw.hub.open(&id).is_ok() {
                let (code, reason) = run(&gw, &id, socket, outbound).await;
                gw.disconnect(&id, code, &reason).await;
            } else {
                gw.disconnect(&id, 1006, "closed before open").await;
            }
        })
}

/// Pumps one socket until it ends; returns the close code and reason reported to `$disconnect`.
async fn run(
    gw: &WsGateway,
    id: &ConnectionId,
    socket: WebSocket,
    mut outbound: mpsc::Receiver<Outbound>,
) -> (u16, String) {
    let (mut sink, mut stream) = socket.split();
    let opened = tokio::time::Instant::now();
    let max_end = opened + gw.limits.max_connection;
    let mut idle_end = opened + gw.limits.idle_timeout;
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
                    let message = match frame {
                        Outbound::Text(text) => Message::Text(text.into()),
                        Outbound::Binary(bytes) => Message::Binary(bytes.into()),
                    };
                    if sink.send(message).await.is_err() {
                        return (1006, "send failed".into());
                    }
                }
                None => {
                    let _ = sink.send(close(close_code::NORMAL, "")).await;
                    return (1000, "deleted through @connections".into());
                }
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    idle_end = tokio::time::Instant::now() + gw.limits.idle_timeout;
                    gw.hub.touch(id);
                    if text.len() > MAX_MESSAGE_BYTES {
                        let _ = sink.send(close(close_code::SIZE, "Message too big")).await;
                        return (1009, "message too big".into());
                    }
                    let body = text.to_string();
                    let route = route_key(&body);
                    let event = gw.event(id, "MESSAGE", route, json!({"body": body}));
                    let gw = gw.clone();
                    tokio::spawn(async move { gw.invoke(event).await });
                }
                Some(Ok(Message::Binary(bytes))) => {
                    idle_end = tokio::time::Instant::now() + gw.limits.idle_timeout;
                    if bytes.len() > MAX_MESSAGE_BYTES {
                        let _ = sink.send(close(close_code::SIZE, "Message too big")).await;
                        return (1009, "message too big".into());
                    }
                    let body = String::from_utf8_lossy(&bytes).to_string();
                    let event = gw.event(id, "MESSAGE", "$default", json!({"body": body}));
                    let gw = gw.clone();
                    tokio::spawn(async move { gw.invoke(event).await });
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = sink.close().await;
                    let code = frame.as_ref().map_or(1005, |f| f.code);
                    return (code, "client closed".into());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("Space limit") || text.contains("capacity") {
                        let _ = sink.send(close(close_code::SIZE, "Message too big")).await;
                        return (1009, "message too big".into());
                    }
                    return (1006, format!("socket error: {text}"));
                }
                None => return (1006, "socket ended".into()),
            },
            _ = tokio::time::sleep_until(idle_end) => {
                let _ = sink.send(close(close_code::AWAY, "Going away: idle timeout")).await;
                return (1001, "idle timeout".into());
            }
            _ = tokio::time::sleep_until(max_end) => {
                let _ = sink.send(close(close_code::AWAY, "Going away: maximum connection duration")).await;
                return (1001, "maximum connection duration".into());
            }
            _ = shutdown.changed() => {
                let _ = sink.send(close(close_code::AWAY, "Going away: gateway shutting down")).await;
                return (1001, "gateway shutdown".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
