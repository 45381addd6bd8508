//! Contract of [`CampaignStore`]: campaigns and membership, actors stored exactly, compendium
//! lookup and paged search, game sessions.
//!
//! Every body uses its own ids (UUIDs) — for the compendium, which is global, its own `system`
//! — so bodies run in parallel against one real server.

use dlab_core::actor::{Actor, CompendiumEntry, create_custom};
use dlab_core::ids::{ActorId, CampaignId, EventId, SessionId, UserId};
use dlab_store::model::{
    Campaign, CompendiumQuery, GameSession, Member, MemberRole, SessionStatus,
};
use dlab_store::{CampaignStore, EventArchive, StoreError};
use serde_json::{Value, json};

use super::archive::{event, unique_id};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// A campaign id no other test uses.
pub fn unique_campaign() -> CampaignId {
    CampaignId::new(unique("campaign"))
}

/// A user id no other test uses.
pub fn unique_user() -> UserId {
    UserId::new(unique("user"))
}

/// A campaign owned by `gm`, without members.
pub fn campaign(id: &CampaignId, gm: &UserId, created_at: u64) -> Campaign {
    Campaign {
        id: id.clone(),
        name: format!("Campaign {id}"),
        gm_user_id: gm.clone(),
        members: Vec::new(),
        created_at,
    }
}

/// An active session of `campaign`.
pub fn session(id: &SessionId, campaign: &CampaignId, created_at: u64) -> GameSession {
    GameSession {
        id: id.clone(),
        campaign_id: campaign.clone(),
        name: format!("Session {id}"),
        status: SessionStatus::Active,
        created_by: UserId::new("gm"),
        created_at,
        archived_through: 0,
    }
}

/// A custom actor whose stat block has open-map extras a lossy store would change (floats with
/// a zero fraction, an integer above `i64::MAX`, `$`-prefixed and dotted keys, nested arrays).
pub fn awkward_actor(campaign: &CampaignId, name: &str) -> Actor {
    let body = json!({
        "name": name,
        "type": "monster",
        "attributes": {
            "hp": {"value": 7, "max": 7, "temp": 0, "formula": "2d6", "ratio": 1.0},
            "ac": 15,
            "speed": 30,
            "saves": {"dex": 2},
            "skills": {"stealth": 6},
            "abilities": {"str": 8, "dex": 14},
            "challenge": 0.25,
            "xp": u64::MAX,
            "senses": {"darkvision": 60, "$special.sense": ["tremor", {"range": 10.5}]},
            "languages": ["Common", "Goblin"],
            "notes": null,
        },
        "spells": [{"name": "Mage Hand", "level": 0}, "cantrip", 3, null],
        "equipment": [["nested", ["deep"]], {"qty": 2.0}],
        "features": [{"name": "Nimble Escape", "uses": {"per": "turn", "max": -1}}],
    });
    let mut actor = create_custom(
        &body,
        campaign,
        ActorId::new(unique("actor")),
        &UserId::new("gm"),
        1_700_000_000_000,
    )
    .expect("a valid custom actor");
    actor.compendium_ref = Some("dnd5e:monsters:goblin".to_owned());
    actor
}

/// Campaigns: create, read, duplicate refused, membership added, re-roled and removed,
/// `campaigns_of` by owner and member in creation order.
pub async fn campaigns_and_membership(store: &dyn CampaignStore) {
    let (gm, alice, bob, stranger) = (unique_user(), unique_user(), unique_user(), unique_user());
    let id = unique_campaign();
    let first = campaign(&id, &gm, 1_000);
    store.create_campaign(&first).await.expect("create");
    match store.create_campaign(&first).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.campaign(&id).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(
        store.campaign(&unique_campaign()).await.expect("read"),
        None
    );

    let c = store
        .put_member(&id, &alice, MemberRole::Player)
        .await
        .expect("put member")
        .expect("campaign exists");
    assert!(c.is_member(&alice) && !c.is_gm(&alice));
    assert!(c.is_gm(&gm) && c.is_member(&gm));
    assert!(!c.is_member(&stranger));
    let c = store
        .put_member(&id, &alice, MemberRole::Gm)
        .await
        .expect("put member")
        .expect("campaign exists");
    assert!(c.is_gm(&alice), "the role is updated");
    assert_eq!(c.members.len(), 1, "updating a role does not add a member");
    let c = store
        .put_member(&id, &bob, MemberRole::Player)
        .await
        .expect("put member")
        .expect("campaign exists");
    let member = |user: &UserId, role| Member {
        user_id: user.clone(),
        role,
    };
    assert_eq!(
        c.members,
        vec![
            member(&alice, MemberRole::Gm),
            member(&bob, MemberRole::Player)
        ]
    );
    assert_eq!(store.campaign(&id).await.expect("read"), Some(c.clone()));
    assert_eq!(
        store
            .put_member(&unique_campaign(), &alice, MemberRole::Player)
            .await
            .expect("put member of an unknown campaign"),
        None
    );

    let second_id = unique_campaign();
    let second = campaign(&second_id, &alice, 2_000);
    store.create_campaign(&second).await.expect("create second");
    let ids = |cs: Vec<Campaign>| cs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.campaigns_of(&alice).await.expect("of alice")),
        vec![id.clone(), second_id.clone()],
        "member of the first, owner of the second, in creation order"
    );
    assert_eq!(
        ids(store.campaigns_of(&gm).await.expect("of gm")),
        vec![id.clone()]
    );
    assert!(
        store
            .campaigns_of(&stranger)
            .await
            .expect("of stranger")
            .is_empty()
    );

    assert!(store.remove_member(&id, &alice).await.expect("remove"));
    assert!(
        !store
            .remove_member(&id, &alice)
            .await
            .expect("remove again")
    );
    assert!(
        !store
            .remove_member(&unique_campaign(), &bob)
            .await
            .expect("remove from unknown campaign")
    );
    let c = store.campaign(&id).await.expect("read").expect("exists");
    assert_eq!(c.members, vec![member(&bob, MemberRole::Player)]);
    assert!(!c.is_member(&alice));
    assert_eq!(
        ids(store.campaigns_of(&alice).await.expect("of alice")),
        vec![second_id]
    );
}

/// Actors: stored and read back exactly (open-map extras, arrays, `compendiumRef`), duplicate
/// refused, scoped by campaign, listed by name then id, replaced and deleted.
pub async fn actors_round_trip_exactly(store: &dyn CampaignStore) {
    let campaign_id = unique_campaign();
    let actor = awkward_actor(&campaign_id, "Grikk");
    store.create_actor(&actor).await.expect("create");
    match store.create_actor(&actor).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let back = store
        .actor(&campaign_id, &actor.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(back, actor);
    assert_eq!(back.to_value(), actor.to_value(), "same JSON document");
    assert_eq!(back.attributes.extra["xp"], json!(u64::MAX));
    assert!(back.attributes.hp.extra["ratio"].is_f64());
    assert_eq!(
        store
            .actor(&unique_campaign(), &actor.id)
            .await
            .expect("read"),
        None,
        "actors are scoped by campaign"
    );

    let mut same_id_elsewhere = actor.clone();
    same_id_elsewhere.campaign_id = unique_campaign();
    store
        .create_actor(&same_id_elsewhere)
        .await
        .expect("the same actor id in another campaign is another actor");

    let zed = awkward_actor(&campaign_id, "Zed");
    let mut alpha_1 = awkward_actor(&campaign_id, "Alpha");
    let mut alpha_2 = awkward_actor(&campaign_id, "Alpha");
    alpha_1.id = ActorId::new(format!("a-{}", uuid::Uuid::new_v4()));
    alpha_2.id = ActorId::new(format!("b-{}", uuid::Uuid::new_v4()));
    for a in [&zed, &alpha_2, &alpha_1] {
        store.create_actor(a).await.expect("create");
    }
    let names: Vec<(String, ActorId)> = store
        .actors(&campaign_id)
        .await
        .expect("list")
        .into_iter()
        .map(|a| (a.name, a.id))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Alpha".to_owned(), alpha_1.id.clone()),
            ("Alpha".to_owned(), alpha_2.id.clone()),
            ("Grikk".to_owned(), actor.id.clone()),
            ("Zed".to_owned(), zed.id.clone()),
        ]
    );

    let mut changed = actor.clone();
    changed.name = "Grikk the Bold".to_owned();
    changed.attributes.hp.value = 3;
    changed
        .attributes
        .extra
        .insert("added".to_owned(), json!({"x": [1.25]}));
    changed.spells.clear();
    changed.updated_at += 5;
    assert!(store.update_actor(&changed).await.expect("update"));
    assert_eq!(
        store.actor(&campaign_id, &actor.id).await.expect("read"),
        Some(changed)
    );
    let mut ghost = actor.clone();
    ghost.id = ActorId::new(unique("ghost"));
    assert!(!store.update_actor(&ghost).await.expect("update unknown"));
    assert_eq!(
        store.actor(&campaign_id, &ghost.id).await.expect("read"),
        None
    );

    assert!(
        store
            .delete_actor(&campaign_id, &actor.id)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_actor(&campaign_id, &actor.id)
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.actor(&campaign_id, &actor.id).await.expect("read"),
        None
    );
    assert!(
        store
            .actor(&same_id_elsewhere.campaign_id, &actor.id)
            .await
            .expect("read")
            .is_some(),
        "deleting in one campaign leaves the other"
    );
}

/// A compendium entry of `system`.
pub fn entry(system: &str, category: &str, slug: &str, name: &str, data: Value) -> CompendiumEntry {
    CompendiumEntry {
        reference: format!("{system}:{category}:{slug}"),
        system: system.to_owned(),
        category: category.to_owned(),
        name: name.to_owned(),
        data,
    }
}

fn unique_system() -> String {
    format!("ct{}", uuid::Uuid::new_v4().simple())
}

fn query(system: &str) -> CompendiumQuery {
    CompendiumQuery {
        system: Some(system.to_owned()),
        limit: 100,
        ..CompendiumQuery::default()
    }
}

async fn refs(store: &dyn CampaignStore, q: &CompendiumQuery) -> Vec<String> {
    let page = store.search_compendium(q).await.expect("search");
    assert_eq!(page.next_cursor, None, "one page expected for {q:?}");
    page.items.into_iter().map(|e| e.reference).collect()
}

/// Compendium: entries read back exactly, re-put replaces, search by case-insensitive name
/// substring (regex metacharacters taken literally), category and system, ordered by reference.
pub async fn compendium_lookup_and_search(store: &dyn CampaignStore) {
    let system = unique_system();
    let other_system = unique_system();
    let goblin = entry(
        &system,
        "monsters",
        "goblin",
        "Goblin",
        json!({"attributes": {"hp": {"value": 7, "max": 7}, "ac": 15, "speed": 30, "cr": 0.25,
               "xp": u64::MAX, "$odd.key": [1.0, null]}}),
    );
    let boss = entry(
        &system,
        "monsters",
        "goblin-boss",
        "Goblin Boss (Elite)",
        json!({}),
    );
    let hob = entry(&system, "monsters", "hobgoblin", "HOBGOBLIN", json!(null));
    let fireball = entry(
        &system,
        "spells",
        "fireball",
        "Fireball",
        json!({"level": 3}),
    );
    let dot = entry(&system, "equipment", "dot", "Mr. Dot", json!([1, 2]));
    let foreign = entry(&other_system, "monsters", "goblin", "Goblin", json!({}));
    store
        .put_compendium(&[
            goblin.clone(),
            boss.clone(),
            hob.clone(),
            fireball.clone(),
            dot.clone(),
            foreign.clone(),
        ])
        .await
        .expect("put");

    assert_eq!(
        store
            .compendium_entry(&goblin.reference)
            .await
            .expect("get"),
        Some(goblin.clone())
    );
    assert_eq!(
        store
            .compendium_entry(&format!("{system}:monsters:nothing"))
            .await
            .expect("get"),
        None
    );

    let q = |f: &dyn Fn(&mut CompendiumQuery)| {
        let mut q = query(&system);
        f(&mut q);
        q
    };
    assert_eq!(
        refs(store, &q(&|_| {})).await,
        vec![
            dot.reference.clone(),
            goblin.reference.clone(),
            boss.reference.clone(),
            hob.reference.clone(),
            fireball.reference.clone(),
        ],
        "everything of the system, by reference"
    );
    assert_eq!(
        refs(store, &q(&|q| q.q = Some("gOBlin".into()))).await,
        vec![
            goblin.reference.clone(),
            boss.reference.clone(),
            hob.reference.clone()
        ],
        "case-insensitive substring"
    );
    assert_eq!(
        refs(store, &q(&|q| q.q = Some("boss (elite".into()))).await,
        vec![boss.reference.clone()],
        "an unbalanced parenthesis is literal"
    );
    assert_eq!(
        refs(store, &q(&|q| q.q = Some(".".into()))).await,
        vec![dot.reference.clone()],
        "a dot is literal"
    );
    assert!(
        refs(store, &q(&|q| q.q = Some("gob.*".into())))
            .await
            .is_empty(),
        "no pattern matching"
    );
    assert_eq!(
        refs(store, &q(&|q| q.category = Some("spells".into()))).await,
        vec![fireball.reference.clone()]
    );
    assert_eq!(
        refs(
            store,
            &q(&|q| {
                q.category = Some("monsters".into());
                q.q = Some("HOB".into());
            })
        )
        .await,
        vec![hob.reference.clone()]
    );
    assert_eq!(
        refs(store, &query(&other_system)).await,
        vec![foreign.reference.clone()],
        "system filter"
    );

    let renamed = CompendiumEntry {
        name: "Goblin Sneak".into(),
        data: json!({"changed": true}),
        ..goblin.clone()
    };
    store
        .put_compendium(std::slice::from_ref(&renamed))
        .await
        .expect("re-put");
    assert_eq!(
        store
            .compendium_entry(&goblin.reference)
            .await
            .expect("get"),
        Some(renamed)
    );
    assert_eq!(
        refs(store, &q(&|q| q.q = Some("sneak".into()))).await,
        vec![goblin.reference.clone()]
    );
}

/// Compendium paging: 25 entries with limit 10 give 10, 10 and 5, each cursor being the last
/// reference of its page and the last page having none; limits are clamped to 1..=100.
pub async fn compendium_pages_by_cursor(store: &dyn CampaignStore) {
    let system = unique_system();
    let entries: Vec<CompendiumEntry> = (0..25)
        .map(|i| {
            entry(
                &system,
                "items",
                &format!("item-{i:02}"),
                &format!("Item {i}"),
                json!({"i": i}),
            )
        })
        .collect();
    store.put_compendium(&entries).await.expect("put");
    let mut q = CompendiumQuery {
        limit: 10,
        ..query(&system)
    };
    let mut pages = Vec::new();
    loop {
        let page = store.search_compendium(&q).await.expect("search");
        pages.push(page.items.clone());
        if let Some(cursor) = &page.next_cursor {
            assert_eq!(
                Some(cursor),
                page.items.last().map(|e| &e.reference),
                "the cursor is the page's last reference"
            );
        }
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(pages.concat(), entries, "every entry once, in order");

    let one = store
        .search_compendium(&CompendiumQuery {
            limit: 0,
            ..query(&system)
        })
        .await
        .expect("search");
    assert_eq!(one.items, entries[..1], "limit 0 is clamped to 1");
    assert_eq!(one.next_cursor, Some(entries[0].reference.clone()));
    let all = store
        .search_compendium(&CompendiumQuery {
            limit: 1_000,
            ..query(&system)
        })
        .await
        .expect("search");
    assert_eq!(all.items, entries, "limit 1000 is clamped to 100");
    assert_eq!(all.next_cursor, None);
    let exact = store
        .search_compendium(&CompendiumQuery {
            limit: 5,
            cursor: Some(entries[19].reference.clone()),
            ..query(&system)
        })
        .await
        .expect("search");
    assert_eq!(exact.items, entries[20..]);
    assert_eq!(exact.next_cursor, None, "a full last page has no cursor");
}

/// Game sessions: create, duplicate refused, read, listed newest first (ties by id, newest
/// first), updated (status, name, `archivedThrough` raised).
pub async fn sessions_newest_first_and_updated(store: &dyn CampaignStore) {
    let campaign_id = unique_campaign();
    let sid = |tag: &str| SessionId::new(format!("{tag}-{}", uuid::Uuid::new_v4()));
    let oldest = session(&sid("a"), &campaign_id, 1_000);
    let middle_a = session(&sid("a"), &campaign_id, 2_000);
    let middle_b = session(&sid("b"), &campaign_id, 2_000);
    let newest = session(&sid("a"), &campaign_id, 3_000);
    let elsewhere = session(&sid("a"), &unique_campaign(), 4_000);
    for s in [&middle_a, &oldest, &newest, &elsewhere, &middle_b] {
        store.create_session(s).await.expect("create");
    }
    match store.create_session(&oldest).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.session(&oldest.id).await.expect("read"),
        Some(oldest.clone())
    );
    assert_eq!(store.session(&sid("none")).await.expect("read"), None);
    assert_eq!(
        store.sessions(&campaign_id).await.expect("list"),
        vec![newest.clone(), middle_b, middle_a, oldest.clone()]
    );
    assert!(
        store
            .sessions(&unique_campaign())
            .await
            .expect("list")
            .is_empty()
    );

    let ended = GameSession {
        name: "Finale".into(),
        status: SessionStatus::Ended,
        archived_through: 42,
        ..oldest.clone()
    };
    assert!(store.update_session(&ended).await.expect("update"));
    assert_eq!(
        store.session(&oldest.id).await.expect("read"),
        Some(ended.clone())
    );
    let raised = GameSession {
        archived_through: 50,
        ..ended
    };
    assert!(store.update_session(&raised).await.expect("update"));
    assert_eq!(store.session(&oldest.id).await.expect("read"), Some(raised));
    assert!(
        !store
            .update_session(&session(&sid("none"), &campaign_id, 1))
            .await
            .expect("update unknown")
    );
    assert_eq!(
        store.sessions(&campaign_id).await.expect("list").len(),
        4,
        "an update of an unknown session creates nothing"
    );
}

/// For a campaign store and an archive that share storage (MongoDB's `sessions` documents):
/// the archive's `archivedThrough` is visible on the session, a session update carrying an
/// older value does not lower it, and progress recorded before the session document existed
/// is kept when the session is created (and the half-made document stays invisible until then).
pub async fn archive_progress_survives_session_writes(
    campaigns: &dyn CampaignStore,
    archive: &dyn EventArchive,
) {
    let campaign_id = unique_campaign();
    let s = session(&SessionId::new(unique("session")), &campaign_id, 1_000);
    campaigns.create_session(&s).await.expect("create");
    let ids: Vec<EventId> = (0..3).map(|_| unique_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        archive
            .insert(&event(&s.id, i as u64 + 1, id))
            .await
            .expect("insert");
    }
    assert_eq!(
        archive
            .archived_through(&s.id)
            .await
            .expect("through")
            .get(),
        3
    );
    let stored = campaigns
        .session(&s.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        stored.archived_through, 3,
        "the archive's progress is on the session"
    );

    let stale = GameSession {
        status: SessionStatus::Ended,
        ..s.clone()
    };
    assert_eq!(stale.archived_through, 0);
    assert!(campaigns.update_session(&stale).await.expect("update"));
    let stored = campaigns
        .session(&s.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.status, SessionStatus::Ended, "the update applied");
    assert_eq!(
        stored.archived_through, 3,
        "but did not lower archivedThrough"
    );
    assert_eq!(
        archive
            .archived_through(&s.id)
            .await
            .expect("through")
            .get(),
        3
    );

    let early = session(&SessionId::new(unique("session")), &campaign_id, 2_000);
    for seq in 1..=2 {
        archive
            .insert(&event(&early.id, seq, &unique_id()))
            .await
            .expect("insert");
    }
    assert_eq!(
        archive
            .archived_through(&early.id)
            .await
            .expect("through")
            .get(),
        2
    );
    assert_eq!(
        campaigns.session(&early.id).await.expect("read"),
        None,
        "progress alone is not a session"
    );
    assert_eq!(
        campaigns.sessions(&campaign_id).await.expect("list"),
        vec![stored.clone()]
    );
    assert!(
        !campaigns.update_session(&early).await.expect("update"),
        "progress alone cannot be updated as a session"
    );
    campaigns
        .create_session(&early)
        .await
        .expect("create after progress");
    let created = campaigns
        .session(&early.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        created,
        GameSession {
            archived_through: 2,
            ..early.clone()
        }
    );
    match campaigns.create_session(&early).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        campaigns.sessions(&campaign_id).await.expect("list"),
        vec![created, stored]
    );
}

/// Member changes racing from two writers (two clients of one store, or one adapter used
/// concurrently) are all kept: no read-modify-write loses another writer's change.
pub async fn concurrent_member_changes_are_all_kept(a: &dyn CampaignStore, b: &dyn CampaignStore) {
    let id = unique_campaign();
    a.create_campaign(&campaign(&id, &unique_user(), 1))
        .await
        .expect("create");
    let users: Vec<UserId> = (0..12).map(|_| unique_user()).collect();
    let puts = users.iter().enumerate().map(|(i, user)| {
        let store = if i % 2 == 0 { a } else { b };
        store.put_member(&id, user, MemberRole::Player)
    });
    for result in futures::future::join_all(puts).await {
        assert!(result.expect("put member").is_some());
    }
    let c = a.campaign(&id).await.expect("read").expect("exists");
    assert_eq!(c.members.len(), users.len(), "every added member is kept");
    assert!(users.iter().all(|u| c.is_member(u)));

    let removals = users.iter().take(6).enumerate().map(|(i, user)| {
        let store = if i % 2 == 0 { b } else { a };
        store.remove_member(&id, user)
    });
    let roles = users.iter().skip(6).enumerate().map(|(i, user)| {
        let store = if i % 2 == 0 { a } else { b };
        store.put_member(&id, user, MemberRole::Gm)
    });
    let (removed, updated) = futures::join!(
        futures::future::join_all(removals),
        futures::future::join_all(roles)
    );
    assert!(removed.into_iter().all(|r| r.expect("remove")));
    assert!(updated.into_iter().all(|r| r.expect("put").is_some()));
    let c = b.campaign(&id).await.expect("read").expect("exists");
    let expected: Vec<Member> = users[6..]
        .iter()
        .map(|u| Member {
            user_id: u.clone(),
            role: MemberRole::Gm,
        })
        .collect();
    let mut got = c.members.clone();
    got.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    let mut want = expected;
    want.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    assert_eq!(got, want, "removals and role changes all applied");
}
