//! Trusted dice: the formula grammar, its bounds, the roll, and the `core:dice:roll` payload.
//!
//! A client submits `core:dice:roll` with `payload: {formula, purpose?}`; the server parses the
//! formula here, rolls it with a CSPRNG (the server's [`DiceRng`]) and writes
//! `payload.result: {dice: [{sides, value, kept}], total}` before the commit, replacing any
//! `result` the client sent. This module is pure: randomness comes in through [`DiceRng`], so
//! rules and tests inject their rolls and the crate stays free of I/O (it compiles to wasm).
//!
//! # Grammar
//! ```text
//! formula  = term *( sign term )        ; spaces allowed between tokens
//! sign     = "+" / "-"
//! term     = dice / constant
//! dice     = count "d" sides [ ("kh" / "kl") keep ]
//! count, sides, keep, constant = 1*DIGIT
//! ```
//! Examples: `1d20+5`, `4d6kh3`, `2d20kl1`, `2d6+1d4-1`, `1d20-1d4`.
//!
//! # Bounds (anything else is a [`DiceError`])
//! At most [`MAX_FORMULA_LEN`] characters and [`MAX_TERMS`] terms; at least one die per dice
//! term and at most [`MAX_DICE`] dice in the whole formula; `1..=`[`MAX_SIDES`] sides; a keep
//! count of `1..=count`; constants up to [`MAX_CONSTANT`] in magnitude.
//!
//! # Dedup and checksum of a roll
//! The content a client submitted is the payload without `result` ([`submitted_content`]): the
//! envelope's `checksum` is verified over it and the dedup hash
//! ([`crate::event::content_hash`]) is computed over it, so the server's result never changes
//! the hash of a stored roll and a re-sent roll (same id, same formula and purpose) is a
//! duplicate answered with the original result.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The event type of a trusted roll.
pub const DICE_ROLL_TYPE: &str = "core:dice:roll";

/// Longest accepted formula, in characters.
pub const MAX_FORMULA_LEN: usize = 100;
/// Most terms (dice terms and constants) in one formula.
pub const MAX_TERMS: usize = 20;
/// Most dice rolled by one formula, over all its terms.
pub const MAX_DICE: u32 = 100;
/// Most sides of one die.
pub const MAX_SIDES: u32 = 1000;
/// Largest magnitude of a constant term.
pub const MAX_CONSTANT: i64 = 1_000_000;

/// Why a formula or a roll payload was refused. Edge: `invalid_event`, with this text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DiceError {
    /// The formula is empty (or only spaces).
    #[error("dice formula is empty")]
    Empty,
    /// The formula is longer than [`MAX_FORMULA_LEN`].
    #[error("dice formula is {len} characters, over the limit of {MAX_FORMULA_LEN}")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// A character that does not fit the grammar at this place.
    #[error("dice formula: unexpected {found:?} at position {at} (expected {expected})")]
    Unexpected {
        /// The character.
        found: char,
        /// Its position (0-based, in characters).
        at: usize,
        /// What the grammar wanted there.
        expected: &'static str,
    },
    /// The formula ends where the grammar needs more.
    #[error("dice formula ends early (expected {expected})")]
    UnexpectedEnd {
        /// What the grammar wanted.
        expected: &'static str,
    },
    /// More than [`MAX_TERMS`] terms.
    #[error("dice formula has more than {MAX_TERMS} terms")]
    TooManyTerms,
    /// A dice term rolls no dice (`0d6`).
    #[error("dice term {term:?} rolls no dice (at least 1)")]
    NoDice {
        /// The term as written.
        term: String,
    },
    /// More than [`MAX_DICE`] dice over the whole formula.
    #[error("dice formula rolls {count} dice, over the limit of {MAX_DICE}")]
    TooManyDice {
        /// Dice counted so far (saturating).
        count: u64,
    },
    /// A die with 0 or more than [`MAX_SIDES`] sides.
    #[error("dice term {term:?}: a die has 1 to {MAX_SIDES} sides")]
    BadSides {
        /// The term as written.
        term: String,
    },
    /// A keep count of 0 or more than the term's dice.
    #[error("dice term {term:?}: keep between 1 and the number of dice")]
    BadKeep {
        /// The term as written.
        term: String,
    },
    /// A constant over [`MAX_CONSTANT`] in magnitude.
    #[error("dice formula constant {value} is out of range (at most {MAX_CONSTANT} either way)")]
    ConstantOutOfRange {
        /// The constant as written.
        value: String,
    },
    /// The roll payload is not a JSON object.
    #[error("core:dice:roll payload must be an object {{formula, purpose?}}")]
    PayloadNotObject,
    /// `payload.formula` is absent.
    #[error("core:dice:roll payload.formula is required")]
    MissingFormula,
    /// `payload.formula` or `payload.purpose` is not a string.
    #[error("core:dice:roll payload.{0} must be a string")]
    NotAString(&'static str),
    /// The roll payload has a field besides `formula`, `purpose` and `result`.
    #[error("core:dice:roll payload has an unknown field {0:?} (allowed: formula, purpose)")]
    UnknownField(String),
}

/// Which dice of a term count toward the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every die.
    All,
    /// The `n` highest (`khN`).
    Highest(u32),
    /// The `n` lowest (`klN`).
    Lowest(u32),
}

/// One term of a formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// `NdM` with an optional keep, added (`negative: false`) or subtracted.
    Dice {
        /// Dice rolled.
        count: u32,
        /// Sides of each die.
        sides: u32,
        /// Which dice count.
        keep: Keep,
        /// Subtracted from the total.
        negative: bool,
    },
    /// An integer constant, with its sign.
    Constant(i64),
}

impl Term {
    /// Dice that count toward the total.
    fn kept(&self) -> u32 {
        match *self {
            Term::Dice { count, keep, .. } => match keep {
                Keep::All => count,
                Keep::Highest(n) | Keep::Lowest(n) => n,
            },
            Term::Constant(_) => 0,
        }
    }
}

/// A parsed, bounded formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    terms: Vec<Term>,
}

/// A source of die rolls: `die(sides)` returns a value in `1..=sides` (uniformly, for the
/// server's CSPRNG; anything for a test).
pub trait DiceRng {
    /// One roll of a die with `sides` sides (`sides >= 1`), in `1..=sides`.
    fn die(&mut self, sides: u32) -> u32;
}

/// One rolled die.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Die {
    /// Its sides.
    pub sides: u32,
    /// The face rolled, `1..=sides`.
    pub value: u32,
    /// Whether it counts toward the total (false for a die dropped by `kh`/`kl`).
    pub kept: bool,
}

/// The outcome of a roll: every die in formula order (constants are not dice), and the total
/// (kept dice of added terms, minus kept dice of subtracted terms, plus the constants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollResult {
    /// Every die rolled, term by term.
    pub dice: Vec<Die>,
    /// The total.
    pub total: i64,
}

impl Formula {
    /// Parses and bounds-checks a formula.
    pub fn parse(formula: &str) -> Result<Formula, DiceError> {
        let len = formula.chars().count();
        if len > MAX_FORMULA_LEN {
            return Err(DiceError::TooLong { len });
        }
        let chars: Vec<char> = formula.chars().collect();
        let mut p = Parser { chars, at: 0 };
        p.skip_spaces();
        if p.peek().is_none() {
            return Err(DiceError::Empty);
        }
        let mut terms = Vec::new();
        let mut dice: u64 = 0;
        let mut negative = false;
        loop {
            if terms.len() == MAX_TERMS {
                return Err(DiceError::TooManyTerms);
            }
            let term = p.term(negative)?;
            if let Term::Dice { count, .. } = term {
                dice += u64::from(count);
                if dice > u64::from(MAX_DICE) {
                    return Err(DiceError::TooManyDice { count: dice });
                }
            }
            terms.push(term);
            p.skip_spaces();
            match p.peek() {
                None => break,
                Some('+') => negative = false,
                Some('-') => negative = true,
                Some(found) => {
                    return Err(DiceError::Unexpected {
                        found,
                        at: p.at,
                        expected: "`+`, `-` or the end",
                    });
                }
            }
            p.at += 1;
            p.skip_spaces();
        }
        Ok(Formula { terms })
    }

    /// The terms, in order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Dice rolled in all.
    pub fn dice_count(&self) -> u32 {
        self.terms
            .iter()
            .map(|t| match t {
                Term::Dice { count, .. } => *count,
                Term::Constant(_) => 0,
            })
            .sum()
    }

    /// The lowest total this formula can roll.
    pub fn min(&self) -> i64 {
        self.bound(false)
    }

    /// The highest total this formula can roll.
    pub fn max(&self) -> i64 {
        self.bound(true)
    }

    fn bound(&self, high: bool) -> i64 {
        self.terms
            .iter()
            .map(|t| match *t {
                Term::Constant(c) => c,
                Term::Dice {
                    sides, negative, ..
                } => {
                    let kept = i64::from(t.kept());
                    // An added term is highest with every die at `sides`; a subtracted one
                    // is highest with every die at 1.
                    let face = if high != negative {
                        i64::from(sides)
                    } else {
                        1
                    };
                    if negative { -kept * face } else { kept * face }
                }
            })
            .sum()
    }

    /// Rolls every die with `rng` and applies the keeps.
    pub fn roll(&self, rng: &mut impl DiceRng) -> RollResult {
        let mut dice = Vec::with_capacity(self.dice_count() as usize);
        let mut total: i64 = 0;
        for term in &self.terms {
            match *term {
                Term::Constant(c) => total += c,
                Term::Dice {
                    count,
                    sides,
                    keep,
                    negative,
                } => {
                    let start = dice.len();
                    for _ in 0..count {
                        let value = rng.die(sides).clamp(1, sides);
                        dice.push(Die {
                            sides,
                            value,
                            kept: true,
                        });
                    }
                    let rolled = &mut dice[start..];
                    let (n, highest) = match keep {
                        Keep::All => (count, true),
                        Keep::Highest(n) => (n, true),
                        Keep::Lowest(n) => (n, false),
                    };
                    if n < count {
                        // The `n` best by value; ties go to the earlier die.
                        let mut order: Vec<usize> = (0..rolled.len()).collect();
                        order.sort_by(|&a, &b| {
                            let by_value = rolled[a].value.cmp(&rolled[b].value);
                            let by_value = if highest {
                                by_value.reverse()
                            } else {
                                by_value
                            };
                            by_value.then(a.cmp(&b))
                        });
                        for &dropped in &order[n as usize..] {
                            rolled[dropped].kept = false;
                        }
                    }
                    let sum: i64 = rolled
                        .iter()
                        .filter(|d| d.kept)
                        .map(|d| i64::from(d.value))
                        .sum();
                    total += if negative { -sum } else { sum };
                }
            }
        }
        RollResult { dice, total }
    }
}

/// Parses `formula` and rolls it with `rng`.
pub fn roll(formula: &str, rng: &mut impl DiceRng) -> Result<RollResult, DiceError> {
    Ok(Formula::parse(formula)?.roll(rng))
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.at += 1;
        }
    }

    /// A run of digits, saturating at `u64::MAX` (every bound is far below).
    fn number(&mut self, expected: &'static str) -> Result<u64, DiceError> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(u64::from(d));
            self.at += 1;
        }
        if self.at == start {
            return Err(match self.peek() {
                Some(found) => DiceError::Unexpected {
                    found,
                    at: self.at,
                    expected,
                },
                None => DiceError::UnexpectedEnd { expected },
            });
        }
        Ok(value)
    }

    fn text(&self, from: usize) -> String {
        self.chars[from..self.at].iter().collect()
    }

    fn term(&mut self, negative: bool) -> Result<Term, DiceError> {
        let start = self.at;
        let first = self.number("a number")?;
        if self.peek() != Some('d') {
            if first > MAX_CONSTANT as u64 {
                return Err(DiceError::ConstantOutOfRange {
                    value: self.text(start),
                });
            }
            let c = first as i64;
            return Ok(Term::Constant(if negative { -c } else { c }));
        }
        self.at += 1;
        let sides = self.number("the number of sides after `d`")?;
        let keep = match self.peek() {
            Some('k') => {
                self.at += 1;
                let highest = match self.peek() {
                    Some('h') => true,
                    Some('l') => false,
                    Some(found) => {
                        return Err(DiceError::Unexpected {
                            found,
                            at: self.at,
                            expected: "`h` or `l` after `k`",
                        });
                    }
                    None => {
                        return Err(DiceError::UnexpectedEnd {
                            expected: "`h` or `l` after `k`",
                        });
                    }
                };
                self.at += 1;
                Some((highest, self.number("the keep count")?))
            }
            _ => None,
        };
        let term = self.text(start);
        if first == 0 {
            return Err(DiceError::NoDice { term });
        }
        if first > u64::from(MAX_DICE) {
            return Err(DiceError::TooManyDice { count: first });
        }
        if sides == 0 || sides > u64::from(MAX_SIDES) {
            return Err(DiceError::BadSides { term });
        }
        let keep = match keep {
            None => Keep::All,
            Some((_, n)) if n == 0 || n > first => return Err(DiceError::BadKeep { term }),
            Some((true, n)) => Keep::Highest(n as u32),
            Some((false, n)) => Keep::Lowest(n as u32),
        };
        Ok(Term::Dice {
            count: first as u32,
            sides: sides as u32,
            keep,
            negative,
        })
    }
}

/// A valid `core:dice:roll` request: its formula and optional purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollRequest {
    /// The parsed formula.
    pub formula: Formula,
    /// What the roll is for, as the client wrote it.
    pub purpose: Option<String>,
}

impl RollRequest {
    /// Reads `{formula, purpose?}`; a client `result` is ignored, any other field refused.
    pub fn from_payload(payload: &Value) -> Result<RollRequest, DiceError> {
        let obj = payload.as_object().ok_or(DiceError::PayloadNotObject)?;
        if let Some(other) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "formula" | "purpose" | "result"))
        {
            return Err(DiceError::UnknownField(other.chars().take(40).collect()));
        }
        let formula = match obj.get("formula") {
            None => return Err(DiceError::MissingFormula),
            Some(Value::String(f)) => Formula::parse(f)?,
            Some(_) => return Err(DiceError::NotAString("formula")),
        };
        let purpose = match obj.get("purpose") {
            None => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err(DiceError::NotAString("purpose")),
        };
        Ok(RollRequest { formula, purpose })
    }
}

/// The content of a submission that the checksum and the dedup hash cover: for
/// `core:dice:roll` the payload without `result` (the server writes it), for every other type
/// the payload itself.
pub fn submitted_content<'a>(event_type: &str, payload: &'a Value) -> Cow<'a, Value> {
    match payload {
        Value::Object(obj) if event_type == DICE_ROLL_TYPE && obj.contains_key("result") => {
            let mut stripped = obj.clone();
            stripped.remove("result");
            Cow::Owned(Value::Object(stripped))
        }
        _ => Cow::Borrowed(payload),
    }
}

/// The server's roll of a `core:dice:roll` payload: validates `{formula, purpose?}`, drops any
/// client `result`, rolls with `rng` and returns the payload with the server's
/// `result: {dice, total}`.
pub fn roll_payload(payload: &Value, rng: &mut impl DiceRng) -> Result<Value, DiceError> {
    let request = RollRequest::from_payload(payload)?;
    let result = request.formula.roll(rng);
    let mut out: Map<String, Value> = payload
        .as_object()
        .cloned()
        .ok_or(DiceError::PayloadNotObject)?;
    out.insert(
        "result".to_owned(),
        serde_json::to_value(result).expect("a roll result always serializes"),
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Plays back fixed faces, then repeats the last one.
    struct Faces(Vec<u32>, usize);

    impl DiceRng for Faces {
        fn die(&mut self, _sides: u32) -> u32 {
            let v = self.0[self.1.min(self.0.len() - 1)];
            self.1 += 1;
            v
        }
    }

    fn faces(v: &[u32]) -> Faces {
        Faces(v.to_vec(), 0)
    }

    /// Always the highest face.
    struct Max;
    impl DiceRng for Max {
        fn die(&mut self, sides: u32) -> u32 {
            sides
        }
    }

    fn parse(f: &str) -> Formula {
        Formula::parse(f).unwrap_or_else(|e| panic!("{f}: {e}"))
    }

    #[test]
    fn single_die_and_constant() {
        let r = roll("1d20+5", &mut faces(&[13])).unwrap();
        assert_eq!(
            r.dice,
            vec![Die {
                sides: 20,
                value: 13,
                kept: true
            }]
        );
        assert_eq!(r.total, 18);
        assert_eq!(parse("1d20+5").min(), 6);
        assert_eq!(parse("1d20+5").max(), 25);
    }

    #[test]
    fn keep_highest_drops_the_lowest_and_ties_go_to_the_earlier_die() {
        let r = roll("4d6kh3", &mut faces(&[3, 1, 6, 3])).unwrap();
        let kept: Vec<bool> = r.dice.iter().map(|d| d.kept).collect();
        assert_eq!(kept, vec![true, false, true, true]);
        assert_eq!(r.total, 12);
        let r = roll("4d6kh1", &mut faces(&[5, 6, 6, 2])).unwrap();
        let kept: Vec<bool> = r.dice.iter().map(|d| d.kept).collect();
        assert_eq!(kept, vec![false, true, false, false]);
        assert_eq!(r.total, 6);
    }

    #[test]
    fn keep_lowest_is_disadvantage() {
        let r = roll("2d20kl1", &mut faces(&[17, 4])).unwrap();
        assert_eq!(r.total, 4);
        assert!(!r.dice[0].kept && r.dice[1].kept);
        assert_eq!(parse("2d20kl1").min(), 1);
        assert_eq!(parse("2d20kl1").max(), 20);
    }

    #[test]
    fn several_terms_and_subtraction() {
        let r = roll("2d6+1d4-1", &mut faces(&[2, 5, 3])).unwrap();
        assert_eq!(r.dice.len(), 3);
        assert_eq!(r.dice[2].sides, 4);
        assert_eq!(r.total, 9);
        let f = parse("1d20-1d4");
        assert_eq!((f.min(), f.max()), (-3, 19));
        assert_eq!(roll("1d20-1d4", &mut faces(&[10, 4])).unwrap().total, 6);
        assert_eq!(roll("5-2+10", &mut faces(&[1])).unwrap().total, 13);
        assert_eq!(
            roll(" 1d8 + 2 ", &mut faces(&[8])).unwrap().total,
            10,
            "spaces between tokens"
        );
        assert_eq!(parse("1d1").min(), 1);
        assert_eq!(roll("3d6kh3", &mut Max).unwrap().total, 18, "keep all");
    }

    #[test]
    fn out_of_range_rng_faces_are_clamped() {
        assert_eq!(roll("1d6", &mut faces(&[0])).unwrap().dice[0].value, 1);
        assert_eq!(roll("1d6", &mut faces(&[99])).unwrap().dice[0].value, 6);
    }

    #[test]
    fn bounds_are_enforced_and_named() {
        let err = |f: &str| Formula::parse(f).unwrap_err();
        assert!(matches!(err("1d0"), DiceError::BadSides { .. }));
        assert!(matches!(err("1d1001"), DiceError::BadSides { .. }));
        assert!(Formula::parse("1d1000").is_ok());
        assert!(matches!(
            err("101d6"),
            DiceError::TooManyDice { count: 101 }
        ));
        assert!(Formula::parse("100d6").is_ok());
        assert!(matches!(
            err("60d6+41d4"),
            DiceError::TooManyDice { count: 101 }
        ));
        assert!(Formula::parse("60d6+40d4").is_ok());
        assert!(matches!(err("0d6"), DiceError::NoDice { .. }));
        assert!(matches!(err("4d6kh5"), DiceError::BadKeep { .. }));
        assert!(matches!(err("4d6kl0"), DiceError::BadKeep { .. }));
        assert!(Formula::parse("4d6kh4").is_ok());
        assert!(matches!(
            err("1d20+1000001"),
            DiceError::ConstantOutOfRange { .. }
        ));
        assert!(matches!(
            err("1d20-1000001"),
            DiceError::ConstantOutOfRange { .. }
        ));
        assert!(Formula::parse("1000000-1000000").is_ok());
        assert!(matches!(
            err("99999999999999999999999999d6"),
            DiceError::TooManyDice { .. }
        ));
        let long = format!("1d6{}", "+1".repeat(49));
        assert_eq!(long.len(), 101);
        assert!(matches!(err(&long), DiceError::TooLong { len: 101 }));
        let terms = |n: usize| vec!["1"; n].join("+");
        assert!(Formula::parse(&terms(20)).is_ok());
        assert_eq!(err(&terms(21)), DiceError::TooManyTerms);
    }

    #[test]
    fn grammar_errors_are_named() {
        let err = |f: &str| Formula::parse(f).unwrap_err();
        assert_eq!(err(""), DiceError::Empty);
        assert_eq!(err("   "), DiceError::Empty);
        for bad in [
            "abc", "d20", "1d", "1d20+", "1d20++1", "+1d20", "-1", "1D20", "1d20k3", "1d20kx1",
            "1d20kh", "4d6 kh3", "1d20*2", "1.5", "1d20 5", "1d20+1e3", "١d6",
        ] {
            let e = err(bad);
            assert!(
                matches!(
                    e,
                    DiceError::Unexpected { .. } | DiceError::UnexpectedEnd { .. }
                ),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(
            err("1d20x").to_string(),
            "dice formula: unexpected 'x' at position 4 (expected `+`, `-` or the end)"
        );
        assert_eq!(
            err("1d0").to_string(),
            "dice term \"1d0\": a die has 1 to 1000 sides"
        );
    }

    #[test]
    fn payload_is_formula_and_optional_purpose() {
        let ok =
            RollRequest::from_payload(&json!({"formula": "1d20", "purpose": "stealth"})).unwrap();
        assert_eq!(ok.purpose.as_deref(), Some("stealth"));
        assert!(RollRequest::from_payload(&json!({"formula": "1d20", "result": 99})).is_ok());
        assert_eq!(
            RollRequest::from_payload(&json!({"purpose": "x"})),
            Err(DiceError::MissingFormula)
        );
        assert_eq!(
            RollRequest::from_payload(&json!({"formula": 20})),
            Err(DiceError::NotAString("formula"))
        );
        assert_eq!(
            RollRequest::from_payload(&json!({"formula": "1d4", "purpose": 1})),
            Err(DiceError::NotAString("purpose"))
        );
        assert_eq!(
            RollRequest::from_payload(&json!({"formula": "1d4", "bonus": 1})),
            Err(DiceError::UnknownField("bonus".into()))
        );
        assert_eq!(
            RollRequest::from_payload(&json!("1d20")),
            Err(DiceError::PayloadNotObject)
        );
        assert!(matches!(
            RollRequest::from_payload(&json!({"formula": "1d0"})),
            Err(DiceError::BadSides { .. })
        ));
    }

    #[test]
    fn roll_payload_replaces_a_forged_result() {
        let submitted = json!({"formula": "2d6+1", "purpose": "damage",
                               "result": {"dice": [], "total": 1000}});
        let rolled = roll_payload(&submitted, &mut faces(&[4, 5])).unwrap();
        assert_eq!(
            rolled,
            json!({"formula": "2d6+1", "purpose": "damage", "result": {
                "dice": [{"sides": 6, "value": 4, "kept": true},
                         {"sides": 6, "value": 5, "kept": true}],
                "total": 10}})
        );
        assert!(roll_payload(&json!({"formula": "abc"}), &mut Max).is_err());
    }

    #[test]
    fn submitted_content_drops_result_only_for_rolls() {
        let p = json!({"formula": "1d6", "result": {"total": 3}});
        assert_eq!(
            submitted_content(DICE_ROLL_TYPE, &p).into_owned(),
            json!({"formula": "1d6"})
        );
        assert_eq!(submitted_content("plugin:x:y", &p).into_owned(), p);
        let plain = json!({"formula": "1d6"});
        assert!(matches!(
            submitted_content(DICE_ROLL_TYPE, &plain),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            submitted_content(DICE_ROLL_TYPE, &json!([1])).into_owned(),
            json!([1])
        );
    }

    /// A generated formula: dice terms `(count, sides, keep, negative)` and constants.
    fn term() -> impl Strategy<Value = (bool, u32, u32, u8, u32, bool)> {
        (
            any::<bool>(),
            1u32..=5,
            1u32..=1000,
            0u8..3,
            1u32..=5,
            any::<bool>(),
        )
    }

    fn render(terms: &[(bool, u32, u32, u8, u32, bool)], constant: i64) -> String {
        let mut out = String::new();
        for (i, &(dice, count, sides, keep, k, negative)) in terms.iter().enumerate() {
            if i > 0 {
                out.push(if negative { '-' } else { '+' });
            }
            if dice {
                out.push_str(&format!("{count}d{sides}"));
                let k = k.min(count);
                match keep {
                    1 => out.push_str(&format!("kh{k}")),
                    2 => out.push_str(&format!("kl{k}")),
                    _ => {}
                }
            } else {
                out.push_str(&sides.to_string());
            }
        }
        out.push_str(&format!("{:+}", constant));
        out
    }

    /// A seeded xorshift: any face, including out-of-range ones the roll clamps.
    struct Seeded(u64);
    impl DiceRng for Seeded {
        fn die(&mut self, sides: u32) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % u64::from(sides)) as u32 + 1
        }
    }

    proptest! {
        #[test]
        fn total_lies_in_bounds_and_keeps_match(
            terms in prop::collection::vec(term(), 1..=8),
            constant in -1_000_000i64..=1_000_000,
            seed in 1u64..,
        ) {
            let text = render(&terms, constant);
            let formula = Formula::parse(&text).unwrap();
            let r = formula.roll(&mut Seeded(seed));
            prop_assert!(formula.min() <= r.total && r.total <= formula.max(), "{text}: {}", r.total);
            prop_assert_eq!(r.dice.len() as u32, formula.dice_count());
            let mut at = 0;
            let mut total = 0i64;
            for t in formula.terms() {
                match *t {
                    Term::Constant(c) => total += c,
                    Term::Dice { count, sides, negative, .. } => {
                        let these = &r.dice[at..at + count as usize];
                        at += count as usize;
                        prop_assert_eq!(these.iter().filter(|d| d.kept).count() as u32, t.kept());
                        prop_assert!(these.iter().all(|d| d.sides == sides && (1..=sides).contains(&d.value)));
                        let sum: i64 = these.iter().filter(|d| d.kept).map(|d| i64::from(d.value)).sum();
                        total += if negative { -sum } else { sum };
                    }
                }
            }
            prop_assert_eq!(total, r.total);
            // Without subtracted dice, all ones and all top faces reach the bounds exactly.
            if !formula.terms().iter().any(|t| matches!(t, Term::Dice { negative: true, .. })) {
                prop_assert_eq!(formula.roll(&mut Extreme(false)).total, formula.min());
                prop_assert_eq!(formula.roll(&mut Extreme(true)).total, formula.max());
            }
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,120}") {
            if let Ok(f) = Formula::parse(&text) {
                prop_assert!(f.dice_count() <= MAX_DICE);
                prop_assert!(f.terms().len() <= MAX_TERMS);
                prop_assert!(f.min() <= f.max());
            }
        }

        #[test]
        fn formula_like_text_never_panics(text in "[0-9dkhl+ -]{0,40}") {
            let _ = Formula::parse(&text);
        }
    }

    /// Every die on 1 or every die on its top face.
    struct Extreme(bool);
    impl DiceRng for Extreme {
        fn die(&mut self, sides: u32) -> u32 {
            if self.0 { sides } else { 1 }
        }
    }
}
