//! Typed configuration, read once at cold start.
//!
//! Every variable name is a `const`; a missing required variable is an error that names it.
//! Defaults exist only where they are safe (limits, timeouts), never for secrets or endpoints.

use std::time::Duration;

use dlab_core::event::DEFAULT_MAX_PAYLOAD_BYTES;
use dlab_core::protocol::DEFAULT_MAX_FRAME_BYTES;
use dlab_store::error::ConfigError;

/// HS256 secret for user tokens and connect tickets.
pub const JWT_SECRET: &str = "JWT_SECRET";
/// JWKS URL for RS256 user tokens (e.g. a Cognito user pool's `.well-known/jwks.json`).
pub const JWT_JWKS_URL: &str = "JWT_JWKS_URL";
/// Expected `iss` of user tokens (optional).
pub const JWT_ISSUER: &str = "JWT_ISSUER";
/// HS256 secret for connect tickets when user tokens come from a JWKS (defaults to JWT_SECRET).
pub const TICKET_SECRET: &str = "TICKET_SECRET";
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
/// Events per second per connection.
pub const RATE_PER_SECOND: &str = "DLAB_RATE_PER_SECOND";
/// Burst size per connection.
pub const RATE_BURST: &str = "DLAB_RATE_BURST";
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
    /// Token refill rate per connection.
    pub rate_per_second: f64,
    /// Bucket size per connection.
    pub rate_burst: u32,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            rate_per_second: 20.0,
            rate_burst: 40,
            archive_timeout: Duration::from_millis(300),
            catchup_budget: Duration::from_secs(20),
            connection_ttl: Duration::from_secs(2 * 3600 + 600),
            ticket_ttl: Duration::from_secs(60),
            broadcast_concurrency: 64,
            read_page: 500,
        }
    }
}

impl Settings {
    /// Defaults, overridden by the `DLAB_*` variables that are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        if let Some(v) = parse_var::<usize>(MAX_PAYLOAD_BYTES)? {
            s.max_payload_bytes = v;
        }
        if let Some(v) = parse_var::<f64>(RATE_PER_SECOND)? {
            s.rate_per_second = v;
        }
        if let Some(v) = parse_var::<u32>(RATE_BURST)? {
            s.rate_burst = v;
        }
        if let Some(v) = parse_var::<u64>(ARCHIVE_TIMEOUT_MS)? {
            s.archive_timeout = Duration::from_millis(v);
        }
        if let Some(v) = parse_var::<u64>(CATCHUP_BUDGET_MS)? {
            s.catchup_budget = Duration::from_millis(v);
        }
        Ok(s)
    }
}

/// How user tokens are verified.
#[derive(Debug, Clone)]
pub enum JwtConfig {
    /// HS256 with a shared secret (tickets use the same secret).
    Secret(String),
    /// RS256 through a JWKS URL; tickets use their own HS256 secret.
    Jwks {
        /// The JWKS document URL.
        url: String,
        /// The connect-ticket secret.
        ticket_secret: String,
    },
}

impl JwtConfig {
    /// Reads `JWT_SECRET` or `JWT_JWKS_URL` (+ `TICKET_SECRET`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = non_empty(JWT_SECRET);
        match (non_empty(JWT_JWKS_URL), secret) {
            (Some(url), secret) => {
                let ticket_secret = non_empty(TICKET_SECRET)
                    .or(secret)
                    .ok_or(ConfigError::Missing(TICKET_SECRET))?;
                Ok(JwtConfig::Jwks { url, ticket_secret })
            }
            (None, Some(secret)) => Ok(JwtConfig::Secret(secret)),
            (None, None) => Err(ConfigError::Missing(JWT_SECRET)),
        }
    }
}

/// Everything a Lambda needs, read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits and timeouts.
    pub settings: Settings,
    /// Token verification.
    pub jwt: JwtConfig,
    /// Expected issuer, if any.
    pub issuer: Option<String>,
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
            issuer: non_empty(JWT_ISSUER),
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
        assert_eq!(s.rate_per_second, 20.0);
        assert_eq!(s.rate_burst, 40);
        assert!(s.catchup_budget < Duration::from_secs(29));
        assert!(s.connection_ttl > Duration::from_secs(2 * 3600));
        assert!(s.max_frame_bytes < 32 * 1024);
    }
}
