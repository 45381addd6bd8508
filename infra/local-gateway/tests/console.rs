//! The web console under `/app/`: the browser redirect at `/` (and nothing else there), cache
//! headers, content types, gzip (precompressed and on the fly), the page shown before the
//! console is built, and no file outside the console's directory.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use local_gateway::app::{Backends, Options, Running, start};
use local_gateway::console::{IMMUTABLE, NO_CACHE};
use local_gateway::gateway::Limits;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const INDEX: &str = "<!doctype html><html><head><script type=\"module\" src=\"/app/assets/index-4f3a2b1c.js\"></script></head><body><div id=\"app\"></div></body></html>\n";
/// What a file outside the console's directory holds: it must never be served.
const SECRET: &str = "SECRET-OUTSIDE-THE-CONSOLE";

fn options(web_dir: Option<&Path>) -> Options {
    Options {
        listen: "127.0.0.1:0".parse().expect("addr"),
        backends: Backends::default(),
        dev_tokens: true,
        demo: false,
        limits: Limits::default(),
        jwt_secret: Some(format!("console-{}", uuid::Uuid::new_v4().simple())),
        maintenance_every: None,
        delivery: Default::default(),
        compendium: Default::default(),
        web_dir: web_dir.map(Path::to_path_buf),
        lan: None,
    }
}

/// A built console in `root/dist`, with secrets beside it in `root`.
struct Built {
    root: tempfile::TempDir,
    js: String,
    wasm: Vec<u8>,
}

impl Built {
    fn dist(&self) -> std::path::PathBuf {
        self.root.path().join("dist")
    }
}

fn build_console() -> Built {
    let root = tempfile::tempdir().expect("tempdir");
    let dist = root.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).expect("mkdir");
    std::fs::write(dist.join("index.html"), INDEX).expect("index");
    let js = "export const greeting = 'hello from the console';\n".repeat(200);
    std::fs::write(dist.join("assets/index-4f3a2b1c.js"), &js).expect("js");
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(dist.join("assets/dlab_client_bg-9e8d7c6b.wasm"), &wasm).expect("wasm");
    // A precompressed file whose .gz differs from the plain one: which was sent shows.
    std::fs::write(dist.join("assets/pre-1a2b.css"), "body { color: plain; }\n").expect("css");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"body { color: precompressed; }\n").expect("gz");
    std::fs::write(
        dist.join("assets/pre-1a2b.css.gz"),
        gz.finish().expect("gz"),
    )
    .expect("css.gz");
    std::fs::write(root.path().join("secret.txt"), SECRET).expect("secret");
    std::fs::write(root.path().join("Cargo.toml"), SECRET).expect("Cargo.toml");
    Built { root, js, wasm }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn dev_token(running: &Running, user: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/dev/token", running.http_url()))
        .json(&json!({"userId": user}))
        .send()
        .await
        .expect("POST /dev/token")
        .json()
        .await
        .expect("json");
    body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn browsers_are_sent_to_the_console_and_nobody_else_is() {
    let built = build_console();
    let running = start(options(Some(&built.dist()))).await.expect("start");
    let http = no_redirects();
    let root = format!("{}/", running.http_url());

    let browser = http
        .get(&root)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET /");
    assert_eq!(browser.status().as_u16(), 303);
    assert_eq!(header(&browser, "location"), "/app/");

    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut request = http.get(&root);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.expect("GET /");
        assert_eq!(response.status().as_u16(), 200, "Accept {accept:?}");
        assert!(
            response
                .text()
                .await
                .expect("text")
                .contains("connect a WebSocket here"),
            "API clients still get the WebSocket endpoint's answer"
        );
    }
    // An API route is never redirected, even for a browser.
    let health = http
        .get(format!("{}/healthz", running.http_url()))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status().as_u16(), 200);

    // An upgrade at `/` still opens a socket, even one that says it accepts HTML.
    let token = dev_token(&running, "alice").await;
    let mut request = format!("{}?token={token}", running.ws_url())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("accept", "text/html,*/*".parse().expect("a header value"));
    let (mut ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade at / still works");
    assert_eq!(response.status().as_u16(), 101);
    ws.close(None).await.expect("close");
    running.shutdown().await;
}

#[tokio::test]
async fn without_a_console_directory_nothing_is_redirected() {
    let running = start(options(None)).await.expect("start");
    let http = no_redirects();
    let response = http
        .get(format!("{}/", running.http_url()))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status().as_u16(), 200);
    let app = http
        .get(format!("{}/app/", running.http_url()))
        .send()
        .await
        .expect("GET /app/");
    assert_eq!(app.status().as_u16(), 404);
    running.shutdown().await;
}

#[tokio::test]
async fn the_index_is_revalidated_and_hashed_assets_are_immutable_and_gzipped() {
    let built = build_console();
    let running = start(options(Some(&built.dist()))).await.expect("start");
    let http = no_redirects();
    let app = format!("{}/app", running.http_url());
    let bare = http.get(&app).send().await.expect("GET /app");
    assert_eq!(bare.status().as_u16(), 303);
    assert_eq!(header(&bare, "location"), "/app/");

    for path in ["/", "/index.html"] {
        let index = http
            .get(format!("{app}{path}"))
            .send()
            .await
            .expect("GET index");
        assert_eq!(index.status().as_u16(), 200, "{path}");
        assert_eq!(header(&index, "cache-control"), NO_CACHE, "{path}");
        assert!(header(&index, "content-type").starts_with("text/html"));
        assert_eq!(index.text().await.expect("text"), INDEX);
    }

    let js = http
        .get(format!("{app}/assets/index-4f3a2b1c.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET js");
    assert_eq!(js.status().as_u16(), 200);
    assert_eq!(header(&js, "cache-control"), IMMUTABLE);
    assert_eq!(header(&js, "content-encoding"), "gzip");
    assert!(header(&js, "content-type").contains("javascript"));
    let body = js.bytes().await.expect("body");
    assert!(body.len() < built.js.len() / 4, "{} bytes", body.len());
    assert_eq!(gunzip(&body), built.js.as_bytes());

    // Without gzip in Accept-Encoding, the plain file.
    let plain = http
        .get(format!("{app}/assets/index-4f3a2b1c.js"))
        .send()
        .await
        .expect("GET js");
    assert_eq!(header(&plain, "content-encoding"), "");
    assert_eq!(plain.text().await.expect("text"), built.js);

    let wasm = http
        .get(format!("{app}/assets/dlab_client_bg-9e8d7c6b.wasm"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET wasm");
    assert_eq!(wasm.status().as_u16(), 200);
    assert_eq!(header(&wasm, "content-type"), "application/wasm");
    assert_eq!(header(&wasm, "cache-control"), IMMUTABLE);
    assert_eq!(header(&wasm, "content-encoding"), "gzip");
    assert_eq!(gunzip(&wasm.bytes().await.expect("body")), built.wasm);

    let pre = http
        .get(format!("{app}/assets/pre-1a2b.css"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET css");
    assert_eq!(header(&pre, "content-encoding"), "gzip");
    assert!(header(&pre, "content-type").starts_with("text/css"));
    assert_eq!(
        gunzip(&pre.bytes().await.expect("body")),
        b"body { color: precompressed; }\n",
        "the precompressed file is sent"
    );

    let missing = http
        .get(format!("{app}/assets/nope-0000.js"))
        .send()
        .await
        .expect("GET missing");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(
        header(&missing, "cache-control"),
        NO_CACHE,
        "a missing asset is not cached for a year"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_unbuilt_console_says_how_to_build_it_until_it_is_built() {
    let root = tempfile::tempdir().expect("tempdir");
    let dist = root.path().join("dist");
    let running = start(options(Some(&dist))).await.expect("start");
    let http = no_redirects();
    let response = http
        .get(format!("{}/app/", running.http_url()))
        .send()
        .await
        .expect("GET /app/");
    assert_eq!(response.status().as_u16(), 503);
    assert!(header(&response, "content-type").starts_with("text/html"));
    assert_eq!(header(&response, "cache-control"), "no-store");
    let page = response.text().await.expect("text");
    assert!(page.contains("bash infra/web-build.sh"), "{page}");
    assert!(page.contains("bash infra/run.sh"), "{page}");
    assert!(
        local_gateway::banner(&running).contains("bash infra/web-build.sh"),
        "the banner says so too"
    );

    // Built while the gateway runs: served on the next request.
    std::fs::create_dir_all(&dist).expect("mkdir");
    std::fs::write(dist.join("index.html"), INDEX).expect("index");
    let response = http
        .get(format!("{}/app/", running.http_url()))
        .send()
        .await
        .expect("GET /app/");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("text"), INDEX);
    assert!(local_gateway::banner(&running).contains("/app/"));
    running.shutdown().await;
}

/// Sends `path` as written (no client normalises it) and returns the whole answer.
async fn raw_get(running: &Running, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        running.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn nothing_outside_the_console_directory_is_served() {
    let built = build_console();
    let running = start(options(Some(&built.dist()))).await.expect("start");
    // The control: a raw request for a real file does get it.
    let ok = raw_get(&running, "/app/assets/pre-1a2b.css").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("color: plain"), "{ok}");
    for path in [
        "/app/../Cargo.toml",
        "/app/../secret.txt",
        "/app/assets/../../secret.txt",
        "/app/%2e%2e/secret.txt",
        "/app/%2E%2E/Cargo.toml",
        "/app/..%2fsecret.txt",
        "/app/..%2Fsecret.txt",
        "/app/%2e%2e%2fsecret.txt",
        "/app/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/app/..%5csecret.txt",
        "/app/%252e%252e/secret.txt",
        "/app/.%2e/secret.txt",
        "/app//../secret.txt",
        "/app/assets/..;/../secret.txt",
    ] {
        let answer = raw_get(&running, path).await;
        let status = answer.lines().next().unwrap_or("");
        assert!(!answer.contains(SECRET), "{path} leaked: {answer}");
        assert!(!status.contains(" 200 "), "{path}: {status}");
    }
    running.shutdown().await;
}
