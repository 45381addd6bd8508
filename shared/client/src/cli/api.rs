//! A small typed client of the HTTP API (PROTOCOL.md, "HTTP API"): one method per route the
//! command line uses, ids as the `dlab_core::ids` newtypes, documents returned as the server's
//! JSON so `--json` prints exactly what the server answered.
//!
//! Every failure is an [`ApiError`] that says what a person can do about it: the server cannot
//! be reached, the token is refused, the caller may not do this, the thing does not exist, or
//! the server's own `{"error": {"code", "message"}}` for anything else.

use std::time::Duration;

use dlab_core::ids::{ActorId, CampaignId, ConflictId, InstanceId, SessionId, UserId};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use thiserror::Error;

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take (a compendium batch of 1 MiB included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most items the server gives per page of a list (`limit` 1–1000).
pub const MAX_PAGE: usize = 1000;
/// The most items the compendium gives per page (`limit` 1–100).
pub const MAX_COMPENDIUM_PAGE: usize = 100;
/// Pages one listing may take: a bound on the cursor loop, far above any real list (the
/// biggest list, a session's events, is cut at 1000 per page).
const MAX_PAGES: usize = 1_000_000;

/// Why a request failed.
#[derive(Debug, Error)]
pub enum ApiError {
    /// `--url` is not an absolute http(s) URL; nothing was sent.
    #[error("invalid server URL {url:?} (expected e.g. http://127.0.0.1:8080)")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// No answer: nothing listens there, DNS failed, or the request timed out.
    #[error("cannot reach the server at {url} (is the gateway running? set --url or DLAB_URL)")]
    Unreachable {
        /// The URL of the request.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// 401: the token is missing, expired or not from this server.
    #[error("unauthorized: {message} (check --token or DLAB_TOKEN)")]
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// 403: the caller may not do this (not a member or GM of the campaign, not an admin).
    #[error("forbidden: {message}")]
    Forbidden {
        /// The server's message.
        message: String,
    },
    /// 404: the campaign, session, actor, conflict or compendium entry does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// The server's code (`not_found`, `session_not_found`).
        code: String,
        /// The server's message.
        message: String,
    },
    /// Any other refusal, with the server's code and message.
    #[error("the server answered {status} {code}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's error code (`conflict`, `invalid_message`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// A success whose body is not the JSON this client expects.
    #[error("unexpected answer from {url}: {reason}")]
    Unexpected {
        /// The URL of the request.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A member's role in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Plays their own actors.
    Player,
    /// Runs the campaign with the owner.
    Gm,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Gm => "gm",
        }
    }
}

/// Compendium search filters (`GET /compendium`).
#[derive(Debug, Clone, Default)]
pub struct CompendiumQuery {
    /// Free text.
    pub q: Option<String>,
    /// The category (`monsters`, `spells`, `equipment`).
    pub category: Option<String>,
    /// The game system (`dnd5e`).
    pub system: Option<String>,
    /// Exact challenge rating (`1/4`, `2`).
    pub cr: Option<String>,
    /// Lowest challenge rating.
    pub cr_min: Option<String>,
    /// Highest challenge rating.
    pub cr_max: Option<String>,
    /// Spell level.
    pub level: Option<u8>,
}

impl CompendiumQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |name, value: &Option<String>| {
            if let Some(v) = value {
                pairs.push((name, v.clone()));
            }
        };
        push("q", &self.q);
        push("type", &self.category);
        push("system", &self.system);
        push("cr", &self.cr);
        push("crMin", &self.cr_min);
        push("crMax", &self.cr_max);
        if let Some(level) = self.level {
            pairs.push(("level", level.to_string()));
        }
        pairs
    }
}

/// What a compendium search returns: the entries and the attribution to show with them.
#[derive(Debug, Clone)]
pub struct CompendiumPage {
    /// The entries found, at most the asked limit.
    pub items: Vec<Value>,
    /// The data's attribution sentence (CC-BY-4.0 for the SRD).
    pub attribution: Option<String>,
}

/// The HTTP API of one server, as one user.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    /// A client of the server at `base` (`http://127.0.0.1:8080`, or a deployment's stage
    /// URL), sending `token` as the bearer token when there is one.
    ///
    /// A loopback server is reached without any proxy of the environment: a proxy cannot reach
    /// the caller's own machine, and the dev token route refuses requests not addressed to a
    /// loopback host.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ApiError> {
        let bad = || ApiError::BadUrl {
            url: base.to_owned(),
        };
        let url = Url::parse(base).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(bad());
        }
        let loopback = url.host_str().is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("dlab/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|source| ApiError::Unreachable {
            url: base.to_owned(),
            source,
        })?;
        Ok(Self {
            http,
            base: url,
            token,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of the route made of `segments` (each percent-encoded: compendium refs and
    /// conflict ids carry `:`).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends one request and returns its JSON body (`null` for an empty body, e.g. 204).
    async fn send(&self, method: Method, url: Url, body: Option<Body>) -> Result<Value, ApiError> {
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Raw(text)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text),
            None => request,
        };
        let unreachable = |source| ApiError::Unreachable {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refusal(status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Unexpected {
            url: url.to_string(),
            reason: format!("not JSON ({e})"),
        })
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, ApiError> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.send(Method::GET, url, None).await
    }

    async fn post(&self, segments: &[&str], body: Value) -> Result<Value, ApiError> {
        self.send(Method::POST, self.url(segments), Some(Body::Json(body)))
            .await
    }

    /// Every item of a paged list (`{items, nextCursor}`), following the cursors; `progress`
    /// is told the count so far after each page.
    async fn all_pages(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Value>, ApiError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = query.to_vec();
            q.push(("limit", MAX_PAGE.to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.get(segments, &q).await?;
            let (page_items, next) = self.split_page(segments, page)?;
            items.extend(page_items);
            progress(items.len());
            match next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                Some(_) => return Err(self.unexpected(segments, "the cursor did not advance")),
                None => return Ok(items),
            }
        }
        Err(self.unexpected(segments, "too many pages"))
    }

    fn split_page(
        &self,
        segments: &[&str],
        mut page: Value,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let items = match page.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => return Err(self.unexpected(segments, "a list without items")),
        };
        let next = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok((items, next))
    }

    fn unexpected(&self, segments: &[&str], reason: &str) -> ApiError {
        ApiError::Unexpected {
            url: self.url(segments).to_string(),
            reason: reason.to_owned(),
        }
    }

    /// `POST /dev/token {userId}` (the local gateway in dev mode): a user token.
    pub async fn dev_token(&self, user: &UserId) -> Result<String, ApiError> {
        let answer = self
            .post(&["dev", "token"], json!({"userId": user.as_str()}))
            .await?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.unexpected(&["dev", "token"], "no token in the answer"))
    }

    /// `POST /campaigns {name}`: the caller becomes its GM.
    pub async fn create_campaign(&self, name: &str) -> Result<Value, ApiError> {
        self.post(&["campaigns"], json!({"name": name})).await
    }

    /// `GET /campaigns`: every campaign the caller is GM or member of.
    pub async fn campaigns(&self) -> Result<Vec<Value>, ApiError> {
        self.all_pages(&["campaigns"], &[], |_| {}).await
    }

    /// `POST /campaigns/{id}/members {userId, role}`: adds a member or changes their role.
    pub async fn put_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
        role: Role,
    ) -> Result<Value, ApiError> {
        self.post(
            &["campaigns", campaign.as_str(), "members"],
            json!({"userId": user.as_str(), "role": role.as_str()}),
        )
        .await
    }

    /// `DELETE /campaigns/{id}/members/{userId}`.
    pub async fn remove_member(
        &self,
        campaign: &CampaignId,
        user: &UserId,
    ) -> Result<(), ApiError> {
        let url = self.url(&["campaigns", campaign.as_str(), "members", user.as_str()]);
        self.send(Method::DELETE, url, None).await.map(|_| ())
    }

    /// `POST /compendium/batch` with a body already serialized (see
    /// [`batches`](super::import::batches)); returns how many entries were written.
    pub async fn compendium_batch(&self, body: String) -> Result<u64, ApiError> {
        let url = self.url(&["compendium", "batch"]);
        let answer = self.send(Method::POST, url, Some(Body::Raw(body))).await?;
        answer["written"]
            .as_u64()
            .ok_or_else(|| self.unexpected(&["compendium", "batch"], "no written count"))
    }

    /// `GET /compendium`: up to `limit` entries matching `query`, following cursors.
    pub async fn search_compendium(
        &self,
        query: &CompendiumQuery,
        limit: usize,
    ) -> Result<CompendiumPage, ApiError> {
        let mut items = Vec::new();
        let mut attribution = None;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = query.pairs();
            q.push((
                "limit",
                (limit - items.len())
                    .clamp(1, MAX_COMPENDIUM_PAGE)
                    .to_string(),
            ));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let mut page = self.get(&["compendium"], &q).await?;
            if attribution.is_none() {
                attribution = page["attribution"].as_str().map(str::to_owned);
            }
            page["attribution"].take();
            let (page_items, next) = self.split_page(&["compendium"], page)?;
            items.extend(page_items);
            items.truncate(limit);
            match next {
                Some(next) if items.len() < limit && Some(&next) != cursor.as_ref() => {
                    cursor = Some(next)
                }
                _ => break,
            }
        }
        Ok(CompendiumPage { items, attribution })
    }

    /// `GET /compendium/{ref}`.
    pub async fn compendium_entry(&self, reference: &str) -> Result<Value, ApiError> {
        self.get(&["compendium", reference], &[]).await
    }

    /// `POST /campaigns/{id}/actors`: one actor, from a template or custom.
    pub async fn create_actor(
        &self,
        campaign: &CampaignId,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.post(&["campaigns", campaign.as_str(), "actors"], body)
            .await
    }

    /// `POST /campaigns/{id}/actors/bulk`: `count` copies of one template; returns them.
    pub async fn create_actors_bulk(
        &self,
        campaign: &CampaignId,
        body: Value,
    ) -> Result<Vec<Value>, ApiError> {
        let segments = ["campaigns", campaign.as_str(), "actors", "bulk"];
        let answer = self.post(&segments, body).await?;
        Ok(self.split_page(&segments, answer)?.0)
    }

    /// `GET /campaigns/{id}/actors`: every actor of the campaign.
    pub async fn actors(&self, campaign: &CampaignId) -> Result<Vec<Value>, ApiError> {
        self.all_pages(&["campaigns", campaign.as_str(), "actors"], &[], |_| {})
            .await
    }

    /// `POST /campaigns/{id}/sessions {name}`.
    pub async fn create_session(
        &self,
        campaign: &CampaignId,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.post(
            &["campaigns", campaign.as_str(), "sessions"],
            json!({"name": name}),
        )
        .await
    }

    /// `GET /campaigns/{id}/sessions`: newest first.
    pub async fn sessions(&self, campaign: &CampaignId) -> Result<Vec<Value>, ApiError> {
        self.all_pages(&["campaigns", campaign.as_str(), "sessions"], &[], |_| {})
            .await
    }

    /// `GET /sessions/{id}`: the session's whole current state.
    pub async fn session_state(&self, session: &SessionId) -> Result<Value, ApiError> {
        self.get(&["sessions", session.as_str()], &[]).await
    }

    /// `POST /sessions/{id}/end` (GM): the session document, `status: ended`.
    pub async fn end_session(&self, session: &SessionId) -> Result<Value, ApiError> {
        self.post(&["sessions", session.as_str(), "end"], json!({}))
            .await
    }

    /// `POST /sessions/{id}/compact` (GM): the compaction result.
    pub async fn compact_session(&self, session: &SessionId) -> Result<Value, ApiError> {
        self.post(&["sessions", session.as_str(), "compact"], json!({}))
            .await
    }

    /// `POST /sessions/{id}/actors {actorId, instanceId?}`: `{instanceId, event}`.
    pub async fn add_session_actor(
        &self,
        session: &SessionId,
        actor: &ActorId,
        instance: Option<&InstanceId>,
    ) -> Result<Value, ApiError> {
        let mut body = json!({"actorId": actor.as_str()});
        if let Some(instance) = instance {
            body["instanceId"] = json!(instance.as_str());
        }
        self.post(&["sessions", session.as_str(), "actors"], body)
            .await
    }

    /// One page of `GET /sessions/{id}/events?after=&limit=`: the events and whether more
    /// follow.
    pub async fn events_page(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Value>, bool), ApiError> {
        let segments = ["sessions", session.as_str(), "events"];
        let page = self
            .get(
                &segments,
                &[("after", after.to_string()), ("limit", limit.to_string())],
            )
            .await?;
        let (items, next) = self.split_page(&segments, page)?;
        Ok((items, next.is_some()))
    }

    /// `GET /sessions/{id}/conflicts` (GM): every conflict, newest first.
    pub async fn conflicts(&self, session: &SessionId) -> Result<Vec<Value>, ApiError> {
        self.all_pages(&["sessions", session.as_str(), "conflicts"], &[], |_| {})
            .await
    }

    /// `POST /sessions/{id}/conflicts/{conflictId}/resolve {chosenEventId}` (GM):
    /// `{conflict, event}`.
    pub async fn resolve_conflict(
        &self,
        session: &SessionId,
        conflict: &ConflictId,
        chosen_event: &str,
    ) -> Result<Value, ApiError> {
        self.post(
            &[
                "sessions",
                session.as_str(),
                "conflicts",
                conflict.as_str(),
                "resolve",
            ],
            json!({"chosenEventId": chosen_event}),
        )
        .await
    }
}

enum Body {
    Json(Value),
    Raw(String),
}

/// The error of a refused request, from the server's `{"error": {"code", "message"}}` (or the
/// start of whatever else it sent).
fn refusal(status: StatusCode, text: &str) -> ApiError {
    let parsed: Option<(String, String)> = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        let error = v.get("error")?;
        Some((
            error.get("code")?.as_str()?.to_owned(),
            error.get("message")?.as_str()?.to_owned(),
        ))
    });
    let (code, message) = parsed.unwrap_or_else(|| {
        let start: String = text.trim().chars().take(200).collect();
        let message = if start.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            start
        };
        (String::new(), message)
    });
    match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized { message },
        StatusCode::FORBIDDEN => ApiError::Forbidden { message },
        StatusCode::NOT_FOUND => ApiError::NotFound { code, message },
        _ => ApiError::Status {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_servers_code_and_message() {
        let body = r#"{"error":{"code":"session_not_found","message":"Session s1 not found"}}"#;
        match refusal(StatusCode::NOT_FOUND, body) {
            ApiError::NotFound { code, message } => {
                assert_eq!(code, "session_not_found");
                assert_eq!(message, "Session s1 not found");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refusal(StatusCode::UNAUTHORIZED, ""),
            ApiError::Unauthorized { message } if message == "Unauthorized"
        ));
        assert!(matches!(
            refusal(StatusCode::FORBIDDEN, "{}"),
            ApiError::Forbidden { message } if message == "{}"
        ));
        match refusal(
            StatusCode::CONFLICT,
            r#"{"error":{"code":"conflict","message":"taken"}}"#,
        ) {
            ApiError::Status {
                status,
                code,
                message,
            } => assert_eq!(
                (status, code.as_str(), message.as_str()),
                (409, "conflict", "taken")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn route_segments_are_encoded_under_the_base_path() {
        let api = Api::new("https://api.example.org/prod/", None).unwrap();
        assert_eq!(
            api.url(&["compendium", "dnd5e:monsters:goblin"]).as_str(),
            "https://api.example.org/prod/compendium/dnd5e:monsters:goblin"
        );
        assert_eq!(
            api.url(&["sessions", "s 1/x", "conflicts"]).as_str(),
            "https://api.example.org/prod/sessions/s%201%2Fx/conflicts"
        );
        assert!(matches!(
            Api::new("127.0.0.1:8080", None),
            Err(ApiError::BadUrl { .. })
        ));
        assert!(matches!(
            Api::new("ftp://h", None),
            Err(ApiError::BadUrl { .. })
        ));
    }
}
