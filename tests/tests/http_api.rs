//! The HTTP API in-process over the memory backend, and once over a real socket.

use dlab_service::http::{
    CorsConfig, HttpSettings, MAX_ACTOR_BYTES, MAX_ACTORS_PER_CAMPAIGN, MAX_LIST_BYTES,
    MAX_SESSIONS_PER_CAMPAIGN,
};
use dlab_store::model::CampaignQuotas;
use dlab_tests::http_cases::{self, memory_world};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                http_cases::$name(&memory_world()).await;
            })*
        }
        /// The same cases on Redis and MongoDB (nx-27017).
        mod real {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(world) = http_cases::real_world().await else { return };
                http_cases::$name(&world).await;
            })*
        }
    };
}

cases!(
    public_routes_need_no_token,
    every_protected_route_needs_a_valid_bearer,
    connect_ticket_is_for_the_websocket,
    campaigns_are_created_listed_and_guarded,
    members_are_managed_by_gms,
    removing_a_member_unsubscribes_their_connections,
    compendium_is_searched_and_read,
    compendium_batch_is_for_admins,
    compendium_filters_are_checked,
    actors_are_created_patched_and_deleted,
    sessions_are_created_and_read,
    adding_an_actor_commits_broadcasts_and_copies,
    session_actor_rules,
    an_actor_too_large_for_an_event_is_refused,
    events_are_paged,
    snapshot_is_served_when_there_is_one,
    session_state_is_rehydrated_when_hot_state_is_gone,
    bad_bodies_are_refused,
    unknown_routes_and_methods,
    cors_allows_only_configured_origins,
    openapi_lists_every_route,
    openapi_schemas_match_the_answers,
    lists_page_by_cursor_and_limit,
    lists_are_cut_by_the_byte_budget,
    the_default_budget_is_one_mebibyte,
    quotas_are_enforced_per_campaign,
    events_never_end_early_over_a_hole,
);

#[test]
fn http_settings_are_read_from_the_variables() {
    let defaults = HttpSettings::from_lookup(|_| None).unwrap();
    assert_eq!(defaults.max_list_bytes, 1024 * 1024);
    assert_eq!(defaults.quotas, CampaignQuotas::default());
    assert_eq!(
        (
            defaults.quotas.max_actors,
            defaults.quotas.max_actor_bytes,
            defaults.quotas.max_sessions
        ),
        (1000, 256 * 1024, 200)
    );
    let vars = [
        (MAX_LIST_BYTES, "65536"),
        (MAX_ACTORS_PER_CAMPAIGN, " 50 "),
        (MAX_ACTOR_BYTES, "8192"),
        (MAX_SESSIONS_PER_CAMPAIGN, "7"),
    ];
    let set = HttpSettings::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    assert_eq!(set.max_list_bytes, 65536);
    assert_eq!(
        set.quotas,
        CampaignQuotas {
            max_actors: 50,
            max_actor_bytes: 8192,
            max_sessions: 7
        }
    );
    for (var, bad) in [
        (MAX_LIST_BYTES, "0"),
        (MAX_LIST_BYTES, "6000000"),
        (MAX_ACTORS_PER_CAMPAIGN, "-1"),
        (MAX_ACTORS_PER_CAMPAIGN, "0"),
        (MAX_ACTOR_BYTES, "abc"),
        (MAX_SESSIONS_PER_CAMPAIGN, "1.5"),
    ] {
        let err = HttpSettings::from_lookup(|name| (name == var).then(|| bad.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(var), "{var}={bad}: {err}");
    }
}

#[test]
fn cors_origins_are_parsed_from_the_variable() {
    assert_eq!(CorsConfig::parse("").unwrap(), CorsConfig::None);
    assert_eq!(CorsConfig::parse(" , ").unwrap(), CorsConfig::None);
    assert_eq!(CorsConfig::parse("*").unwrap(), CorsConfig::Any);
    assert_eq!(
        CorsConfig::parse("https://a.example, http://localhost:5173").unwrap(),
        CorsConfig::Origins(vec![
            "https://a.example".into(),
            "http://localhost:5173".into()
        ])
    );
    for bad in [
        "*,https://a.example",
        "a.example",
        "https://a.example/",
        "ftp://x",
    ] {
        let err = CorsConfig::parse(bad).unwrap_err().to_string();
        assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{bad}: {err}");
    }
}

/// Sends one HTTP/1.1 request over a fresh TCP connection; returns status and JSON body.
async fn http1(addr: std::net::SocketAddr, request: String) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_serves_a_real_socket() {
    let world = memory_world();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, world.app.clone()).into_future());

    let (status, body) = http1(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));

    let user = world.user("socket");
    let token = world.token(&user);
    let payload = r#"{"name": "Over the wire"}"#;
    let (status, created) = http1(
        addr,
        format!(
            "POST /campaigns HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, list) = http1(
        addr,
        format!(
            "GET /campaigns HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["id"], created["id"]);
    let (status, err) = http1(
        addr,
        "GET /campaigns HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["code"], "unauthorized");
    server.abort();
}
