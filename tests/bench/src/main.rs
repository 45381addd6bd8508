//! `dlab-bench`: the benchmarks of issue 12. End to end (seed-load, rooms, fanout, memory),
//! each measured against a socket.io 4 room relay in the same run; store level (commit, replay,
//! compaction, cold-start), each against its raw baseline in the same run. See BENCHMARKS.md.
//!
//! The bench starts the servers itself (the release `local-gateway` next to this binary by
//! default, and `node tests/bench/relay/relay.js`), talks to them on loopback only, and kills
//! them when it ends, also on error or Ctrl-C.

mod client;
mod cold;
mod error;
mod measure;
mod plot;
mod report;
mod scenarios;
mod servers;
mod stats;
mod store;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::{BenchError, Result};
use crate::report::{Measured, Report};
use crate::scenarios::{Ctx, Fanout, Memory, Rooms, SeedLoad};
use crate::servers::{GatewayConfig, GatewayStore, RelayConfig};
use crate::store::Backends;

/// End-to-end benchmarks of the Dungeon Lab local gateway against a socket.io 4 room relay.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Debug, Args)]
struct Global {
    /// The local-gateway binary (default: `local-gateway` next to this binary).
    #[arg(long, global = true)]
    gateway: Option<PathBuf>,
    /// An extra argument for the gateway, e.g. `--gateway-arg=--delivery --gateway-arg=apigw`
    /// (repeatable, passed through in order).
    #[arg(long = "gateway-arg", global = true, allow_hyphen_values = true)]
    gateway_args: Vec<String>,
    /// `RUST_LOG` of the gateway.
    #[arg(long, global = true, default_value = "warn")]
    gateway_log: String,
    /// The gateway's storage: `memory` (`--ephemeral`) or `sqlite` (the persistent default,
    /// in a fresh temporary data directory).
    #[arg(long, global = true, value_enum, default_value_t = GatewayStore::Memory)]
    store: GatewayStore,
    /// The relay's folder (relay.js, package.json, package-lock.json).
    #[arg(long, global = true, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/relay"))]
    relay_dir: PathBuf,
    /// The node program.
    #[arg(long, global = true, default_value = "node")]
    node: String,
    /// The npm program (runs `npm ci` when the relay's node_modules is missing).
    #[arg(long, global = true, default_value = "npm")]
    npm: String,
    /// Where results (JSON, SVG) go.
    #[arg(long, global = true, default_value = "target/bench")]
    out: PathBuf,
    /// Tiny sizes (a few clients and events) that finish in seconds: for CI.
    #[arg(long, global = true)]
    smoke: bool,
    /// Bound on each set-up wait, in seconds (default 120, smoke 20).
    #[arg(long, global = true)]
    setup_timeout_secs: Option<u64>,
    /// Bound on waiting for deliveries after the last submit, in seconds (default 30, smoke 10).
    #[arg(long, global = true)]
    drain_timeout_secs: Option<u64>,
    /// Redis for `commit` and `replay` (without it they report "skipped: no Redis").
    #[arg(long, global = true, env = "REDIS_URL")]
    redis: Option<String>,
    /// MongoDB for `replay`'s archive (a fresh database per run, dropped at the end).
    #[arg(long, global = true, env = "MONGODB_URI")]
    mongodb: Option<String>,
    /// Where cargo-lambda put the bootstraps, `<dir>/<function>/bootstrap` (`cold-start`).
    #[arg(long, global = true, default_value = "target/lambda")]
    lambda_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 100 clients in one session, 100 simultaneous attacks on 100 goblins: time until every
    /// client has every result.
    SeedLoad(SeedLoadArgs),
    /// 100 clients in 10 sessions chatting, paced and saturated: latencies and deliveries/s.
    Rooms(RoomsArgs),
    /// One submitter, 1,000 subscribers in one session: last-receiver latency, nothing missing.
    Fanout(FanoutArgs),
    /// The server's RSS idle and with 1,000 connected and subscribed clients.
    Memory(MemoryArgs),
    /// The Redis event log's commit against commit.lua called raw with EVALSHA, 1 and 50 tasks.
    Commit(CommitArgs),
    /// A whole session read back from Redis and from MongoDB, against the memory adapters.
    Replay(ReplayArgs),
    /// A combat session's hot log before and after compaction, with a state hash check.
    Compaction(CompactionArgs),
    /// Each Lambda bootstrap's start-up to its first Runtime API poll, against a hello world.
    ColdStart(ColdStartArgs),
    /// Every scenario above, with their default sizes (or smoke sizes with --smoke).
    All,
}

#[derive(Debug, Default, Args)]
struct CommitArgs {
    /// Commits per case and side.
    #[arg(long)]
    events: Option<usize>,
    /// Concurrent tasks of the concurrent case.
    #[arg(long)]
    tasks: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct ReplayArgs {
    /// Events in the session.
    #[arg(long)]
    events: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct CompactionArgs {
    /// Combat events.
    #[arg(long)]
    events: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct ColdStartArgs {
    /// Starts per function (median reported).
    #[arg(long)]
    starts: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct SeedLoadArgs {
    /// Clients, goblins and attacks.
    #[arg(long)]
    clients: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct RoomsArgs {
    /// Sessions.
    #[arg(long)]
    sessions: Option<usize>,
    /// Clients per session.
    #[arg(long)]
    clients_per_session: Option<usize>,
    /// Chat events per client, paced.
    #[arg(long)]
    paced_events: Option<usize>,
    /// Chat events per client, saturated.
    #[arg(long)]
    saturated_events: Option<usize>,
}

#[derive(Debug, Default, Args)]
struct FanoutArgs {
    /// Subscribers besides the submitter.
    #[arg(long)]
    subscribers: Option<usize>,
    /// Events.
    #[arg(long)]
    events: Option<usize>,
    /// Milliseconds between submits.
    #[arg(long)]
    interval_ms: Option<u64>,
}

#[derive(Debug, Default, Args)]
struct MemoryArgs {
    /// Connected clients.
    #[arg(long)]
    clients: Option<usize>,
}

/// Default sizes: issue 12's, or tiny ones for `--smoke`.
fn seed_load(smoke: bool, a: &SeedLoadArgs) -> SeedLoad {
    SeedLoad {
        clients: a.clients.unwrap_or(if smoke { 5 } else { 100 }),
    }
}

fn rooms(smoke: bool, a: &RoomsArgs) -> Rooms {
    Rooms {
        sessions: a.sessions.unwrap_or(if smoke { 2 } else { 10 }),
        clients_per_session: a.clients_per_session.unwrap_or(if smoke { 3 } else { 10 }),
        paced_events: a.paced_events.unwrap_or(if smoke { 3 } else { 20 }),
        paced_max_gap_ms: 5,
        saturated_events: a.saturated_events.unwrap_or(if smoke { 3 } else { 50 }),
    }
}

fn fanout(smoke: bool, a: &FanoutArgs) -> Fanout {
    Fanout {
        subscribers: a.subscribers.unwrap_or(if smoke { 20 } else { 1000 }),
        events: a.events.unwrap_or(if smoke { 3 } else { 200 }),
        interval_ms: a.interval_ms.unwrap_or(if smoke { 20 } else { 50 }),
    }
}

fn memory(smoke: bool, a: &MemoryArgs) -> Memory {
    Memory {
        clients: a.clients.unwrap_or(if smoke { 20 } else { 1000 }),
    }
}

fn commit(smoke: bool, a: &CommitArgs) -> store::Commit {
    store::Commit {
        events: a.events.unwrap_or(if smoke { 200 } else { 20_000 }),
        tasks: a.tasks.unwrap_or(50),
    }
}

fn replay(smoke: bool, a: &ReplayArgs) -> store::Replay {
    store::Replay {
        events: a.events.unwrap_or(if smoke { 1_000 } else { 100_000 }),
        page: dlab_service::config::Settings::default().read_page,
    }
}

fn compaction(smoke: bool, a: &CompactionArgs) -> store::Compaction {
    store::Compaction {
        events: a.events.unwrap_or(if smoke { 1_000 } else { 10_000 }),
    }
}

fn cold_start(smoke: bool, a: &ColdStartArgs, g: &Global) -> cold::ColdStart {
    cold::ColdStart {
        starts: a.starts.unwrap_or(if smoke { 1 } else { 5 }),
        lambda_dir: g.lambda_dir.clone(),
    }
}

fn ctx(g: &Global) -> Result<Ctx> {
    let program = match &g.gateway {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|source| BenchError::Io {
                what: "locate this binary".to_owned(),
                source,
            })?
            .with_file_name("local-gateway"),
    };
    Ok(Ctx {
        gateway: GatewayConfig {
            program,
            extra_args: g.gateway_args.clone(),
            log: g.gateway_log.clone(),
            store: g.store,
        },
        relay: RelayConfig {
            dir: g.relay_dir.clone(),
            node: g.node.clone(),
            npm: g.npm.clone(),
        },
        smoke: g.smoke,
        setup_wait: Duration::from_secs(g.setup_timeout_secs.unwrap_or(if g.smoke {
            20
        } else {
            120
        })),
        drain_wait: Duration::from_secs(g.drain_timeout_secs.unwrap_or(if g.smoke {
            10
        } else {
            30
        })),
    })
}

/// One scenario with its sizes.
#[derive(Debug, Clone)]
enum Pick {
    SeedLoad(SeedLoad),
    Rooms(Rooms),
    Fanout(Fanout),
    Memory(Memory),
    Commit(store::Commit),
    Replay(store::Replay),
    Compaction(store::Compaction),
    ColdStart(cold::ColdStart),
}

fn picks(command: &Command, g: &Global) -> Vec<Pick> {
    let smoke = g.smoke;
    match command {
        Command::SeedLoad(a) => vec![Pick::SeedLoad(seed_load(smoke, a))],
        Command::Rooms(a) => vec![Pick::Rooms(rooms(smoke, a))],
        Command::Fanout(a) => vec![Pick::Fanout(fanout(smoke, a))],
        Command::Memory(a) => vec![Pick::Memory(memory(smoke, a))],
        Command::Commit(a) => vec![Pick::Commit(commit(smoke, a))],
        Command::Replay(a) => vec![Pick::Replay(replay(smoke, a))],
        Command::Compaction(a) => vec![Pick::Compaction(compaction(smoke, a))],
        Command::ColdStart(a) => vec![Pick::ColdStart(cold_start(smoke, a, g))],
        Command::All => vec![
            Pick::SeedLoad(seed_load(smoke, &SeedLoadArgs::default())),
            Pick::Rooms(rooms(smoke, &RoomsArgs::default())),
            Pick::Fanout(fanout(smoke, &FanoutArgs::default())),
            Pick::Memory(memory(smoke, &MemoryArgs::default())),
            Pick::Commit(commit(smoke, &CommitArgs::default())),
            Pick::Replay(replay(smoke, &ReplayArgs::default())),
            Pick::Compaction(compaction(smoke, &CompactionArgs::default())),
            Pick::ColdStart(cold_start(smoke, &ColdStartArgs::default(), g)),
        ],
    }
}

/// Runs the chosen scenarios; prints and writes each report as soon as it is done.
async fn run(cli: &Cli) -> Result<Vec<Report>> {
    let ctx = ctx(&cli.global)?;
    let out = &cli.global.out;
    std::fs::create_dir_all(out).map_err(|source| BenchError::Io {
        what: format!("create {}", out.display()),
        source,
    })?;
    let backends = Backends {
        redis: cli.global.redis.clone(),
        mongodb: cli.global.mongodb.clone(),
    };
    let smoke = cli.global.smoke;
    let mut reports = Vec::new();
    for pick in picks(&cli.command, &cli.global) {
        let report = match pick {
            Pick::SeedLoad(p) => {
                eprintln!("seed-load ...");
                scenarios::seed_load(&ctx, p).await
            }
            Pick::Rooms(p) => {
                eprintln!("rooms ...");
                scenarios::rooms(&ctx, p).await
            }
            Pick::Fanout(p) => {
                eprintln!("fanout ...");
                scenarios::fanout(&ctx, p).await
            }
            Pick::Memory(p) => {
                eprintln!("memory ...");
                scenarios::memory(&ctx, p).await
            }
            Pick::Commit(p) => {
                eprintln!("commit ...");
                store::commit(&backends, smoke, p).await
            }
            Pick::Replay(p) => {
                eprintln!("replay ...");
                store::replay(&backends, smoke, p).await
            }
            Pick::Compaction(p) => {
                eprintln!("compaction ...");
                store::compaction(smoke, p).await
            }
            Pick::ColdStart(p) => {
                eprintln!("cold-start ...");
                cold::cold_start(smoke, p).await?
            }
        };
        emit(&report, out)?;
        reports.push(report);
    }
    Ok(reports)
}

/// Prints a report's table and writes its JSON and histograms.
fn emit(report: &Report, out: &Path) -> Result<()> {
    print!("{}", report.table());
    report.write_json(out)?;
    for case in &report.cases {
        let (ours, base) = case.e2e_pair();
        if let Some(path) = plot::latency_histogram(out, report.scenario, &case.name, ours, base)? {
            println!("histogram: {}", path.display());
        }
    }
    println!(
        "results: {}",
        out.join(format!("{}.json", report.scenario)).display()
    );
    Ok(())
}

/// Whether the run should fail: a server that could not be measured, or (in smoke runs, which
/// check that the bench still works) a delivery that never arrived.
fn failed(reports: &[Report], smoke: bool) -> bool {
    reports.iter().flat_map(|r| &r.cases).any(|c| {
        [&c.ours, &c.baseline].into_iter().any(|s| {
            s.error.is_some()
                || (smoke && matches!(&s.result, Some(Measured::E2e(r)) if r.missing > 0))
        })
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dlab-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&cli) => r,
            // Dropping the run drops every server guard, which kills the children.
            _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
        }
    });
    // Let aborted reader tasks go before the process exits.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(reports) if failed(&reports, cli.global.smoke) => {
            eprintln!("dlab-bench: some runs failed or missed deliveries (see above)");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlab-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
