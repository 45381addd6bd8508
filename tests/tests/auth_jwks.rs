//! RS256 tokens verified through a JWKS served over HTTP (as Cognito publishes one), with the
//! key set cached between verifications.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use dlab_core::ids::UserId;
use dlab_service::auth::{AuthError, Authenticator, Claims};
use dlab_service::config::JwtConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

const PEM: &str = include_str!("../fixtures/jwks/test-only-rs256.pem");
const JWKS: &str = include_str!("../fixtures/jwks/jwks.json");

async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { ([("content-type", "application/json")], JWKS) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/.well-known/jwks.json"), fetches)
}

fn rs256(kid: &str, sub: &str, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = Claims {
        sub: sub.to_owned(),
        exp: (now + exp_in) as u64,
        iat: now as u64,
        aud: None,
    };
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn rs256_tokens_are_verified_through_a_cached_jwks() {
    let (url, fetches) = jwks_server().await;
    let auth = Authenticator::new(
        &JwtConfig::Jwks {
            url,
            ticket_secret: "ticket-secret".into(),
        },
        None,
        Duration::from_secs(60),
    );
    let token = rs256("test-key-1", "carol", 300);
    assert_eq!(
        auth.verify_user(Some(&token)).await.unwrap(),
        UserId::new("carol")
    );
    assert_eq!(
        auth.verify_connect(Some(&token)).await.unwrap(),
        UserId::new("carol")
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "keys are cached");

    assert!(matches!(
        auth.verify_user(Some(&rs256("test-key-1", "carol", -120)))
            .await,
        Err(AuthError::Expired)
    ));
    assert!(matches!(
        auth.verify_user(Some(&rs256("rotated-away", "carol", 300)))
            .await,
        Err(AuthError::UnknownKey)
    ));
    let hs = Authenticator::with_secret("ticket-secret")
        .issue_user_token(&UserId::new("mallory"), Duration::from_secs(60));
    assert!(
        auth.verify_user(Some(&hs)).await.is_err(),
        "an HS256 token is not accepted where RS256 is expected"
    );
    // Tickets are signed with the ticket secret and work for connect.
    let ticket = auth.issue_ticket(&UserId::new("carol"));
    assert_eq!(
        auth.verify_connect(Some(&ticket.ticket)).await.unwrap(),
        UserId::new("carol")
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthorized() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let auth = Authenticator::new(
        &JwtConfig::Jwks {
            url: format!("http://127.0.0.1:{port}/jwks.json"),
            ticket_secret: "t".into(),
        },
        None,
        Duration::from_secs(60),
    );
    let err = auth
        .verify_user(Some(&rs256("test-key-1", "carol", 300)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Jwks(_)), "{err:?}");
    assert_eq!(err.code(), dlab_core::codes::ErrorCode::Unavailable);
}
