//! Extractors whose rejections are [`ApiError`]s: the verified caller, and JSON bodies, path
//! segments and query strings, each naming what is wrong.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dlab_core::codes::ErrorCode;
use dlab_core::ids::UserId;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// The user of a request, from a verified bearer token (never from the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub UserId);

/// The token of an `Authorization: Bearer <token>` header; `None` when there is no header.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "the Authorization header must be `Bearer <token>`",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    Ok(Some(token.trim()))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        let user = state.deps().auth.verify_user(token).await?;
        Ok(Caller(user))
    }
}

/// A caller who is an administrator (one of the user ids of `DLAB_ADMINS`): a verified caller
/// who is not is refused with 403 `forbidden` before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin(pub UserId);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(user) = Caller::from_request_parts(parts, state).await?;
        if state.deps().settings.admins.contains(&user) {
            Ok(Admin(user))
        } else {
            Err(ApiError::forbidden(format!(
                "only administrators ({}) may do this",
                crate::config::ADMINS
            )))
        }
    }
}

/// A JSON object request body (every body of this API is an object). Any `Content-Type` is
/// read as JSON; an empty body, anything but an object, invalid JSON or a field of the wrong
/// type is 400 `invalid_message` naming the problem, a body over the limit 413
/// `payload_too_large`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(ApiError::bad_request("a JSON request body is required")),
            Some(b'{') => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object",
                ));
            }
        }
        let Json(value) = Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// Path segments; a rejection is 400 `invalid_message`.
#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters; a rejection is 400 `invalid_message` naming the parameter.
#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
