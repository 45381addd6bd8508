//! The one-machine stand-in for API Gateway: holds the WebSocket connections and answers the
//! `@connections` management API, so the real `aws-sdk-apigatewaymanagement` client (and the
//! service's `ApiGatewayNotifier`) work locally without any cloud account.
//!
//! Neither moto nor LocalStack's community edition can stand in here (moto accepts posts to any
//! id and never answers 410; LocalStack answers 501 for WebSocket APIs), so this crate
//! implements the management API itself, including `410 GoneException` for closed, unknown and
//! still-connecting ids.
//!
//! # Layout
//! - [`connections`]: the registry of live sockets ([`ConnectionHub`]), the `@connections`
//!   routes and a minimal `/ws` route.
//! - [`router`] / [`serve`]: the axum router of both, and how to run it on a listener.
//!
//! This is the library part only. The full gateway (the `$connect` / `$disconnect` /
//! `$default` routes invoking the same handlers as the Lambdas, the HTTP API, a binary) comes
//! later and builds on [`ConnectionHub::register`] / [`ConnectionHub::open`], which already
//! model API Gateway's connecting-then-open lifecycle.

pub mod connections;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

pub use connections::{ConnectionHub, router};

/// Serves `router` on `listener` until the task is dropped, giving handlers the peer address
/// (used as the connection's `identity.sourceIp`).
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
