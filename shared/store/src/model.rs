//! Records kept by the stores that are not pure domain values: campaigns, sessions,
//! connections.

use dlab_core::actor::CompendiumEntry;
use dlab_core::ids::{CampaignId, ConnectionId, SessionId, UserId};
use serde::{Deserialize, Serialize};

/// A member's role in a campaign. Members with `gm` count as GMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// A player.
    Player,
    /// A co-GM.
    Gm,
}

/// A campaign member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: MemberRole,
}

/// A campaign: its GM, members and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    /// Id.
    pub id: CampaignId,
    /// Display name.
    pub name: String,
    /// The user who created it and owns it.
    pub gm_user_id: UserId,
    /// Members other than the owner.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Creation time (ms).
    pub created_at: u64,
}

impl Campaign {
    /// Whether the user is the owner or a member with the GM role.
    pub fn is_gm(&self, user: &UserId) -> bool {
        &self.gm_user_id == user
            || self
                .members
                .iter()
                .any(|m| &m.user_id == user && m.role == MemberRole::Gm)
    }

    /// Whether the user is the owner or any member.
    pub fn is_member(&self, user: &UserId) -> bool {
        &self.gm_user_id == user || self.members.iter().any(|m| &m.user_id == user)
    }
}

/// Lifecycle of a game session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Open for events.
    Active,
    /// Ended: final snapshot taken, hot state released.
    Ended,
}

/// A game session document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GameSession {
    /// Id.
    pub id: SessionId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: SessionStatus,
    /// Who created it.
    pub created_by: UserId,
    /// Creation time (ms).
    pub created_at: u64,
    /// Highest sequence with every event 1..=n in the archive.
    #[serde(default)]
    pub archived_through: u64,
}

/// A WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: ConnectionId,
    /// The verified user.
    pub user_id: UserId,
    /// Connect time (ms).
    pub connected_at: u64,
    /// When the record may be dropped (ms); API Gateway closes every socket after 2 h.
    pub expires_at: u64,
}

/// A connection subscribed to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// The connection.
    pub connection_id: ConnectionId,
    /// The session.
    pub session_id: SessionId,
    /// The connection's user.
    pub user_id: UserId,
    /// When the record may be dropped (ms).
    pub expires_at: u64,
}

/// A compendium search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompendiumQuery {
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
    /// Category (`monsters`, `spells`, `equipment`).
    pub category: Option<String>,
    /// Game system (`dnd5e`).
    pub system: Option<String>,
    /// Page size (1..=100).
    pub limit: usize,
    /// Exclusive start: the last reference of the previous page.
    pub cursor: Option<String>,
}

/// One page of compendium results.
#[derive(Debug, Clone, PartialEq)]
pub struct CompendiumPage {
    /// Entries ordered by reference.
    pub items: Vec<CompendiumEntry>,
    /// Cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// Current time in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
