//! The SRD 5.1 import checked against any [`CampaignStore`]: counts, idempotency, attribution,
//! the mapping of the goblin, and the searches a GM makes over the imported compendium.
//!
//! The package is the wheel named by [`SRD_PACKAGE_VAR`] (`infra/services.sh install` fetches
//! it into `.dlab/srd`, `infra/services.sh env` exports the variable). Under the README's test
//! command (`DLAB_TEST_SERVERS=1`) a missing package fails the test; otherwise it skips.
//!
//! A new adapter's import test is one line: `srd_cases::import_and_check(&store).await`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dlab_core::actor::CompendiumEntry;
use dlab_store::CampaignStore;
use dlab_store::model::CompendiumQuery;
use dlab_store::srd::{ImportReport, SrdPackage, import};
use serde_json::json;

use crate::http_cases::HttpWorld;
use crate::servers::{TEST_SERVERS_VAR, servers_required};

/// The variable naming the SRD package (the wheel, or its 2014 `.sqlite3`).
pub const SRD_PACKAGE_VAR: &str = "DLAB_SRD_PACKAGE";

/// Entries per category in the pinned package.
pub const MONSTERS: usize = 334;
/// Spells.
pub const SPELLS: usize = 319;
/// Equipment.
pub const EQUIPMENT: usize = 237;

/// The goblin's reference.
pub const GOBLIN: &str = "dnd5e:monsters:goblin";

/// Opens the package of [`SRD_PACKAGE_VAR`]; `None` (after saying why) when it is missing and
/// not required; panics with how to fetch it when `DLAB_TEST_SERVERS=1`.
pub fn package() -> Option<SrdPackage> {
    let path = std::env::var_os(SRD_PACKAGE_VAR)
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let Some(path) = path else {
        let how = format!(
            "the SRD package is missing: set {SRD_PACKAGE_VAR} to the wheel; \
             `bash infra/services.sh install` downloads it into .dlab/srd and \
             `eval \"$(bash infra/services.sh env)\"` exports {SRD_PACKAGE_VAR}"
        );
        if servers_required() {
            panic!("{TEST_SERVERS_VAR}=1 but {how}");
        }
        eprintln!("skipping: {how}");
        return None;
    };
    Some(
        SrdPackage::open(&path)
            .unwrap_or_else(|e| panic!("open {}: {}", path.display(), dlab_store::Chain(&e))),
    )
}

/// Imports the package twice into `store`: the first run writes all 890 templates, the second
/// none; the report carries the package's attribution sentence.
pub async fn imported(package: &SrdPackage, store: &dyn CampaignStore) -> ImportReport {
    let mut calls = 0;
    let first = import(package, store, 100, |_| calls += 1)
        .await
        .unwrap_or_else(|e| panic!("import: {}", dlab_store::Chain(&e)));
    assert_eq!(
        (first.monsters, first.spells, first.equipment),
        (MONSTERS, SPELLS, EQUIPMENT)
    );
    let total = MONSTERS + SPELLS + EQUIPMENT;
    assert_eq!((first.written, first.unchanged), (total, 0));
    assert!(calls >= total / 100, "progress after each batch ({calls})");
    assert_eq!(first.attribution, package.metadata().attribution);
    assert!(
        first.attribution.contains("System Reference Document 5.1")
            && first
                .attribution
                .contains("Creative Commons Attribution 4.0"),
        "{}",
        first.attribution
    );
    let again = import(package, store, 100, |_| {}).await.unwrap();
    assert_eq!(
        (again.written, again.unchanged),
        (0, total),
        "a second import writes nothing"
    );
    first
}

/// Searching `gob` finds the goblin.
pub async fn check_name_search(store: &dyn CampaignStore) {
    let page = store
        .search_compendium(&CompendiumQuery {
            q: Some("gob".into()),
            limit: 100,
            ..CompendiumQuery::default()
        })
        .await
        .unwrap();
    assert!(
        page.items.iter().any(|e| e.reference == GOBLIN),
        "{:?}",
        page.items.iter().map(|e| &e.reference).collect::<Vec<_>>()
    );
}

/// The goblin's stat block: hp 7, ac 15, speed 30, and a Scimitar attack (+4, 1d6+2 slashing).
pub async fn check_goblin(store: &dyn CampaignStore) {
    let goblin: CompendiumEntry = store
        .compendium_entry(GOBLIN)
        .await
        .unwrap()
        .expect("the goblin is imported");
    assert_eq!(goblin.name, "Goblin");
    let attributes = &goblin.data["attributes"];
    assert_eq!(attributes["hp"]["value"], 7, "{}", goblin.data);
    assert_eq!(attributes["ac"], 15, "{}", goblin.data);
    assert_eq!(attributes["speed"], 30, "{}", goblin.data);
    let scimitar = goblin.data["features"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == "Scimitar"))
        .unwrap_or_else(|| panic!("a Scimitar feature in {}", goblin.data));
    assert_eq!(scimitar["attackBonus"], 4, "{scimitar}");
    assert_eq!(
        scimitar["damage"],
        json!([{"dice": "1d6+2", "type": "slashing"}]),
        "{scimitar}"
    );
}

/// Every page of a search, following the store's cursor.
async fn search_all(store: &dyn CampaignStore, query: CompendiumQuery) -> Vec<CompendiumEntry> {
    let mut query = CompendiumQuery {
        limit: 100,
        ..query
    };
    let mut all = Vec::new();
    loop {
        let page = store.search_compendium(&query).await.unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return all,
        }
    }
}

/// The challenge-rating and level filters over the SRD, in the store: `cr_max` 1/4 finds the
/// goblin and nothing above 1/4; level 3 finds fireball and only level-3 spells. Each search
/// takes well under a second.
pub async fn check_filters(store: &dyn CampaignStore) {
    let started = Instant::now();
    let weak = search_all(
        store,
        CompendiumQuery {
            category: Some("monsters".into()),
            cr_max: Some(0.25),
            ..CompendiumQuery::default()
        },
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        weak.iter().any(|e| e.reference == GOBLIN),
        "crMax 1/4 finds the goblin among {} monsters",
        weak.len()
    );
    assert!(
        weak.iter()
            .all(|e| e.challenge_rating().is_some_and(|cr| cr <= 0.25))
    );
    assert!(weak.len() < MONSTERS, "the filter leaves monsters out");
    let third = search_all(
        store,
        CompendiumQuery {
            category: Some("spells".into()),
            level: Some(3),
            ..CompendiumQuery::default()
        },
    )
    .await;
    assert!(
        third.iter().any(|e| e.reference == "dnd5e:spells:fireball"),
        "level 3 finds fireball among {} spells",
        third.len()
    );
    assert!(third.iter().all(|e| e.spell_level() == Some(3)));
    assert!(
        elapsed < Duration::from_secs(2),
        "a filtered search over the SRD took {elapsed:?}"
    );
}

/// The same filters through `GET /compendium` (`crMax=1/4`, `level=3`), pages followed.
pub async fn check_http_filters(w: &HttpWorld) {
    let user = &w.user("reader");
    let all = |query: &'static str| async move {
        let mut refs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/compendium?{query}&limit=100&cursor={c}"),
                None => format!("/compendium?{query}&limit=100"),
            };
            let body = w.get(&path, user).await.ok(200).clone();
            refs.extend(
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["ref"].as_str().unwrap().to_owned()),
            );
            match body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return refs,
            }
        }
    };
    let weak = all("type=monsters&crMax=1/4").await;
    assert!(weak.iter().any(|r| r == GOBLIN), "{weak:?}");
    assert!(!weak.iter().any(|r| r == "dnd5e:monsters:adult-red-dragon"));
    let third = all("type=spells&level=3").await;
    assert!(
        third.iter().any(|r| r == "dnd5e:spells:fireball"),
        "{third:?}"
    );
    assert!(!third.iter().any(|r| r == "dnd5e:spells:magic-missile"));
}

/// Everything above against one store: the one-liner of a new adapter's import test.
pub async fn import_and_check(store: &dyn CampaignStore) {
    let Some(package) = package() else { return };
    imported(&package, store).await;
    check_name_search(store).await;
    check_goblin(store).await;
    check_filters(store).await;
}

/// "Goblin Scout #1" from the imported goblin over HTTP: a full stat block (hp, ac, speed,
/// abilities, skills, challenge rating, the Scimitar attack the 5e plugin rolls from) with the
/// back-link, stored as answered.
pub async fn check_actor_from_srd_goblin(w: &HttpWorld) {
    // Not `seed()`: it puts a test goblin of its own over the imported one.
    let gm = &w.user("gm");
    let campaign = w
        .post("/campaigns", gm, serde_json::json!({"name": "SRD table"}))
        .await
        .ok(201)["id"]
        .as_str()
        .expect("campaign id")
        .to_owned();
    let created = w
        .post(
            &format!("/campaigns/{campaign}/actors"),
            gm,
            serde_json::json!({"compendiumRef": GOBLIN, "name": "Goblin Scout #1"}),
        )
        .await;
    let actor = created.ok(201).clone();
    assert_eq!(actor["name"], "Goblin Scout #1");
    assert_eq!(actor["compendiumRef"], GOBLIN);
    assert_eq!(actor["type"], "monster");
    let attributes = &actor["attributes"];
    assert_eq!(attributes["hp"]["value"], 7);
    assert_eq!(attributes["hp"]["max"], 7);
    assert_eq!(attributes["ac"], 15);
    assert_eq!(attributes["speed"], 30);
    assert_eq!(attributes["abilities"]["dex"], 14);
    assert_eq!(attributes["skills"]["stealth"], 6);
    assert_eq!(attributes["challengeRating"], 0.25);
    let scimitar = actor["features"]
        .as_array()
        .expect("features")
        .iter()
        .find(|f| f["name"] == "Scimitar")
        .expect("the Scimitar action is copied");
    assert_eq!(scimitar["attackBonus"], 4);
    assert_eq!(
        scimitar["damage"],
        serde_json::json!([{"dice": "1d6+2", "type": "slashing"}])
    );
    let id = actor["id"].as_str().expect("id");
    let stored = w
        .get(&format!("/campaigns/{campaign}/actors/{id}"), gm)
        .await;
    assert_eq!(stored.ok(200), &actor, "stored exactly as answered");
}
