//! The scenarios of issue 12 that run end to end against the local gateway, each measured
//! against the socket.io relay in the same run (the machines are shared and noisy, so only
//! same-run ratios mean something). The servers run one at a time, each freshly started, so
//! neither competes with the other for the two cores.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Client, Flavor, Plan, Progress};
use crate::error::Result;
use crate::measure::{self, E2eRun, Finished};
use crate::report::{Case, Measured, Report, Side};
use crate::servers::{GatewayConfig, RelayConfig, Server};
use crate::target::{Layout, Target};

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// How to start the gateway.
    pub gateway: GatewayConfig,
    /// How to start the relay.
    pub relay: RelayConfig,
    /// Tiny sizes for CI.
    pub smoke: bool,
    /// Bound on each set-up wait (connects, joins, the server going quiet).
    pub setup_wait: Duration,
    /// Bound on waiting for deliveries after the last submit.
    pub drain_wait: Duration,
}

/// `seed-load` parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeedLoad {
    /// Clients, goblins and attacks (one each).
    pub clients: usize,
}

/// `rooms` parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rooms {
    /// Sessions.
    pub sessions: usize,
    /// Clients per session.
    pub clients_per_session: usize,
    /// Chat events per client in paced mode.
    pub paced_events: usize,
    /// Largest gap between a client's paced events, in ms (each gap is uniform in 0..=this).
    pub paced_max_gap_ms: u64,
    /// Chat events per client in saturated mode (sent back to back).
    pub saturated_events: usize,
}

/// `fanout` parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Fanout {
    /// Subscribers besides the submitter.
    pub subscribers: usize,
    /// Events submitted.
    pub events: usize,
    /// Gap between submits, in ms.
    pub interval_ms: u64,
}

/// `memory` parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// Connected and subscribed clients.
    pub clients: usize,
}

/// The server's memory idle and with clients.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRun {
    /// Which server.
    pub server: &'static str,
    /// Clients connected and subscribed.
    pub clients: usize,
    /// RSS right after start, in KiB.
    pub idle_kib: u64,
    /// RSS with every client connected and subscribed, once the server is quiet, in KiB.
    pub connected_kib: u64,
    /// `(connected - idle) / clients`, in KiB.
    pub per_client_kib: f64,
    /// Set-up time in ms.
    pub setup_ms: f64,
    /// Whether the server went quiet after the joins.
    pub setup_settled: bool,
}

impl MemoryRun {
    /// Compared metrics.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("idle RSS (MiB)", self.idle_kib as f64 / 1024.0),
            ("connected RSS (MiB)", self.connected_kib as f64 / 1024.0),
            ("per client (KiB)", self.per_client_kib),
        ]
    }
}

/// One measured workload.
#[derive(Debug, Clone, Copy)]
enum Job {
    SeedLoad(SeedLoad),
    Paced(Rooms),
    Saturated(Rooms),
    Fanout(Fanout),
    Memory(Memory),
}

/// Runs `job` against both servers (ours first) and compares them.
async fn compare(ctx: &Ctx, name: &str, job: Job) -> Case {
    let ours = measure_on(ctx, Flavor::Gateway, job).await;
    let baseline = measure_on(ctx, Flavor::SocketIo, job).await;
    Case::new(name, ours, baseline)
}

/// Starts a fresh server of `flavor`, runs `job` on it, stops it.
async fn measure_on(ctx: &Ctx, flavor: Flavor, job: Job) -> Side {
    let started = match flavor {
        Flavor::Gateway => Server::gateway(&ctx.gateway).await,
        Flavor::SocketIo => Server::relay(&ctx.relay).await,
    };
    let server = match started {
        Ok(server) => server,
        Err(e) => return Side::failed(&e),
    };
    let target = Target {
        server: &server,
        flavor,
    };
    eprintln!("  {} (pid {}) ...", target.name(), server.pid);
    let result = match job {
        Job::SeedLoad(p) => seed_load_on(ctx, target, p)
            .await
            .map(|r| Measured::E2e(Box::new(r))),
        Job::Paced(p) => rooms_on(ctx, target, p, false)
            .await
            .map(|r| Measured::E2e(Box::new(r))),
        Job::Saturated(p) => rooms_on(ctx, target, p, true)
            .await
            .map(|r| Measured::E2e(Box::new(r))),
        Job::Fanout(p) => fanout_on(ctx, target, p)
            .await
            .map(|r| Measured::E2e(Box::new(r))),
        Job::Memory(p) => memory_on(ctx, target, p).await.map(Measured::Memory),
    };
    server.stop().await;
    match result {
        Ok(m) => Side::measured(m),
        Err(e) => Side::failed(&e),
    }
}

/// A short random tag making ids unique per run.
fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

fn event(session: &str, event_type: &str, payload: Value) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "sessionId": session,
           "type": event_type, "payload": payload})
}

/// A table, its plan, connected clients and their counters, ready to measure.
struct Ready {
    layout: Layout,
    plan: Arc<Plan>,
    clients: Vec<Arc<Client>>,
    progress: Arc<Progress>,
    setup: crate::target::Setup,
}

/// Prepares the table, builds the plan from it (events must be known before clients connect),
/// connects and joins every client.
async fn ready(
    ctx: &Ctx,
    target: Target<'_>,
    layout: Layout,
    build: impl FnOnce(&crate::target::Table) -> Plan,
) -> Result<Ready> {
    let started = Instant::now();
    let table = target.prepare(layout, &tag()).await?;
    let plan = Arc::new(build(&table));
    let progress = Arc::new(Progress::default());
    let (clients, mut setup) = target
        .connect_all(
            layout,
            &table,
            plan.clone(),
            progress.clone(),
            ctx.setup_wait,
        )
        .await?;
    setup.elapsed = started.elapsed();
    Ok(Ready {
        layout,
        plan,
        clients,
        progress,
        setup,
    })
}

/// Waits for the deliveries (bounded by `drain_wait` after the last submit), then analyzes.
async fn finish(ctx: &Ctx, target: Target<'_>, r: &Ready, submitted: &[Option<Instant>]) -> E2eRun {
    let deadline = Instant::now() + ctx.drain_wait;
    let expected = measure::expected_deliveries(&r.plan, r.layout);
    let timed_out = measure::wait_for(&r.progress, expected, deadline).await;
    let run = measure::analyze(Finished {
        server: target.name(),
        layout: r.layout,
        plan: &r.plan,
        clients: &r.clients,
        submitted,
        progress: &r.progress,
        setup: r.setup,
        timed_out,
        server_rss_kib: target.server.rss_kib().ok(),
    });
    for c in &r.clients {
        c.close().await;
    }
    run
}

/// Pre-serialized submit frames of `sender`'s events, with their indexes.
fn frames_of(r: &Ready, flavor: Flavor, sender: usize) -> Vec<(usize, String)> {
    r.plan
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.sender == sender)
        .map(|(i, e)| (i, Client::submit_frame(flavor, &e.body)))
        .collect()
}

/// Sends each client's frames on its own task, with a gap before every frame but the first
/// (`gap(client, k)`); returns the submit instants by event index.
async fn submit_all(
    r: &Ready,
    flavor: Flavor,
    gap: impl Fn(usize) -> Box<dyn FnMut() -> Duration + Send> + Send,
) -> Vec<Option<Instant>> {
    let per_client: Vec<Vec<(usize, String)>> = (0..r.clients.len())
        .map(|c| frames_of(r, flavor, c))
        .collect();
    let tasks: Vec<_> = per_client
        .into_iter()
        .enumerate()
        .map(|(c, frames)| {
            let client = r.clients[c].clone();
            let mut next_gap = gap(c);
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(frames.len());
                for (k, (idx, frame)) in frames.into_iter().enumerate() {
                    if k > 0 {
                        let g = next_gap();
                        if !g.is_zero() {
                            tokio::time::sleep(g).await;
                        }
                    }
                    out.push((idx, client.send_timed(frame).await.ok()));
                }
                out
            })
        })
        .collect();
    let mut submitted = vec![None; r.plan.events.len()];
    for t in tasks {
        if let Ok(sent) = t.await {
            for (idx, at) in sent {
                submitted[idx] = at;
            }
        }
    }
    submitted
}

// ---------------------------------------------------------------------------------------------
// seed-load

/// `seed-load`: the seed's load test. N clients in one session, N goblins; each client attacks
/// its own goblin once (compare-and-set of HP 15 → 10), all at the same moment.
pub async fn seed_load(ctx: &Ctx, p: SeedLoad) -> Report {
    let case = compare(ctx, "attacks", Job::SeedLoad(p)).await;
    Report::new("seed-load", ctx.smoke, &p, vec![case])
}

async fn seed_load_on(ctx: &Ctx, target: Target<'_>, p: SeedLoad) -> Result<E2eRun> {
    let layout = Layout {
        sessions: 1,
        clients_per_session: p.clients,
        goblins_per_session: p.clients,
    };
    let r = ready(ctx, target, layout, |t| {
        let mut plan = Plan::default();
        for (i, goblin) in t.goblins[0].iter().enumerate() {
            plan.push(
                i,
                event(
                    &t.sessions[0],
                    "plugin:dnd5e:attack",
                    json!({"target": {"instanceId": goblin},
                           "stateChanges": {"attributes.hp.value": {"from": 15, "to": 10}}}),
                ),
            );
        }
        plan
    })
    .await?;
    // Every frame is built first, then all are written at once.
    let frames: Vec<(usize, String)> = (0..r.clients.len())
        .flat_map(|c| frames_of(&r, target.flavor, c))
        .collect();
    let sent = futures::future::join_all(
        frames
            .into_iter()
            .map(|(idx, f)| (idx, r.clients[r.plan.events[idx].sender].clone(), f))
            .map(|(idx, c, f)| async move { (idx, c.send_timed(f).await.ok()) }),
    )
    .await;
    let mut submitted = vec![None; r.plan.events.len()];
    for (idx, at) in sent {
        submitted[idx] = at;
    }
    Ok(finish(ctx, target, &r, &submitted).await)
}

// ---------------------------------------------------------------------------------------------
// rooms

/// `rooms`: several sessions of a few clients each, every client chatting; paced (random gaps
/// of 0..=5 ms, the same seeded gaps on both servers) and saturated (back to back).
pub async fn rooms(ctx: &Ctx, p: Rooms) -> Report {
    let paced = compare(ctx, "paced", Job::Paced(p)).await;
    let saturated = compare(ctx, "saturated", Job::Saturated(p)).await;
    Report::new("rooms", ctx.smoke, &p, vec![paced, saturated])
}

async fn rooms_on(ctx: &Ctx, target: Target<'_>, p: Rooms, saturated: bool) -> Result<E2eRun> {
    let layout = Layout {
        sessions: p.sessions,
        clients_per_session: p.clients_per_session,
        goblins_per_session: 0,
    };
    let per_client = if saturated {
        p.saturated_events
    } else {
        p.paced_events
    };
    let r = ready(ctx, target, layout, |t| {
        let mut plan = Plan::default();
        // Interleaved by round, so no client's events are all at the front of the plan.
        for k in 0..per_client {
            for c in 0..layout.clients() {
                let s = &t.sessions[layout.session_of(c)];
                plan.push(
                    c,
                    event(s, "core:chat", json!({"text": format!("c{c} line {k}")})),
                );
            }
        }
        plan
    })
    .await?;
    let max_gap = p.paced_max_gap_ms;
    let submitted = submit_all(&r, target.flavor, move |c| {
        if saturated {
            Box::new(|| Duration::ZERO)
        } else {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            Box::new(move || Duration::from_millis(rng.random_range(0..=max_gap)))
        }
    })
    .await;
    Ok(finish(ctx, target, &r, &submitted).await)
}

// ---------------------------------------------------------------------------------------------
// fanout

/// `fanout`: one submitter, many subscribers in one session, paced events.
pub async fn fanout(ctx: &Ctx, p: Fanout) -> Report {
    let case = compare(ctx, "fanout", Job::Fanout(p)).await;
    Report::new("fanout", ctx.smoke, &p, vec![case])
}

async fn fanout_on(ctx: &Ctx, target: Target<'_>, p: Fanout) -> Result<E2eRun> {
    let layout = Layout {
        sessions: 1,
        clients_per_session: p.subscribers + 1,
        goblins_per_session: 0,
    };
    let r = ready(ctx, target, layout, |t| {
        let mut plan = Plan::default();
        for k in 0..p.events {
            plan.push(
                0,
                event(
                    &t.sessions[0],
                    "core:chat",
                    json!({"text": format!("line {k}")}),
                ),
            );
        }
        plan
    })
    .await?;
    let interval = Duration::from_millis(p.interval_ms);
    let submitted = submit_all(&r, target.flavor, move |_| Box::new(move || interval)).await;
    Ok(finish(ctx, target, &r, &submitted).await)
}

// ---------------------------------------------------------------------------------------------
// memory

/// `memory`: the server's RSS idle, then with every client connected and subscribed.
pub async fn memory(ctx: &Ctx, p: Memory) -> Report {
    let case = compare(ctx, "rss", Job::Memory(p)).await;
    Report::new("memory", ctx.smoke, &p, vec![case])
}

async fn memory_on(ctx: &Ctx, target: Target<'_>, p: Memory) -> Result<MemoryRun> {
    // Let the fresh process finish its start-up allocations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = target.server.rss_kib()?;
    let layout = Layout {
        sessions: 1,
        clients_per_session: p.clients,
        goblins_per_session: 0,
    };
    let r = ready(ctx, target, layout, |_| Plan::default()).await?;
    let connected_kib = target.server.rss_kib()?;
    for c in &r.clients {
        c.close().await;
    }
    Ok(MemoryRun {
        server: target.name(),
        clients: r.clients.len(),
        idle_kib,
        connected_kib,
        per_client_kib: connected_kib.saturating_sub(idle_kib) as f64 / p.clients.max(1) as f64,
        setup_ms: r.setup.elapsed.as_secs_f64() * 1_000.0,
        setup_settled: r.setup.settled,
    })
}
