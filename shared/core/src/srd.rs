//! SRD 5.1 records (the `5e-database` JSON of a monster, spell or equipment item) mapped to
//! compendium templates with refs `dnd5e:<category>:<index>`.
//!
//! # Why structured fields
//!
//! The SRD database describes an attack twice: as prose (the to-hit bonus, the average and the
//! dice written out in a sentence) and as data (`attack_bonus`, `damage[].damage_dice`, `dc`).
//! The 5e plugin rolls attacks, damage and saves from data, never from prose, so the mapping
//! lifts every number the database carries into camelCase fields (`attackBonus`,
//! `damage: [{dice, type}]`, `save: {ability, dc, onSuccess}`, `usage`, `multiattack`) and keeps
//! the prose only as `description`, for people. A monster becomes a complete actor template (`type`,
//! `attributes` with `hp`, `ac` and `speed`, `features`, `spells`, `equipment`), so
//! [`create_from_template`](crate::actor::create_from_template) makes a playable actor with no
//! further lookups.
//!
//! # Totality
//!
//! Every record of the 2014 SRD tables (334 monsters, 319 spells, 237 items) maps. Optional
//! fields that are absent (or `null`) are omitted from the template, never errors. An
//! [`SrdError::Field`] is returned only for a record without a usable `index` or `name`, without
//! a field the template cannot exist without (a monster's `hit_points`, `armor_class` and
//! `challenge_rating`; a spell's `level`), or with a present field of the wrong type; it names
//! the field by its JSON path in the SRD record (`actions[0].damage[1].damage_dice`).
//!
//! # Conventions
//!
//! - Keys are camelCase. References to other SRD records (`{index, name, url}`) become their
//!   `index` (`"slashing"`, `"evocation"`), or a compendium ref where the consumer looks them up
//!   (`dnd5e:spells:fireball`, `dnd5e:equipment:shield`).
//! - Skill keys are the camelCase of the skill name: `stealth`, `animalHandling`,
//!   `sleightOfHand`. Save keys are the ability abbreviations `str`, `dex`, `con`, `int`, `wis`,
//!   `cha`, as in `abilities`.
//! - Dice expressions lose their spaces (`"3d4 + 3"` becomes `"3d4+3"`), so one parser reads all.
//! - Distances are integer feet (`"30 ft."` becomes `30`); a monster without a walking speed
//!   (a shark, a floating mist) has `speed: 0`, and `movement` lists every mode it has.
//! - Whole numbers stored as floats by the database (weights, challenge ratings) become
//!   integers; `challengeRating` is `0.25` for CR 1/4.
//! - `languages` stays the SRD's one string (`"Common, Goblin"`; free text with qualifiers and
//!   parentheses does not split cleanly into a list) and is omitted when empty. Damage
//!   vulnerabilities, resistances and immunities and condition immunities are string lists.
//! - A legendary action has `cost`: the `N` of a name ending `(Costs N Actions)`, else 1.
//! - Choices the database models as `{choose, from: {options}}` become a list of the options
//!   (`damageOptions`, `options`, `multiattack.options`); every choice in the SRD is "choose
//!   one", and a different count is kept as `…Choose`.
//!
//! # Built-in templates
//!
//! [`builtin_templates`] are a handful of monsters written for this project (not SRD text), so a
//! local table has something to play with when the SRD package cannot be fetched. Their refs are
//! `dnd5e:monsters:dlab-<slug>`: system `dnd5e` so the 5e plugin applies to them, the `dlab-`
//! prefix ([`BUILTIN_PREFIX`]) marking them as project-made (no SRD index starts with it). They
//! are written as SRD-shaped records and go through [`to_entry`], so they have exactly the shape
//! of an imported monster.

use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::actor::{CompendiumEntry, CompendiumRef};

/// The game system of every SRD template.
pub const SYSTEM: &str = "dnd5e";

/// The slug prefix of the templates written for this project (see [`builtin_templates`]).
pub const BUILTIN_PREFIX: &str = "dlab-";

/// The attribution the SRD 5.1's license (CC-BY-4.0) asks for, exactly as the package's
/// `metadata` table states it. Every compendium search answers it, and NOTICE and the README
/// repeat it; the importer checks the package still says the same.
pub const ATTRIBUTION: &str = "This work includes material taken from the System Reference Document 5.1 (\"SRD 5.1\") by Wizards of the Coast LLC, available at https://dnd.wizards.com/resources/systems-reference-document. The SRD 5.1 is licensed under the Creative Commons Attribution 4.0 International License, available at https://creativecommons.org/licenses/by/4.0/legalcode.";

/// The SRD tables this project imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrdCategory {
    /// `monsters`: full actor templates.
    Monsters,
    /// `spells`.
    Spells,
    /// `equipment`.
    Equipment,
}

impl SrdCategory {
    /// Every category, in import order.
    pub const ALL: [SrdCategory; 3] = [Self::Monsters, Self::Spells, Self::Equipment];

    /// The SRD table name, which is also the template category.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monsters => "monsters",
            Self::Spells => "spells",
            Self::Equipment => "equipment",
        }
    }
}

/// A record that cannot be mapped.
#[derive(Debug, Error)]
pub enum SrdError {
    /// A required field is missing or has the wrong type.
    #[error("{category} record {index}: field {field}: {reason}")]
    Field {
        /// The category.
        category: &'static str,
        /// The record's `index` (or `?`).
        index: String,
        /// The JSON path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Maps one SRD record (the `data` JSON of its table row) to a template.
pub fn to_entry(category: SrdCategory, record: &Value) -> Result<CompendiumEntry, SrdError> {
    let unknown = Ctx {
        category,
        index: "?".to_owned(),
    };
    let index = Node::root(&unknown, record)
        .req("index")?
        .as_str()?
        .to_owned();
    let reference = format!("{SYSTEM}:{}:{index}", category.as_str());
    if CompendiumRef::parse(&reference).is_err() {
        return Err(unknown.err(
            "index",
            "must be a non-empty slug of a-z, 0-9, _ and - (at most 256 bytes in the ref)",
        ));
    }
    let ctx = Ctx { category, index };
    let rec = Node::root(&ctx, record);
    let name = rec.req("name")?.as_str()?;
    if name.trim().is_empty() {
        return Err(ctx.err("name", "must not be blank"));
    }
    let data = match category {
        SrdCategory::Monsters => monster(&rec)?,
        SrdCategory::Spells => spell(&rec)?,
        SrdCategory::Equipment => equipment(&rec)?,
    };
    Ok(CompendiumEntry {
        reference,
        system: SYSTEM.into(),
        category: category.as_str().into(),
        name: name.to_owned(),
        data,
    })
}

/// The few templates written for this project, used when the SRD package cannot be fetched
/// (refs `dnd5e:monsters:dlab-<slug>`; see the module documentation).
pub fn builtin_templates() -> Vec<CompendiumEntry> {
    builtin_records()
        .iter()
        .map(|record| {
            to_entry(SrdCategory::Monsters, record)
                .expect("the built-in records are SRD-shaped (tested)")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Navigation with error paths
// ---------------------------------------------------------------------------------------------

/// The record being mapped, for error messages.
struct Ctx {
    category: SrdCategory,
    index: String,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> SrdError {
        SrdError::Field {
            category: self.category.as_str(),
            index: self.index.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A present (non-null) value of the record and its JSON path there.
#[derive(Clone)]
struct Node<'a> {
    ctx: &'a Ctx,
    path: String,
    value: &'a Value,
}

type Res<T> = Result<T, SrdError>;

impl<'a> Node<'a> {
    fn root(ctx: &'a Ctx, value: &'a Value) -> Self {
        Self {
            ctx,
            path: String::new(),
            value,
        }
    }

    fn err(&self, reason: impl Into<String>) -> SrdError {
        let path = if self.path.is_empty() {
            "(record)"
        } else {
            &self.path
        };
        self.ctx.err(path, reason)
    }

    fn expected(&self, what: &str) -> SrdError {
        self.err(format!("expected {what}, got {}", kind(self.value)))
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn obj(&self) -> Res<&'a Map<String, Value>> {
        self.value
            .as_object()
            .ok_or_else(|| self.expected("an object"))
    }

    /// The field `key` of this object, `None` when absent or `null`.
    fn get(&self, key: &str) -> Res<Option<Node<'a>>> {
        Ok(self
            .obj()?
            .get(key)
            .filter(|v| !v.is_null())
            .map(|value| Node {
                ctx: self.ctx,
                path: self.child_path(key),
                value,
            }))
    }

    fn req(&self, key: &str) -> Res<Node<'a>> {
        self.get(key)?
            .ok_or_else(|| self.ctx.err(self.child_path(key), "missing"))
    }

    fn as_str(&self) -> Res<&'a str> {
        self.value.as_str().ok_or_else(|| self.expected("a string"))
    }

    fn as_f64(&self) -> Res<f64> {
        self.value
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| self.expected("a number"))
    }

    /// An integer, or a float with a whole value (the database stores some counts as floats).
    fn as_i64(&self) -> Res<i64> {
        if let Some(i) = self.value.as_i64() {
            return Ok(i);
        }
        match self.value.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            _ => Err(self.expected("an integer")),
        }
    }

    fn as_bool(&self) -> Res<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| self.expected("a boolean"))
    }

    fn items(&self) -> Res<Vec<Node<'a>>> {
        let array = self
            .value
            .as_array()
            .ok_or_else(|| self.expected("a list"))?;
        Ok(array
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_null())
            .map(|(i, value)| Node {
                ctx: self.ctx,
                path: format!("{}[{i}]", self.path),
                value,
            })
            .collect())
    }

    fn entries(&self) -> Res<Vec<(&'a str, Node<'a>)>> {
        Ok(self
            .obj()?
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(key, value)| {
                (
                    key.as_str(),
                    Node {
                        ctx: self.ctx,
                        path: self.child_path(key),
                        value,
                    },
                )
            })
            .collect())
    }

    fn str_of(&self, key: &str) -> Res<Option<&'a str>> {
        self.get(key)?.map(|n| n.as_str()).transpose()
    }

    fn i64_of(&self, key: &str) -> Res<Option<i64>> {
        self.get(key)?.map(|n| n.as_i64()).transpose()
    }

    fn f64_of(&self, key: &str) -> Res<Option<f64>> {
        self.get(key)?.map(|n| n.as_f64()).transpose()
    }

    fn bool_of(&self, key: &str) -> Res<Option<bool>> {
        self.get(key)?.map(|n| n.as_bool()).transpose()
    }

    /// The items of the list `key`; empty when absent.
    fn list_of(&self, key: &str) -> Res<Vec<Node<'a>>> {
        self.get(key)?.map_or_else(|| Ok(Vec::new()), |n| n.items())
    }

    /// This value as a reference to another SRD record: the `index` of `{index, name, url}`
    /// (else the slug of its `name`), or a bare string taken as it is.
    fn as_ref_index(&self) -> Res<String> {
        match self.value {
            Value::String(s) => Ok(s.clone()),
            Value::Object(_) => {
                if let Some(index) = self.str_of("index")? {
                    return Ok(index.to_owned());
                }
                if let Some(url) = self.str_of("url")?
                    && let Some(last) = url.rsplit('/').next().filter(|s| !s.is_empty())
                {
                    return Ok(last.to_owned());
                }
                match self.str_of("name")? {
                    Some(name) => Ok(slug(name)),
                    None => Err(self.err("a reference needs an index, url or name")),
                }
            }
            _ => Err(self.expected("a reference ({index, name, url}) or a string")),
        }
    }

    fn ref_of(&self, key: &str) -> Res<Option<String>> {
        self.get(key)?.map(|n| n.as_ref_index()).transpose()
    }

    /// Text that the database stores as a string or as a list of paragraphs, joined with a
    /// blank line; `None` when absent or empty.
    fn text_of(&self, key: &str) -> Res<Option<String>> {
        let Some(node) = self.get(key)? else {
            return Ok(None);
        };
        let text = match node.value {
            Value::String(s) => s.clone(),
            Value::Array(_) => node
                .items()?
                .iter()
                .map(Node::as_str)
                .collect::<Res<Vec<_>>>()?
                .join("\n\n"),
            _ => return Err(node.expected("a string or a list of strings")),
        };
        Ok(Some(text).filter(|t| !t.trim().is_empty()))
    }

    /// A list of strings, or of references turned into their index.
    fn names_of(&self, key: &str) -> Res<Vec<String>> {
        self.list_of(key)?.iter().map(Node::as_ref_index).collect()
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Sets `key` when there is a value.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

/// A number, as an integer when it is whole.
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// `"1d6 + 2"` → `"1d6+2"`.
fn dice(expr: &str) -> String {
    expr.split_whitespace().collect()
}

/// `"animal handling"`, `"animal-handling"`, `"per day"` → `"animalHandling"`, `"perDay"`.
fn camel(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let words = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    for (i, word) in words.enumerate() {
        let lower = word.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        }
    }
    out
}

/// `"Thieves' Tools"` → `"thieves-tools"`.
fn slug(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

/// A distance in feet: `"30 ft."`, `"120 feet"` or a number.
fn feet(node: &Node) -> Res<i64> {
    if node.value.is_number() {
        return node.as_i64();
    }
    let text = node.as_str()?.trim();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .map_err(|_| node.err(format!("expected a distance like \"30 ft.\", got {text:?}")))
}

fn compendium_ref(category: SrdCategory, index: &str) -> String {
    format!("{SYSTEM}:{}:{index}", category.as_str())
}

// ---------------------------------------------------------------------------------------------
// Monsters
// ---------------------------------------------------------------------------------------------

const ABILITIES: [(&str, &str); 6] = [
    ("strength", "str"),
    ("dexterity", "dex"),
    ("constitution", "con"),
    ("intelligence", "int"),
    ("wisdom", "wis"),
    ("charisma", "cha"),
];

const FEATURE_LISTS: [(&str, &str); 4] = [
    ("special_abilities", "trait"),
    ("actions", "action"),
    ("legendary_actions", "legendary"),
    ("reactions", "reaction"),
];

fn monster(rec: &Node) -> Res<Value> {
    let mut attrs = Map::new();

    let hit_points = rec.req("hit_points")?.as_i64()?;
    let mut hp = Map::new();
    hp.insert("value".into(), json!(hit_points));
    hp.insert("max".into(), json!(hit_points));
    let roll = rec.str_of("hit_points_roll")?;
    let hit_dice = rec.str_of("hit_dice")?;
    put(&mut hp, "formula", roll.or(hit_dice).map(dice));
    put(&mut hp, "hitDice", hit_dice.map(dice));
    attrs.insert("hp".into(), Value::Object(hp));

    let (ac, ac_sources, worn) = armor_class(&rec.req("armor_class")?)?;
    attrs.insert("ac".into(), json!(ac));
    attrs.insert("acSources".into(), Value::Array(ac_sources));

    let mut movement = Map::new();
    if let Some(speed) = rec.get("speed")? {
        if speed.value.is_object() {
            for (mode, node) in speed.entries()? {
                let value = match node.value {
                    Value::Bool(b) => json!(b),
                    _ => json!(feet(&node)?),
                };
                movement.insert(camel(mode), value);
            }
        } else {
            movement.insert("walk".into(), json!(feet(&speed)?));
        }
    }
    let walk = movement.get("walk").and_then(Value::as_i64).unwrap_or(0);
    attrs.insert("speed".into(), json!(walk));
    attrs.insert("movement".into(), Value::Object(movement));

    let mut abilities = Map::new();
    for (long, short) in ABILITIES {
        put(&mut abilities, short, rec.i64_of(long)?);
    }
    attrs.insert("abilities".into(), Value::Object(abilities));

    let (saves, skills, other) = proficiencies(rec)?;
    attrs.insert("saves".into(), Value::Object(saves));
    attrs.insert("skills".into(), Value::Object(skills));
    if !other.is_empty() {
        attrs.insert("otherProficiencies".into(), Value::Array(other));
    }

    let cr = rec.req("challenge_rating")?.as_f64()?;
    attrs.insert("challengeRating".into(), number(cr));
    put(&mut attrs, "xp", rec.i64_of("xp")?);
    put(
        &mut attrs,
        "proficiencyBonus",
        rec.i64_of("proficiency_bonus")?,
    );
    put(&mut attrs, "size", rec.str_of("size")?);
    put(&mut attrs, "creatureType", rec.str_of("type")?);
    put(&mut attrs, "subtype", rec.str_of("subtype")?);
    put(&mut attrs, "alignment", rec.str_of("alignment")?);

    if let Some(senses) = rec.get("senses")? {
        let mut out = Map::new();
        for (sense, node) in senses.entries()? {
            let value = if sense == "passive_perception" {
                json!(node.as_i64()?)
            } else if let Value::Number(_) = node.value {
                json!(format!("{} ft.", node.as_i64()?))
            } else {
                json!(node.as_str()?)
            };
            out.insert(camel(sense), value);
        }
        attrs.insert("senses".into(), Value::Object(out));
    }
    put(
        &mut attrs,
        "languages",
        rec.str_of("languages")?.filter(|l| !l.trim().is_empty()),
    );
    for (from, to) in [
        ("damage_vulnerabilities", "damageVulnerabilities"),
        ("damage_resistances", "damageResistances"),
        ("damage_immunities", "damageImmunities"),
        ("condition_immunities", "conditionImmunities"),
    ] {
        attrs.insert(to.into(), json!(rec.names_of(from)?));
    }

    let mut features = Vec::new();
    let mut spells: Vec<Value> = Vec::new();
    for (list, kind) in FEATURE_LISTS {
        for node in rec.list_of(list)? {
            let (feature, feature_spells) = feature(&node, kind)?;
            features.push(feature);
            for spell in feature_spells {
                if !spells.iter().any(|s| s["ref"] == spell["ref"]) {
                    spells.push(spell);
                }
            }
        }
    }

    let equipment: Vec<Value> = worn
        .into_iter()
        .map(|(index, name)| {
            let mut item = Map::new();
            item.insert(
                "ref".into(),
                json!(compendium_ref(SrdCategory::Equipment, &index)),
            );
            put(&mut item, "name", name);
            Value::Object(item)
        })
        .collect();

    let mut data = Map::new();
    data.insert("type".into(), json!("monster"));
    data.insert("attributes".into(), Value::Object(attrs));
    data.insert("features".into(), Value::Array(features));
    data.insert("spells".into(), Value::Array(spells));
    data.insert("equipment".into(), Value::Array(equipment));
    put(&mut data, "description", rec.text_of("desc")?);
    let forms = rec.names_of("forms")?;
    if !forms.is_empty() {
        let forms: Vec<String> = forms
            .iter()
            .map(|f| compendium_ref(SrdCategory::Monsters, f))
            .collect();
        data.insert("forms".into(), json!(forms));
    }
    Ok(Value::Object(data))
}

/// The armour class (the first source's value), every source, and the worn armour
/// (`(index, name)`), from `armor_class`: a list of `{type, value, armor?, spell?, condition?,
/// desc?}`, or a bare number in older database versions.
#[allow(clippy::type_complexity)]
fn armor_class(node: &Node) -> Res<(i64, Vec<Value>, Vec<(String, Option<String>)>)> {
    if node.value.is_number() {
        let ac = node.as_i64()?;
        return Ok((ac, vec![json!({"value": ac})], Vec::new()));
    }
    let items = node.items()?;
    let mut sources = Vec::new();
    let mut worn = Vec::new();
    let mut first = None;
    for item in &items {
        let value = item.req("value")?.as_i64()?;
        first.get_or_insert(value);
        let mut source = Map::new();
        put(&mut source, "type", item.str_of("type")?);
        source.insert("value".into(), json!(value));
        let armor = item.list_of("armor")?;
        if !armor.is_empty() {
            let mut indices = Vec::new();
            for piece in &armor {
                let index = piece.as_ref_index()?;
                let name = match piece.value {
                    Value::Object(_) => piece.str_of("name")?.map(str::to_owned),
                    _ => None,
                };
                indices.push(index.clone());
                worn.push((index, name));
            }
            source.insert("armor".into(), json!(indices));
        }
        put(&mut source, "spell", item.ref_of("spell")?);
        put(&mut source, "condition", item.ref_of("condition")?);
        put(&mut source, "note", item.str_of("desc")?);
        sources.push(Value::Object(source));
    }
    let ac = first.ok_or_else(|| node.err("expected at least one armour class"))?;
    Ok((ac, sources, worn))
}

/// Saves (`dex` → 2), skills (`stealth` → 6) and any other proficiency (`{name, value}`).
#[allow(clippy::type_complexity)]
fn proficiencies(rec: &Node) -> Res<(Map<String, Value>, Map<String, Value>, Vec<Value>)> {
    let mut saves = Map::new();
    let mut skills = Map::new();
    let mut other = Vec::new();
    for item in rec.list_of("proficiencies")? {
        let value = item.req("value")?.as_i64()?;
        let proficiency = item.req("proficiency")?;
        let (index, name) = match proficiency.value {
            Value::String(s) => (None, s.as_str()),
            _ => (
                proficiency.str_of("index")?,
                proficiency.req("name")?.as_str()?,
            ),
        };
        let by_index = |prefix: &str| index.and_then(|i| i.strip_prefix(prefix));
        let by_name = |prefix: &str| name.strip_prefix(prefix).map(str::trim);
        if let Some(ability) = by_index("saving-throw-").or_else(|| by_name("Saving Throw:")) {
            saves.insert(ability.to_ascii_lowercase(), json!(value));
        } else if let Some(skill) = by_index("skill-").or_else(|| by_name("Skill:")) {
            skills.insert(camel(skill), json!(value));
        } else {
            other.push(json!({"name": name, "value": value}));
        }
    }
    Ok((saves, skills, other))
}

/// One trait, action, legendary action or reaction, and the spells it lets the monster cast.
fn feature(node: &Node, kind: &str) -> Res<(Value, Vec<Value>)> {
    let mut out = Map::new();
    let name = node.req("name")?.as_str()?;
    out.insert("name".into(), json!(name));
    out.insert("kind".into(), json!(kind));
    out.insert(
        "description".into(),
        json!(node.text_of("desc")?.unwrap_or_default()),
    );
    effects(node, &mut out)?;
    if kind == "legendary" {
        out.insert("cost".into(), json!(legendary_cost(name)));
    }

    if let Some(usage) = node.get("usage")? {
        out.insert("usage".into(), usage_of(&usage)?);
    }
    if let Some(multiattack) = multiattack(node)? {
        out.insert("multiattack".into(), multiattack);
    }
    if let Some(options) = node.get("options")? {
        let (choose, list) = choice(&options)?;
        let list = list.iter().map(sub_effect).collect::<Res<Vec<_>>>()?;
        out.insert("options".into(), Value::Array(list));
        put(&mut out, "optionsChoose", choose.filter(|c| *c != 1));
    }
    let attacks = node.list_of("attacks")?;
    if !attacks.is_empty() {
        let attacks = attacks.iter().map(sub_effect).collect::<Res<Vec<_>>>()?;
        out.insert("attacks".into(), Value::Array(attacks));
    }
    let mut spells = Vec::new();
    if let Some(spellcasting) = node.get("spellcasting")? {
        let (value, list) = spellcasting_of(&spellcasting)?;
        out.insert("spellcasting".into(), value);
        spells = list;
    }
    Ok((Value::Object(out), spells))
}

/// The legendary actions a legendary action spends: `N` for a name ending in
/// `(Costs N Actions)`, else 1.
fn legendary_cost(name: &str) -> i64 {
    name.split_once("(Costs ")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(1)
}

/// A named alternative of a feature (a breath weapon, one of several roars): its name and the
/// rolls it makes.
fn sub_effect(node: &Node) -> Res<Value> {
    let mut out = Map::new();
    put(&mut out, "name", node.str_of("name")?);
    put(&mut out, "description", node.text_of("desc")?);
    effects(node, &mut out)?;
    Ok(Value::Object(out))
}

/// The rolls of a feature: `attackBonus`, `damage`, `damageOptions`, `save`.
fn effects(node: &Node, out: &mut Map<String, Value>) -> Res<()> {
    put(out, "attackBonus", node.i64_of("attack_bonus")?);
    let mut damage = Vec::new();
    let mut options = Vec::new();
    let mut options_choose = None;
    for entry in node.list_of("damage")? {
        if entry.get("from")?.is_some() {
            let (choose, list) = choice(&entry)?;
            for option in list {
                options.push(damage_of(&option)?);
            }
            options_choose = choose.filter(|c| *c != 1);
        } else {
            damage.push(damage_of(&entry)?);
        }
    }
    if !damage.is_empty() {
        out.insert("damage".into(), Value::Array(damage));
    }
    if !options.is_empty() {
        out.insert("damageOptions".into(), Value::Array(options));
        put(out, "damageOptionsChoose", options_choose);
    }
    if let Some(dc) = node.get("dc")? {
        out.insert("save".into(), save_of(&dc)?);
    }
    Ok(())
}

/// `{damage_dice, damage_type, dc?, notes?}` → `{dice, type, save?, note?}`.
fn damage_of(node: &Node) -> Res<Value> {
    let mut out = Map::new();
    out.insert(
        "dice".into(),
        json!(dice(node.req("damage_dice")?.as_str()?)),
    );
    put(&mut out, "type", node.ref_of("damage_type")?);
    if let Some(dc) = node.get("dc")? {
        out.insert("save".into(), save_of(&dc)?);
    }
    put(&mut out, "note", node.str_of("notes")?);
    Ok(Value::Object(out))
}

/// A monster save `{dc_type, dc_value, success_type}` → `{ability, dc, onSuccess}`.
fn save_of(node: &Node) -> Res<Value> {
    let mut out = Map::new();
    if let Some(ability) = node.ref_of("dc_type")? {
        out.insert("ability".into(), json!(ability.to_ascii_lowercase()));
    }
    put(&mut out, "dc", node.i64_of("dc_value")?);
    let success = node.str_of("success_type")?.or(node.str_of("dc_success")?);
    put(&mut out, "onSuccess", success);
    put(&mut out, "description", node.str_of("desc")?);
    Ok(Value::Object(out))
}

/// `{type: "per day", times: 3}` → `{type: "perDay", times: 3}`; every key and the type
/// camelCased, dice compacted.
fn usage_of(node: &Node) -> Res<Value> {
    let mut out = Map::new();
    for (key, value) in node.entries()? {
        let value = match key {
            "type" => json!(camel(value.as_str()?)),
            "dice" => json!(dice(value.as_str()?)),
            _ => value.value.clone(),
        };
        out.insert(camel(key), value);
    }
    Ok(Value::Object(out))
}

/// `{choose, type, from: {options: [...]}}` → the count and the options.
fn choice<'a>(node: &Node<'a>) -> Res<(Option<i64>, Vec<Node<'a>>)> {
    let choose = node.i64_of("choose")?;
    let from = node.req("from")?;
    let options = match from.value {
        Value::Array(_) => from.items()?,
        _ => from.list_of("options")?,
    };
    Ok((choose, options))
}

/// A multiattack: `{actions: [{name, count, type}]}` when fixed, `{options: [[…], …]}` when
/// the monster chooses one combination (each option is the list of attacks it makes).
fn multiattack(node: &Node) -> Res<Option<Value>> {
    let actions = node.list_of("actions")?;
    let action_options = node.get("action_options")?;
    if node.get("multiattack_type")?.is_none() && actions.is_empty() && action_options.is_none() {
        return Ok(None);
    }
    let mut out = Map::new();
    if !actions.is_empty() {
        let list = actions.iter().map(attack_ref).collect::<Res<Vec<_>>>()?;
        out.insert("actions".into(), Value::Array(list));
    }
    if let Some(action_options) = action_options {
        let (choose, list) = choice(&action_options)?;
        let mut options = Vec::new();
        for option in list {
            let items = option.list_of("items")?;
            let combination = if items.is_empty() {
                vec![attack_ref(&option)?]
            } else {
                items.iter().map(attack_ref).collect::<Res<Vec<_>>>()?
            };
            options.push(Value::Array(combination));
        }
        out.insert("options".into(), Value::Array(options));
        put(&mut out, "optionsChoose", choose.filter(|c| *c != 1));
    }
    Ok(Some(Value::Object(out)))
}

/// `{action_name, count, type}` → `{name, count, type}`. `count` is usually a number but the
/// database has a few words (`"Number of Heads"`) and dice; those are kept as strings.
fn attack_ref(node: &Node) -> Res<Value> {
    let mut out = Map::new();
    out.insert("name".into(), json!(node.req("action_name")?.as_str()?));
    if let Some(count) = node.get("count")? {
        let value = match count.value {
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_or_else(|_| json!(s), |n| json!(n)),
            _ => json!(count.as_i64()?),
        };
        out.insert("count".into(), value);
    }
    put(&mut out, "type", node.str_of("type")?);
    put(&mut out, "description", node.str_of("desc")?);
    Ok(Value::Object(out))
}

/// A spellcasting trait → `{ability, dc?, modifier?, level?, school?, slots?,
/// componentsRequired?, spells: [{ref, name, level, usage?, notes?}]}`, and the actor's spell
/// list entries (`{ref, name, level}`).
fn spellcasting_of(node: &Node) -> Res<(Value, Vec<Value>)> {
    let mut out = Map::new();
    if let Some(ability) = node.ref_of("ability")? {
        out.insert("ability".into(), json!(ability.to_ascii_lowercase()));
    }
    put(&mut out, "dc", node.i64_of("dc")?);
    put(&mut out, "modifier", node.i64_of("modifier")?);
    put(&mut out, "level", node.i64_of("level")?);
    put(&mut out, "school", node.str_of("school")?);
    if let Some(slots) = node.get("slots")? {
        let mut map = Map::new();
        for (level, count) in slots.entries()? {
            map.insert(level.to_owned(), json!(count.as_i64()?));
        }
        out.insert("slots".into(), Value::Object(map));
    }
    let components = node.names_of("components_required")?;
    if !components.is_empty() {
        out.insert("componentsRequired".into(), json!(components));
    }
    let mut list = Vec::new();
    let mut actor_spells = Vec::new();
    for spell in node.list_of("spells")? {
        let name = spell.req("name")?.as_str()?;
        let index = spell.as_ref_index()?;
        let reference = compendium_ref(SrdCategory::Spells, &index);
        let level = spell.i64_of("level")?;
        let mut entry = Map::new();
        entry.insert("ref".into(), json!(reference));
        entry.insert("name".into(), json!(name));
        put(&mut entry, "level", level);
        if let Some(usage) = spell.get("usage")? {
            entry.insert("usage".into(), usage_of(&usage)?);
        }
        put(&mut entry, "notes", spell.str_of("notes")?);
        list.push(Value::Object(entry));
        let mut actor_spell = Map::new();
        actor_spell.insert("ref".into(), json!(reference));
        actor_spell.insert("name".into(), json!(name));
        put(&mut actor_spell, "level", level);
        actor_spells.push(Value::Object(actor_spell));
    }
    out.insert("spells".into(), Value::Array(list));
    Ok((Value::Object(out), actor_spells))
}

// ---------------------------------------------------------------------------------------------
// Spells
// ---------------------------------------------------------------------------------------------

fn spell(rec: &Node) -> Res<Value> {
    let mut data = Map::new();
    data.insert("level".into(), json!(rec.req("level")?.as_i64()?));
    put(&mut data, "school", rec.ref_of("school")?);
    put(&mut data, "castingTime", rec.str_of("casting_time")?);
    put(&mut data, "range", rec.str_of("range")?);
    data.insert("components".into(), json!(rec.names_of("components")?));
    put(&mut data, "material", rec.str_of("material")?);
    put(&mut data, "duration", rec.str_of("duration")?);
    data.insert(
        "concentration".into(),
        json!(rec.bool_of("concentration")?.unwrap_or(false)),
    );
    data.insert(
        "ritual".into(),
        json!(rec.bool_of("ritual")?.unwrap_or(false)),
    );
    data.insert(
        "description".into(),
        json!(rec.text_of("desc")?.unwrap_or_default()),
    );
    put(&mut data, "higherLevel", rec.text_of("higher_level")?);
    put(&mut data, "attackType", rec.str_of("attack_type")?);

    if let Some(damage) = rec.get("damage")? {
        let mut out = Map::new();
        put(&mut out, "type", damage.ref_of("damage_type")?);
        put(
            &mut out,
            "atSlotLevel",
            dice_table(&damage, "damage_at_slot_level")?,
        );
        put(
            &mut out,
            "atCharacterLevel",
            dice_table(&damage, "damage_at_character_level")?,
        );
        if !out.is_empty() {
            data.insert("damage".into(), Value::Object(out));
        }
    }
    if let Some(heal) = dice_table(rec, "heal_at_slot_level")? {
        data.insert("heal".into(), json!({ "atSlotLevel": heal }));
    }
    if let Some(dc) = rec.get("dc")? {
        data.insert("save".into(), save_of(&dc)?);
    }
    if let Some(area) = rec.get("area_of_effect")? {
        let mut out = Map::new();
        put(&mut out, "type", area.str_of("type")?);
        put(&mut out, "size", area.i64_of("size")?);
        data.insert("area".into(), Value::Object(out));
    }
    data.insert("classes".into(), json!(rec.names_of("classes")?));
    let subclasses = rec.names_of("subclasses")?;
    if !subclasses.is_empty() {
        data.insert("subclasses".into(), json!(subclasses));
    }
    Ok(Value::Object(data))
}

/// `{"3": "8d6", "4": "9d6"}` with the dice compacted; `None` when absent or empty.
fn dice_table(node: &Node, key: &str) -> Res<Option<Value>> {
    let Some(table) = node.get(key)? else {
        return Ok(None);
    };
    let mut out = Map::new();
    for (level, expr) in table.entries()? {
        out.insert(level.to_owned(), json!(dice(expr.as_str()?)));
    }
    Ok(Some(Value::Object(out)).filter(|v| v.as_object().is_some_and(|m| !m.is_empty())))
}

// ---------------------------------------------------------------------------------------------
// Equipment
// ---------------------------------------------------------------------------------------------

fn equipment(rec: &Node) -> Res<Value> {
    let mut data = Map::new();
    put(
        &mut data,
        "equipmentCategory",
        rec.ref_of("equipment_category")?,
    );
    if let Some(cost) = rec.get("cost")? {
        let mut out = Map::new();
        put(&mut out, "quantity", cost.f64_of("quantity")?.map(number));
        put(&mut out, "unit", cost.str_of("unit")?);
        data.insert("cost".into(), Value::Object(out));
    }
    put(&mut data, "weight", rec.f64_of("weight")?.map(number));
    put(&mut data, "description", rec.text_of("desc")?);

    let weapon_category = rec.str_of("weapon_category")?;
    let weapon_range = rec.str_of("weapon_range")?;
    if weapon_category.is_some() || weapon_range.is_some() || rec.get("damage")?.is_some() {
        let mut weapon = Map::new();
        put(&mut weapon, "category", weapon_category);
        put(&mut weapon, "range", weapon_range);
        put(&mut weapon, "categoryRange", rec.str_of("category_range")?);
        if let Some(damage) = rec.get("damage")? {
            weapon.insert("damage".into(), damage_of(&damage)?);
        }
        if let Some(damage) = rec.get("two_handed_damage")? {
            weapon.insert("twoHandedDamage".into(), damage_of(&damage)?);
        }
        if let Some(range) = rec.get("range")? {
            put(&mut weapon, "normalRange", range.i64_of("normal")?);
            put(&mut weapon, "longRange", range.i64_of("long")?);
        }
        if let Some(range) = rec.get("throw_range")? {
            let mut out = Map::new();
            put(&mut out, "normal", range.i64_of("normal")?);
            put(&mut out, "long", range.i64_of("long")?);
            weapon.insert("throwRange".into(), Value::Object(out));
        }
        weapon.insert("properties".into(), json!(rec.names_of("properties")?));
        put(&mut weapon, "special", rec.text_of("special")?);
        data.insert("weapon".into(), Value::Object(weapon));
    }

    let armor_category = rec.str_of("armor_category")?;
    let armor_class = rec.get("armor_class")?;
    if armor_category.is_some() || armor_class.is_some() {
        let mut armor = Map::new();
        put(&mut armor, "category", armor_category);
        if let Some(ac) = armor_class {
            put(&mut armor, "baseAc", ac.i64_of("base")?);
            armor.insert(
                "dexBonus".into(),
                json!(ac.bool_of("dex_bonus")?.unwrap_or(false)),
            );
            put(&mut armor, "maxDexBonus", ac.i64_of("max_bonus")?);
        }
        armor.insert(
            "strMinimum".into(),
            json!(rec.i64_of("str_minimum")?.unwrap_or(0)),
        );
        armor.insert(
            "stealthDisadvantage".into(),
            json!(rec.bool_of("stealth_disadvantage")?.unwrap_or(false)),
        );
        data.insert("armor".into(), Value::Object(armor));
    }

    let gear_category = rec.ref_of("gear_category")?;
    let quantity = rec.i64_of("quantity")?;
    let contents = rec.list_of("contents")?;
    if gear_category.is_some() || quantity.is_some() || !contents.is_empty() {
        let mut gear = Map::new();
        put(&mut gear, "category", gear_category);
        put(&mut gear, "quantity", quantity);
        if !contents.is_empty() {
            let mut list = Vec::new();
            for content in &contents {
                let item = content.req("item")?.as_ref_index()?;
                let mut out = Map::new();
                out.insert(
                    "ref".into(),
                    json!(compendium_ref(SrdCategory::Equipment, &item)),
                );
                put(&mut out, "quantity", content.i64_of("quantity")?);
                list.push(Value::Object(out));
            }
            gear.insert("contents".into(), Value::Array(list));
        }
        data.insert("gear".into(), Value::Object(gear));
    }

    if let Some(category) = rec.str_of("tool_category")? {
        data.insert("tool".into(), json!({ "category": category }));
    }

    let vehicle_category = rec.str_of("vehicle_category")?;
    let speed = rec.get("speed")?;
    let capacity = rec.str_of("capacity")?;
    if vehicle_category.is_some() || speed.is_some() || capacity.is_some() {
        let mut vehicle = Map::new();
        put(&mut vehicle, "category", vehicle_category);
        if let Some(speed) = speed {
            let mut out = Map::new();
            put(&mut out, "quantity", speed.f64_of("quantity")?.map(number));
            put(&mut out, "unit", speed.str_of("unit")?);
            vehicle.insert("speed".into(), Value::Object(out));
        }
        put(&mut vehicle, "capacity", capacity);
        data.insert("vehicle".into(), Value::Object(vehicle));
    }
    Ok(Value::Object(data))
}

// ---------------------------------------------------------------------------------------------
// Built-in templates (written for this project; not SRD text)
// ---------------------------------------------------------------------------------------------

fn dmg(dice: &str, kind: &str) -> Value {
    json!({"damage_dice": dice, "damage_type": {"index": kind}})
}

fn builtin_records() -> Vec<Value> {
    let bandit_scout_actions = json!([
                {
                    "name": "Multiattack",
                    "desc": "The scout attacks twice, with its hooked blade or its bow.",
                    "multiattack_type": "action_options",
                    "action_options": {"choose": 1, "type": "action", "from": {
                        "option_set_type": "options_array",
                        "options": [
                            {"option_type": "action", "action_name": "Hooked Blade",
                             "count": 2, "type": "melee"},
                            {"option_type": "action", "action_name": "Hunting Bow",
                             "count": 2, "type": "ranged"}
                        ]
                    }}
                },
                {
                    "name": "Hooked Blade",
                    "desc": "Melee attack against one creature within 5 feet.",
                    "attack_bonus": 4,
                    "damage": [dmg("1d6+2", "slashing")]
                },
                {
                    "name": "Hunting Bow",
                    "desc": "Ranged attack against one creature up to 80 feet away, or 240 feet \
                             with disadvantage.",
                    "attack_bonus": 4,
                    "damage": [dmg("1d6+2", "piercing")]
                }
    ]);
    let ember_sprite_actions = json!([
                {
                    "name": "Singe",
                    "desc": "Melee attack with a flicking flame against one creature within 5 \
                             feet.",
                    "attack_bonus": 5,
                    "damage": [dmg("1d4+3", "fire")]
                },
                {
                    "name": "Spark Burst",
                    "desc": "The sprite bursts into sparks. Each creature within 10 feet makes a \
                             Dexterity save, taking the damage on a failure and half on a \
                             success.",
                    "usage": {"type": "recharge on roll", "dice": "1d6", "min_value": 5},
                    "dc": {"dc_type": {"index": "dex"}, "dc_value": 11, "success_type": "half"},
                    "damage": [dmg("2d6", "fire")]
                }
    ]);
    let bog_lurker_actions = json!([
                {
                    "name": "Multiattack",
                    "desc": "The lurker makes one snapping jaws attack and one tail lash attack.",
                    "multiattack_type": "actions",
                    "actions": [
                        {"action_name": "Snapping Jaws", "count": 1, "type": "melee"},
                        {"action_name": "Tail Lash", "count": 1, "type": "melee"}
                    ]
                },
                {
                    "name": "Snapping Jaws",
                    "desc": "Melee attack against one creature within 5 feet.",
                    "attack_bonus": 5,
                    "damage": [dmg("2d6+3", "piercing")]
                },
                {
                    "name": "Tail Lash",
                    "desc": "Melee attack against one creature within 10 feet. A Medium or \
                             smaller target must make a Strength save or be knocked prone.",
                    "attack_bonus": 5,
                    "dc": {"dc_type": {"index": "str"}, "dc_value": 13, "success_type": "none"},
                    "damage": [dmg("1d8+3", "bludgeoning")]
                }
    ]);
    vec![
        json!({
            "index": "dlab-training-dummy",
            "name": "Training Dummy",
            "size": "Medium",
            "type": "construct",
            "alignment": "unaligned",
            "armor_class": [{"type": "natural", "value": 10}],
            "hit_points": 30,
            "hit_dice": "4d10",
            "hit_points_roll": "4d10+8",
            "speed": {"walk": "0 ft."},
            "strength": 10, "dexterity": 1, "constitution": 14,
            "intelligence": 1, "wisdom": 1, "charisma": 1,
            "proficiencies": [],
            "condition_immunities": [
                {"index": "charmed"}, {"index": "frightened"}, {"index": "poisoned"}
            ],
            "damage_immunities": ["poison", "psychic"],
            "senses": {"passive_perception": 5},
            "languages": "",
            "challenge_rating": 0,
            "proficiency_bonus": 2,
            "xp": 0,
            "special_abilities": [{
                "name": "Bolted Down",
                "desc": "A post of oak and sacking sunk into the floor of the practice yard. It \
                         cannot be moved or knocked prone, and it never takes a turn of its own."
            }],
            "reactions": [{
                "name": "Swinging Arm",
                "desc": "When a creature misses the dummy with a melee attack, the padded arm \
                         swings round and cuffs it.",
                "attack_bonus": 2,
                "damage": [dmg("1d4", "bludgeoning")]
            }]
        }),
        json!({
            "index": "dlab-cave-rat",
            "name": "Cave Rat",
            "size": "Small",
            "type": "beast",
            "alignment": "unaligned",
            "armor_class": [{"type": "dex", "value": 12}],
            "hit_points": 9,
            "hit_dice": "2d6",
            "hit_points_roll": "2d6+2",
            "speed": {"walk": "30 ft.", "climb": "20 ft."},
            "strength": 6, "dexterity": 15, "constitution": 12,
            "intelligence": 2, "wisdom": 10, "charisma": 4,
            "proficiencies": [
                {"value": 4, "proficiency": {"index": "skill-stealth", "name": "Skill: Stealth"}},
                {"value": 2,
                 "proficiency": {"index": "skill-perception", "name": "Skill: Perception"}}
            ],
            "senses": {"darkvision": "60 ft.", "passive_perception": 12},
            "languages": "",
            "challenge_rating": 0.125,
            "proficiency_bonus": 2,
            "xp": 25,
            "special_abilities": [{
                "name": "Swarming Nuisance",
                "desc": "The rat has advantage on attack rolls against a creature that another \
                         cave rat is also biting."
            }],
            "actions": [{
                "name": "Gnawing Bite",
                "desc": "Melee attack with yellowed teeth against one creature within 5 feet.",
                "attack_bonus": 4,
                "damage": [dmg("1d4+2", "piercing")]
            }]
        }),
        json!({
            "index": "dlab-bandit-scout",
            "name": "Bandit Scout",
            "size": "Medium",
            "type": "humanoid",
            "subtype": "any race",
            "alignment": "chaotic neutral",
            "armor_class": [{
                "type": "armor", "value": 13,
                "armor": [{"index": "leather-armor", "name": "Leather Armor"}]
            }],
            "hit_points": 16,
            "hit_dice": "3d8",
            "hit_points_roll": "3d8+3",
            "speed": {"walk": "35 ft."},
            "strength": 10, "dexterity": 15, "constitution": 12,
            "intelligence": 10, "wisdom": 12, "charisma": 9,
            "proficiencies": [
                {"value": 4,
                 "proficiency": {"index": "saving-throw-dex", "name": "Saving Throw: DEX"}},
                {"value": 3,
                 "proficiency": {"index": "skill-perception", "name": "Skill: Perception"}},
                {"value": 4, "proficiency": {"index": "skill-stealth", "name": "Skill: Stealth"}},
                {"value": 3, "proficiency": {"index": "skill-survival", "name": "Skill: Survival"}}
            ],
            "senses": {"passive_perception": 13},
            "languages": "Common",
            "challenge_rating": 0.5,
            "proficiency_bonus": 2,
            "xp": 100,
            "special_abilities": [{
                "name": "Lookout",
                "desc": "While the scout is on higher ground than a creature, it has advantage \
                         on Wisdom (Perception) checks to spot that creature."
            }],
            "actions": bandit_scout_actions
        }),
        json!({
            "index": "dlab-ember-sprite",
            "name": "Ember Sprite",
            "size": "Tiny",
            "type": "elemental",
            "alignment": "chaotic neutral",
            "armor_class": [{"type": "dex", "value": 13}],
            "hit_points": 10,
            "hit_dice": "4d4",
            "hit_points_roll": "4d4",
            "speed": {"walk": "10 ft.", "fly": "40 ft.", "hover": true},
            "strength": 3, "dexterity": 16, "constitution": 10,
            "intelligence": 8, "wisdom": 12, "charisma": 11,
            "proficiencies": [],
            "damage_vulnerabilities": ["cold"],
            "damage_immunities": ["fire"],
            "condition_immunities": [{"index": "poisoned"}],
            "senses": {"darkvision": "60 ft.", "passive_perception": 11},
            "languages": "Ignan",
            "challenge_rating": 0.25,
            "proficiency_bonus": 2,
            "xp": 50,
            "special_abilities": [{
                "name": "Cinder Glow",
                "desc": "The sprite lights the space around it like a candle. Dousing it in a \
                         gallon of water deals 1d6 cold damage to it."
            }],
            "actions": ember_sprite_actions
        }),
        json!({
            "index": "dlab-bog-lurker",
            "name": "Bog Lurker",
            "size": "Large",
            "type": "monstrosity",
            "alignment": "neutral",
            "armor_class": [{"type": "natural", "value": 14}],
            "hit_points": 45,
            "hit_dice": "6d10",
            "hit_points_roll": "6d10+12",
            "speed": {"walk": "20 ft.", "swim": "40 ft."},
            "strength": 17, "dexterity": 10, "constitution": 15,
            "intelligence": 3, "wisdom": 12, "charisma": 5,
            "proficiencies": [
                {"value": 4,
                 "proficiency": {"index": "saving-throw-con", "name": "Saving Throw: CON"}},
                {"value": 2, "proficiency": {"index": "skill-stealth", "name": "Skill: Stealth"}}
            ],
            "damage_resistances": ["poison"],
            "senses": {"darkvision": "60 ft.", "passive_perception": 11},
            "languages": "",
            "challenge_rating": 2,
            "proficiency_bonus": 2,
            "xp": 450,
            "special_abilities": [{
                "name": "Reed Cover",
                "desc": "Lying still in shallow water, the lurker looks like a heap of rotting \
                         reeds until it moves."
            }],
            "actions": bog_lurker_actions
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::{CreateFromTemplate, create_from_template};
    use crate::ids::{ActorId, CampaignId, UserId};

    /// Goblin-like numbers (facts), placeholder prose.
    fn goblin_record() -> Value {
        json!({
            "index": "goblin",
            "name": "Goblin",
            "size": "Small",
            "type": "humanoid",
            "subtype": "goblinoid",
            "alignment": "neutral evil",
            "armor_class": [{"type": "armor", "value": 15, "armor": [
                {"index": "leather-armor", "name": "Leather Armor", "url": "/x/leather-armor"},
                {"index": "shield", "name": "Shield", "url": "/x/shield"}
            ]}],
            "hit_points": 7,
            "hit_dice": "2d6",
            "hit_points_roll": "2d6",
            "speed": {"walk": "30 ft."},
            "strength": 8, "dexterity": 14, "constitution": 10,
            "intelligence": 10, "wisdom": 8, "charisma": 8,
            "proficiencies": [{"value": 6, "proficiency": {
                "index": "skill-stealth", "name": "Skill: Stealth", "url": "/x"
            }}],
            "damage_vulnerabilities": [],
            "damage_resistances": [],
            "damage_immunities": [],
            "condition_immunities": [],
            "senses": {"passive_perception": 9, "darkvision": "60 ft."},
            "languages": "Common, Goblin",
            "challenge_rating": 0.25,
            "proficiency_bonus": 2,
            "xp": 50,
            "special_abilities": [{"name": "Nimble Escape", "desc": "test trait"}],
            "actions": [{
                "name": "Scimitar",
                "desc": "test attack",
                "attack_bonus": 4,
                "damage": [{
                    "damage_type": {"index": "slashing", "name": "Slashing", "url": "/x"},
                    "damage_dice": "1d6+2"
                }]
            }],
            "url": "/x/goblin"
        })
    }

    fn minimal_monster(extra: Value) -> Value {
        let mut record = json!({
            "index": "thing",
            "name": "Thing",
            "armor_class": [{"type": "natural", "value": 12}],
            "hit_points": 10,
            "challenge_rating": 1.0,
        });
        crate::actor::deep_merge(&mut record, &extra);
        record
    }

    fn map(category: SrdCategory, record: &Value) -> CompendiumEntry {
        to_entry(category, record).unwrap_or_else(|e| panic!("{e}"))
    }

    fn field_error(category: SrdCategory, record: &Value) -> (String, String, String) {
        match to_entry(category, record) {
            Err(SrdError::Field {
                index,
                field,
                reason,
                ..
            }) => (index, field, reason),
            Ok(entry) => panic!("expected an error, got {}", entry.data),
        }
    }

    #[test]
    fn given_goblin_record_then_template_has_its_numbers_and_structured_attack() {
        let entry = map(SrdCategory::Monsters, &goblin_record());

        assert_eq!(entry.reference, "dnd5e:monsters:goblin");
        assert_eq!(
            (entry.system.as_str(), entry.category.as_str()),
            ("dnd5e", "monsters")
        );
        assert_eq!(entry.name, "Goblin");
        assert!(entry.is_actor_template());
        assert_eq!(entry.challenge_rating(), Some(0.25));
        let attrs = &entry.data["attributes"];
        assert_eq!(
            attrs["hp"],
            json!({"value": 7, "max": 7, "formula": "2d6", "hitDice": "2d6"})
        );
        assert_eq!(attrs["ac"], json!(15));
        assert_eq!(
            attrs["acSources"],
            json!([{"type": "armor", "value": 15, "armor": ["leather-armor", "shield"]}])
        );
        assert_eq!(attrs["speed"], json!(30));
        assert_eq!(attrs["movement"], json!({"walk": 30}));
        assert_eq!(attrs["skills"], json!({"stealth": 6}));
        assert_eq!(attrs["saves"], json!({}));
        assert_eq!(attrs["xp"], json!(50));
        assert_eq!(attrs["proficiencyBonus"], json!(2));
        assert_eq!(
            attrs["abilities"],
            json!({"str": 8, "dex": 14, "con": 10, "int": 10, "wis": 8, "cha": 8})
        );
        assert_eq!(
            attrs["senses"],
            json!({"passivePerception": 9, "darkvision": "60 ft."})
        );
        assert_eq!(attrs["creatureType"], json!("humanoid"));
        assert_eq!(attrs["subtype"], json!("goblinoid"));
        assert_eq!(attrs["languages"], json!("Common, Goblin"));
        assert_eq!(attrs["conditionImmunities"], json!([]));
        assert_eq!(
            entry.data["features"],
            json!([
                {"name": "Nimble Escape", "kind": "trait", "description": "test trait"},
                {"name": "Scimitar", "kind": "action", "description": "test attack",
                 "attackBonus": 4, "damage": [{"dice": "1d6+2", "type": "slashing"}]}
            ])
        );
        assert_eq!(
            entry.data["equipment"],
            json!([
                {"ref": "dnd5e:equipment:leather-armor", "name": "Leather Armor"},
                {"ref": "dnd5e:equipment:shield", "name": "Shield"}
            ])
        );
    }

    #[test]
    fn given_goblin_template_when_creating_an_actor_then_the_copy_is_complete() {
        let entry = map(SrdCategory::Monsters, &goblin_record());
        let request = CreateFromTemplate {
            compendium_ref: entry.reference.clone(),
            name: None,
            customizations: None,
        };

        let actor = create_from_template(
            Some(&entry),
            &request,
            &CampaignId::new("c-1"),
            ActorId::new("a-1"),
            &UserId::new("u-1"),
            1,
        )
        .unwrap();

        assert_eq!(actor.name, "Goblin");
        assert_eq!((actor.attributes.hp.value, actor.attributes.hp.max), (7, 7));
        assert_eq!((actor.attributes.ac, actor.attributes.speed), (15, 30));
        assert_eq!(actor.attributes.skills["stealth"], 6);
        assert_eq!(actor.attributes.extra["challengeRating"], json!(0.25));
        assert_eq!(actor.features.len(), 2);
        assert_eq!(actor.equipment.len(), 2);
    }

    #[test]
    fn given_dc_save_action_with_usage_then_save_and_usage_are_structured() {
        let record = minimal_monster(json!({"actions": [{
            "name": "Breath",
            "desc": "x",
            "usage": {"type": "recharge on roll", "dice": "1d6", "min_value": 5},
            "dc": {"dc_type": {"index": "dex", "name": "DEX"}, "dc_value": 13,
                   "success_type": "half"},
            "damage": [{"damage_type": {"index": "fire"}, "damage_dice": "4d6"}]
        }, {
            "name": "Gaze",
            "desc": "x",
            "usage": {"type": "per day", "times": 3},
            "dc": {"dc_type": {"name": "WIS"}, "dc_value": 12, "success_type": "none"}
        }]}));

        let features = map(SrdCategory::Monsters, &record).data["features"].clone();

        assert_eq!(
            features[0]["save"],
            json!({"ability": "dex", "dc": 13, "onSuccess": "half"})
        );
        assert_eq!(
            features[0]["usage"],
            json!({"type": "rechargeOnRoll", "dice": "1d6", "minValue": 5})
        );
        assert_eq!(
            features[0]["damage"],
            json!([{"dice": "4d6", "type": "fire"}])
        );
        assert_eq!(
            features[1]["save"],
            json!({"ability": "wis", "dc": 12, "onSuccess": "none"})
        );
        assert_eq!(features[1]["usage"], json!({"type": "perDay", "times": 3}));
        assert!(features[1].get("damage").is_none());
    }

    #[test]
    fn given_choice_damage_then_fixed_damage_and_options_are_separate() {
        let record = minimal_monster(json!({"actions": [{
            "name": "Longsword",
            "desc": "x",
            "attack_bonus": 6,
            "damage": [
                {"damage_type": {"index": "slashing"}, "damage_dice": "1d6 + 1"},
                {"choose": 1, "type": "damage", "from": {"option_set_type": "options_array",
                 "options": [
                    {"option_type": "damage", "damage_dice": "1d8+3",
                     "damage_type": {"index": "slashing"}, "notes": "One handed"},
                    {"option_type": "damage", "damage_dice": "1d10+3",
                     "damage_type": {"index": "slashing"}, "notes": "Two handed"}
                 ]}}
            ]
        }]}));

        let feature = map(SrdCategory::Monsters, &record).data["features"][0].clone();

        assert_eq!(feature["attackBonus"], json!(6));
        assert_eq!(
            feature["damage"],
            json!([{"dice": "1d6+1", "type": "slashing"}])
        );
        assert_eq!(
            feature["damageOptions"],
            json!([
                {"dice": "1d8+3", "type": "slashing", "note": "One handed"},
                {"dice": "1d10+3", "type": "slashing", "note": "Two handed"}
            ])
        );
        assert!(feature.get("damageOptionsChoose").is_none());
    }

    #[test]
    fn given_damage_with_its_own_save_then_the_save_is_on_that_damage() {
        let record = minimal_monster(json!({"actions": [{
            "name": "Poisoned Blade", "desc": "x", "attack_bonus": 6,
            "damage": [
                {"damage_type": {"index": "piercing"}, "damage_dice": "1d6+3"},
                {"damage_type": {"index": "poison"}, "damage_dice": "7d6",
                 "dc": {"dc_type": {"index": "con"}, "dc_value": 15, "success_type": "half"}}
            ]
        }]}));

        let feature = map(SrdCategory::Monsters, &record).data["features"][0].clone();

        assert_eq!(
            feature["damage"][1],
            json!({"dice": "7d6", "type": "poison",
                   "save": {"ability": "con", "dc": 15, "onSuccess": "half"}})
        );
    }

    #[test]
    fn given_multiattacks_and_breath_options_then_they_are_lists() {
        let record = minimal_monster(json!({"actions": [
            {"name": "Multiattack", "desc": "x", "multiattack_type": "actions",
             "actions": [{"action_name": "Bite", "count": 1, "type": "melee"},
                         {"action_name": "Claw", "count": "2", "type": "melee"},
                         {"action_name": "Head", "count": "Number of Heads", "type": "melee"}]},
            {"name": "Multiattack", "desc": "x", "multiattack_type": "action_options",
             "action_options": {"choose": 1, "type": "action", "from": {"options": [
                {"option_type": "multiple", "items": [
                    {"option_type": "action", "action_name": "Sword", "count": 2, "type": "melee"},
                    {"option_type": "action", "action_name": "Dagger", "count": 1,
                     "type": "melee"}]},
                {"option_type": "action", "action_name": "Dagger", "count": 2, "type": "ranged"}
             ]}}},
            {"name": "Breath Weapons", "desc": "x",
             "usage": {"type": "recharge on roll", "dice": "1d6", "min_value": 5},
             "options": {"choose": 1, "type": "attack", "from": {"options": [
                {"option_type": "breath", "name": "Fire Breath",
                 "dc": {"dc_type": {"index": "dex"}, "dc_value": 18, "success_type": "half"},
                 "damage": [{"damage_type": {"index": "fire"}, "damage_dice": "13d6"}]},
                {"option_type": "breath", "name": "Sleep Breath",
                 "dc": {"dc_type": {"index": "con"}, "dc_value": 18, "success_type": "none"}}
             ]}}}
        ]}));

        let features = map(SrdCategory::Monsters, &record).data["features"].clone();

        assert_eq!(
            features[0]["multiattack"],
            json!({"actions": [
                {"name": "Bite", "count": 1, "type": "melee"},
                {"name": "Claw", "count": 2, "type": "melee"},
                {"name": "Head", "count": "Number of Heads", "type": "melee"}
            ]})
        );
        assert_eq!(
            features[1]["multiattack"],
            json!({"options": [
                [{"name": "Sword", "count": 2, "type": "melee"},
                 {"name": "Dagger", "count": 1, "type": "melee"}],
                [{"name": "Dagger", "count": 2, "type": "ranged"}]
            ]})
        );
        assert_eq!(
            features[2]["options"],
            json!([
                {"name": "Fire Breath",
                 "damage": [{"dice": "13d6", "type": "fire"}],
                 "save": {"ability": "dex", "dc": 18, "onSuccess": "half"}},
                {"name": "Sleep Breath",
                 "save": {"ability": "con", "dc": 18, "onSuccess": "none"}}
            ])
        );
    }

    #[test]
    fn given_feature_lists_then_each_has_its_kind() {
        let record = minimal_monster(json!({
            "special_abilities": [{"name": "A", "desc": "x"}],
            "actions": [{"name": "B", "desc": "x"}],
            "legendary_actions": [{"name": "C", "desc": "x"},
                                  {"name": "E (Costs 2 Actions)", "desc": "x"}],
            "reactions": [{"name": "D", "desc": "x"}]
        }));

        let features = map(SrdCategory::Monsters, &record).data["features"].clone();

        let kinds: Vec<_> = features
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("A", "trait"),
                ("B", "action"),
                ("C", "legendary"),
                ("E (Costs 2 Actions)", "legendary"),
                ("D", "reaction")
            ]
        );
        assert_eq!(
            (features[2]["cost"].clone(), features[3]["cost"].clone()),
            (json!(1), json!(2))
        );
        assert!(features[1].get("cost").is_none());
    }

    #[test]
    fn given_speeds_then_walk_is_the_speed_and_every_mode_is_in_movement() {
        let flyer = minimal_monster(json!({"speed": {"walk": "10 ft.", "fly": "90 ft.",
                                                     "hover": true, "burrow": "5 ft."}}));
        let swimmer = minimal_monster(json!({"speed": {"swim": "40 ft."}}));
        let number = minimal_monster(json!({"speed": 25}));
        let none = minimal_monster(json!({}));

        let attrs = |r: &Value| map(SrdCategory::Monsters, r).data["attributes"].clone();

        assert_eq!(attrs(&flyer)["speed"], json!(10));
        assert_eq!(
            attrs(&flyer)["movement"],
            json!({"walk": 10, "fly": 90, "hover": true, "burrow": 5})
        );
        assert_eq!(attrs(&swimmer)["speed"], json!(0));
        assert_eq!(attrs(&swimmer)["movement"], json!({"swim": 40}));
        assert_eq!(attrs(&number)["speed"], json!(25));
        assert_eq!(attrs(&none)["speed"], json!(0));
    }

    #[test]
    fn given_unreadable_speed_then_the_error_names_it() {
        let record = minimal_monster(json!({"speed": {"walk": "fast"}}));

        let (index, field, reason) = field_error(SrdCategory::Monsters, &record);

        assert_eq!((index.as_str(), field.as_str()), ("thing", "speed.walk"));
        assert!(reason.contains("\"fast\""), "{reason}");
    }

    #[test]
    fn given_proficiencies_then_saves_and_skills_are_keyed() {
        let record = minimal_monster(json!({"proficiencies": [
            {"value": 6, "proficiency": {"index": "saving-throw-con", "name": "Saving Throw: CON"}},
            {"value": 2, "proficiency": {"name": "Saving Throw: DEX"}},
            {"value": 12, "proficiency": {"index": "skill-history", "name": "Skill: History"}},
            {"value": 5, "proficiency": {"index": "skill-animal-handling",
                                         "name": "Skill: Animal Handling"}},
            {"value": 4, "proficiency": {"name": "Skill: Sleight of Hand"}},
            {"value": 3, "proficiency": {"index": "tool-x", "name": "Tool: X"}}
        ]}));

        let attrs = map(SrdCategory::Monsters, &record).data["attributes"].clone();

        assert_eq!(attrs["saves"], json!({"con": 6, "dex": 2}));
        assert_eq!(
            attrs["skills"],
            json!({"history": 12, "animalHandling": 5, "sleightOfHand": 4})
        );
        assert_eq!(
            attrs["otherProficiencies"],
            json!([{"name": "Tool: X", "value": 3}])
        );
    }

    #[test]
    fn given_monster_with_two_ac_sources_then_the_first_is_the_ac() {
        let record = minimal_monster(json!({"armor_class": [
            {"type": "dex", "value": 12},
            {"type": "spell", "value": 15, "spell": {"index": "mage-armor", "name": "Mage Armor"}}
        ], "challenge_rating": 12.0, "damage_immunities": ["poison"],
           "condition_immunities": [{"index": "poisoned", "name": "Poisoned"}]}));

        let entry = map(SrdCategory::Monsters, &record);
        let attrs = &entry.data["attributes"];

        assert_eq!(attrs["ac"], json!(12));
        assert_eq!(
            attrs["acSources"],
            json!([{"type": "dex", "value": 12},
                   {"type": "spell", "value": 15, "spell": "mage-armor"}])
        );
        assert_eq!(attrs["challengeRating"], json!(12));
        assert_eq!(entry.challenge_rating(), Some(12.0));
        assert_eq!(attrs["damageImmunities"], json!(["poison"]));
        assert_eq!(attrs["conditionImmunities"], json!(["poisoned"]));
    }

    #[test]
    fn given_spellcasting_trait_then_the_spells_are_refs_on_the_actor() {
        let record = minimal_monster(json!({"special_abilities": [{
            "name": "Spellcasting", "desc": "x",
            "spellcasting": {
                "ability": {"index": "wis", "name": "WIS"},
                "dc": 12, "modifier": 4, "level": 1, "school": "cleric",
                "slots": {"1": 3},
                "components_required": ["V", "S", "M"],
                "spells": [
                    {"name": "Light", "level": 0, "url": "/api/2014/spells/light"},
                    {"name": "Bless", "level": 1, "url": "/api/2014/spells/bless",
                     "usage": {"type": "at will"}}
                ]
            }
        }]}));

        let entry = map(SrdCategory::Monsters, &record);

        assert_eq!(
            entry.data["spells"],
            json!([
                {"ref": "dnd5e:spells:light", "name": "Light", "level": 0},
                {"ref": "dnd5e:spells:bless", "name": "Bless", "level": 1}
            ])
        );
        let casting = &entry.data["features"][0]["spellcasting"];
        assert_eq!(casting["ability"], json!("wis"));
        assert_eq!(casting["dc"], json!(12));
        assert_eq!(casting["slots"], json!({"1": 3}));
        assert_eq!(casting["spells"][1]["usage"], json!({"type": "atWill"}));
    }

    #[test]
    fn given_cantrip_then_level_is_zero_and_damage_scales_by_character_level() {
        let record = json!({
            "index": "spark", "name": "Spark", "desc": ["p1", "p2"],
            "range": "120 feet", "components": ["V", "S"], "ritual": false,
            "duration": "Instantaneous", "concentration": false, "casting_time": "1 action",
            "level": 0, "attack_type": "ranged",
            "damage": {"damage_type": {"index": "fire"},
                       "damage_at_character_level": {"1": "1d10", "5": "2d10"}},
            "school": {"index": "evocation", "name": "Evocation"},
            "classes": [{"index": "wizard", "name": "Wizard"}], "subclasses": []
        });

        let entry = map(SrdCategory::Spells, &record);

        assert_eq!(entry.reference, "dnd5e:spells:spark");
        assert_eq!(entry.spell_level(), Some(0));
        assert!(!entry.is_actor_template());
        assert_eq!(
            entry.data,
            json!({
                "level": 0, "school": "evocation", "castingTime": "1 action",
                "range": "120 feet", "components": ["V", "S"], "duration": "Instantaneous",
                "concentration": false, "ritual": false, "description": "p1\n\np2",
                "attackType": "ranged",
                "damage": {"type": "fire", "atCharacterLevel": {"1": "1d10", "5": "2d10"}},
                "classes": ["wizard"]
            })
        );
    }

    #[test]
    fn given_upcast_spell_then_slot_table_save_area_and_heal_are_structured() {
        let blast = json!({
            "index": "blast", "name": "Blast", "desc": ["p"], "higher_level": ["h"],
            "range": "150 feet", "components": ["V", "S", "M"], "material": "m",
            "ritual": false, "duration": "Instantaneous", "concentration": false,
            "casting_time": "1 action", "level": 3,
            "damage": {"damage_type": {"index": "fire"},
                       "damage_at_slot_level": {"3": "8d6", "4": "9d6"}},
            "dc": {"dc_type": {"index": "dex", "name": "DEX"}, "dc_success": "half"},
            "area_of_effect": {"size": 20, "type": "sphere"},
            "school": {"index": "evocation"}, "classes": [{"index": "wizard"}],
            "subclasses": [{"index": "lore"}]
        });
        let mend = json!({
            "index": "mend", "name": "Mend", "desc": ["p"], "level": 1,
            "heal_at_slot_level": {"1": "1d8 + MOD", "2": "2d8 + MOD"},
            "components": ["V", "S"], "school": {"index": "evocation"}, "classes": []
        });

        let blast = map(SrdCategory::Spells, &blast);
        let mend = map(SrdCategory::Spells, &mend);

        assert_eq!(blast.spell_level(), Some(3));
        assert_eq!(
            blast.data["damage"],
            json!({"type": "fire", "atSlotLevel": {"3": "8d6", "4": "9d6"}})
        );
        assert_eq!(
            blast.data["save"],
            json!({"ability": "dex", "onSuccess": "half"})
        );
        assert_eq!(blast.data["area"], json!({"type": "sphere", "size": 20}));
        assert_eq!(blast.data["higherLevel"], json!("h"));
        assert_eq!(blast.data["material"], json!("m"));
        assert_eq!(blast.data["components"], json!(["V", "S", "M"]));
        assert_eq!(blast.data["subclasses"], json!(["lore"]));
        assert_eq!(
            mend.data["heal"],
            json!({"atSlotLevel": {"1": "1d8+MOD", "2": "2d8+MOD"}})
        );
        assert_eq!(mend.data["concentration"], json!(false));
    }

    #[test]
    fn given_spell_without_or_with_fractional_level_then_the_error_names_level() {
        let missing = json!({"index": "x", "name": "X"});
        let fractional = json!({"index": "x", "name": "X", "level": 1.5});

        let (_, field, reason) = field_error(SrdCategory::Spells, &missing);
        let (_, field2, reason2) = field_error(SrdCategory::Spells, &fractional);

        assert_eq!((field.as_str(), reason.as_str()), ("level", "missing"));
        assert_eq!(field2, "level");
        assert!(reason2.contains("integer"), "{reason2}");
    }

    #[test]
    fn given_weapon_then_damage_range_and_properties_are_structured() {
        let sword = json!({
            "index": "longsword", "name": "Longsword",
            "equipment_category": {"index": "weapon", "name": "Weapon"},
            "cost": {"quantity": 15, "unit": "gp"}, "weight": 3.0,
            "category_range": "Martial Melee", "weapon_category": "Martial",
            "weapon_range": "Melee", "range": {"normal": 5},
            "damage": {"damage_type": {"index": "slashing"}, "damage_dice": "1d8"},
            "two_handed_damage": {"damage_type": {"index": "slashing"}, "damage_dice": "1d10"},
            "properties": [{"index": "versatile", "name": "Versatile"}]
        });
        let bow = json!({
            "index": "longbow", "name": "Longbow",
            "equipment_category": {"index": "weapon"}, "cost": {"quantity": 50, "unit": "gp"},
            "weight": 2.5, "weapon_category": "Martial", "weapon_range": "Ranged",
            "range": {"normal": 150, "long": 600},
            "damage": {"damage_type": {"index": "piercing"}, "damage_dice": "1d8"},
            "properties": [{"index": "ammunition"}, {"index": "two-handed"}]
        });

        let sword = map(SrdCategory::Equipment, &sword);
        let bow = map(SrdCategory::Equipment, &bow);

        assert_eq!(
            sword.data,
            json!({
                "equipmentCategory": "weapon",
                "cost": {"quantity": 15, "unit": "gp"},
                "weight": 3,
                "weapon": {
                    "category": "Martial", "range": "Melee", "categoryRange": "Martial Melee",
                    "damage": {"dice": "1d8", "type": "slashing"},
                    "twoHandedDamage": {"dice": "1d10", "type": "slashing"},
                    "normalRange": 5,
                    "properties": ["versatile"]
                }
            })
        );
        assert_eq!(bow.data["weight"], json!(2.5));
        assert_eq!(bow.data["weapon"]["normalRange"], json!(150));
        assert_eq!(bow.data["weapon"]["longRange"], json!(600));
        assert_eq!(
            bow.data["weapon"]["properties"],
            json!(["ammunition", "two-handed"])
        );
        assert_eq!(bow.spell_level(), None);
    }

    #[test]
    fn given_armor_then_its_rules_are_structured() {
        let chain = json!({
            "index": "chain-mail", "name": "Chain Mail",
            "equipment_category": {"index": "armor"}, "cost": {"quantity": 75, "unit": "gp"},
            "weight": 55.0, "armor_category": "Heavy",
            "armor_class": {"base": 16, "dex_bonus": false},
            "stealth_disadvantage": true, "str_minimum": 13
        });
        let scale = json!({
            "index": "scale-mail", "name": "Scale Mail", "armor_category": "Medium",
            "armor_class": {"base": 14, "dex_bonus": true, "max_bonus": 2}
        });

        let chain = map(SrdCategory::Equipment, &chain);
        let scale = map(SrdCategory::Equipment, &scale);

        assert_eq!(
            chain.data["armor"],
            json!({"category": "Heavy", "baseAc": 16, "dexBonus": false,
                   "strMinimum": 13, "stealthDisadvantage": true})
        );
        assert_eq!(
            scale.data["armor"],
            json!({"category": "Medium", "baseAc": 14, "dexBonus": true, "maxDexBonus": 2,
                   "strMinimum": 0, "stealthDisadvantage": false})
        );
        assert!(scale.data.get("weapon").is_none());
    }

    #[test]
    fn given_gear_tool_and_vehicle_then_each_has_its_block() {
        let pack = json!({
            "index": "pack", "name": "Pack", "equipment_category": {"index": "adventuring-gear"},
            "gear_category": {"index": "equipment-packs"}, "desc": ["d"],
            "contents": [{"item": {"index": "torch", "url": "/x/torch"}, "quantity": 10}]
        });
        let arrows = json!({"index": "arrow", "name": "Arrow",
                            "gear_category": {"index": "ammunition"}, "quantity": 20});
        let tools = json!({"index": "t", "name": "T", "tool_category": "Other Tools"});
        let boat = json!({"index": "boat", "name": "Boat", "vehicle_category": "Waterborne",
                          "speed": {"quantity": 1.5, "unit": "mph"}});

        assert_eq!(
            map(SrdCategory::Equipment, &pack).data,
            json!({"equipmentCategory": "adventuring-gear", "description": "d",
                   "gear": {"category": "equipment-packs",
                            "contents": [{"ref": "dnd5e:equipment:torch", "quantity": 10}]}})
        );
        assert_eq!(
            map(SrdCategory::Equipment, &arrows).data["gear"],
            json!({"category": "ammunition", "quantity": 20})
        );
        assert_eq!(
            map(SrdCategory::Equipment, &tools).data["tool"],
            json!({"category": "Other Tools"})
        );
        assert_eq!(
            map(SrdCategory::Equipment, &boat).data["vehicle"],
            json!({"category": "Waterborne", "speed": {"quantity": 1.5, "unit": "mph"}})
        );
    }

    #[test]
    fn given_records_without_index_or_name_then_the_error_names_the_field() {
        for category in SrdCategory::ALL {
            let (index, field, reason) = field_error(category, &json!({"name": "X"}));
            assert_eq!(
                (index.as_str(), field.as_str(), reason.as_str()),
                ("?", "index", "missing")
            );

            let (index, field, _) = field_error(category, &json!({"index": "x", "name": 3}));
            assert_eq!((index.as_str(), field.as_str()), ("x", "name"));

            let (_, field, _) = field_error(category, &json!({"index": "Bad Index", "name": "X"}));
            assert_eq!(field, "index");

            let (_, field, _) = field_error(category, &json!([1]));
            assert_eq!(field, "(record)");
        }
    }

    #[test]
    fn given_wrongly_typed_monster_fields_then_the_error_names_the_path() {
        let cases = [
            (json!({"hit_points": "7"}), "hit_points"),
            (json!({"armor_class": []}), "armor_class"),
            (
                json!({"armor_class": [{"type": "dex"}]}),
                "armor_class[0].value",
            ),
            (json!({"challenge_rating": "1/4"}), "challenge_rating"),
            (
                json!({"senses": {"passive_perception": "9"}}),
                "senses.passive_perception",
            ),
            (
                json!({"actions": [{"name": "A", "damage": [{"damage_dice": 4}]}]}),
                "actions[0].damage[0].damage_dice",
            ),
            (
                json!({"actions": [{"name": "A", "attack_bonus": "+4"}]}),
                "actions[0].attack_bonus",
            ),
            (json!({"reactions": [{"desc": "x"}]}), "reactions[0].name"),
        ];
        for (extra, path) in cases {
            let mut record = minimal_monster(json!({}));
            crate::actor::deep_merge(&mut record, &extra);

            let (index, field, _) = field_error(SrdCategory::Monsters, &record);

            assert_eq!((index.as_str(), field.as_str()), ("thing", path), "{extra}");
        }
        let mut no_hp = minimal_monster(json!({}));
        no_hp.as_object_mut().unwrap().remove("hit_points");
        let err = to_entry(SrdCategory::Monsters, &no_hp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "monsters record thing: field hit_points: missing"
        );
    }

    #[test]
    fn given_minimal_records_then_optional_fields_are_omitted_not_errors() {
        let monster = map(
            SrdCategory::Monsters,
            &minimal_monster(json!({"speed": null})),
        );
        let item = map(
            SrdCategory::Equipment,
            &json!({"index": "rock", "name": "Rock"}),
        );

        assert_eq!(
            monster.data["attributes"]["hp"],
            json!({"value": 10, "max": 10})
        );
        assert_eq!(monster.data["features"], json!([]));
        assert!(monster.data["attributes"].get("xp").is_none());
        assert_eq!(item.data, json!({}));
    }

    #[test]
    fn given_builtin_templates_then_they_are_project_made_playable_monsters() {
        let templates = builtin_templates();

        assert!((4..=6).contains(&templates.len()));
        for entry in &templates {
            let slug = entry.reference.strip_prefix("dnd5e:monsters:").unwrap();
            assert!(slug.starts_with(BUILTIN_PREFIX), "{}", entry.reference);
            assert_eq!(
                (entry.system.as_str(), entry.category.as_str()),
                (SYSTEM, "monsters")
            );
            assert!(entry.is_actor_template());
            assert!(entry.challenge_rating().is_some());
            let attacks = entry.data["features"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f.get("attackBonus").is_some() || f.get("save").is_some())
                .count();
            assert!((1..=2).contains(&attacks), "{}: {attacks}", entry.name);
            let request = CreateFromTemplate {
                compendium_ref: entry.reference.clone(),
                name: None,
                customizations: None,
            };
            let actor = create_from_template(
                Some(entry),
                &request,
                &CampaignId::new("c-1"),
                ActorId::new("a-1"),
                &UserId::new("u-1"),
                1,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
            assert_eq!(actor.attributes.hp.value, actor.attributes.hp.max);
        }
        let mut refs: Vec<_> = templates.iter().map(|t| &t.reference).collect();
        refs.sort();
        refs.dedup();
        assert_eq!(refs.len(), templates.len());
    }

    #[test]
    fn given_text_helpers_then_they_normalise() {
        assert_eq!(camel("animal-handling"), "animalHandling");
        assert_eq!(camel("Sleight of Hand"), "sleightOfHand");
        assert_eq!(camel("passive_perception"), "passivePerception");
        assert_eq!(camel("recharge after rest"), "rechargeAfterRest");
        assert_eq!(slug("Thieves' Tools"), "thieves-tools");
        assert_eq!(dice(" 3d4 + 3 "), "3d4+3");
        assert_eq!(number(0.25), json!(0.25));
        assert_eq!(number(2.0), json!(2));
    }
}
