//! Hostile input against every parser the API exposes to clients: manifests (YAML and
//! JSON, multi-document), quantities, label and field selectors, the safe YAML decoder and
//! the request body decoders. Arbitrary strings and bytes, and valid inputs mutated
//! (bytes cut, inserted, replaced, lines swapped), must never panic; alias bombs of any
//! shape are refused within the budget; and what round-trips does (parse, display, parse
//! gives the same value).
//!
//! Case counts are kept small enough for the whole file to run in seconds in debug; set
//! `PROPTEST_CASES` to run more.

use api::body::{BodyFormat, decode_body};
use api::yaml::{self, YamlError};
use api::{Cpu, FieldSelector, LabelSelector, Memory, parse_manifests};
use proptest::prelude::*;

// A test setting (PROPTEST_CASES); the library reads no environment (clippy.toml).
#[allow(clippy::disallowed_methods)]
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // No regression files in the source tree: failures print their minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid input with one of a few edits applied at arbitrary places.
#[derive(Debug, Clone)]
enum Edit {
    Cut { at: usize, len: usize },
    Insert { at: usize, text: String },
    Replace { at: usize, byte: u8 },
    SwapLines { a: usize, b: usize },
    Duplicate { at: usize, len: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let yamlish = prop_oneof![
        Just("*".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("<<: ".to_string()),
        Just("---\n".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("\"".to_string()),
        Just("!!binary ".to_string()),
        Just("!Tag ".to_string()),
        Just("? ".to_string()),
        Just("|\n".to_string()),
        Just("\t".to_string()),
        Just("\u{feff}".to_string()),
        ".{0,12}",
    ];
    prop_oneof![
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Edit::Cut { at, len }),
        (any::<usize>(), yamlish).prop_map(|(at, text)| Edit::Insert { at, text }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Replace { at, byte }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

/// Applies edits to bytes (which may stop being UTF-8).
fn mutate(input: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    for e in edits {
        let n = bytes.len().max(1);
        match e {
            Edit::Cut { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Edit::Insert { at, text } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, text.bytes());
            }
            Edit::Replace { at, byte } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = *byte;
                }
            }
            Edit::SwapLines { a, b } => {
                let mut lines: Vec<Vec<u8>> = bytes.split(|&c| c == b'\n').map(Vec::from).collect();
                let count = lines.len();
                lines.swap(a % count, b % count);
                bytes = lines.join(&b'\n');
            }
            Edit::Duplicate { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
        }
    }
    bytes
}

fn example() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(
        api::examples::FILES
            .iter()
            .map(|(_, text)| *text)
            .collect::<Vec<_>>(),
    )
}

/// The examples as JSON: one object, an array, a stream and a `List`.
fn example_json() -> impl Strategy<Value = String> {
    (example(), 0usize..4).prop_map(|(text, shape)| {
        let objects: Vec<serde_json::Value> = parse_manifests("e.yaml", text)
            .expect("examples parse")
            .iter()
            .map(|m| serde_json::to_value(&m.object).expect("serializable"))
            .collect();
        match shape {
            0 => serde_json::to_string_pretty(&objects[0]).expect("json"),
            1 => serde_json::to_string(&objects).expect("json"),
            2 => objects
                .iter()
                .map(|o| serde_json::to_string(o).expect("json"))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
                .to_string(),
        }
    })
}

/// A YAML bomb of any shape: `levels` anchors, each a sequence of `width` aliases of the
/// one before, the first a scalar of `leaf` bytes.
fn alias_bomb(levels: u32, width: usize, leaf: usize) -> (String, u128) {
    let mut text = format!("l0: &l0 {}\n", "x".repeat(leaf.max(1)));
    // Decoded size as the decoder counts it: nodes plus scalar bytes.
    let mut size: u128 = 1 + leaf.max(1) as u128;
    let mut total = 2 + size + 2; // the root mapping, key `l0`, the scalar
    for level in 1..=levels {
        let items = vec![format!("*l{}", level - 1); width].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{items}]\n"));
        size = 1 + size * width as u128;
        total += 1 + format!("l{level}").len() as u128 + size;
    }
    (text, total)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn manifests_never_panic_on_arbitrary_text(text in "(?s).{0,400}") {
        let _ = parse_manifests("fuzz.yaml", &text);
    }

    #[test]
    fn manifests_never_panic_on_yamlish_text(
        text in "([ \\-:\\[\\]{},&*!|>?#'\"\\n]|[a-z0-9]{1,4}|<<|---){0,80}"
    ) {
        let _ = parse_manifests("fuzz.yaml", &text);
        let _ = yaml::from_str(&text);
    }

    #[test]
    fn manifests_never_panic_on_mutated_examples(
        text in example(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let bytes = mutate(text, &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Err(errors) = parse_manifests("fuzz.yaml", &text) {
            for e in errors {
                // Every error renders and names its document.
                prop_assert!(e.to_string().starts_with("fuzz.yaml doc "));
            }
        }
    }

    #[test]
    fn manifests_never_panic_on_mutated_json(
        text in example_json(),
        edits in proptest::collection::vec(edit(), 0..4),
    ) {
        let bytes = mutate(&text, &edits);
        let text = String::from_utf8_lossy(&bytes);
        let result = parse_manifests("fuzz.json", &text);
        if edits.is_empty() {
            prop_assert!(result.is_ok(), "{:?}", result.err());
        }
    }

    #[test]
    fn body_decoders_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_body(BodyFormat::Json, &bytes);
        let _ = decode_body(BodyFormat::Yaml, &bytes);
        let _ = yaml::from_slice(&bytes);
    }

    #[test]
    fn body_decoders_agree_on_json(text in example_json()) {
        // JSON is YAML: the YAML decoder reads what the JSON one does, to the same value
        // (for single documents).
        let json = decode_body(BodyFormat::Json, text.as_bytes());
        if let Ok(json) = json {
            let yaml = decode_body(BodyFormat::Yaml, text.as_bytes()).expect("JSON is YAML");
            prop_assert_eq!(json, yaml);
        }
    }

    #[test]
    fn quantities_never_panic_and_round_trip(text in "(?s).{0,24}") {
        if let Ok(cpu) = text.parse::<Cpu>() {
            prop_assert_eq!(cpu.to_string().parse::<Cpu>(), Ok(cpu));
        }
        if let Ok(memory) = text.parse::<Memory>() {
            prop_assert_eq!(memory.to_string().parse::<Memory>(), Ok(memory));
        }
    }

    #[test]
    fn quantity_shaped_strings_round_trip(
        text in "[ +-]?[0-9]{0,22}(\\.[0-9]{0,12})?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E|e3|u|n)? ?"
    ) {
        if let Ok(cpu) = text.parse::<Cpu>() {
            prop_assert_eq!(cpu.to_string().parse::<Cpu>(), Ok(cpu));
            let _ = cpu.cores();
        }
        if let Ok(memory) = text.parse::<Memory>() {
            prop_assert_eq!(memory.to_string().parse::<Memory>(), Ok(memory));
            let _ = memory.approx();
        }
    }

    #[test]
    fn quantity_values_display_and_parse_back(millis in any::<u64>(), bytes in any::<u64>()) {
        prop_assert_eq!(Cpu(millis).to_string().parse::<Cpu>(), Ok(Cpu(millis)));
        prop_assert_eq!(Memory(bytes).to_string().parse::<Memory>(), Ok(Memory(bytes)));
    }

    #[test]
    fn label_selectors_never_panic_and_round_trip(text in "(?s).{0,60}") {
        if let Ok(selector) = LabelSelector::parse(&text) {
            let shown = selector.to_string();
            prop_assert_eq!(LabelSelector::parse(&shown), Ok(selector), "shown as {:?}", shown);
        }
    }

    #[test]
    fn label_selector_shaped_strings_round_trip(
        text in "(( ?!?[a-z0-9./_-]{1,8} ?(=|==|!=| in | notin )?\\(?[a-z0-9._-]{0,6}(,[a-z0-9]{0,3})?\\)?) ?,?){0,5}"
    ) {
        if let Ok(selector) = LabelSelector::parse(&text) {
            let shown = selector.to_string();
            prop_assert_eq!(LabelSelector::parse(&shown), Ok(selector), "shown as {:?}", shown);
        }
    }

    #[test]
    fn field_selectors_never_panic_and_round_trip(text in "(?s).{0,60}") {
        if let Ok(selector) = FieldSelector::parse(&text) {
            let shown = selector.to_string();
            prop_assert_eq!(FieldSelector::parse(&shown), Ok(selector), "shown as {:?}", shown);
        }
    }

    #[test]
    fn field_selector_shaped_strings_round_trip(
        text in "( ?[a-z.]{1,12} ?(=|==|!=) ?[a-z0-9=!-]{0,8} ?,?){0,4}"
    ) {
        if let Ok(selector) = FieldSelector::parse(&text) {
            let shown = selector.to_string();
            prop_assert_eq!(FieldSelector::parse(&shown), Ok(selector), "shown as {:?}", shown);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Any bomb whose expansion passes the budget is refused as alias expansion; one within
    /// it decodes or is refused the same way by serde_yaml_ng's stricter guard on alias
    /// jumps (100 per event); never anything else.
    #[test]
    fn alias_bombs_are_refused_by_their_decoded_size(
        levels in 1u32..10,
        width in 1usize..12,
        leaf in 1usize..2000,
    ) {
        let (text, decoded) = alias_bomb(levels, width, leaf);
        let limit = yaml::budget(text.len()) as u128;
        match yaml::from_str(&text) {
            Ok(_) => prop_assert!(decoded <= limit, "{decoded} decoded > {limit} accepted"),
            Err(YamlError::AliasExpansion { .. } | YamlError::AliasRepetition) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// Documents without aliases are never refused for expansion, however dense.
    #[test]
    fn alias_free_documents_are_never_refused_for_expansion(
        text in "([\\[\\]{},?: \\n-]|\"\\\\L\"|[a-z]|<<){0,3000}",
    ) {
        if let Err(e @ (YamlError::AliasExpansion { .. } | YamlError::AliasRepetition)) =
            yaml::from_str(&text)
        {
            prop_assert!(false, "{e}");
        }
    }
}

#[test]
fn the_densest_alias_free_documents_fit_the_budget() {
    // Flow mappings of keys without values: the most nodes per byte YAML allows.
    for text in [
        format!("{{{}}}", vec!["a"; 500_000].join(",")),
        format!("[{}]", vec!["[]"; 400_000].join(",")),
        format!("\"{}\"", "\\L".repeat(1_000_000)),
    ] {
        match yaml::from_str(&text) {
            Ok(_) | Err(YamlError::Syntax { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
