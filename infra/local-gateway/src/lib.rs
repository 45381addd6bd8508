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
//! - [`gateway`]: API Gateway's WebSocket semantics (`$connect` before the upgrade, route
//!   selection, limits, timeouts, `$disconnect`) invoking the same handler as the Lambdas.
//! - [`app`]: the whole gateway: WebSocket at `/`, the HTTP API and `POST /dev/token` on the
//!   public port, `@connections` on a loopback-only port of its own; memory backend by default,
//!   real servers by option.
//! - [`delivery`]: how the hosted handlers' frames reach the sockets: in-process (default) or
//!   through `@connections` with the AWS SDK (`--delivery apigw`).
//! - [`console`]: the built web console under `/app/`, and the browser redirect from `/`.
//! - [`lan`]: `--lan`, play from other devices: the LAN listener's `Host` check and
//!   `POST /lan/invites`.
//! - [`demo`]: `--demo` seed data.
//! - [`migrate`]: `local-gateway migrate`, the explicit step that creates the stores' indexes.
//! - [`import`]: `local-gateway import-compendium`, which loads the SRD 5.1 templates.

pub mod app;
pub mod connections;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod gateway;
pub mod import;
pub mod lan;
pub mod migrate;
pub mod storage;

use std::net::SocketAddr;

use axum::Router;
use axum::serve::{ListenerExt, TapIo};
use tokio::net::{TcpListener, TcpStream};

pub use connections::{ConnectionHub, router};

/// Serves `router` on `listener` until the task is dropped, giving handlers the peer address
/// (used as the connection's `identity.sourceIp`).
///
/// Every accepted socket gets `TCP_NODELAY`: a broadcast is many small frames, and with Nagle's
/// algorithm on, a frame written while the previous one is unacknowledged waits for the
/// client's delayed ACK (up to 40 ms on Linux), which split delivery latencies into a fast and
/// a 40 ms group.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        no_delay(listener),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// `listener`, with `TCP_NODELAY` set on every socket it accepts (see [`serve`]).
pub fn no_delay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn set(tcp: &mut TcpStream) {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on an accepted socket");
        }
    }
    listener.tap_io(set as fn(&mut TcpStream))
}

/// What the gateway prints at start: URLs and how to get tokens.
pub fn banner(running: &app::Running) -> String {
    let mut out = format!(
        "Dungeon Lab local gateway\n  WebSocket: {ws}?token=<connect ticket from POST /connect-ticket{dev}>\n  HTTP API:  {http}  (OpenAPI: {http}/openapi.json)\n",
        ws = running.ws_url(),
        http = running.http_url(),
        dev = if running.deps.auth.connect_tokens()
            == dlab_service::auth::ConnectTokens::TicketsAndUserTokens
        {
            ", or a dev token"
        } else {
            ""
        },
    );
    out.push_str(&format!(
        "  @connections: {}  (loopback only)\n  Delivery:  {} ({})\n",
        running.management_url(),
        running.delivery,
        match running.delivery {
            delivery::Delivery::InProcess => "frames go straight to the sockets",
            delivery::Delivery::Apigw => "frames are posted to @connections with the AWS SDK",
        }
    ));
    if let Some(dir) = &running.web_dir {
        let url = running.console_url().unwrap_or_default();
        if console::is_built(dir) {
            out.push_str(&format!("  Console:   {url}  (from {})\n", dir.display()));
        } else {
            out.push_str(&format!(
                "  Console:   not built in {}: run `bash infra/web-build.sh` (or start with `bash infra/run.sh`); {url} says so too\n",
                dir.display()
            ));
        }
    }
    if let Some(lan) = &running.lan {
        out.push_str(&format!(
            "  LAN:       {url}  (players join with invite links: POST /lan/invites, valid {ttl} s; this run's secret dies with it)\n",
            url = lan.console_url(),
            ttl = lan.signer.ttl().as_secs(),
        ));
        if let Some(local) = running.loopback_addr {
            out.push_str(&format!(
                "  This machine: http://{local}  (dev tokens only here)\n"
            ));
        }
    }
    if running.dev_tokens {
        out.push_str(&format!(
            "  Tokens:    curl -s -X POST {http}/dev/token -H 'content-type: application/json' -d '{{\"userId\":\"alice\"}}'\n",
            http = running.local_http_url()
        ));
    } else {
        out.push_str(
            "  Tokens:    dev tokens are off; sign HS256 user tokens with JWT_SECRET and trade them for tickets\n",
        );
    }
    out.push_str(&running.storage.describe());
    if let Some(loaded) = &running.compendium {
        out.push_str(&loaded.describe());
    }
    match running.maintenance_every {
        Some(every) => out.push_str(&format!(
            "  Maintenance: backfill, compaction and idle release every {} s\n",
            every.as_secs()
        )),
        None => {
            out.push_str("  Maintenance: timer off (POST /sessions/{id}/compact still works)\n")
        }
    }
    if let Some(demo) = &running.demo {
        out.push_str(&format!(
            "  Demo:      campaign {} / session {}\n",
            demo.campaign, demo.session
        ));
        for (user, token) in &demo.tokens {
            out.push_str(&format!("    {user}: {token}\n"));
        }
        out.push_str(&format!(
            "  Try:       websocat '{}?token=<alice token>' then send {{\"action\":\"subscribe\",\"sessionId\":\"{}\",\"since\":0}}\n",
            running.ws_url(),
            demo.session
        ));
    }
    out.push_str("Press Ctrl-C to stop.");
    out
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_no_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = no_delay(listener);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (io, _) = listener.accept().await;
        let _client = client.await.unwrap().unwrap();
        assert!(
            io.nodelay().unwrap(),
            "TCP_NODELAY is set on accepted sockets"
        );
    }
}
