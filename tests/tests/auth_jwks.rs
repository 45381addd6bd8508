//! RS256 tokens verified through a JWKS served over HTTP (as Cognito publishes one): which
//! tokens are accepted (an ID or access token of a configured app client, from the configured
//! issuer) and how the key set is cached, refreshed and backed off. The test JWKS server counts
//! its fetches and can be made slow or failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use dlab_core::codes::ErrorCode;
use dlab_core::ids::UserId;
use dlab_service::auth::{AuthError, Authenticator, ConnectTokens, JwksPolicy};
use dlab_service::config::{HsSecret, JwksConfig, JwtConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const PEM: &str = include_str!("../fixtures/jwks/test-only-rs256.pem");
const JWKS: &str = include_str!("../fixtures/jwks/jwks.json");
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool";
const WEB: &str = "web-app-client";
const MOBILE: &str = "mobile-app-client";
const TICKET_SECRET: &str = "ticket-secret-of-at-least-32-bytes";

/// The test JWKS server's controls.
#[derive(Default)]
struct Jwks {
    fetches: AtomicUsize,
    failing: AtomicBool,
    delay_ms: AtomicU64,
}

impl Jwks {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn jwks_server() -> (String, Arc<Jwks>) {
    let jwks = Arc::new(Jwks::default());
    let state = jwks.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let state = state.clone();
            async move {
                state.fetches.fetch_add(1, Ordering::SeqCst);
                let delay = state.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if state.failing.load(Ordering::SeqCst) {
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    Ok(([("content-type", "application/json")], JWKS))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/.well-known/jwks.json"), jwks)
}

fn config(url: String) -> JwtConfig {
    JwtConfig::Jwks(JwksConfig {
        url,
        issuer: ISSUER.into(),
        audiences: vec![WEB.into(), MOBILE.into()],
        ticket_secret: HsSecret::new("TICKET_SECRET", TICKET_SECRET).unwrap(),
    })
}

fn authenticator(url: String, policy: JwksPolicy) -> Authenticator {
    Authenticator::with_policy(
        &config(url),
        Duration::from_secs(60),
        ConnectTokens::TicketsOnly,
        policy,
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs `claims` (plus `exp` in `exp_in` seconds and `iat`) with the test RSA key.
fn rs256(kid: &str, mut claims: Value, exp_in: i64) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    claims["exp"] = json!(now() + exp_in);
    claims["iat"] = json!(now());
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A Cognito ID token of `client` for `sub`.
fn id_token(sub: &str, client: &str) -> String {
    rs256(
        "test-key-1",
        json!({"sub": sub, "iss": ISSUER, "token_use": "id", "aud": client}),
        300,
    )
}

/// A Cognito access token of `client` for `sub` (no `aud`).
fn access_token(sub: &str, client: &str) -> String {
    rs256(
        "test-key-1",
        json!({"sub": sub, "iss": ISSUER, "token_use": "access", "client_id": client,
               "scope": "openid"}),
        300,
    )
}

#[tokio::test]
async fn id_and_access_tokens_of_the_app_clients_are_accepted_and_cached() {
    let (url, jwks) = jwks_server().await;
    let auth = authenticator(url, JwksPolicy::default());
    let carol = UserId::new("carol");
    for token in [
        id_token("carol", WEB),
        id_token("carol", MOBILE),
        access_token("carol", WEB),
        access_token("carol", MOBILE),
        rs256(
            "test-key-1",
            json!({"sub": "carol", "iss": ISSUER, "token_use": "id", "aud": ["x", WEB]}),
            300,
        ),
    ] {
        assert_eq!(auth.verify_user(Some(&token)).await.unwrap(), carol);
    }
    assert_eq!(jwks.fetches(), 1, "keys are cached");

    assert!(matches!(
        auth.verify_user(Some(&rs256(
            "test-key-1",
            json!({"sub": "carol", "iss": ISSUER, "token_use": "id", "aud": WEB}),
            -120
        )))
        .await,
        Err(AuthError::Expired)
    ));
    assert!(matches!(
        auth.verify_user(Some(&rs256(
            "rotated-away",
            json!({"sub": "carol", "iss": ISSUER, "token_use": "id", "aud": WEB}),
            300
        )))
        .await,
        Err(AuthError::UnknownKey)
    ));
    assert_eq!(
        jwks.fetches(),
        1,
        "an unknown kid right after a fetch refetches nothing"
    );
    let hs = Authenticator::with_secret(TICKET_SECRET)
        .issue_user_token(&UserId::new("mallory"), Duration::from_secs(60));
    assert!(
        auth.verify_user(Some(&hs)).await.is_err(),
        "an HS256 token is not accepted where RS256 is expected"
    );
    // A user token opens no socket; a ticket does, and is refused as a bearer token.
    assert!(matches!(
        auth.verify_connect(Some(&id_token("carol", WEB))).await,
        Err(AuthError::TicketRequired)
    ));
    let ticket = auth.issue_ticket(&carol);
    assert_eq!(
        auth.verify_connect(Some(&ticket.ticket))
            .await
            .unwrap()
            .user,
        carol
    );
    assert!(auth.verify_user(Some(&ticket.ticket)).await.is_err());
}

#[tokio::test]
async fn tokens_for_other_apps_issuers_or_uses_are_refused() {
    let (url, _jwks) = jwks_server().await;
    let auth = authenticator(url, JwksPolicy::default());
    let refused = [
        (
            "an ID token of another app client",
            id_token("carol", "other-app"),
        ),
        (
            "an access token of another app client",
            access_token("carol", "other-app"),
        ),
        (
            "an access token with our aud but another client_id",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "iss": ISSUER, "token_use": "access",
                       "client_id": "other-app", "aud": WEB}),
                300,
            ),
        ),
        (
            "an ID token with our client_id but another aud",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "iss": ISSUER, "token_use": "id",
                       "client_id": WEB, "aud": "other-app"}),
                300,
            ),
        ),
        (
            "no token_use",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "iss": ISSUER, "aud": WEB, "client_id": WEB}),
                300,
            ),
        ),
        (
            "another token_use",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "iss": ISSUER, "token_use": "refresh", "aud": WEB}),
                300,
            ),
        ),
        (
            "another issuer",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "iss": "https://evil.example", "token_use": "id",
                       "aud": WEB}),
                300,
            ),
        ),
        (
            "no issuer",
            rs256(
                "test-key-1",
                json!({"sub": "carol", "token_use": "id", "aud": WEB}),
                300,
            ),
        ),
    ];
    for (what, token) in &refused {
        let err = auth.verify_user(Some(token)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unauthorized, "{what}: {err:?}");
    }

    // Over HTTP: 401 for each, 200 for ours.
    let (deps, _notifier) =
        dlab_service::Deps::memory_with_channels(auth, dlab_service::config::Settings::default());
    let app = dlab_service::http::router(deps, dlab_service::http::CorsConfig::None);
    let status = |token: String| {
        let app = app.clone();
        async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get("/campaigns")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status().as_u16()
        }
    };
    for (what, token) in refused {
        assert_eq!(status(token).await, 401, "{what}");
    }
    assert_eq!(status(id_token("carol", WEB)).await, 200);
    assert_eq!(status(access_token("carol", MOBILE)).await, 200);
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthorized() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth = authenticator(
        format!("http://127.0.0.1:{port}/jwks.json"),
        JwksPolicy::default(),
    );
    let err = auth
        .verify_user(Some(&id_token("carol", WEB)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Jwks(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifications_share_one_fetch() {
    let (url, jwks) = jwks_server().await;
    // Slow enough that every verification below arrives while the first fetch is running.
    jwks.delay_ms.store(300, Ordering::SeqCst);
    let stale_at_once = JwksPolicy {
        ttl: Duration::ZERO,
        ..JwksPolicy::default()
    };
    let auth = authenticator(url, stale_at_once);
    let token = id_token("carol", WEB);
    let verify_many = || {
        futures::future::join_all((0..20).map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { auth.verify_user(Some(&token)).await })
        }))
    };
    for result in verify_many().await {
        assert_eq!(result.unwrap().unwrap(), UserId::new("carol"));
    }
    assert_eq!(
        jwks.fetches(),
        1,
        "20 verifications with no keys: one fetch"
    );
    // Every key is stale now (ttl 0): 20 verifications needing a refresh make one more.
    for result in verify_many().await {
        assert_eq!(result.unwrap().unwrap(), UserId::new("carol"));
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "20 verifications of stale keys: one refresh"
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_cached_keys_in_service() {
    let (url, jwks) = jwks_server().await;
    let policy = JwksPolicy {
        ttl: Duration::ZERO,
        backoff_min: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(3600),
        ..JwksPolicy::default()
    };
    let auth = authenticator(url, policy);
    let token = id_token("carol", WEB);
    assert_eq!(
        auth.verify_user(Some(&token)).await.unwrap(),
        UserId::new("carol")
    );
    assert_eq!(jwks.fetches(), 1);
    jwks.failing.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            auth.verify_user(Some(&token)).await.unwrap(),
            UserId::new("carol"),
            "keys past their TTL still verify while the JWKS is down"
        );
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "one failed refresh, then no refetch while backing off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_is_down_is_not_hammered() {
    let (url, jwks) = jwks_server().await;
    jwks.failing.store(true, Ordering::SeqCst);
    let auth = authenticator(
        url,
        JwksPolicy {
            backoff_min: Duration::from_secs(3600),
            ..JwksPolicy::default()
        },
    );
    let token = id_token("carol", WEB);
    let first = auth.verify_user(Some(&token)).await.unwrap_err();
    assert_eq!(first.code(), ErrorCode::Unavailable, "{first:?}");
    let later = futures::future::join_all((0..30).map(|_| auth.verify_user(Some(&token)))).await;
    for result in later {
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unavailable, "{err:?}");
    }
    assert_eq!(
        jwks.fetches(),
        1,
        "31 verifications, one fetch while backing off"
    );
}

#[tokio::test]
async fn verification_recovers_when_the_jwks_is_back() {
    let (url, jwks) = jwks_server().await;
    jwks.failing.store(true, Ordering::SeqCst);
    let no_wait = JwksPolicy {
        backoff_min: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..JwksPolicy::default()
    };
    let auth = authenticator(url, no_wait);
    let token = id_token("carol", WEB);
    assert!(matches!(
        auth.verify_user(Some(&token)).await,
        Err(AuthError::Jwks(_))
    ));
    jwks.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        auth.verify_user(Some(&token)).await.unwrap(),
        UserId::new("carol")
    );
    assert_eq!(jwks.fetches(), 2);
}
