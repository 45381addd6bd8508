//! `POST /campaigns/{id}/actors/bulk`: encounter building from one template ("Goblin 1" …
//! "Goblin n"), all or nothing, on memory and on the real servers.

use dlab_store::model::CampaignQuotas;
use dlab_tests::http_cases::{HttpWorld, memory_world, real_world};
use serde_json::{Value, json};

async fn actor_names(w: &HttpWorld, campaign: &str, user: &dlab_core::ids::UserId) -> Vec<String> {
    let list = w
        .get(&format!("/campaigns/{campaign}/actors?limit=1000"), user)
        .await;
    let mut names: Vec<String> = list.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn creates_numbered_full_copies_with_the_back_link(w: &HttpWorld) {
    let t = w.seed().await;
    let bulk = format!("/campaigns/{}/actors/bulk", t.campaign);
    let made = w
        .post(
            &bulk,
            &t.people.gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 4,
                   "namePattern": "Goblin {n}", "customizations": {"attributes": {"hp": {"value": 5}}}}),
        )
        .await;
    let items = made.ok(201)["items"].as_array().unwrap().clone();
    let names: Vec<&str> = items.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Goblin 1", "Goblin 2", "Goblin 3", "Goblin 4"]);
    for actor in &items {
        assert_eq!(actor["compendiumRef"], "dnd5e:monsters:goblin");
        assert_eq!(actor["type"], "monster");
        assert_eq!(actor["campaignId"], t.campaign.as_str());
        assert_eq!(actor["attributes"]["hp"], json!({"value": 5, "max": 7}));
        assert_eq!(actor["attributes"]["ac"], 15);
        assert_eq!(actor["attributes"]["skills"]["stealth"], 6);
        assert_eq!(actor["features"][0]["name"], "Nimble Escape");
        // Each one is stored: read back by id, equal to what the bulk answer said.
        let id = actor["id"].as_str().unwrap();
        let stored = w
            .get(
                &format!("/campaigns/{}/actors/{id}", t.campaign),
                &t.people.player,
            )
            .await;
        assert_eq!(stored.ok(200), actor);
    }
    let ids: std::collections::BTreeSet<&str> =
        items.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4, "every copy has its own id");

    // The default pattern is the template's name and the number; any member may build.
    let made = w
        .post(
            &bulk,
            &t.people.player,
            json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 2}),
        )
        .await;
    let names: Vec<Value> = made.ok(201)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, [json!("Goblin 1"), json!("Goblin 2")]);
    assert_eq!(actor_names(w, &t.campaign, &t.people.gm).await.len(), 6);
}

async fn bad_requests_change_nothing(w: &HttpWorld) {
    let t = w.seed().await;
    let bulk = format!("/campaigns/{}/actors/bulk", t.campaign);
    let gm = &t.people.gm;
    let goblin = |extra: Value| {
        let mut body = json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 2});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            goblin(json!({"count": 0})),
            400,
            "invalid_message",
            "count must be between 1 and 100",
        ),
        (
            goblin(json!({"count": 101})),
            400,
            "invalid_message",
            "count must be between 1 and 100",
        ),
        (
            goblin(json!({"count": -1})),
            400,
            "invalid_message",
            "count",
        ),
        (
            goblin(json!({"count": "two"})),
            400,
            "invalid_message",
            "count",
        ),
        (
            goblin(json!({"namePattern": "Goblin"})),
            400,
            "invalid_message",
            "namePattern must contain {n}",
        ),
        (goblin(json!({"namePattern": "{n}"})), 201, "", ""),
        (
            goblin(json!({"namePattern": format!("{}{{n}}", "x".repeat(200))})),
            400,
            "invalid_message",
            "longer than 200",
        ),
        (
            goblin(json!({"color": "red"})),
            400,
            "invalid_message",
            "color",
        ),
        (
            goblin(json!({"customizations": {"id": "mine"}})),
            400,
            "invalid_message",
            "id",
        ),
        (
            goblin(json!({"customizations": {"attributes": {"ac": "high"}}})),
            400,
            "invalid_message",
            "ac",
        ),
        (
            goblin(json!({"compendiumRef": "Not A Ref"})),
            400,
            "invalid_message",
            "Not A Ref",
        ),
        (
            goblin(json!({"compendiumRef": "dnd5e:monsters:nothing-here"})),
            404,
            "not_found",
            "Compendium entry not found: dnd5e:monsters:nothing-here",
        ),
    ];
    let mut created = 0;
    for (body, status, code, needle) in cases {
        let answer = w.post(&bulk, gm, body.clone()).await;
        if status == 201 {
            // "{n}" alone is a valid pattern: names "1", "2".
            answer.ok(201);
            created += 2;
            continue;
        }
        let message = answer.error(status, code);
        assert!(
            message.contains(needle),
            "{body}: message {message:?} should name {needle:?}"
        );
    }
    assert_eq!(
        actor_names(w, &t.campaign, gm).await.len(),
        created,
        "refused bulk creates stored nothing"
    );
    let stranger = w.post(&bulk, &t.people.stranger, goblin(json!({}))).await;
    stranger.error(403, "forbidden");
    let missing = w
        .post(
            "/campaigns/no-such-campaign/actors/bulk",
            gm,
            goblin(json!({})),
        )
        .await;
    missing.error(404, "not_found");
}

async fn the_quota_takes_all_or_none(w: &HttpWorld) {
    let q = w.with_settings(|s| {
        s.quotas = CampaignQuotas {
            max_actors: 5,
            ..CampaignQuotas::default()
        }
    });
    let t = q.seed().await;
    let bulk = format!("/campaigns/{}/actors/bulk", t.campaign);
    let gm = &t.people.gm;
    q.post(
        &bulk,
        gm,
        json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 3}),
    )
    .await
    .ok(201);
    let over = q
        .post(
            &bulk,
            gm,
            json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 3}),
        )
        .await;
    let message = over.error(409, "conflict");
    assert!(message.contains("quota of 5 actors"), "{message}");
    assert_eq!(
        actor_names(&q, &t.campaign, gm).await,
        ["Goblin 1", "Goblin 2", "Goblin 3"],
        "the refused bulk left nothing behind"
    );
    // Its slots were given back: two more fit exactly.
    q.post(
        &bulk,
        gm,
        json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 2}),
    )
    .await
    .ok(201);
    q.post(
        &bulk,
        gm,
        json!({"compendiumRef": "dnd5e:monsters:goblin", "count": 1}),
    )
    .await
    .error(409, "conflict");
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(&super::memory_world()).await;
            })*
        }
        mod real {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(world) = super::real_world().await else { return };
                super::$name(&world).await;
            })*
        }
    };
}

cases!(
    creates_numbered_full_copies_with_the_back_link,
    bad_requests_change_nothing,
    the_quota_takes_all_or_none,
);
