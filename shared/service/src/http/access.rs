//! Who may do what (invariant 8): the campaign's owner and members with `role: gm` are GMs;
//! any member may read; an actor may be changed by a GM or by the user who created it.
//! An unknown campaign or session is 404; one the caller does not belong to is 403.

use dlab_core::actor::Actor;
use dlab_core::ids::{CampaignId, SessionId, UserId};
use dlab_store::model::{Campaign, GameSession};

use super::error::ApiError;
use crate::deps::Deps;

/// The caller's standing in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The owner or a member with `role: gm`.
    Gm,
    /// Any other member.
    Player,
}

/// A campaign and the caller's role in it.
#[derive(Debug, Clone)]
pub struct CampaignAccess {
    /// The campaign.
    pub campaign: Campaign,
    /// The caller's role.
    pub role: Role,
}

impl CampaignAccess {
    /// Refuses a caller who is not a GM of the campaign.
    pub fn require_gm(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Gm => Ok(()),
            Role::Player => Err(ApiError::forbidden(format!(
                "only a GM of campaign {} may do this",
                self.campaign.id
            ))),
        }
    }

    /// Refuses a caller who is neither a GM nor the actor's creator.
    pub fn require_editor(&self, actor: &Actor, user: &UserId) -> Result<(), ApiError> {
        if self.role == Role::Gm || &actor.created_by == user {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only a GM or the creator of actor {} may change it",
                actor.id
            )))
        }
    }
}

/// The caller's role in a campaign: 404 when it does not exist, 403 when the caller is neither
/// GM nor member.
pub async fn campaign_access(
    deps: &Deps,
    user: &UserId,
    campaign: &CampaignId,
) -> Result<CampaignAccess, ApiError> {
    let campaign = deps
        .campaigns
        .campaign(campaign)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {campaign} not found")))?;
    let role = role_of(&campaign, user).ok_or_else(|| {
        ApiError::forbidden(format!("you are not a member of campaign {}", campaign.id))
    })?;
    Ok(CampaignAccess { campaign, role })
}

fn role_of(campaign: &Campaign, user: &UserId) -> Option<Role> {
    if campaign.is_gm(user) {
        Some(Role::Gm)
    } else if campaign.is_member(user) {
        Some(Role::Player)
    } else {
        None
    }
}

/// A session and the caller's standing in its campaign: 404 `session_not_found` when it does
/// not exist, 403 when the caller does not belong to its campaign.
pub async fn session_access(
    deps: &Deps,
    user: &UserId,
    session: &SessionId,
) -> Result<(GameSession, CampaignAccess), ApiError> {
    let (doc, campaign) = crate::access::session_campaign(deps, session).await?;
    let role = role_of(&campaign, user).ok_or_else(|| {
        ApiError::forbidden(format!(
            "you are not a member of the campaign of session {session}"
        ))
    })?;
    Ok((doc, CampaignAccess { campaign, role }))
}
