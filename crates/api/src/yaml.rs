//! The one way YAML becomes a [`serde_json::Value`]: request bodies (the server's
//! `parse_body`, apply patches, `Namespace` creation) and manifests ([`crate::manifest`]).
//!
//! YAML aliases (`*name`) repeat the node their anchor (`&name`) marks, so a few kilobytes
//! with anchors nested nine deep ("billion laughs") decode to billions of nodes.
//! serde_yaml_ng's own guard bounds alias *jumps*, not what they expand to: a 15 KB body
//! once took a server to 985 MB. As kube-apiserver does since CVE-2019-11253, the decoded
//! size is bounded relative to the input size ([`budget`]).
//!
//! [`from_str`] decodes in two passes over the same serde_yaml_ng events. The first
//! streams the document into a counting visitor that allocates nothing: it adds one per
//! node and the length of every scalar, as the document expands (aliases included), and
//! stops as soon as the sum passes the budget or the nesting passes [`MAX_DEPTH`]; so it
//! does at most `budget` steps whatever the aliases would expand to. Only a document
//! within both limits is decoded into a value, by the same deserializer. One parser for
//! both passes means the count cannot disagree with what is built.
//!
//! A document without aliases never reaches the budget: a node takes at least half a byte
//! of input (`{a,b}`: five nodes and two scalar bytes in five bytes) and a scalar is never
//! longer than its text by more than half (`"\L"`: two bytes of input, three of UTF-8), so
//! without aliases the sum is at most about twice the input size, and the budget is
//! [`MIN_BUDGET`] plus [`BUDGET_PER_BYTE`] times it.
//!
//! YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`) are applied, as kubectl and the
//! Kubernetes API server do: keys written in the mapping win over merged ones, and
//! earlier sources win over later ones.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest nesting of sequences and mappings accepted (Kubernetes objects need about 20).
pub const MAX_DEPTH: usize = 64;
/// Decoded size (nodes plus scalar bytes) allowed to any document, however small.
pub const MIN_BUDGET: usize = 400_000;
/// Decoded size allowed per byte of input, beyond [`MIN_BUDGET`].
pub const BUDGET_PER_BYTE: usize = 4;

/// The decoded size (nodes plus scalar bytes, aliases expanded) allowed to `input_bytes`
/// of YAML.
pub fn budget(input_bytes: usize) -> usize {
    MIN_BUDGET.saturating_add(input_bytes.saturating_mul(BUDGET_PER_BYTE))
}

/// Why a YAML document was refused. Line and column are 1-based, when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Aliases expand the document beyond [`budget`]. The position is that of the node
    /// being expanded when the budget ran out (often inside the anchored node).
    #[error(
        "YAML aliases expand beyond the limit: the document would decode to more than {limit} \
         nodes and scalar bytes (the limit for {input_bytes} bytes of YAML; reached expanding \
         the node{at}); write the repeated parts out instead of using anchors and aliases \
         (&name, *name)",
        at = at(*line, *column)
    )]
    AliasExpansion {
        limit: usize,
        input_bytes: usize,
        line: Option<usize>,
        column: Option<usize>,
    },
    /// Aliases jump more than serde_yaml_ng allows (100 times the document's events),
    /// which it checks before the expansion reaches the budget in documents of many small
    /// aliases.
    #[error(
        "YAML aliases expand beyond the limit: more than 100 alias expansions per node \
         written; write the repeated parts out instead of using anchors and aliases (&name, \
         *name)"
    )]
    AliasRepetition,
    /// Sequences and mappings nested deeper than [`MAX_DEPTH`].
    #[error(
        "YAML nesting is deeper than {max} levels{at}: flatten the document",
        at = at(*line, *column),
        max = MAX_DEPTH
    )]
    TooDeep {
        line: Option<usize>,
        column: Option<usize>,
    },
    /// Not YAML, or YAML that has no JSON form (e.g. a mapping as a key).
    #[error("{message}")]
    Syntax {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l} column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl YamlError {
    /// `(line, column)`, 1-based, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        let (Self::AliasExpansion { line, column, .. }
        | Self::TooDeep { line, column }
        | Self::Syntax { line, column, .. }) = self
        else {
            return None;
        };
        Some(((*line)?, column.unwrap_or(1)))
    }
}

/// Decodes one YAML document, refusing it if aliases expand it beyond
/// [`budget`]`(text.len())` or it nests deeper than [`MAX_DEPTH`]. An empty document is
/// `Value::Null`.
pub fn from_str(text: &str) -> Result<Value, YamlError> {
    from_str_with_budget(text, budget(text.len()))
}

/// [`from_str`] for bytes, which must be UTF-8.
pub fn from_slice(bytes: &[u8]) -> Result<Value, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| YamlError::Syntax {
        message: format!(
            "the YAML is not UTF-8 (invalid byte at offset {}): send UTF-8 text",
            e.valid_up_to()
        ),
        line: None,
        column: None,
    })?;
    from_str(text)
}

/// [`from_str`] with an explicit budget, for callers that decode part of a larger text
/// (the manifest parser pads a document with the newlines before it).
pub fn from_str_with_budget(text: &str, budget: usize) -> Result<Value, YamlError> {
    let counter = Counter {
        used: Cell::new(0),
        budget,
        refused: Cell::new(None),
    };
    let counted = Count {
        counter: &counter,
        depth: 0,
    }
    .deserialize(serde_yaml_ng::Deserializer::from_str(text));
    if let Err(e) = counted {
        let (line, column) = match e.location() {
            Some(l) => (Some(l.line()), Some(l.column())),
            None => (None, None),
        };
        return Err(match counter.refused.get() {
            Some(Refusal::Budget) => YamlError::AliasExpansion {
                limit: budget,
                input_bytes: text.len(),
                line,
                column,
            },
            Some(Refusal::Depth) => YamlError::TooDeep { line, column },
            // serde_yaml_ng's own guard on alias jumps.
            None if e.to_string().starts_with("repetition limit exceeded") => {
                YamlError::AliasRepetition
            }
            None => syntax(&e),
        });
    }
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(&e))?;
    apply_merge_keys(&mut value, 0);
    Ok(value)
}

fn syntax(e: &serde_yaml_ng::Error) -> YamlError {
    YamlError::Syntax {
        message: e.to_string(),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Budget,
    Depth,
}

struct Counter {
    used: Cell<usize>,
    budget: usize,
    refused: Cell<Option<Refusal>>,
}

impl Counter {
    fn add<E: de::Error>(&self, n: usize) -> Result<(), E> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.budget {
            self.refused.set(Some(Refusal::Budget));
            return Err(E::custom("alias expansion limit"));
        }
        Ok(())
    }
}

/// Counts one node and everything under it; the value it produces is `()`.
#[derive(Clone, Copy)]
struct Count<'a> {
    counter: &'a Counter,
    depth: usize,
}

impl Count<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            self.counter.refused.set(Some(Refusal::Depth));
            return Err(E::custom("nesting limit"));
        }
        Ok(Count {
            counter: self.counter,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.counter.add(1 + v.len())
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.counter.add(1 + v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.counter.add(1)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.counter.add(1)?;
        let child = self.nested()?;
        while seq.next_element_seed(child)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.counter.add(1)?;
        let child = self.nested()?;
        while map.next_key_seed(child)?.is_some() {
            map.next_value_seed(child)?;
        }
        Ok(())
    }

    /// A tagged node (`!Thing value`): serde_json cannot hold it, so the second pass
    /// refuses it; count the tag and the value all the same.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess as _;
        let (_, variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self.nested()?)
    }
}

/// Applies YAML merge keys (`<<`) below and at `value`, children first so that merged
/// mappings are themselves merged. Depth is bounded by [`MAX_DEPTH`] (checked before).
fn apply_merge_keys(value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH + 1 {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                apply_merge_keys(item, depth + 1);
            }
        }
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                apply_merge_keys(child, depth + 1);
            }
            let sources = match map.get("<<") {
                Some(Value::Object(_)) => map.remove("<<").into_iter().collect(),
                Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
                    match map.remove("<<") {
                        Some(Value::Array(items)) => items,
                        _ => Vec::new(),
                    }
                }
                // `<<: 5` is no merge: leave the key for validation to name.
                _ => return,
            };
            let mut merged = Map::new();
            for source in sources {
                let Value::Object(source) = source else {
                    continue;
                };
                for (k, v) in source {
                    if !map.contains_key(&k) && !merged.contains_key(&k) {
                        merged.insert(k, v);
                    }
                }
            }
            map.extend(merged);
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Nine levels of nine aliases: 9^9 (387 million) leaves from a few hundred bytes.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [lol]\n");
        for level in 1..=9 {
            let prev = format!("*a{}", level - 1);
            let items = [prev.as_str(); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text
    }

    #[test]
    fn billion_laughs_is_refused_as_alias_expansion() {
        let text = billion_laughs();
        let e = from_str(&text).unwrap_err();
        // serde_yaml_ng's guard on jumps stops this one first; wider bombs reach the budget.
        assert_eq!(e, YamlError::AliasRepetition);
        let message = e.to_string();
        assert!(
            message.starts_with("YAML aliases expand beyond the limit"),
            "{message}"
        );
    }

    #[test]
    fn wide_bomb_is_refused_at_the_budget_with_its_line() {
        // Few jumps, each expanding a large anchor: the budget stops it.
        let mut text = format!("a: &a [{}]\nb:\n", vec!["x"; 2000].join(", "));
        for _ in 0..300 {
            text.push_str("- *a\n");
        }
        let e = from_str(&text).unwrap_err();
        assert!(matches!(e, YamlError::AliasExpansion { .. }), "{e:?}");
        assert_eq!(e.location().map(|(line, _)| line), Some(1), "{e:?}");
        assert!(
            e.to_string()
                .contains("reached expanding the node at line 1 column "),
            "{e}"
        );
    }

    #[test]
    fn one_anchor_many_aliases_of_a_long_scalar_is_refused() {
        // Scalars count by length: 2,000 aliases of a 1 KB string are 2 MB decoded.
        let mut text = format!("a: &s {}\nb:\n", "x".repeat(1024));
        for _ in 0..2000 {
            text.push_str("- *s\n");
        }
        let e = from_str(&text).unwrap_err();
        assert!(matches!(e, YamlError::AliasExpansion { .. }), "{e:?}");
    }

    #[test]
    fn anchors_and_merge_keys_in_an_ordinary_manifest_work() {
        let text = "defaults: &defaults\n  driver: exec\n  resources: &small {cpu: 100m, memory: 64Mi}\n\
                    tasks:\n- <<: *defaults\n  command: [/bin/a]\n- <<: *defaults\n  driver: qemu\n  \
                    resources: *small\n";
        let value = from_str(text).unwrap();
        assert_eq!(
            value["tasks"][0],
            json!({"command": ["/bin/a"], "driver": "exec", "resources": {"cpu": "100m", "memory": "64Mi"}})
        );
        assert_eq!(value["tasks"][1]["driver"], "qemu", "explicit keys win");
        assert_eq!(value["tasks"][1]["resources"]["memory"], "64Mi");
    }

    #[test]
    fn merge_of_a_list_earlier_sources_win() {
        let text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n";
        let value = from_str(text).unwrap();
        assert_eq!(value["c"], json!({"z": 3, "x": 1, "y": 1}));
        // Not a mapping: left for validation to refuse by name.
        assert_eq!(from_str("<<: 5\n").unwrap(), json!({"<<": 5}));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        let text = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = from_str(&text).unwrap_err();
        assert!(matches!(e, YamlError::TooDeep { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("YAML nesting is deeper than 64 levels at line 1 column "),
            "{e}"
        );
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(from_str(&ok).is_ok());
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let e = from_str("a: [b\nc: d\n").unwrap_err();
        assert!(matches!(e, YamlError::Syntax { .. }), "{e:?}");
        assert!(e.location().is_some(), "{e:?}");
        let e = from_slice(b"a: \xff\n").unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn empty_and_plain_documents() {
        assert_eq!(from_str("").unwrap(), Value::Null);
        assert_eq!(from_str("# nothing\n").unwrap(), Value::Null);
        assert_eq!(
            from_str("a: 1\nb: [x, 'y']\n").unwrap(),
            json!({"a": 1, "b": ["x", "y"]})
        );
    }

    #[test]
    fn budget_grows_with_the_input() {
        assert_eq!(budget(0), MIN_BUDGET);
        assert_eq!(budget(1000), MIN_BUDGET + 4000);
        assert_eq!(budget(usize::MAX), usize::MAX);
    }
}
