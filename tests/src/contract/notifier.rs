//! Contract of [`Notifier`], and the two places frames can go: the memory notifier's channels
//! and real WebSocket clients of the local gateway (posted to through the real
//! `aws-sdk-apigatewaymanagement` client).
//!
//! A [`NotifierHarness`] opens connections that can be posted to and read from; the contract
//! body ([`delivers_frames_and_reports_gone`]) only uses that, so it runs unchanged against
//! [`MemoryHarness`] and [`LocalGateway`].

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_apigatewaymanagement::config::Credentials;
use dlab_core::ids::ConnectionId;
use dlab_store::apigw::ApiGatewayNotifier;
use dlab_store::memory::MemoryNotifier;
use dlab_store::{Notifier, PostOutcome};
use futures::StreamExt;
use local_gateway::connections::HubEvent;
use local_gateway::{ConnectionHub, router, serve};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::USER_AGENT;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use uuid::Uuid;

/// How long a peer waits for a frame, or the gateway for a socket to open or close.
pub const WAIT: Duration = Duration::from_secs(5);

/// The stage prefix of the local gateway's endpoint, as on AWS (`https://{domain}/{stage}`).
pub const STAGE: &str = "local";

/// The `User-Agent` the gateway's WebSocket clients send.
pub const TEST_USER_AGENT: &str = "dlab-tests/notifier-contract";

/// One open connection, seen from the client side.
#[async_trait]
pub trait Peer: Send {
    /// Its connection id.
    fn id(&self) -> &ConnectionId;
    /// The next frame's bytes; `None` when the connection closed or nothing came within
    /// [`WAIT`].
    async fn recv(&mut self) -> Option<Vec<u8>>;
    /// Closes the connection from the client side and waits until the server has let go of it.
    async fn close(self: Box<Self>);
}

/// A notifier and a way to open connections it can post to.
#[async_trait]
pub trait NotifierHarness: Send + Sync {
    /// The notifier under test.
    fn notifier(&self) -> &dyn Notifier;
    /// Opens a new connection.
    async fn open(&self) -> Box<dyn Peer>;
}

/// Posts and asserts `Delivered`.
async fn deliver(notifier: &dyn Notifier, peer: &dyn Peer, data: &[u8]) {
    assert_eq!(
        notifier.post(peer.id(), data).await.expect("post"),
        PostOutcome::Delivered,
        "post to open connection {}",
        peer.id()
    );
}

/// Frames reach exactly their connection, byte for byte and in posting order; a closed or
/// unknown connection is `Gone` (an outcome, not an error), and stays gone.
pub async fn delivers_frames_and_reports_gone(harness: &dyn NotifierHarness) {
    let notifier = harness.notifier();
    let mut a = harness.open().await;
    let mut b = harness.open().await;
    assert_ne!(a.id(), b.id());

    deliver(notifier, &*a, b"hello").await;
    assert_eq!(a.recv().await.as_deref(), Some(&b"hello"[..]));

    for i in 0..20 {
        deliver(notifier, &*a, format!("{{\"n\":{i}}}").as_bytes()).await;
    }
    for i in 0..20 {
        assert_eq!(
            a.recv().await,
            Some(format!("{{\"n\":{i}}}").into_bytes()),
            "frames arrive in posting order"
        );
    }

    deliver(notifier, &*b, b"for b").await;
    assert_eq!(
        b.recv().await.as_deref(),
        Some(&b"for b"[..]),
        "b got none of a's frames"
    );

    let large = serde_json::json!({
        "type": "events:batch",
        "events": (0..300).map(|i| format!("event-{i}-{}", "x".repeat(80))).collect::<Vec<_>>(),
        "unicode": "dé ☃ 🐉",
    })
    .to_string()
    .into_bytes();
    assert!(large.len() > 25_000);
    deliver(notifier, &*a, &large).await;
    assert_eq!(a.recv().await, Some(large), "a large frame arrives intact");

    let binary = vec![0x00, 0xff, 0xfe, 0x80, 0x41, 0x00];
    deliver(notifier, &*a, &binary).await;
    assert_eq!(
        a.recv().await,
        Some(binary),
        "non-UTF-8 bytes arrive intact"
    );

    let a_id = a.id().clone();
    a.close().await;
    for _ in 0..2 {
        assert_eq!(
            notifier.post(&a_id, b"after close").await.expect("post"),
            PostOutcome::Gone,
            "a closed connection is gone"
        );
    }

    deliver(notifier, &*b, b"still here").await;
    assert_eq!(b.recv().await.as_deref(), Some(&b"still here"[..]));

    let unknown = ConnectionId::new("Zm9vYmFyYmF6cXU=");
    assert_eq!(
        notifier.post(&unknown, b"anyone?").await.expect("post"),
        PostOutcome::Gone,
        "an unknown connection is gone"
    );
    b.close().await;
}

/// [`MemoryNotifier`] with its per-connection channels.
#[derive(Debug, Default)]
pub struct MemoryHarness {
    notifier: MemoryNotifier,
}

impl MemoryHarness {
    /// A fresh notifier.
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemoryPeer {
    id: ConnectionId,
    frames: mpsc::UnboundedReceiver<Vec<u8>>,
    notifier: MemoryNotifier,
}

#[async_trait]
impl Peer for MemoryPeer {
    fn id(&self) -> &ConnectionId {
        &self.id
    }

    async fn recv(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    async fn close(self: Box<Self>) {
        self.notifier.close(&self.id);
    }
}

#[async_trait]
impl NotifierHarness for MemoryHarness {
    fn notifier(&self) -> &dyn Notifier {
        &self.notifier
    }

    async fn open(&self) -> Box<dyn Peer> {
        let id = ConnectionId::new(format!("mem-{}", Uuid::new_v4().simple()));
        let frames = self.notifier.open(&id);
        Box::new(MemoryPeer {
            id,
            frames,
            notifier: self.notifier.clone(),
        })
    }
}

/// The local gateway served in-process on `127.0.0.1:0`, with an [`ApiGatewayNotifier`] (the
/// real SDK client, test credentials, region `us-east-1`) pointed at its stage URL. The server
/// stops when this is dropped.
pub struct LocalGateway {
    /// The gateway's live connections.
    pub hub: ConnectionHub,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The notifier under test, endpoint [`LocalGateway::endpoint`].
    pub notifier: ApiGatewayNotifier,
    /// Serialises [`LocalGateway::connect`] so each learns its own id from the hub's events.
    connecting: Mutex<()>,
    server: JoinHandle<()>,
}

impl Drop for LocalGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Shared SDK config for the management client: test credentials, `us-east-1`. The endpoint
/// is set per client.
pub async fn test_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "dlab-tests"))
        .load()
        .await
}

impl LocalGateway {
    /// Starts the gateway and builds the notifier for its `/local` stage URL.
    pub async fn start() -> Self {
        let hub = ConnectionHub::new();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = router(hub.clone());
        let server = tokio::spawn(async move {
            serve(listener, app).await.expect("local gateway server");
        });
        let endpoint = format!("http://{addr}/{STAGE}");
        let notifier = ApiGatewayNotifier::from_endpoint(&test_sdk_config().await, endpoint);
        Self {
            hub,
            addr,
            notifier,
            connecting: Mutex::new(()),
            server,
        }
    }

    /// The stage URL (`APIGW_MANAGEMENT_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/{STAGE}", self.addr)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Opens a real WebSocket client and waits until the gateway reports it open.
    pub async fn connect(&self) -> GatewayPeer {
        let _one_at_a_time = self.connecting.lock().await;
        let mut events = self.hub.events();
        let mut request = self.ws_url().into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert(USER_AGENT, HeaderValue::from_static(TEST_USER_AGENT));
        let (socket, _) = connect_async(request).await.expect("websocket connect");
        let id = tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await {
                    Ok(HubEvent::Opened(id)) => return id,
                    Ok(HubEvent::Closed(_)) => {}
                    Err(e) => panic!("hub events: {e}"),
                }
            }
        })
        .await
        .expect("the gateway opened the connection");
        GatewayPeer {
            id,
            socket,
            hub: self.hub.clone(),
        }
    }
}

/// A real WebSocket client of the local gateway.
pub struct GatewayPeer {
    id: ConnectionId,
    /// The client socket.
    pub socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    hub: ConnectionHub,
}

impl GatewayPeer {
    /// The next data or close message (pings and pongs skipped); `None` when the stream ended
    /// or nothing came within [`WAIT`].
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(message))) => return Some(message),
                Ok(Some(Err(_)) | None) | Err(_) => return None,
            }
        }
    }

    /// Waits until the gateway no longer holds this connection.
    pub async fn wait_released(&self) {
        tokio::time::timeout(WAIT, async {
            while self.hub.get(&self.id).is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the gateway released the connection");
    }
}

#[async_trait]
impl Peer for GatewayPeer {
    fn id(&self) -> &ConnectionId {
        &self.id
    }

    async fn recv(&mut self) -> Option<Vec<u8>> {
        match self.next_message().await? {
            Message::Text(text) => Some(text.as_bytes().to_vec()),
            Message::Binary(bytes) => Some(bytes.to_vec()),
            _ => None,
        }
    }

    async fn close(mut self: Box<Self>) {
        self.socket.close(None).await.expect("close the socket");
        self.wait_released().await;
    }
}

#[async_trait]
impl NotifierHarness for LocalGateway {
    fn notifier(&self) -> &dyn Notifier {
        &self.notifier
    }

    async fn open(&self) -> Box<dyn Peer> {
        Box::new(self.connect().await)
    }
}
