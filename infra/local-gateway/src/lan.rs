//! `--lan`: a table played from other devices on the local network.
//!
//! The gateway listens on a LAN address (the machine's own, found by [`detect_lan_ip`], or one
//! given) and on `127.0.0.1` with the same port. What changes against loopback-only dev mode:
//!
//! - the token secret is random for this run and cannot be set, so every link dies with the
//!   process;
//! - every request must name a `Host` that is this gateway: the LAN address (bare or with the
//!   port) or a loopback name ([`host_allowed`]); a web page whose own domain resolves to the LAN
//!   address (DNS rebinding) is refused with 403;
//! - dev tokens are still answered only to loopback `Host` names, and also only to peers
//!   connected from a loopback address (a LAN client can write any `Host`);
//! - `$connect` takes connect tickets only (no user tokens in URLs);
//! - `POST /lan/invites` ([`routes`]): a GM of a campaign gets a link (and its QR code) that
//!   lets one player join from another device; the link carries a user token for that player
//!   only, signed with this run's secret and expiring after [`LanOptions::invite_ttl`]. It is
//!   an ordinary user token, verified exactly like every other (HTTP bearer, `POST
//!   /connect-ticket`). Outside `--lan` the route does not exist (404).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use dlab_core::codes::ErrorCode;
use dlab_core::ids::{CampaignId, UserId};
use dlab_service::Deps;
use dlab_service::http::ApiError;
use dlab_service::http::access::campaign_access;
use dlab_service::http::extract::{ApiJson, bearer_token};
use dlab_store::model::MemberRole;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;
use tracing::{info, warn};

/// How long an invite link works by default: one evening's session.
pub const DEFAULT_INVITE_TTL: Duration = Duration::from_secs(12 * 3600);

/// The longest `--invite-ttl` accepted: a link is a credential for a whole user.
pub const MAX_INVITE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What `--lan` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanOptions {
    /// The address to listen on; `None`: this machine's first non-loopback IPv4
    /// ([`detect_lan_ip`]).
    pub addr: Option<IpAddr>,
    /// How long an invite link works.
    pub invite_ttl: Duration,
}

impl Default for LanOptions {
    fn default() -> Self {
        Self {
            addr: None,
            invite_ttl: DEFAULT_INVITE_TTL,
        }
    }
}

/// Why LAN mode could not start.
#[derive(Debug, Error)]
pub enum LanError {
    /// No route to any private network, so no LAN address could be read.
    #[error("no LAN address found (no route to a private network); pass one: --lan <ADDR>")]
    NoAddress {
        /// The last probe's failure, if a socket call failed.
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Private addresses whose route tells which local address faces the LAN. Nothing is sent to
/// them: connecting a UDP socket only picks the route and the local address.
const PROBES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 255, 254),
    Ipv4Addr::new(10, 255, 255, 254),
    Ipv4Addr::new(172, 31, 255, 254),
];

/// This machine's address on the LAN: the local address of the route to a private network
/// (a UDP socket's `connect` chooses it without sending a packet), the first that is a
/// non-loopback, specified IPv4.
pub fn detect_lan_ip() -> Result<IpAddr, LanError> {
    let mut last = None;
    for probe in PROBES {
        let local = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|socket| {
            socket.connect((probe, 9))?;
            socket.local_addr()
        });
        match local {
            Ok(local) if !local.ip().is_loopback() && !local.ip().is_unspecified() => {
                return Ok(local.ip());
            }
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(LanError::NoAddress { source: last })
}

/// Parses `--invite-ttl`: seconds (`3600`), or a number with `s`, `m`, `h` or `d` (`12h`,
/// `90m`); from 1 s to [`MAX_INVITE_TTL`].
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => raw.split_at(at),
        None => (raw, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{raw:?}: use seconds, or a number with s, m, h or d"
            ));
        }
    };
    let ttl = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Duration::from_secs)
        .filter(|ttl| (Duration::from_secs(1)..=MAX_INVITE_TTL).contains(ttl))
        .ok_or_else(|| {
            format!(
                "{raw:?}: an invite lives from 1 s to {} days",
                MAX_INVITE_TTL.as_secs() / 86_400
            )
        })?;
    Ok(ttl)
}

/// The claims of an invite token: a user token (`sub` is the player) with a `jti`, so the log
/// line of its issue names it.
#[derive(Debug, Serialize)]
struct InviteClaims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// A signed invite token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInvite {
    /// The HS256 user token.
    pub token: String,
    /// Its id (logged at issue).
    pub jti: uuid::Uuid,
    /// Expiry, milliseconds since the epoch.
    pub expires_at: u64,
}

/// Signs invite tokens with this run's secret (the one the gateway's authenticator verifies
/// every token with).
#[derive(Clone)]
pub struct InviteSigner {
    key: EncodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for InviteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl InviteSigner {
    /// A signer with the HS256 `secret`, issuing tokens valid for `ttl`.
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            ttl,
        }
    }

    /// How long the tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user` issued at `now` (seconds since the epoch; the caller's clock, so a
    /// test can issue one that has already expired).
    pub fn sign(&self, user: &UserId, now: u64) -> SignedInvite {
        let exp = now.saturating_add(self.ttl.as_secs().max(1));
        let jti = uuid::Uuid::new_v4();
        let claims = InviteClaims {
            sub: user.as_str(),
            iat: now,
            exp,
            jti: jti.to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing does not fail");
        SignedInvite {
            token,
            jti,
            expires_at: exp.saturating_mul(1000),
        }
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// LAN mode of a running gateway.
#[derive(Debug, Clone)]
pub struct Lan {
    /// The LAN address and port the gateway listens on.
    pub addr: SocketAddr,
    /// Signs invite tokens.
    pub signer: InviteSigner,
}

impl Lan {
    /// `http://<lan-addr>:<port>/app/`: the console as other devices open it.
    pub fn console_url(&self) -> String {
        format!("http://{}/app/", self.addr)
    }

    /// The link a player opens: the console's join page with the token in the fragment (never
    /// sent to the server, so never in an access log).
    pub fn invite_url(&self, token: &str) -> String {
        format!("{}#/join?token={token}", self.console_url())
    }
}

/// Whether `host` (a `Host` header) names this gateway: a loopback name with any port, or the
/// LAN address bare or with the gateway's port.
pub fn host_allowed(host: &str, lan: SocketAddr) -> bool {
    if crate::app::is_loopback_host(host) {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let bare = match lan.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    host == bare || host == format!("{bare}:{}", lan.port())
}

/// Refuses (403) any request whose `Host` is not this gateway ([`host_allowed`]).
pub async fn host_check(State(lan): State<SocketAddr>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if host.is_some_and(|h| host_allowed(h, lan)) {
        return next.run(request).await;
    }
    warn!(
        host = host.unwrap_or(""),
        %lan,
        "request refused: Host is neither the LAN address nor a loopback name"
    );
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": {"code": "forbidden", "message": format!(
            "this gateway answers only to Host {lan}, localhost, 127.0.0.1 or [::1]"
        )}})),
    )
        .into_response()
}

/// Whether the request came from a loopback peer (`true` when the server gives no peer, as in
/// tests that call the router directly).
pub fn from_loopback_peer(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_none_or(|ConnectInfo(peer)| peer.ip().is_loopback())
}

/// `POST /lan/invites` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteRequest {
    /// The campaign the player joins.
    pub campaign_id: String,
    /// The player.
    pub user_id: String,
    /// `player` (the default and only role an invite gives).
    #[serde(default)]
    pub role: Option<String>,
}

/// `POST /lan/invites` answer.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InviteBody {
    /// The link to open on the player's device.
    pub url: String,
    /// The player's user token inside it.
    pub token: String,
    /// When it stops working, milliseconds since the epoch.
    pub expires_at: u64,
    /// The link as a QR code (an SVG document).
    pub qr_svg: String,
    /// The player.
    pub user_id: String,
    /// The campaign.
    pub campaign_id: String,
}

#[derive(Clone)]
struct LanState {
    deps: Deps,
    lan: Lan,
}

/// The LAN-only routes: `POST /lan/invites`.
pub fn routes(deps: Deps, lan: Lan) -> Router {
    Router::new()
        .route("/lan/invites", post(create_invite))
        .with_state(LanState { deps, lan })
}

/// `url` as an SVG QR code.
pub fn qr_svg(url: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(url, qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// A GM of the campaign invites a player: the player becomes a member (a player) when not one
/// yet, and gets a link with their own user token. The caller is verified first, then the
/// body is read, as every route of the API does.
async fn create_invite(
    State(state): State<LanState>,
    headers: HeaderMap,
    body: Result<ApiJson<InviteRequest>, ApiError>,
) -> Result<Json<InviteBody>, ApiError> {
    let caller = state.deps.auth.verify_user(bearer_token(&headers)?).await?;
    let ApiJson(body) = body?;
    if body.role.as_deref().is_some_and(|role| role != "player") {
        return Err(ApiError::bad_request(
            "an invite makes a player (role \"player\"); make a co-GM with POST /campaigns/{id}/members",
        ));
    }
    let player = dlab_service::http::member_id(&body.user_id)?;
    let access = campaign_access(&state.deps, &caller, &CampaignId::new(body.campaign_id)).await?;
    access.require_gm()?;
    let campaign = access.campaign.id.clone();
    if !access.campaign.is_member(&player) {
        state
            .deps
            .campaigns
            .put_member(&campaign, &player, MemberRole::Player)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("campaign {campaign} not found")))?;
        info!(campaign = %campaign, member = %player, by = %caller, "member put by a LAN invite");
    }
    let invite = state.lan.signer.sign(&player, now_secs());
    let url = state.lan.invite_url(&invite.token);
    let qr_svg = qr_svg(&url).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("the link does not fit a QR code: {e}"),
        )
    })?;
    info!(campaign = %campaign, player = %player, by = %caller, jti = %invite.jti,
          expires_at = invite.expires_at, "LAN invite issued");
    Ok(Json(InviteBody {
        url,
        token: invite.token,
        expires_at: invite.expires_at,
        qr_svg,
        user_id: player.to_string(),
        campaign_id: campaign.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use dlab_service::auth::{AuthError, Authenticator};

    use super::*;

    const SECRET: &str = "lan-unit-test-secret-of-32-bytes!";

    #[test]
    fn ttls_take_seconds_or_a_unit() {
        assert_eq!(parse_ttl("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("12h"), Ok(DEFAULT_INVITE_TTL));
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("7d"), Ok(MAX_INVITE_TTL));
        for bad in [
            "",
            "0",
            "8d",
            "12x",
            "h",
            "-1",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_the_lan_address_or_loopback() {
        let lan: SocketAddr = "192.168.1.20:8080".parse().unwrap();
        for ok in [
            "192.168.1.20",
            "192.168.1.20:8080",
            "localhost:3000",
            "127.0.0.1:8080",
            "[::1]",
        ] {
            assert!(host_allowed(ok, lan), "{ok}");
        }
        for bad in [
            "",
            "192.168.1.20:8081",
            "192.168.1.21:8080",
            "192.168.1.2",
            "evil.example:8080",
            "192.168.1.20.nip.io:8080",
            "192.168.1.20:8080@evil",
        ] {
            assert!(!host_allowed(bad, lan), "{bad:?}");
        }
        let v6: SocketAddr = "[fd00::5]:8080".parse().unwrap();
        assert!(host_allowed("[fd00::5]:8080", v6));
        assert!(host_allowed("[FD00::5]", v6));
        assert!(!host_allowed("fd00::5", v6));
    }

    #[tokio::test]
    async fn invite_tokens_verify_as_user_tokens_until_they_expire() {
        let auth = Authenticator::with_secret(SECRET);
        let signer = InviteSigner::new(SECRET, Duration::from_secs(600));
        let now = now_secs();
        let fresh = signer.sign(&UserId::new("bob"), now);
        assert_eq!(fresh.expires_at, (now + 600) * 1000);
        assert_eq!(
            auth.verify_user(Some(&fresh.token)).await.unwrap(),
            UserId::new("bob")
        );
        let again = signer.sign(&UserId::new("bob"), now);
        assert_ne!(again.jti, fresh.jti, "each invite has its own id");
        let old = signer.sign(&UserId::new("bob"), now - 3600);
        assert!(matches!(
            auth.verify_user(Some(&old.token)).await,
            Err(AuthError::Expired)
        ));
        let other = InviteSigner::new("another-secret-of-at-least-32-by", Duration::from_secs(600));
        assert!(matches!(
            auth.verify_user(Some(&other.sign(&UserId::new("bob"), now).token))
                .await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn the_qr_code_is_an_svg_document() {
        let url = format!(
            "http://192.168.1.20:8080/app/#/join?token={}",
            "x".repeat(300)
        );
        let svg = qr_svg(&url).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..40]);
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn detection_finds_a_specified_non_loopback_ipv4_or_says_so() {
        match detect_lan_ip() {
            Ok(ip) => {
                assert!(ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified());
            }
            Err(e) => assert!(e.to_string().contains("--lan <ADDR>")),
        }
    }
}
