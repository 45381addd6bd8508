//! [`LiveSession`]: one session followed live, its [`SessionClient`] owned by a tokio task.
//!
//! The task is the only place the core is touched, so the core stays a plain state machine:
//! callers talk to the task through a channel (submits, commands, offline, close), the socket
//! reader and the HTTP loads report back through another, and the task publishes a
//! [`ViewSnapshot`] and the final [`Outcome`]s on `watch` channels after every step. Sockets and
//! loads carry the number of the connection attempt they belong to, so a report from a socket
//! the core already gave up on is ignored.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dlab_core::dice::{DICE_ROLL_TYPE, RollResult};
use dlab_core::event::GameEvent;
use dlab_core::ids::{EventId, InstanceId, SessionId, UserId};
use dlab_core::state::GameSessionState;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::http::Api;
use super::{
    DriverError, Endpoint, JoinOptions, OsEntropy, Outcome, ServerRoll, TrustedAttack, ViewSnapshot,
};
use crate::dnd5e::{self, Verdict, Verifier};
use crate::plugin::{Command, EventDraft, Registry};
use crate::session::{
    ClientConfig, HttpRequest, Notification, Output, SessionClient, parse_loaded_state,
};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Socket, Message>;

/// Longest a graceful close of a socket may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The task ticks at least this often even when the core has nothing due (a safety net: a
/// missed wake-up costs at most this much).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Rebases followed by [`LiveSession::settle`] before it gives up.
const MAX_REBASES: usize = 16;

/// One session followed live. See the module docs.
#[derive(Debug)]
pub struct LiveSession {
    session: SessionId,
    requests: mpsc::UnboundedSender<Request>,
    view: watch::Receiver<ViewSnapshot>,
    outcomes: watch::Receiver<Outcomes>,
    api: Api,
    wait: Duration,
    task: JoinHandle<()>,
}

/// What callers ask of the task.
enum Request {
    Submit {
        draft: EventDraft,
        reply: oneshot::Sender<Result<EventId, DriverError>>,
    },
    Command {
        command: Command,
        reply: oneshot::Sender<Result<EventId, DriverError>>,
    },
    Offline(bool),
    Close(oneshot::Sender<()>),
}

/// What the I/O helpers report to the task; `attempt` ties a report to its connection.
enum Io {
    Connected { attempt: u64, socket: Box<Socket> },
    ConnectFailed { attempt: u64, error: DriverError },
    Frame { attempt: u64, text: String },
    Closed { attempt: u64, reason: String },
    Loaded(Result<GameSessionState, DriverError>),
}

/// The final outcomes, bounded (oldest forgotten first).
#[derive(Debug, Default)]
struct Outcomes {
    map: HashMap<EventId, Outcome>,
    order: VecDeque<EventId>,
    max: usize,
}

impl Outcomes {
    fn insert(&mut self, id: EventId, outcome: Outcome) {
        if self.map.insert(id.clone(), outcome).is_none() {
            self.order.push_back(id);
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// Milliseconds for the core: wall-clock at the start (the core stamps `clientTimestamp` with
/// it), advancing with the monotonic clock so timers never jump.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    base_ms: u64,
}

impl Clock {
    fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            start: Instant::now(),
            base_ms,
        }
    }

    fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }

    fn instant_at(&self, at: u64) -> Instant {
        self.start + Duration::from_millis(at.saturating_sub(self.base_ms))
    }
}

impl LiveSession {
    /// Loads the session's state over HTTP (`GET /sessions/{id}`), starts the task from it and
    /// returns once the session is live: socket open, subscribed and caught up. A bad token or
    /// a session the user may not read fails at once; an unreachable socket fails after
    /// [`JoinOptions::live_timeout`]. `registry` builds [`Self::command`]s and rebases
    /// conflicts.
    pub async fn join(
        endpoint: Endpoint,
        session: SessionId,
        user: UserId,
        registry: Registry,
        options: JoinOptions,
    ) -> Result<Self, DriverError> {
        let api = Api::new(&endpoint.http, &endpoint.token, options.request_timeout)?;
        let body = api
            .call(Method::GET, &format!("/sessions/{session}"), None)
            .await?;
        let state = parse_loaded_state(&body).map_err(DriverError::State)?;
        let verifier = Verifier::new(state.require_server_rolls());
        info!(session = %session, user = %user, sequence = state.last_event_sequence.get(), "session state loaded");

        let mut config = ClientConfig::new(session.clone(), user);
        config.submit_timeout_ms = millis(options.submit_timeout);
        config.timings = options.timings;
        config.max_log = options.max_log;
        let registry = Arc::new(registry);
        let mut client = SessionClient::with_state(config, Box::new(OsEntropy), state);
        client.set_rebaser(Box::new(Arc::clone(&registry)));

        let (requests, request_rx) = mpsc::unbounded_channel();
        let (io_tx, io_rx) = mpsc::unbounded_channel();
        let (view_tx, view_rx) = watch::channel(snapshot_of(&client, &verifier, 0, None));
        let (outcome_tx, outcome_rx) = watch::channel(Outcomes {
            max: options.max_outcomes.max(1),
            ..Outcomes::default()
        });
        let driver = Driver {
            session: session.clone(),
            client,
            registry,
            api: api.clone(),
            ws_url: endpoint.ws,
            request_timeout: options.request_timeout,
            clock: Clock::new(),
            io_tx,
            io_rx,
            view: view_tx,
            outcomes: outcome_tx,
            fresh: Vec::new(),
            sink: None,
            reader: None,
            connector: None,
            attempt: 0,
            state_loads: 0,
            last_error: None,
            verifier,
        };
        let task = tokio::spawn(driver.run(request_rx));
        let live = Self {
            session: session.clone(),
            requests,
            view: view_rx,
            outcomes: outcome_rx,
            api,
            wait: options.wait_timeout,
            task,
        };
        let what = format!("session {session} to go live");
        match live
            .wait_until(&what, options.live_timeout, |s| s.live)
            .await
        {
            Ok(_) => Ok(live),
            Err(e) => {
                let problem = live.snapshot().last_error;
                live.close().await;
                Err(match (e, problem) {
                    (DriverError::Timeout { what, after }, Some(problem)) => DriverError::Timeout {
                        what: format!("{what} (last problem: {problem})"),
                        after,
                    },
                    (e, _) => e,
                })
            }
        }
    }

    /// The session followed.
    pub fn session_id(&self) -> &SessionId {
        &self.session
    }

    /// Queues `draft`: it joins the view at once and goes out when live. Returns its id; wait
    /// for its fate with [`Self::outcome`].
    pub async fn submit(&self, draft: EventDraft) -> Result<EventId, DriverError> {
        self.ask(|reply| Request::Submit { draft, reply }).await
    }

    /// Builds `command` with the registry's plugin against the current view, then submits it.
    pub async fn command(&self, command: Command) -> Result<EventId, DriverError> {
        self.ask(|reply| Request::Command { command, reply }).await
    }

    async fn ask(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<EventId, DriverError>>) -> Request,
    ) -> Result<EventId, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .map_err(|_| DriverError::Closed)?;
        match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DriverError::Closed),
            Err(_) => Err(DriverError::Timeout {
                what: "the session task to take the submit".to_owned(),
                after: self.wait,
            }),
        }
    }

    /// The final outcome of our event `id`, waiting up to `timeout`. A rebased event's outcome
    /// is [`Outcome::Rebased`]; [`Self::settle`] follows the replacement.
    pub async fn outcome(&self, id: &EventId, timeout: Duration) -> Result<Outcome, DriverError> {
        let mut rx = self.outcomes.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|o| o.map.contains_key(id))).await {
            Ok(Ok(outcomes)) => outcomes.map.get(id).cloned().ok_or(DriverError::Closed),
            Ok(Err(_)) => Err(DriverError::Closed),
            Err(_) => Err(DriverError::Timeout {
                what: format!("the outcome of event {id}"),
                after: timeout,
            }),
        }
    }

    /// Follows `id` through its rebases to the last event's outcome (confirmed or rolled
    /// back), all within `timeout`. Returns that event's id and outcome.
    pub async fn settle(
        &self,
        id: &EventId,
        timeout: Duration,
    ) -> Result<(EventId, Outcome), DriverError> {
        let deadline = Instant::now() + timeout;
        let mut current = id.clone();
        for _ in 0..=MAX_REBASES {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.outcome(&current, left).await? {
                Outcome::Rebased { resubmitted } => current = resubmitted,
                outcome => return Ok((current, outcome)),
            }
        }
        Err(DriverError::Timeout {
            what: format!("event {id} to settle within {MAX_REBASES} rebases"),
            after: timeout,
        })
    }

    /// Asks the server for a trusted roll (`core:dice:roll {formula, purpose}`) and returns its
    /// result once the committed event, with the server's `result`, is applied here.
    pub async fn roll(&self, formula: &str, purpose: &str) -> Result<ServerRoll, DriverError> {
        let draft = EventDraft::new(
            DICE_ROLL_TYPE,
            json!({"formula": formula, "purpose": purpose}),
        );
        let id = self.submit(draft).await?;
        let sequence = match self.outcome(&id, self.wait).await? {
            Outcome::Confirmed { sequence } => sequence,
            Outcome::RolledBack(rejection) => return Err(DriverError::Rejected(rejection)),
            Outcome::Rebased { .. } => {
                unreachable!("a roll has no compare-and-set, so it is never rebased")
            }
        };
        let what = format!("roll {id} (sequence {sequence}) to be applied");
        let snapshot = self
            .wait_until(&what, self.wait, |s| s.last_applied >= sequence)
            .await?;
        let event = match snapshot.log.iter().find(|e| e.id == id) {
            Some(e) => e.clone(),
            // Applied but already out of the recent log (or under a loaded snapshot): read it.
            None => self.event_at(sequence).await?,
        };
        let result: RollResult = event
            .payload
            .get("result")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .ok_or_else(|| DriverError::NoRollResult(id.clone()))?;
        Ok(ServerRoll {
            event_id: id,
            sequence,
            formula: formula.to_owned(),
            dice: result.dice.iter().map(|d| d.value).collect(),
            total: result.total,
        })
    }

    /// A trusted 5e attack: the server rolls the to-hit d20 and, on a hit, the damage (doubled
    /// dice on a natural 20), then the `attack` command names both rolls, so every client can
    /// verify the numbers (`dnd5e::Verifier`). Returns the attack's id and its server rolls;
    /// settle it with [`LiveSession::settle`] (a conflicting hit is rebased).
    pub async fn attack(
        &self,
        attacker: &InstanceId,
        target: &InstanceId,
        weapon: Option<&str>,
    ) -> Result<TrustedAttack, DriverError> {
        let plan = dnd5e::plan_attack(&self.snapshot().view, attacker, target, weapon)
            .map_err(DriverError::Command)?;
        let to_hit = self.roll(&plan.to_hit, "attack").await?;
        let natural = to_hit.dice.first().copied().unwrap_or(0);
        let outcome = dnd5e::rules::resolve_attack(natural, to_hit.total, plan.target_ac);
        let damage = if outcome.hit {
            let formula = if outcome.critical {
                &plan.critical_damage
            } else {
                &plan.damage
            };
            Some(self.roll(formula, "damage").await?)
        } else {
            None
        };
        let mut args = json!({
            "attacker": attacker,
            "target": target,
            "weapon": plan.weapon,
            "attackRoll": to_hit.as_roll_ref(),
        });
        if let Some(d) = &damage {
            args["damageRoll"] = d.as_roll_ref();
        }
        let id = self
            .command(Command {
                name: "attack".to_owned(),
                args,
            })
            .await?;
        Ok(TrustedAttack {
            id,
            to_hit,
            damage,
            hit: outcome.hit,
            critical: outcome.critical,
        })
    }

    /// The committed event at `sequence`, over HTTP (`GET /sessions/{id}/events`).
    async fn event_at(&self, sequence: dlab_core::ids::Sequence) -> Result<GameEvent, DriverError> {
        let path = format!(
            "/sessions/{}/events?after={}&limit=1",
            self.session,
            sequence.get().saturating_sub(1)
        );
        let page = self.api.json(Method::GET, &path, None).await?;
        let item = page["items"].get(0).cloned().unwrap_or(Value::Null);
        serde_json::from_value(item).map_err(|source| DriverError::Body { path, source })
    }

    /// Escalates our rejected compare-and-set `event` to the GM (`POST
    /// /sessions/{id}/conflicts {eventId, reason}`); returns the server's answer.
    pub async fn escalate(&self, event: &EventId, reason: &str) -> Result<Value, DriverError> {
        escalate(&self.api, &self.session, event, reason).await
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> ViewSnapshot {
        self.view.borrow().clone()
    }

    /// Waits up to `timeout` for a snapshot that satisfies `pred` (checked on the current one
    /// first) and returns it; `what` names the wait in the timeout error.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ViewSnapshot) -> bool,
    ) -> Result<ViewSnapshot, DriverError> {
        let mut rx = self.view.clone();
        match tokio::time::timeout(timeout, rx.wait_for(&pred)).await {
            Ok(Ok(snapshot)) => Ok(snapshot.clone()),
            Ok(Err(_)) => Err(DriverError::Closed),
            Err(_) => Err(DriverError::Timeout {
                what: what.to_owned(),
                after: timeout,
            }),
        }
    }

    /// Drops the socket and stays offline (`true`; submits queue and show in the view), or
    /// reconnects and catches up (`false`). For tests and a UI's "work offline".
    pub fn set_offline(&self, offline: bool) {
        let _ = self.requests.send(Request::Offline(offline));
    }

    /// Stops: closes the socket and ends the task (pending events are dropped with it).
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Close(reply)).is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE * 2, done).await;
        }
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_GRACE * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// `POST /sessions/{id}/conflicts {eventId, reason}`.
async fn escalate(
    api: &Api,
    session: &SessionId,
    event: &EventId,
    reason: &str,
) -> Result<Value, DriverError> {
    api.json(
        Method::POST,
        &format!("/sessions/{session}/conflicts"),
        Some(&json!({"eventId": event, "reason": reason})),
    )
    .await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn snapshot_of(
    client: &SessionClient,
    verifier: &Verifier,
    state_loads: u64,
    last_error: Option<String>,
) -> ViewSnapshot {
    let verdicts = client
        .log()
        .filter_map(|e| Some((e.id.clone(), verifier.verdict(&e.id)?.clone())))
        .collect();
    ViewSnapshot {
        verdicts,
        require_server_rolls: verifier.require_server_rolls(),
        view: client.view().clone(),
        confirmed: client.confirmed().clone(),
        last_applied: client.last_applied(),
        known_head: client.known_head(),
        status: client.status(),
        live: client.is_live(),
        pending: client.pending().count(),
        log: client.log().cloned().collect(),
        state_loads,
        last_error,
    }
}

/// The task's side: the core and the I/O around it.
struct Driver {
    session: SessionId,
    client: SessionClient,
    registry: Arc<Registry>,
    api: Api,
    ws_url: String,
    request_timeout: Duration,
    clock: Clock,
    io_tx: mpsc::UnboundedSender<Io>,
    io_rx: mpsc::UnboundedReceiver<Io>,
    view: watch::Sender<ViewSnapshot>,
    outcomes: watch::Sender<Outcomes>,
    /// Outcomes of the current step, published together (a conflict's rollback and its rebase
    /// come in one step; a waiter sees only the rebase).
    fresh: Vec<(EventId, Outcome)>,
    sink: Option<Sink>,
    reader: Option<JoinHandle<()>>,
    connector: Option<JoinHandle<()>>,
    /// The current connection attempt; reports of older ones are ignored.
    attempt: u64,
    state_loads: u64,
    last_error: Option<String>,
    /// Trusted dice: every committed event passes through it in order (its verdicts on the
    /// events of the log are published with the view).
    verifier: Verifier,
}

impl Driver {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let out = self.client.start(self.clock.now());
        self.execute(out).await;
        self.publish();
        loop {
            let wake = self.wake_instant();
            tokio::select! {
                biased;
                request = requests.recv() => match request {
                    // Every handle is gone: nobody can read what we would do.
                    None => break,
                    Some(Request::Close(reply)) => {
                        let out = self.client.stop(self.clock.now());
                        self.execute(out).await;
                        self.publish();
                        let _ = reply.send(());
                        break;
                    }
                    Some(request) => self.request(request).await,
                },
                Some(io) = self.io_rx.recv() => self.io(io).await,
                () = tokio::time::sleep_until(wake) => {
                    let out = self.client.tick(self.clock.now());
                    self.execute(out).await;
                }
            }
            self.publish();
        }
        self.drop_socket(true).await;
        debug!(session = %self.session, "session task ended");
    }

    fn wake_instant(&self) -> Instant {
        let now = Instant::now();
        let idle = now + IDLE_TICK;
        match self.client.next_wake() {
            // Never a busy loop, whatever the core says.
            Some(at) => self
                .clock
                .instant_at(at)
                .clamp(now + Duration::from_millis(5), idle),
            None => idle,
        }
    }

    async fn request(&mut self, request: Request) {
        let now = self.clock.now();
        match request {
            // Published before the reply, so the caller's next snapshot shows the event.
            Request::Submit { draft, reply } => {
                let result = self.submit(draft, now).await;
                self.publish();
                let _ = reply.send(result);
            }
            Request::Command { command, reply } => {
                let result = match self.registry.build(&command, self.client.view()) {
                    Ok(draft) => self.submit(draft, now).await,
                    Err(e) => Err(DriverError::Command(e)),
                };
                self.publish();
                let _ = reply.send(result);
            }
            Request::Offline(true) => {
                info!(session = %self.session, "going offline");
                let out = self.client.stop(now);
                self.execute(out).await;
            }
            Request::Offline(false) => {
                info!(session = %self.session, "going online");
                let out = self.client.start(now);
                self.execute(out).await;
            }
            Request::Close(_) => {}
        }
    }

    async fn submit(&mut self, draft: EventDraft, now: u64) -> Result<EventId, DriverError> {
        let event_type = draft.event_type.clone();
        match self.client.submit(draft, now) {
            Ok((id, out)) => {
                debug!(session = %self.session, event = %id, event_type, "submitted");
                self.execute(out).await;
                Ok(id)
            }
            Err(e) => {
                debug!(session = %self.session, event_type, error = %e, "submit refused locally");
                Err(DriverError::Submit(e))
            }
        }
    }

    async fn io(&mut self, io: Io) {
        let now = self.clock.now();
        match io {
            Io::Connected { attempt, socket } if attempt == self.attempt => {
                let (sink, stream) = (*socket).split();
                self.sink = Some(sink);
                self.reader = Some(tokio::spawn(read_loop(stream, attempt, self.io_tx.clone())));
                info!(session = %self.session, attempt, "socket open");
                let out = self.client.on_connected(now);
                self.execute(out).await;
            }
            Io::Connected { mut socket, .. } => {
                let _ = tokio::time::timeout(CLOSE_GRACE, SinkExt::close(&mut socket)).await;
            }
            Io::ConnectFailed { attempt, error } if attempt == self.attempt => {
                warn!(session = %self.session, attempt, error = %error, source = ?std::error::Error::source(&error), "connect failed");
                self.last_error = Some(error_chain(&error));
                let out = self.client.on_disconnected(now);
                self.execute(out).await;
            }
            Io::Frame { attempt, text } if attempt == self.attempt => {
                let out = self.client.on_text(&text, now);
                self.execute(out).await;
            }
            Io::Closed { attempt, reason } if attempt == self.attempt => {
                info!(session = %self.session, attempt, reason, "socket closed");
                self.last_error = Some(format!("socket closed: {reason}"));
                self.sink = None;
                self.reader = None;
                let out = self.client.on_disconnected(now);
                self.execute(out).await;
            }
            Io::ConnectFailed { .. } | Io::Frame { .. } | Io::Closed { .. } => {}
            Io::Loaded(Ok(state)) => {
                let sequence = state.last_event_sequence.get();
                match self.client.on_snapshot(state, now) {
                    Ok(out) => {
                        self.state_loads += 1;
                        info!(session = %self.session, sequence, "state loaded for the core");
                        self.execute(out).await;
                    }
                    Err(e) => self.load_failed(&DriverError::State(e)).await,
                }
            }
            Io::Loaded(Err(e)) => self.load_failed(&e).await,
        }
    }

    /// A state the core asked for could not be loaded: the core waits for it and would wait
    /// forever, so the socket is dropped; the next connection subscribes again and the server
    /// repeats `snapshot:required`, under the core's backoff.
    async fn load_failed(&mut self, error: &DriverError) {
        warn!(session = %self.session, error = %error, "state load failed; reconnecting");
        self.last_error = Some(error_chain(error));
        if self.sink.is_some() {
            self.drop_socket(false).await;
            let out = self.client.on_disconnected(self.clock.now());
            self.execute(out).await;
        }
    }

    /// Executes outputs in order; an output that fails turns into more input for the core
    /// (e.g. a send on a dead socket is a disconnect), whose outputs run after.
    async fn execute(&mut self, outputs: Vec<Output>) {
        let mut queue: VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Send(request) => {
                    let Ok(text) = serde_json::to_string(&request) else {
                        continue;
                    };
                    if let Err(reason) = self.send(text).await {
                        warn!(session = %self.session, reason, "send failed; reconnecting");
                        self.last_error = Some(format!("send failed: {reason}"));
                        self.drop_socket(false).await;
                        queue.extend(self.client.on_disconnected(self.clock.now()));
                    }
                }
                Output::Connect => self.connect(),
                Output::Reconnect => {
                    self.drop_socket(true).await;
                    self.connect();
                }
                Output::Close => self.drop_socket(true).await,
                Output::Http(request) => self.load(request),
                // The wake-up is read from `next_wake` before each wait.
                Output::WakeAt(_) => {}
                Output::Notify(notification) => self.notify(notification),
            }
        }
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        let Some(sink) = self.sink.as_mut() else {
            return Err("no socket".to_owned());
        };
        match tokio::time::timeout(self.request_timeout, sink.send(Message::Text(text.into())))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the send timed out".to_owned()),
        }
    }

    /// Starts connection attempt `attempt + 1`: a ticket, then the handshake.
    fn connect(&mut self) {
        self.attempt += 1;
        let attempt = self.attempt;
        if let Some(old) = self.connector.take() {
            old.abort();
        }
        let (api, ws, timeout, tx) = (
            self.api.clone(),
            self.ws_url.clone(),
            self.request_timeout,
            self.io_tx.clone(),
        );
        debug!(session = %self.session, attempt, "connecting");
        self.connector = Some(tokio::spawn(async move {
            let report = match open_socket(&api, &ws, timeout).await {
                Ok(socket) => Io::Connected {
                    attempt,
                    socket: Box::new(socket),
                },
                Err(error) => Io::ConnectFailed { attempt, error },
            };
            let _ = tx.send(report);
        }));
    }

    /// Forgets the current socket (closing it gracefully if asked) and any attempt in flight.
    async fn drop_socket(&mut self, graceful: bool) {
        self.attempt += 1;
        if let Some(connector) = self.connector.take() {
            connector.abort();
        }
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        if let Some(mut sink) = self.sink.take()
            && graceful
        {
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        }
    }

    fn load(&mut self, request: HttpRequest) {
        let href = match request {
            HttpRequest::LoadSnapshot {
                href,
                snapshot_sequence,
            } => {
                info!(session = %self.session, href, snapshot_sequence = snapshot_sequence.get(), "loading a snapshot");
                href
            }
            HttpRequest::LoadState { href } => {
                info!(session = %self.session, href, "reloading the whole state");
                href
            }
        };
        let (api, tx) = (self.api.clone(), self.io_tx.clone());
        tokio::spawn(async move {
            let loaded = match api.call(Method::GET, &href, None).await {
                Ok(body) => parse_loaded_state(&body).map_err(DriverError::State),
                Err(e) => Err(e),
            };
            let _ = tx.send(Io::Loaded(loaded));
        });
    }

    fn notify(&mut self, notification: Notification) {
        let session = &self.session;
        match notification {
            Notification::StatusChanged(status) => {
                debug!(session = %session, ?status, "status changed");
            }
            Notification::Live => {
                info!(session = %session, sequence = self.client.last_applied().get(), "live")
            }
            Notification::Applied(events) => {
                debug!(session = %session, count = events.len(), "events applied");
                for event in &events {
                    if let Some(Verdict::Unverified(reason)) = self.verifier.observe(event) {
                        warn!(session = %session, event = %event.id, user = %event.user_id, reason, "unverified dice");
                    }
                }
            }
            Notification::ViewChanged => {}
            Notification::Confirmed { id, sequence } => {
                debug!(session = %session, event = %id, sequence = sequence.get(), "confirmed");
                self.fresh.push((id, Outcome::Confirmed { sequence }));
            }
            Notification::Escalate { id, draft, reason } => {
                // The rules hand this conflict to the GM: record it on the server. The rollback
                // itself is reported by the `RolledBack` that comes with it.
                info!(session = %session, event = %id, event_type = draft.event_type, reason, "escalating a conflict to the GM");
                let (api, session) = (self.api.clone(), session.clone());
                tokio::spawn(async move {
                    if let Err(e) = escalate(&api, &session, &id, &reason).await {
                        warn!(session = %session, event = %id, error = %e, "escalation failed");
                    }
                });
            }
            Notification::RolledBack {
                id,
                draft,
                rejection,
            } => {
                warn!(session = %session, event = %id, event_type = draft.event_type, code = %rejection.code, message = rejection.message, "event rolled back");
                self.fresh.push((id, Outcome::RolledBack(rejection)));
            }
            Notification::Rebased {
                rejected,
                resubmitted,
            } => {
                info!(session = %session, rejected = %rejected, resubmitted = %resubmitted, "conflict rebased");
                self.fresh
                    .push((rejected, Outcome::Rebased { resubmitted }));
            }
            Notification::Diverged { sequence, error } => {
                warn!(session = %session, sequence = sequence.get(), error, "projection diverged; reloading the state");
                self.last_error = Some(format!("diverged at {sequence}: {error}"));
            }
            Notification::ServerError {
                code,
                message,
                action,
            } => {
                warn!(session = %session, %code, message, action, "server error");
                self.last_error = Some(format!("{code}: {message}"));
            }
            Notification::Unsubscribed => {
                warn!(session = %session, "the server ended the subscription");
                self.last_error = Some("the server ended the subscription".to_owned());
            }
            Notification::Frame(frame) => {
                debug!(session = %session, frame = frame.name(), "frame passed through");
            }
            Notification::BadFrame(error) => {
                warn!(session = %session, error, "unreadable frame ignored");
            }
        }
    }

    fn publish(&mut self) {
        if !self.fresh.is_empty() {
            let fresh = std::mem::take(&mut self.fresh);
            self.outcomes.send_modify(|o| {
                for (id, outcome) in fresh {
                    o.insert(id, outcome);
                }
            });
        }
        self.view.send_replace(snapshot_of(
            &self.client,
            &self.verifier,
            self.state_loads,
            self.last_error.clone(),
        ));
    }
}

/// A ticket, then the handshake with `?token=<ticket>` (PROTOCOL.md: browsers cannot set
/// headers on WebSockets, so the ticket is short-lived and single-use).
async fn open_socket(api: &Api, ws: &str, timeout: Duration) -> Result<Socket, DriverError> {
    let ticket = api.connect_ticket().await?;
    let mut url = reqwest::Url::parse(ws).map_err(|e| DriverError::Http {
        status: 0,
        path: ws.to_owned(),
        code: None,
        message: format!("not a WebSocket URL: {e}"),
    })?;
    url.query_pairs_mut().append_pair("token", &ticket);
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url.as_str())).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(source)) => Err(DriverError::Socket {
            url: ws.to_owned(),
            source: Box::new(source),
        }),
        Err(_) => Err(DriverError::Timeout {
            what: format!("the WebSocket handshake with {ws}"),
            after: timeout,
        }),
    }
}

/// Forwards text frames to the task until the socket ends, then reports why.
async fn read_loop(mut stream: SplitStream<Socket>, attempt: u64, tx: mpsc::UnboundedSender<Io>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                if tx
                    .send(Io::Frame {
                        attempt,
                        text: text.as_str().to_owned(),
                    })
                    .is_err()
                {
                    return;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) => format!("close frame {} {}", u16::from(f.code), f.reason),
                    None => "close frame".to_owned(),
                };
            }
            // Pings are answered by the WebSocket layer; the protocol sends no binary frames.
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "the stream ended".to_owned(),
        }
    };
    let _ = tx.send(Io::Closed { attempt, reason });
}

/// An error and its sources on one line, for the status line.
fn error_chain(error: &DriverError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
