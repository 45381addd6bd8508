//! Typed configuration, read once at cold start.
//!
//! Every variable name is a `const`; a missing required variable is an error that names it.
//! Defaults exist only where they are safe (limits, timeouts), never for secrets or endpoints.
//!
//! Values come from [`Vars`]: the process environment, where a secret-bearing variable
//! (`REDIS_URL`, `MONGODB_URI`, `JWT_SECRET`, `TICKET_SECRET`) may instead be named by ARN in
//! `<NAME>_SECRET_ARN` and is then read from AWS Secrets Manager at cold start (feature
//! `secrets`). Locally the plain variables are read. A function reads only what its
//! features need: `ws-connect` reads no Redis or MongoDB setting at all.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use dlab_core::event::DEFAULT_MAX_PAYLOAD_BYTES;
use dlab_core::ids::UserId;
use dlab_core::protocol::DEFAULT_MAX_FRAME_BYTES;
use dlab_store::error::BoxError;
pub use dlab_store::error::ConfigError;

/// HS256 secret for user tokens and connect tickets (at least [`MIN_SECRET_BYTES`] bytes).
pub const JWT_SECRET: &str = "JWT_SECRET";
/// JWKS URL for RS256 user tokens (e.g. a Cognito user pool's `.well-known/jwks.json`).
pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
/// Expected `iss` of user tokens: required with [`JWT_JWKS_URL`], optional with a secret.
pub const JWT_ISSUER: &str = "JWT_ISSUER";
/// The app client id(s) whose tokens are accepted, comma separated: required with
/// [`JWT_JWKS_URL`], because one identity provider serves many applications.
pub const JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// HS256 secret for connect tickets when user tokens come from a JWKS (defaults to JWT_SECRET).
pub const TICKET_SECRET: &str = "TICKET_SECRET";
/// Open connections allowed per user at once.
pub const MAX_CONNECTIONS_PER_USER: &str = "DLAB_MAX_CONNECTIONS_PER_USER";
/// The shortest HS256 secret accepted: 256 bits, the size of the HMAC-SHA256 output (RFC 7518
/// §3.2). A shorter secret could be brute-forced from any one token.
pub const MIN_SECRET_BYTES: usize = 32;
/// Redis URL (`redis://` or `rediss://`).
pub const REDIS_URL: &str = "REDIS_URL";
/// `1` (or `true`) to speak the Redis Cluster protocol (MemoryDB, ElastiCache cluster mode).
pub const REDIS_CLUSTER: &str = "REDIS_CLUSTER";
/// Secrets Manager ARN of the secret whose `SecretString` is the Redis URL (wins over
/// [`REDIS_URL`]).
pub const REDIS_URL_SECRET_ARN: &str = "REDIS_URL_SECRET_ARN";
/// Secrets Manager ARN of the MongoDB URI (wins over [`MONGODB_URI`]).
pub const MONGODB_URI_SECRET_ARN: &str = "MONGODB_URI_SECRET_ARN";
/// Secrets Manager ARN of the HS256 secret (wins over [`JWT_SECRET`]).
pub const JWT_SECRET_ARN: &str = "JWT_SECRET_ARN";
/// Secrets Manager ARN of the ticket secret (wins over [`TICKET_SECRET`]).
pub const TICKET_SECRET_ARN: &str = "TICKET_SECRET_ARN";
/// MongoDB URI.
pub const MONGODB_URI: &str = "MONGODB_URI";
/// DynamoDB table of connections.
pub const CONNECTIONS_TABLE: &str = "CONNECTIONS_TABLE";
/// API Gateway management endpoint (`https://{domainName}/{stage}`); derived from the event when
/// unset.
pub const APIGW_MANAGEMENT_ENDPOINT: &str = "APIGW_MANAGEMENT_ENDPOINT";
/// Payload limit in bytes.
pub const MAX_PAYLOAD_BYTES: &str = "DLAB_MAX_PAYLOAD_BYTES";
/// Prefix of the rate-limit variables: `DLAB_RATE_<CLASS>_PER_SECOND` and
/// `DLAB_RATE_<CLASS>_BURST` for each [`RateClass`].
pub const RATE_PREFIX: &str = "DLAB_RATE_";
/// Events kept in the hot window when a session is rebuilt from the archive.
pub const REHYDRATE_WINDOW: &str = "DLAB_REHYDRATE_WINDOW";
/// Events since the last snapshot that make a session due for compaction.
pub const COMPACTION_THRESHOLD: &str = "DLAB_COMPACTION_THRESHOLD";
/// Events kept in the hot log below the latest snapshot.
pub const HOT_TAIL: &str = "DLAB_HOT_TAIL";
/// Seconds without events after which a session's hot state is released.
pub const IDLE_RELEASE_SECS: &str = "DLAB_IDLE_RELEASE_SECS";
/// Days archived events are kept once a snapshot covers them (unset: forever).
pub const ARCHIVE_RETENTION_DAYS: &str = "DLAB_ARCHIVE_RETENTION_DAYS";
/// Window of the GM conflict report: blind writes to one path by different users this close.
pub const CONFLICT_WINDOW_MS: &str = "DLAB_CONFLICT_WINDOW_MS";
/// Bound on the archive write inside submit, in milliseconds.
pub const ARCHIVE_TIMEOUT_MS: &str = "DLAB_ARCHIVE_TIMEOUT_MS";
/// Time budget of a subscribe or replay catch-up, in milliseconds.
pub const CATCHUP_BUDGET_MS: &str = "DLAB_CATCHUP_BUDGET_MS";
/// The administrators: user ids (token `sub`s), comma separated; unset or blank: none.
pub const ADMINS: &str = "DLAB_ADMINS";

/// Limits and timeouts of the use cases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Payload limit (compact JSON bytes).
    pub max_payload_bytes: usize,
    /// Largest frame the server sends (API Gateway's limit is 32 KB).
    pub max_frame_bytes: usize,
    /// Token buckets of every WebSocket action.
    pub rates: RateLimits,
    /// Events put back into the hot window when a session is rebuilt from the archive (older
    /// ones are served from the archive), so a rebuild's memory does not grow with the session.
    pub rehydrate_window: usize,
    /// Bound on the archive write on the submit path ([`ArchiveMode::BestEffort`] only).
    pub archive_timeout: Duration,
    /// Whether an event is confirmed before or only after its archive write.
    pub archive_mode: ArchiveMode,
    /// A catch-up stops early (`complete: false`) when this budget runs out, well inside API
    /// Gateway's 29 s integration timeout.
    pub catchup_budget: Duration,
    /// How long a connection record lives: API Gateway closes sockets after 2 h; a margin
    /// covers clock skew and TTL lag.
    pub connection_ttl: Duration,
    /// Lifetime of a connect ticket.
    pub ticket_ttl: Duration,
    /// Posts in flight at once when broadcasting.
    pub broadcast_concurrency: usize,
    /// Events read per page during catch-up.
    pub read_page: usize,
    /// Unexpired connections one user may hold at once; `$connect` over it is refused (429), so
    /// one account cannot exhaust the connections of the API.
    pub max_connections_per_user: usize,
    /// Session lifecycle: compaction, backfill, idle release, retention, conflicts.
    pub lifecycle: Lifecycle,
    /// Who may use the administrative routes (`POST /compendium/batch`).
    pub admins: Admins,
}

/// The users allowed on administrative routes ([`ADMINS`]). Empty by default: no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admins(std::collections::BTreeSet<UserId>);

impl Admins {
    /// Parses a comma-separated list of user ids (blanks between commas are ignored).
    pub fn parse(raw: &str) -> Self {
        Self(
            raw.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(UserId::new)
                .collect(),
        )
    }

    /// Reads [`ADMINS`].
    pub fn from_vars(vars: &Vars) -> Self {
        Self::parse(&vars.get(ADMINS).unwrap_or_default())
    }

    /// Whether `user` is an administrator.
    pub fn contains(&self, user: &UserId) -> bool {
        self.0.contains(user)
    }

    /// Whether there is no administrator.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<UserId> for Admins {
    fn from_iter<T: IntoIterator<Item = UserId>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// When sessions are compacted, trimmed, released and pruned, and how conflicts are reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    /// A session is compacted once it has more events than this since its last snapshot; with
    /// the tail it bounds the Redis hot log of any session.
    pub compaction_threshold: u64,
    /// Events kept in the hot log below the latest snapshot (recent history stays in Redis).
    pub hot_tail: u64,
    /// A session without events for this long has its hot state released (after a final
    /// backfill and snapshot); the next subscribe or submit rebuilds it.
    pub idle_release_after: Duration,
    /// Archived events older than this and covered by a snapshot are deleted; `None` keeps
    /// every event (the default).
    pub archive_retention: Option<Duration>,
    /// How far back a backfill run looks for active sessions (longer than the idle release).
    pub backfill_window: Duration,
    /// Sessions one maintenance run handles at most (per kind), to stay inside a Lambda's time.
    pub sweep_limit: usize,
    /// How long a maintenance run holds a session's lease without renewing it.
    pub lease_ttl: Duration,
    /// Blind writes to one path by different users closer than this are a conflict.
    pub conflict_window_ms: u64,
    /// How long a compare-and-set rejection can be escalated to the GM.
    pub rejection_ttl: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            compaction_threshold: 1000,
            hot_tail: 200,
            idle_release_after: Duration::from_secs(24 * 3600),
            archive_retention: None,
            backfill_window: Duration::from_secs(48 * 3600),
            sweep_limit: 500,
            lease_ttl: Duration::from_secs(60),
            conflict_window_ms: dlab_core::conflict::DEFAULT_WINDOW_MS,
            rejection_ttl: Duration::from_secs(600),
        }
    }
}

impl Lifecycle {
    /// Defaults, overridden by the variables that are set.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut l = Lifecycle::default();
        let positive = |name: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    name,
                    reason: "must be at least 1".to_owned(),
                })
            } else {
                Ok(v)
            }
        };
        if let Some(v) = vars.parse::<u64>(COMPACTION_THRESHOLD)? {
            l.compaction_threshold = positive(COMPACTION_THRESHOLD, v)?;
        }
        if let Some(v) = vars.parse::<u64>(HOT_TAIL)? {
            l.hot_tail = v;
        }
        if let Some(v) = vars.parse::<u64>(IDLE_RELEASE_SECS)? {
            l.idle_release_after = Duration::from_secs(positive(IDLE_RELEASE_SECS, v)?);
            l.backfill_window = l.backfill_window.max(l.idle_release_after * 2);
        }
        if let Some(v) = vars.parse::<u64>(ARCHIVE_RETENTION_DAYS)? {
            l.archive_retention = Some(Duration::from_secs(
                positive(ARCHIVE_RETENTION_DAYS, v)? * 24 * 3600,
            ));
        }
        if let Some(v) = vars.parse::<u64>(CONFLICT_WINDOW_MS)? {
            l.conflict_window_ms = v;
        }
        Ok(l)
    }
}

/// When an event counts as confirmed, relative to its archive write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveMode {
    /// The deployment: the hot log (Redis, replicated) holds every commit, so a commit stands
    /// even when its archive write fails or outlasts [`Settings::archive_timeout`], and backfill
    /// copies it to the archive later.
    #[default]
    BestEffort,
    /// The embedded local run: the hot log is in the process's memory and dies with it, so the
    /// archive is the only durable copy. Commits of one session are serialized with their
    /// archive write, an event is confirmed only after that write has committed, and a failed
    /// write undoes the commit (the hot state is dropped and rebuilt from the archive) and is
    /// an error to the sender: nothing unarchived is ever confirmed, and no later event of the
    /// session can land above a hole.
    ConfirmAfterArchive,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            rates: RateLimits::default(),
            rehydrate_window: 1200,
            archive_timeout: Duration::from_millis(300),
            archive_mode: ArchiveMode::BestEffort,
            catchup_budget: Duration::from_secs(20),
            connection_ttl: Duration::from_secs(2 * 3600 + 600),
            ticket_ttl: Duration::from_secs(60),
            broadcast_concurrency: 64,
            read_page: 500,
            max_connections_per_user: 10,
            lifecycle: Lifecycle::default(),
            admins: Admins::default(),
        }
    }
}

impl Settings {
    /// The envelope limits these settings give.
    pub fn envelope_limits(&self) -> dlab_core::event::EnvelopeLimits {
        dlab_core::event::EnvelopeLimits {
            max_payload_bytes: self.max_payload_bytes,
        }
    }

    /// Defaults, overridden by the `DLAB_*` variables of the environment that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::from_env())
    }

    /// Defaults, overridden by the `DLAB_*` variables that are set.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        if let Some(v) = vars.parse::<usize>(MAX_PAYLOAD_BYTES)? {
            s.max_payload_bytes = v;
        }
        s.rates = RateLimits::from_vars(vars)?;
        if let Some(v) = vars.parse::<usize>(REHYDRATE_WINDOW)? {
            s.rehydrate_window = v.max(1);
        }
        if let Some(v) = vars.parse::<u64>(ARCHIVE_TIMEOUT_MS)? {
            s.archive_timeout = Duration::from_millis(v);
        }
        if let Some(v) = vars.parse::<u64>(CATCHUP_BUDGET_MS)? {
            s.catchup_budget = Duration::from_millis(v);
        }
        s.lifecycle = Lifecycle::from_vars(vars)?;
        s.admins = Admins::from_vars(vars);
        if let Some(v) = vars.parse::<usize>(MAX_CONNECTIONS_PER_USER)? {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    name: MAX_CONNECTIONS_PER_USER,
                    reason: "must be at least 1 (0 would refuse every connection)".into(),
                });
            }
            s.max_connections_per_user = v;
        }
        Ok(s)
    }
}

/// One token bucket: refilled at `per_second`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateBudget {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: how many actions may come at once after a quiet spell.
    pub burst: u32,
}

impl RateBudget {
    /// A budget of `per_second` with room for `burst`.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
}

/// Which bucket an action draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    /// Every message on one connection, checked before any store lookup (a flood of frames,
    /// even malformed ones, costs the flooder only).
    Connection,
    /// `submit`, per user across all their connections: each one is a commit and a broadcast.
    Submit,
    /// `subscribe` and `replay`, per user: each may read and post a whole log.
    Read,
    /// `ephemeral`, per user: each one is a broadcast.
    Ephemeral,
    /// `ping` and `unsubscribe`, per user: cheap, but still store reads.
    Control,
}

impl RateClass {
    /// Every class.
    pub const ALL: [RateClass; 5] = [
        RateClass::Connection,
        RateClass::Submit,
        RateClass::Read,
        RateClass::Ephemeral,
        RateClass::Control,
    ];

    /// Upper-case name in the variables (`DLAB_RATE_SUBMIT_PER_SECOND`).
    pub fn var_name(self) -> &'static str {
        match self {
            RateClass::Connection => "CONNECTION",
            RateClass::Submit => "SUBMIT",
            RateClass::Read => "READ",
            RateClass::Ephemeral => "EPHEMERAL",
            RateClass::Control => "CONTROL",
        }
    }

    /// Lower-case name in bucket keys and logs.
    pub fn key_name(self) -> &'static str {
        match self {
            RateClass::Connection => "conn",
            RateClass::Submit => "submit",
            RateClass::Read => "read",
            RateClass::Ephemeral => "ephemeral",
            RateClass::Control => "control",
        }
    }
}

/// The budgets of every [`RateClass`]. The defaults let a busy table play (a player rarely
/// submits more than a few events a second; a reconnecting client subscribes to a few
/// sessions) while one member flooding `replay {from: 0}` is held to two a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Per connection, every message.
    pub connection: RateBudget,
    /// Per user, `submit`.
    pub submit: RateBudget,
    /// Per user, `subscribe` and `replay`.
    pub read: RateBudget,
    /// Per user, `ephemeral`.
    pub ephemeral: RateBudget,
    /// Per user, `ping` and `unsubscribe`.
    pub control: RateBudget,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            connection: RateBudget::new(50.0, 100),
            submit: RateBudget::new(20.0, 40),
            read: RateBudget::new(2.0, 10),
            ephemeral: RateBudget::new(30.0, 60),
            control: RateBudget::new(5.0, 20),
        }
    }
}

impl RateLimits {
    /// The budget of a class.
    pub fn get(&self, class: RateClass) -> RateBudget {
        match class {
            RateClass::Connection => self.connection,
            RateClass::Submit => self.submit,
            RateClass::Read => self.read,
            RateClass::Ephemeral => self.ephemeral,
            RateClass::Control => self.control,
        }
    }

    fn get_mut(&mut self, class: RateClass) -> &mut RateBudget {
        match class {
            RateClass::Connection => &mut self.connection,
            RateClass::Submit => &mut self.submit,
            RateClass::Read => &mut self.read,
            RateClass::Ephemeral => &mut self.ephemeral,
            RateClass::Control => &mut self.control,
        }
    }

    /// Defaults, overridden by the `DLAB_RATE_<CLASS>_PER_SECOND` / `_BURST` variables that are
    /// set. A rate must be positive and finite, a burst at least 1.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut limits = RateLimits::default();
        for class in RateClass::ALL {
            let budget = limits.get_mut(class);
            let rate_var = rate_var_name(class, "PER_SECOND");
            if let Some(v) = vars.parse::<f64>(rate_var)? {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ConfigError::Invalid {
                        name: rate_var,
                        reason: "must be a positive number".to_owned(),
                    });
                }
                budget.per_second = v;
            }
            let burst_var = rate_var_name(class, "BURST");
            if let Some(v) = vars.parse::<u32>(burst_var)? {
                if v == 0 {
                    return Err(ConfigError::Invalid {
                        name: burst_var,
                        reason: "must be at least 1".to_owned(),
                    });
                }
                budget.burst = v;
            }
        }
        Ok(limits)
    }
}

/// `DLAB_RATE_<CLASS>_<what>`, as a `'static` name for errors.
fn rate_var_name(class: RateClass, what: &str) -> &'static str {
    const NAMES: [[&str; 2]; 5] = [
        [
            "DLAB_RATE_CONNECTION_PER_SECOND",
            "DLAB_RATE_CONNECTION_BURST",
        ],
        ["DLAB_RATE_SUBMIT_PER_SECOND", "DLAB_RATE_SUBMIT_BURST"],
        ["DLAB_RATE_READ_PER_SECOND", "DLAB_RATE_READ_BURST"],
        [
            "DLAB_RATE_EPHEMERAL_PER_SECOND",
            "DLAB_RATE_EPHEMERAL_BURST",
        ],
        ["DLAB_RATE_CONTROL_PER_SECOND", "DLAB_RATE_CONTROL_BURST"],
    ];
    let row = RateClass::ALL
        .iter()
        .position(|c| *c == class)
        .expect("every class is listed");
    let name = NAMES[row][usize::from(what == "BURST")];
    debug_assert_eq!(name, format!("{RATE_PREFIX}{}_{what}", class.var_name()));
    name
}

/// An HS256 key of at least [`MIN_SECRET_BYTES`] bytes. Only [`HsSecret::new`] makes one, so a
/// short secret cannot reach the authenticator; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct HsSecret(String);

impl HsSecret {
    /// Checks the length; `variable` names where the value came from, for the error.
    pub fn new(variable: &'static str, value: impl Into<String>) -> Result<Self, ConfigError> {
        let value = value.into();
        if value.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: variable,
                reason: format!(
                    "an HS256 secret needs at least {MIN_SECRET_BYTES} bytes, this one has {}",
                    value.len()
                ),
            });
        }
        Ok(Self(value))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for HsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HsSecret(<redacted>)")
    }
}

/// User tokens from a JWKS (RS256), such as a Cognito user pool's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// The JWKS document URL.
    pub url: String,
    /// The `iss` every token must carry (the user pool's URL).
    pub issuer: String,
    /// The app client ids: an ID token's `aud`, or an access token's `client_id`, must be one
    /// of them. Never empty.
    pub audiences: Vec<String>,
    /// Signs the connect tickets (HS256).
    pub ticket_secret: HsSecret,
}

/// How user tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtConfig {
    /// HS256 user tokens with a shared secret, which signs the connect tickets too.
    Secret {
        /// The secret.
        secret: HsSecret,
        /// The `iss` tokens must carry, when set.
        issuer: Option<String>,
    },
    /// RS256 user tokens through a JWKS; tickets use their own HS256 secret.
    Jwks(JwksConfig),
}

impl JwtConfig {
    /// HS256 with `secret` and no issuer check (local runs and tests).
    pub fn secret(secret: HsSecret) -> Self {
        JwtConfig::Secret {
            secret,
            issuer: None,
        }
    }

    /// Reads `JWT_SECRET`, or `JWT_JWKS_URL` with `JWT_AUDIENCE`, `JWT_ISSUER` and
    /// `TICKET_SECRET` (or `JWT_SECRET`); names the first missing or unusable variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`JwtConfig::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = |name: &'static str| get(name).map(|v| HsSecret::new(name, v)).transpose();
        let issuer = get(JWT_ISSUER).map(|v| v.trim().to_owned());
        let Some(url) = get(JWT_JWKS_URL) else {
            let secret = secret(JWT_SECRET)?.ok_or(ConfigError::Missing(JWT_SECRET))?;
            return Ok(JwtConfig::Secret { secret, issuer });
        };
        let audiences: Vec<String> = get(JWT_AUDIENCE)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if audiences.is_empty() {
            return Err(ConfigError::Missing(JWT_AUDIENCE));
        }
        let issuer = issuer.ok_or(ConfigError::Missing(JWT_ISSUER))?;
        let ticket_secret = match secret(TICKET_SECRET)? {
            Some(s) => s,
            None => secret(JWT_SECRET)?.ok_or(ConfigError::Missing(TICKET_SECRET))?,
        };
        Ok(JwtConfig::Jwks(JwksConfig {
            url: url.trim().to_owned(),
            issuer,
            audiences,
            ticket_secret,
        }))
    }
}

/// The configuration source: variables by name, with the secret-bearing ones resolved.
#[derive(Clone, Default)]
pub struct Vars {
    values: HashMap<String, String>,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: names only.
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Vars").field("names", &names).finish()
    }
}

/// Reads a secret's value by ARN (AWS Secrets Manager in a Lambda; tests use their own).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The `SecretString` of the secret `arn`.
    async fn secret(&self, arn: &str) -> Result<String, BoxError>;
}

impl Vars {
    /// A snapshot of the process environment.
    pub fn from_env() -> Self {
        Self {
            values: std::env::vars().collect(),
        }
    }

    /// Exactly these variables (tests, tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// A required variable.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    /// A variable parsed as `T`, `None` when unset; a value that does not parse names it.
    pub fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                }),
        }
    }

    /// A boolean flag: `1`/`true`/`yes` or `0`/`false`/`no` (unset = `false`).
    pub fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                reason: format!("must be 1 or 0 (true or false), got {v:?}"),
            }),
        }
    }

    /// For each `(NAME, NAME_SECRET_ARN)` of `secrets` whose ARN variable is set, reads the
    /// secret through `source` and makes it the value of `NAME` (it wins over a plain `NAME`).
    /// Without a source (a build without the `secrets` feature) an ARN is an error rather than
    /// silently ignored.
    pub async fn resolve_secrets(
        &mut self,
        secrets: &[(&'static str, &'static str)],
        source: Option<&dyn SecretSource>,
    ) -> Result<(), ConfigError> {
        for (name, arn_var) in secrets {
            let Some(arn) = self.get(arn_var) else {
                continue;
            };
            let Some(source) = source else {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!(
                        "{arn_var} is set but this build cannot read AWS Secrets Manager (feature `secrets`)"
                    ),
                });
            };
            let value = source
                .secret(&arn)
                .await
                .map_err(|source| ConfigError::Secret { name, source })?;
            self.values.insert((*name).to_owned(), value);
        }
        Ok(())
    }
}

/// The secret-bearing variables a build of these features reads, each with the variable of its
/// Secrets Manager ARN.
pub fn secret_names() -> Vec<(&'static str, &'static str)> {
    let mut names = Vec::new();
    if cfg!(feature = "redis") {
        names.push((REDIS_URL, REDIS_URL_SECRET_ARN));
    }
    if cfg!(feature = "mongo") {
        names.push((MONGODB_URI, MONGODB_URI_SECRET_ARN));
    }
    if cfg!(feature = "auth") {
        names.extend([
            (JWT_SECRET, JWT_SECRET_ARN),
            (TICKET_SECRET, TICKET_SECRET_ARN),
        ]);
    }
    names
}

/// Everything a Lambda needs, read once at cold start: only the settings of the adapters this
/// build has (its cargo features).
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits and timeouts.
    pub settings: Settings,
    /// Token verification; `None` in a function that verifies no tokens (built without `auth`).
    pub jwt: Option<JwtConfig>,
    /// Redis (`REDIS_URL`, `REDIS_CLUSTER`).
    #[cfg(feature = "redis")]
    pub redis: dlab_store::redis::RedisConfig,
    /// MongoDB connection and timeouts (`MONGODB_URI`, `MONGODB_DATABASE`, `MONGODB_*_TIMEOUT_MS`).
    #[cfg(feature = "mongo")]
    pub mongo: dlab_store::mongo::MongoConfig,
    /// DynamoDB connections table.
    #[cfg(feature = "dynamo")]
    pub connections_table: String,
    /// Management endpoint, if pinned.
    pub apigw_endpoint: Option<String>,
}

impl Config {
    /// Reads every variable this build needs from `vars` (secrets already resolved); names the
    /// first missing or unusable one.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let jwt = if cfg!(feature = "auth") {
            Some(JwtConfig::from_lookup(|n| vars.get(n))?)
        } else {
            None
        };
        Ok(Self {
            settings: Settings::from_vars(vars)?,
            jwt,
            #[cfg(feature = "redis")]
            redis: dlab_store::redis::RedisConfig {
                cluster: vars.flag(REDIS_CLUSTER)?,
                ..dlab_store::redis::RedisConfig::new(vars.required(REDIS_URL)?)
            },
            #[cfg(feature = "mongo")]
            mongo: dlab_store::mongo::MongoConfig::from_lookup(|n| vars.get(n))?,
            #[cfg(feature = "dynamo")]
            connections_table: vars.required(CONNECTIONS_TABLE)?,
            apigw_endpoint: vars.get(APIGW_MANAGEMENT_ENDPOINT),
        })
    }

    /// The environment, with this build's secrets read through `secrets` when their ARNs are
    /// set.
    pub async fn load(secrets: Option<&dyn SecretSource>) -> Result<Self, ConfigError> {
        let mut vars = Vars::from_env();
        vars.resolve_secrets(&secret_names(), secrets).await?;
        Self::from_vars(&vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::default();
        assert_eq!(s.max_payload_bytes, 24 * 1024);
        assert_eq!(s.rates.submit, RateBudget::new(20.0, 40));
        assert!(s.rates.read.per_second < s.rates.submit.per_second);
        assert!(s.catchup_budget < Duration::from_secs(29));
        assert!(s.connection_ttl > Duration::from_secs(2 * 3600));
        assert!(s.max_frame_bytes < 32 * 1024);
        assert_eq!(s.max_connections_per_user, 10);
    }

    #[test]
    fn admins_are_a_comma_separated_list_and_none_by_default() {
        let none = Settings::from_vars(&Vars::default()).unwrap();
        assert!(none.admins.is_empty());
        assert!(!none.admins.contains(&UserId::new("alice")));
        let blank = Settings::from_vars(&Vars::from_pairs([(ADMINS, " , ")])).unwrap();
        assert!(blank.admins.is_empty());
        let set = Settings::from_vars(&Vars::from_pairs([(ADMINS, "alice, bob ,,carol")])).unwrap();
        for user in ["alice", "bob", "carol"] {
            assert!(set.admins.contains(&UserId::new(user)), "{user}");
        }
        assert!(!set.admins.contains(&UserId::new("mallory")));
        assert!(
            !set.admins.contains(&UserId::new(" bob ")),
            "ids are trimmed when read, compared exactly"
        );
    }

    const LONG: &str = "0123456789abcdef0123456789abcdef";

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn missing(vars: &[(&str, &str)]) -> &'static str {
        match JwtConfig::from_lookup(lookup(vars)) {
            Err(ConfigError::Missing(name)) => name,
            other => panic!("expected a missing variable, got {other:?}"),
        }
    }

    fn invalid(vars: &[(&str, &str)]) -> &'static str {
        match JwtConfig::from_lookup(lookup(vars)) {
            Err(ConfigError::Invalid { name, reason }) => {
                assert!(reason.contains("32 bytes"), "{reason}");
                name
            }
            other => panic!("expected an invalid variable, got {other:?}"),
        }
    }

    #[test]
    fn jwks_requires_an_audience_and_an_issuer() {
        let url = (JWT_JWKS_URL, "https://idp.example/jwks.json");
        let ticket = (TICKET_SECRET, LONG);
        assert_eq!(
            missing(&[url, ticket, (JWT_ISSUER, "https://idp.example")]),
            JWT_AUDIENCE
        );
        assert_eq!(
            missing(&[url, ticket, (JWT_ISSUER, "i"), (JWT_AUDIENCE, " , ")]),
            JWT_AUDIENCE
        );
        assert_eq!(missing(&[url, ticket, (JWT_AUDIENCE, "app")]), JWT_ISSUER);
        assert_eq!(
            missing(&[url, (JWT_AUDIENCE, "app"), (JWT_ISSUER, "i")]),
            TICKET_SECRET
        );
        let config = JwtConfig::from_lookup(lookup(&[
            url,
            ticket,
            (JWT_ISSUER, "https://idp.example"),
            (JWT_AUDIENCE, "web-client, mobile-client,"),
        ]))
        .unwrap();
        let JwtConfig::Jwks(jwks) = config else {
            panic!("a JWKS configuration")
        };
        assert_eq!(jwks.audiences, ["web-client", "mobile-client"]);
        assert_eq!(jwks.issuer, "https://idp.example");
    }

    #[test]
    fn short_secrets_refuse_to_start() {
        let short = "31-bytes-are-one-byte-too-short";
        assert_eq!(short.len(), 31);
        assert_eq!(invalid(&[(JWT_SECRET, short)]), JWT_SECRET);
        let jwks = [
            (JWT_JWKS_URL, "https://idp.example/jwks.json"),
            (JWT_ISSUER, "i"),
            (JWT_AUDIENCE, "app"),
        ];
        let mut vars = jwks.to_vec();
        vars.push((TICKET_SECRET, short));
        assert_eq!(invalid(&vars), TICKET_SECRET);
        let mut vars = jwks.to_vec();
        vars.push((JWT_SECRET, short));
        assert_eq!(
            invalid(&vars),
            JWT_SECRET,
            "the ticket secret taken from JWT_SECRET"
        );
        assert!(matches!(
            JwtConfig::from_lookup(lookup(&[(JWT_SECRET, LONG)])),
            Ok(JwtConfig::Secret { issuer: None, .. })
        ));
        assert_eq!(missing(&[]), JWT_SECRET);
        assert!(!format!("{:?}", HsSecret::new(JWT_SECRET, LONG).unwrap()).contains(LONG));
    }

    #[test]
    fn every_rate_variable_name_follows_the_prefix() {
        for class in RateClass::ALL {
            for what in ["PER_SECOND", "BURST"] {
                assert_eq!(
                    rate_var_name(class, what),
                    format!("{RATE_PREFIX}{}_{what}", class.var_name())
                );
            }
        }
    }

    /// Answers from a fixed table; counts reads.
    struct FakeSecrets(std::sync::Mutex<Vec<String>>);

    #[async_trait]
    impl SecretSource for FakeSecrets {
        async fn secret(&self, arn: &str) -> Result<String, BoxError> {
            self.0.lock().unwrap().push(arn.to_owned());
            match arn {
                "arn:redis" => Ok("redis://:pw@cache:6379".to_owned()),
                _ => Err(format!("no secret {arn}").into()),
            }
        }
    }

    #[tokio::test]
    async fn a_secret_arn_wins_over_the_plain_variable_and_is_read_once() {
        let source = FakeSecrets(Default::default());
        let mut vars = Vars::from_pairs([
            (REDIS_URL, "redis://plain:6379"),
            (REDIS_URL_SECRET_ARN, "arn:redis"),
            (MONGODB_URI, "mongodb://plain"),
        ]);
        vars.resolve_secrets(
            &[
                (REDIS_URL, REDIS_URL_SECRET_ARN),
                (MONGODB_URI, MONGODB_URI_SECRET_ARN),
            ],
            Some(&source),
        )
        .await
        .unwrap();
        assert_eq!(
            vars.get(REDIS_URL).as_deref(),
            Some("redis://:pw@cache:6379")
        );
        assert_eq!(
            vars.get(MONGODB_URI).as_deref(),
            Some("mongodb://plain"),
            "no ARN: plain value"
        );
        assert_eq!(*source.0.lock().unwrap(), vec!["arn:redis".to_owned()]);
        assert!(
            !format!("{vars:?}").contains("pw@"),
            "Debug never shows values"
        );
    }

    #[tokio::test]
    async fn an_unreadable_secret_or_a_build_without_secrets_refuses_to_start() {
        let source = FakeSecrets(Default::default());
        let mut vars = Vars::from_pairs([(JWT_SECRET_ARN, "arn:missing")]);
        let err = vars
            .resolve_secrets(&[(JWT_SECRET, JWT_SECRET_ARN)], Some(&source))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Secret {
                    name: JWT_SECRET,
                    ..
                }
            ),
            "{err}"
        );
        let err = vars
            .resolve_secrets(&[(JWT_SECRET, JWT_SECRET_ARN)], None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(JWT_SECRET), "{err}");
    }

    #[test]
    fn flags_and_numbers_name_the_variable_when_unusable() {
        let vars = Vars::from_pairs([(REDIS_CLUSTER, "maybe"), (REHYDRATE_WINDOW, "lots")]);
        assert!(
            vars.flag(REDIS_CLUSTER)
                .unwrap_err()
                .to_string()
                .contains(REDIS_CLUSTER)
        );
        assert!(!Vars::default().flag(REDIS_CLUSTER).unwrap());
        assert!(
            Vars::from_pairs([(REDIS_CLUSTER, "1")])
                .flag(REDIS_CLUSTER)
                .unwrap()
        );
        let err = Settings::from_vars(&vars).unwrap_err();
        assert!(err.to_string().contains(REHYDRATE_WINDOW), "{err}");
    }

    #[test]
    fn the_configuration_reads_only_what_this_build_needs() {
        // This crate's tests build with every feature: every store setting is required.
        let err = Config::from_vars(&Vars::from_pairs([(JWT_SECRET, LONG)])).unwrap_err();
        assert!(matches!(err, ConfigError::Missing(_)), "{err}");
        let config = Config::from_vars(&Vars::from_pairs([
            (JWT_SECRET, LONG),
            (REDIS_URL, "redis://127.0.0.1:1"),
            (REDIS_CLUSTER, "true"),
            (MONGODB_URI, "mongodb://127.0.0.1:1"),
            (CONNECTIONS_TABLE, "t"),
        ]))
        .unwrap();
        #[cfg(feature = "redis")]
        assert!(config.redis.cluster);
        assert!(config.jwt.is_some() == cfg!(feature = "auth"));
    }

    #[test]
    fn lifecycle_defaults_and_variables() {
        let l = Lifecycle::from_vars(&Vars::default()).unwrap();
        assert_eq!(l, Lifecycle::default());
        assert_eq!(l.compaction_threshold, 1000);
        assert_eq!(l.hot_tail, 200);
        assert_eq!(l.idle_release_after, Duration::from_secs(24 * 3600));
        assert_eq!(
            l.archive_retention, None,
            "the archive keeps every event by default"
        );
        assert_eq!(l.conflict_window_ms, 1000);
        assert!(l.backfill_window > l.idle_release_after);

        let l = Lifecycle::from_vars(&Vars::from_pairs([
            (COMPACTION_THRESHOLD, "50"),
            (HOT_TAIL, "0"),
            (IDLE_RELEASE_SECS, "172800"),
            (ARCHIVE_RETENTION_DAYS, "30"),
            (CONFLICT_WINDOW_MS, "250"),
        ]))
        .unwrap();
        assert_eq!(l.compaction_threshold, 50);
        assert_eq!(l.hot_tail, 0);
        assert_eq!(l.idle_release_after, Duration::from_secs(172_800));
        assert!(
            l.backfill_window >= 2 * l.idle_release_after,
            "backfill looks further back than the idle release"
        );
        assert_eq!(
            l.archive_retention,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        assert_eq!(l.conflict_window_ms, 250);

        for name in [
            COMPACTION_THRESHOLD,
            IDLE_RELEASE_SECS,
            ARCHIVE_RETENTION_DAYS,
        ] {
            let err = Lifecycle::from_vars(&Vars::from_pairs([(name, "0")])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = Lifecycle::from_vars(&Vars::from_pairs([(HOT_TAIL, "-1")])).unwrap_err();
        assert!(err.to_string().contains(HOT_TAIL), "{err}");
    }
}
