//! The OpenAPI document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and the schemas of [`super::api`]. Every route but `/healthz` and
//! `/openapi.json` requires the `bearer` scheme.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api::{
    AddSessionActor, BatchWritten, CreateCampaign, CreateSession, Health, PutMember, Role,
    TicketBody, doc,
};
use super::error::{ErrorBody, ErrorDetail};
use super::{actors, campaigns, compendium, lifecycle, meta, sessions};

/// Name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user token (HS256 with the shared secret, or RS256 from the JWKS); \
                         connect tickets are refused here.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's definition.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dungeon Lab event server HTTP API",
        description = "GM and tool API of the Dungeon Lab event server. Errors are \
            `{\"error\": {\"code\", \"message\"}}`; lists are `{\"items\", \"nextCursor\"}`, \
            paged by `cursor` and `limit` and cut before the item that would pass the byte \
            budget (`DLAB_MAX_LIST_BYTES`, 1 MiB by default); times are milliseconds since the \
            epoch.",
    ),
    paths(
        meta::healthz,
        meta::openapi_json,
        meta::connect_ticket,
        compendium::search,
        compendium::entry,
        compendium::batch,
        campaigns::list,
        campaigns::create,
        campaigns::get_one,
        campaigns::put_member,
        campaigns::remove_member,
        actors::create,
        actors::create_bulk,
        actors::list,
        actors::get_one,
        actors::patch,
        actors::delete,
        sessions::create,
        sessions::list,
        sessions::state,
        sessions::add_actor,
        sessions::remove_actor,
        sessions::runtime_actor,
        sessions::events,
        sessions::snapshot,
        lifecycle::end,
        lifecycle::compact,
        lifecycle::list_conflicts,
        lifecycle::escalate,
        lifecycle::resolve,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Health, TicketBody, CreateCampaign, PutMember, Role,
        CreateSession, AddSessionActor,
        doc::Member, doc::Campaign, doc::ActorType, doc::Actor, doc::ActorFields,
        doc::FromTemplate, doc::CreateActor, doc::CompendiumEntry, doc::SessionStatus,
        doc::GameSession, doc::GameEvent, doc::Override, doc::ActiveActor,
        doc::GameSessionState, doc::Snapshot, doc::CampaignList, doc::ActorList,
        doc::SessionList, doc::EventPage, doc::CompendiumPage, doc::SessionActorChange,
        doc::RuntimeActor, doc::BatchEntry, doc::CompendiumBatch, BatchWritten,
        lifecycle::CompactionResult, lifecycle::ConflictList,
        lifecycle::Escalation, lifecycle::ResolveBody, actors::BulkCreate, actors::BulkCreated,
    )),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "meta", description = "Health and this document"),
        (name = "auth", description = "Connect tickets for the WebSocket"),
        (name = "compendium", description = "Template library"),
        (name = "conflicts", description = "The GM's conflict report and its resolution"),
        (name = "campaigns", description = "Campaigns and members"),
        (name = "actors", description = "Campaign actors"),
        (name = "sessions", description = "Game sessions, their actors, events and snapshots"),
    ),
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}
