//! Campaign actors: created from a compendium template or by hand, read, patched, deleted.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dlab_core::actor::{
    Actor, ActorError, CompendiumRef, CreateActorRequest, CreateFromTemplate, apply_patch,
    create_custom, create_from_template,
};
use dlab_core::ids::{ActorId, CampaignId};
use dlab_store::model::{ActorKey, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use utoipa::ToSchema;

use super::AppState;
use super::access::campaign_access;
use super::api::{ListParams, MAX_NAME_CHARS, Page, doc};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};

/// Creates an actor (any member): `{compendiumRef, name?, customizations?}` copies a template;
/// any other body is a custom actor laid over the defaults.
#[utoipa::path(post, operation_id = "createActor", path = "/campaigns/{id}/actors", tag = "actors", request_body = doc::CreateActor,
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 201, description = "The new actor", body = doc::Actor),
        (status = 400, description = "Invalid body (protected or unknown field, wrong type, bad reference, not an actor template)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign, or `Compendium entry not found: <ref>`", body = ErrorBody),
        (status = 409, description = "The campaign has reached its quota of actors (`DLAB_MAX_ACTORS_PER_CAMPAIGN`)", body = ErrorBody),
        (status = 413, description = "The body is over the limit, or the actor over its size quota (`DLAB_MAX_ACTOR_BYTES`)", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Actor>), ApiError> {
    let deps = app.deps();
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    let campaign = &access.campaign.id;
    let actor_id = ActorId::new(uuid::Uuid::new_v4().to_string());
    let now = now_ms();
    let actor = match classify(&body)? {
        CreateActorRequest::FromTemplate(request) => {
            let reference = CompendiumRef::parse(&request.compendium_ref)?;
            let template = deps.campaigns.compendium_entry(reference.as_str()).await?;
            create_from_template(template.as_ref(), &request, campaign, actor_id, &user, now)?
        }
        CreateActorRequest::Custom(data) => create_custom(&data, campaign, actor_id, &user, now)?,
    };
    check_name(&actor)?;
    deps.campaigns
        .create_actor(&actor, &app.settings().quotas)
        .await?;
    info!(campaign = %campaign, actor = %actor.id, user = %user, "actor created");
    Ok((StatusCode::CREATED, Json(actor)))
}

/// Most actors one bulk call creates: an encounter, not a data load.
pub const MAX_BULK_ACTORS: u32 = 100;

/// The placeholder of [`BulkCreate::name_pattern`] replaced by the actor's number.
pub const NUMBER_PLACEHOLDER: &str = "{n}";

/// `POST /campaigns/{id}/actors/bulk`: `count` copies of one template, named by a pattern.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkCreate {
    /// `<system>:<category>:<slug>`.
    #[schema(example = "dnd5e:monsters:goblin")]
    pub compendium_ref: String,
    /// How many actors, 1 to 100.
    #[schema(minimum = 1, maximum = 100, example = 4)]
    pub count: u32,
    /// The names, with `{n}` replaced by 1..=count (default: `<template name> {n}`).
    #[schema(example = "Goblin {n}")]
    pub name_pattern: Option<String>,
    /// Deep-merged over every copy (editable fields only), as for a single create.
    #[schema(value_type = Option<Object>)]
    pub customizations: Option<Value>,
}

/// The actors a bulk create made, in number order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCreated {
    /// The new actors: `{n}` = 1 first.
    #[schema(value_type = Vec<doc::Actor>)]
    pub items: Vec<Actor>,
}

/// Creates `count` actors from one template for encounter building ("Goblin 1" … "Goblin n"),
/// any member. All or nothing, in one store write ([`dlab_store::CampaignStore::create_actors`]):
/// when the campaign's actor quota cannot take them all, none is stored and the answer is 409.
#[utoipa::path(post, operation_id = "createActorsInBulk", path = "/campaigns/{id}/actors/bulk", tag = "actors", request_body = BulkCreate,
    params(("id" = String, Path, description = "Campaign id")),
    responses(
        (status = 201, description = "The new actors", body = BulkCreated),
        (status = 400, description = "Invalid body (count outside 1..=100, a pattern without `{n}` or giving a blank or too long name, bad reference, not an actor template, invalid customizations)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign, or `Compendium entry not found: <ref>`", body = ErrorBody),
        (status = 409, description = "The campaign's actor quota cannot take them all; none was created", body = ErrorBody),
        (status = 413, description = "The body is over the limit, or an actor over its size quota", body = ErrorBody),
    ))]
pub async fn create_bulk(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<BulkCreate>,
) -> Result<(StatusCode, Json<BulkCreated>), ApiError> {
    let deps = app.deps();
    if !(1..=MAX_BULK_ACTORS).contains(&body.count) {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {MAX_BULK_ACTORS}"
        )));
    }
    if let Some(pattern) = &body.name_pattern
        && !pattern.contains(NUMBER_PLACEHOLDER)
    {
        return Err(ApiError::bad_request(format!(
            "namePattern must contain {NUMBER_PLACEHOLDER}, which each actor's number replaces"
        )));
    }
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    let campaign = &access.campaign.id;
    let reference = CompendiumRef::parse(&body.compendium_ref)?;
    let template = deps
        .campaigns
        .compendium_entry(reference.as_str())
        .await?
        .ok_or_else(|| ActorError::CompendiumNotFound(reference.to_string()))?;
    let pattern = body
        .name_pattern
        .clone()
        .unwrap_or_else(|| format!("{} {NUMBER_PLACEHOLDER}", template.name));
    let now = now_ms();
    // Every actor is built and checked before the first is stored: bad input changes nothing.
    let mut actors = Vec::with_capacity(body.count as usize);
    for n in 1..=body.count {
        let name = pattern.replace(NUMBER_PLACEHOLDER, &n.to_string());
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("namePattern gives a blank name"));
        }
        let request = CreateFromTemplate {
            compendium_ref: reference.to_string(),
            name: Some(name),
            customizations: body.customizations.clone(),
        };
        let actor = create_from_template(
            Some(&template),
            &request,
            campaign,
            ActorId::new(uuid::Uuid::new_v4().to_string()),
            &user,
            now,
        )?;
        check_name(&actor).map_err(|_| {
            ApiError::bad_request(format!(
                "namePattern gives a name longer than {MAX_NAME_CHARS} characters"
            ))
        })?;
        actors.push(actor);
    }
    deps.campaigns
        .create_actors(&actors, &app.settings().quotas)
        .await?;
    info!(campaign = %campaign, template = %reference, count = actors.len(), user = %user,
          "actors created in bulk");
    Ok((StatusCode::CREATED, Json(BulkCreated { items: actors })))
}

/// `CreateActorRequest::from_body`, with a template body read through the JSON extractor's
/// deserializer so a wrongly typed field is named (`compendiumRef: invalid type …`).
fn classify(body: &Value) -> Result<CreateActorRequest, ApiError> {
    if body.get("compendiumRef").is_none() {
        return Ok(CreateActorRequest::from_body(body)?);
    }
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Json(request) = Json::<CreateFromTemplate>::from_bytes(&bytes)?;
    Ok(CreateActorRequest::FromTemplate(request))
}

/// The actor name's bound: the name is the listing's sort key and travels in its cursors.
fn check_name(actor: &Actor) -> Result<(), ApiError> {
    if actor.name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

/// The campaign's actors (members), by name then id, one page at a time.
#[utoipa::path(get, operation_id = "listActors", path = "/campaigns/{id}/actors", tag = "actors",
    params(("id" = String, Path, description = "Campaign id"), ListParams),
    responses(
        (status = 200, description = "A page of the campaign's actors", body = doc::ActorList),
        (status = 400, description = "A parameter is invalid (limit outside 1..=1000, or a cursor this list did not make)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Actor>>, ApiError> {
    let deps = app.deps();
    let request = params.request::<ActorKey>(app.settings())?;
    let access = campaign_access(deps, &user, &CampaignId::new(id)).await?;
    let page = deps.campaigns.actors(&access.campaign.id, &request).await?;
    Ok(Json(Page::from_store(page)))
}

async fn find(app: &AppState, campaign: &CampaignId, actor: &str) -> Result<Actor, ApiError> {
    app.deps()
        .campaigns
        .actor(campaign, &ActorId::new(actor))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("actor {actor} not found in campaign {campaign}"))
        })
}

/// One actor (members).
#[utoipa::path(get, operation_id = "getActor", path = "/campaigns/{id}/actors/{actorId}", tag = "actors",
    params(("id" = String, Path, description = "Campaign id"),
           ("actorId" = String, Path, description = "Actor id")),
    responses(
        (status = 200, description = "The actor", body = doc::Actor),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Not a member of the campaign", body = ErrorBody),
        (status = 404, description = "No such campaign or actor", body = ErrorBody),
    ))]
pub async fn get_one(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, actor)): ApiPath<(String, String)>,
) -> Result<Json<Actor>, ApiError> {
    let access = campaign_access(app.deps(), &user, &CampaignId::new(id)).await?;
    Ok(Json(find(&app, &access.campaign.id, &actor).await?))
}

/// Patches an actor (a GM or its creator): the body is deep-merged; protected fields may only
/// repeat their current values. Running sessions keep the copy they were given.
#[utoipa::path(patch, operation_id = "patchActor", path = "/campaigns/{id}/actors/{actorId}", tag = "actors", request_body = doc::ActorFields,
    params(("id" = String, Path, description = "Campaign id"),
           ("actorId" = String, Path, description = "Actor id")),
    responses(
        (status = 200, description = "The patched actor", body = doc::Actor),
        (status = 400, description = "Invalid patch (protected or unknown field, wrong type)", body = ErrorBody),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Neither a GM nor the actor's creator", body = ErrorBody),
        (status = 404, description = "No such campaign or actor", body = ErrorBody),
        (status = 413, description = "The body is over the limit, or the patched actor over its size quota (`DLAB_MAX_ACTOR_BYTES`)", body = ErrorBody),
    ))]
pub async fn patch(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, actor)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Actor>, ApiError> {
    let access = campaign_access(app.deps(), &user, &CampaignId::new(id)).await?;
    let current = find(&app, &access.campaign.id, &actor).await?;
    access.require_editor(&current, &user)?;
    let patched = apply_patch(&current, &body, now_ms())?;
    check_name(&patched)?;
    if !app
        .deps()
        .campaigns
        .update_actor(&patched, &app.settings().quotas)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "actor {actor} not found in campaign {}",
            access.campaign.id
        )));
    }
    info!(campaign = %access.campaign.id, actor = %patched.id, user = %user, "actor patched");
    Ok(Json(patched))
}

/// Deletes an actor (a GM or its creator). Instances already in sessions stay.
#[utoipa::path(delete, operation_id = "deleteActor", path = "/campaigns/{id}/actors/{actorId}", tag = "actors",
    params(("id" = String, Path, description = "Campaign id"),
           ("actorId" = String, Path, description = "Actor id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, expired or invalid token", body = ErrorBody),
        (status = 403, description = "Neither a GM nor the actor's creator", body = ErrorBody),
        (status = 404, description = "No such campaign or actor", body = ErrorBody),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    Caller(user): Caller,
    ApiPath((id, actor)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = campaign_access(app.deps(), &user, &CampaignId::new(id)).await?;
    let current = find(&app, &access.campaign.id, &actor).await?;
    access.require_editor(&current, &user)?;
    app.deps()
        .campaigns
        .delete_actor(&access.campaign.id, &current.id)
        .await?;
    info!(campaign = %access.campaign.id, actor = %current.id, user = %user, "actor deleted");
    Ok(StatusCode::NO_CONTENT)
}
