//! Token verification and connect tickets.
//!
//! Identity comes from a verified token, never from a client's JSON (invariant 8): `sub` is the
//! user id. User tokens are HS256 with a shared secret, or RS256 checked against a JWKS (such as
//! a Cognito user pool's). With a JWKS a token must also come from the configured issuer and be
//! meant for one of the configured app clients: a Cognito ID token (`token_use: id`, `aud` = the
//! client id) or access token (`token_use: access`, `client_id` = the client id). Anything else
//! from the same identity provider (another application's tokens) is refused.
//!
//! WebSocket URLs carry a **connect ticket** instead (`POST /connect-ticket`), because query
//! strings can end up in access logs: an HS256 token with audience [`TICKET_AUDIENCE`] and a
//! `jti`, valid for about a minute. `$connect` records the `jti` (the connection registry's
//! `claim_ticket`), so a ticket opens one connection only. A long-lived user token in `?token=`
//! is refused, except in dev mode ([`ConnectTokens::TicketsAndUserTokens`]), which the local
//! gateway alone turns on, explicitly.
//!
//! The JWKS keys are cached. A refresh (keys older than [`JwksPolicy::ttl`], or an unknown
//! `kid`) is made by one caller at a time while the others wait for its outcome; a failed
//! refresh keeps the cached keys in service, however old, and the next attempt waits an
//! exponentially growing, capped delay, so an identity provider that is down is not hammered.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use dlab_core::codes::ErrorCode;
use dlab_core::ids::UserId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{HsSecret, JwksConfig, JwtConfig};

/// Audience of connect tickets, so a ticket is never taken for a user token elsewhere.
pub const TICKET_AUDIENCE: &str = "dlab:connect";

/// Why a token was refused. Edge: `unauthorized` (HTTP 401), with the message.
#[derive(Debug, Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("a token is required")]
    Missing,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token is malformed, badly signed or has the wrong audience or issuer.
    #[error("the token is invalid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// A JWKS token that is neither an ID token nor an access token of a configured app client
    /// (another application of the same identity provider, or no `token_use`).
    #[error("the token was not issued for this application")]
    NotForThisApp,
    /// `$connect` got something other than a connect ticket (outside dev mode).
    #[error("a connect ticket is required (POST /connect-ticket)")]
    TicketRequired,
    /// The connect ticket was used before: tickets are single-use.
    #[error("the connect ticket was already used")]
    TicketReused,
    /// The token names a signing key the JWKS does not have.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The JWKS could not be fetched and no key is cached. Edge: `unavailable`.
    #[error("the key set could not be fetched")]
    Jwks(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AuthError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Jwks(_) => ErrorCode::Unavailable,
            _ => ErrorCode::Unauthorized,
        }
    }

    fn from_jwt(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e),
        }
    }
}

/// The claims of the HS256 user tokens this service signs (dev tokens; tests sign their own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Audience, for tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What a connect ticket carries.
#[derive(Debug, Serialize)]
struct TicketClaims {
    sub: String,
    exp: u64,
    iat: u64,
    aud: String,
    jti: String,
}

/// A token at `$connect`, read leniently: a ticket when `aud` is [`TICKET_AUDIENCE`].
#[derive(Debug, Deserialize)]
struct ConnectClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    jti: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// The claims of a user token that decide whether it is accepted.
#[derive(Debug, Deserialize)]
struct UserClaims {
    sub: String,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// A connect ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// The token to put in `?token=`.
    pub ticket: String,
    /// Expiry in milliseconds since the epoch.
    pub expires_at: u64,
}

/// Which tokens `$connect` accepts in `?token=`. Never inferred: the edge that builds the
/// authenticator says which, because only the local gateway on loopback may relax it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectTokens {
    /// Single-use connect tickets only (every deployment): a user token in a URL could be
    /// replayed from any access log for as long as it lives.
    TicketsOnly,
    /// Tickets, and user tokens too: dev mode, i.e. the local gateway with dev tokens on and
    /// listening on loopback, so `websocat '…?token=<dev token>'` works by hand.
    TicketsAndUserTokens,
}

/// A ticket's single use, to be recorded before the connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketUse {
    /// The ticket's `jti`.
    pub jti: Uuid,
    /// When the ticket expires (ms since the epoch): its record is kept until then.
    pub expires_at_ms: u64,
}

/// Who a `$connect` token names, and the ticket to claim (none for a dev-mode user token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectGrant {
    /// The verified user.
    pub user: UserId,
    /// The ticket's use to record; `None` only for a user token in dev mode.
    pub ticket: Option<TicketUse>,
}

/// Timing of the JWKS cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksPolicy {
    /// How long fetched keys are used before a refresh is attempted. After a failed refresh
    /// they stay in use, however old.
    pub ttl: Duration,
    /// Least time between a successful fetch and a refetch caused by an unknown `kid`, so
    /// tokens with made-up key ids cannot make the service hammer the JWKS.
    pub min_refresh: Duration,
    /// Wait after the first failed fetch; doubled after each further failure.
    pub backoff_min: Duration,
    /// Cap of that wait.
    pub backoff_max: Duration,
    /// Timeout of one fetch.
    pub fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_refresh: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(3),
        }
    }
}

impl JwksPolicy {
    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.backoff_min)
            .with_max_delay(self.backoff_max)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }
}

/// The JWKS fetch failed, or is not attempted now.
#[derive(Debug, Error)]
enum JwksError {
    #[error("fetching the JWKS failed")]
    Fetch(#[source] reqwest::Error),
    #[error("the last JWKS fetch failed; the next attempt is in {0:?}")]
    BackingOff(Duration),
}

/// The cached keys and the refresh bookkeeping.
struct JwksState {
    keys: HashMap<String, DecodingKey>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Fetch attempts so far, successful or not: a waiter that sees it change knows the
    /// refresh it wanted was just made.
    attempts: u64,
    /// No fetch before this (set after a failure).
    retry_at: Option<Instant>,
    /// Delays of the consecutive failures so far; `None` after a success.
    backoff: Option<ExponentialBackoff>,
}

/// What the cache can answer without the network.
enum Lookup {
    /// A usable key (fresh, or stale while no refresh may be made).
    Key(DecodingKey),
    /// No key, and no refresh may be made now.
    NoKey,
    /// A refresh is due.
    Refresh,
}

impl JwksState {
    fn lookup(&self, kid: &str, policy: &JwksPolicy, now: Instant) -> Lookup {
        let key = self.keys.get(kid).cloned();
        let age = self.fetched_at.map(|t| now.saturating_duration_since(t));
        let fresh = age.is_some_and(|a| a < policy.ttl);
        let backing_off = self.retry_at.is_some_and(|t| now < t);
        let just_fetched = age.is_some_and(|a| a < policy.min_refresh);
        match key {
            Some(key) if fresh || backing_off => Lookup::Key(key),
            None if backing_off || just_fetched => Lookup::NoKey,
            _ => Lookup::Refresh,
        }
    }

    fn retry_in(&self, now: Instant) -> Duration {
        self.retry_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }
}

struct Jwks {
    url: String,
    issuer: String,
    audiences: Vec<String>,
    http: reqwest::Client,
    policy: JwksPolicy,
    state: RwLock<JwksState>,
    /// Held while fetching: one refresh at a time.
    refresh: tokio::sync::Mutex<()>,
}

impl Jwks {
    fn new(config: &JwksConfig, policy: JwksPolicy) -> Self {
        Self {
            url: config.url.clone(),
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            http: reqwest::Client::builder()
                .timeout(policy.fetch_timeout)
                .build()
                .expect("an HTTP client with rustls"),
            policy,
            state: RwLock::new(JwksState {
                keys: HashMap::new(),
                fetched_at: None,
                attempts: 0,
                retry_at: None,
                backoff: None,
            }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, JwksState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, JwksState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let (lookup, seen) = {
            let state = self.read();
            (
                state.lookup(kid, &self.policy, Instant::now()),
                state.attempts,
            )
        };
        match lookup {
            Lookup::Key(key) => return Ok(key),
            Lookup::NoKey => return Err(self.no_key()),
            Lookup::Refresh => {}
        }
        let _single_flight = self.refresh.lock().await;
        let mut failure = None;
        if self.read().attempts == seen {
            let fetched = self.fetch().await;
            let mut state = self.write();
            state.attempts += 1;
            match fetched {
                Ok(keys) => {
                    info!(keys = keys.len(), "JWKS fetched");
                    state.keys = keys;
                    state.fetched_at = Some(Instant::now());
                    state.retry_at = None;
                    state.backoff = None;
                }
                Err(e) => {
                    let policy = self.policy;
                    let delay = state
                        .backoff
                        .get_or_insert_with(|| policy.backoff())
                        .next()
                        .unwrap_or(policy.backoff_max);
                    state.retry_at = Some(Instant::now() + delay);
                    warn!(
                        error = %dlab_store::Chain(&e),
                        cached_keys = state.keys.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        "JWKS refresh failed; the cached keys stay in use"
                    );
                    failure = Some(e);
                }
            }
        }
        let state = self.read();
        if let Some(key) = state.keys.get(kid) {
            return Ok(key.clone());
        }
        if state.fetched_at.is_some() {
            return Err(AuthError::UnknownKey);
        }
        Err(AuthError::Jwks(Box::new(failure.unwrap_or_else(|| {
            JwksError::BackingOff(state.retry_in(Instant::now()))
        }))))
    }

    /// Why there is no key while no refresh may be made.
    fn no_key(&self) -> AuthError {
        let state = self.read();
        if state.fetched_at.is_some() {
            AuthError::UnknownKey
        } else {
            AuthError::Jwks(Box::new(JwksError::BackingOff(
                state.retry_in(Instant::now()),
            )))
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwksError> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(JwksError::Fetch)?
            .json()
            .await
            .map_err(JwksError::Fetch)?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let id = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (id, key))
            })
            .collect())
    }

    /// Accepts exactly an ID token (`aud`) or an access token (`client_id`) of one of the
    /// configured app clients.
    fn check_use(&self, claims: &UserClaims) -> Result<(), AuthError> {
        let ours = |id: &str| self.audiences.iter().any(|a| a == id);
        let accepted = match claims.token_use.as_deref() {
            Some("id") => claims
                .aud
                .as_ref()
                .is_some_and(|aud| self.audiences.iter().any(|a| aud.contains(a))),
            Some("access") => claims.client_id.as_deref().is_some_and(ours),
            _ => false,
        };
        if accepted {
            Ok(())
        } else {
            Err(AuthError::NotForThisApp)
        }
    }
}

enum UserKeys {
    Secret {
        key: DecodingKey,
        issuer: Option<String>,
    },
    Jwks(Box<Jwks>),
}

/// Verifies user tokens and tickets, and issues tickets.
#[derive(Clone)]
pub struct Authenticator {
    user: Arc<UserKeys>,
    ticket_encode: EncodingKey,
    ticket_decode: DecodingKey,
    ticket_ttl: Duration,
    connect: ConnectTokens,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Builds from configuration. `connect` says whether `$connect` takes user tokens too
    /// (only the local gateway's dev mode does).
    pub fn new(config: &JwtConfig, ticket_ttl: Duration, connect: ConnectTokens) -> Self {
        Self::with_policy(config, ticket_ttl, connect, JwksPolicy::default())
    }

    /// [`Authenticator::new`] with explicit JWKS cache timing (tests shorten it).
    pub fn with_policy(
        config: &JwtConfig,
        ticket_ttl: Duration,
        connect: ConnectTokens,
        policy: JwksPolicy,
    ) -> Self {
        let (user, ticket_secret) = match config {
            JwtConfig::Secret { secret, issuer } => (
                UserKeys::Secret {
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    issuer: issuer.clone(),
                },
                secret,
            ),
            JwtConfig::Jwks(jwks) => (
                UserKeys::Jwks(Box::new(Jwks::new(jwks, policy))),
                &jwks.ticket_secret,
            ),
        };
        Self {
            user: Arc::new(user),
            ticket_encode: EncodingKey::from_secret(ticket_secret.as_bytes()),
            ticket_decode: DecodingKey::from_secret(ticket_secret.as_bytes()),
            ticket_ttl,
            connect,
        }
    }

    /// An HS256 authenticator taking only tickets at `$connect`, with 60 s tickets (tests).
    ///
    /// # Panics
    /// When `secret` is shorter than [`crate::config::MIN_SECRET_BYTES`]; input that may be
    /// bad goes through [`HsSecret::new`] and [`Authenticator::new`] instead.
    #[track_caller]
    pub fn with_secret(secret: &str) -> Self {
        let secret = HsSecret::new(crate::config::JWT_SECRET, secret)
            .unwrap_or_else(|e| panic!("Authenticator::with_secret: {e}"));
        Self::new(
            &JwtConfig::secret(secret),
            Duration::from_secs(60),
            ConnectTokens::TicketsOnly,
        )
    }

    /// An authenticator that accepts no token at all: for a function that never verifies one
    /// (`ws-submit` reads the user from the connection record), so it needs no JWT setting. Its
    /// HS256 key is random and known to no one.
    pub fn unusable() -> Self {
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self::new(
            &JwtConfig::secret(
                HsSecret::new(crate::config::JWT_SECRET, key).expect("64 random hex characters"),
            ),
            Duration::from_secs(60),
            ConnectTokens::TicketsOnly,
        )
    }

    /// Which tokens `$connect` accepts.
    pub fn connect_tokens(&self) -> ConnectTokens {
        self.connect
    }

    /// Signs an HS256 user token for `user` valid for `ttl` (dev tokens and tests; only with a
    /// shared secret).
    pub fn issue_user_token(&self, user: &UserId, ttl: Duration) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl.as_secs(),
            iat: now,
            aud: None,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.ticket_encode)
            .expect("HS256 signing does not fail")
    }

    /// Issues a single-use connect ticket for a verified user.
    pub fn issue_ticket(&self, user: &UserId) -> Ticket {
        let now = now_secs();
        let exp = now + self.ticket_ttl.as_secs().max(1);
        let claims = TicketClaims {
            sub: user.to_string(),
            exp,
            iat: now,
            aud: TICKET_AUDIENCE.to_owned(),
            jti: Uuid::new_v4().to_string(),
        };
        let ticket = encode(&Header::new(Algorithm::HS256), &claims, &self.ticket_encode)
            .expect("HS256 signing does not fail");
        Ticket {
            ticket,
            expires_at: exp * 1000,
        }
    }

    /// Verifies the token of a WebSocket connect: a connect ticket, whose use the caller must
    /// record, or (dev mode only) a user token.
    pub async fn verify_connect(&self, token: Option<&str>) -> Result<ConnectGrant, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = match decode::<ConnectClaims>(token, &self.ticket_decode, &validation) {
            Ok(data) => Some(data.claims),
            Err(e) => match e.kind() {
                ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                ErrorKind::InvalidAlgorithm => None,
                _ => return Err(AuthError::Invalid(e)),
            },
        };
        if let Some(claims) =
            claims.filter(|c| c.aud.as_ref().is_some_and(|a| a.contains(TICKET_AUDIENCE)))
        {
            return self.ticket_grant(claims);
        }
        match self.connect {
            ConnectTokens::TicketsAndUserTokens => Ok(ConnectGrant {
                user: self.verify_user(Some(token)).await?,
                ticket: None,
            }),
            ConnectTokens::TicketsOnly => Err(AuthError::TicketRequired),
        }
    }

    fn ticket_grant(&self, claims: ConnectClaims) -> Result<ConnectGrant, AuthError> {
        let invalid = |claim: &str| {
            AuthError::Invalid(ErrorKind::MissingRequiredClaim(claim.to_owned()).into())
        };
        let jti = claims
            .jti
            .as_deref()
            .and_then(|j| Uuid::parse_str(j).ok())
            .ok_or_else(|| invalid("jti"))?;
        if claims.sub.is_empty() {
            return Err(invalid("sub"));
        }
        let expires_at_ms = claims.exp.saturating_mul(1000);
        // To the millisecond, so a ticket is never accepted after its claim may be gone.
        if dlab_store::model::now_ms() >= expires_at_ms {
            return Err(AuthError::Expired);
        }
        Ok(ConnectGrant {
            user: UserId::new(claims.sub),
            ticket: Some(TicketUse { jti, expires_at_ms }),
        })
    }

    /// Verifies a user token (HTTP bearer). Tickets are refused here.
    pub async fn verify_user(&self, token: Option<&str>) -> Result<UserId, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let claims = match self.user.as_ref() {
            UserKeys::Secret { key, issuer } => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = 5;
                validation.validate_aud = false;
                if let Some(iss) = issuer {
                    validation.set_issuer(&[iss]);
                    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
                }
                let claims = decode::<UserClaims>(token, key, &validation)
                    .map_err(AuthError::from_jwt)?
                    .claims;
                if claims
                    .aud
                    .as_ref()
                    .is_some_and(|a| a.contains(TICKET_AUDIENCE))
                {
                    return Err(AuthError::Invalid(ErrorKind::InvalidAudience.into()));
                }
                claims
            }
            UserKeys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(AuthError::Invalid)?;
                if header.alg != Algorithm::RS256 {
                    return Err(AuthError::Invalid(ErrorKind::InvalidAlgorithm.into()));
                }
                let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
                let key = jwks.key(kid).await?;
                let mut validation = Validation::new(Algorithm::RS256);
                validation.leeway = 5;
                validation.validate_aud = false;
                validation.set_issuer(&[&jwks.issuer]);
                validation.set_required_spec_claims(&["exp", "iss", "sub"]);
                let claims = decode::<UserClaims>(token, &key, &validation)
                    .map_err(AuthError::from_jwt)?
                    .claims;
                jwks.check_use(&claims)?;
                claims
            }
        };
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid(
                ErrorKind::MissingRequiredClaim("sub".into()).into(),
            ));
        }
        Ok(UserId::new(claims.sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-of-32-bytes-min";
    const OTHER: &str = "another-secret-of-at-least-32-by";

    fn token_with(secret: &str, claims: &impl Serialize) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn dev_mode() -> Authenticator {
        Authenticator::new(
            &JwtConfig::secret(HsSecret::new("T", SECRET).unwrap()),
            Duration::from_secs(60),
            ConnectTokens::TicketsAndUserTokens,
        )
    }

    #[tokio::test]
    async fn a_valid_user_token_names_its_user_but_opens_no_socket() {
        let auth = Authenticator::with_secret(SECRET);
        let token = auth.issue_user_token(&UserId::new("alice"), Duration::from_secs(60));
        assert_eq!(
            auth.verify_user(Some(&token)).await.unwrap(),
            UserId::new("alice")
        );
        assert!(matches!(
            auth.verify_connect(Some(&token)).await,
            Err(AuthError::TicketRequired)
        ));
    }

    #[tokio::test]
    async fn dev_mode_takes_user_tokens_at_connect_without_a_ticket_to_claim() {
        let auth = dev_mode();
        let token = auth.issue_user_token(&UserId::new("alice"), Duration::from_secs(60));
        assert_eq!(
            auth.verify_connect(Some(&token)).await.unwrap(),
            ConnectGrant {
                user: UserId::new("alice"),
                ticket: None
            }
        );
        let ticket = auth.issue_ticket(&UserId::new("alice"));
        assert!(
            auth.verify_connect(Some(&ticket.ticket))
                .await
                .unwrap()
                .ticket
                .is_some(),
            "a ticket is still claimed in dev mode"
        );
    }

    #[tokio::test]
    async fn tickets_are_for_connect_only_and_each_has_its_own_jti() {
        let auth = Authenticator::with_secret(SECRET);
        let ticket = auth.issue_ticket(&UserId::new("bob"));
        let grant = auth.verify_connect(Some(&ticket.ticket)).await.unwrap();
        assert_eq!(grant.user, UserId::new("bob"));
        let used = grant.ticket.expect("a ticket use");
        assert_eq!(used.expires_at_ms, ticket.expires_at);
        let again = auth.issue_ticket(&UserId::new("bob"));
        let other = auth.verify_connect(Some(&again.ticket)).await.unwrap();
        assert_ne!(other.ticket.unwrap().jti, used.jti);
        assert!(matches!(
            auth.verify_user(Some(&ticket.ticket)).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_ticket_without_a_uuid_jti_is_invalid() {
        let auth = Authenticator::with_secret(SECRET);
        for jti in [json_jti(None), json_jti(Some("not-a-uuid"))] {
            let token = token_with(SECRET, &jti);
            assert!(matches!(
                auth.verify_connect(Some(&token)).await,
                Err(AuthError::Invalid(_))
            ));
        }
    }

    fn json_jti(jti: Option<&str>) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "sub": "bob", "exp": now_secs() + 60, "iat": now_secs(), "aud": TICKET_AUDIENCE,
        });
        if let Some(jti) = jti {
            claims["jti"] = jti.into();
        }
        claims
    }

    #[tokio::test]
    async fn missing_garbage_expired_and_foreign_tokens_are_refused() {
        let auth = dev_mode();
        assert!(matches!(
            auth.verify_connect(None).await,
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            auth.verify_connect(Some("")).await,
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            auth.verify_connect(Some("not.a.jwt")).await,
            Err(AuthError::Invalid(_))
        ));
        let expired = Claims {
            sub: "alice".into(),
            exp: now_secs() - 120,
            iat: now_secs() - 180,
            aud: None,
        };
        assert!(matches!(
            auth.verify_user(Some(&token_with(SECRET, &expired))).await,
            Err(AuthError::Expired)
        ));
        let mut expired_ticket = json_jti(Some(&Uuid::new_v4().to_string()));
        expired_ticket["exp"] = (now_secs() - 120).into();
        assert!(matches!(
            auth.verify_connect(Some(&token_with(SECRET, &expired_ticket)))
                .await,
            Err(AuthError::Expired)
        ));
        let foreign = Claims {
            sub: "mallory".into(),
            exp: now_secs() + 60,
            iat: now_secs(),
            aud: None,
        };
        let err = auth
            .verify_connect(Some(&token_with(OTHER, &foreign)))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Invalid(_)));
        assert_eq!(err.code(), ErrorCode::Unauthorized);
        let forged_ticket = token_with(OTHER, &json_jti(Some(&Uuid::new_v4().to_string())));
        assert!(matches!(
            auth.verify_connect(Some(&forged_ticket)).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    #[should_panic(expected = "32 bytes")]
    fn with_secret_refuses_a_short_secret() {
        let _ = Authenticator::with_secret("s3cret");
    }

    #[test]
    fn failed_refreshes_back_off_exponentially_up_to_the_cap() {
        let policy = JwksPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            ..JwksPolicy::default()
        };
        let delays: Vec<u64> = policy.backoff().take(6).map(|d| d.as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn the_cache_refreshes_only_when_allowed() {
        let policy = JwksPolicy::default();
        let now = Instant::now();
        let key = DecodingKey::from_secret(b"k");
        let mut state = JwksState {
            keys: HashMap::from([("a".to_owned(), key)]),
            fetched_at: Some(now),
            attempts: 1,
            retry_at: None,
            backoff: None,
        };
        assert!(matches!(state.lookup("a", &policy, now), Lookup::Key(_)));
        assert!(
            matches!(state.lookup("b", &policy, now), Lookup::NoKey),
            "an unknown kid right after a fetch does not refetch"
        );
        let later = now + policy.min_refresh;
        assert!(matches!(state.lookup("b", &policy, later), Lookup::Refresh));
        let stale = now + policy.ttl;
        assert!(matches!(state.lookup("a", &policy, stale), Lookup::Refresh));
        state.retry_at = Some(stale + Duration::from_secs(5));
        assert!(
            matches!(state.lookup("a", &policy, stale), Lookup::Key(_)),
            "stale keys serve while backing off"
        );
        assert!(matches!(state.lookup("b", &policy, stale), Lookup::NoKey));
    }
}
