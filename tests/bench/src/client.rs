//! One benchmark client: a WebSocket to either server, with a reader task that timestamps every
//! frame that matters the moment it is read.
//!
//! Both servers are read by the same code on the same stack (tokio-tungstenite), so client-side
//! costs are equal and cancel out in the ratios:
//! - **Gateway**: our protocol (PROTOCOL.md), `{"action": …}` frames in and
//!   `{"event": name, "data": {…}}` frames out.
//! - **Socket.IO**: the real Engine.IO 4 / Socket.IO 5 protocol over the WebSocket transport
//!   (what a socket.io browser client ends up on): the server's open packet `0{…}`, our namespace
//!   connect `40`, events as `42["name", data]`, and `3` answering a ping `2`. Those five
//!   packet shapes are all the bench needs, so they are spoken here directly instead of through
//!   a socket.io client crate, which would put a different client stack on one side only.
//!
//! Events are known before any client connects ([`Plan`]), so the reader maps an event id to its
//! index without locks on a shared map.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{BenchError, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Our gateway's protocol.
    Gateway,
    /// Socket.IO 4 over its WebSocket transport.
    SocketIo,
}

/// The events of one run, known before the clients connect.
#[derive(Debug, Default)]
pub struct Plan {
    /// Every event, by index.
    pub events: Vec<PlannedEvent>,
    index: HashMap<String, u32>,
}

/// One event to submit.
#[derive(Debug, Clone)]
pub struct PlannedEvent {
    /// Which client submits it.
    pub sender: usize,
    /// The event (`{id, sessionId, type, payload}`).
    pub body: Value,
}

impl Plan {
    /// Adds an event; returns its index.
    pub fn push(&mut self, sender: usize, body: Value) -> u32 {
        let idx = u32::try_from(self.events.len()).expect("fewer than 2^32 events");
        let id = body["id"].as_str().expect("an event id").to_owned();
        self.index.insert(id, idx);
        self.events.push(PlannedEvent { sender, body });
        idx
    }

    fn lookup(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }
}

/// What a client received for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `event:confirmed` (the sender's own event).
    Confirmed,
    /// `event:applied` (someone else's event).
    Applied,
}

/// One first receipt of an event by a client.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// The event's index in the [`Plan`].
    pub event: u32,
    /// Confirmation or broadcast.
    pub kind: Kind,
    /// When the reader had the frame.
    pub at: Instant,
}

/// Counters of a whole run, shared by every reader; waits poll them.
#[derive(Debug, Default)]
pub struct Progress {
    /// First receipts of planned events (duplicates are not counted).
    pub deliveries: AtomicU64,
    /// Clients whose subscribe/join is complete.
    pub joined: AtomicU64,
    /// Every frame read, of any kind (to see when a server has gone quiet).
    pub frames: AtomicU64,
    /// `event:error` and `error` frames.
    pub errors: AtomicU64,
    /// Sockets that ended (closed or failed) while the run still read them.
    pub closed: AtomicU64,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// First receipts, in arrival order.
    pub records: Vec<Record>,
    seen: HashSet<(u32, Kind)>,
    /// Receipts of an event already seen.
    pub duplicates: u64,
    /// The first few error frames, verbatim.
    pub errors: Vec<String>,
    connected: bool,
    joined: bool,
}

/// A connected client.
pub struct Client {
    flavor: Flavor,
    sink: Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>,
    /// What it saw.
    pub log: Arc<Mutex<ClientLog>>,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Error frames kept per client (the count is in [`Progress::errors`]).
const KEEP_ERRORS: usize = 3;

impl Client {
    /// Opens a socket to `url` and starts its reader. For Socket.IO this includes the namespace
    /// connect, awaited within `wait`.
    pub async fn connect(
        flavor: Flavor,
        url: &str,
        plan: Arc<Plan>,
        progress: Arc<Progress>,
        wait: Duration,
    ) -> Result<Self> {
        let (ws, _) = tokio::time::timeout(
            wait,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .map_err(|_| BenchError::SetupTimeout {
            what: "WebSocket handshake".to_owned(),
            after: wait,
        })??;
        let (sink, stream) = ws.split();
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let log = Arc::new(Mutex::new(ClientLog::default()));
        let reader = tokio::spawn(read_loop(
            flavor,
            stream,
            sink.clone(),
            log.clone(),
            plan,
            progress,
        ));
        let client = Self {
            flavor,
            sink,
            log,
            reader,
        };
        if flavor == Flavor::SocketIo {
            client.send_text("40".to_owned()).await?;
            let deadline = Instant::now() + wait;
            while !client.log.lock().expect("log lock").connected {
                if Instant::now() >= deadline {
                    return Err(BenchError::SetupTimeout {
                        what: "socket.io namespace connect".to_owned(),
                        after: wait,
                    });
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Ok(client)
    }

    /// Subscribes to (gateway) or joins (relay) `session`; completion shows in
    /// [`Progress::joined`].
    pub async fn join(&self, session: &str) -> Result<()> {
        let text = match self.flavor {
            Flavor::Gateway => serde_json::json!({
                "action": "subscribe", "sessionId": session, "since": 0
            })
            .to_string(),
            Flavor::SocketIo => {
                format!(
                    "42{}",
                    serde_json::json!(["join", { "sessionId": session }])
                )
            }
        };
        self.send_text(text).await
    }

    /// The frame that submits `event`, built ahead of the measured phase.
    pub fn submit_frame(flavor: Flavor, event: &Value) -> String {
        match flavor {
            Flavor::Gateway => serde_json::json!({"action": "submit", "event": event}).to_string(),
            Flavor::SocketIo => format!("42{}", serde_json::json!(["submit", event])),
        }
    }

    /// Sends one text frame; returns the instant just before the write.
    pub async fn send_timed(&self, text: String) -> Result<Instant> {
        let mut sink = self.sink.lock().await;
        let at = Instant::now();
        sink.send(Message::text(text)).await?;
        Ok(at)
    }

    async fn send_text(&self, text: String) -> Result<()> {
        self.send_timed(text).await.map(|_| ())
    }

    /// Sends a close frame (best effort).
    pub async fn close(&self) {
        let mut sink = self.sink.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
    }

    /// Whether this client's subscribe/join completed.
    pub fn joined(&self) -> bool {
        self.log.lock().expect("log lock").joined
    }
}

/// The fields of a server frame's data that the bench reads; everything else is skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Data {
    temp_id: Option<String>,
    id: Option<String>,
    is_last: Option<bool>,
}

/// A gateway frame.
#[derive(Debug, Deserialize)]
struct GatewayFrame {
    event: String,
    #[serde(default)]
    data: Data,
}

/// What a frame means to the bench.
enum Seen<'a> {
    Event(Kind, Option<&'a str>),
    Joined,
    Connected,
    Error,
    Other,
}

fn classify<'a>(name: &str, data: &'a Data) -> Seen<'a> {
    match name {
        "event:confirmed" => Seen::Event(Kind::Confirmed, data.temp_id.as_deref()),
        "event:applied" => Seen::Event(Kind::Applied, data.id.as_deref()),
        "events:batch" if data.is_last == Some(true) => Seen::Joined,
        "snapshot:required" | "joined" => Seen::Joined,
        "event:error" | "error" => Seen::Error,
        _ => Seen::Other,
    }
}

async fn read_loop(
    flavor: Flavor,
    mut stream: SplitStream<Socket>,
    sink: Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>,
    log: Arc<Mutex<ClientLog>>,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
) {
    while let Some(Ok(msg)) = stream.next().await {
        let at = Instant::now();
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        progress.frames.fetch_add(1, Ordering::Relaxed);
        let text = text.as_str();
        let parsed: Option<(String, Data)> = match flavor {
            Flavor::Gateway => serde_json::from_str::<GatewayFrame>(text)
                .ok()
                .map(|f| (f.event, f.data)),
            Flavor::SocketIo => match text.as_bytes().first() {
                // Engine.IO ping: answer with a pong.
                Some(b'2') if text.len() == 1 => {
                    let _ = sink.lock().await.send(Message::text("3")).await;
                    continue;
                }
                _ if text.starts_with("42") => {
                    serde_json::from_str::<(String, Data)>(&text[2..]).ok()
                }
                _ if text.starts_with("40") => Some(("\u{0}connected".to_owned(), Data::default())),
                _ => None,
            },
        };
        let Some((name, data)) = parsed else {
            continue;
        };
        let seen = if name == "\u{0}connected" {
            Seen::Connected
        } else {
            classify(&name, &data)
        };
        let mut log = log.lock().expect("log lock");
        match seen {
            Seen::Event(kind, Some(id)) => {
                if let Some(event) = plan.lookup(id) {
                    if log.seen.insert((event, kind)) {
                        log.records.push(Record { event, kind, at });
                        progress.deliveries.fetch_add(1, Ordering::Relaxed);
                    } else {
                        log.duplicates += 1;
                    }
                }
            }
            Seen::Joined => {
                if !log.joined {
                    log.joined = true;
                    progress.joined.fetch_add(1, Ordering::Relaxed);
                }
            }
            Seen::Connected => log.connected = true,
            Seen::Error => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if log.errors.len() < KEEP_ERRORS {
                    log.errors.push(text.to_owned());
                }
            }
            Seen::Event(_, None) | Seen::Other => {}
        }
    }
    progress.closed.fetch_add(1, Ordering::Relaxed);
}
