//! Token verification and connect tickets.
//!
//! Identity comes from a verified token, never from a client's JSON (invariant 8): `sub` is the
//! user id. User tokens are HS256 with a shared secret, or RS256 checked against a JWKS (such as
//! a Cognito user pool's), whose keys are cached and refetched when an unknown `kid` shows up.
//! WebSocket URLs carry a short-lived **connect ticket** instead (`POST /connect-ticket`),
//! because query strings can end up in access logs: an HS256 token with audience
//! [`TICKET_AUDIENCE`] that expires in about a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlab_core::codes::ErrorCode;
use dlab_core::ids::UserId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::RwLock;

use crate::config::JwtConfig;

/// Audience of connect tickets, so a ticket is never taken for a user token elsewhere.
pub const TICKET_AUDIENCE: &str = "dlab:connect";
/// How long fetched JWKS keys are trusted before a refetch.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Least time between two refetches triggered by unknown key ids.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

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
    /// The token names a signing key the JWKS does not have.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// The JWKS could not be fetched. Edge: `unavailable`.
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
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e),
        }
    }
}

/// The claims this service reads and writes.
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

/// A connect ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// The token to put in `?token=`.
    pub ticket: String,
    /// Expiry in milliseconds since the epoch.
    pub expires_at: u64,
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

enum UserKeys {
    Secret(DecodingKey),
    Jwks {
        url: String,
        http: reqwest::Client,
        cache: RwLock<JwksCache>,
    },
}

/// Verifies user tokens and tickets, and issues tickets.
#[derive(Clone)]
pub struct Authenticator {
    user: Arc<UserKeys>,
    ticket_encode: EncodingKey,
    ticket_decode: DecodingKey,
    issuer: Option<String>,
    ticket_ttl: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authenticator {
    /// Builds from configuration.
    pub fn new(config: &JwtConfig, issuer: Option<String>, ticket_ttl: Duration) -> Self {
        let (user, ticket_secret) = match config {
            JwtConfig::Secret(secret) => (
                UserKeys::Secret(DecodingKey::from_secret(secret.as_bytes())),
                secret.clone(),
            ),
            JwtConfig::Jwks { url, ticket_secret } => (
                UserKeys::Jwks {
                    url: url.clone(),
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(3))
                        .build()
                        .expect("an HTTP client with rustls"),
                    cache: RwLock::new(JwksCache::default()),
                },
                ticket_secret.clone(),
            ),
        };
        Self {
            user: Arc::new(user),
            ticket_encode: EncodingKey::from_secret(ticket_secret.as_bytes()),
            ticket_decode: DecodingKey::from_secret(ticket_secret.as_bytes()),
            issuer,
            ticket_ttl,
        }
    }

    /// An HS256 authenticator with a secret (local runs and tests).
    pub fn with_secret(secret: &str) -> Self {
        Self::new(
            &JwtConfig::Secret(secret.to_owned()),
            None,
            Duration::from_secs(60),
        )
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

    /// Issues a connect ticket for a verified user.
    pub fn issue_ticket(&self, user: &UserId) -> Ticket {
        let now = now_secs();
        let exp = now + self.ticket_ttl.as_secs().max(1);
        let claims = Claims {
            sub: user.to_string(),
            exp,
            iat: now,
            aud: Some(TICKET_AUDIENCE.to_owned()),
        };
        let ticket = encode(&Header::new(Algorithm::HS256), &claims, &self.ticket_encode)
            .expect("HS256 signing does not fail");
        Ticket {
            ticket,
            expires_at: exp * 1000,
        }
    }

    /// Verifies the token of a WebSocket connect: a connect ticket, or a user token.
    pub async fn verify_connect(&self, token: Option<&str>) -> Result<UserId, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_audience(&[TICKET_AUDIENCE]);
        match decode::<Claims>(token, &self.ticket_decode, &validation) {
            Ok(data) => Ok(UserId::new(data.claims.sub)),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(AuthError::Expired)
            }
            Err(_) => self.verify_user(Some(token)).await,
        }
    }

    /// Verifies a user token (HTTP bearer). Tickets are refused here.
    pub async fn verify_user(&self, token: Option<&str>) -> Result<UserId, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(AuthError::Invalid)?;
        let (key, alg) = match self.user.as_ref() {
            UserKeys::Secret(key) => (key.clone(), Algorithm::HS256),
            UserKeys::Jwks { .. } => (
                self.jwks_key(header.kid.as_deref()).await?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = 5;
        validation.validate_aud = false;
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = decode::<Claims>(token, &key, &validation).map_err(AuthError::from_jwt)?;
        if data.claims.aud.as_deref() == Some(TICKET_AUDIENCE) {
            return Err(AuthError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAudience.into(),
            ));
        }
        if data.claims.sub.is_empty() {
            return Err(AuthError::Invalid(
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim("sub".into()).into(),
            ));
        }
        Ok(UserId::new(data.claims.sub))
    }

    async fn jwks_key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        let UserKeys::Jwks { url, http, cache } = self.user.as_ref() else {
            return Err(AuthError::UnknownKey);
        };
        let kid = kid.ok_or(AuthError::UnknownKey)?;
        {
            let c = cache.read().await;
            let fresh = c.fetched.is_some_and(|t| t.elapsed() < JWKS_TTL);
            if let Some(key) = c.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
            if c.fetched.is_some_and(|t| t.elapsed() < JWKS_MIN_REFRESH) && !c.keys.is_empty() {
                return c.keys.get(kid).cloned().ok_or(AuthError::UnknownKey);
            }
        }
        let set: JwkSet = http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Jwks(Box::new(e)))?
            .json()
            .await
            .map_err(|e| AuthError::Jwks(Box::new(e)))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let (Some(id), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)) {
                keys.insert(id, key);
            }
        }
        let mut c = cache.write().await;
        c.keys = keys;
        c.fetched = Some(Instant::now());
        c.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_with(secret: &str, claims: &Claims) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_valid_user_token_names_its_user() {
        let auth = Authenticator::with_secret("s3cret");
        let token = auth.issue_user_token(&UserId::new("alice"), Duration::from_secs(60));
        assert_eq!(
            auth.verify_user(Some(&token)).await.unwrap(),
            UserId::new("alice")
        );
        assert_eq!(
            auth.verify_connect(Some(&token)).await.unwrap(),
            UserId::new("alice")
        );
    }

    #[tokio::test]
    async fn tickets_are_for_connect_only() {
        let auth = Authenticator::with_secret("s3cret");
        let ticket = auth.issue_ticket(&UserId::new("bob"));
        assert_eq!(
            auth.verify_connect(Some(&ticket.ticket)).await.unwrap(),
            UserId::new("bob")
        );
        assert!(matches!(
            auth.verify_user(Some(&ticket.ticket)).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn missing_garbage_expired_and_foreign_tokens_are_refused() {
        let auth = Authenticator::with_secret("s3cret");
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
            auth.verify_user(Some(&token_with("s3cret", &expired)))
                .await,
            Err(AuthError::Expired)
        ));
        let expired_ticket = Claims {
            aud: Some(TICKET_AUDIENCE.into()),
            ..expired
        };
        assert!(matches!(
            auth.verify_connect(Some(&token_with("s3cret", &expired_ticket)))
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
            .verify_connect(Some(&token_with("other-key", &foreign)))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Invalid(_)));
        assert_eq!(err.code(), ErrorCode::Unauthorized);
    }
}
