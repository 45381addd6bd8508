//! The `Notifier` contract against the memory notifier and against `ApiGatewayNotifier` posting
//! through the real SDK to the local gateway's `@connections` API, whose sockets are real
//! WebSocket clients; plus the management API's exact answers (JSON shapes, error headers,
//! connecting connections, deletes, limits).
//!
//! Everything runs in-process on 127.0.0.1; no external server is needed.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use dlab_core::ids::ConnectionId;
use dlab_store::apigw::ApiGatewayNotifier;
use dlab_store::{Notifier, NotifyError, PostOutcome};
use dlab_tests::contract::notifier::{
    self, GatewayPeer, LocalGateway, MemoryHarness, Peer, STAGE, TEST_USER_AGENT, WAIT,
    test_sdk_config,
};
use futures::SinkExt;
use local_gateway::connections::Identity;
use local_gateway::connections::management::MAX_POST_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn memory_notifier_contract() {
    notifier::delivers_frames_and_reports_gone(&MemoryHarness::new()).await;
}

#[tokio::test]
async fn api_gateway_notifier_contract_on_the_local_gateway() {
    notifier::delivers_frames_and_reports_gone(&LocalGateway::start().await).await;
}

/// A raw HTTP/1.1 exchange, to check status, headers and body byte for byte.
struct RawResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn raw(gateway: &LocalGateway, method: &str, path: &str, body: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        gateway.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(response[..split].to_vec()).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    }
}

/// The management path of `id`, percent-encoded like the SDK does (ids are base64: `+`, `/`
/// and `=` need it).
fn path(id: &ConnectionId) -> String {
    let encoded = id
        .as_str()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    format!("/@connections/{encoded}")
}

fn assert_gone(response: &RawResponse) {
    assert_eq!(response.status, 410);
    assert_eq!(
        response.headers.get("x-amzn-errortype").map(String::as_str),
        Some("GoneException")
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&response.body).expect("JSON body"),
        serde_json::json!({"message": "Gone"})
    );
}

#[tokio::test]
async fn gone_is_410_with_the_error_type_header_and_the_sdk_sees_gone_exception() {
    let gateway = LocalGateway::start().await;
    let unknown = ConnectionId::new("Zm9vYmFyYmF6cXU=");
    for method in ["POST", "GET", "DELETE"] {
        assert_gone(&raw(&gateway, method, &path(&unknown), b"x").await);
        assert_gone(
            &raw(
                &gateway,
                method,
                &format!("/{STAGE}{}", path(&unknown)),
                b"x",
            )
            .await,
        );
    }

    let client = gateway.notifier.client();
    let err = client
        .post_to_connection()
        .connection_id(unknown.as_str())
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("unknown id");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "PostToConnection: {err:?}"
    );
    let err = client
        .get_connection()
        .connection_id(unknown.as_str())
        .send()
        .await
        .expect_err("unknown id");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "GetConnection: {err:?}"
    );
    let err = client
        .delete_connection()
        .connection_id(unknown.as_str())
        .send()
        .await
        .expect_err("unknown id");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "DeleteConnection: {err:?}"
    );
}

#[tokio::test]
async fn a_connecting_connection_is_gone_until_open() {
    let gateway = LocalGateway::start().await;
    let (id, mut frames) = gateway.hub.register(Identity {
        source_ip: "127.0.0.1".into(),
        user_agent: "connecting".into(),
    });
    assert_eq!(
        gateway
            .notifier
            .post(&id, b"during $connect")
            .await
            .unwrap(),
        PostOutcome::Gone,
        "API Gateway answers 410 to posts before the connection is established"
    );
    let err = gateway
        .notifier
        .client()
        .get_connection()
        .connection_id(id.as_str())
        .send()
        .await
        .expect_err("connecting");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_gone_exception())
    );

    gateway.hub.open(&id).unwrap();
    assert_eq!(
        gateway.notifier.post(&id, b"welcome").await.unwrap(),
        PostOutcome::Delivered
    );
    assert_eq!(
        frames.recv().await,
        Some(local_gateway::connections::Outbound::Text("welcome".into())),
        "nothing posted while connecting was queued"
    );
}

#[tokio::test]
async fn utf8_posts_are_text_frames_and_other_bytes_binary() {
    let gateway = LocalGateway::start().await;
    let mut peer = gateway.connect().await;
    let id = peer.id().clone();
    gateway
        .notifier
        .post(&id, "{\"a\":\"☃\"}".as_bytes())
        .await
        .unwrap();
    gateway.notifier.post(&id, &[0xc3, 0x28]).await.unwrap();
    gateway.notifier.post(&id, b"").await.unwrap();
    assert_eq!(
        peer.next_message().await,
        Some(Message::Text("{\"a\":\"☃\"}".into()))
    );
    assert_eq!(
        peer.next_message().await,
        Some(Message::Binary(vec![0xc3, 0x28].into()))
    );
    assert_eq!(peer.next_message().await, Some(Message::Text("".into())));
}

#[tokio::test]
async fn get_connection_answers_api_gateway_json() {
    let gateway = LocalGateway::start().await;
    let mut peer = gateway.connect().await;
    let id = peer.id().clone();

    let response = raw(&gateway, "GET", &format!("/{STAGE}{}", path(&id)), b"").await;
    assert_eq!(response.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["connectedAt", "identity", "lastActiveAt"]);
    assert_eq!(
        json["identity"],
        serde_json::json!({"sourceIp": "127.0.0.1", "userAgent": TEST_USER_AGENT})
    );
    let connected_at = json["connectedAt"].as_str().unwrap();
    assert_eq!(connected_at.len(), "2024-01-01T00:00:00.000Z".len());
    assert!(connected_at.ends_with('Z') && connected_at.as_bytes()[10] == b'T');

    let sdk = gateway
        .notifier
        .client()
        .get_connection()
        .connection_id(id.as_str())
        .send()
        .await
        .expect("GetConnection");
    let identity = sdk.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some(TEST_USER_AGENT));
    let connected = *sdk.connected_at().expect("ConnectedAt");
    assert_eq!(sdk.last_active_at(), Some(&connected));

    tokio::time::sleep(Duration::from_millis(20)).await;
    peer.socket
        .send(Message::Text("{\"action\":\"ping\"}".into()))
        .await
        .unwrap();
    let later = tokio::time::timeout(WAIT, async {
        loop {
            let out = gateway
                .notifier
                .client()
                .get_connection()
                .connection_id(id.as_str())
                .send()
                .await
                .expect("GetConnection");
            let last = *out.last_active_at().expect("LastActiveAt");
            if last > connected {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("LastActiveAt moves when the client sends");
    assert!(later.secs() >= connected.secs());
}

#[tokio::test]
async fn delete_connection_closes_the_socket_and_later_posts_are_gone() {
    let gateway = LocalGateway::start().await;
    let mut peer = gateway.connect().await;
    let id = peer.id().clone();
    gateway.notifier.post(&id, b"last words").await.unwrap();

    let response = raw(&gateway, "DELETE", &path(&id), b"").await;
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());

    assert_eq!(
        peer.next_message().await,
        Some(Message::Text("last words".into())),
        "frames queued before the delete are delivered"
    );
    assert!(
        matches!(peer.next_message().await, Some(Message::Close(_)) | None),
        "the socket is closed"
    );
    assert_eq!(
        gateway.notifier.post(&id, b"too late").await.unwrap(),
        PostOutcome::Gone
    );

    let peer2 = gateway.connect().await;
    gateway
        .notifier
        .client()
        .delete_connection()
        .connection_id(peer2.id().as_str())
        .send()
        .await
        .expect("DeleteConnection through the SDK");
    peer2.wait_released().await;
}

#[tokio::test]
async fn posts_over_128_kib_fail_without_being_gone() {
    let gateway = LocalGateway::start().await;
    let mut peer = gateway.connect().await;
    let id = peer.id().clone();

    let at_limit = vec![b'a'; MAX_POST_BYTES];
    assert_eq!(
        gateway.notifier.post(&id, &at_limit).await.unwrap(),
        PostOutcome::Delivered
    );
    assert_eq!(peer.recv().await, Some(at_limit));

    let NotifyError::Failed(source) = gateway
        .notifier
        .post(&id, &vec![b'a'; MAX_POST_BYTES + 1])
        .await
        .expect_err("over the limit");
    let sdk = source
        .downcast_ref::<aws_sdk_apigatewaymanagement::error::SdkError<
            aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError,
        >>()
        .expect("the SDK error is kept as the source");
    assert!(
        sdk.as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception())
    );
}

#[tokio::test]
async fn ids_with_plus_slash_and_equals_survive_percent_encoding() {
    let gateway = LocalGateway::start().await;
    let mut wanted: Vec<char> = vec!['+', '/'];
    let mut tried = 0;
    while !wanted.is_empty() {
        tried += 1;
        assert!(tried < 2_000, "no id with {wanted:?}");
        let (id, mut frames) = gateway.hub.register(Identity::default());
        assert!(id.as_str().ends_with('='));
        let Some(pos) = wanted.iter().position(|c| id.as_str().contains(*c)) else {
            gateway.hub.remove(&id);
            continue;
        };
        wanted.remove(pos);
        gateway.hub.open(&id).unwrap();
        assert_eq!(
            gateway.notifier.post(&id, b"ok").await.unwrap(),
            PostOutcome::Delivered,
            "id {id}"
        );
        assert!(frames.recv().await.is_some());
    }
}

#[tokio::test]
async fn an_endpoint_without_stage_works_too() {
    let gateway = LocalGateway::start().await;
    let mut peer = gateway.connect().await;
    let bare = ApiGatewayNotifier::from_endpoint(
        &test_sdk_config().await,
        format!("http://{}", gateway.addr),
    );
    assert_eq!(
        bare.post(peer.id(), b"no stage").await.unwrap(),
        PostOutcome::Delivered
    );
    assert_eq!(peer.recv().await.as_deref(), Some(&b"no stage"[..]));
    assert!(gateway.endpoint().ends_with("/local"));
}

#[tokio::test]
async fn a_socket_closed_by_the_client_is_gone() {
    let gateway = LocalGateway::start().await;
    let peer: GatewayPeer = gateway.connect().await;
    let id = peer.id().clone();
    drop(peer.socket);
    tokio::time::timeout(WAIT, async {
        while gateway.hub.get(&id).is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a dropped TCP connection is released");
    assert_eq!(
        gateway.notifier.post(&id, b"anyone?").await.unwrap(),
        PostOutcome::Gone
    );
}
