//! [`SessionClient`]: one session's protocol core, driven by frames, submits and time.
//!
//! The client holds three things (PROTOCOL.md, "WebSocket"; ARCHITECTURE.md, "Frames are not
//! ordered"):
//!
//! - the **confirmed state**: `dlab-core`'s projection of the committed events 1..N, applied
//!   strictly in sequence order. Early arrivals wait in a bounded reorder buffer, duplicates
//!   are dropped, and a gap that persists ([`ClientConfig::gap_wait_ms`]) is healed by exactly
//!   one `replay` of exactly the missing range. The state is never discarded for a gap; only the
//!   server's `snapshot:required` (or a projection that refuses a committed event) replaces it.
//! - the **pending queue**: the client's own submissions that are not final yet, in submission
//!   order. Unconfirmed events are resent with the SAME id (idempotent on the server) after a
//!   reconnect and on timeout; refused ones leave the queue and are reported.
//! - the **optimistic view**: the confirmed state with the pending events re-applied in order,
//!   skipping any that no longer apply. That equality is the invariant the property tests hold
//!   the client to after every step.
//!
//! Each pending event is re-applied as a provisional event: sequence = the view's last + 1,
//! `timestamp` and `clientTimestamp` = the `now` of its submit, `userId` = the configured user.
//! So the view's `last_event_sequence` counts provisional events too.

use std::collections::{BTreeMap, VecDeque};

use dlab_core::codes::ErrorCode;
use dlab_core::compaction::Snapshot;
use dlab_core::event::{
    EnvelopeError, EnvelopeLimits, GameEvent, Sender, TypeForbidden, check_type_permission,
    validate_submission,
};
use dlab_core::ids::{EventId, Sequence, SessionId, UserId};
use dlab_core::protocol::{ClientMessage, ClientRequest, RequestId, ServerFrame};
use dlab_core::state::{ApplyError, GameSessionState};
use serde_json::{Value, json};
use thiserror::Error;

use crate::connection::{Connection, Due, Status, Timings};
use crate::entropy::{Entropy, new_event_id};
use crate::plugin::{ConflictInfo, EventDraft, Rebase, Rebaser, ReportOnly};

/// Settings of one session client. [`ClientConfig::new`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The session followed.
    pub session_id: SessionId,
    /// The user this client authenticates as (the server stamps it on our events; the client
    /// needs it to fold its own confirmed events exactly as the server stored them).
    pub user_id: UserId,
    /// How long a gap must persist before a `replay` (frames overtake each other routinely).
    pub gap_wait_ms: u64,
    /// How long an unanswered `replay` (gap or catch-up) waits before it is sent again.
    pub replay_timeout_ms: u64,
    /// How long a sent, unconfirmed submit waits before it is resent with the same id.
    pub submit_timeout_ms: u64,
    /// How long a catch-up may make no progress before the client subscribes again.
    pub catch_up_timeout_ms: u64,
    /// Retry delay after a transient `event:error` without `retryAfterMs`.
    pub transient_retry_ms: u64,
    /// Reconnect and heartbeat timings.
    pub timings: Timings,
    /// Bound of the reorder buffer, in events. Beyond it the highest sequences are dropped:
    /// they are re-read by the gap replay, so the bound costs latency, never correctness.
    pub max_buffered: usize,
    /// Bound of the pending queue, in events; a submit beyond it is refused.
    pub max_pending: usize,
    /// Bound of the in-memory log of recent committed events.
    pub max_log: usize,
    /// Types whose payload the server rewrites before the commit (`core:dice:roll` gets its
    /// `result`): their own confirmations are not folded from the draft but re-read by replay.
    pub server_stamped_types: Vec<String>,
}

impl ClientConfig {
    /// Defaults: 250 ms gap wait, 5 s replay timeout, 10 s submit timeout, 30 s catch-up
    /// timeout, 1 s transient retry, a 1024-event reorder buffer, 256 pending events, 512
    /// logged events, `core:dice:roll` stamped by the server.
    pub fn new(session_id: SessionId, user_id: UserId) -> Self {
        Self {
            session_id,
            user_id,
            gap_wait_ms: 250,
            replay_timeout_ms: 5_000,
            submit_timeout_ms: 10_000,
            catch_up_timeout_ms: 30_000,
            transient_retry_ms: 1_000,
            timings: Timings::default(),
            max_buffered: 1024,
            max_pending: 256,
            max_log: 512,
            server_stamped_types: vec!["core:dice:roll".to_owned()],
        }
    }
}

/// An HTTP request the driver makes for the client, answering with
/// [`SessionClient::on_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRequest {
    /// `snapshot:required`: load the snapshot (or whole state) at `href`.
    LoadSnapshot {
        /// The HTTP path the server named.
        href: String,
        /// The snapshot's sequence (0: none, `href` is the whole state).
        snapshot_sequence: Sequence,
    },
    /// The client's projection refused a committed event: load the whole current state.
    LoadState {
        /// `GET /sessions/{id}`.
        href: String,
    },
}

/// Why the server refused one of our events.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// The wire code.
    pub code: ErrorCode,
    /// The server's message.
    pub message: String,
    /// For `conflict`: the current value of every path of the event.
    pub current: Option<BTreeMap<String, Value>>,
}

/// Something for the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// The connection status changed.
    StatusChanged(Status),
    /// The catch-up after a (re)connect finished: the state is current and queued submits went
    /// out.
    Live,
    /// Committed events were applied to the confirmed state, in order (every type, known to a
    /// plugin or not).
    Applied(Vec<GameEvent>),
    /// The optimistic view changed; read it with [`SessionClient::view`].
    ViewChanged,
    /// Our event is final: committed and part of the confirmed state.
    Confirmed {
        /// Its id.
        id: EventId,
        /// Its sequence.
        sequence: Sequence,
    },
    /// The server refused our event; it left the queue and the view.
    RolledBack {
        /// Its id.
        id: EventId,
        /// What was submitted.
        draft: EventDraft,
        /// Why.
        rejection: Rejection,
    },
    /// The rebase hook asks the GM to settle a conflicting event (after its
    /// [`Notification::RolledBack`]); the driver sends `POST /sessions/{id}/conflicts
    /// {eventId: id, reason}`.
    Escalate {
        /// The refused event.
        id: EventId,
        /// What was submitted.
        draft: EventDraft,
        /// Why the plugin would not decide, for the GM.
        reason: String,
    },
    /// The rebase hook replaced a conflicting event with a new one (new id).
    Rebased {
        /// The refused event.
        rejected: EventId,
        /// Its replacement.
        resubmitted: EventId,
    },
    /// The client's projection refused a committed event (a bug or a rules mismatch): the whole
    /// state is reloaded.
    Diverged {
        /// The refused event's sequence.
        sequence: Sequence,
        /// What the projection said.
        error: String,
    },
    /// An `error` frame about one of our actions.
    ServerError {
        /// The wire code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// The failed action, when the server named it.
        action: Option<String>,
    },
    /// The server ended our subscription (e.g. we were removed from the campaign).
    Unsubscribed,
    /// A frame the core does not act on, passed through: `presence`, `ephemeral`,
    /// `conflict:resolution_needed`.
    Frame(ServerFrame),
    /// A text frame that is not a server frame; ignored.
    BadFrame(String),
}

/// What the client asks of its driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this action as one text frame ([`Output::text`]).
    Send(ClientRequest),
    /// Open a socket; report with `on_connected` or `on_disconnected`.
    Connect,
    /// Close the current socket and open a new one (planned, before the 2-hour cut); report the
    /// new socket with `on_connected` or `on_disconnected`, not the planned close.
    Reconnect,
    /// Close the socket for good (after [`SessionClient::stop`]).
    Close,
    /// Make an HTTP request; answer with [`SessionClient::on_snapshot`].
    Http(HttpRequest),
    /// Call `tick` at this time (ms) at the latest.
    WakeAt(u64),
    /// Tell the UI.
    Notify(Notification),
}

impl Output {
    /// The text frame of a [`Output::Send`].
    pub fn text(&self) -> Option<String> {
        match self {
            Output::Send(request) => serde_json::to_string(request).ok(),
            _ => None,
        }
    }
}

/// Why a submit was refused before anything was queued or sent.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The pending queue is at its bound ([`ClientConfig::max_pending`]); retry when events
    /// become final.
    #[error("{0} events are waiting for confirmation, the queue's bound")]
    QueueFull(usize),
    /// The envelope would be refused by the server (type grammar, payload size, …).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Only the server may send this type.
    #[error(transparent)]
    Forbidden(#[from] TypeForbidden),
    /// The event does not apply to the optimistic view (a stale compare-and-set, a missing
    /// instance, malformed state changes): rebuild it from the view.
    #[error("the event does not apply to the current view: {0}")]
    WouldNotApply(#[source] ApplyError),
}

/// Why a loaded state was not taken.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The body is neither a snapshot nor a session state.
    #[error("not a snapshot or session state: {0}")]
    Parse(#[source] serde_json::Error),
    /// The snapshot's checksum does not match its state.
    #[error("the snapshot's checksum does not match its state")]
    Checksum,
    /// The state belongs to another session.
    #[error("state of session {got} loaded for session {expected}")]
    WrongSession {
        /// The followed session.
        expected: SessionId,
        /// The loaded one.
        got: SessionId,
    },
}

/// Reads an HTTP body that is either a snapshot (`GET /sessions/{id}/snapshot`, checksum
/// verified) or a whole session state (`GET /sessions/{id}`).
pub fn parse_loaded_state(body: &str) -> Result<GameSessionState, SnapshotError> {
    let value: Value = serde_json::from_str(body).map_err(SnapshotError::Parse)?;
    if value.get("upToSequence").is_some() {
        let snapshot: Snapshot = serde_json::from_value(value).map_err(SnapshotError::Parse)?;
        if !snapshot.verify() {
            return Err(SnapshotError::Checksum);
        }
        Ok(snapshot.state)
    } else {
        serde_json::from_value(value).map_err(SnapshotError::Parse)
    }
}

/// A pending event's place in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingStatus {
    /// Not sent on the current socket yet (offline, catching up, or waiting out a retry).
    Queued,
    /// Sent; no answer yet.
    Sent,
    /// Confirmed at this sequence; waiting for the events before it to become final.
    Committed(Sequence),
}

/// A read-only look at a pending event.
#[derive(Debug, Clone, Copy)]
pub struct PendingView<'a> {
    /// Its id (kept across resends).
    pub id: &'a EventId,
    /// What was submitted.
    pub draft: &'a EventDraft,
    /// The `now` of its submit: its `clientTimestamp` and provisional timestamp.
    pub submitted_at: u64,
    /// Where it is.
    pub status: PendingStatus,
}

#[derive(Debug, Clone)]
struct Pending {
    id: EventId,
    draft: EventDraft,
    submitted_at: u64,
    sent_at: Option<u64>,
    not_before: u64,
    committed: Option<Sequence>,
}

/// The subscribe answer (or its continuation replays) this connection waits for.
#[derive(Debug, Clone, Default)]
struct CatchUp {
    /// The request whose batches make up the catch-up (the subscribe, then a continuation).
    request: Option<RequestId>,
    /// `head` from `session:subscribed`.
    head: Option<Sequence>,
    /// The last batch of the catch-up arrived complete (or a snapshot path replaced it).
    answered: bool,
    /// A state load is outstanding.
    awaiting_state: bool,
    /// Highest sequence seen in the current catch-up request's batches.
    max_seen: Sequence,
    /// Last progress, for the catch-up timeout.
    progress_at: u64,
    /// Caught up on this connection.
    live: bool,
}

#[derive(Debug, Clone)]
struct GapReplay {
    request: RequestId,
    to: Sequence,
    sent_at: u64,
}

/// Accumulates the outputs of one call; UI notifications that can repeat are coalesced.
#[derive(Default)]
struct Step {
    out: Vec<Output>,
    applied: Vec<GameEvent>,
    view_changed: bool,
}

impl Step {
    fn send(&mut self, request: ClientRequest) {
        self.out.push(Output::Send(request));
    }

    fn notify(&mut self, n: Notification) {
        self.out.push(Output::Notify(n));
    }
}

/// One session's protocol core. See the module docs for the model.
pub struct SessionClient {
    config: ClientConfig,
    entropy: Box<dyn Entropy>,
    rebaser: Box<dyn Rebaser>,
    conn: Connection,
    confirmed: GameSessionState,
    buffer: BTreeMap<Sequence, GameEvent>,
    known_head: Sequence,
    pending: VecDeque<Pending>,
    view: GameSessionState,
    log: VecDeque<GameEvent>,
    catch_up: CatchUp,
    gap_seen: Option<(Sequence, u64)>,
    gap_replay: Option<GapReplay>,
    next_request: u64,
    last_status: Status,
    last_wake: Option<u64>,
    duplicates: u64,
    limits: EnvelopeLimits,
}

impl std::fmt::Debug for SessionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClient")
            .field("session", &self.config.session_id)
            .field("applied", &self.confirmed.last_event_sequence)
            .field("known_head", &self.known_head)
            .field("buffered", &self.buffer.len())
            .field("pending", &self.pending.len())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl SessionClient {
    /// A client with an empty state (it subscribes from 0) and the report-only rebase hook.
    pub fn new(config: ClientConfig, entropy: Box<dyn Entropy>) -> Self {
        let state = GameSessionState::new(config.session_id.clone(), None);
        Self::with_state(config, entropy, state)
    }

    /// A client resuming from a state it kept (it subscribes from its sequence).
    pub fn with_state(
        config: ClientConfig,
        entropy: Box<dyn Entropy>,
        state: GameSessionState,
    ) -> Self {
        let conn = Connection::new(config.timings);
        Self {
            known_head: state.last_event_sequence,
            view: state.clone(),
            confirmed: state,
            config,
            entropy,
            rebaser: Box::new(ReportOnly),
            conn,
            buffer: BTreeMap::new(),
            pending: VecDeque::new(),
            log: VecDeque::new(),
            catch_up: CatchUp::default(),
            gap_seen: None,
            gap_replay: None,
            next_request: 0,
            last_status: Status::Offline { pending: 0 },
            last_wake: None,
            duplicates: 0,
            limits: EnvelopeLimits::default(),
        }
    }

    /// Replaces the rebase hook (e.g. with the plugin [`crate::Registry`]).
    pub fn set_rebaser(&mut self, rebaser: Box<dyn Rebaser>) {
        self.rebaser = rebaser;
    }

    // ---- reading ------------------------------------------------------------------------

    /// The state of the committed events 1..N, as every client that applied them holds it.
    pub fn confirmed(&self) -> &GameSessionState {
        &self.confirmed
    }

    /// The optimistic view: confirmed state plus pending events (what the UI shows).
    pub fn view(&self) -> &GameSessionState {
        &self.view
    }

    /// The last sequence applied to the confirmed state.
    pub fn last_applied(&self) -> Sequence {
        self.confirmed.last_event_sequence
    }

    /// The highest sequence known to exist (heads, confirmations, events seen).
    pub fn known_head(&self) -> Sequence {
        self.known_head
    }

    /// The pending events, in submission order.
    pub fn pending(&self) -> impl Iterator<Item = PendingView<'_>> {
        self.pending.iter().map(|p| PendingView {
            id: &p.id,
            draft: &p.draft,
            submitted_at: p.submitted_at,
            status: match (p.committed, p.sent_at) {
                (Some(seq), _) => PendingStatus::Committed(seq),
                (None, Some(_)) => PendingStatus::Sent,
                (None, None) => PendingStatus::Queued,
            },
        })
    }

    /// The most recent committed events, oldest first (at most [`ClientConfig::max_log`]).
    pub fn log(&self) -> impl Iterator<Item = &GameEvent> {
        self.log.iter()
    }

    /// Events dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The connection status.
    pub fn status(&self) -> Status {
        self.conn.status(self.pending.len())
    }

    /// Whether the catch-up on the current socket finished (queued submits are flowing).
    pub fn is_live(&self) -> bool {
        self.conn.is_open() && self.catch_up.live
    }

    /// The next time `tick` has work, if any.
    pub fn next_wake(&self) -> Option<u64> {
        let mut at: Option<u64> = self.conn.next_due();
        let mut consider = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        if self.conn.is_open() {
            if let Some((_, since)) = self.gap_seen {
                consider(match &self.gap_replay {
                    Some(r) => r.sent_at.saturating_add(self.config.replay_timeout_ms),
                    None => since.saturating_add(self.config.gap_wait_ms),
                });
            }
            if !self.catch_up.live {
                consider(
                    self.catch_up
                        .progress_at
                        .saturating_add(self.config.catch_up_timeout_ms),
                );
            } else {
                for p in self.pending.iter().filter(|p| p.committed.is_none()) {
                    consider(match p.sent_at {
                        Some(sent) => sent.saturating_add(self.config.submit_timeout_ms),
                        None => p.not_before,
                    });
                }
            }
        }
        at
    }

    // ---- connection ---------------------------------------------------------------------

    /// Starts connecting (from offline). Submits made before are kept and sent once live.
    pub fn start(&mut self, now: u64) -> Vec<Output> {
        let mut step = Step::default();
        if self.conn.start(now) {
            step.out.push(Output::Connect);
        }
        self.finish(step, now)
    }

    /// Stops for good: closes the socket and stops retrying. Pending events stay queued.
    pub fn stop(&mut self, now: u64) -> Vec<Output> {
        let mut step = Step::default();
        let was_stopped = self.conn.is_stopped();
        self.conn.stop();
        self.connection_lost();
        if !was_stopped {
            step.out.push(Output::Close);
        }
        self.finish(step, now)
    }

    /// The socket opened: subscribe from the last applied sequence.
    pub fn on_connected(&mut self, now: u64) -> Vec<Output> {
        let mut step = Step::default();
        self.conn.opened(now);
        self.connection_lost();
        self.subscribe(&mut step, now);
        self.finish(step, now)
    }

    /// The socket closed or the connect attempt failed: schedule the next attempt with backoff.
    pub fn on_disconnected(&mut self, now: u64) -> Vec<Output> {
        let step = Step::default();
        self.conn.closed(now, self.entropy.as_mut());
        self.connection_lost();
        self.finish(step, now)
    }

    /// Time passed: reconnects, heartbeats, gap replays, resends.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let mut step = Step::default();
        self.advance(&mut step, now);
        self.finish(step, now)
    }

    // ---- frames -------------------------------------------------------------------------

    /// A text frame from the socket. A frame that does not parse is reported and ignored.
    pub fn on_text(&mut self, text: &str, now: u64) -> Vec<Output> {
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => self.on_frame(frame, now),
            Err(e) => {
                let mut step = Step::default();
                step.notify(Notification::BadFrame(e.to_string()));
                self.finish(step, now)
            }
        }
    }

    /// A parsed server frame (in whatever order frames arrive).
    pub fn on_frame(&mut self, frame: ServerFrame, now: u64) -> Vec<Output> {
        let mut step = Step::default();
        self.handle(frame, &mut step, now);
        self.advance(&mut step, now);
        self.finish(step, now)
    }

    /// The state the driver loaded after [`HttpRequest`]: it replaces the confirmed state, and
    /// the client continues from its sequence (replaying up to the head).
    pub fn on_snapshot(
        &mut self,
        state: GameSessionState,
        now: u64,
    ) -> Result<Vec<Output>, SnapshotError> {
        if state.session_id != self.config.session_id {
            return Err(SnapshotError::WrongSession {
                expected: self.config.session_id.clone(),
                got: state.session_id,
            });
        }
        let mut step = Step::default();
        let seq = state.last_event_sequence;
        let mut state = state;
        // A session never changes campaign; compaction snapshots may not carry it.
        if state.campaign_id.is_none() {
            state.campaign_id = self.confirmed.campaign_id.clone();
        }
        self.confirmed = state;
        self.buffer = self.buffer.split_off(&seq.next());
        self.known_head = self.known_head.max(seq);
        self.gap_seen = None;
        self.gap_replay = None;
        self.drop_final_pending(&mut step);
        self.catch_up.awaiting_state = false;
        self.catch_up.progress_at = now;
        self.apply_ready(&mut step);
        // The view follows the new confirmed state even when no buffered event applies on top.
        self.rebuild_view();
        if self.conn.is_open() {
            let head = self.catch_up.head.unwrap_or(self.known_head);
            if head > self.last_applied() {
                let request = self.request_id("catchup");
                self.catch_up.request = Some(request.clone());
                self.catch_up.answered = false;
                self.catch_up.max_seen = self.last_applied();
                self.send_replay(&mut step, request, self.last_applied(), None);
            } else {
                self.catch_up.answered = true;
            }
        }
        step.view_changed = true;
        self.advance(&mut step, now);
        Ok(self.finish(step, now))
    }

    // ---- submitting ---------------------------------------------------------------------

    /// Queues our event: it joins the optimistic view at once and goes out when the session is
    /// live (now, or after the next catch-up). Returns the event's id.
    pub fn submit(
        &mut self,
        draft: EventDraft,
        now: u64,
    ) -> Result<(EventId, Vec<Output>), SubmitError> {
        let mut step = Step::default();
        let id = self.enqueue(draft, now, true, &mut step)?;
        self.advance(&mut step, now);
        Ok((id, self.finish(step, now)))
    }

    /// `strict`: refuse a draft that does not apply to the view. A rebased draft is not strict:
    /// it is written against the server's `current`, which may be ahead of our confirmed state
    /// until the events that caused the conflict arrive; it joins the view when it applies.
    fn enqueue(
        &mut self,
        draft: EventDraft,
        now: u64,
        strict: bool,
        step: &mut Step,
    ) -> Result<EventId, SubmitError> {
        if self.pending.len() >= self.config.max_pending {
            return Err(SubmitError::QueueFull(self.pending.len()));
        }
        let id = new_event_id(self.entropy.as_mut());
        let envelope = self.envelope(&id, &draft, now);
        validate_submission(&envelope, &self.limits)?;
        // The client cannot know whether its user is the GM; the server decides `core:gm_*`.
        check_type_permission(&draft.event_type, Sender::Gm)?;
        let pending = Pending {
            id: id.clone(),
            draft,
            submitted_at: now,
            sent_at: None,
            not_before: now,
            committed: None,
        };
        let provisional = self.provisional(&pending, self.view.last_event_sequence.next());
        match self.view.apply(&provisional) {
            Ok(()) => step.view_changed = true,
            Err(e) if strict => return Err(SubmitError::WouldNotApply(e)),
            Err(_) => {}
        }
        self.pending.push_back(pending);
        Ok(id)
    }

    fn envelope(&self, id: &EventId, draft: &EventDraft, submitted_at: u64) -> Value {
        json!({
            "id": id,
            "sessionId": self.config.session_id,
            "type": draft.event_type,
            "payload": draft.payload,
            "clientTimestamp": submitted_at,
        })
    }

    fn provisional(&self, p: &Pending, sequence: Sequence) -> GameEvent {
        GameEvent {
            id: p.id.clone(),
            sequence,
            timestamp: p.submitted_at,
            client_timestamp: Some(p.submitted_at),
            user_id: self.config.user_id.clone(),
            session_id: self.config.session_id.clone(),
            event_type: p.draft.event_type.clone(),
            payload: p.draft.payload.clone(),
            checksum: None,
        }
    }

    // ---- internals ----------------------------------------------------------------------

    fn request_id(&mut self, prefix: &str) -> RequestId {
        self.next_request += 1;
        RequestId::new(format!("{prefix}-{}", self.next_request))
            .expect("a short prefix and a number are far within 64 characters")
    }

    fn subscribe(&mut self, step: &mut Step, now: u64) {
        let request = self.request_id("sub");
        self.catch_up = CatchUp {
            request: Some(request.clone()),
            max_seen: self.last_applied(),
            progress_at: now,
            ..CatchUp::default()
        };
        step.send(ClientRequest {
            request_id: Some(request),
            message: ClientMessage::Subscribe {
                session_id: self.config.session_id.clone(),
                since: self.last_applied(),
            },
        });
    }

    fn send_replay(
        &self,
        step: &mut Step,
        request: RequestId,
        from: Sequence,
        to: Option<Sequence>,
    ) {
        step.send(ClientRequest {
            request_id: Some(request),
            message: ClientMessage::Replay {
                session_id: self.config.session_id.clone(),
                from,
                to,
            },
        });
    }

    /// Everything tied to one socket is forgotten; unconfirmed events will be resent.
    fn connection_lost(&mut self) {
        self.catch_up = CatchUp::default();
        self.gap_seen = None;
        self.gap_replay = None;
        for p in &mut self.pending {
            p.sent_at = None;
        }
    }

    fn handle(&mut self, frame: ServerFrame, step: &mut Step, now: u64) {
        let session = self.config.session_id.clone();
        let ours = |s: &SessionId| *s == session;
        match frame {
            ServerFrame::SessionSubscribed {
                session_id,
                head,
                request_id,
                ..
            } if ours(&session_id) => {
                self.known_head = self.known_head.max(head);
                if request_id.is_none() || request_id == self.catch_up.request {
                    self.catch_up.head = Some(head);
                    self.catch_up.progress_at = now;
                }
            }
            ServerFrame::EventsBatch {
                session_id,
                events,
                is_last,
                complete,
                request_id,
            } if ours(&session_id) => {
                let batch_max = events.iter().map(|e| e.sequence).max();
                for event in events {
                    self.offer(event);
                }
                self.batch_arrived(request_id, batch_max, is_last, complete, step, now);
            }
            ServerFrame::EventApplied(event) => self.offer(event),
            ServerFrame::EventConfirmed {
                temp_id,
                sequence,
                timestamp,
                ..
            } => self.confirmed_own(&temp_id, sequence, timestamp, step),
            ServerFrame::EventError {
                temp_id,
                code,
                message,
                current,
                retry_after_ms,
                ..
            } => {
                let rejection = Rejection {
                    code,
                    message,
                    current,
                };
                self.refused(&temp_id, rejection, retry_after_ms, step, now);
            }
            ServerFrame::SnapshotRequired {
                session_id,
                snapshot_sequence,
                href,
                ..
            } if ours(&session_id) => {
                self.catch_up.answered = true;
                self.catch_up.request = None;
                self.catch_up.progress_at = now;
                if !self.catch_up.awaiting_state {
                    self.catch_up.awaiting_state = true;
                    step.out.push(Output::Http(HttpRequest::LoadSnapshot {
                        href,
                        snapshot_sequence,
                    }));
                }
            }
            ServerFrame::SessionUnsubscribed { session_id, .. } if ours(&session_id) => {
                self.conn.stop();
                self.connection_lost();
                step.out.push(Output::Close);
                step.notify(Notification::Unsubscribed);
            }
            ServerFrame::Pong { heads, .. } => {
                if let Some(head) = heads.get(&self.config.session_id) {
                    self.known_head = self.known_head.max(*head);
                }
            }
            ServerFrame::Error {
                code,
                message,
                action,
                request_id,
                ..
            } => self.action_failed(code, message, action, request_id, step),
            frame @ (ServerFrame::Presence { .. }
            | ServerFrame::Ephemeral { .. }
            | ServerFrame::ConflictResolutionNeeded { .. }) => {
                let session = match &frame {
                    ServerFrame::Presence { session_id, .. }
                    | ServerFrame::Ephemeral { session_id, .. }
                    | ServerFrame::ConflictResolutionNeeded { session_id, .. } => session_id,
                    _ => return,
                };
                if ours(session) {
                    step.notify(Notification::Frame(frame));
                }
            }
            // Frames of other sessions (a shared socket) are not ours to act on.
            _ => {}
        }
        self.apply_ready(step);
    }

    /// The last batch of a request decides what comes next: the catch-up is done, continues
    /// with a `replay` where the server stopped, or a gap replay is answered.
    fn batch_arrived(
        &mut self,
        request_id: Option<RequestId>,
        batch_max: Option<Sequence>,
        is_last: bool,
        complete: bool,
        step: &mut Step,
        now: u64,
    ) {
        if request_id.is_some() && request_id == self.catch_up.request {
            self.catch_up.progress_at = now;
            if let Some(max) = batch_max {
                self.catch_up.max_seen = self.catch_up.max_seen.max(max);
            }
            if is_last {
                if complete {
                    self.catch_up.answered = true;
                    self.catch_up.request = None;
                } else {
                    let from = self.catch_up.max_seen.max(self.last_applied());
                    let request = self.request_id("catchup");
                    self.catch_up.request = Some(request.clone());
                    self.send_replay(step, request, from, None);
                }
            }
        } else if let Some(replay) = &self.gap_replay
            && request_id.as_ref() == Some(&replay.request)
            && is_last
        {
            let to = replay.to;
            self.gap_replay = None;
            if !complete {
                let from = batch_max
                    .unwrap_or(self.last_applied())
                    .max(self.last_applied());
                if from < to {
                    let request = self.request_id("gap");
                    self.gap_replay = Some(GapReplay {
                        request: request.clone(),
                        to,
                        sent_at: now,
                    });
                    self.send_replay(step, request, from, Some(to));
                }
            }
        }
    }

    /// A committed event from any frame: dropped if known, buffered otherwise.
    fn offer(&mut self, event: GameEvent) {
        if event.session_id != self.config.session_id {
            return;
        }
        let seq = event.sequence;
        self.known_head = self.known_head.max(seq);
        if seq <= self.last_applied() || self.buffer.contains_key(&seq) {
            self.duplicates += 1;
            return;
        }
        if self.buffer.len() >= self.config.max_buffered {
            match self.buffer.last_key_value() {
                Some((&highest, _)) if highest > seq => {
                    self.buffer.remove(&highest);
                }
                // The newcomer is the highest: drop it; `known_head` makes the replay fetch it.
                _ => return,
            }
        }
        self.buffer.insert(seq, event);
    }

    /// Our own confirmation: folded from the draft (the sender gets no `event:applied`).
    fn confirmed_own(&mut self, id: &EventId, sequence: Sequence, timestamp: u64, step: &mut Step) {
        self.known_head = self.known_head.max(sequence);
        let Some(index) = self.pending.iter().position(|p| p.id == *id) else {
            // Already final (it came as an applied event or in a batch), or not ours.
            return;
        };
        if sequence <= self.last_applied() {
            // A duplicate confirmation of an event the confirmed state already holds (e.g.
            // after a snapshot): it is final now.
            self.pending[index].committed = Some(sequence);
            self.drop_final_pending(step);
            self.rebuild_view();
            step.view_changed = true;
            return;
        }
        let p = &mut self.pending[index];
        p.committed = Some(sequence);
        if self
            .config
            .server_stamped_types
            .contains(&p.draft.event_type)
        {
            return;
        }
        let mut event = self.provisional(&self.pending[index], sequence);
        event.timestamp = timestamp;
        self.offer(event);
    }

    fn refused(
        &mut self,
        id: &EventId,
        rejection: Rejection,
        retry_after_ms: Option<u64>,
        step: &mut Step,
        now: u64,
    ) {
        let Some(index) = self.pending.iter().position(|p| p.id == *id) else {
            return;
        };
        if self.pending[index].committed.is_some() {
            // An earlier attempt committed; this answers a resend that raced it.
            return;
        }
        if matches!(
            rejection.code,
            ErrorCode::RateLimited | ErrorCode::Unavailable
        ) {
            let p = &mut self.pending[index];
            p.sent_at = None;
            p.not_before =
                now.saturating_add(retry_after_ms.unwrap_or(self.config.transient_retry_ms));
            return;
        }
        let Some(p) = self.pending.remove(index) else {
            return;
        };
        self.rebuild_view();
        step.view_changed = true;
        let conflict = (rejection.code == ErrorCode::Conflict).then(|| ConflictInfo {
            current: rejection.current.clone().unwrap_or_default(),
        });
        step.notify(Notification::RolledBack {
            id: p.id.clone(),
            draft: p.draft.clone(),
            rejection,
        });
        let Some(conflict) = conflict else {
            return;
        };
        match self.rebaser.rebase(&p.draft, &conflict, &self.confirmed) {
            Rebase::Resubmit(rebased) => match self.enqueue(rebased.clone(), now, false, step) {
                Ok(new_id) => step.notify(Notification::Rebased {
                    rejected: p.id,
                    resubmitted: new_id,
                }),
                Err(e) => step.notify(Notification::RolledBack {
                    id: p.id,
                    draft: rebased,
                    rejection: Rejection {
                        code: ErrorCode::Conflict,
                        message: format!("the rebased event was refused locally: {e}"),
                        current: Some(conflict.current),
                    },
                }),
            },
            Rebase::Escalate(reason) => step.notify(Notification::Escalate {
                id: p.id,
                draft: p.draft,
                reason,
            }),
            Rebase::Report => {}
        }
    }

    fn action_failed(
        &mut self,
        code: ErrorCode,
        message: String,
        action: Option<String>,
        request_id: Option<RequestId>,
        step: &mut Step,
    ) {
        let is_catch_up = request_id.is_some() && request_id == self.catch_up.request;
        // A failed gap replay stays "in flight" until its timeout, so a struggling store is not
        // hammered; a failed subscribe is retried by the catch-up timeout, unless it can never
        // succeed.
        if is_catch_up
            && matches!(
                code,
                ErrorCode::Forbidden | ErrorCode::SessionNotFound | ErrorCode::Unauthorized
            )
        {
            self.conn.stop();
            self.connection_lost();
            step.out.push(Output::Close);
        }
        step.notify(Notification::ServerError {
            code,
            message,
            action,
        });
    }

    /// Applies every buffered event that is next in sequence.
    fn apply_ready(&mut self, step: &mut Step) {
        let mut changed = false;
        while let Some(event) = self.buffer.remove(&self.last_applied().next()) {
            if let Err(e) = self.confirmed.apply(&event) {
                self.buffer.clear();
                step.notify(Notification::Diverged {
                    sequence: event.sequence,
                    error: e.to_string(),
                });
                if !self.catch_up.awaiting_state {
                    self.catch_up.awaiting_state = true;
                    step.out.push(Output::Http(HttpRequest::LoadState {
                        href: format!("/sessions/{}", self.config.session_id),
                    }));
                }
                break;
            }
            changed = true;
            if let Some(i) = self.pending.iter().position(|p| p.id == event.id) {
                self.pending.remove(i);
                step.notify(Notification::Confirmed {
                    id: event.id.clone(),
                    sequence: event.sequence,
                });
            }
            if self.log.len() >= self.config.max_log {
                self.log.pop_front();
            }
            self.log.push_back(event.clone());
            step.applied.push(event);
        }
        if changed {
            self.drop_final_pending(step);
            self.rebuild_view();
            step.view_changed = true;
        }
    }

    /// Pending events whose confirmed sequence the state already holds are final.
    fn drop_final_pending(&mut self, step: &mut Step) {
        let last = self.last_applied();
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i].committed {
                Some(seq) if seq <= last => {
                    if let Some(p) = self.pending.remove(i) {
                        step.notify(Notification::Confirmed {
                            id: p.id,
                            sequence: seq,
                        });
                    }
                }
                _ => i += 1,
            }
        }
    }

    fn rebuild_view(&mut self) {
        let mut view = self.confirmed.clone();
        for p in &self.pending {
            let event = self.provisional(p, view.last_event_sequence.next());
            // A pending event that no longer applies stays queued (the server will answer it)
            // but is left out of the view.
            let _ = view.apply(&event);
        }
        self.view = view;
    }

    /// The first missing range `(from, to]`: below the first buffered event, or a tail known
    /// from a head that nothing has arrived for.
    fn gap(&self) -> Option<(Sequence, Sequence)> {
        let last = self.last_applied();
        let upper = match self.buffer.keys().next() {
            Some(first) => Sequence(first.get().saturating_sub(1)),
            None => self.known_head,
        };
        (upper > last).then_some((last, upper))
    }

    /// Time-driven work, after every input.
    fn advance(&mut self, step: &mut Step, now: u64) {
        match self.conn.due(now) {
            Some(Due::Connect) => step.out.push(Output::Connect),
            Some(Due::Cycle) => {
                self.connection_lost();
                step.out.push(Output::Reconnect);
            }
            Some(Due::Ping) => {
                let request = self.request_id("ping");
                step.send(ClientRequest {
                    request_id: Some(request),
                    message: ClientMessage::Ping,
                });
            }
            None => {}
        }
        if !self.conn.is_open() {
            return;
        }
        let cu = &self.catch_up;
        if !cu.live
            && cu.answered
            && !cu.awaiting_state
            && cu.head.is_some_and(|h| self.last_applied() >= h)
        {
            self.catch_up.live = true;
            self.conn.healthy();
            step.notify(Notification::Live);
        }
        if !self.catch_up.live
            && !self.catch_up.awaiting_state
            && now.saturating_sub(self.catch_up.progress_at) >= self.config.catch_up_timeout_ms
        {
            self.subscribe(step, now);
        }
        self.heal_gap(step, now);
        if self.catch_up.live {
            self.flush(step, now);
        }
    }

    fn heal_gap(&mut self, step: &mut Step, now: u64) {
        // While the catch-up runs its batches fill the gaps; a snapshot load replaces them.
        if !self.catch_up.answered || self.catch_up.awaiting_state {
            self.gap_seen = None;
            return;
        }
        let Some((from, to)) = self.gap() else {
            self.gap_seen = None;
            return;
        };
        let since = match self.gap_seen {
            Some((f, since)) if f == from => since,
            _ => {
                self.gap_seen = Some((from, now));
                now
            }
        };
        if now.saturating_sub(since) < self.config.gap_wait_ms {
            return;
        }
        if let Some(r) = &self.gap_replay
            && now.saturating_sub(r.sent_at) < self.config.replay_timeout_ms
        {
            return;
        }
        let request = self.request_id("gap");
        self.gap_replay = Some(GapReplay {
            request: request.clone(),
            to,
            sent_at: now,
        });
        self.send_replay(step, request, from, Some(to));
    }

    /// Sends queued events and resends timed-out ones, in submission order, same ids.
    fn flush(&mut self, step: &mut Step, now: u64) {
        let timeout = self.config.submit_timeout_ms;
        let mut envelopes = Vec::new();
        for p in &mut self.pending {
            if p.committed.is_some() {
                continue;
            }
            let due = match p.sent_at {
                None => now >= p.not_before,
                Some(sent) => now.saturating_sub(sent) >= timeout,
            };
            if due {
                p.sent_at = Some(now);
                envelopes.push((p.id.clone(), p.draft.clone(), p.submitted_at));
            }
        }
        for (id, draft, submitted_at) in envelopes {
            let event = self.envelope(&id, &draft, submitted_at);
            step.send(ClientRequest {
                request_id: None,
                message: ClientMessage::Submit { event },
            });
        }
    }

    fn finish(&mut self, mut step: Step, _now: u64) -> Vec<Output> {
        let mut out = Vec::with_capacity(step.out.len() + 3);
        let status = self.status();
        if status != self.last_status {
            self.last_status = status;
            out.push(Output::Notify(Notification::StatusChanged(status)));
        }
        if !step.applied.is_empty() {
            out.push(Output::Notify(Notification::Applied(std::mem::take(
                &mut step.applied,
            ))));
        }
        out.append(&mut step.out);
        if step.view_changed {
            out.push(Output::Notify(Notification::ViewChanged));
        }
        let wake = self.next_wake();
        if wake != self.last_wake {
            self.last_wake = wake;
            if let Some(at) = wake {
                out.push(Output::WakeAt(at));
            }
        }
        out
    }
}
