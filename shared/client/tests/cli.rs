//! The real `dlab` binary against a local gateway started in this test process: on memory
//! stores always, and on the real servers (Redis, MongoDB, moto) when they are available
//! (`DLAB_TEST_SERVERS=1` makes them required).
//!
//! The gateway is the library's `start_with`, with `admin` as its one administrator (the
//! compendium batch route is for administrators only) and an empty compendium, so the import
//! is the binary's own work. The SRD monsters come from the package of `DLAB_SRD_PACKAGE`,
//! written to a JSON file that `dlab compendium import --source` posts in batches; without the
//! package (and without `DLAB_TEST_SERVERS=1`) the project's built-in templates stand in.

use std::path::Path;
use std::process::Command;

use dlab_client::cli::exit;
use dlab_core::srd::SrdCategory;
use dlab_service::config::Admins;
use dlab_tests::e2e::Backend;
use dlab_tests::srd_cases;
use local_gateway::app::{Running, start_with};
use local_gateway::gateway::Limits;
use serde_json::Value;

/// What one run of `dlab` gave.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts success and parses stdout as JSON.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "dlab failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts the exit code and that stderr says `needle`.
    fn failed(&self, code: u8, needle: &str) {
        assert_eq!(
            self.code,
            i32::from(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.stderr
        );
        assert!(self.stdout.is_empty(), "nothing on stdout: {}", self.stdout);
    }
}

/// Runs `dlab` with `--url url`, `--token token` when given, and `args`, outside the async
/// runtime (the gateway answers on it meanwhile). The environment's `DLAB_*` variables are
/// removed so only the arguments count.
async fn dlab(url: &str, token: Option<&str>, args: &[&str]) -> Ran {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlab"));
    command.arg("--url").arg(url);
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    command.args(args);
    for var in [
        "DLAB_URL",
        "DLAB_TOKEN",
        "DLAB_SRD_PACKAGE",
        "DLAB_LOCAL_GATEWAY",
    ] {
        command.env_remove(var);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("dlab runs");
    Ran {
        code: output.status.code().expect("dlab exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// A gateway on `backend` with `admin` as its administrator and an empty compendium.
async fn gateway(backend: Backend) -> Running {
    start_with(backend.options(Limits::default()), |mut deps| {
        deps.settings.admins = Admins::parse("admin");
        deps
    })
    .await
    .unwrap_or_else(|e| panic!("the gateway on {backend:?} did not start: {e:?}"))
}

/// The monster templates to import and the ref to play with: the SRD monsters and the goblin,
/// or the built-in templates and their bandit scout.
fn monsters(dir: &Path) -> (Option<std::path::PathBuf>, &'static str, &'static str) {
    match srd_cases::package() {
        Some(package) => {
            let entries = package
                .entries(SrdCategory::Monsters)
                .expect("the package's monsters");
            assert_eq!(entries.len(), srd_cases::MONSTERS);
            let path = dir.join("monsters.json");
            std::fs::write(&path, serde_json::to_vec(&entries).unwrap()).unwrap();
            (Some(path), srd_cases::GOBLIN, "goblin")
        }
        None => (None, "dnd5e:monsters:dlab-bandit-scout", "bandit"),
    }
}

async fn scenario(backend: Backend) {
    if !backend.available() {
        return;
    }
    let running = gateway(backend).await;
    let url = running.http_url();
    let url = url.as_str();
    let dir = tempfile::tempdir().unwrap();

    // Tokens: plain output is the token alone, --json names the user.
    let gm = dlab(url, None, &["token", "--user", "gm"]).await;
    assert_eq!(gm.code, 0, "{}", gm.stderr);
    let gm = gm.stdout.trim().to_owned();
    assert!(gm.split('.').count() == 3, "a JWT: {gm}");
    let token_of = |user: &'static str| async move {
        let v = dlab(url, None, &["token", "--user", user, "--json"])
            .await
            .json();
        assert_eq!(v["userId"], user);
        v["token"].as_str().unwrap().to_owned()
    };
    let admin = token_of("admin").await;
    let alice = token_of("alice").await;
    let bob = token_of("bob").await;

    // The compendium: built-in templates, then the monsters (several batches under 1 MiB).
    let builtin = dlab(
        url,
        Some(&admin),
        &["compendium", "import", "--builtin", "--json"],
    )
    .await
    .json();
    let builtin_count = dlab_core::srd::builtin_templates().len() as u64;
    assert_eq!(builtin["written"], builtin_count);
    dlab(url, Some(&gm), &["compendium", "import", "--builtin"])
        .await
        .failed(exit::FORBIDDEN, "forbidden");
    let (source, monster, word) = monsters(dir.path());
    if let Some(source) = &source {
        let imported = dlab(
            url,
            Some(&admin),
            &[
                "compendium",
                "import",
                "--source",
                source.to_str().unwrap(),
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(imported["written"], srd_cases::MONSTERS as u64);
        assert!(imported["batches"].as_u64().unwrap() >= 1, "{imported}");
    }
    let found = dlab(
        url,
        Some(&alice),
        &["compendium", "search", word, "--type", "monsters", "--json"],
    )
    .await
    .json();
    let refs: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ref"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&monster), "{refs:?}");
    assert!(found["attribution"].as_str().is_some_and(|a| !a.is_empty()));
    let shown = dlab(url, Some(&alice), &["compendium", "show", monster]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains(monster) && shown.stdout.contains("AC "),
        "{}",
        shown.stdout
    );

    // A campaign with two players.
    let campaign = dlab(
        url,
        Some(&gm),
        &["campaign", "create", "Goblin Arrows", "--json"],
    )
    .await
    .json();
    assert_eq!(campaign["gmUserId"], "gm");
    let campaign = campaign["id"].as_str().unwrap().to_owned();
    for player in ["alice", "bob"] {
        dlab(
            url,
            Some(&gm),
            &[
                "member", "add", &campaign, player, "--role", "player", "--json",
            ],
        )
        .await
        .json();
    }
    let listed = dlab(url, Some(&bob), &["campaign", "list", "--json"])
        .await
        .json();
    let members = &listed.as_array().unwrap()[0]["members"];
    assert_eq!(listed[0]["id"], campaign.as_str());
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
    let plain = dlab(url, Some(&bob), &["campaign", "list"]).await;
    assert!(plain.stdout.contains("alice (player)") && plain.stdout.contains("bob (player)"));

    // Actors: one named copy, then three by the bulk route.
    let one = dlab(
        url,
        Some(&gm),
        &[
            "actor",
            "add",
            &campaign,
            "--from",
            monster,
            "--name",
            "Goblin Scout #1",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(one[0]["name"], "Goblin Scout #1");
    assert_eq!(one[0]["compendiumRef"], monster);
    let hp_max = one[0]["attributes"]["hp"]["max"].clone();
    assert!(hp_max.as_i64().is_some_and(|hp| hp > 0), "{}", one[0]);
    let actor = one[0]["id"].as_str().unwrap().to_owned();
    let bulk = dlab(
        url,
        Some(&alice),
        &[
            "actor",
            "add",
            &campaign,
            "--from",
            monster,
            "--count",
            "3",
            "--pattern",
            "Raider {n}",
            "--json",
        ],
    )
    .await
    .json();
    let names: Vec<&str> = bulk
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Raider 1", "Raider 2", "Raider 3"]);
    let actors = dlab(url, Some(&bob), &["actor", "list", &campaign, "--json"])
        .await
        .json();
    assert_eq!(actors.as_array().unwrap().len(), 4);

    // A session with the scout in it.
    let session = dlab(
        url,
        Some(&gm),
        &["session", "create", &campaign, "Session 1", "--json"],
    )
    .await
    .json();
    assert_eq!(session["name"], "Session 1");
    let session = session["id"].as_str().unwrap().to_owned();
    let added = dlab(
        url,
        Some(&gm),
        &[
            "session",
            "add-actor",
            &session,
            &actor,
            "--instance",
            "scout1",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(added["instanceId"], "scout1");
    let state = dlab(url, Some(&alice), &["session", "show", &session, "--json"])
        .await
        .json();
    assert_eq!(
        state["activeActors"]["scout1"]["actor"]["attributes"]["hp"]["max"],
        hp_max
    );
    let sessions = dlab(url, Some(&bob), &["session", "list", &campaign, "--json"])
        .await
        .json();
    assert_eq!(sessions[0]["id"], session.as_str());

    // The log: one event, and nothing from sequence 2 on.
    let events = dlab(url, Some(&bob), &["replay", &session, "--json"])
        .await
        .json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "core:session:actor_added");
    assert_eq!(events[0]["sequence"], 1);
    let none = dlab(
        url,
        Some(&bob),
        &["replay", &session, "--from", "2", "--json"],
    )
    .await
    .json();
    assert_eq!(none, Value::Array(vec![]));
    let text = dlab(url, Some(&bob), &["replay", &session]).await;
    assert!(
        text.stdout.starts_with("#1  gm  core:session:actor_added"),
        "{}",
        text.stdout
    );

    // Conflicts are the GM's.
    let conflicts = dlab(url, Some(&gm), &["conflicts", "list", &session, "--json"])
        .await
        .json();
    assert_eq!(conflicts, Value::Array(vec![]));
    dlab(url, Some(&alice), &["conflicts", "list", &session])
        .await
        .failed(exit::FORBIDDEN, "forbidden");

    // At the table: two players attack the scout with server dice; both see the same HP.
    for (raider, instance) in [(&bulk[0], "raider1"), (&bulk[1], "raider2")] {
        let id = raider["id"].as_str().unwrap();
        dlab(
            url,
            Some(&gm),
            &[
                "session",
                "add-actor",
                &session,
                id,
                "--instance",
                instance,
                "--json",
            ],
        )
        .await
        .json();
    }
    for (token, attacker) in [(&alice, "raider1"), (&bob, "raider2")] {
        let attack = dlab(
            url,
            Some(token),
            &["attack", &session, attacker, "scout1", "--json"],
        )
        .await
        .json();
        let p = &attack["payload"];
        assert_eq!(attack["type"], "plugin:dnd5e:attack");
        assert_eq!(p["attacker"]["instanceId"], attacker);
        let roll = &p["attackRoll"];
        assert!(roll["rollEventId"].is_string(), "a server roll: {roll}");
        assert_eq!(
            p["hit"].as_bool().unwrap(),
            roll["natural"] != 1
                && (roll["natural"] == 20
                    || roll["total"].as_i64().unwrap() >= p["targetAc"].as_i64().unwrap()),
            "{p}"
        );
        if p["hit"] == true {
            assert!(p["damageRoll"]["rollEventId"].is_string());
            let before = p["hpBefore"].as_i64().unwrap();
            let damage = p["damage"].as_i64().unwrap();
            assert_eq!(p["hpAfter"].as_i64().unwrap(), (before - damage).max(0));
        }
    }
    let server = dlab(url, Some(&gm), &["session", "show", &session, "--json"])
        .await
        .json();
    let hp_of = |state: &Value| -> Value {
        let scout = &state["activeActors"]["scout1"];
        scout["overrides"]["attributes.hp.value"]["value"]
            .clone()
            .as_i64()
            .map_or_else(
                || scout["actor"]["attributes"]["hp"]["value"].clone(),
                Value::from,
            )
    };
    let hp = hp_of(&server);
    for token in [&alice, &bob] {
        let view = dlab(url, Some(token), &["join", &session, "--once", "--json"])
            .await
            .json();
        let scout = view["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["instanceId"] == "scout1")
            .unwrap()
            .clone();
        assert_eq!(scout["hp"], hp, "{view}");
        assert_eq!(scout["hpMax"], hp_max);
        assert_eq!(view["connection"]["live"], true);
        let attacks: Vec<&Value> = view["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "plugin:dnd5e:attack")
            .collect();
        assert_eq!(attacks.len(), 2, "{view}");
        for attack in attacks {
            assert_eq!(attack["verdict"], "verified", "{attack}");
        }
    }
    let text = dlab(url, Some(&alice), &["join", &session, "--once"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("scout1") && text.stdout.contains("[verified]"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains('\x1b'),
        "no control codes when not a terminal"
    );

    // The other table commands.
    let rolled = dlab(url, Some(&alice), &["roll", &session, "2d6+3", "--json"])
        .await
        .json();
    let dice: i64 = rolled["dice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .sum();
    assert_eq!(rolled["total"].as_i64().unwrap(), dice + 3);
    let healed = dlab(
        url,
        Some(&gm),
        &["heal", &session, "scout1", "100", "--json"],
    )
    .await
    .json();
    assert_eq!(
        healed["payload"]["hpAfter"], hp_max,
        "healing stops at the maximum"
    );
    let hit = dlab(
        url,
        Some(&gm),
        &[
            "damage", &session, "scout1", "2", "--type", "fire", "--json",
        ],
    )
    .await
    .json();
    assert_eq!(
        hit["payload"]["hpAfter"].as_i64().unwrap(),
        hp_max.as_i64().unwrap() - 2
    );
    dlab(
        url,
        Some(&bob),
        &["condition", &session, "scout1", "add", "prone", "--json"],
    )
    .await
    .json();
    let started = dlab(url, Some(&gm), &["initiative", &session, "--json"])
        .await
        .json();
    assert_eq!(started["type"], "plugin:dnd5e:initiative");
    let ended_turn = dlab(url, Some(&gm), &["end-turn", &session]).await;
    assert_eq!(ended_turn.code, 0, "{}", ended_turn.stderr);
    assert!(ended_turn.stdout.contains("now: "), "{}", ended_turn.stdout);
    let view = dlab(url, Some(&bob), &["join", &session, "--once", "--json"])
        .await
        .json();
    let scout = view["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["instanceId"] == "scout1")
        .unwrap()
        .clone();
    assert_eq!(scout["conditions"], serde_json::json!(["prone"]));
    assert_eq!(
        scout["hp"].as_i64().unwrap(),
        hp_max.as_i64().unwrap() - 2,
        "{view}"
    );
    assert_eq!(view["encounter"]["active"], true);
    assert_eq!(view["encounter"]["order"].as_array().unwrap().len(), 3);
    assert_eq!(view["encounter"]["order"][1]["current"], true, "{view}");
    dlab(
        url,
        Some(&alice),
        &["attack", &session, "raider1", "nobody"],
    )
    .await
    .failed(exit::NOT_FOUND, "nobody is not an actor in this session");
    dlab(url, Some(&alice), &["join", "no-such-session", "--once"])
        .await
        .failed(exit::NOT_FOUND, "404");

    // Errors: unreachable, bad token, no token, unknown session and actor, ended session.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    };
    dlab(&closed, Some(&gm), &["campaign", "list"])
        .await
        .failed(exit::UNREACHABLE, "cannot reach the server at");
    dlab(url, Some("not-a-token"), &["campaign", "list"])
        .await
        .failed(exit::UNAUTHORIZED, "unauthorized");
    dlab(url, None, &["campaign", "list"])
        .await
        .failed(exit::USAGE, "no token");
    dlab(url, Some(&gm), &["session", "show", "no-such-session"])
        .await
        .failed(exit::NOT_FOUND, "not found");
    dlab(
        url,
        Some(&gm),
        &["session", "add-actor", &session, "no-such-actor"],
    )
    .await
    .failed(exit::NOT_FOUND, "not found");
    let ended = dlab(url, Some(&gm), &["session", "end", &session, "--json"])
        .await
        .json();
    assert_eq!(ended["status"], "ended");
    dlab(url, Some(&gm), &["session", "add-actor", &session, &actor])
        .await
        .failed(exit::CONFLICT, "409");

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_table_on_memory() {
    scenario(Backend::MEMORY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_table_on_the_real_servers() {
    scenario(Backend::REAL).await;
}

/// The SRD package goes to `local-gateway import-compendium`: a stand-in binary records the
/// arguments it was given and prints the gateway's summary line.
#[cfg(unix)]
#[tokio::test]
async fn the_srd_package_is_delegated_to_the_gateway_binary() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let fake = dir.path().join("fake-gateway");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n\
             echo 'import-compendium: 334 monsters, 319 spells, 237 equipment; 890 written, 0 unchanged'\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = dlab(
        "http://127.0.0.1:9",
        Some("tok"),
        &[
            "compendium",
            "import",
            "--source",
            "pkg.whl",
            "--gateway-bin",
            fake.to_str().unwrap(),
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(ran["written"], 890);
    assert_eq!(ran["via"], "local-gateway");
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "import-compendium",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "tok",
            "--source",
            "pkg.whl"
        ]
    );
    let missing = dlab(
        "http://127.0.0.1:9",
        Some("tok"),
        &[
            "compendium",
            "import",
            "--source",
            "pkg.whl",
            "--gateway-bin",
            "/nonexistent/gw",
        ],
    )
    .await;
    missing.failed(exit::FAILURE, "--gateway-bin");
}
