//! SRD 5.1 records (the `5e-database` JSON of a monster, spell or equipment item) mapped to
//! compendium templates with refs `dnd5e:<category>:<index>`.
//!
//! PLACEHOLDER API: the signatures below are fixed; the bodies are being written.

use serde_json::{Value, json};
use thiserror::Error;

use crate::actor::CompendiumEntry;

/// The game system of every SRD template.
pub const SYSTEM: &str = "dnd5e";

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
    let field = |name: &str| {
        record
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| SrdError::Field {
                category: category.as_str(),
                index: "?".into(),
                field: name.into(),
                reason: "missing or not a string".into(),
            })
    };
    let index = field("index")?;
    let name = field("name")?;
    Ok(CompendiumEntry {
        reference: format!("{SYSTEM}:{}:{index}", category.as_str()),
        system: SYSTEM.into(),
        category: category.as_str().into(),
        name: name.into(),
        data: json!({}),
    })
}

/// The few templates written for this project, used when the SRD package cannot be fetched
/// (refs `dlab:monsters:<slug>`).
pub fn builtin_templates() -> Vec<CompendiumEntry> {
    Vec::new()
}
