//! `--lan`: invites (GM only, a member added, a token that works for the HTTP API and connect
//! tickets until it expires), the `Host` check, dev tokens only for this machine, a secret of
//! its own per run, and no invite route outside LAN mode.
//!
//! The LAN address is `DLAB_TEST_LAN_ADDR` when set: `bash infra/lan-test.sh` runs this file in
//! a network namespace of its own where 10.77.0.1 is a non-loopback address of a veth pair, so
//! no packet can leave it. Without it the gateway's LAN address is 127.0.0.1 (everything but
//! the peer check of dev tokens is still exercised; the test prints which).

use std::net::IpAddr;
use std::time::Duration;

use dlab_core::ids::UserId;
use futures::{SinkExt, StreamExt};
use local_gateway::app::{Backends, Options, Running, StartError, start};
use local_gateway::gateway::Limits;
use local_gateway::lan::{InviteBody, LanOptions, now_secs};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TTL: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(10);

fn lan_ip() -> IpAddr {
    match std::env::var("DLAB_TEST_LAN_ADDR") {
        Ok(raw) => raw.parse().expect("DLAB_TEST_LAN_ADDR is an IP address"),
        Err(_) => {
            eprintln!("DLAB_TEST_LAN_ADDR unset: testing LAN mode on 127.0.0.1");
            IpAddr::from([127, 0, 0, 1])
        }
    }
}

fn options(lan: Option<IpAddr>) -> Options {
    Options {
        listen: "127.0.0.1:0".parse().expect("addr"),
        backends: Backends::default(),
        dev_tokens: true,
        demo: false,
        limits: Limits::default(),
        jwt_secret: None,
        maintenance_every: None,
        delivery: Default::default(),
        compendium: Default::default(),
        web_dir: None,
        lan: lan.map(|ip| LanOptions {
            addr: Some(ip),
            invite_ttl: TTL,
        }),
    }
}

/// Calls the gateway at `base` with `Host: host` (the LAN address when `None`).
struct Api {
    http: reqwest::Client,
    base: String,
    host: String,
}

impl Api {
    fn lan(running: &Running) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: running.http_url(),
            host: running.addr.to_string(),
        }
    }

    fn local(running: &Running) -> Self {
        let addr = running.loopback_addr.unwrap_or(running.addr);
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            host: format!("localhost:{}", addr.port()),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("host", &self.host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }
}

async fn dev_token(api: &Api, user: &str) -> (u16, Value) {
    api.post("/dev/token", None, json!({"userId": user})).await
}

async fn token_of(api: &Api, user: &str) -> String {
    let (status, body) = dev_token(api, user).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

async fn invite(api: &Api, token: &str, campaign: &str, user: &str) -> (u16, Value) {
    api.post(
        "/lan/invites",
        Some(token),
        json!({"campaignId": campaign, "userId": user}),
    )
    .await
}

fn member_role(campaign: &Value, user: &str) -> Option<String> {
    campaign["members"]
        .as_array()?
        .iter()
        .find(|m| m["userId"] == user)
        .and_then(|m| m["role"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gm_invites_a_player_whose_link_works_until_it_expires() {
    let ip = lan_ip();
    let running = start(options(Some(ip))).await.expect("start in LAN mode");
    assert_eq!(running.addr.ip(), ip, "listening on the LAN address");
    assert_eq!(
        running.loopback_addr.is_some(),
        !ip.is_loopback(),
        "a second, loopback listener when the LAN address is not loopback"
    );
    let lan = running.lan.clone().expect("LAN mode");
    let banner = local_gateway::banner(&running);
    assert!(banner.contains(&lan.console_url()), "{banner}");
    assert!(
        !banner.contains("or a dev token"),
        "LAN mode takes tickets only at $connect: {banner}"
    );
    assert_eq!(lan.console_url(), format!("http://{}/app/", running.addr));

    let local = Api::local(&running);
    let remote = Api::lan(&running);
    let alice = token_of(&local, "alice").await;
    let (status, campaign) = remote
        .post("/campaigns", Some(&alice), json!({"name": "LAN night"}))
        .await;
    assert_eq!(status, 201, "{campaign}");
    let campaign_id = campaign["id"].as_str().expect("campaign id").to_owned();

    // Bob, not a member yet, cannot invite (403), nor anyone without a token (401).
    let bob_dev = token_of(&local, "bob").await;
    let (status, body) = invite(&remote, &bob_dev, &campaign_id, "bob").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = remote
        .post(
            "/lan/invites",
            None,
            json!({"campaignId": campaign_id, "userId": "bob"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = remote
        .post(
            "/lan/invites",
            Some(&alice),
            json!({"campaignId": campaign_id, "userId": "bob", "role": "gm"}),
        )
        .await;
    assert_eq!(status, 400, "an invite makes players only: {body}");
    let (status, _) = invite(&remote, &alice, "no-such-campaign", "bob").await;
    assert_eq!(status, 404);

    // Alice invites bob: he becomes a player, and the link carries his token.
    let before = now_secs();
    let (status, body) = invite(&remote, &alice, &campaign_id, "bob").await;
    assert_eq!(status, 200, "{body}");
    let after = now_secs();
    let link: InviteBody = serde_json::from_value(body).expect("an invite");
    assert_eq!(
        link.url,
        format!("http://{}/app/#/join?token={}", running.addr, link.token)
    );
    assert!(
        (before + TTL.as_secs()) * 1000 <= link.expires_at
            && link.expires_at <= (after + TTL.as_secs()) * 1000,
        "expires after the TTL: {}",
        link.expires_at
    );
    assert!(link.qr_svg.starts_with("<?xml") && link.qr_svg.contains("<svg"));
    assert_eq!(
        running
            .deps
            .auth
            .verify_user(Some(&link.token))
            .await
            .expect("a user token"),
        UserId::new("bob"),
        "single-user: the token names bob"
    );
    let (_, campaign) = remote
        .get(&format!("/campaigns/{campaign_id}"), &alice)
        .await;
    assert_eq!(member_role(&campaign, "bob").as_deref(), Some("player"));

    // Bob, on another device, with only the link: the HTTP API, a ticket and a socket.
    let (status, list) = remote.get("/campaigns", &link.token).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == campaign_id.as_str()),
        "{list}"
    );
    let (status, ticket) = remote
        .post("/connect-ticket", Some(&link.token), json!({}))
        .await;
    assert_eq!(status, 200, "{ticket}");
    let ticket = ticket["ticket"].as_str().expect("ticket");
    let mut events = running.hub.events();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?token={ticket}", running.ws_url()))
            .await
            .expect("a ticket from the invite token opens a socket");
    match tokio::time::timeout(WAIT, events.recv()).await {
        Ok(Ok(local_gateway::connections::HubEvent::Opened(_))) => {}
        other => panic!("no open event: {other:?}"),
    }
    ws.send(Message::Close(None)).await.ok();
    drop(ws.next().await);
    // The token itself opens no socket: LAN mode takes tickets only.
    match tokio_tungstenite::connect_async(format!("{}?token={}", running.ws_url(), link.token))
        .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        Err(e) => panic!("refused without a status: {e}"),
        Ok(_) => panic!("a user token opened a socket in LAN mode"),
    }
    // A player cannot invite.
    let (status, _) = invite(&remote, &link.token, &campaign_id, "mallory").await;
    assert_eq!(status, 403);

    // An invite for a co-GM leaves the role as it is.
    let (status, _) = remote
        .post(
            &format!("/campaigns/{campaign_id}/members"),
            Some(&alice),
            json!({"userId": "dave", "role": "gm"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = invite(&remote, &alice, &campaign_id, "dave").await;
    assert_eq!(status, 200);
    let (_, campaign) = remote
        .get(&format!("/campaigns/{campaign_id}"), &alice)
        .await;
    assert_eq!(member_role(&campaign, "dave").as_deref(), Some("gm"));

    // Expired: the same signer with a clock two TTLs back.
    let old = lan
        .signer
        .sign(&UserId::new("bob"), now_secs() - 2 * TTL.as_secs());
    let (status, body) = remote.get("/campaigns", &old.token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );
    let (status, _) = remote
        .post("/connect-ticket", Some(&old.token), json!({}))
        .await;
    assert_eq!(status, 401);

    // A new run has a new secret: yesterday's link is dead.
    let next = start(options(Some(ip)))
        .await
        .expect("a second LAN gateway");
    let (status, _) = Api::lan(&next).get("/campaigns", &link.token).await;
    assert_eq!(status, 401, "an invite of another run is refused");
    next.shutdown().await;
    running.shutdown().await;
}

#[tokio::test]
async fn only_this_gateway_s_host_names_are_answered() {
    let running = start(options(Some(lan_ip()))).await.expect("start");
    let remote = Api::lan(&running);
    let (status, _) = remote
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, 200, "Host = the LAN address");
    let bare = Api {
        host: running.addr.ip().to_string(),
        ..Api::lan(&running)
    };
    let (status, _) = bare
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, 200, "Host = the bare LAN address");
    let mut refused = vec![
        "evil.example".to_owned(),
        format!("rebound.attacker.example:{}", running.addr.port()),
    ];
    // A loopback name is allowed with any port; the LAN address only with the gateway's.
    if !running.addr.ip().is_loopback() {
        refused.push(format!("{}:{}", running.addr.ip(), running.addr.port() + 1));
    }
    for host in refused {
        let api = Api {
            host: host.clone(),
            ..Api::lan(&running)
        };
        for path in ["/healthz", "/", "/campaigns", "/lan/invites", "/dev/token"] {
            let (status, body) = api.call(reqwest::Method::GET, path, None, None).await;
            assert_eq!(status, 403, "Host {host} {path}: {body}");
        }
        // The WebSocket endpoint too.
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                running.ws_url(),
            )
            .expect("request");
        request
            .headers_mut()
            .insert("host", host.parse().expect("header"));
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 403, "Host {host}");
            }
            other => panic!("Host {host}: {:?}", other.map(|_| ())),
        }
    }
    running.shutdown().await;
}

#[tokio::test]
async fn dev_tokens_are_for_this_machine_only() {
    let running = start(options(Some(lan_ip()))).await.expect("start");
    assert!(running.dev_tokens);
    // A loopback Host on the loopback listener: served.
    let (status, body) = dev_token(&Api::local(&running), "alice").await;
    assert_eq!(status, 200, "{body}");
    if running.addr.ip().is_loopback() {
        eprintln!(
            "LAN address is loopback: dev tokens for the LAN Host and the peer check are not exercised"
        );
    } else {
        // The LAN address as Host: refused.
        let (status, body) = dev_token(&Api::lan(&running), "mallory").await;
        assert_eq!(status, 403, "{body}");
        assert!(body.get("token").is_none());
        // A device on the LAN writing a loopback Host: its peer address gives it away.
        let spoofed = Api {
            host: format!("localhost:{}", running.addr.port()),
            ..Api::lan(&running)
        };
        let (status, body) = dev_token(&spoofed, "mallory").await;
        assert_eq!(status, 403, "{body}");
        assert!(body.get("token").is_none());
    }
    running.shutdown().await;
}

#[tokio::test]
async fn lan_mode_refuses_a_fixed_secret_and_needs_dev_tokens() {
    let fixed = Options {
        jwt_secret: Some("a-fixed-secret-of-at-least-32-bytes".into()),
        ..options(Some(lan_ip()))
    };
    assert!(matches!(start(fixed).await, Err(StartError::LanWithSecret)));
    let no_dev = Options {
        dev_tokens: false,
        ..options(Some(lan_ip()))
    };
    assert!(matches!(
        start(no_dev).await,
        Err(StartError::NoTokenSource { .. })
    ));
}

#[tokio::test]
async fn there_are_no_invites_outside_lan_mode() {
    let running = start(options(None)).await.expect("start");
    assert!(running.lan.is_none());
    let api = Api::local(&running);
    let alice = token_of(&api, "alice").await;
    let (status, campaign) = api
        .post("/campaigns", Some(&alice), json!({"name": "Home"}))
        .await;
    assert_eq!(status, 201);
    let id = campaign["id"].as_str().expect("id");
    let (status, body) = invite(&api, &alice, id, "bob").await;
    assert_eq!(status, 404, "{body}");
    running.shutdown().await;
}

/// `--lan` without an address takes the one facing the LAN. Only where the test knows it:
/// in `infra/lan-test.sh`'s namespace (`DLAB_TEST_LAN_DETECT`), whose default route is the
/// veth holding `DLAB_TEST_LAN_ADDR`.
#[tokio::test]
async fn without_an_address_lan_mode_takes_the_one_facing_the_lan() {
    if std::env::var_os("DLAB_TEST_LAN_DETECT").is_none() {
        eprintln!("DLAB_TEST_LAN_DETECT unset: detection is checked by infra/lan-test.sh only");
        return;
    }
    let ip = lan_ip();
    assert_eq!(local_gateway::lan::detect_lan_ip().expect("detected"), ip);
    let running = start(Options {
        lan: Some(LanOptions::default()),
        ..options(None)
    })
    .await
    .expect("start with a detected address");
    assert_eq!(running.addr.ip(), ip);
    assert!(running.loopback_addr.is_some());
    running.shutdown().await;
}
