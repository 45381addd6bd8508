//! The bad-input table of the reliability suite (issue 12): malformed and refused WebSocket
//! frames and HTTP requests against the local gateway, each row with the answer PROTOCOL.md
//! gives it.
//!
//! One [`Row`] is a name, an [`Input`] and an [`Expected`] answer. [`bad_input_table`] runs
//! every row through the same three checks, because a refusal is only half the contract:
//! 1. **the answer**: the frame (`error` or `event:error`) and its `code`, with the
//!    `requestId` echoed when the row sent a usable one; or the HTTP status and
//!    `{"error": {"code"}}`;
//! 2. **no state change**: the session's state and events, the other campaign's session, the
//!    campaign, its actors and sessions and every user's campaign list read over HTTP, and the
//!    event log's head, all equal before and after the row;
//! 3. **still usable**: the same socket then submits a valid chat and gets `event:confirmed`;
//!    after an HTTP row the same client makes valid requests.
//!
//! The budgets are the gateway's defaults, so a row may meet `rate_limited` from the many valid
//! submits around it: the runner then waits the `retryAfterMs` the answer names and sends the
//! row again, as a client would. That is never counted as the row's answer (except for the
//! flood row, whose answer it is), and every wait is bounded: no assertion is about timing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::e2e::{
    Backend, Http, Table, User, WsClient, chat, connect_ticket, event, say, setup_table, shared,
    tag,
};

/// How often a row or a usability check is sent again after a `rate_limited` answer.
const RATE_LIMIT_RETRIES: usize = 40;

/// The smallest pause before such a retry (the answer's `retryAfterMs` when larger).
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The frames that answer an action (everything else a socket receives — `presence`,
/// `event:applied` of others — is not an answer).
const ANSWERS: [&str; 8] = [
    "error",
    "event:error",
    "event:confirmed",
    "session:subscribed",
    "session:unsubscribed",
    "events:batch",
    "pong",
    "snapshot:required",
];

/// How an HTTP row authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// `Bearer <the GM's token>`.
    Gm,
    /// `Bearer <the first player's token>`.
    Player,
    /// This exact header value.
    Header(String),
}

/// What a row sends.
#[derive(Debug, Clone)]
pub enum Input {
    /// One text frame on the first player's socket (subscribed to the table's session).
    Ws(String),
    /// `count` copies of a frame at once, on the second player's socket.
    WsFlood {
        /// The frame.
        frame: String,
        /// How many.
        count: usize,
    },
    /// One HTTP request; the body is sent as `application/json`.
    Http {
        /// The method.
        method: Method,
        /// Path and query.
        path: String,
        /// The `Authorization` header.
        auth: Auth,
        /// The raw body.
        body: Option<Vec<u8>>,
    },
}

/// The answer a row must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A frame named `event` (`error` or `event:error`) with `data.code`, echoing
    /// `request_id` when given.
    Ws {
        /// `error` or `event:error`.
        event: &'static str,
        /// The code.
        code: &'static str,
        /// The `requestId` the answer must carry.
        request_id: Option<&'static str>,
    },
    /// Among the flood's answers, at least one `error` with this code and a `retryAfterMs`.
    WsSome {
        /// The code.
        code: &'static str,
    },
    /// An HTTP status with `{"error": {"code"}}`.
    Http {
        /// The status.
        status: u16,
        /// The code.
        code: &'static str,
    },
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What the row tries, for failure messages.
    pub name: String,
    /// What it sends.
    pub input: Input,
    /// What it must get.
    pub expected: Expected,
}

/// `error {code}` without a request id.
fn error(code: &'static str) -> Expected {
    Expected::Ws {
        event: "error",
        code,
        request_id: None,
    }
}

/// `error {code, requestId}`.
fn error_rid(code: &'static str, rid: &'static str) -> Expected {
    Expected::Ws {
        event: "error",
        code,
        request_id: Some(rid),
    }
}

/// `event:error {code, requestId}`.
fn event_error(code: &'static str, rid: &'static str) -> Expected {
    Expected::Ws {
        event: "event:error",
        code,
        request_id: Some(rid),
    }
}

fn http(status: u16, code: &'static str) -> Expected {
    Expected::Http { status, code }
}

/// What the rows address: ids made by the fixture.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The table's session.
    pub session: String,
    /// The table's campaign.
    pub campaign: String,
    /// The table's goblin actor.
    pub actor: String,
    /// The GM's user id.
    pub gm: String,
    /// A campaign of a stranger (neither GM nor player are in it).
    pub other_campaign: String,
    /// A session of that campaign.
    pub other_session: String,
    /// The id of a chat committed in the table's session (payload `{"text": "first"}`).
    pub committed: String,
    /// A fresh connect ticket of the GM (valid for a socket, never for HTTP).
    pub ticket: String,
    /// A user token signed with another secret.
    pub foreign_token: String,
}

/// Every row. Built from the fixture's ids; each input is fresh (new event ids).
pub fn rows(t: &Targets) -> Vec<Row> {
    let s = t.session.as_str();
    let mut rows = Vec::new();
    let mut ws = |name: &str, frame: String, expected: Expected| {
        rows.push(Row {
            name: format!("ws: {name}"),
            input: Input::Ws(frame),
            expected,
        });
    };
    let submit = |e: Value, rid: &str| json!({"action": "submit", "event": e, "requestId": rid});

    // Frames that are not a usable action.
    ws("not JSON", "not json {".into(), error("invalid_message"));
    ws("a JSON array", "[1, 2]".into(), error("invalid_message"));
    ws(
        "a JSON string",
        r#""subscribe""#.into(),
        error("invalid_message"),
    );
    ws("an empty object", "{}".into(), error("invalid_message"));
    ws(
        "action is a number",
        json!({"action": 5, "requestId": "r-num"}).to_string(),
        error_rid("invalid_message", "r-num"),
    );
    ws(
        "unknown action",
        json!({"action": "dance", "requestId": "r-dance"}).to_string(),
        error_rid("unknown_action", "r-dance"),
    );
    ws(
        "requestId over 64 characters",
        json!({"action": "ping", "requestId": "x".repeat(65)}).to_string(),
        error("invalid_message"),
    );
    ws(
        "requestId is an object",
        json!({"action": "ping", "requestId": {"a": 1}}).to_string(),
        error("invalid_message"),
    );
    ws(
        "submit without event",
        json!({"action": "submit", "requestId": "r-noevent"}).to_string(),
        error_rid("invalid_message", "r-noevent"),
    );
    ws(
        "subscribe without sessionId",
        json!({"action": "subscribe", "since": 0, "requestId": "r-nosid"}).to_string(),
        error_rid("invalid_message", "r-nosid"),
    );
    ws(
        "subscribe with a negative since",
        json!({"action": "subscribe", "sessionId": s, "since": -1, "requestId": "r-neg"})
            .to_string(),
        error_rid("invalid_message", "r-neg"),
    );
    ws(
        "subscribe with since = 2^53",
        json!({"action": "subscribe", "sessionId": s, "since": 1u64 << 53, "requestId": "r-big"})
            .to_string(),
        error_rid("invalid_message", "r-big"),
    );
    ws(
        "replay with to below from",
        json!({"action": "replay", "sessionId": s, "from": 5, "to": 2, "requestId": "r-range"})
            .to_string(),
        error_rid("invalid_message", "r-range"),
    );
    ws(
        "ephemeral without payload",
        json!({"action": "ephemeral", "sessionId": s, "type": "cursor", "requestId": "r-eph"})
            .to_string(),
        error_rid("invalid_message", "r-eph"),
    );
    ws(
        "ephemeral with an empty type",
        json!({"action": "ephemeral", "sessionId": s, "type": "", "payload": {},
               "requestId": "r-eph-type"})
        .to_string(),
        error_rid("invalid_message", "r-eph-type"),
    );
    ws(
        "unsubscribe with an empty sessionId",
        json!({"action": "unsubscribe", "sessionId": "", "requestId": "r-unsub"}).to_string(),
        error_rid("invalid_message", "r-unsub"),
    );

    // Envelopes without a usable id: `error {action: submit}`.
    ws(
        "submit an event that is a string",
        submit(json!("hello"), "r-str").to_string(),
        error_rid("invalid_event", "r-str"),
    );
    let mut e = chat(s, "bad id");
    e["id"] = json!("not-a-uuid");
    ws(
        "submit with an id that is not a UUID",
        submit(e, "r-uuid").to_string(),
        error_rid("invalid_event", "r-uuid"),
    );
    let mut e = chat(s, "no id");
    e.as_object_mut().expect("an object").remove("id");
    ws(
        "submit without id",
        submit(e, "r-noid").to_string(),
        error_rid("invalid_event", "r-noid"),
    );

    // Envelopes with a usable id: `event:error`.
    let mut e = chat(s, "x");
    e["type"] = json!("Plugin:Bad Type");
    ws(
        "type with capitals and a space",
        submit(e, "r-type").to_string(),
        event_error("invalid_event", "r-type"),
    );
    ws(
        "type in an unknown namespace",
        submit(event(s, "custom:thing", json!({})), "r-ns").to_string(),
        event_error("invalid_event", "r-ns"),
    );
    ws(
        "type without a name part",
        submit(event(s, "plugin", json!({})), "r-bare").to_string(),
        event_error("invalid_event", "r-bare"),
    );
    ws(
        "type over 128 characters",
        submit(
            event(s, &format!("plugin:{}", "a".repeat(130)), json!({})),
            "r-long",
        )
        .to_string(),
        event_error("invalid_event", "r-long"),
    );
    let mut e = chat(s, "x");
    e.as_object_mut().expect("an object").remove("payload");
    ws(
        "submit without payload",
        submit(e, "r-nopayload").to_string(),
        event_error("invalid_event", "r-nopayload"),
    );
    let mut e = chat(s, "x");
    e["sessionId"] = json!(42);
    ws(
        "sessionId is a number",
        submit(e, "r-sid").to_string(),
        event_error("invalid_event", "r-sid"),
    );
    let mut e = chat(s, "x");
    e["clientTimestamp"] = json!(-5);
    ws(
        "negative clientTimestamp",
        submit(e, "r-ts").to_string(),
        event_error("invalid_event", "r-ts"),
    );
    let mut e = chat(s, "x");
    e["checksum"] = json!("md5:abc");
    ws(
        "malformed checksum",
        submit(e, "r-sumfmt").to_string(),
        event_error("invalid_event", "r-sumfmt"),
    );
    let mut e = chat(s, "hi");
    e["checksum"] = json!(dlab_core::canonical::checksum(&json!({"text": "bye"})));
    ws(
        "checksum of another payload",
        submit(e, "r-sum").to_string(),
        event_error("checksum_mismatch", "r-sum"),
    );
    ws(
        "payload over 24 KiB",
        submit(
            event(s, "core:chat", json!({"blob": "x".repeat(25 * 1024)})),
            "r-big-payload",
        )
        .to_string(),
        event_error("payload_too_large", "r-big-payload"),
    );

    // Trusted dice: a bad formula or roll payload (the server rolls, so it refuses first).
    for (name, payload, rid) in [
        (
            "dice roll of a die with 0 sides",
            json!({"formula": "1d0"}),
            "r-dice-d0",
        ),
        (
            "dice roll of 101 dice",
            json!({"formula": "101d6"}),
            "r-dice-101",
        ),
        (
            "dice roll of a d1001",
            json!({"formula": "1d1001"}),
            "r-dice-sides",
        ),
        (
            "dice roll that is not a formula",
            json!({"formula": "abc"}),
            "r-dice-abc",
        ),
        (
            "dice roll keeping 5 of 4 dice",
            json!({"formula": "4d6kh5"}),
            "r-dice-keep",
        ),
        (
            "dice roll without formula",
            json!({"purpose": "x"}),
            "r-dice-none",
        ),
    ] {
        ws(
            name,
            submit(event(s, "core:dice:roll", payload), rid).to_string(),
            event_error("invalid_event", rid),
        );
    }

    // State-change conventions.
    let cas = |instance: &str, changes: Value| {
        event(
            s,
            "plugin:dnd5e:attack",
            json!({"target": {"instanceId": instance}, "stateChanges": changes}),
        )
    };
    ws(
        "compare-and-set on an instance not in the session",
        submit(
            cas("nobody", json!({"attributes.hp.value": {"to": 1}})),
            "r-nobody",
        )
        .to_string(),
        event_error("invalid_event", "r-nobody"),
    );
    ws(
        "$session path outside encounter and environment",
        submit(
            cas("$session", json!({"secret.flag": {"to": 1}})),
            "r-spath",
        )
        .to_string(),
        event_error("invalid_event", "r-spath"),
    );
    ws(
        "stateChanges is a list",
        submit(cas("goblin1", json!([1, 2])), "r-list").to_string(),
        event_error("invalid_event", "r-list"),
    );
    ws(
        "increment by a fraction",
        submit(
            cas(
                "goblin1",
                json!({"attributes.hp.value": {"op": "inc", "by": 1.5}}),
            ),
            "r-inc",
        )
        .to_string(),
        event_error("invalid_event", "r-inc"),
    );
    let many: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("flags.f{i}"), json!({"to": i})))
        .collect();
    ws(
        "65 paths in one event",
        submit(cas("goblin1", Value::Object(many)), "r-many").to_string(),
        event_error("invalid_event", "r-many"),
    );
    ws(
        "stale compare-and-set",
        submit(
            cas(
                "goblin1",
                json!({"attributes.hp.value": {"from": 14, "to": 6}}),
            ),
            "r-stale",
        )
        .to_string(),
        event_error("conflict", "r-stale"),
    );
    ws(
        "same id as a committed event, other content",
        submit(
            json!({"id": t.committed, "sessionId": s, "type": "core:chat",
                   "payload": {"text": "second"}}),
            "r-dup",
        )
        .to_string(),
        event_error("invalid_event", "r-dup"),
    );

    // Types a player may not send.
    ws(
        "core:gm_override by a player",
        submit(
            event(
                s,
                "core:gm_override",
                json!({"finalState": {"goblin1": {"attributes.hp.value": 1}}}),
            ),
            "r-gm",
        )
        .to_string(),
        event_error("forbidden", "r-gm"),
    );
    ws(
        "core:session:actor_added by a player",
        submit(
            event(
                s,
                "core:session:actor_added",
                json!({"instanceId": "evil", "actorId": "a", "actor": {"name": "Evil"}}),
            ),
            "r-added",
        )
        .to_string(),
        event_error("forbidden", "r-added"),
    );
    ws(
        "core:snapshot by a player",
        submit(event(s, "core:snapshot", json!({})), "r-snap").to_string(),
        event_error("forbidden", "r-snap"),
    );

    // Sessions the socket may not use.
    let other = t.other_session.as_str();
    ws(
        "submit to a session not subscribed",
        submit(chat(other, "sneak"), "r-ns-submit").to_string(),
        event_error("not_subscribed", "r-ns-submit"),
    );
    let nowhere = format!("no-such-{}", tag());
    ws(
        "submit to a session that does not exist",
        submit(chat(&nowhere, "void"), "r-ns-void").to_string(),
        event_error("not_subscribed", "r-ns-void"),
    );
    ws(
        "replay of a session not subscribed",
        json!({"action": "replay", "sessionId": other, "from": 0, "requestId": "r-ns-replay"})
            .to_string(),
        error_rid("not_subscribed", "r-ns-replay"),
    );
    ws(
        "ephemeral to a session not subscribed",
        json!({"action": "ephemeral", "sessionId": other, "type": "cursor", "payload": {},
               "requestId": "r-ns-eph"})
        .to_string(),
        error_rid("not_subscribed", "r-ns-eph"),
    );
    ws(
        "subscribe to a session that does not exist",
        json!({"action": "subscribe", "sessionId": nowhere, "since": 0, "requestId": "r-snf"})
            .to_string(),
        error_rid("session_not_found", "r-snf"),
    );
    ws(
        "subscribe to another campaign's session",
        json!({"action": "subscribe", "sessionId": other, "since": 0, "requestId": "r-fs"})
            .to_string(),
        error_rid("forbidden", "r-fs"),
    );

    // A flood: the user's control budget (20 at once by default) runs out.
    rows.push(Row {
        name: "ws: 60 pings at once".into(),
        input: Input::WsFlood {
            frame: json!({"action": "ping"}).to_string(),
            count: 60,
        },
        expected: Expected::WsSome {
            code: "rate_limited",
        },
    });

    // HTTP.
    let c = t.campaign.as_str();
    let req = |name: &str, method: Method, path: String, auth: Auth, body: Option<&str>| {
        (
            name.to_owned(),
            Input::Http {
                method,
                path,
                auth,
                body: body.map(|b| b.as_bytes().to_vec()),
            },
        )
    };
    let mut http_rows: Vec<((String, Input), Expected)> = vec![
        (
            req(
                "no Authorization",
                Method::GET,
                "/campaigns".into(),
                Auth::None,
                None,
            ),
            http(401, "unauthorized"),
        ),
        (
            req(
                "a garbage bearer token",
                Method::GET,
                "/campaigns".into(),
                Auth::Header("Bearer not.a.jwt".into()),
                None,
            ),
            http(401, "unauthorized"),
        ),
        (
            req(
                "the Basic scheme",
                Method::GET,
                "/campaigns".into(),
                Auth::Header("Basic Z206Z20=".into()),
                None,
            ),
            http(401, "unauthorized"),
        ),
        (
            req(
                "a token signed with another secret",
                Method::POST,
                "/campaigns".into(),
                Auth::Header(format!("Bearer {}", t.foreign_token)),
                Some(r#"{"name": "Forged"}"#),
            ),
            http(401, "unauthorized"),
        ),
        (
            req(
                "a connect ticket as the bearer token",
                Method::POST,
                "/campaigns".into(),
                Auth::Header(format!("Bearer {}", t.ticket)),
                Some(r#"{"name": "Ticketed"}"#),
            ),
            http(401, "unauthorized"),
        ),
        (
            req(
                "POST /campaigns with a body that is not JSON",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some("{name: oops"),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with an empty body",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(""),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with a JSON array",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(r#"[{"name": "A"}]"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with a numeric name",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(r#"{"name": 5}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with an unknown field",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(r#"{"name": "A", "gmUserId": "me"}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with a blank name",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(r#"{"name": "   "}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with a 201-character name",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(&json!({"name": "n".repeat(201)}).to_string()),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "POST /campaigns with a 300 KiB body",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(&json!({"name": "x".repeat(300 * 1024)}).to_string()),
            ),
            http(413, "payload_too_large"),
        ),
        (
            req(
                "POST /campaigns with trailing garbage",
                Method::POST,
                "/campaigns".into(),
                Auth::Gm,
                Some(r#"{"name": "A"} x"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "a member added by a player",
                Method::POST,
                format!("/campaigns/{c}/members"),
                Auth::Player,
                Some(r#"{"userId": "mallory", "role": "gm"}"#),
            ),
            http(403, "forbidden"),
        ),
        (
            req(
                "a member with an unknown role",
                Method::POST,
                format!("/campaigns/{c}/members"),
                Auth::Gm,
                Some(r#"{"userId": "mallory", "role": "king"}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "a member id with spaces",
                Method::POST,
                format!("/campaigns/{c}/members"),
                Auth::Gm,
                Some(r#"{"userId": "mal lory", "role": "player"}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "removing the campaign's owner",
                Method::DELETE,
                format!("/campaigns/{c}/members/{}", t.gm),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "removing a user who is not a member",
                Method::DELETE,
                format!("/campaigns/{c}/members/nobody-{}", tag()),
                Auth::Gm,
                None,
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "another user's campaign",
                Method::GET,
                format!("/campaigns/{}", t.other_campaign),
                Auth::Gm,
                None,
            ),
            http(403, "forbidden"),
        ),
        (
            req(
                "a campaign that does not exist",
                Method::GET,
                format!("/campaigns/no-such-{}", tag()),
                Auth::Gm,
                None,
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "a session that does not exist",
                Method::GET,
                format!("/sessions/no-such-{}", tag()),
                Auth::Gm,
                None,
            ),
            http(404, "session_not_found"),
        ),
        (
            req(
                "another campaign's session events",
                Method::GET,
                format!("/sessions/{other}/events"),
                Auth::Gm,
                None,
            ),
            http(403, "forbidden"),
        ),
        (
            req(
                "events with limit=0",
                Method::GET,
                format!("/sessions/{s}/events?limit=0"),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "events with after=-1",
                Method::GET,
                format!("/sessions/{s}/events?after=-1"),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "events with limit=abc",
                Method::GET,
                format!("/sessions/{s}/events?limit=abc"),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "campaigns with a forged cursor",
                Method::GET,
                "/campaigns?cursor=%00%01garbage".into(),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "compendium with limit=1000",
                Method::GET,
                "/compendium?limit=1000".into(),
                Auth::Gm,
                None,
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "adding an actor that does not exist",
                Method::POST,
                format!("/sessions/{s}/actors"),
                Auth::Gm,
                Some(&json!({"actorId": format!("no-such-{}", tag())}).to_string()),
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "adding an actor with a bad instance id",
                Method::POST,
                format!("/sessions/{s}/actors"),
                Auth::Gm,
                Some(&json!({"actorId": t.actor, "instanceId": "bad id!"}).to_string()),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "adding an actor under an instance id in use",
                Method::POST,
                format!("/sessions/{s}/actors"),
                Auth::Gm,
                Some(&json!({"actorId": t.actor, "instanceId": "goblin1"}).to_string()),
            ),
            http(409, "conflict"),
        ),
        (
            req(
                "adding an actor as a player",
                Method::POST,
                format!("/sessions/{s}/actors"),
                Auth::Player,
                Some(&json!({"actorId": t.actor, "instanceId": "goblin9"}).to_string()),
            ),
            http(403, "forbidden"),
        ),
        (
            req(
                "removing an instance not in the session",
                Method::DELETE,
                format!("/sessions/{s}/actors/nobody"),
                Auth::Gm,
                None,
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "PATCH of an actor with an array",
                Method::PATCH,
                format!("/campaigns/{c}/actors/{}", t.actor),
                Auth::Gm,
                Some("[]"),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "compaction by a player",
                Method::POST,
                format!("/sessions/{s}/compact"),
                Auth::Player,
                None,
            ),
            http(403, "forbidden"),
        ),
        (
            req(
                "resolving a conflict that does not exist",
                Method::POST,
                format!("/sessions/{s}/conflicts/no-such/resolve"),
                Auth::Gm,
                Some(r#"{"chosenEventId": "6f1c2a64-3b1e-4c7d-9a7e-2d4b8f0c1e55"}"#),
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "escalating without an eventId",
                Method::POST,
                format!("/sessions/{s}/conflicts"),
                Auth::Player,
                Some(r#"{"reason": "unfair"}"#),
            ),
            http(400, "invalid_message"),
        ),
        (
            req(
                "a route that does not exist",
                Method::GET,
                "/teleport".into(),
                Auth::Gm,
                None,
            ),
            http(404, "not_found"),
        ),
        (
            req(
                "a method the route does not take",
                Method::PUT,
                "/campaigns".into(),
                Auth::Gm,
                Some("{}"),
            ),
            http(405, "invalid_message"),
        ),
    ];
    rows.extend(http_rows.drain(..).map(|((name, input), expected)| Row {
        name: format!("http: {name}"),
        input,
        expected,
    }));
    rows
}

/// What "no state change" compares: everything a row could have touched, read from outside.
async fn world(h: &Http, f: &Fixture) -> Value {
    let t = &f.table;
    let get = |path: String, token: &str| {
        let (h, token) = (h.clone(), token.to_owned());
        async move { h.ok(Method::GET, &path, &token, None).await }
    };
    let (gm, p1, stranger) = (&t.gm.token, &t.players[0].token, &f.stranger.token);
    json!({
        "session": get(format!("/sessions/{}", t.session), gm).await,
        "events": h.all_events(&t.session, gm).await,
        "head": f.running.deps.log.head(&t.session_id()).await.expect("the head").get(),
        "otherSession": get(format!("/sessions/{}", f.targets.other_session), stranger).await,
        "otherEvents": h.all_events(&f.targets.other_session, stranger).await,
        "campaign": get(format!("/campaigns/{}", t.campaign), gm).await,
        "actors": get(format!("/campaigns/{}/actors", t.campaign), gm).await,
        "sessions": get(format!("/campaigns/{}/sessions", t.campaign), gm).await,
        "campaignsOfGm": get("/campaigns".into(), gm).await,
        "campaignsOfPlayer": get("/campaigns".into(), p1).await,
        "campaignsOfStranger": get("/campaigns".into(), stranger).await,
    })
}

/// The gateway, the table and the sockets the rows run on.
struct Fixture {
    running: local_gateway::app::Running,
    table: Table,
    stranger: User,
    targets: Targets,
    /// The first player's socket, subscribed to the table's session.
    main: WsClient,
    /// The second player's socket, subscribed too (the flood row spends its user's budget).
    flooder: WsClient,
}

async fn fixture(backend: Backend) -> Fixture {
    let running = backend.gateway().await;
    let h = Http::new(&running);
    let table = setup_table(&h, 2, 1).await;
    let stranger = h.user(&format!("stranger-{}", tag())).await;
    let other_campaign = h
        .ok(
            Method::POST,
            "/campaigns",
            &stranger.token,
            Some(&json!({"name": "Elsewhere"})),
        )
        .await["id"]
        .as_str()
        .expect("campaign id")
        .to_owned();
    let other_session = h
        .ok(
            Method::POST,
            &format!("/campaigns/{other_campaign}/sessions"),
            &stranger.token,
            Some(&json!({"name": "Theirs"})),
        )
        .await["id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let url = running.ws_url();
    let mut main = WsClient::connect(&url, &table.players[0]).await;
    main.subscribe(&table.session, 0).await;
    let mut flooder = WsClient::connect(&url, &table.players[1]).await;
    flooder.subscribe(&table.session, 0).await;
    let committed = main.submit(say("first"), None).await;
    main.confirmed(&committed).await;
    let foreign_token =
        dlab_service::auth::Authenticator::with_secret("another-secret-of-at-least-32-bytes")
            .issue_user_token(
                &dlab_core::ids::UserId::new(table.gm.id.as_str()),
                Duration::from_secs(600),
            );
    let targets = Targets {
        session: table.session.clone(),
        campaign: table.campaign.clone(),
        actor: table.actor.clone(),
        gm: table.gm.id.clone(),
        other_campaign,
        other_session,
        committed,
        ticket: connect_ticket(&url, &table.gm).await,
        foreign_token,
    };
    Fixture {
        running,
        table,
        stranger,
        targets,
        main,
        flooder,
    }
}

/// Whether a frame is an answer. Answers to the session client's own requests (heartbeat
/// pings, gap replays, its submits) are told apart by [`WsClient::expect_foreign`].
fn is_answer(frame: &Value) -> bool {
    let name = frame["event"].as_str().unwrap_or_default();
    ANSWERS.contains(&name)
}

/// Forgets every frame received so far, so the next answer is the row's own.
fn drain(c: &mut WsClient) {
    while c.take(|_| true).is_some() {}
}

/// The pause a `rate_limited` answer asks for.
fn retry_pause(data: &Value) -> Duration {
    Duration::from_millis(data["retryAfterMs"].as_u64().unwrap_or(0)).max(MIN_RETRY_PAUSE)
}

/// Sends `frame` and returns the answer, sending it again after a `rate_limited` answer unless
/// `rate_limited` is what the row expects.
async fn ws_answer(c: &mut WsClient, frame: &str, expected_code: &str) -> Value {
    for _ in 0..RATE_LIMIT_RETRIES {
        drain(c);
        c.send_text(frame.to_owned()).await;
        let answer = c.expect_foreign("the row's answer", is_answer).await;
        if answer["data"]["code"] == "rate_limited" && expected_code != "rate_limited" {
            tokio::time::sleep(retry_pause(&answer["data"])).await;
            continue;
        }
        return answer;
    }
    panic!("still rate_limited after {RATE_LIMIT_RETRIES} tries: {frame:.200}");
}

/// What a row got wrong, if anything.
fn check_ws(answer: &Value, event: &str, code: &str, request_id: Option<&str>) -> Option<String> {
    let data = &answer["data"];
    let mut wrong = Vec::new();
    if answer["event"] != event {
        wrong.push(format!("frame {} instead of {event}", answer["event"]));
    }
    if data["code"] != code {
        wrong.push(format!("code {} instead of {code}", data["code"]));
    }
    if data["message"].as_str().unwrap_or_default().is_empty() {
        wrong.push("no message".to_owned());
    }
    if let Some(rid) = request_id
        && data["requestId"] != rid
    {
        wrong.push(format!("requestId {} instead of {rid}", data["requestId"]));
    }
    if event == "event:error" && data["tempId"].as_str().is_none_or(str::is_empty) {
        wrong.push("no tempId".to_owned());
    }
    (!wrong.is_empty()).then(|| format!("{}: {answer}", wrong.join(", ")))
}

/// The same socket still works: a valid chat submitted through the session client is
/// confirmed (the client sends it again under the same id after `rate_limited`, when the
/// answer asks).
async fn ws_usable(c: &mut WsClient) -> Result<(), String> {
    let id = c.submit(say("still usable"), None).await;
    for _ in 0..RATE_LIMIT_RETRIES {
        let outcome = c.outcome(&id).await;
        match outcome["event"].as_str() {
            Some("event:confirmed") => return Ok(()),
            _ if outcome["data"]["code"] == "rate_limited" => {}
            _ => return Err(format!("a valid submit afterwards was refused: {outcome}")),
        }
    }
    Err(format!(
        "a valid submit was still rate_limited after {RATE_LIMIT_RETRIES} tries"
    ))
}

/// The same HTTP client still works: it reads the campaign and gets a connect ticket.
async fn http_usable(h: &Http, f: &Fixture) -> Result<(), String> {
    let gm = &f.table.gm.token;
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/campaigns/{}", f.table.campaign),
            Some(gm),
            None,
        )
        .await;
    if status != 200 {
        return Err(format!("GET /campaigns/{{id}} afterwards: {status} {body}"));
    }
    let (status, body) = h
        .call(Method::POST, "/connect-ticket", Some(gm), None)
        .await;
    if status != 200 || body["ticket"].as_str().is_none() {
        return Err(format!("POST /connect-ticket afterwards: {status} {body}"));
    }
    Ok(())
}

/// Runs one row; `Err` says what was wrong.
async fn run_row(h: &Http, f: &mut Fixture, row: &Row) -> Result<(), String> {
    let before = world(h, f).await;
    let usable = match (&row.input, &row.expected) {
        (
            Input::Ws(frame),
            Expected::Ws {
                event,
                code,
                request_id,
            },
        ) => {
            let answer = ws_answer(&mut f.main, frame, code).await;
            if let Some(wrong) = check_ws(&answer, event, code, *request_id) {
                return Err(wrong);
            }
            Usable::Socket(Which::Main)
        }
        (Input::WsFlood { frame, count }, Expected::WsSome { code }) => {
            let c = &mut f.flooder;
            drain(c);
            for _ in 0..*count {
                c.send_text(frame.clone()).await;
            }
            let mut hits = 0;
            for _ in 0..*count {
                let answer = c.expect_foreign("a flood answer", is_answer).await;
                if answer["data"]["code"] == *code {
                    if let Some(wrong) = check_ws(&answer, "error", code, None) {
                        return Err(wrong);
                    }
                    if answer["data"]["retryAfterMs"]
                        .as_u64()
                        .is_none_or(|ms| ms == 0)
                    {
                        return Err(format!("no retryAfterMs: {answer}"));
                    }
                    hits += 1;
                }
            }
            if hits == 0 {
                return Err(format!("none of {count} answers was {code}"));
            }
            Usable::Socket(Which::Flooder)
        }
        (
            Input::Http {
                method,
                path,
                auth,
                body,
            },
            Expected::Http { status, code },
        ) => {
            let header = match auth {
                Auth::None => None,
                Auth::Gm => Some(format!("Bearer {}", f.table.gm.token)),
                Auth::Player => Some(format!("Bearer {}", f.table.players[0].token)),
                Auth::Header(value) => Some(value.clone()),
            };
            let (got, answer) = h
                .raw(method.clone(), path, header.as_deref(), body.clone())
                .await;
            if got != *status || answer["error"]["code"] != *code {
                return Err(format!(
                    "{got} {answer} instead of {status} {{\"error\": {{\"code\": \"{code}\"}}}}"
                ));
            }
            if answer["error"]["message"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                return Err(format!("no error message: {answer}"));
            }
            Usable::Http
        }
        (input, expected) => return Err(format!("a row may not pair {input:?} with {expected:?}")),
    };
    let after = world(h, f).await;
    if after != before {
        return Err(format!(
            "the state changed:\n  before: {before}\n  after:  {after}"
        ));
    }
    match usable {
        Usable::Socket(Which::Main) => ws_usable(&mut f.main).await,
        Usable::Socket(Which::Flooder) => ws_usable(&mut f.flooder).await,
        Usable::Http => http_usable(h, f).await,
    }
}

enum Which {
    Main,
    Flooder,
}

enum Usable {
    Socket(Which),
    Http,
}

/// The table on `backend`: every row answered as expected, changing nothing, leaving its
/// socket or client usable. Failures are collected and reported together.
pub async fn bad_input_table(backend: Backend) {
    let _turn = shared().await;
    let mut f = fixture(backend).await;
    let h = Http::new(&f.running);
    let rows = rows(&f.targets);
    let ws_rows = rows
        .iter()
        .filter(|r| !matches!(r.input, Input::Http { .. }))
        .count();
    assert!(
        rows.len() >= 30,
        "the table has at least 30 rows: {}",
        rows.len()
    );
    let mut failures = Vec::new();
    for row in &rows {
        if let Err(wrong) = run_row(&h, &mut f, row).await {
            failures.push(format!("{}: {wrong}", row.name));
        }
    }
    println!(
        "bad-input table ({backend:?}): {} rows ({ws_rows} WebSocket, {} HTTP), {} failed",
        rows.len(),
        rows.len() - ws_rows,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    let Fixture { running, .. } = f;
    running.shutdown().await;
}
