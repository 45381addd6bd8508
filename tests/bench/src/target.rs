//! Setting up a table on either server and connecting its clients.
//!
//! On the gateway a table is real: a GM, one user per client, a campaign with every user as a
//! member, sessions, and goblin instances for attacks, all made through the HTTP API exactly as
//! `tests/src/e2e.rs` does; each socket opens with a single-use connect ticket. On the relay a
//! session is just a room name.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Client, Flavor, Plan, Progress};
use crate::error::{BenchError, Result};
use crate::servers::Server;

/// Concurrent HTTP calls and socket opens during set-up.
const SETUP_CONCURRENCY: usize = 16;
/// A server is quiet once no frame arrived for this long after the joins.
const QUIET: Duration = Duration::from_millis(300);

/// Sessions and clients of a table: client `i` belongs to session `i / clients_per_session`.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// How many sessions (rooms).
    pub sessions: usize,
    /// Clients in each.
    pub clients_per_session: usize,
    /// Goblin instances placed in each session (gateway only; attacks need them).
    pub goblins_per_session: usize,
}

impl Layout {
    /// Every client.
    pub fn clients(&self) -> usize {
        self.sessions * self.clients_per_session
    }

    /// The session of client `i`.
    pub fn session_of(&self, client: usize) -> usize {
        client / self.clients_per_session
    }
}

/// A prepared table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Session ids (room names on the relay).
    pub sessions: Vec<String>,
    /// Goblin instance ids per session.
    pub goblins: Vec<Vec<String>>,
    /// One user token per client (gateway only).
    tokens: Vec<String>,
}

/// Which server a run talks to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The server process.
    pub server: &'a Server,
    /// Its protocol.
    pub flavor: Flavor,
}

/// How the set-up went.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// From the start of set-up until every client joined and the server went quiet.
    pub elapsed: Duration,
    /// Whether the server went quiet within the bound (presence frames of the joins drained).
    pub settled: bool,
}

impl Target<'_> {
    /// Human name for tables.
    pub fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Gateway => "gateway",
            Flavor::SocketIo => "socket.io relay",
        }
    }

    /// Creates the table. `tag` makes ids unique per run.
    pub async fn prepare(&self, layout: Layout, tag: &str) -> Result<Table> {
        match self.flavor {
            Flavor::SocketIo => Ok(Table {
                sessions: (0..layout.sessions)
                    .map(|s| format!("room-{s}-{tag}"))
                    .collect(),
                goblins: (0..layout.sessions)
                    .map(|_| goblin_ids(layout.goblins_per_session))
                    .collect(),
                tokens: Vec::new(),
            }),
            Flavor::Gateway => prepare_gateway(&Http::new(self.server), layout, tag).await,
        }
    }

    /// Connects every client of `layout`, joins each to its session, and waits until the server
    /// is quiet (or `wait` runs out; then `settled` is false and the run goes on).
    pub async fn connect_all(
        &self,
        layout: Layout,
        table: &Table,
        plan: Arc<Plan>,
        progress: Arc<Progress>,
        wait: Duration,
    ) -> Result<(Vec<Arc<Client>>, Setup)> {
        let started = Instant::now();
        let http = Http::new(self.server);
        let clients: Vec<Arc<Client>> = futures::stream::iter(0..layout.clients())
            .map(|i| {
                let (http, plan, progress) = (&http, plan.clone(), progress.clone());
                async move {
                    let url = match self.flavor {
                        Flavor::SocketIo => format!(
                            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
                            self.server.port
                        ),
                        Flavor::Gateway => {
                            let ticket = http
                                .post("/connect-ticket", Some(&table.tokens[i]), None)
                                .await?;
                            let ticket = ticket["ticket"].as_str().unwrap_or_default();
                            format!("ws://127.0.0.1:{}/?token={ticket}", self.server.port)
                        }
                    };
                    let client = Client::connect(self.flavor, &url, plan, progress, wait).await?;
                    client.join(&table.sessions[layout.session_of(i)]).await?;
                    Ok::<_, BenchError>(Arc::new(client))
                }
            })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let deadline = Instant::now() + wait;
        let n = clients.len() as u64;
        while progress.joined.load(std::sync::atomic::Ordering::Relaxed) < n {
            if Instant::now() >= deadline {
                let missing = clients.iter().filter(|c| !c.joined()).count();
                return Err(BenchError::SetupTimeout {
                    what: format!("{missing} of {n} clients did not complete their subscribe"),
                    after: wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settled = quiet(&progress, deadline).await;
        Ok((
            clients,
            Setup {
                elapsed: started.elapsed(),
                settled,
            },
        ))
    }
}

/// Waits until no frame arrived for [`QUIET`], or `deadline`; returns whether it went quiet.
pub async fn quiet(progress: &Progress, deadline: Instant) -> bool {
    let frames = || progress.frames.load(std::sync::atomic::Ordering::Relaxed);
    let mut last = frames();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = frames();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

fn goblin_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("goblin{i}")).collect()
}

/// The gateway's HTTP API (never through a proxy: loopback only).
struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    fn new(server: &Server) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self {
            client,
            base: server.http_url(),
        }
    }

    /// `POST path` with an optional bearer token and JSON body; the 2xx answer's JSON.
    async fn post(&self, path: &str, token: Option<&str>, body: Option<&Value>) -> Result<Value> {
        let fail = |reason: String| BenchError::Http {
            method: "POST",
            path: path.to_owned(),
            reason,
        };
        let mut request = self.client.post(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| fail(e.to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(format!("{status}: {value}")));
        }
        Ok(value)
    }

    async fn token(&self, user: &str) -> Result<String> {
        let body = self
            .post("/dev/token", None, Some(&json!({ "userId": user })))
            .await?;
        Ok(body["token"].as_str().unwrap_or_default().to_owned())
    }
}

fn id_of(v: &Value, what: &str, path: &str) -> Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Http {
            method: "POST",
            path: path.to_owned(),
            reason: format!("no {what} id in {v}"),
        })
}

/// A GM makes a campaign, adds one player per client, creates the sessions and places the
/// goblins (a custom 15-HP goblin, as the seed's load test).
async fn prepare_gateway(http: &Http, layout: Layout, tag: &str) -> Result<Table> {
    let gm = http.token(&format!("gm-{tag}")).await?;
    let campaign = http
        .post(
            "/campaigns",
            Some(&gm),
            Some(&json!({"name": format!("Bench {tag}")})),
        )
        .await?;
    let campaign = id_of(&campaign, "campaign", "/campaigns")?;
    let users: Vec<String> = (0..layout.clients())
        .map(|i| format!("p{i}-{tag}"))
        .collect();
    let tokens: Vec<String> = futures::stream::iter(&users)
        .map(|u| http.token(u))
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    // One at a time: member edits are optimistic updates of one campaign document.
    let members = format!("/campaigns/{campaign}/members");
    for u in &users {
        http.post(
            &members,
            Some(&gm),
            Some(&json!({"userId": u, "role": "player"})),
        )
        .await?;
    }
    let mut sessions = Vec::with_capacity(layout.sessions);
    let path = format!("/campaigns/{campaign}/sessions");
    for s in 0..layout.sessions {
        let session = http
            .post(
                &path,
                Some(&gm),
                Some(&json!({"name": format!("Bench session {s}")})),
            )
            .await?;
        sessions.push(id_of(&session, "session", &path)?);
    }
    let goblins: Vec<Vec<String>> = (0..layout.sessions)
        .map(|_| goblin_ids(layout.goblins_per_session))
        .collect();
    if layout.goblins_per_session > 0 {
        let path = format!("/campaigns/{campaign}/actors");
        let goblin = json!({"name": "Goblin", "type": "monster",
                            "attributes": {"hp": {"value": 15, "max": 15}, "ac": 15}});
        let actor = http.post(&path, Some(&gm), Some(&goblin)).await?;
        let actor = id_of(&actor, "actor", &path)?;
        let placements: Vec<(String, String)> = sessions
            .iter()
            .zip(&goblins)
            .flat_map(|(s, gs)| gs.iter().map(move |g| (s.clone(), g.clone())))
            .collect();
        futures::stream::iter(placements)
            .map(|(session, instance)| {
                let (http, gm, actor) = (&http, &gm, &actor);
                async move {
                    http.post(
                        &format!("/sessions/{session}/actors"),
                        Some(gm),
                        Some(&json!({"actorId": actor, "instanceId": instance})),
                    )
                    .await
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await?;
    }
    Ok(Table {
        sessions,
        goblins,
        tokens,
    })
}
