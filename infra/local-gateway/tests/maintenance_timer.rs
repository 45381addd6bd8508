//! The gateway binary's maintenance timer, as a user starts it: `--compaction-interval-secs`
//! runs backfill, compaction and idle release on a timer, configured by the same `DLAB_*`
//! variables as the `compaction` Lambda, and `--no-compaction` turns it off. The binary runs on
//! its embedded (memory) backend on a loopback port; the test sees its banner, its log and its
//! WebSocket, and never waits on a fixed sleep.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

/// The variables of the test command that would point the binary at the real servers.
const BACKEND_VARS: [&str; 6] = [
    "REDIS_URL",
    "REDIS_CLUSTER",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "AWS_ENDPOINT_URL",
    "CONNECTIONS_TABLE",
];

/// A running `local-gateway` process; killed (by its pid) when dropped.
struct Gateway {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(args: &[&str], vars: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_local-gateway"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--demo",
                "--ephemeral",
                "--no-compendium",
            ])
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in BACKEND_VARS {
            command.env_remove(name);
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the local-gateway binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let gateway = Self { child, output };
        gateway.wait_line("the banner", |l| l.starts_with("Press Ctrl-C"));
        gateway
    }

    fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The first output line matching `matches`, waiting (bounded) for it.
    fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never printed {what}; it printed:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value after `label` on the banner line that holds it.
    fn banner_value(&self, label: &str) -> String {
        let line = self.wait_line(label, |l| l.trim_start().starts_with(label));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn ws_base(&self) -> String {
        let url = self.banner_value("WebSocket:");
        url.split('?').next().unwrap().to_owned()
    }

    fn session(&self) -> String {
        let line = self.wait_line("the demo session", |l| l.contains("Demo:"));
        line.rsplit("session ").next().unwrap().trim().to_owned()
    }

    /// The token of a demo user, and the user's name.
    fn some_token(&self) -> (String, String) {
        let lines = self.lines();
        let start = lines
            .iter()
            .position(|l| l.contains("Demo:"))
            .expect("a demo section");
        let line = lines[start + 1].trim();
        let (user, token) = line.split_once(": ").expect("user: token");
        (user.to_owned(), token.to_owned())
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn frame(socket: &mut Socket, matches: impl Fn(&Value) -> bool) -> Value {
    let read = async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                let v: Value = serde_json::from_str(&text).expect("a JSON frame");
                assert_ne!(v["event"], "error", "{v}");
                assert_ne!(v["event"], "event:error", "{v}");
                if matches(&v) {
                    return v;
                }
            }
        }
        panic!("the socket closed");
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the frame came")
}

/// Subscribes from 0 and returns the sequences of the catch-up, and the head.
async fn subscribe_all(socket: &mut Socket, session: &str) -> (Vec<u64>, u64) {
    socket
        .send(Message::text(
            json!({"action": "subscribe", "sessionId": session, "since": 0, "requestId": "s"})
                .to_string(),
        ))
        .await
        .unwrap();
    let subscribed = frame(socket, |v| v["event"] == "session:subscribed").await;
    let head = subscribed["data"]["head"].as_u64().unwrap();
    let mut sequences = Vec::new();
    loop {
        let batch = frame(socket, |v| v["event"] == "events:batch").await;
        for e in batch["data"]["events"].as_array().unwrap() {
            sequences.push(e["sequence"].as_u64().unwrap());
        }
        if batch["data"]["isLast"] == true {
            assert_eq!(batch["data"]["complete"], true, "{batch}");
            return (sequences, head);
        }
    }
}

async fn chat(socket: &mut Socket, session: &str, text: &str) -> u64 {
    let id = uuid::Uuid::new_v4().to_string();
    socket
        .send(Message::text(
            json!({"action": "submit", "event": {"id": id, "sessionId": session,
                   "type": "core:chat", "payload": {"text": text}}})
            .to_string(),
        ))
        .await
        .unwrap();
    let confirmed = frame(socket, |v| {
        v["event"] == "event:confirmed" && v["data"]["eventId"] == id.as_str()
    })
    .await;
    confirmed["data"]["sequence"].as_u64().unwrap()
}

/// With a one-second timer and a one-second idle release, the running binary releases a quiet
/// session's hot state on its own (its log says so), and a later subscribe gets every event
/// back, in order, and the next submit continues the sequence without a gap or a reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_releases_an_idle_session_and_it_comes_back() {
    let gateway = Gateway::start(
        &["--compaction-interval-secs", "1"],
        &[
            ("DLAB_IDLE_RELEASE_SECS", "1"),
            ("DLAB_COMPACTION_THRESHOLD", "3"),
            ("DLAB_HOT_TAIL", "1"),
        ],
    );
    gateway.wait_line("the timer's interval", |l| {
        l.contains("Maintenance: backfill, compaction and idle release every 1 s")
    });
    let session = gateway.session();
    let (user, token) = gateway.some_token();
    let url = format!("{}?token={token}", gateway.ws_base());
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    let (_, head) = subscribe_all(&mut socket, &session).await;
    let mut last = head;
    for i in 0..5 {
        let sequence = chat(&mut socket, &session, &format!("line {i}")).await;
        assert_eq!(sequence, last + 1, "gap-free sequences");
        last = sequence;
    }
    let released = gateway.wait_line("an idle release", |l| {
        l.contains("idle session released") && l.contains(&session)
    });
    assert!(released.contains(&format!("head={last}")), "{released}");
    gateway.wait_line("a maintenance run that released it", |l| {
        l.contains("maintenance run") && l.contains("released=1")
    });
    drop(socket);

    let url = format!("{}?token={token}", gateway.ws_base());
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (sequences, head) = subscribe_all(&mut socket, &session).await;
    assert_eq!(head, last, "the head survives the release");
    assert_eq!(
        sequences,
        (1..=last).collect::<Vec<_>>(),
        "every event, in order"
    );
    let next = chat(&mut socket, &session, "after the release").await;
    assert_eq!(next, last + 1, "no reuse, no gap after the rehydrate");
}

/// `--no-compaction` turns the timer off: the banner says so, and no run ever logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_compaction_turns_the_timer_off() {
    let gateway = Gateway::start(&["--no-compaction"], &[]);
    gateway.wait_line("the timer being off", |l| {
        l.contains("Maintenance: timer off")
    });
    assert!(
        gateway.lines().iter().any(
            |l| l.contains("local gateway listening") && !l.contains("maintenance_every_secs=")
        ),
        "the start line records no interval:\n{}",
        gateway.lines().join("\n")
    );
}
