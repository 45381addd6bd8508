//! Campaigns and their members.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dlab_core::ids::{CampaignId, SessionId, UserId};
use dlab_core::protocol::{PresenceStatus, ServerFrame};
use dlab_store::model::{Campaign, CampaignKey, MAX_PAGE_ITEMS, MemberRole, PageRequest, now_ms};
use tracing::info;

use super::AppState;
use super::access::campaign_access;
use super::api::{
    CreateCampaign, ListParams, MAX_USER_ID_CHARS, Page, PutMember, Role, display_name, doc,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::pipeline::{broadcast, send};

/// The campaigns the caller is GM or member of, by id, one page at a time.
#[utoipa::path(get, operation_id = "listCampaigns", path = "/campaigns", tag = "campaigns",
    params(ListParams),
    responses(
        (status = 200, description = "A page of the caller's campaigns", body = doc::CampaignList),
        (status = 400, description = "A parameter is invalid (limit outside 1..=1000, or a cursor this list did not make)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Campaign>>, ApiError> {
    let request = params.request::<CampaignKey>(app.settings())?;
    let page = app.deps().campaigns.campaigns_of(&user, &request).await?;
    Ok(Json(Page::from_store(page)))
}

/// Creates a campaign; the caller becomes its GM (owner).
#[utoipa::path(post, operation_id = "createCampaign", path = "/campaigns", tag = "campaigns", request_body = CreateCampaign,
    responses(
        (status = 201, description = "The new campaign", body = doc::Campaign),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiJson(body): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    let campaign = Campaign {
        id: CampaignId::new(uuid::Uuid::new_v4().to_string()),
        name: display_name(&body.name)?,
        gm_user_id: user.clone(),
        members: vec![],
        created_at: now_ms(),
    };
    app.deps().campaigns.create_campaign(&campaign).await?;
    info!(campaign = %campaign.id, user = %user, "campaign created");
    Ok((StatusCode::CREATED, Json(campaign)))
}

/// One campaign (GM or member).
#[utoipa::path(get, operation_id = "getCampaign", path = "/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = doc::Campaign),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub async fn get_one(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Campaign>, ApiError> {
    let access = campaign_access(app.deps(), &user, &CampaignId::new(id)).await?;
    Ok(Json(access.campaign))
}

/// Adds a member or changes a member's role (GM only).
#[utoipa::path(post, operation_id = "putMember", path = "/campaigns/{id}/members", tag = "campaigns", request_body = PutMember,
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The updated campaign", body = doc::Campaign),
        (status = 400, description = "Invalid body, or the user is the owner", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub async fn put_member(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutMember>,
) -> Result<Json<Campaign>, ApiError> {
    let deps = app.deps();
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    access.require_gm()?;
    let member = member_id(&body.user_id)?;
    if member == access.campaign.gm_user_id {
        return Err(ApiError::bad_request(format!(
            "{member} owns campaign {} and is its GM already",
            access.campaign.id
        )));
    }
    let role = match body.role {
        Role::Player => MemberRole::Player,
        Role::Gm => MemberRole::Gm,
    };
    let campaign = deps
        .campaigns
        .put_member(&access.campaign.id, &member, role)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {} not found", access.campaign.id)))?;
    info!(campaign = %campaign.id, member = %member, by = %user, "member put");
    Ok(Json(campaign))
}

/// Checks a user id from a request body (members, LAN invites): 1 to [`MAX_USER_ID_CHARS`]
/// characters, no spaces or control characters.
pub fn member_id(raw: &str) -> Result<UserId, ApiError> {
    let ok = !raw.is_empty()
        && raw.chars().count() <= MAX_USER_ID_CHARS
        && !raw.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(UserId::new(raw))
    } else {
        Err(ApiError::bad_request(format!(
            "userId must be 1 to {MAX_USER_ID_CHARS} characters without spaces"
        )))
    }
}

/// Removes a member (GM only; the owner cannot be removed). Their live connections leave every
/// session of the campaign: each gets `session:unsubscribed`, and the other subscribers
/// `presence {status: left}`.
#[utoipa::path(delete, operation_id = "removeMember", path = "/campaigns/{id}/members/{userId}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id"),
           ("userId" = String, Path, description = "The member to remove")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The user owns the campaign", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a GM of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign, or the user is not a member", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, member)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let deps = app.deps();
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    access.require_gm()?;
    let member = UserId::new(member);
    let campaign = &access.campaign.id;
    if member == access.campaign.gm_user_id {
        return Err(ApiError::bad_request(format!(
            "{member} owns campaign {campaign} and cannot be removed"
        )));
    }
    if !deps.campaigns.remove_member(campaign, &member).await? {
        return Err(ApiError::not_found(format!(
            "{member} is not a member of campaign {campaign}"
        )));
    }
    let mut sessions: Vec<SessionId> = Vec::new();
    let mut request = PageRequest::first(MAX_PAGE_ITEMS);
    loop {
        let page = deps.campaigns.sessions(campaign, &request).await?;
        sessions.extend(page.items.into_iter().map(|s| s.id));
        match page.next {
            Some(key) => request = request.after(key),
            None => break,
        }
    }
    let removed = deps
        .registry
        .remove_user_subscriptions(&member, &sessions)
        .await?;
    for session in removed
        .iter()
        .map(|s| &s.session_id)
        .collect::<BTreeSet<_>>()
    {
        crate::audience::left(deps, session).await;
    }
    let mut left = BTreeSet::new();
    for sub in &removed {
        let frame = ServerFrame::SessionUnsubscribed {
            session_id: sub.session_id.clone(),
            request_id: None,
        };
        send(deps, &sub.connection_id, &frame).await;
        left.insert(sub.session_id.clone());
    }
    for session in left {
        let presence = ServerFrame::Presence {
            session_id: session.clone(),
            user_id: member.clone(),
            status: PresenceStatus::Left,
        };
        broadcast(deps, &session, &presence, None).await?;
    }
    info!(campaign = %campaign, member = %member, by = %user,
          subscriptions = removed.len(), "member removed");
    Ok(StatusCode::NO_CONTENT)
}
