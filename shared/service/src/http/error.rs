//! [`ApiError`]: the one place where failures become HTTP answers,
//! `{"error": {"code", "message"}}` with the status of the code.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dlab_core::actor::ActorError;
use dlab_core::codes::ErrorCode;
use dlab_core::event::EnvelopeError;
use dlab_store::StoreError;
use serde::Serialize;
use tracing::{error, warn};
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::error::ServiceError;

/// A failed request: a wire code and a message that is safe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The wire code; the status is `code.http_status()`.
    pub code: ErrorCode,
    /// Human-readable detail (never internals).
    pub message: String,
}

/// The error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `{code, message}` of an error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// One of the contract's codes (`invalid_message`, `unauthorized`, `forbidden`,
    /// `not_found`, `session_not_found`, `conflict`, `payload_too_large`, `rate_limited`,
    /// `unavailable`, `internal`, …).
    #[schema(value_type = String, example = "not_found")]
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthorized = self.code == ErrorCode::Unauthorized;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        // A create that found its id taken is a conflict of the request, not an outage.
        if let ServiceError::Unavailable(StoreError::AlreadyExists(what)) = &e {
            return ApiError::conflict(format!("{what} already exists"));
        }
        let code = e.code();
        match code {
            ErrorCode::Internal => {
                error!(error = %e, source = ?std::error::Error::source(&e), "request failed")
            }
            ErrorCode::Unavailable => {
                warn!(error = %e, source = ?std::error::Error::source(&e), "request failed")
            }
            _ => {}
        }
        ApiError::new(code, e.public_message())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(e: EnvelopeError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// The message of a rejection's innermost useful error (serde's, which names the field).
fn detail(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the limit",
            )
        } else {
            ApiError::bad_request(format!(
                "the request body could not be read: {}",
                detail(&e)
            ))
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        match e {
            JsonRejection::JsonDataError(e) => {
                // The field path says where; serde's position suffix would add nothing.
                let message = detail(&e);
                let message = match message.rfind(" at line ") {
                    Some(i) => &message[..i],
                    None => &message,
                };
                ApiError::bad_request(format!("invalid request body: {message}"))
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(format!(
                "the request body is not valid JSON: {}",
                detail(&e)
            )),
            JsonRejection::BytesRejection(e) => e.into(),
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        let message = match &e {
            QueryRejection::FailedToDeserializeQueryString(inner) => detail(inner),
            other => other.body_text(),
        };
        ApiError::bad_request(format!("invalid query string: {message}"))
    }
}
