//! The README's run command keeps the table across a crash: start the gateway binary on a data
//! directory, create a campaign, an actor from a template and a session, submit events, kill
//! the process with SIGKILL (no shutdown, no flush), start it again on the same directory, and
//! find everything there: the session continues at the next sequence, and a client resuming
//! with `since` gets exactly the events it missed.
//!
//! This runs the debug binary the tests build (`CARGO_BIN_EXE_local-gateway`), with the run
//! command's defaults except the port (`127.0.0.1:0`) and a temporary data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

/// A gateway process and its HTTP base URL.
struct Gateway {
    child: Child,
    http: String,
}

impl Gateway {
    /// Starts the binary on `data_dir` and reads its banner for the address.
    fn start(data_dir: &Path) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-gateway"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .env_remove("MONGODB_URI")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("DLAB_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // The compendium comes from the package the test command fetched; without it the
        // gateway writes its own templates (no network use from a test).
        match srd_cache() {
            Some(cache) => command.arg("--srd-cache").arg(cache),
            None => command.arg("--no-compendium"),
        };
        let mut child = command.spawn().expect("start the local-gateway binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("HTTP API:").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let http = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the banner names the HTTP address");
        Gateway { child, http }
    }

    /// SIGKILL: the process gets no chance to flush or shut down.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn ws(&self) -> String {
        self.http.replacen("http://", "ws://", 1) + "/"
    }

    async fn token(&self, user: &str) -> String {
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/dev/token", self.http))
            .json(&json!({"userId": user}))
            .send()
            .await
            .expect("dev token")
            .json()
            .await
            .expect("JSON");
        answer["token"].as_str().expect("a token").to_owned()
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.http);
        let request = match method {
            "GET" => client.get(url),
            _ => client.post(url).json(&body.unwrap_or(json!({}))),
        };
        let response = request.bearer_auth(token).send().await.expect("HTTP call");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn srd_cache() -> Option<PathBuf> {
    let package = PathBuf::from(std::env::var_os("DLAB_SRD_PACKAGE")?);
    package
        .is_file()
        .then(|| package.parent().map(Path::to_path_buf))
        .flatten()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(gateway: &Gateway, token: &str) -> Socket {
    let (socket, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("{}?token={token}", gateway.ws())),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    socket
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

async fn expect(socket: &mut Socket, event: &str) -> Value {
    loop {
        let frame = next(socket).await;
        if frame["event"] == event {
            return frame["data"].clone();
        }
        assert_ne!(frame["event"], "event:error", "{frame}");
    }
}

/// Subscribes with `since` and returns the caught-up events.
async fn subscribe(socket: &mut Socket, session: &str, since: u64) -> Vec<Value> {
    socket
        .send(Message::text(
            json!({"action": "subscribe", "sessionId": session, "since": since}).to_string(),
        ))
        .await
        .expect("send");
    expect(socket, "session:subscribed").await;
    let mut events = Vec::new();
    loop {
        let batch = expect(socket, "events:batch").await;
        events.extend(batch["events"].as_array().expect("events").iter().cloned());
        if batch["isLast"] == true {
            return events;
        }
    }
}

/// Submits a hit from `from` to `to` HP on the goblin; returns the confirmed sequence.
async fn hit(socket: &mut Socket, session: &str, from: i64, to: i64) -> u64 {
    let id = uuid::Uuid::new_v4().to_string();
    socket
        .send(Message::text(
            json!({"action": "submit", "event": {"id": id, "sessionId": session,
                "type": "plugin:dnd5e:attack",
                "payload": {"target": {"instanceId": "goblin-1"},
                            "stateChanges": {"attributes.hp.value": {"from": from, "to": to}}}}})
            .to_string(),
        ))
        .await
        .expect("send");
    let confirmed = expect(socket, "event:confirmed").await;
    assert_eq!(confirmed["eventId"], id.as_str());
    confirmed["sequence"].as_u64().expect("a sequence")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_survives_sigkill_and_resumes_at_the_next_sequence() {
    let data = tempfile::tempdir().expect("a data directory");
    let first = Gateway::start(data.path());
    let gm = first.token("gm").await;
    let campaign = first
        .call(
            "POST",
            "/campaigns",
            &gm,
            Some(json!({"name": "Crash Test Keep"})),
        )
        .await["id"]
        .as_str()
        .expect("campaign id")
        .to_owned();
    first
        .call(
            "POST",
            &format!("/campaigns/{campaign}/members"),
            &gm,
            Some(json!({"userId": "alice", "role": "player"})),
        )
        .await;
    // An actor from a template when the SRD is there, else a custom one with the same HP.
    let actor_body = if srd_cache().is_some() {
        json!({"compendiumRef": "dnd5e:monsters:goblin", "name": "Goblin Scout #1"})
    } else {
        json!({"name": "Goblin Scout #1", "type": "monster",
               "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15, "speed": 30}})
    };
    let actor = first
        .call(
            "POST",
            &format!("/campaigns/{campaign}/actors"),
            &gm,
            Some(actor_body),
        )
        .await;
    let actor_id = actor["id"].as_str().expect("actor id").to_owned();
    let session = first
        .call(
            "POST",
            &format!("/campaigns/{campaign}/sessions"),
            &gm,
            Some(json!({"name": "Night One"})),
        )
        .await["id"]
        .as_str()
        .expect("session id")
        .to_owned();
    first
        .call(
            "POST",
            &format!("/sessions/{session}/actors"),
            &gm,
            Some(json!({"actorId": actor_id, "instanceId": "goblin-1"})),
        )
        .await;

    let alice = first.token("alice").await;
    let mut socket = connect(&first, &alice).await;
    subscribe(&mut socket, &session, 0).await;
    let mut sequences = Vec::new();
    for (from, to) in [(7, 6), (6, 4), (4, 3), (3, 1)] {
        sequences.push(hit(&mut socket, &session, from, to).await);
    }
    let last = *sequences.last().expect("confirmed events");
    assert_eq!(
        sequences,
        (last - 3..=last).collect::<Vec<_>>(),
        "gap-free sequences"
    );
    // Alice saw everything up to two events before the end when the machine "crashed".
    let seen = last - 2;
    first.kill();

    let second = Gateway::start(data.path());
    let gm = second.token("gm").await;
    let campaigns = second.call("GET", "/campaigns", &gm, None).await;
    assert!(
        campaigns["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == campaign.as_str() && c["name"] == "Crash Test Keep"),
        "the campaign is still there: {campaigns}"
    );
    let stored = second
        .call(
            "GET",
            &format!("/campaigns/{campaign}/actors/{actor_id}"),
            &gm,
            None,
        )
        .await;
    assert_eq!(stored, actor, "the actor is still there, unchanged");
    let state = second
        .call("GET", &format!("/sessions/{session}"), &gm, None)
        .await;
    assert_eq!(state["lastEventSequence"], last, "{state}");
    let runtime = second
        .call(
            "GET",
            &format!("/sessions/{session}/actors/goblin-1"),
            &gm,
            None,
        )
        .await;
    assert_eq!(runtime["attributes"]["hp"]["value"], 1, "{runtime}");

    let alice = second.token("alice").await;
    let mut socket = connect(&second, &alice).await;
    let missed = subscribe(&mut socket, &session, seen).await;
    let missed: Vec<u64> = missed
        .iter()
        .map(|e| e["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(missed, vec![seen + 1, seen + 2], "exactly what she missed");
    assert_eq!(
        hit(&mut socket, &session, 1, 0).await,
        last + 1,
        "the session continues at the next sequence"
    );
    second.kill();
}
