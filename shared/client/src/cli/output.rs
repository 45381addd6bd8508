//! What the commands print: `--json` prints the server's documents (pretty JSON, one value per
//! command, nothing else on stdout), plain text prints one line per thing. Progress goes to
//! stderr, only on a terminal and never with `--json`, so piped output is always clean.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// How a command prints its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`: machine output.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON with `--json`, else the text `text` makes of it.
    pub fn emit(&self, value: &Value, text: impl FnOnce(&Value) -> String) {
        let rendered = if self.json {
            serde_json::to_string_pretty(value).expect("a JSON value serializes")
        } else {
            text(value)
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`dlab … | head`) is not an error worth a message.
        let _ = writeln!(out, "{}", rendered.trim_end_matches('\n'));
    }

    /// A spinner on stderr with `message`: hidden with `--json` and when stderr is not a
    /// terminal.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

/// A field as text: strings bare, `null`/missing as `-`, anything else as compact JSON.
pub fn field(value: &Value, path: &str) -> String {
    let mut at = value;
    for part in path.split('.') {
        match at.get(part) {
            Some(next) => at = next,
            None => return "-".into(),
        }
    }
    scalar(at)
}

/// A value as text: strings bare, `null` as `-`, anything else as compact JSON.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A challenge rating as players write it: `1/8`, `1/4`, `1/2`, `3`.
pub fn challenge_rating(cr: &Value) -> String {
    match cr.as_f64() {
        Some(0.125) => "1/8".into(),
        Some(0.25) => "1/4".into(),
        Some(0.5) => "1/2".into(),
        Some(_) => scalar(cr),
        None => "-".into(),
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One campaign: `id  name  GM gm  members a (player), b (gm)`.
pub fn campaign_line(c: &Value) -> String {
    let members: Vec<String> = c["members"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| format!("{} ({})", field(m, "userId"), field(m, "role")))
                .collect()
        })
        .unwrap_or_default();
    let members = if members.is_empty() {
        "none".to_owned()
    } else {
        members.join(", ")
    };
    format!(
        "{}  {}  GM {}  members {}",
        field(c, "id"),
        field(c, "name"),
        field(c, "gmUserId"),
        members
    )
}

/// One actor: `id  name  type  HP v/max  AC ac  from ref`.
pub fn actor_line(a: &Value) -> String {
    let mut line = format!(
        "{}  {}  {}  HP {}/{}  AC {}",
        field(a, "id"),
        field(a, "name"),
        field(a, "type"),
        field(a, "attributes.hp.value"),
        field(a, "attributes.hp.max"),
        field(a, "attributes.ac"),
    );
    if let Some(reference) = a["compendiumRef"].as_str() {
        line.push_str(&format!("  from {reference}"));
    }
    line
}

/// One session: `id  name  status  campaign id`.
pub fn session_line(s: &Value) -> String {
    format!(
        "{}  {}  {}  campaign {}",
        field(s, "id"),
        field(s, "name"),
        field(s, "status"),
        field(s, "campaignId"),
    )
}

/// One event: `#seq  user  type  payload` (the payload cut to one line).
pub fn event_line(e: &Value) -> String {
    format!(
        "#{}  {}  {}  {}",
        field(e, "sequence"),
        field(e, "userId"),
        field(e, "type"),
        truncate(&e["payload"].to_string(), 120),
    )
}

/// One compendium entry of a search: `ref  name  CR x` (monsters) or `level n` (spells).
pub fn compendium_line(e: &Value) -> String {
    let mut line = format!("{}  {}", field(e, "ref"), field(e, "name"));
    let attributes = &e["data"]["attributes"];
    if let Some(cr) = attributes.get("challengeRating") {
        line.push_str(&format!("  CR {}", challenge_rating(cr)));
    }
    if let Some(level) = e["data"].get("level") {
        line.push_str(&format!("  level {}", scalar(level)));
    }
    line
}

/// A compendium entry in full: name, ref, then the numbers a table needs, then its data.
pub fn compendium_entry(e: &Value) -> String {
    let data = &e["data"];
    let attributes = &data["attributes"];
    let mut text = format!("{}  ({})\n", field(e, "name"), field(e, "ref"));
    if attributes.is_object() {
        text.push_str(&format!(
            "HP {}  AC {}  CR {}  speed {}\n",
            field(attributes, "hp.max"),
            field(attributes, "ac"),
            challenge_rating(&attributes["challengeRating"]),
            field(attributes, "speed"),
        ));
        if let Some(abilities) = attributes["abilities"].as_object() {
            let scores: Vec<String> = ["str", "dex", "con", "int", "wis", "cha"]
                .iter()
                .filter_map(|k| abilities.get(*k).map(|v| format!("{k} {}", scalar(v))))
                .collect();
            text.push_str(&scores.join("  "));
            text.push('\n');
        }
    }
    for feature in data["features"].as_array().into_iter().flatten() {
        let mut line = format!("- {}", field(feature, "name"));
        if let Some(bonus) = feature["attackBonus"].as_i64() {
            line.push_str(&format!(": {bonus:+} to hit"));
        }
        let damage: Vec<String> = feature["damage"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} {}", field(d, "dice"), field(d, "type")))
            .collect();
        if !damage.is_empty() {
            line.push_str(&format!(", {}", damage.join(" + ")));
        }
        text.push_str(&line);
        text.push('\n');
    }
    if !attributes.is_object() {
        text.push_str(&serde_json::to_string_pretty(data).expect("a JSON value serializes"));
    }
    text
}

/// One conflict and its numbered options.
pub fn conflict_lines(c: &Value) -> String {
    let mut text = format!(
        "{}  [{}]  {}  {}",
        field(c, "conflictId"),
        field(c, "kind"),
        if c["resolved"].as_bool() == Some(true) {
            "resolved"
        } else {
            "open"
        },
        field(c, "description"),
    );
    for (i, option) in c["options"].as_array().into_iter().flatten().enumerate() {
        text.push_str(&format!(
            "\n  {}) event {}  {}",
            i + 1,
            field(option, "eventId"),
            truncate(&option.to_string(), 120)
        ));
    }
    text
}

/// Lines of `items` made by `line`, or `empty` when there are none.
pub fn lines(items: &Value, empty: &str, line: fn(&Value) -> String) -> String {
    match items.as_array() {
        Some(list) if !list.is_empty() => list.iter().map(line).collect::<Vec<_>>().join("\n"),
        _ => empty.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_and_ratings_read_as_a_table_writes_them() {
        let actor = json!({"id": "a1", "name": "Goblin 1", "type": "monster",
            "attributes": {"hp": {"value": 7, "max": 7}, "ac": 15}, "compendiumRef": "dnd5e:monsters:goblin"});
        assert_eq!(
            actor_line(&actor),
            "a1  Goblin 1  monster  HP 7/7  AC 15  from dnd5e:monsters:goblin"
        );
        assert_eq!(field(&actor, "attributes.speed"), "-");
        assert_eq!(challenge_rating(&json!(0.25)), "1/4");
        assert_eq!(challenge_rating(&json!(2)), "2");
        assert_eq!(challenge_rating(&Value::Null), "-");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
