//! A minimal WebSocket route, `GET /ws`: enough to hold real sockets for the `@connections`
//! API. The full gateway will replace the "open at once" step with the `$connect` handler and
//! route inbound frames to `$default` and the action routes.
//!
//! The connection is registered (as connecting) before the upgrade answers and opened right
//! after it, as API Gateway does around `$connect`; inbound frames only update `LastActiveAt`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use dlab_core::ids::ConnectionId;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::{ConnectionHub, Identity, Outbound};

/// The `/ws` route (state: the hub).
pub fn routes() -> Router<ConnectionHub> {
    Router::new().route("/ws", get(upgrade))
}

async fn upgrade(
    State(hub): State<ConnectionHub>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let identity = Identity::of_request(peer.map(|Extension(ConnectInfo(addr))| addr), &headers);
    let (id, outbound) = hub.register(identity);
    let failed = (hub.clone(), id.clone());
    ws.on_failed_upgrade(move |error| {
        debug!(connection = %failed.1, %error, "websocket upgrade failed");
        failed.0.remove(&failed.1);
    })
    .on_upgrade(move |socket| async move {
        if hub.open(&id).is_ok() {
            pump(&hub, &id, socket, outbound).await;
        }
        hub.remove(&id);
    })
}

/// Writes queued frames to the socket and reads the client's frames until either side ends:
/// the client closes (or the socket breaks), or the hub drops the connection (then the queue
/// is drained and a normal close frame sent).
pub async fn pump(
    hub: &ConnectionHub,
    id: &ConnectionId,
    socket: WebSocket,
    mut outbound: mpsc::Receiver<Outbound>,
) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = outbound.recv() => match frame {
                Some(frame) => {
                    let message = match frame {
                        Outbound::Text(text) => Message::Text(text.into()),
                        Outbound::Binary(bytes) => Message::Binary(bytes.into()),
                    };
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
                None => {
                    let close = CloseFrame { code: close_code::NORMAL, reason: "".into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            },
            inbound = stream.next() => match inbound {
                Some(Ok(Message::Close(_))) => {
                    // Flushes the close reply tungstenite queued.
                    let _ = sink.close().await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(Message::Text(_) | Message::Binary(_))) => hub.touch(id),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            },
        }
    }
    debug!(connection = %id, "websocket closed");
}
