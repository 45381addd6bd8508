//! The web console: the built Vue app (`shared/web/dist`, Vite `base: '/app/'`) served under
//! `/app/` from a directory, so a table needs nothing but the gateway and a browser.
//!
//! - `index.html` (and every other file outside `assets/`) is `Cache-Control: no-cache`: the
//!   browser revalidates it, so a rebuilt console is picked up on the next reload;
//! - `/app/assets/*` are Vite's content-hashed files: `public, max-age=31536000, immutable`,
//!   since a changed file gets a new name;
//! - a precompressed `*.gz` beside a file is sent when the browser takes gzip, otherwise
//!   JavaScript, CSS, WebAssembly and the rest are gzipped on the fly;
//! - `tower-http`'s `ServeDir` decodes the path and refuses any `..` component, so nothing
//!   outside the directory is ever served;
//! - while the directory has no `index.html` (the console was never built), `/app/` answers
//!   [`MISSING_STATUS`] with a short page saying how to build it, checked on every request so
//!   a build made while the gateway runs is served without a restart;
//! - `GET /` from a browser (no WebSocket upgrade, `Accept` naming `text/html`) is redirected to
//!   `/app/`; upgrades and API clients at `/` are untouched ([`browser_redirect`]).

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

/// Where the console is served.
pub const PREFIX: &str = "/app";

/// The default directory of the built console, relative to the working directory (the
/// repository root when started with `bash infra/run.sh`).
pub const DEFAULT_DIR: &str = "shared/web/dist";

/// `Cache-Control` of the content-hashed files under `/app/assets/`.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of everything else under `/app/` (`index.html` above all).
pub const NO_CACHE: &str = "no-cache";

/// Status of `/app/` while the console is not built: 503, because the gateway is up but this
/// part of it cannot serve yet, and no cache keeps the page once the console is built.
pub const MISSING_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// Whether `dir` holds a built console (an `index.html`).
pub fn is_built(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// The `/app/` routes serving the console built into `dir`.
pub fn routes(dir: PathBuf) -> Router {
    let files = ServeDir::new(&dir)
        .precompressed_gzip()
        .append_index_html_on_directories(true);
    Router::new()
        .nest_service(PREFIX, files)
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(cache_control))
        .layer(middleware::from_fn_with_state(dir, entry_points))
}

/// Sets `Cache-Control` on every answer under `/app/` (see the module documentation).
async fn cache_control(request: Request, next: Next) -> Response {
    let hashed = request.uri().path().starts_with("/app/assets/");
    let mut response = next.run(request).await;
    let status = response.status();
    let value = if hashed && (status.is_success() || status == StatusCode::NOT_MODIFIED) {
        IMMUTABLE
    } else {
        NO_CACHE
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    response
}

/// `/app` redirects to `/app/` (the console's one address), and the entry points answer
/// [`missing_page`] while `dir` has no `index.html`.
async fn entry_points(State(dir): State<PathBuf>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == PREFIX {
        return Redirect::to("/app/").into_response();
    }
    if matches!(path, "/app/" | "/app/index.html") && !is_built(&dir) {
        return missing_page(&dir);
    }
    next.run(request).await
}

/// The page shown at `/app/` before the console is built.
pub fn missing_page(dir: &Path) -> Response {
    let dir = html_escape(&dir.display().to_string());
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dungeon Lab: console not built</title></head>\n\
         <body><h1>The web console is not built yet</h1>\n\
         <p>The gateway is running, but <code>{dir}</code> has no <code>index.html</code>.</p>\n\
         <p>Build it from the repository root with <code>bash infra/web-build.sh</code> (needs Node.js and npm), \
         or stop the gateway and start it with <code>bash infra/run.sh</code>, which builds the console first. \
         Then reload this page.</p>\n\
         <p>The WebSocket and HTTP APIs work without it (see <a href=\"/openapi.json\">/openapi.json</a>).</p>\n\
         </body></html>\n"
    );
    (
        MISSING_STATUS,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(body),
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Sends a browser that opens the gateway's root to the console: `GET /` (or `HEAD /`) without
/// an `Upgrade` header and with an `Accept` naming `text/html` gets `303 See Other` to `/app/`.
/// WebSocket upgrades and API clients (no `text/html`) reach the route below unchanged.
pub async fn browser_redirect(request: Request, next: Next) -> Response {
    if is_browser_visit(&request) {
        return Redirect::to("/app/").into_response();
    }
    next.run(request).await
}

fn is_browser_visit(request: &Request) -> bool {
    let headers = request.headers();
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"));
    request.uri().path() == "/"
        && matches!(*request.method(), Method::GET | Method::HEAD)
        && !headers.contains_key(header::UPGRADE)
        && wants_html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn only_a_browser_page_visit_at_the_root_is_redirected() {
        let html = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        assert!(is_browser_visit(&request(Method::GET, "/", &[html])));
        assert!(is_browser_visit(&request(Method::HEAD, "/", &[html])));
        assert!(is_browser_visit(&request(
            Method::GET,
            "/",
            &[("accept", "TEXT/HTML")]
        )));
        assert!(!is_browser_visit(&request(Method::GET, "/", &[])));
        assert!(!is_browser_visit(&request(
            Method::GET,
            "/",
            &[("accept", "application/json")]
        )));
        assert!(!is_browser_visit(&request(
            Method::GET,
            "/",
            &[html, ("upgrade", "websocket")]
        )));
        assert!(!is_browser_visit(&request(Method::POST, "/", &[html])));
        assert!(!is_browser_visit(&request(
            Method::GET,
            "/campaigns",
            &[html]
        )));
    }

    #[test]
    fn the_missing_page_escapes_the_directory() {
        let response = missing_page(Path::new("<dist>"));
        assert_eq!(response.status(), MISSING_STATUS);
        assert_eq!(
            html_escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
