//! Typed configuration, read once at cold start.
//!
//! Every variable name is a `const`; a missing required variable is an error that names it.
//! Defaults exist only where they are safe (limits, timeouts), never for secrets or endpoints.

use std::time::Duration;

use dlab_core::event::DEFAULT_MAX_PAYLOAD_BYTES;
use dlab_core::protocol::DEFAULT_MAX_FRAME_BYTES;
use dlab_store::error::ConfigError;

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
/// Bound on the archive write inside submit, in milliseconds.
pub const ARCHIVE_TIMEOUT_MS: &str = "DLAB_ARCHIVE_TIMEOUT_MS";
/// Time budget of a subscribe or replay catch-up, in milliseconds.
pub const CATCHUP_BUDGET_MS: &str = "DLAB_CATCHUP_BUDGET_MS";

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
    /// Bound on the archive write on the submit path.
    pub archive_timeout: Duration,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            rates: RateLimits::default(),
            rehydrate_window: 1200,
            archive_timeout: Duration::from_millis(300),
            catchup_budget: Duration::from_secs(20),
            connection_ttl: Duration::from_secs(2 * 3600 + 600),
            ticket_ttl: Duration::from_secs(60),
            broadcast_concurrency: 64,
            read_page: 500,
            max_connections_per_user: 10,
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

    /// Defaults, overridden by the `DLAB_*` variables that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        if let Some(v) = parse_var::<usize>(MAX_PAYLOAD_BYTES)? {
            s.max_payload_bytes = v;
        }
        s.rates = RateLimits::from_env()?;
        if let Some(v) = parse_var::<usize>(REHYDRATE_WINDOW)? {
            s.rehydrate_window = v.max(1);
        }
        if let Some(v) = parse_var::<u64>(ARCHIVE_TIMEOUT_MS)? {
            s.archive_timeout = Duration::from_millis(v);
        }
        if let Some(v) = parse_var::<u64>(CATCHUP_BUDGET_MS)? {
            s.catchup_budget = Duration::from_millis(v);
        }
        if let Some(v) = parse_var::<usize>(MAX_CONNECTIONS_PER_USER)? {
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
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut limits = RateLimits::default();
        for class in RateClass::ALL {
            let budget = limits.get_mut(class);
            let rate_var = rate_var_name(class, "PER_SECOND");
            if let Some(v) = parse_var::<f64>(rate_var)? {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ConfigError::Invalid {
                        name: rate_var,
                        reason: "must be a positive number".to_owned(),
                    });
                }
                budget.per_second = v;
            }
            let burst_var = rate_var_name(class, "BURST");
            if let Some(v) = parse_var::<u32>(burst_var)? {
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

/// Everything a Lambda needs, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits and timeouts.
    pub settings: Settings,
    /// Token verification.
    pub jwt: JwtConfig,
    /// Redis URL.
    pub redis_url: String,
    /// MongoDB connection and timeouts (`MONGODB_URI`, `MONGODB_DATABASE`, `MONGODB_*_TIMEOUT_MS`).
    pub mongo: dlab_store::mongo::MongoConfig,
    /// DynamoDB connections table.
    pub connections_table: String,
    /// Management endpoint, if pinned.
    pub apigw_endpoint: Option<String>,
}

impl Config {
    /// Reads every variable; names the first missing one.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            settings: Settings::from_env()?,
            jwt: JwtConfig::from_env()?,
            redis_url: required(REDIS_URL)?,
            mongo: dlab_store::mongo::MongoConfig::from_env().map_err(|e| match e {
                dlab_store::mongo::MongoConfigError::Missing(name) => ConfigError::Missing(name),
                other => ConfigError::Invalid {
                    name: MONGODB_URI,
                    reason: other.to_string(),
                },
            })?,
            connections_table: required(CONNECTIONS_TABLE)?,
            apigw_endpoint: non_empty(APIGW_MANAGEMENT_ENDPOINT),
        })
    }
}

fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    non_empty(name).ok_or(ConfigError::Missing(name))
}

fn parse_var<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match non_empty(name) {
        None => Ok(None),
        Some(raw) => raw
            .trim()
            .parse()
            .map(Some)
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            }),
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
}
