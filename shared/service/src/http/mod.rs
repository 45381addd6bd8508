//! The GM HTTP API: one axum [`Router`], shared by the `http-api` Lambda and the local gateway,
//! and its OpenAPI document.
//!
//! Every route except `/healthz` and `/openapi.json` needs `Authorization: Bearer <JWT>` (a
//! user token; connect tickets are refused). Errors are `{"error": {"code", "message"}}` with
//! the status of the code ([`ApiError`] is the one place that maps them). Lists are
//! `{"items", "nextCursor"}`, paged by `cursor` and `limit` and cut at
//! [`HttpSettings::max_list_bytes`].
//!
//! # Layout
//! - [`error`]: [`ApiError`] and its response; every failure becomes one.
//! - [`extract`]: the bearer-token caller, and JSON body, path and query extractors whose
//!   rejections are [`ApiError`]s naming the offending field.
//! - [`access`]: who may do what (member, GM, actor creator).
//! - [`api`]: request bodies, query parameters and answers of the routes.
//! - `meta`, `compendium`, `campaigns`, `actors`, `sessions`: the handlers.
//! - [`openapi`]: the OpenAPI document generated from the handlers.

pub mod access;
mod actors;
pub mod api;
mod campaigns;
pub use campaigns::member_id;
mod compendium;
pub mod error;
pub mod extract;
pub mod lifecycle;
mod meta;
pub mod openapi;
mod sessions;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use dlab_store::error::ConfigError;
use dlab_store::model::{
    CampaignQuotas, DEFAULT_MAX_ACTOR_BYTES, DEFAULT_MAX_ACTORS_PER_CAMPAIGN,
    DEFAULT_MAX_PAGE_BYTES, DEFAULT_MAX_SESSIONS_PER_CAMPAIGN,
};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;

use crate::deps::Deps;

/// Comma-separated origins allowed by CORS (`*` for any); unset or empty allows none.
pub const CORS_ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
/// Attribution sentence answered with every compendium search (overrides
/// [`DEFAULT_ATTRIBUTION`] until the importer stores one with the data).
pub const COMPENDIUM_ATTRIBUTION: &str = "DLAB_COMPENDIUM_ATTRIBUTION";
/// What `GET /compendium` answers as `attribution` when nothing else is configured: the SRD
/// 5.1's, the source of the compendium the importer loads.
pub const DEFAULT_ATTRIBUTION: &str = dlab_core::srd::ATTRIBUTION;
/// Largest accepted request body: an actor document is a few KiB, and an actor added to a
/// session must fit one event payload anyway.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Byte budget of one page of any list route, in bytes (default [`DEFAULT_MAX_PAGE_BYTES`]).
pub const MAX_LIST_BYTES: &str = "DLAB_MAX_LIST_BYTES";
/// Most actors per campaign (default [`DEFAULT_MAX_ACTORS_PER_CAMPAIGN`]).
pub const MAX_ACTORS_PER_CAMPAIGN: &str = "DLAB_MAX_ACTORS_PER_CAMPAIGN";
/// Largest actor, in bytes of its stored JSON (default [`DEFAULT_MAX_ACTOR_BYTES`]).
pub const MAX_ACTOR_BYTES: &str = "DLAB_MAX_ACTOR_BYTES";
/// Most sessions per campaign (default [`DEFAULT_MAX_SESSIONS_PER_CAMPAIGN`]).
pub const MAX_SESSIONS_PER_CAMPAIGN: &str = "DLAB_MAX_SESSIONS_PER_CAMPAIGN";
/// Accepted values of [`MAX_LIST_BYTES`]: a page plus its envelope (and one item over the
/// budget, which a page always takes) must stay far below Lambda's 6 MB response limit.
pub const LIST_BYTES_RANGE: RangeInclusive<u64> = 1024..=4 * 1024 * 1024;
/// Accepted values of [`MAX_ACTOR_BYTES`]: an actor is listed, returned and stored whole
/// (MongoDB documents are at most 16 MiB).
pub const ACTOR_BYTES_RANGE: RangeInclusive<u64> = 1024..=4 * 1024 * 1024;
/// Accepted values of the count quotas.
pub const COUNT_QUOTA_RANGE: RangeInclusive<u64> = 1..=1_000_000;

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsConfig {
    /// No cross-origin browser calls (no CORS headers are sent).
    #[default]
    None,
    /// Any origin (`Access-Control-Allow-Origin: *`): safe here because credentials are
    /// bearer tokens the page sends explicitly, never cookies.
    Any,
    /// Exactly these origins (`https://gm.example.org`).
    Origins(Vec<String>),
}

impl CorsConfig {
    /// Parses a comma-separated list; `*` alone means any origin, blank means none.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let origins: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if origins.is_empty() {
            return Ok(CorsConfig::None);
        }
        if origins.iter().any(|o| o == "*") {
            return if origins.len() == 1 {
                Ok(CorsConfig::Any)
            } else {
                Err(ConfigError::Invalid {
                    name: CORS_ALLOWED_ORIGINS,
                    reason: "`*` cannot be combined with other origins".to_owned(),
                })
            };
        }
        for o in &origins {
            let well_formed = (o.starts_with("http://") || o.starts_with("https://"))
                && HeaderValue::from_str(o).is_ok()
                && !o.ends_with('/');
            if !well_formed {
                return Err(ConfigError::Invalid {
                    name: CORS_ALLOWED_ORIGINS,
                    reason: format!("{o:?} is not an origin like https://gm.example.org"),
                });
            }
        }
        Ok(CorsConfig::Origins(origins))
    }

    /// Reads [`CORS_ALLOWED_ORIGINS`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(&std::env::var(CORS_ALLOWED_ORIGINS).unwrap_or_default())
    }

    fn layer(&self) -> Option<CorsLayer> {
        let origin = match self {
            CorsConfig::None => return None,
            CorsConfig::Any => AllowOrigin::any(),
            CorsConfig::Origins(list) => AllowOrigin::list(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect::<Vec<_>>(),
            ),
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// Settings of the HTTP edge that are not use-case dependencies.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Browser origins allowed by CORS.
    pub cors: CorsConfig,
    /// The `attribution` of compendium searches.
    pub attribution: String,
    /// Largest accepted request body (bigger: 413 `payload_too_large`).
    pub max_body_bytes: usize,
    /// Byte budget of one page of a list route: a page stops before the item that would pass
    /// it, so no answer comes near Lambda's 6 MB response limit.
    pub max_list_bytes: usize,
    /// Per-campaign quotas of actors and sessions.
    pub quotas: CampaignQuotas,
    /// Byte budget of one page of a state document (`GET /sessions/{id}` and its snapshot):
    /// bigger states are paged by actor instance, under Lambda's 6 MB response limit.
    pub max_state_bytes: usize,
}

/// The default of [`HttpSettings::max_state_bytes`]: 4 MiB.
pub const DEFAULT_MAX_STATE_BYTES: usize = 4 * 1024 * 1024;

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            cors: CorsConfig::None,
            attribution: DEFAULT_ATTRIBUTION.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_list_bytes: DEFAULT_MAX_PAGE_BYTES,
            quotas: CampaignQuotas::default(),
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
        }
    }
}

impl HttpSettings {
    /// Defaults, with [`CORS_ALLOWED_ORIGINS`], [`COMPENDIUM_ATTRIBUTION`], [`MAX_LIST_BYTES`]
    /// and the quota variables when set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`HttpSettings::from_env`] over any lookup (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |name: &'static str, default: u64, range: RangeInclusive<u64>| {
            let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return Ok(default);
            };
            raw.trim()
                .parse::<u64>()
                .ok()
                .filter(|v| range.contains(v))
                .ok_or_else(|| ConfigError::Invalid {
                    name,
                    reason: format!(
                        "{raw:?} is not an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                })
        };
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let mut s = Self {
            cors: CorsConfig::parse(&lookup(CORS_ALLOWED_ORIGINS).unwrap_or_default())?,
            max_list_bytes: size(number(
                MAX_LIST_BYTES,
                DEFAULT_MAX_PAGE_BYTES as u64,
                LIST_BYTES_RANGE,
            )?),
            quotas: CampaignQuotas {
                max_actors: number(
                    MAX_ACTORS_PER_CAMPAIGN,
                    DEFAULT_MAX_ACTORS_PER_CAMPAIGN,
                    COUNT_QUOTA_RANGE,
                )?,
                max_actor_bytes: size(number(
                    MAX_ACTOR_BYTES,
                    DEFAULT_MAX_ACTOR_BYTES as u64,
                    ACTOR_BYTES_RANGE,
                )?),
                max_sessions: number(
                    MAX_SESSIONS_PER_CAMPAIGN,
                    DEFAULT_MAX_SESSIONS_PER_CAMPAIGN,
                    COUNT_QUOTA_RANGE,
                )?,
            },
            ..Self::default()
        };
        if let Some(a) = lookup(COMPENDIUM_ATTRIBUTION).filter(|a| !a.trim().is_empty()) {
            s.attribution = a;
        }
        Ok(s)
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    deps: Deps,
    settings: HttpSettings,
}

impl AppState {
    /// The use-case dependencies.
    pub fn deps(&self) -> &Deps {
        &self.0.deps
    }

    /// The edge settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.0.settings
    }
}

/// The HTTP API with default [`HttpSettings`] except for CORS.
pub fn router(deps: Deps, cors: CorsConfig) -> Router {
    router_with(
        deps,
        HttpSettings {
            cors,
            ..HttpSettings::default()
        },
    )
}

/// The HTTP API.
pub fn router_with(deps: Deps, settings: HttpSettings) -> Router {
    let cors = settings.cors.layer();
    let body_limit = settings.max_body_bytes;
    let state = AppState(Arc::new(Inner { deps, settings }));
    let routes = Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/openapi.json", get(meta::openapi_json))
        .route("/connect-ticket", post(meta::connect_ticket))
        .route("/compendium", get(compendium::search))
        .route(
            "/compendium/batch",
            post(compendium::batch).layer(DefaultBodyLimit::max(api::MAX_BATCH_BYTES)),
        )
        .route("/compendium/{ref}", get(compendium::entry))
        .route("/campaigns", get(campaigns::list).post(campaigns::create))
        .route("/campaigns/{id}", get(campaigns::get_one))
        .route("/campaigns/{id}/members", post(campaigns::put_member))
        .route(
            "/campaigns/{id}/members/{userId}",
            axum::routing::delete(campaigns::remove_member),
        )
        .route(
            "/campaigns/{id}/actors",
            get(actors::list).post(actors::create),
        )
        .route("/campaigns/{id}/actors/bulk", post(actors::create_bulk))
        .route(
            "/campaigns/{id}/actors/{actorId}",
            get(actors::get_one)
                .patch(actors::patch)
                .delete(actors::delete),
        )
        .route(
            "/campaigns/{id}/sessions",
            get(sessions::list).post(sessions::create),
        )
        .route("/sessions/{id}", get(sessions::state))
        .route("/sessions/{id}/actors", post(sessions::add_actor))
        .route(
            "/sessions/{id}/actors/{instanceId}",
            get(sessions::runtime_actor).delete(sessions::remove_actor),
        )
        .route("/sessions/{id}/events", get(sessions::events))
        .route("/sessions/{id}/snapshot", get(sessions::snapshot))
        .route("/sessions/{id}/end", post(lifecycle::end))
        .route("/sessions/{id}/compact", post(lifecycle::compact))
        .route(
            "/sessions/{id}/conflicts",
            get(lifecycle::list_conflicts).post(lifecycle::escalate),
        )
        .route(
            "/sessions/{id}/conflicts/{conflictId}/resolve",
            post(lifecycle::resolve),
        )
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
}

/// The whole `main` of the `http-api` function: tracing, the shared cold start, the router.
///
/// Routes that commit events (actors added or removed) broadcast them to the WebSocket API's
/// connections, so `APIGW_MANAGEMENT_ENDPOINT` (the WebSocket stage's URL) is required here:
/// there is no WebSocket event to derive it from.
#[cfg(feature = "apigw")]
pub async fn run_lambda() -> Result<(), lambda_http::Error> {
    crate::lambda::init_tracing();
    let start = crate::lambda::cold_start().await?;
    let settings = HttpSettings::from_env()?;
    let endpoint = start
        .config
        .apigw_endpoint
        .clone()
        .ok_or(ConfigError::Missing(
            crate::config::APIGW_MANAGEMENT_ENDPOINT,
        ))?;
    let notifier = std::sync::Arc::new(dlab_store::apigw::ApiGatewayNotifier::from_endpoint(
        &start.sdk, endpoint,
    ));
    let deps = Deps::from_config(&start.config, &start.sdk, notifier).await?;
    lambda_http::run(router_with(deps, settings)).await
}
