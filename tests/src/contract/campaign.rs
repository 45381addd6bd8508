//! Contract of [`CampaignStore`]: campaigns and membership, actors stored exactly, compendium
//! lookup and paged search, game sessions, the paging of every listing (range from a cursor,
//! item count, byte budget) and the per-campaign quotas (held under concurrency).
//!
//! Every body uses its own ids (UUIDs) — for the compendium, which is global, its own `system`
//! — so bodies run in parallel against one real server.

use std::fmt::Debug;

use dlab_core::actor::{Actor, CompendiumEntry, create_custom};
use dlab_core::ids::{ActorId, CampaignId, EventId, SessionId, UserId};
use dlab_store::model::{
    ActorKey, Campaign, CampaignKey, CampaignQuotas, CompendiumQuery, GameSession, ListKey, Listed,
    MAX_PAGE_ITEMS, Member, MemberRole, Page, PageRequest, Quota, QuotaError, SessionKey,
    SessionStatus, json_size,
};
use dlab_store::{CampaignStore, EventArchive, StoreError};
use futures::future::BoxFuture;
use serde::Serialize;
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

/// Stores a campaign owned by a fresh user (actors and sessions need an existing campaign).
pub async fn existing_campaign(store: &dyn CampaignStore, id: &CampaignId) {
    store
        .create_campaign(&campaign(id, &unique_user(), 1))
        .await
        .expect("create campaign");
}

/// A campaign id no other test uses, stored.
pub async fn new_campaign(store: &dyn CampaignStore) -> CampaignId {
    let id = unique_campaign();
    existing_campaign(store, &id).await;
    id
}

/// Default quotas.
fn quotas() -> CampaignQuotas {
    CampaignQuotas::default()
}

/// Every page of a listing, checking each page against the paging rules: at most `limit`
/// items; never empty while items remain; over `max_bytes` only with a single item; cut
/// exactly before the item that would pass the budget (or at `limit`); `next` is the last
/// item's key while more follow and `None` only on the last page.
pub async fn walk<'s, T, K>(
    fetch: impl Fn(PageRequest<K>) -> BoxFuture<'s, Result<Page<T, K>, StoreError>>,
    limit: usize,
    max_bytes: usize,
) -> Vec<Vec<T>>
where
    T: Serialize + Listed<Key = K> + Clone + Debug,
    K: ListKey + PartialEq + Debug,
{
    let mut pages: Vec<Vec<T>> = Vec::new();
    let mut request = PageRequest {
        after: None,
        limit,
        max_bytes,
    };
    for _ in 0..500 {
        let page = fetch(request.clone()).await.expect("list");
        let bytes: usize = page
            .items
            .iter()
            .map(|i| json_size(i).expect("size"))
            .sum::<usize>()
            + page.items.len().saturating_sub(1);
        assert!(
            page.items.len() <= limit.clamp(1, MAX_PAGE_ITEMS),
            "over limit"
        );
        assert!(
            page.items.len() <= 1 || bytes <= max_bytes,
            "a page of {} items is {bytes} bytes, over {max_bytes}",
            page.items.len()
        );
        if let Some(previous) = pages.last()
            && previous.len() < limit
        {
            let first = page.items.first().expect("a page after a cut has items");
            let previous_bytes: usize = previous
                .iter()
                .map(|i| json_size(i).expect("size"))
                .sum::<usize>()
                + previous.len()
                - 1;
            assert!(
                previous_bytes + 1 + json_size(first).expect("size") > max_bytes,
                "the previous page was cut although its next item fitted"
            );
        }
        match page.next {
            Some(next) => {
                assert!(!page.items.is_empty(), "an empty page with a next cursor");
                assert_eq!(
                    Some(&next),
                    page.items.last().map(Listed::key).as_ref(),
                    "next is the last item's key"
                );
                assert_eq!(K::from_cursor(&next.to_cursor()).expect("cursor"), next);
                pages.push(page.items);
                request = request.after(next);
            }
            None => {
                if !page.items.is_empty() || pages.is_empty() {
                    pages.push(page.items);
                }
                return pages;
            }
        }
    }
    panic!("paging does not end");
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
    let ids = |page: Page<Campaign, CampaignKey>| {
        assert_eq!(page.next, None, "one page");
        page.items.into_iter().map(|c| c.id).collect::<Vec<_>>()
    };
    let mut both = vec![id.clone(), second_id.clone()];
    both.sort();
    let all = PageRequest::first(100);
    assert_eq!(
        ids(store.campaigns_of(&alice, &all).await.expect("of alice")),
        both,
        "member of the first, owner of the second, by id"
    );
    assert_eq!(
        ids(store.campaigns_of(&gm, &all).await.expect("of gm")),
        vec![id.clone()]
    );
    assert!(
        store
            .campaigns_of(&stranger, &all)
            .await
            .expect("of stranger")
            .items
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
        ids(store.campaigns_of(&alice, &all).await.expect("of alice")),
        vec![second_id]
    );
}

/// Actors: stored and read back exactly (open-map extras, arrays, `compendiumRef`), duplicate
/// refused, scoped by campaign, listed by name then id, replaced and deleted.
pub async fn actors_round_trip_exactly(store: &dyn CampaignStore) {
    let campaign_id = new_campaign(store).await;
    let actor = awkward_actor(&campaign_id, "Grikk");
    store.create_actor(&actor, &quotas()).await.expect("create");
    match store.create_actor(&actor, &quotas()).await {
        Err(QuotaError::Store(StoreError::AlreadyExists(_))) => {}
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
    same_id_elsewhere.campaign_id = new_campaign(store).await;
    store
        .create_actor(&same_id_elsewhere, &quotas())
        .await
        .expect("the same actor id in another campaign is another actor");

    let zed = awkward_actor(&campaign_id, "Zed");
    let mut alpha_1 = awkward_actor(&campaign_id, "Alpha");
    let mut alpha_2 = awkward_actor(&campaign_id, "Alpha");
    alpha_1.id = ActorId::new(format!("a-{}", uuid::Uuid::new_v4()));
    alpha_2.id = ActorId::new(format!("b-{}", uuid::Uuid::new_v4()));
    for a in [&zed, &alpha_2, &alpha_1] {
        store.create_actor(a, &quotas()).await.expect("create");
    }
    let listed = store
        .actors(&campaign_id, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(listed.next, None);
    let names: Vec<(String, ActorId)> = listed.items.into_iter().map(|a| (a.name, a.id)).collect();
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
    assert!(
        store
            .update_actor(&changed, &quotas())
            .await
            .expect("update")
    );
    assert_eq!(
        store.actor(&campaign_id, &actor.id).await.expect("read"),
        Some(changed)
    );
    let mut ghost = actor.clone();
    ghost.id = ActorId::new(unique("ghost"));
    assert!(
        !store
            .update_actor(&ghost, &quotas())
            .await
            .expect("update unknown")
    );
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

/// Compendium filters: challenge rating as an inclusive range over monsters
/// (`data.attributes.challengeRating`, fractions included), spell level as an exact match; an
/// entry without the number is left out by its filter, and filters combine with name search.
pub async fn compendium_filters_by_challenge_rating_and_level(store: &dyn CampaignStore) {
    let system = unique_system();
    let monster = |slug: &str, name: &str, cr: Value| {
        entry(
            &system,
            "monsters",
            slug,
            name,
            json!({"attributes": {"hp": {"value": 7, "max": 7}, "ac": 12, "speed": 30,
                   "challengeRating": cr}}),
        )
    };
    let rat = monster("rat", "Rat", json!(0));
    let kobold = monster("kobold", "Kobold", json!(0.125));
    let goblin = monster("goblin", "Goblin", json!(0.25));
    let bugbear = monster("bugbear", "Bugbear", json!(1));
    let dragon = monster("red-dragon", "Adult Red Dragon", json!(17));
    let odd = monster("odd", "Odd Goblin", json!("1/4"));
    let spell = |slug: &str, name: &str, level: i64| {
        entry(&system, "spells", slug, name, json!({"level": level}))
    };
    let light = spell("light", "Light", 0);
    let fireball = spell("fireball", "Fireball", 3);
    let counter = spell("counterspell", "Counterspell", 3);
    // A level outside `spells` is not a spell level.
    let item = entry(
        &system,
        "equipment",
        "scroll",
        "Scroll",
        json!({"level": 3}),
    );
    store
        .put_compendium(&[
            rat.clone(),
            kobold.clone(),
            goblin.clone(),
            bugbear.clone(),
            dragon.clone(),
            odd.clone(),
            light.clone(),
            fireball.clone(),
            counter.clone(),
            item.clone(),
        ])
        .await
        .expect("put");
    let q = |f: &dyn Fn(&mut CompendiumQuery)| {
        let mut q = query(&system);
        f(&mut q);
        q
    };
    assert_eq!(
        refs(store, &q(&|q| q.cr_max = Some(0.25))).await,
        vec![
            goblin.reference.clone(),
            kobold.reference.clone(),
            rat.reference.clone()
        ],
        "CR at most 1/4, inclusive; the string CR is not a number"
    );
    assert_eq!(
        refs(
            store,
            &q(&|q| {
                q.cr_min = Some(0.125);
                q.cr_max = Some(1.0);
            })
        )
        .await,
        vec![
            bugbear.reference.clone(),
            goblin.reference.clone(),
            kobold.reference.clone()
        ]
    );
    assert_eq!(
        refs(store, &q(&|q| q.cr_min = Some(5.0))).await,
        vec![dragon.reference.clone()]
    );
    assert_eq!(
        refs(
            store,
            &q(&|q| {
                q.cr_max = Some(1.0);
                q.q = Some("gob".into());
            })
        )
        .await,
        vec![goblin.reference.clone()],
        "filters combine with the name search"
    );
    assert_eq!(
        refs(store, &q(&|q| q.level = Some(3))).await,
        vec![counter.reference.clone(), fireball.reference.clone()],
        "level 3 spells only, not the item with a level"
    );
    assert_eq!(
        refs(store, &q(&|q| q.level = Some(0))).await,
        vec![light.reference.clone()]
    );
    assert_eq!(
        refs(store, &q(&|q| q.level = Some(9))).await,
        Vec::<String>::new()
    );
    // Filters page like any search: one entry per page, every page filtered.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .search_compendium(&q(&|q| {
                q.cr_max = Some(1.0);
                q.limit = 1;
                q.cursor = cursor.clone();
            }))
            .await
            .expect("search");
        seen.extend(page.items.into_iter().map(|e| e.reference));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(seen.len() <= 10, "paging must end");
    }
    assert_eq!(
        seen,
        vec![
            bugbear.reference.clone(),
            goblin.reference.clone(),
            kobold.reference.clone(),
            rat.reference.clone()
        ]
    );
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
    let campaign_id = new_campaign(store).await;
    let sid = |tag: &str| SessionId::new(format!("{tag}-{}", uuid::Uuid::new_v4()));
    let oldest = session(&sid("a"), &campaign_id, 1_000);
    let middle_a = session(&sid("a"), &campaign_id, 2_000);
    let middle_b = session(&sid("b"), &campaign_id, 2_000);
    let newest = session(&sid("a"), &campaign_id, 3_000);
    let elsewhere = session(&sid("a"), &new_campaign(store).await, 4_000);
    for s in [&middle_a, &oldest, &newest, &elsewhere, &middle_b] {
        store.create_session(s, &quotas()).await.expect("create");
    }
    match store.create_session(&oldest, &quotas()).await {
        Err(QuotaError::Store(StoreError::AlreadyExists(_))) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.session(&oldest.id).await.expect("read"),
        Some(oldest.clone())
    );
    assert_eq!(store.session(&sid("none")).await.expect("read"), None);
    let all = PageRequest::first(100);
    assert_eq!(
        store.sessions(&campaign_id, &all).await.expect("list"),
        Page {
            items: vec![newest.clone(), middle_b, middle_a, oldest.clone()],
            next: None
        }
    );
    assert!(
        store
            .sessions(&unique_campaign(), &all)
            .await
            .expect("list")
            .items
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
        store
            .sessions(&campaign_id, &all)
            .await
            .expect("list")
            .items
            .len(),
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
    let campaign_id = new_campaign(campaigns).await;
    let s = session(&SessionId::new(unique("session")), &campaign_id, 1_000);
    campaigns
        .create_session(&s, &quotas())
        .await
        .expect("create");
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
    let all = PageRequest::first(100);
    assert_eq!(
        campaigns
            .sessions(&campaign_id, &all)
            .await
            .expect("list")
            .items,
        vec![stored.clone()]
    );
    assert!(
        !campaigns.update_session(&early).await.expect("update"),
        "progress alone cannot be updated as a session"
    );
    campaigns
        .create_session(&early, &quotas())
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
    match campaigns.create_session(&early, &quotas()).await {
        Err(QuotaError::Store(StoreError::AlreadyExists(_))) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        campaigns
            .sessions(&campaign_id, &all)
            .await
            .expect("list")
            .items,
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

/// The JSON size of a page of items, separators included (what a page's budget counts).
fn page_bytes<T: Serialize>(items: &[T]) -> usize {
    items
        .iter()
        .map(|i| json_size(i).expect("size"))
        .sum::<usize>()
        + items.len().saturating_sub(1)
}

/// Campaigns of a user page by id: every campaign once, in id order, under every mix of item
/// limit and byte budget (a budget below one campaign still gives one per page); campaigns of
/// other users never show; a cursor past the end gives an empty, complete page.
pub async fn campaigns_page_by_id(store: &dyn CampaignStore) {
    let user = unique_user();
    let other = unique_user();
    let mut expected = Vec::new();
    for i in 0..7 {
        let id = unique_campaign();
        let mut c = campaign(&id, if i % 2 == 0 { &user } else { &other }, 10 - i);
        if i % 2 == 1 {
            c.members.push(Member {
                user_id: user.clone(),
                role: MemberRole::Player,
            });
        }
        store.create_campaign(&c).await.expect("create");
        if i % 2 == 1 {
            store
                .put_member(&id, &user, MemberRole::Player)
                .await
                .expect("member")
                .expect("exists");
        }
        expected.push(store.campaign(&id).await.expect("read").expect("exists"));
    }
    store
        .create_campaign(&campaign(&unique_campaign(), &other, 5))
        .await
        .expect("create");
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    let one = page_bytes(&expected[..1]);
    for (limit, max_bytes) in [
        (3, 1 << 20),
        (100, 2 * one + 1),
        (100, 1),
        (1, 1 << 20),
        (7, 1 << 20),
    ] {
        let pages = walk(
            |r| {
                let user = &user;
                Box::pin(async move { store.campaigns_of(user, &r).await })
            },
            limit,
            max_bytes,
        )
        .await;
        assert_eq!(pages.concat(), expected, "limit {limit}, {max_bytes} bytes");
        if limit == 3 {
            assert_eq!(
                pages.iter().map(Vec::len).collect::<Vec<_>>(),
                vec![3, 3, 1]
            );
        }
        if limit == 7 {
            assert_eq!(pages.len(), 1, "a full last page has no cursor");
        }
        if max_bytes == 1 {
            assert!(
                pages.iter().all(|p| p.len() == 1),
                "one item per page at least"
            );
        }
    }
    let past = PageRequest::first(10).after(CampaignKey {
        id: CampaignId::new("\u{10FFFF}"),
    });
    assert_eq!(
        store.campaigns_of(&user, &past).await.expect("list"),
        Page {
            items: vec![],
            next: None
        }
    );
}

/// Actors page by name then id: ties of names across page boundaries are neither lost nor
/// repeated, and the byte budget cuts before the actor that would pass it.
pub async fn actors_page_by_name_then_id(store: &dyn CampaignStore) {
    let campaign_id = new_campaign(store).await;
    let mut expected = Vec::new();
    for (i, name) in [
        "Orc", "Goblin", "Orc", "Goblin", "Orc", "Bat", "Orc", "Goblin",
    ]
    .iter()
    .enumerate()
    {
        let mut actor = awkward_actor(&campaign_id, name);
        actor.id = ActorId::new(format!("{i}-{}", uuid::Uuid::new_v4()));
        if i == 3 {
            actor
                .attributes
                .extra
                .insert("lore".into(), json!("x".repeat(3000)));
        }
        store.create_actor(&actor, &quotas()).await.expect("create");
        expected.push(actor);
    }
    let elsewhere = awkward_actor(&new_campaign(store).await, "Aardvark");
    store
        .create_actor(&elsewhere, &quotas())
        .await
        .expect("create");
    expected.sort_by_key(Listed::key);
    let typical = page_bytes(&expected[..1]);
    for (limit, max_bytes) in [
        (2, 1 << 20),
        (3, 1 << 20),
        (100, 2 * typical + 1),
        (100, 100),
    ] {
        let pages = walk(
            |r| {
                let campaign_id = &campaign_id;
                Box::pin(async move { store.actors(campaign_id, &r).await })
            },
            limit,
            max_bytes,
        )
        .await;
        assert_eq!(pages.concat(), expected, "limit {limit}, {max_bytes} bytes");
    }
    let after_goblins = PageRequest::first(100).after(ActorKey {
        name: "Goblin".into(),
        id: ActorId::new("\u{10FFFF}"),
    });
    let orcs = store
        .actors(&campaign_id, &after_goblins)
        .await
        .expect("list");
    assert!(orcs.items.iter().all(|a| a.name == "Orc"));
    assert_eq!(orcs.items.len(), 4);
    assert_eq!(orcs.next, None);
}

/// Sessions page newest first: ties of `createdAt` across page boundaries are neither lost nor
/// repeated, and the byte budget cuts pages.
pub async fn sessions_page_newest_first(store: &dyn CampaignStore) {
    let campaign_id = new_campaign(store).await;
    let mut expected = Vec::new();
    for (i, created_at) in [5_000, 7_000, 5_000, 5_000, 9_000, 7_000, 1_000]
        .iter()
        .enumerate()
    {
        let s = session(
            &SessionId::new(format!("{i}-{}", uuid::Uuid::new_v4())),
            &campaign_id,
            *created_at,
        );
        store.create_session(&s, &quotas()).await.expect("create");
        expected.push(s);
    }
    store
        .create_session(
            &session(
                &SessionId::new(unique("elsewhere")),
                &new_campaign(store).await,
                6_000,
            ),
            &quotas(),
        )
        .await
        .expect("create");
    expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let one = page_bytes(&expected[..1]);
    for (limit, max_bytes) in [(2, 1 << 20), (3, 1 << 20), (100, 2 * one + 1), (100, 10)] {
        let pages = walk(
            |r| {
                let campaign_id = &campaign_id;
                Box::pin(async move { store.sessions(campaign_id, &r).await })
            },
            limit,
            max_bytes,
        )
        .await;
        assert_eq!(pages.concat(), expected, "limit {limit}, {max_bytes} bytes");
    }
    let older = store
        .sessions(
            &campaign_id,
            &PageRequest::first(100).after(SessionKey {
                created_at: 5_000,
                id: SessionId::new(""),
            }),
        )
        .await
        .expect("list");
    assert_eq!(
        older.items.iter().map(|s| s.created_at).collect::<Vec<_>>(),
        vec![1_000],
        "after the oldest tie of 5000 comes 1000"
    );
}

/// The compendium search is cut by its byte budget as well as by its limit.
pub async fn compendium_pages_by_bytes(store: &dyn CampaignStore) {
    let system = unique_system();
    let entries: Vec<CompendiumEntry> = (0..9)
        .map(|i| {
            entry(
                &system,
                "items",
                &format!("item-{i:02}"),
                &format!("Item {i}"),
                json!({"blob": "y".repeat(if i == 4 { 5000 } else { 200 })}),
            )
        })
        .collect();
    store.put_compendium(&entries).await.expect("put");
    let budget = page_bytes(&entries[..3]);
    let mut q = CompendiumQuery {
        limit: 100,
        max_bytes: budget,
        ..query(&system)
    };
    let mut pages = Vec::new();
    loop {
        let page = store.search_compendium(&q).await.expect("search");
        assert!(!page.items.is_empty());
        assert!(page.items.len() == 1 || page_bytes(&page.items) <= budget);
        pages.push(page.items.clone());
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
        assert!(pages.len() < 20, "paging does not end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 1, 1, 3, 1],
        "cut before the big entry, which stands alone"
    );
    assert_eq!(pages.concat(), entries);
}

fn exceeded(result: Result<(), QuotaError>, campaign: &CampaignId, quota: Quota, limit: u64) {
    match result {
        Err(QuotaError::Exceeded {
            campaign: c,
            quota: q,
            limit: l,
        }) => assert_eq!((&c, q, l), (campaign, quota, limit)),
        other => panic!("expected the {quota} quota of {limit}, got {other:?}"),
    }
}

/// The actor count quota holds under concurrency: with one slot left, of many concurrent
/// creates (from two clients) exactly one succeeds; a delete gives its slot back, and so does
/// a create whose insert failed (a taken id); a campaign that does not exist takes no actor.
pub async fn actor_count_quota_holds_under_concurrency(
    a: &dyn CampaignStore,
    b: &dyn CampaignStore,
) {
    let quotas = CampaignQuotas {
        max_actors: 3,
        ..CampaignQuotas::default()
    };
    let campaign_id = new_campaign(a).await;
    let mut kept = Vec::new();
    for name in ["One", "Two"] {
        let actor = awkward_actor(&campaign_id, name);
        a.create_actor(&actor, &quotas).await.expect("create");
        kept.push(actor);
    }
    let racers: Vec<Actor> = (0..12)
        .map(|i| awkward_actor(&campaign_id, &format!("Racer {i}")))
        .collect();
    let creates = racers.iter().enumerate().map(|(i, actor)| {
        let store = if i % 2 == 0 { a } else { b };
        store.create_actor(actor, &quotas)
    });
    let results = futures::future::join_all(creates).await;
    let won: Vec<&Actor> = results
        .iter()
        .zip(&racers)
        .filter(|(r, _)| r.is_ok())
        .map(|(_, actor)| actor)
        .collect();
    assert_eq!(won.len(), 1, "exactly one of the racers gets the last slot");
    for r in results.into_iter().filter(Result::is_err) {
        exceeded(r, &campaign_id, Quota::Actors, 3);
    }
    let listed = a
        .actors(&campaign_id, &PageRequest::first(100))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 3, "nothing over the quota is stored");

    assert!(
        b.delete_actor(&campaign_id, &kept[0].id)
            .await
            .expect("delete")
    );
    let duplicate = won[0].clone();
    match a.create_actor(&duplicate, &quotas).await {
        Err(QuotaError::Store(StoreError::AlreadyExists(_))) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let late = awkward_actor(&campaign_id, "Late");
    b.create_actor(&late, &quotas)
        .await
        .expect("the slot given back by the delete (and kept by the failed insert) is free");
    exceeded(
        a.create_actor(&awkward_actor(&campaign_id, "Too many"), &quotas)
            .await,
        &campaign_id,
        Quota::Actors,
        3,
    );

    let nowhere = unique_campaign();
    match a
        .create_actor(&awkward_actor(&nowhere, "Lost"), &quotas)
        .await
    {
        Err(QuotaError::NoCampaign(c)) => assert_eq!(c, nowhere),
        other => panic!("expected NoCampaign, got {other:?}"),
    }
    assert_eq!(
        a.actors(&nowhere, &PageRequest::first(10))
            .await
            .expect("list")
            .items,
        vec![]
    );
}

/// The session count quota holds under concurrency the same way; a failed insert (a taken id)
/// gives its slot back; a campaign that does not exist takes no session.
pub async fn session_count_quota_holds_under_concurrency(
    a: &dyn CampaignStore,
    b: &dyn CampaignStore,
) {
    let quotas = CampaignQuotas {
        max_sessions: 2,
        ..CampaignQuotas::default()
    };
    let campaign_id = new_campaign(a).await;
    let first = session(&SessionId::new(unique("s")), &campaign_id, 1);
    a.create_session(&first, &quotas).await.expect("create");
    match b.create_session(&first, &quotas).await {
        Err(QuotaError::Store(StoreError::AlreadyExists(_))) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let racers: Vec<GameSession> = (0..12)
        .map(|i| session(&SessionId::new(unique("race")), &campaign_id, 10 + i))
        .collect();
    let creates = racers.iter().enumerate().map(|(i, s)| {
        let store = if i % 2 == 0 { a } else { b };
        store.create_session(s, &quotas)
    });
    let results = futures::future::join_all(creates).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one racer gets the slot the duplicate gave back"
    );
    for r in results.into_iter().filter(Result::is_err) {
        exceeded(r, &campaign_id, Quota::Sessions, 2);
    }
    assert_eq!(
        b.sessions(&campaign_id, &PageRequest::first(100))
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    let nowhere = unique_campaign();
    match a
        .create_session(&session(&SessionId::new(unique("s")), &nowhere, 1), &quotas)
        .await
    {
        Err(QuotaError::NoCampaign(c)) => assert_eq!(c, nowhere),
        other => panic!("expected NoCampaign, got {other:?}"),
    }
}

/// An actor whose stored JSON is over the size quota is refused on create and on update, and
/// nothing changes; one at the quota exactly is stored.
pub async fn actor_size_quota(store: &dyn CampaignStore) {
    let campaign_id = new_campaign(store).await;
    let actor = awkward_actor(&campaign_id, "Exact");
    let size = json_size(&actor).expect("size");
    let exact = CampaignQuotas {
        max_actor_bytes: size,
        ..CampaignQuotas::default()
    };
    let below = CampaignQuotas {
        max_actor_bytes: size - 1,
        ..CampaignQuotas::default()
    };
    match store.create_actor(&actor, &below).await {
        Err(QuotaError::ActorTooLarge {
            actor: id,
            size: s,
            limit,
        }) => assert_eq!((id, s, limit), (actor.id.clone(), size, size - 1)),
        other => panic!("expected ActorTooLarge, got {other:?}"),
    }
    assert_eq!(
        store.actor(&campaign_id, &actor.id).await.expect("read"),
        None
    );
    store
        .create_actor(&actor, &exact)
        .await
        .expect("at the quota");
    let mut grown = actor.clone();
    grown.name = "Exact!".into();
    match store.update_actor(&grown, &exact).await {
        Err(QuotaError::ActorTooLarge { .. }) => {}
        other => panic!("expected ActorTooLarge, got {other:?}"),
    }
    assert_eq!(
        store.actor(&campaign_id, &actor.id).await.expect("read"),
        Some(actor.clone()),
        "a refused update changes nothing"
    );
    let mut shrunk = actor.clone();
    shrunk.name = "Ex".into();
    assert!(store.update_actor(&shrunk, &exact).await.expect("update"));
}

/// `create_actors` is all or nothing: a batch that fits is stored whole (read back exactly); a
/// batch one over the quota, one with an id already taken, one with an actor over the size
/// quota, or one mixing campaigns stores none of its actors and takes no slot; an empty batch
/// stores nothing; a campaign that does not exist takes none.
pub async fn create_actors_is_all_or_nothing(store: &dyn CampaignStore) {
    let quotas = CampaignQuotas {
        max_actors: 5,
        max_actor_bytes: 4096,
        ..CampaignQuotas::default()
    };
    let campaign = new_campaign(store).await;
    let names = |store_names: Vec<Actor>| {
        let mut n: Vec<String> = store_names.into_iter().map(|a| a.name).collect();
        n.sort();
        n
    };
    let listed = || async {
        store
            .actors(&campaign, &PageRequest::first(100))
            .await
            .expect("list")
            .items
    };
    let batch = |prefix: &str, n: usize| -> Vec<Actor> {
        (1..=n)
            .map(|i| awkward_actor(&campaign, &format!("{prefix} {i}")))
            .collect()
    };
    store
        .create_actors(&[], &quotas)
        .await
        .expect("an empty batch");
    let first = batch("Goblin", 3);
    store
        .create_actors(&first, &quotas)
        .await
        .expect("three fit");
    for actor in &first {
        assert_eq!(
            store
                .actor(&campaign, &actor.id)
                .await
                .expect("read")
                .as_ref(),
            Some(actor)
        );
    }
    // Three more would make six: none goes in, and the two free slots stay free.
    exceeded(
        store.create_actors(&batch("Orc", 3), &quotas).await,
        &campaign,
        Quota::Actors,
        5,
    );
    assert_eq!(names(listed().await), ["Goblin 1", "Goblin 2", "Goblin 3"]);
    // A taken id part-way: the others of the batch are not kept.
    let mut taken = batch("Kobold", 2);
    taken[1].id = first[0].id.clone();
    assert!(matches!(
        store.create_actors(&taken, &quotas).await,
        Err(QuotaError::Store(StoreError::AlreadyExists(_)))
    ));
    // One actor over the size quota.
    let mut large = batch("Ogre", 2);
    large[1].features = vec![serde_json::json!({"text": "x".repeat(8192)})];
    assert!(matches!(
        store.create_actors(&large, &quotas).await,
        Err(QuotaError::ActorTooLarge { .. })
    ));
    // Mixed campaigns.
    let other = new_campaign(store).await;
    let mut mixed = batch("Wolf", 2);
    mixed[1].campaign_id = other.clone();
    assert!(matches!(
        store.create_actors(&mixed, &quotas).await,
        Err(QuotaError::OtherCampaign { .. })
    ));
    assert_eq!(
        names(listed().await),
        ["Goblin 1", "Goblin 2", "Goblin 3"],
        "no refused batch left anything behind"
    );
    // The two free slots are still there: exactly two fit.
    store
        .create_actors(&batch("Bat", 2), &quotas)
        .await
        .expect("two fit");
    exceeded(
        store.create_actors(&batch("Rat", 1), &quotas).await,
        &campaign,
        Quota::Actors,
        5,
    );
    let missing = CampaignId::new(format!("missing-{}", uuid::Uuid::new_v4().simple()));
    let orphans: Vec<Actor> = (1..=2)
        .map(|i| awkward_actor(&missing, &format!("Ghost {i}")))
        .collect();
    assert!(matches!(
        store.create_actors(&orphans, &quotas).await,
        Err(QuotaError::NoCampaign(_))
    ));
}
