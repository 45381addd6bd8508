//! Health, the OpenAPI document, connect tickets, and the answers to unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::api::{Health, TicketBody};
use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::openapi;

/// Liveness: answers without touching any backend.
#[utoipa::path(get, operation_id = "getHealth", path = "/healthz", tag = "meta", security(()),
    responses((status = 200, description = "The service is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, operation_id = "getOpenApi", path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
}

/// A connect ticket: a short-lived token for the WebSocket URL's `?token=` (query strings can
/// end up in access logs, so a long-lived token does not belong there). The body is ignored.
#[utoipa::path(post, operation_id = "createConnectTicket", path = "/connect-ticket", tag = "auth",
    responses(
        (status = 200, description = "A ticket valid for about a minute", body = TicketBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
    ))]
pub async fn connect_ticket(State(app): State<AppState>, Caller(user): Caller) -> Json<TicketBody> {
    let ticket = app.deps().auth.issue_ticket(&user);
    Json(TicketBody {
        ticket: ticket.ticket,
        expires_at: ticket.expires_at,
    })
}

/// Any path the API does not have.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A known path with a method it does not serve: 405 with the error body.
pub async fn method_not_allowed() -> impl IntoResponse {
    let mut response = ApiError::bad_request("method not allowed on this route").into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}
