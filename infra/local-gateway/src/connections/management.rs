//! API Gateway's management API (`@connections`), answered from the [`ConnectionHub`].
//!
//! | request | answer |
//! |---|---|
//! | `POST /@connections/{id}`, body = the data | `200`, empty; the socket gets one frame: text if the body is UTF-8, else binary |
//! | `GET /@connections/{id}` | `200` `{"connectedAt", "identity": {"sourceIp", "userAgent"}, "lastActiveAt"}` (ISO 8601, UTC, ms) |
//! | `DELETE /@connections/{id}` | `204`; the socket is closed |
//! | any of them for an unknown, closed or still-connecting id | `410`, `x-amzn-ErrorType: GoneException`, `{"message": "Gone"}` |
//! | a `POST` body over 128 KiB | `413`, `x-amzn-ErrorType: PayloadTooLargeException` |
//!
//! Each route also exists under a stage prefix (`/{stage}/@connections/{id}`), because the
//! endpoint the SDK is given is the stage URL (`https://{domain}/{stage}` on AWS,
//! `http://127.0.0.1:PORT/local` here). The path id is percent-decoded (the SDK sends `=` as
//! `%3D`). Requests are SigV4-signed by the SDK; the signature is not checked.
//!
//! The JSON keys are camelCase on the wire (the SDKs read `connectedAt`, `identity.sourceIp`,
//! …; the PascalCase `ConnectedAt` seen in CLI output is the SDK's rendering, not the wire).
//! The AWS SDKs decide the error kind from the `x-amzn-ErrorType` header first (then a `code`
//! or `__type` field of the JSON body); the status code alone does not make a
//! `GoneException`, so the header is always sent.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dlab_core::ids::ConnectionId;
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use super::{ConnectionHub, ConnectionInfo, Gone};

/// API Gateway's limit on one posted message (128 KiB).
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// Bodies up to this size are read (and refused with a proper 413 when over
/// [`MAX_POST_BYTES`]); larger ones get axum's plain 413.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The header the AWS SDKs read the error type from.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The management routes (state: the hub).
pub fn routes() -> Router<ConnectionHub> {
    let handlers = || {
        post(post_to_connection)
            .get(get_connection)
            .delete(delete_connection)
    };
    Router::new()
        .route("/@connections/{id}", handlers())
        .route("/{stage}/@connections/{id}", handlers())
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

/// The path parameters; `stage`, when present, is ignored.
#[derive(Debug, Deserialize)]
struct ConnectionPath {
    id: String,
}

async fn post_to_connection(
    State(hub): State<ConnectionHub>,
    Path(path): Path<ConnectionPath>,
    body: Bytes,
) -> Response {
    let id = ConnectionId::new(path.id);
    if body.len() > MAX_POST_BYTES {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            "Message too long",
        );
    }
    match hub.post(&id, body.to_vec()).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(gone) => gone_response(gone),
    }
}

async fn get_connection(
    State(hub): State<ConnectionHub>,
    Path(path): Path<ConnectionPath>,
) -> Response {
    let id = ConnectionId::new(path.id);
    match hub.get_open(&id) {
        Ok(info) => Json(connection_json(&info)).into_response(),
        Err(gone) => gone_response(gone),
    }
}

async fn delete_connection(
    State(hub): State<ConnectionHub>,
    Path(path): Path<ConnectionPath>,
) -> Response {
    let id = ConnectionId::new(path.id);
    match hub.close(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(gone) => gone_response(gone),
    }
}

/// `GetConnection`'s answer.
fn connection_json(info: &ConnectionInfo) -> serde_json::Value {
    json!({
        "connectedAt": iso8601(info.connected_at),
        "identity": {
            "sourceIp": info.identity.source_ip,
            "userAgent": info.identity.user_agent,
        },
        "lastActiveAt": iso8601(info.last_active_at),
    })
}

fn gone_response(gone: Gone) -> Response {
    debug!(connection = %gone.0, "@connections: gone");
    aws_error(StatusCode::GONE, "GoneException", "Gone")
}

/// An error as API Gateway sends it: status, error-type header, JSON message.
fn aws_error(status: StatusCode, error_type: &'static str, message: &'static str) -> Response {
    (
        status,
        [(ERROR_TYPE_HEADER, error_type)],
        Json(json!({ "message": message })),
    )
        .into_response()
}

/// `2024-05-01T12:34:56.789Z`.
pub fn iso8601(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn iso8601_formats_utc_with_milliseconds() {
        assert_eq!(iso8601(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(iso8601(at(1_700_000_000, 123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(at(4_107_542_399, 999)), "2100-02-28T23:59:59.999Z");
    }
}
