//! What the started gateway exposes to the network: `@connections` only on its own loopback
//! port, `/dev/token` only to loopback `Host` names, and dev mode (user tokens at `$connect`)
//! only when dev tokens are on and the gateway listens on loopback.

use std::time::Duration;

use dlab_service::auth::ConnectTokens;
use futures::StreamExt;
use local_gateway::app::{Backends, Options, Running, start};
use local_gateway::connections::HubEvent;
use local_gateway::gateway::Limits;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

fn options(dev_tokens: bool) -> Options {
    Options {
        listen: "127.0.0.1:0".parse().expect("addr"),
        backends: Backends::default(),
        dev_tokens,
        demo: false,
        limits: Limits::default(),
        jwt_secret: Some(format!("app-security-{}", uuid::Uuid::new_v4().simple())),
        maintenance_every: None,
        delivery: Default::default(),
        compendium: Default::default(),
        web_dir: None,
        lan: None,
    }
}

async fn dev_token(running: &Running, host: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/dev/token", running.http_url()))
        .json(&json!({"userId": "alice"}));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().await.expect("POST /dev/token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_api_is_served_only_on_its_loopback_port() {
    let running = start(options(true)).await.expect("start");
    assert!(running.management_addr.ip().is_loopback());
    assert_ne!(running.management_addr, running.addr);

    let (_, body) = dev_token(&running, None).await;
    let token = body["token"].as_str().expect("a dev token").to_owned();
    let mut events = running.hub.events();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?token={token}", running.ws_url()))
            .await
            .expect("dev mode connects with a dev token");
    let id = match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Ok(HubEvent::Opened(id))) => id,
        other => panic!("no open event: {other:?}"),
    };
    let path = |base: &str, stage: &str| {
        format!(
            "{base}{stage}/@connections/{}",
            // As the AWS SDK sends it: an id may hold `+` and `/` as well as `=`.
            id.as_str()
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    };
    let http = reqwest::Client::new();

    for stage in ["", "/local"] {
        let public = path(&running.http_url(), stage);
        for method in [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::DELETE,
        ] {
            let status = http
                .request(method.clone(), &public)
                .body("from the public port")
                .send()
                .await
                .expect("request")
                .status()
                .as_u16();
            assert_eq!(status, 404, "{method} {public} on the public port");
        }
    }
    assert!(
        running.hub.get_open(&id).is_ok(),
        "the public DELETE closed nothing"
    );

    let private = path(&running.management_url(), "/local");
    let got = http.get(&private).send().await.expect("GetConnection");
    assert_eq!(got.status().as_u16(), 200);
    let posted = http
        .post(&private)
        .body("from the management port")
        .send()
        .await
        .expect("PostToConnection");
    assert_eq!(posted.status().as_u16(), 200);
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("a message");
    assert_eq!(
        frame,
        Message::Text("from the management port".into()),
        "only the management port's post arrived"
    );
    ws.close(None).await.ok();
    running.shutdown().await;
}

#[tokio::test]
async fn dev_tokens_answer_only_loopback_host_names() {
    let running = start(options(true)).await.expect("start");
    let port = running.addr.port();
    for host in [
        None,
        Some(format!("localhost:{port}")),
        Some(format!("127.0.0.1:{port}")),
        Some(format!("[::1]:{port}")),
        Some("localhost".to_owned()),
    ] {
        let (status, body) = dev_token(&running, host.as_deref()).await;
        assert_eq!(status, 200, "Host {host:?}: {body}");
        assert!(body["token"].is_string());
    }
    for host in [
        format!("evil.example:{port}"),
        "rebound.attacker.example".to_owned(),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
    ] {
        let (status, body) = dev_token(&running, Some(&host)).await;
        assert_eq!(status, 403, "Host {host}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert!(body.get("token").is_none());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn dev_mode_is_passed_to_the_authenticator_explicitly() {
    let dev = start(options(true)).await.expect("start");
    assert!(dev.dev_tokens);
    assert_eq!(
        dev.deps.auth.connect_tokens(),
        ConnectTokens::TicketsAndUserTokens
    );
    dev.shutdown().await;

    let off = start(options(false)).await.expect("start");
    assert!(!off.dev_tokens);
    assert_eq!(off.deps.auth.connect_tokens(), ConnectTokens::TicketsOnly);
    let status = reqwest::Client::new()
        .post(format!("{}/dev/token", off.http_url()))
        .json(&json!({"userId": "alice"}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16();
    assert_eq!(status, 404, "no dev route without dev mode");
    let token = off.deps.auth.issue_user_token(
        &dlab_core::ids::UserId::new("alice"),
        Duration::from_secs(60),
    );
    match tokio_tungstenite::connect_async(format!("{}?token={token}", off.ws_url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(
                response.status().as_u16(),
                401,
                "a user token outside dev mode"
            );
        }
        Err(e) => panic!("refused without a status: {e}"),
        Ok(_) => panic!("a user token opened a socket outside dev mode"),
    }
    off.shutdown().await;
}
