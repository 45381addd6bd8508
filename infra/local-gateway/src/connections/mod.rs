//! Live WebSocket connections and API Gateway's `@connections` management API over them.
//!
//! # Layout
//! - [`ConnectionHub`] (this file): connection id → outbound queue, lifecycle state, times and
//!   identity. Cheap to clone; every clone sees the same connections.
//! - [`management`]: `POST` / `GET` / `DELETE /@connections/{id}`, with or without a stage
//!   prefix, answering exactly like API Gateway (status codes, JSON shapes, error headers).
//! - [`ws`]: a minimal `/ws` route that registers a socket and pumps its outbound queue.
//! - [`id`]: API Gateway–style connection ids.
//!
//! # Lifecycle
//! API Gateway runs the `$connect` integration during the WebSocket handshake; until it has
//! answered 200, the connection does not exist for the management API: a `PostToConnection`
//! (and a `GetConnection` or `DeleteConnection`) for it answers `410 GoneException`, the same as
//! for a closed or unknown id. The hub models this with [`ConnectionState::Connecting`]
//! ([`ConnectionHub::register`]) and [`ConnectionState::Open`] ([`ConnectionHub::open`]).

pub mod id;
pub mod management;
pub mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::Router;
use dlab_core::ids::ConnectionId;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc};

/// How many frames may wait for one socket before a post waits for room.
pub const OUTBOUND_QUEUE: usize = 256;

/// How many lifecycle events a slow [`ConnectionHub::events`] receiver may lag behind.
const EVENT_QUEUE: usize = 1024;

/// The `@connections` routes and the `/ws` route over one hub.
pub fn router(hub: ConnectionHub) -> Router {
    management::routes().merge(ws::routes()).with_state(hub)
}

/// Where a connection is in API Gateway's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The handshake (and `$connect`) is running: the management API answers 410 Gone.
    Connecting,
    /// Established: posts are delivered.
    Open,
}

/// A frame to send to a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame (the posted bytes were valid UTF-8).
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

impl Outbound {
    /// A text frame when `data` is UTF-8, else a binary one.
    pub fn from_bytes(data: Vec<u8>) -> Self {
        match String::from_utf8(data) {
            Ok(text) => Outbound::Text(text),
            Err(e) => Outbound::Binary(e.into_bytes()),
        }
    }
}

/// Who opened a connection, as `GetConnection` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The peer's IP address.
    pub source_ip: String,
    /// The `User-Agent` header of the handshake (empty when absent).
    pub user_agent: String,
}

impl Identity {
    /// The identity of an upgrade request: peer address and `User-Agent`.
    pub fn of_request(peer: Option<std::net::SocketAddr>, headers: &axum::http::HeaderMap) -> Self {
        Self {
            source_ip: peer.map(|addr| addr.ip().to_string()).unwrap_or_default(),
            user_agent: headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// What the hub knows about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The id.
    pub id: ConnectionId,
    /// Lifecycle state.
    pub state: ConnectionState,
    /// When the handshake started.
    pub connected_at: SystemTime,
    /// When the client last sent a frame (initially `connected_at`).
    pub last_active_at: SystemTime,
    /// Who opened it.
    pub identity: Identity,
}

/// A connection came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// The connection is open: posts are delivered from now on.
    Opened(ConnectionId),
    /// The connection was removed (socket closed, deleted, or failed handshake).
    Closed(ConnectionId),
}

/// The connection is unknown, closed or not yet open (API Gateway's 410 `GoneException`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("connection {0} is gone")]
pub struct Gone(pub ConnectionId);

#[derive(Debug)]
struct Entry {
    outbound: mpsc::Sender<Outbound>,
    info: ConnectionInfo,
}

#[derive(Debug)]
struct Inner {
    connections: Mutex<HashMap<ConnectionId, Entry>>,
    events: broadcast::Sender<HubEvent>,
}

/// The live connections. Clones share the same set.
#[derive(Debug, Clone)]
pub struct ConnectionHub {
    inner: Arc<Inner>,
}

impl Default for ConnectionHub {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionHub {
    /// No connections yet.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        Self {
            inner: Arc::new(Inner {
                connections: Mutex::new(HashMap::new()),
                events,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: HubEvent) {
        // No receiver is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }

    /// Registers a connection in [`ConnectionState::Connecting`] under a fresh id; returns the id
    /// and the queue of frames to write to its socket. The queue ends when the connection is
    /// removed.
    pub fn register(&self, identity: Identity) -> (ConnectionId, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let now = SystemTime::now();
        let mut connections = self.lock();
        let id = loop {
            let candidate = id::new_connection_id();
            if !connections.contains_key(&candidate) {
                break candidate;
            }
        };
        connections.insert(
            id.clone(),
            Entry {
                outbound: tx,
                info: ConnectionInfo {
                    id: id.clone(),
                    state: ConnectionState::Connecting,
                    connected_at: now,
                    last_active_at: now,
                    identity,
                },
            },
        );
        (id, rx)
    }

    /// Marks a connecting connection open (its `$connect` succeeded).
    pub fn open(&self, id: &ConnectionId) -> Result<(), Gone> {
        {
            let mut connections = self.lock();
            let entry = connections.get_mut(id).ok_or_else(|| Gone(id.clone()))?;
            entry.info.state = ConnectionState::Open;
        }
        self.emit(HubEvent::Opened(id.clone()));
        Ok(())
    }

    /// The sender of an open connection's queue.
    fn open_sender(&self, id: &ConnectionId) -> Result<mpsc::Sender<Outbound>, Gone> {
        match self.lock().get(id) {
            Some(entry) if entry.info.state == ConnectionState::Open => Ok(entry.outbound.clone()),
            _ => Err(Gone(id.clone())),
        }
    }

    /// Queues a frame for an open connection (text when `data` is UTF-8, else binary). Waits
    /// while the queue is full. [`Gone`] when the connection is unknown, closed or connecting.
    pub async fn post(&self, id: &ConnectionId, data: Vec<u8>) -> Result<(), Gone> {
        let sender = self.open_sender(id)?;
        if sender.send(Outbound::from_bytes(data)).await.is_err() {
            self.remove(id);
            return Err(Gone(id.clone()));
        }
        Ok(())
    }

    /// Closes an open connection: it is removed at once (later posts are gone); its socket gets
    /// the frames already queued, then a close frame.
    pub fn close(&self, id: &ConnectionId) -> Result<(), Gone> {
        self.open_sender(id)?;
        if self.remove(id) {
            Ok(())
        } else {
            Err(Gone(id.clone()))
        }
    }

    /// Removes a connection in any state (socket closed, failed handshake); returns whether it
    /// was there.
    pub fn remove(&self, id: &ConnectionId) -> bool {
        let removed = self.lock().remove(id).is_some();
        if removed {
            self.emit(HubEvent::Closed(id.clone()));
        }
        removed
    }

    /// Records that the client sent a frame (`LastActiveAt`).
    pub fn touch(&self, id: &ConnectionId) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.info.last_active_at = SystemTime::now();
        }
    }

    /// What the hub knows about a connection in any state.
    pub fn get(&self, id: &ConnectionId) -> Option<ConnectionInfo> {
        self.lock().get(id).map(|e| e.info.clone())
    }

    /// An open connection (what the management API can see).
    pub fn get_open(&self, id: &ConnectionId) -> Result<ConnectionInfo, Gone> {
        match self.get(id) {
            Some(info) if info.state == ConnectionState::Open => Ok(info),
            _ => Err(Gone(id.clone())),
        }
    }

    /// The ids of every connection in any state, sorted.
    pub fn ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Lifecycle events from now on (a test learns the id of the socket it opened this way).
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connecting_connections_are_gone_until_opened() {
        let hub = ConnectionHub::new();
        let (id, mut rx) = hub.register(Identity::default());
        assert_eq!(
            hub.post(&id, b"early".to_vec()).await,
            Err(Gone(id.clone()))
        );
        assert!(hub.get_open(&id).is_err());
        assert_eq!(hub.close(&id), Err(Gone(id.clone())));

        hub.open(&id).unwrap();
        hub.post(&id, b"hi".to_vec()).await.unwrap();
        hub.post(&id, vec![0xff, 0x00]).await.unwrap();
        assert_eq!(rx.recv().await, Some(Outbound::Text("hi".into())));
        assert_eq!(rx.recv().await, Some(Outbound::Binary(vec![0xff, 0x00])));

        hub.close(&id).unwrap();
        assert_eq!(rx.recv().await, None);
        assert_eq!(hub.post(&id, b"late".to_vec()).await, Err(Gone(id.clone())));
        assert!(hub.get(&id).is_none());
    }

    #[tokio::test]
    async fn a_dropped_socket_is_gone() {
        let hub = ConnectionHub::new();
        let (id, rx) = hub.register(Identity::default());
        hub.open(&id).unwrap();
        drop(rx);
        assert_eq!(hub.post(&id, b"x".to_vec()).await, Err(Gone(id.clone())));
        assert!(hub.ids().is_empty());
    }

    #[tokio::test]
    async fn events_report_open_and_close() {
        let hub = ConnectionHub::new();
        let mut events = hub.events();
        let (id, _rx) = hub.register(Identity::default());
        hub.open(&id).unwrap();
        hub.remove(&id);
        assert_eq!(events.recv().await.unwrap(), HubEvent::Opened(id.clone()));
        assert_eq!(events.recv().await.unwrap(), HubEvent::Closed(id));
    }
}
