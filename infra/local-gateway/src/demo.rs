//! `--demo`: a campaign with a GM and two players, a session with a few actors, and tokens, so a
//! newcomer can connect at once.

use std::time::Duration;

use dlab_core::actor::{CreateFromTemplate, create_custom, create_from_template};
use dlab_core::changes::ACTOR_ADDED;
use dlab_core::event::GameEvent;
use dlab_core::ids::{ActorId, CampaignId, EventId, Sequence, SessionId, UserId};
use dlab_service::Deps;
use dlab_store::StoreError;
use dlab_store::model::{
    Campaign, CampaignQuotas, GameSession, Member, MemberRole, QuotaError, SessionStatus, now_ms,
};
use serde_json::json;

/// The seeded ids and the users' tokens.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The campaign.
    pub campaign: CampaignId,
    /// Its session.
    pub session: SessionId,
    /// `(user, token)` for the GM and the two players.
    pub tokens: Vec<(UserId, String)>,
}

/// The demo's own campaign is far inside every quota; a refusal means the store is not what
/// the seed expects.
fn quota_refused(e: QuotaError) -> StoreError {
    match e {
        QuotaError::Store(e) => e,
        other => StoreError::corrupt("demo", "campaign quota", other),
    }
}

/// Seeds the demo table (idempotent enough for a fresh memory backend; on real servers an
/// existing demo campaign is reused).
pub async fn seed(deps: &Deps) -> Result<Demo, StoreError> {
    let campaign = CampaignId::new("demo-campaign");
    let session = SessionId::new("demo-session");
    let gm = UserId::new("gm");
    let players = [UserId::new("alice"), UserId::new("bob")];
    let tokens = std::iter::once(&gm)
        .chain(players.iter())
        .map(|u| {
            (
                u.clone(),
                deps.auth
                    .issue_user_token(u, Duration::from_secs(12 * 3600)),
            )
        })
        .collect();
    if deps.campaigns.campaign(&campaign).await?.is_some() {
        return Ok(Demo {
            campaign,
            session,
            tokens,
        });
    }
    let now = now_ms();
    deps.campaigns
        .create_campaign(&Campaign {
            id: campaign.clone(),
            name: "The Lost Mine (demo)".into(),
            gm_user_id: gm.clone(),
            members: players
                .iter()
                .map(|p| Member {
                    user_id: p.clone(),
                    role: MemberRole::Player,
                })
                .collect(),
            created_at: now,
        })
        .await?;
    let quotas = CampaignQuotas::default();
    deps.campaigns
        .create_session(
            &GameSession {
                id: session.clone(),
                campaign_id: campaign.clone(),
                name: "Session 1: Goblin Ambush".into(),
                status: SessionStatus::Active,
                created_by: gm.clone(),
                created_at: now,
                archived_through: 0,
            },
            &quotas,
        )
        .await
        .map_err(quota_refused)?;
    deps.log.init_session(&session).await?;
    let actors = [
        (
            "goblin1",
            "Goblin Scout #1",
            json!({"type": "monster", "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15, "speed": 30}}),
        ),
        (
            "goblin2",
            "Goblin Scout #2",
            json!({"type": "monster", "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15, "speed": 30}}),
        ),
        (
            "hero1",
            "Sildar Hallwinter",
            json!({"type": "npc", "attributes": {"hp": {"value": 27, "max": 27}, "ac": 16, "speed": 30}}),
        ),
    ];
    // With the SRD imported, the encounter is real stat blocks: goblins with their scimitars
    // and a veteran for Sildar, copied from the compendium with the back-link.
    let templates = [
        "dnd5e:monsters:goblin",
        "dnd5e:monsters:goblin",
        "dnd5e:monsters:veteran",
    ];
    for ((instance, name, mut data), template) in actors.into_iter().zip(templates) {
        data["name"] = json!(name);
        let id = ActorId::new(format!("actor-{instance}"));
        let actor = match deps.campaigns.compendium_entry(template).await? {
            Some(entry) => create_from_template(
                Some(&entry),
                &CreateFromTemplate {
                    compendium_ref: entry.reference.clone(),
                    name: Some(name.into()),
                    customizations: None,
                },
                &campaign,
                id,
                &gm,
                now,
            ),
            None => create_custom(&data, &campaign, id, &gm, now),
        }
        .map_err(|e| StoreError::corrupt("demo", "actor", e))?;
        deps.campaigns
            .create_actor(&actor, &quotas)
            .await
            .map_err(quota_refused)?;
        let event = GameEvent {
            id: EventId::new(uuid::Uuid::new_v4().to_string()),
            sequence: Sequence::ZERO,
            timestamp: now_ms(),
            client_timestamp: None,
            user_id: gm.clone(),
            session_id: session.clone(),
            event_type: ACTOR_ADDED.into(),
            payload: json!({"instanceId": instance, "actorId": actor.id, "actor": actor.to_value()}),
            checksum: None,
        };
        dlab_service::pipeline::publish(deps, event, dlab_service::pipeline::Origin::Server)
            .await
            .map_err(|e| StoreError::corrupt("demo", "commit", e))?;
    }
    Ok(Demo {
        campaign,
        session,
        tokens,
    })
}
