//! The gateway's API Gateway semantics, seen by the integration: a recording integration
//! stands in for the Lambda handler, so the test sees exactly the events a handler receives,
//! over a real WebSocket on a loopback port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::Router;
use futures::{SinkExt, StreamExt};
use local_gateway::connections::{ConnectionHub, HubEvent, management};
use local_gateway::gateway::{Integration, Limits, WsGateway};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const WAIT: Duration = Duration::from_secs(20);

/// Records every event as JSON; `$connect` with `?slow=1` sleeps for a minute, and one with
/// `?refuse=1` answers 401.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Value>>,
}

impl Recorder {
    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events().into_iter().find(&matches) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} event; got {:#?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Recording(Arc<Recorder>);

#[async_trait::async_trait]
impl Integration for Recording {
    async fn invoke(&self, event: ApiGatewayWebsocketProxyRequest) -> i64 {
        let query = event.query_string_parameters.clone();
        self.0
            .events
            .lock()
            .unwrap()
            .push(serde_json::to_value(&event).unwrap());
        if query.first("slow") == Some("1") {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if query.first("refuse") == Some("1") {
            401
        } else {
            200
        }
    }
}

struct Gateway {
    url: String,
    hub: ConnectionHub,
    recorder: Arc<Recorder>,
    _shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn gateway() -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = ConnectionHub::new();
    let recorder = Arc::new(Recorder::default());
    let (shutdown, rx) = watch::channel(false);
    let ws = WsGateway::new(
        hub.clone(),
        Arc::new(Recording(recorder.clone())),
        Limits {
            connect_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        addr.to_string(),
        rx,
    );
    let app = Router::new()
        .merge(ws.routes())
        .merge(management::routes().with_state(hub.clone()));
    let server = tokio::spawn(local_gateway::serve(listener, app));
    Gateway {
        url: format!("ws://{addr}/"),
        hub,
        recorder,
        _shutdown: shutdown,
        server,
    }
}

async fn open(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    WsError,
> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-table", "round-table".parse().unwrap());
    request
        .headers_mut()
        .insert("user-agent", "semantics-test/1".parse().unwrap());
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake answers")
        .map(|(ws, _)| ws)
}

fn status_of(result: Result<impl Sized, WsError>) -> u16 {
    match result {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("refused without a status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_receive_api_gateway_events_through_the_whole_lifecycle() {
    let gw = gateway().await;
    let mut hub_events = gw.hub.events();
    let mut ws = open(&format!("{}?token=t0k&seat=2", gw.url)).await.unwrap();
    let id = match tokio::time::timeout(WAIT, hub_events.recv()).await.unwrap() {
        Ok(HubEvent::Opened(id)) => id,
        other => panic!("{other:?}"),
    };

    let connect = gw
        .recorder
        .wait_for("$connect", |e| {
            e["requestContext"]["routeKey"] == "$connect"
        })
        .await;
    let ctx = &connect["requestContext"];
    assert_eq!(ctx["eventType"], "CONNECT");
    assert_eq!(ctx["connectionId"], id.as_str());
    assert_eq!(ctx["stage"], "local");
    assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["identity"]["userAgent"], "semantics-test/1");
    assert!(ctx["connectedAt"].as_i64().unwrap() > 0);
    assert!(ctx["requestTime"].as_str().unwrap().ends_with(" +0000"));
    // (The event type's query map serializes every value as a list.)
    assert_eq!(
        connect["queryStringParameters"],
        json!({"token": ["t0k"], "seat": ["2"]})
    );
    assert_eq!(connect["headers"]["x-table"], "round-table");
    assert_eq!(
        connect["multiValueHeaders"]["x-table"],
        json!(["round-table"])
    );
    assert!(connect["headers"]["sec-websocket-key"].is_string());

    // Route selection on `action`, `$default` otherwise; each message has its own messageId.
    ws.send(Message::text(r#"{"action":"submit","event":{}}"#))
        .await
        .unwrap();
    ws.send(Message::text(r#"{"action":"dance"}"#))
        .await
        .unwrap();
    let submit = gw
        .recorder
        .wait_for("submit", |e| e["requestContext"]["routeKey"] == "submit")
        .await;
    let default = gw
        .recorder
        .wait_for("$default", |e| {
            e["requestContext"]["routeKey"] == "$default"
        })
        .await;
    assert_eq!(submit["body"], r#"{"action":"submit","event":{}}"#);
    assert_eq!(default["body"], r#"{"action":"dance"}"#);
    for e in [&submit, &default] {
        assert_eq!(e["requestContext"]["eventType"], "MESSAGE");
        assert_eq!(e["requestContext"]["connectedAt"], ctx["connectedAt"]);
        assert!(e["requestContext"]["messageId"].is_string());
    }
    assert_ne!(
        submit["requestContext"]["messageId"],
        default["requestContext"]["messageId"]
    );
    // Handler answers are never sent to the client: nothing arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "the client received something nobody posted"
    );

    // `DeleteConnection`: the socket closes with 1000 and `$disconnect` still carries the
    // handshake's facts although the hub has already forgotten the connection.
    gw.hub.close(&id).unwrap();
    let mut close = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
        if let Message::Close(frame) = m {
            close = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(close, Some(1000));
    let gone = gw
        .recorder
        .wait_for("$disconnect", |e| {
            e["requestContext"]["routeKey"] == "$disconnect"
        })
        .await;
    let dctx = &gone["requestContext"];
    assert_eq!(dctx["eventType"], "DISCONNECT");
    assert_eq!(dctx["connectionId"], id.as_str());
    assert_eq!(dctx["connectedAt"], ctx["connectedAt"]);
    assert_eq!(dctx["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(dctx["disconnectStatusCode"], 1000);
    gw.server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_or_slow_connect_refuses_the_upgrade() {
    let gw = gateway().await;
    assert_eq!(status_of(open(&format!("{}?refuse=1", gw.url)).await), 401);
    // Slower than the integration timeout (300 ms here, 29 s as on AWS by default): 504.
    assert_eq!(status_of(open(&format!("{}?slow=1", gw.url)).await), 504);
    assert!(gw.hub.ids().is_empty(), "refused connections are forgotten");
    // Neither refused connection gets a `$disconnect` (it never was connected).
    assert!(
        gw.recorder
            .events()
            .iter()
            .all(|e| e["requestContext"]["routeKey"] == "$connect")
    );
    gw.server.abort();
}
