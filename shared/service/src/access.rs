//! Who may touch a session: the one lookup shared by the WebSocket use cases and the HTTP API.

use dlab_core::ids::SessionId;
use dlab_store::model::{Campaign, GameSession};

use crate::deps::Deps;
use crate::error::ServiceError;

/// A session and its campaign; `session_not_found` when either is missing.
pub async fn session_campaign(
    deps: &Deps,
    session: &SessionId,
) -> Result<(GameSession, Campaign), ServiceError> {
    let doc = deps
        .campaigns
        .session(session)
        .await?
        .ok_or_else(|| ServiceError::SessionNotFound(session.clone()))?;
    let campaign = deps
        .campaigns
        .campaign(&doc.campaign_id)
        .await?
        .ok_or_else(|| ServiceError::SessionNotFound(session.clone()))?;
    Ok((doc, campaign))
}
