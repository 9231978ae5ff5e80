//! From JSON to typed objects, and the checks that make an object acceptable.
//!
//! Two steps. [`decode`] turns a JSON value into an [`AnyObject`] by its `kind`, refusing
//! unknown fields and naming the field path of the first structural error (serde stops
//! there). [`validate`] then checks meaning (names, labels, jurisdictions, coherence of
//! type and driver...) and reports every problem at once. [`object_from_value`] does both.
//! Server-set fields (`uid`, `resourceVersion`, `status`...) are not checked.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::jurisdiction;
use crate::kinds::*;
use crate::meta::ObjectMeta;
use crate::selector::MatchExpression;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path, e.g. `spec.task.resources.memory` or `spec.task.command[0]`; empty
    /// when the problem is the document as a whole.
    pub field: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
    /// 1-based line in the source file, when known.
    pub line: Option<usize>,
    /// 1-based column in the source file, when known.
    pub column: Option<usize>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Every problem found in one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }
    fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldErrors(vec![FieldError::new(field, message)])
    }
    /// Prefixes every field path (`items[2]` for an item of a list).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.0 {
            e.field = if e.field.is_empty() {
                prefix.to_string()
            } else if e.field.starts_with('[') {
                format!("{prefix}{}", e.field)
            } else {
                format!("{prefix}.{}", e.field)
            };
        }
        self
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl IntoIterator for FieldErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

fn known_kinds() -> String {
    KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
}

/// Refuses NUL characters in any key or string: no command line, environment variable,
/// path or name can hold one (the operating system would cut the string there or refuse
/// it), so a NUL is either a mistake or an attempt to make two readers see two values.
pub fn no_nul_bytes(value: &serde_json::Value) -> Result<(), FieldErrors> {
    fn walk(value: &serde_json::Value, path: &mut String, errors: &mut Vec<FieldError>) {
        const MAX_REPORTED: usize = 20;
        if errors.len() >= MAX_REPORTED {
            return;
        }
        let nul = "contains a NUL character (\\u0000): remove it";
        match value {
            serde_json::Value::String(s) if s.contains('\0') => {
                errors.push(FieldError::new(path.as_str(), nul));
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path, errors);
                    path.truncate(len);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    if key.contains('\0') {
                        errors.push(FieldError::new(path.as_str(), nul));
                    }
                    walk(item, path, errors);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut errors = Vec::new();
    walk(value, &mut String::new(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(FieldErrors(errors))
    }
}

/// Decodes by `kind` and checks meaning: what the server does on create and update, and
/// what `meridian apply` does before sending.
pub fn object_from_value(value: serde_json::Value) -> Result<AnyObject, FieldErrors> {
    no_nul_bytes(&value)?;
    let object = decode(value)?;
    validate(&object)?;
    Ok(object)
}

/// Like [`object_from_value`] for a kind already known (from the URL); a `kind` in the
/// body must agree with it.
pub fn object_from_value_as(
    info: &KindInfo,
    value: serde_json::Value,
) -> Result<AnyObject, FieldErrors> {
    no_nul_bytes(&value)?;
    let object = decode_as(info, value)?;
    validate(&object)?;
    Ok(object)
}

/// Decodes by `kind` without the semantic checks.
pub fn decode(value: serde_json::Value) -> Result<AnyObject, FieldErrors> {
    let Some(map) = value.as_object() else {
        return Err(FieldErrors::single(
            "",
            format!(
                "expected an object with apiVersion, kind, metadata and spec, got {}",
                json_type(&value)
            ),
        ));
    };
    let mut errors = Vec::new();
    let info = match map.get("kind") {
        None => {
            errors.push(FieldError::new(
                "kind",
                format!("required field is missing (one of: {})", known_kinds()),
            ));
            None
        }
        Some(serde_json::Value::String(kind)) => match KINDS.iter().find(|k| k.kind == kind) {
            Some(info) => Some(info),
            None => {
                let message = match lookup_kind(kind) {
                    Some(info) => format!("{kind:?} is not a kind; did you mean {:?}?", info.kind),
                    None => format!(
                        "{kind:?} is not a Meridian kind (known kinds: {})",
                        known_kinds()
                    ),
                };
                errors.push(FieldError::new("kind", message));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                "kind",
                format!("expected a string, got {}", json_type(other)),
            ));
            None
        }
    };
    if let Err(e) = check_api_version(map.get("apiVersion")) {
        errors.push(e);
    }
    match info {
        Some(info) if errors.is_empty() => decode_as(info, value),
        _ => Err(FieldErrors(errors)),
    }
}

fn check_api_version(v: Option<&serde_json::Value>) -> Result<(), FieldError> {
    match v {
        Some(serde_json::Value::String(s)) if s == crate::API_VERSION => Ok(()),
        None => Err(FieldError::new(
            "apiVersion",
            format!("required field is missing (use {})", crate::API_VERSION),
        )),
        Some(other) => Err(FieldError::new(
            "apiVersion",
            format!("{other} is not served here (use {})", crate::API_VERSION),
        )),
    }
}

/// Decodes as the kind `info` without the semantic checks.
pub fn decode_as(info: &KindInfo, mut value: serde_json::Value) -> Result<AnyObject, FieldErrors> {
    let Some(map) = value.as_object_mut() else {
        return Err(FieldErrors::single(
            "",
            format!("expected an object, got {}", json_type(&value)),
        ));
    };
    let mut errors = Vec::new();
    match map.get("kind") {
        Some(serde_json::Value::String(k)) if k == info.kind => {}
        None => errors.push(FieldError::new(
            "kind",
            format!("required field is missing (use {})", info.kind),
        )),
        Some(other) => errors.push(FieldError::new(
            "kind",
            format!(
                "{other} does not match the resource (expected {})",
                info.kind
            ),
        )),
    }
    if let Err(e) = check_api_version(map.get("apiVersion")) {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(FieldErrors(errors));
    }
    if info.spec_optional() && !map.contains_key("spec") {
        map.insert("spec".into(), serde_json::Value::Object(Default::default()));
    }
    Ok(match info.kind {
        "Site" => AnyObject::Site(typed(value)?),
        "Node" => AnyObject::Node(typed(value)?),
        "Workload" => AnyObject::Workload(typed(value)?),
        "Allocation" => AnyObject::Allocation(typed(value)?),
        "Policy" => AnyObject::Policy(typed(value)?),
        "Project" => AnyObject::Project(typed(value)?),
        "Secret" => AnyObject::Secret(typed(value)?),
        "Event" => AnyObject::Event(typed(value)?),
        "VirtualMachine" => AnyObject::VirtualMachine(typed(value)?),
        "MigrationPlan" => AnyObject::MigrationPlan(typed(value)?),
        "Queue" => AnyObject::Queue(typed(value)?),
        "Cohort" => AnyObject::Cohort(typed(value)?),
        other => unreachable!("kind {other} in KINDS without a type"),
    })
}

/// A plausible RFC 3339 time (`2026-12-06T05:00:00Z`, fractions and offsets allowed): the
/// shape only, as this crate reads no clock and parses no calendar.
fn is_timestamp(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (t.ends_with('Z') || t.ends_with('z') || t[19..].contains(['+', '-']))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Deserializes with the path of the failing field.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldErrors(vec![translate_serde_error(
            &path,
            &e.into_inner().to_string(),
        )])
    })
}

/// Backquoted words of a serde message: "unknown field `a`, expected one of `b`, `c`".
fn backquoted(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Rewrites serde's wording into messages that say what to write.
pub(crate) fn translate_serde_error(path: &str, message: &str) -> FieldError {
    let join = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let words = backquoted(rest);
        let (unknown, expected) = words.split_first().map_or(("", &[][..]), |(u, e)| (*u, e));
        let message = if expected.is_empty() {
            "unknown field (nothing may be set here)".to_string()
        } else if let Some(s) = suggest(unknown, expected) {
            format!("unknown field (did you mean {s:?}?)")
        } else {
            format!("unknown field (expected one of: {})", expected.join(", "))
        };
        return FieldError::new(path, message);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = backquoted(rest)
            .first()
            .copied()
            .unwrap_or(rest)
            .to_string();
        return FieldError::new(join(&field), "required field is missing");
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let words = backquoted(rest);
        let (unknown, expected) = words.split_first().map_or(("", &[][..]), |(u, e)| (*u, e));
        let mut m = format!("{unknown:?} is not one of: {}", expected.join(", "));
        if let Some(s) = suggest(unknown, expected) {
            m.push_str(&format!(" (did you mean {s:?}?)"));
        }
        return FieldError::new(path, m);
    }
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((got, expected)) = rest.rsplit_once(", expected ")
    {
        let expected = match expected {
            "i8" | "i16" | "i32" | "i64" => "an integer",
            "u8" | "u16" | "u32" | "u64" => "a non-negative integer",
            "f32" | "f64" => "a number",
            "a map" => "a mapping",
            "a sequence" => "a list",
            e if e.starts_with("struct ") => "a mapping",
            e => e,
        };
        let got = got.replace('`', "");
        return FieldError::new(path, format!("expected {expected}, got {got}"));
    }
    if message.starts_with("data did not match any variant of untagged enum") {
        return FieldError::new(path, "expected a string, a number or a boolean");
    }
    FieldError::new(path, message)
}

/// The closest candidate to a misspelt word, if it is close enough to be a good guess.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    if let Some(c) = candidates.iter().find(|c| c.to_ascii_lowercase() == lower) {
        return Some(c);
    }
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, levenshtein(&lower, &c.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    let limit = (word.chars().count() / 3).clamp(1, 3);
    (distance <= limit).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------
// Rules shared with selectors

const LABEL_RULE: &str = "at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (an RFC 1123 label)";
const SUBDOMAIN_RULE: &str = "at most 253 lowercase letters, digits, '-' and '.', each '.'-separated part starting and ending with a letter or digit (an RFC 1123 subdomain)";
/// Upper bound of `spec.revisionHistoryLimit`.
const MAX_REVISION_HISTORY: u32 = 100;
/// Upper bound of `spec.update.minReadySeconds`.
const MAX_MIN_READY_SECONDS: u32 = 86_400;

/// An RFC 1123 label: `payroll-api`.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LABEL_RULE.to_string())
    }
}

/// An RFC 1123 subdomain: `gpu-01.fra.example.com`.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(SUBDOMAIN_RULE.to_string())
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label (or annotation) key: `[prefix/]name`.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && check_dns_subdomain(p).is_err()
    {
        return Err(format!(
            "the prefix {p:?} must be a DNS subdomain such as example.com"
        ));
    }
    if !is_label_name(name) {
        return Err("the name part must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".to_string());
    }
    Ok(())
}

/// A Kubernetes label value: empty, or like the name part of a key.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err("must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".to_string())
    }
}

/// A Windows build `major.minor.build[.revision]`, e.g. `10.0.20348`. Returns the parts.
pub fn parse_windows_build(s: &str) -> Option<Vec<u32>> {
    let parts: Option<Vec<u32>> = s
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect();
    parts.filter(|p| p.len() == 3 || p.len() == 4)
}

// ---------------------------------------------------------------------------------------
// Semantic checks

/// Collects errors.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn label_name(&mut self, field: &str, value: &str, what: &str) {
        if value.is_empty() {
            self.err(field, format!("required: the {what}'s name"));
        } else if let Err(rule) = check_dns_label(value) {
            self.err(
                field,
                format!("{value:?} is not a valid {what} name: use {rule}"),
            );
        }
    }

    fn non_empty(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.err(field, "must not be empty");
        }
    }

    fn strings(&mut self, field: &str, values: &[String]) {
        for (i, v) in values.iter().enumerate() {
            self.non_empty(&format!("{field}[{i}]"), v);
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                self.err(format!("{field}[{i}]"), format!("{v:?} is listed twice"));
            }
        }
    }

    fn country(&mut self, field: &str, code: &str) {
        if !jurisdiction::is_country(code) {
            self.err(field, jurisdiction::explain_invalid(code, false));
        }
    }

    fn jurisdictions(&mut self, field: &str, codes: &[String]) {
        for (i, code) in codes.iter().enumerate() {
            if !jurisdiction::is_valid(code) {
                self.err(
                    format!("{field}[{i}]"),
                    jurisdiction::explain_invalid(code, true),
                );
            }
        }
    }

    fn meta(&mut self, info: &KindInfo, meta: &ObjectMeta) {
        // Nodes are named after hosts; events `{object}.{time}`, as Kubernetes names them.
        let subdomain = info == NODE || info == EVENT;
        if meta.name.is_empty() {
            match &meta.generate_name {
                Some(prefix) => {
                    let probe = format!("{prefix}x");
                    if prefix.len() > 58 || check_dns_label(&probe).is_err() {
                        self.err(
                            "metadata.generateName",
                            format!("{prefix:?} is not a valid name prefix: use at most 58 lowercase letters, digits and '-', starting with a letter or digit"),
                        );
                    }
                }
                None => self.err(
                    "metadata.name",
                    format!("required: every {} needs a name", info.kind),
                ),
            }
        } else if subdomain {
            if let Err(rule) = check_dns_subdomain(&meta.name) {
                self.err(
                    "metadata.name",
                    format!("{:?} is not a valid name: use {rule}", meta.name),
                );
            }
        } else if let Err(rule) = check_dns_label(&meta.name) {
            self.err(
                "metadata.name",
                format!("{:?} is not a valid name: use {rule}", meta.name),
            );
        }
        match (&meta.namespace, info.namespaced()) {
            (Some(ns), true) => {
                if let Err(rule) = check_dns_label(ns) {
                    self.err(
                        "metadata.namespace",
                        format!("{ns:?} is not a valid project name: use {rule}"),
                    );
                }
            }
            (Some(_), false) => self.err(
                "metadata.namespace",
                format!(
                    "a {} is global and belongs to no project; remove metadata.namespace",
                    info.kind
                ),
            ),
            (None, _) => {}
        }
        for (k, v) in &meta.labels {
            if let Err(m) = check_label_key(k) {
                self.err(
                    format!("metadata.labels.{k}"),
                    format!("invalid label key: {m}"),
                );
            }
            if let Err(m) = check_label_value(v) {
                self.err(
                    format!("metadata.labels.{k}"),
                    format!("invalid label value {v:?}: {m}"),
                );
            }
        }
        for k in meta.annotations.keys() {
            if let Err(m) = check_label_key(k) {
                self.err(
                    format!("metadata.annotations.{k}"),
                    format!("invalid annotation key: {m}"),
                );
            }
        }
        let size: usize = meta
            .annotations
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if size > 256 * 1024 {
            self.err(
                "metadata.annotations",
                format!("total size {size} bytes is over the limit of 262144"),
            );
        }
    }

    fn match_expressions(&mut self, field: &str, exprs: &[MatchExpression]) {
        for (i, e) in exprs.iter().enumerate() {
            if let Err(m) = e.check() {
                self.err(format!("{field}[{i}]"), m);
            }
        }
    }

    fn windows_build(&mut self, field: &str, build: &str) {
        if parse_windows_build(build).is_none() {
            self.err(
                field,
                format!("{build:?} is not a Windows build: write major.minor.build, e.g. \"10.0.20348\" (Windows Server 2022) or \"10.0.17763\" (2019)"),
            );
        }
    }

    fn site(&mut self, s: &SiteSpec) {
        if s.provider.is_empty() {
            self.err(
                "spec.provider",
                "required: azure, aws, gcp, onprem, edge or another provider name",
            );
        } else if check_dns_label(&s.provider).is_err() {
            self.err(
                "spec.provider",
                format!(
                    "{:?} must be lowercase letters, digits and '-' (e.g. azure, onprem)",
                    s.provider
                ),
            );
        }
        if let Some(r) = &s.region {
            self.non_empty("spec.region", r);
        }
        self.strings("spec.zones", &s.zones);
        self.country("spec.jurisdiction", &s.jurisdiction);
        if let Some(op) = &s.operator {
            self.non_empty("spec.operator.name", &op.name);
            self.country("spec.operator.jurisdiction", &op.jurisdiction);
        }
        self.strings("spec.certifications", &s.certifications);
        if let Some(p) = &s.pricing {
            let mut price = |field: &str, v: f64| {
                if !v.is_finite() || v < 0.0 {
                    self.err(field, format!("{v} must be a price of 0 or more"));
                }
            };
            if let Some(v) = p.cpu_core_hour {
                price("spec.pricing.cpuCoreHour", v);
            }
            if let Some(v) = p.memory_gib_hour {
                price("spec.pricing.memoryGiBHour", v);
            }
            for (model, v) in &p.gpu_hour {
                price(&format!("spec.pricing.gpuHour.{model}"), *v);
            }
        }
        if let Some(c) = &s.carbon
            && (!c.grams_per_kwh.is_finite() || c.grams_per_kwh < 0.0)
        {
            self.err("spec.carbon.gramsPerKWh", "must be 0 or more");
        }
    }

    fn node_resources(&mut self, field: &str, r: &NodeResources) {
        for (i, g) in r.gpus.iter().enumerate() {
            self.non_empty(&format!("{field}.gpus[{i}].model"), &g.model);
            if g.count == 0 {
                self.err(format!("{field}.gpus[{i}].count"), "must be 1 or more");
            }
        }
    }

    fn node(&mut self, n: &NodeSpec) {
        self.label_name("spec.site", &n.site, "Site");
        if let Some(z) = &n.zone {
            self.non_empty("spec.zone", z);
        }
        match (n.os.family, &n.os.build) {
            (OsFamily::Windows, Some(b)) => self.windows_build("spec.os.build", b),
            (OsFamily::Windows, None) => {}
            (OsFamily::Linux, Some(_)) => self.err(
                "spec.os.build",
                "only Windows nodes have a build; use spec.os.version and spec.os.kernel",
            ),
            (OsFamily::Linux, None) => {}
        }
        self.node_resources("spec.capacity", &n.capacity);
        if let Some(a) = &n.allocatable {
            self.node_resources("spec.allocatable", a);
            if a.cpu > n.capacity.cpu {
                self.err(
                    "spec.allocatable.cpu",
                    format!("{} is more than capacity ({})", a.cpu, n.capacity.cpu),
                );
            }
            if a.memory > n.capacity.memory {
                self.err(
                    "spec.allocatable.memory",
                    format!("{} is more than capacity ({})", a.memory, n.capacity.memory),
                );
            }
            if a.gpu_count() > n.capacity.gpu_count() {
                self.err("spec.allocatable.gpus", "more GPUs than capacity");
            }
        }
        for (i, d) in n.drivers.iter().enumerate() {
            if n.drivers[..i].contains(d) {
                self.err(format!("spec.drivers[{i}]"), format!("{d} is listed twice"));
            }
        }
        for (i, t) in n.taints.iter().enumerate() {
            if let Err(m) = check_label_key(&t.key) {
                self.err(format!("spec.taints[{i}].key"), format!("{:?}: {m}", t.key));
            }
            if let Some(v) = &t.value
                && let Err(m) = check_label_value(v)
            {
                self.err(format!("spec.taints[{i}].value"), format!("{v:?}: {m}"));
            }
        }
    }

    fn task(&mut self, w: &WorkloadSpec) {
        let t = &w.task;
        match t.driver {
            Driver::Exec => {
                if t.command.is_empty() {
                    self.err(
                        "spec.task.command",
                        "the exec driver needs a command, e.g. [\"/usr/bin/python3\", \"-m\", \"http.server\"]",
                    );
                }
            }
            Driver::Container => {
                if t.image.as_deref().is_none_or(str::is_empty) {
                    self.err(
                        "spec.task.image",
                        "the container driver needs an image, e.g. registry.example.com/app:1.2",
                    );
                }
            }
            Driver::Qemu => {
                if t.disk.is_none() {
                    self.err(
                        "spec.task.disk",
                        "the qemu driver needs a disk, e.g. {image: /var/lib/meridian/images/app.qcow2, format: qcow2}",
                    );
                }
            }
        }
        if w.type_ == WorkloadType::Vm && t.driver != Driver::Qemu {
            self.err(
                "spec.task.driver",
                format!("a vm workload runs with the qemu driver, not {}", t.driver),
            );
        }
        if t.driver == Driver::Qemu && w.type_ != WorkloadType::Vm {
            self.err(
                "spec.type",
                format!(
                    "the qemu driver runs virtual machines: use type: vm (not {})",
                    w.type_
                ),
            );
        }
        if t.image.is_some() && t.driver != Driver::Container {
            self.err(
                "spec.task.image",
                format!(
                    "only the container driver takes an image (the driver is {})",
                    t.driver
                ),
            );
        }
        if let Some(d) = &t.disk {
            if t.driver != Driver::Qemu {
                self.err(
                    "spec.task.disk",
                    format!(
                        "only the qemu driver takes a disk (the driver is {})",
                        t.driver
                    ),
                );
            }
            self.non_empty("spec.task.disk.image", &d.image);
            if let Some(k) = &d.kernel {
                self.non_empty("spec.task.disk.kernel", k);
            }
            for (field, value) in [("initrd", &d.initrd), ("cmdline", &d.cmdline)] {
                let Some(v) = value else { continue };
                if d.kernel.is_none() {
                    self.err(
                        format!("spec.task.disk.{field}"),
                        format!("{field} is for booting a kernel directly: set spec.task.disk.kernel too (e.g. /var/lib/meridian/images/vmlinuz), or remove {field}"),
                    );
                } else if field == "initrd" {
                    self.non_empty("spec.task.disk.initrd", v);
                }
            }
        }
        if let Some(h) = &t.health {
            self.health("spec.task.health", h);
        }
        self.program("spec.task.command", &t.command);
        for (k, v) in &t.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                self.err(
                    format!("spec.task.env.{k}"),
                    "an environment variable name must be non-empty and contain no '='",
                );
            } else if k.starts_with("MERIDIAN_") && !k.starts_with("MERIDIAN_SIM_") {
                self.err(
                    format!("spec.task.env.{k}"),
                    "MERIDIAN_* variables are set by the agent (allocation, node, ports); choose another name",
                );
            }
            if let Some(r) = v.secret_ref() {
                let field = format!("spec.task.env.{k}.valueFrom.secretRef");
                self.label_name(&format!("{field}.name"), &r.name, "Secret");
                if !is_secret_key(&r.key) {
                    self.err(
                        format!("{field}.key"),
                        "a key is 1 to 253 characters of letters, digits, '-', '_' and '.'",
                    );
                }
            }
        }
        if let Some(u) = &t.user
            && let Err(why) = crate::task::parse_user(u)
        {
            self.err("spec.task.user", why);
        }
        self.ports(t);
        let mut volumes = std::collections::BTreeSet::new();
        let mut mounts = std::collections::BTreeSet::new();
        for (i, v) in t.volumes.iter().enumerate() {
            let field = format!("spec.task.volumes[{i}]");
            self.label_name(&format!("{field}.name"), &v.name, "volume");
            if !volumes.insert(v.name.as_str()) {
                self.err(
                    format!("{field}.name"),
                    format!("volume {} is mounted twice", v.name),
                );
            }
            if v.mount_path.is_empty()
                || v.mount_path.contains('\0')
                || v.mount_path.split(['/', '\\']).any(|c| c == "..")
            {
                self.err(
                    format!("{field}.mountPath"),
                    "a path without '..' (absolute, or relative to the task's directory)",
                );
            } else if !mounts.insert(v.mount_path.trim_end_matches('/')) {
                self.err(
                    format!("{field}.mountPath"),
                    format!("{} is the mount path of two volumes", v.mount_path),
                );
            }
        }
        for (i, sf) in t.secrets.iter().enumerate() {
            let field = format!("spec.task.secrets[{i}]");
            self.label_name(&format!("{field}.name"), &sf.name, "Secret");
            for (j, k) in sf.keys.iter().enumerate() {
                if !is_secret_key(k) {
                    self.err(
                        format!("{field}.keys[{j}]"),
                        "a key is 1 to 253 characters of letters, digits, '-', '_' and '.'",
                    );
                }
            }
        }
        if let Some(r) = &t.rlimits {
            if r.nofile == Some(0) {
                self.err(
                    "spec.task.rlimits.nofile",
                    "must be at least 1 (a task opens its own program)",
                );
            }
            if r.nproc == Some(0) {
                self.err("spec.task.rlimits.nproc", "must be at least 1");
            }
        }
        if let Some(dir) = &t.working_dir {
            self.non_empty("spec.task.workingDir", dir);
        }
        let r = &t.resources;
        if r.cpu.millis() == 0 {
            self.err(
                "spec.task.resources.cpu",
                "must be more than 0 (e.g. 250m or 2)",
            );
        }
        if r.memory.bytes() == 0 {
            self.err(
                "spec.task.resources.memory",
                "must be more than 0 (e.g. 512Mi or 4Gi)",
            );
        }
        if let Some(g) = &r.gpu {
            if g.count.is_zero() {
                self.err(
                    "spec.task.resources.gpu.count",
                    "must be more than 0: whole GPUs (1) or a share of one GPU (0.25); or remove gpu",
                );
            } else if g.count > 1 && !g.count.is_whole() {
                self.err(
                    "spec.task.resources.gpu.count",
                    format!(
                        "{} GPUs: above 1 a GPU count must be whole ({} or {}); a share below 1 (0.25) is part of one device and never spans two",
                        g.count,
                        g.count.devices() - 1,
                        g.count.devices()
                    ),
                );
            }
            if !g.devices.is_empty() {
                self.err(
                    "spec.task.resources.gpu.devices",
                    "devices are chosen by the scheduler (in an Allocation); remove them from the workload",
                );
            }
            if let Some(m) = &g.model {
                self.non_empty("spec.task.resources.gpu.model", m);
            }
        }
        if let Some(os) = &t.os {
            if let Some(b) = &os.build {
                if os.family == OsFamily::Windows {
                    self.windows_build("spec.task.os.build", b);
                } else {
                    self.err(
                        "spec.task.os.build",
                        "a build is for Windows only; remove it or use family: windows",
                    );
                }
            }
            if os.isolation.is_some() && os.family != OsFamily::Windows {
                self.err(
                    "spec.task.os.isolation",
                    "isolation is for Windows only; remove it or use family: windows",
                );
            }
        }
    }

    /// `task.ports`: names unique DNS labels of at most 15 characters (as Kubernetes),
    /// numbers 0 (dynamic) to 65535, static host ports unique per protocol, targets ports.
    fn ports(&mut self, t: &Task) {
        let mut names = std::collections::BTreeSet::new();
        let mut statics = std::collections::BTreeSet::new();
        for (i, p) in t.ports.iter().enumerate() {
            let field = format!("spec.task.ports[{i}]");
            self.label_name(&format!("{field}.name"), &p.name, "port");
            if p.name.len() > 15 {
                self.err(
                    format!("{field}.name"),
                    "a port name is at most 15 characters (it becomes MERIDIAN_PORT_<NAME>)",
                );
            }
            if !names.insert(p.name.as_str()) {
                self.err(
                    format!("{field}.name"),
                    format!("port {} is named twice", p.name),
                );
            }
            if p.port > 65535 {
                self.err(
                    format!("{field}.port"),
                    format!(
                        "{} is not a port: use 1 to 65535, or 0 for one the scheduler picks",
                        p.port
                    ),
                );
            } else if p.port != 0 && !statics.insert((p.port, p.protocol)) {
                self.err(
                    format!("{field}.port"),
                    format!("{}/{} is given twice", p.port, p.protocol),
                );
            }
            if let Some(target) = p.target {
                if target == 0 || target > 65535 {
                    self.err(
                        format!("{field}.target"),
                        format!("{target} is not a port: use 1 to 65535"),
                    );
                } else if t.driver == Driver::Exec && p.port != 0 && target != p.port {
                    self.err(
                        format!("{field}.target"),
                        "an exec task listens on the host port itself: remove target, or use the container or qemu driver",
                    );
                }
            }
        }
        let check_ref = |c: &mut Self, field: &str, r: &crate::task::PortRef| {
            if let crate::task::PortRef::Name(n) = r
                && !t.ports.iter().any(|p| &p.name == n)
            {
                c.err(
                    field,
                    format!("names port {n}, which is not in spec.task.ports"),
                );
            }
        };
        if let Some(h) = &t.health {
            if let Some(c) = &h.http {
                check_ref(self, "spec.task.health.http.port", &c.port);
            }
            if let Some(c) = &h.tcp {
                check_ref(self, "spec.task.health.tcp.port", &c.port);
            }
        }
    }

    fn health(&mut self, field: &str, h: &HealthCheck) {
        let kinds = [
            h.http.is_some().then_some("http"),
            h.tcp.is_some().then_some("tcp"),
            h.command.is_some().then_some("command"),
        ];
        let set: Vec<&str> = kinds.into_iter().flatten().collect();
        match set.as_slice() {
            [] => self.err(
                field,
                "a health check needs one of http {port, path}, tcp {port} or command {command: [...]}",
            ),
            [_] => {}
            many => self.err(
                field,
                format!(
                    "a health check has exactly one of http, tcp or command; remove all but one of {}",
                    many.join(", ")
                ),
            ),
        }
        if let Some(c) = &h.http {
            if c.port == crate::task::PortRef::Number(0) {
                self.err(format!("{field}.http.port"), "must be 1 to 65535");
            }
            if !c.path.starts_with('/') || c.path.chars().any(char::is_whitespace) {
                self.err(
                    format!("{field}.http.path"),
                    format!(
                        "{:?} is not a URL path: start it with / and use no spaces (e.g. /healthz)",
                        c.path
                    ),
                );
            }
        }
        if let Some(c) = &h.tcp
            && c.port == crate::task::PortRef::Number(0)
        {
            self.err(format!("{field}.tcp.port"), "must be 1 to 65535");
        }
        if let Some(c) = &h.command {
            if c.command.is_empty() {
                self.err(
                    format!("{field}.command.command"),
                    "needs a program, e.g. [\"/usr/bin/pg_isready\", \"-q\"]",
                );
            }
            self.program(&format!("{field}.command.command"), &c.command);
        }
        let durations = [
            ("interval", &h.interval, false),
            ("timeout", &h.timeout, false),
            ("initialDelay", &h.initial_delay, true),
        ];
        for (name, value, zero_ok) in durations {
            let Some(v) = value else { continue };
            match crate::duration::parse(v) {
                Err(e) => self.err(format!("{field}.{name}"), e.to_string()),
                Ok(d) if d.is_zero() && !zero_ok => {
                    self.err(format!("{field}.{name}"), "must be more than 0 (e.g. 10s)");
                }
                Ok(_) => {}
            }
        }
        if h.failure_threshold == Some(0) {
            self.err(
                format!("{field}.failureThreshold"),
                "must be 1 or more (the failures in a row that restart the task)",
            );
        }
        if let (Some(i), Some(t)) = (
            h.interval
                .as_deref()
                .and_then(|v| crate::duration::parse(v).ok()),
            h.timeout
                .as_deref()
                .and_then(|v| crate::duration::parse(v).ok()),
        ) && t > i
        {
            self.err(
                format!("{field}.timeout"),
                format!("{} is longer than the interval ({}): a check must end before the next one starts", h.timeout.as_deref().unwrap_or_default(), h.interval.as_deref().unwrap_or_default()),
            );
        }
    }

    fn program(&mut self, field: &str, values: &[String]) {
        if values.first().is_some_and(|v| v.trim().is_empty()) {
            self.err(format!("{field}[0]"), "the program must not be empty");
        }
    }

    fn workload(&mut self, w: &WorkloadSpec) {
        if w.replicas < 0 {
            self.err("spec.replicas", format!("{} must be 0 or more", w.replicas));
        }
        self.task(w);
        if let Some(d) = &w.data {
            self.jurisdictions("spec.data.residency", &d.residency);
            if d.sovereignty == Sovereignty::Strict && d.residency.is_empty() {
                self.err(
                    "spec.data.sovereignty",
                    "strict sovereignty checks the site operator against spec.data.residency, which is empty; list the allowed jurisdictions (e.g. [EU])",
                );
            }
            if let Some(l) = &d.location {
                self.label_name("spec.data.location", l, "Site");
            }
        }
        self.strings("spec.compliance", &w.compliance);
        if let Some(p) = &w.placement {
            self.match_expressions("spec.placement.matchExpressions", &p.match_expressions);
            for (i, pref) in p.preferences.iter().enumerate() {
                let field = format!("spec.placement.preferences[{i}]");
                if !(-100..=100).contains(&pref.weight) {
                    self.err(
                        format!("{field}.weight"),
                        format!("{} is outside -100..100", pref.weight),
                    );
                }
                if pref.match_expressions.is_empty() {
                    self.err(
                        format!("{field}.matchExpressions"),
                        "a preference needs at least one expression",
                    );
                }
                self.match_expressions(
                    &format!("{field}.matchExpressions"),
                    &pref.match_expressions,
                );
            }
            if let Some(s) = &p.spread {
                self.non_empty("spec.placement.spread.key", &s.key);
                if s.max_skew < 1 {
                    self.err(
                        "spec.placement.spread.maxSkew",
                        format!("{} must be 1 or more", s.max_skew),
                    );
                }
            }
        }
        for (i, t) in w.tolerations.iter().enumerate() {
            let field = format!("spec.tolerations[{i}]");
            match (&t.key, t.operator) {
                (None, TolerationOperator::Equal) => self.err(
                    format!("{field}.key"),
                    "required with operator Equal (use operator: Exists without a key to tolerate every taint)",
                ),
                (_, TolerationOperator::Exists) if t.value.is_some() => self.err(
                    format!("{field}.value"),
                    "operator Exists takes no value",
                ),
                _ => {}
            }
        }
        const PRIORITY_LIMIT: i32 = 1_000_000_000;
        if !(-PRIORITY_LIMIT..=PRIORITY_LIMIT).contains(&w.priority) {
            self.err(
                "spec.priority",
                format!("{} is outside -1000000000..1000000000", w.priority),
            );
        }
        if let Some(g) = w.gang {
            if w.type_ != WorkloadType::Job {
                self.err(
                    "spec.gang",
                    format!(
                        "only jobs are gang-scheduled (this is a {}); remove gang",
                        w.type_
                    ),
                );
            } else if g < 1 {
                self.err("spec.gang", "must be 1 or more");
            } else if i64::from(g) > i64::from(w.replicas) {
                self.err(
                    "spec.gang",
                    format!(
                        "{g} is more than spec.replicas ({}); a gang is a group of replicas placed together, so set replicas: {g} or more",
                        w.replicas
                    ),
                );
            }
        }
        if let Some(m) = w.min_parallelism {
            if w.type_ != WorkloadType::Job {
                self.err(
                    "spec.minParallelism",
                    format!(
                        "only jobs are admitted partially (this is a {}); remove minParallelism",
                        w.type_
                    ),
                );
            } else if w.gang.is_some() {
                self.err(
                    "spec.minParallelism",
                    "a gang is admitted whole: remove minParallelism, or gang to let the job start with fewer instances",
                );
            } else if m < 1 {
                self.err("spec.minParallelism", "must be 1 or more");
            } else if let Some(p) = w.parallelism.filter(|&p| m > p) {
                self.err(
                    "spec.minParallelism",
                    format!("{m} is more than spec.parallelism ({p})"),
                );
            } else if i64::from(m) > i64::from(w.replicas) {
                self.err(
                    "spec.minParallelism",
                    format!("{m} is more than spec.replicas ({})", w.replicas),
                );
            }
        }
        if let Some(t) = w.placement.as_ref().and_then(|p| p.topology.as_ref()) {
            if t.level.trim().is_empty() {
                self.err(
                    "spec.placement.topology.level",
                    "required: the key every gang member shares (site.name, site.zone, or a node label such as rack)",
                );
            }
            if w.gang.is_none() {
                self.err(
                    "spec.placement.topology",
                    "applies to gangs: set spec.gang (the members placed together), or use placement.spread for other work",
                );
            }
        }
        if let Some(q) = &w.queue {
            self.label_name("spec.queue", q, "queue");
        }
        if let Some(r) = &w.restart {
            if r.max_retries.is_some() && r.policy != RestartPolicy::OnFailure {
                self.err(
                    "spec.restart.maxRetries",
                    format!(
                        "applies to policy on-failure only (the policy is {})",
                        r.policy
                    ),
                );
            }
            if let Some(b) = &r.backoff
                && let Err(e) = crate::duration::parse(b)
            {
                self.err("spec.restart.backoff", e.to_string());
            }
        }
        if let Some(u) = &w.update {
            self.update(w, u);
        }
        if let Some(limit) = w.revision_history_limit
            && limit > MAX_REVISION_HISTORY
        {
            self.err(
                "spec.revisionHistoryLimit",
                format!("{limit} is more than {MAX_REVISION_HISTORY}"),
            );
        }
        if let Some(t) = &w.restarted_at {
            self.non_empty("spec.restartedAt", t);
        }
        if let Some(schedule) = &w.schedule
            && let Err(e) = schedule.parse::<crate::schedule::Schedule>()
        {
            self.err("spec.schedule", e);
        }
        for (field, set) in [
            ("spec.concurrencyPolicy", w.concurrency_policy.is_some()),
            (
                "spec.successfulJobsHistoryLimit",
                w.successful_jobs_history_limit.is_some(),
            ),
            (
                "spec.failedJobsHistoryLimit",
                w.failed_jobs_history_limit.is_some(),
            ),
        ] {
            if set && w.schedule.is_none() {
                self.err(
                    field,
                    "applies to periodic jobs only: set spec.schedule, or remove it",
                );
            }
        }
        for limit in [w.successful_jobs_history_limit, w.failed_jobs_history_limit]
            .into_iter()
            .flatten()
        {
            if limit > MAX_REVISION_HISTORY {
                self.err(
                    "spec.successfulJobsHistoryLimit",
                    format!("{limit} is more than {MAX_REVISION_HISTORY}"),
                );
            }
        }
        for (field, set) in [
            ("spec.schedule", w.schedule.is_some()),
            ("spec.parallelism", w.parallelism.is_some()),
            ("spec.backoffLimit", w.backoff_limit.is_some()),
            ("spec.activeDeadline", w.active_deadline.is_some()),
        ] {
            if set && w.type_ != WorkloadType::Job {
                self.err(
                    field,
                    format!("applies to jobs only (this is a {}); remove it", w.type_),
                );
            }
        }
        if w.parallelism == Some(0) {
            self.err("spec.parallelism", "must be 1 or more");
        }
        if let Some(d) = &w.active_deadline
            && let Err(e) = crate::duration::parse_nonzero(d)
        {
            self.err("spec.activeDeadline", e.to_string());
        }
    }

    fn update(&mut self, w: &WorkloadSpec, u: &crate::rollout::UpdateStrategy) {
        use crate::rollout::{IntOrPercent, UpdateStrategyType};
        if w.type_ == WorkloadType::Job {
            self.err(
                "spec.update",
                "jobs are not rolled out (each instance runs to completion); remove update, or make it a service",
            );
            return;
        }
        for (field, value) in [
            ("spec.update.maxSurge", u.max_surge),
            ("spec.update.maxUnavailable", u.max_unavailable),
        ] {
            if let Some(IntOrPercent::Percent(p)) = value
                && p > 100
            {
                self.err(field, format!("\"{p}%\" exceeds 100%"));
            }
        }
        let strategy = u.strategy_for(w.type_);
        if strategy == UpdateStrategyType::Recreate
            && (u.max_surge.is_some() || u.max_unavailable.is_some())
        {
            {
                self.err(
                    "spec.update.strategy",
                    "recreate stops every old instance first, so maxSurge and maxUnavailable do not apply; remove them or use strategy: rolling",
                );
            }
        }
        if let Some(d) = &u.progress_deadline {
            match crate::duration::parse_nonzero(d) {
                Err(e) => self.err("spec.update.progressDeadline", e.to_string()),
                Ok(d) if d.as_secs() <= u64::from(u.min_ready_seconds) => self.err(
                    "spec.update.progressDeadline",
                    format!(
                        "{} must be longer than minReadySeconds ({}s), or no rollout could progress in time",
                        crate::duration::Duration(d),
                        u.min_ready_seconds
                    ),
                ),
                Ok(_) => {}
            }
        }
        if u.min_ready_seconds > MAX_MIN_READY_SECONDS {
            self.err(
                "spec.update.minReadySeconds",
                format!(
                    "{} is more than {MAX_MIN_READY_SECONDS} (a day)",
                    u.min_ready_seconds
                ),
            );
        }
    }

    fn allocation(&mut self, a: &AllocationSpec) {
        self.label_name("spec.workload", &a.workload, "Workload");
        if let Err(rule) = check_dns_subdomain(&a.node) {
            self.err(
                "spec.node",
                format!("{:?} is not a valid Node name: use {rule}", a.node),
            );
        }
        if let Some(s) = &a.site {
            self.label_name("spec.site", s, "Site");
        }
    }

    fn policy(&mut self, p: &PolicySpec) {
        if p.rego.trim().is_empty() {
            self.err(
                "spec.rego",
                "required: a Rego module starting with `package ...`",
            );
        } else if !p
            .rego
            .lines()
            .any(|l| l.trim_start().starts_with("package "))
        {
            self.err(
                "spec.rego",
                "a Rego module must declare a package, e.g. `package meridian.residency`",
            );
        }
        for (i, t) in p.targets.iter().enumerate() {
            if t != "*" && !KINDS.iter().any(|k| k.kind == t) {
                let hint = match lookup_kind(t) {
                    Some(k) => format!("did you mean {:?}?", k.kind),
                    None => format!("known kinds: {}", known_kinds()),
                };
                self.err(
                    format!("spec.targets[{i}]"),
                    format!("{t:?} is not a kind ({hint})"),
                );
            }
        }
        if let Some(m) = &p.match_ {
            for (i, proj) in m.projects.iter().enumerate() {
                self.label_name(&format!("spec.match.projects[{i}]"), proj, "Project");
            }
        }
        for (i, c) in p.controls.iter().enumerate() {
            self.non_empty(&format!("spec.controls[{i}].framework"), &c.framework);
            self.non_empty(&format!("spec.controls[{i}].id"), &c.id);
        }
    }

    /// The recorder writes only what passes; the API refuses the rest (the recorder
    /// truncates long messages, the API does not).
    fn event(&mut self, e: &crate::event::Event) {
        use crate::event::{MAX_MESSAGE_BYTES, MAX_REASON_BYTES, is_camel_case};
        let o = &e.involved_object;
        if o.kind.is_empty() {
            self.err(
                "involvedObject.kind",
                "required: the kind of the object the event is about",
            );
        }
        if o.name.is_empty() {
            self.err(
                "involvedObject.name",
                "required: the name of the object the event is about",
            );
        }
        if e.reason.len() > MAX_REASON_BYTES {
            self.err(
                "reason",
                format!(
                    "is {} bytes long: at most {MAX_REASON_BYTES}",
                    e.reason.len()
                ),
            );
        } else if !e.reason.is_empty() && !is_camel_case(&e.reason) {
            self.err(
                "reason",
                format!(
                    "{:?} is not a CamelCase reason such as FailedScheduling: a capital letter, then letters and digits",
                    e.reason
                ),
            );
        }
        if e.message.len() > MAX_MESSAGE_BYTES {
            self.err(
                "message",
                format!(
                    "is {} bytes long: at most {MAX_MESSAGE_BYTES} (shorten it)",
                    e.message.len()
                ),
            );
        }
        if e.count < 0 {
            self.err("count", "must not be negative");
        }
        for (field, t) in [
            ("firstTimestamp", &e.first_timestamp),
            ("lastTimestamp", &e.last_timestamp),
            ("eventTime", &e.event_time),
        ] {
            if let Some(t) = t
                && !is_timestamp(t)
            {
                self.err(
                    field,
                    format!("{t:?} is not an RFC 3339 time such as 2026-12-06T05:00:00Z"),
                );
            }
        }
    }

    fn project(&mut self, p: &ProjectSpec) {
        self.strings("spec.owners", &p.owners);
        self.jurisdictions("spec.allowedLocations", &p.allowed_locations);
        if let Some(q) = &p.quota {
            for model in q.gpus_by_model.keys() {
                if model.trim().is_empty() {
                    self.err(
                        "spec.quota.gpusByModel",
                        "a GPU model name is empty; name it as nodes report it (H100)",
                    );
                }
            }
        }
        if let Some(q) = &p.default_queue {
            self.label_name("spec.defaultQueue", q, "queue");
        }
    }

    /// A quota's limits: lending within nominal (`lending_within_nominal`, for queues:
    /// a cohort lends from its whole subtree), and limits only where there is someone to
    /// borrow from and lend to (`linked`: the field that names them, when set).
    fn quota_limits(
        &mut self,
        field: &str,
        quota: &crate::queue::QueueQuota,
        linked: Result<(), &str>,
        lending_within_nominal: bool,
    ) {
        use crate::queue::ResourceQuota;
        fn limits<T: Copy + PartialOrd + std::fmt::Display>(
            c: &mut Checker,
            field: &str,
            r: &ResourceQuota<T>,
            linked: Result<(), &str>,
            lending_within_nominal: bool,
        ) {
            if lending_within_nominal
                && let Some(l) = r.lending_limit
                && l > r.nominal
            {
                c.err(
                    format!("{field}.lendingLimit"),
                    format!(
                        "{l} is more than the nominal quota {}: a queue lends at most what it has",
                        r.nominal
                    ),
                );
            }
            if let Err(needs) = linked
                && (r.borrowing_limit.is_some() || r.lending_limit.is_some())
            {
                c.err(field.to_string(), needs.to_string());
            }
        }
        let w = lending_within_nominal;
        if let Some(r) = &quota.cpu {
            limits(self, &format!("{field}.cpu"), r, linked, w);
        }
        if let Some(r) = &quota.memory {
            limits(self, &format!("{field}.memory"), r, linked, w);
        }
        if let Some(r) = &quota.gpus {
            limits(self, &format!("{field}.gpus"), r, linked, w);
        }
        if let Some(r) = &quota.instances {
            limits(self, &format!("{field}.instances"), r, linked, w);
        }
        for (model, r) in &quota.gpus_by_model {
            if model.trim().is_empty() {
                self.err(
                    format!("{field}.gpusByModel"),
                    "a GPU model name is empty; name it as nodes report it (H100)",
                );
            }
            limits(self, &format!("{field}.gpusByModel.{model}"), r, linked, w);
        }
    }

    /// A cohort: names are names, it is not its own parent, limits need a parent, and
    /// flavour quotas are named once and bound something.
    fn cohort(&mut self, name: &str, c: &crate::queue::CohortSpec) {
        if let Some(p) = &c.parent {
            self.label_name("spec.parent", p, "cohort");
            if p == name {
                self.err(
                    "spec.parent",
                    format!("cohort {name} cannot be its own parent: name the cohort above it, or leave parent out for a root"),
                );
            }
        }
        let linked = match c.parent {
            Some(_) => Ok(()),
            None => Err(
                "borrowingLimit and lendingLimit need spec.parent: a root cohort has no one to borrow from or lend to",
            ),
        };
        self.quota_limits("spec.quota", &c.quota, linked, false);
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in c.flavors.iter().enumerate() {
            let field = format!("spec.flavors[{i}]");
            self.flavor_entry(&field, &f.name, &f.quota, &mut names, "cohort");
            self.quota_limits(&format!("{field}.quota"), &f.quota, linked, false);
        }
    }

    /// A flavour of a queue or cohort (`owner`): a name, listed once (`names` holds the
    /// ones before it), with a quota that bounds something.
    fn flavor_entry<'a>(
        &mut self,
        field: &str,
        name: &'a str,
        quota: &crate::queue::QueueQuota,
        names: &mut std::collections::BTreeSet<&'a str>,
        owner: &str,
    ) {
        self.label_name(&format!("{field}.name"), name, "flavor");
        if !names.insert(name) {
            self.err(
                format!("{field}.name"),
                format!("flavor {name} is listed twice: name each flavor of a {owner} once"),
            );
        }
        if quota.is_empty() {
            self.err(
                format!("{field}.quota"),
                "a flavor bounds at least one resource (cpu, memory, gpus, instances or gpusByModel)",
            );
        }
    }

    /// A queue: names are names, limits fit inside what they limit, durations parse.
    fn queue(&mut self, q: &crate::queue::QueueSpec) {
        if let Some(c) = &q.cohort {
            self.label_name("spec.cohort", c, "cohort");
        }
        for (i, p) in q.projects.iter().enumerate() {
            self.label_name(&format!("spec.projects[{i}]"), p, "project");
        }
        let linked = match q.cohort {
            Some(_) => Ok(()),
            None => Err(
                "borrowingLimit and lendingLimit need spec.cohort: queues borrow and lend within a cohort",
            ),
        };
        let quota = |c: &mut Checker, field: &str, quota: &crate::queue::QueueQuota| {
            c.quota_limits(field, quota, linked, true);
        };
        quota(self, "spec.quota", &q.quota);
        // Flavours: named once each, each naming where it applies and what it bounds.
        // (Whether its sites exist is checked against the store when it is written.)
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in q.flavors.iter().enumerate() {
            let field = format!("spec.flavors[{i}]");
            self.flavor_entry(&field, &f.name, &f.quota, &mut names, "queue");
            if f.sites.is_empty() && f.node_selector.is_empty() {
                self.err(
                    field.clone(),
                    "a flavor names where it applies: give it sites, a nodeSelector, or both",
                );
            }
            let mut sites = std::collections::BTreeSet::new();
            for (j, s) in f.sites.iter().enumerate() {
                self.label_name(&format!("{field}.sites[{j}]"), s, "site");
                if !sites.insert(s.as_str()) {
                    self.err(
                        format!("{field}.sites[{j}]"),
                        format!("site {s} is listed twice"),
                    );
                }
            }
            for (k, v) in &f.node_selector {
                if k.trim().is_empty() {
                    self.err(
                        format!("{field}.nodeSelector"),
                        "a label key is empty; name the node label (pool: spot)",
                    );
                }
                if v.trim().is_empty() {
                    self.err(
                        format!("{field}.nodeSelector.{k}"),
                        "a label value is empty; give the value nodes carry (pool: spot)",
                    );
                }
            }
            quota(self, &format!("{field}.quota"), &f.quota);
        }
        if q.flavors.is_empty()
            && q.flavor_fungibility != crate::queue::FlavorFungibility::default()
        {
            self.err(
                "spec.flavorFungibility",
                "applies to queues with spec.flavors: add flavors, or remove flavorFungibility",
            );
        }
        let strategies = &q.preemption.fair_sharing_strategies;
        if !strategies.is_empty()
            && q.preemption.fair_sharing != crate::queue::FairSharingPreemption::Never
        {
            self.err(
                "spec.preemption.fairSharing",
                "set fairSharing (one strategy) or fairSharingStrategies (several, tried in order), not both",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in strategies.iter().enumerate() {
            let field = format!("spec.preemption.fairSharingStrategies[{i}]");
            if *s == crate::queue::FairSharingPreemption::Never {
                self.err(
                    field,
                    "Never is not a strategy: leave fairSharingStrategies out to preempt nothing for fair sharing",
                );
            } else if !seen.insert(s.as_str()) {
                self.err(field, format!("{} is listed twice", s.as_str()));
            }
        }
        if let Some(w) = &q.wait_for_ready {
            match w.parse::<crate::duration::Duration>() {
                Ok(d) if d.as_std().is_zero() => {
                    self.err("spec.waitForReady", "must be above 0 (10m)");
                }
                Ok(_) => {}
                Err(e) => self.err("spec.waitForReady", format!("{w:?}: {e}")),
            }
        }
    }

    /// A source VM's facts: an identity, and sizes that make sense.
    fn virtual_machine(&mut self, v: &crate::migrate::VirtualMachineSpec) {
        if v.uuid.trim().is_empty() {
            self.err(
                "spec.uuid",
                "required: the source's VM UUID is the VM's identity across imports",
            );
        }
        if v.name.trim().is_empty() {
            self.err("spec.name", "required: the VM's name in its source");
        }
        if v.source.kind.trim().is_empty() {
            self.err(
                "spec.source.kind",
                "required: where the facts came from (rvtools, ovf, vsphere)",
            );
        }
    }

    /// A migration plan: residencies are jurisdictions, windows and sizing make sense.
    fn migration_plan(&mut self, p: &crate::migrate::MigrationPlanSpec) {
        for (i, rule) in p.mapping.iter().enumerate() {
            self.jurisdictions(&format!("spec.mapping[{i}].residency"), &rule.residency);
            if let Some(project) = &rule.project
                && let Err(rule_text) = check_dns_label(project)
            {
                self.err(
                    format!("spec.mapping[{i}].project"),
                    format!("{project:?} is not a valid project name: use {rule_text}"),
                );
            }
        }
        if let Some(s) = &p.sizing {
            if s.mode != "asIs" && s.mode != "performance" {
                self.err(
                    "spec.sizing.mode",
                    format!("{:?} is not a sizing mode: use asIs or performance", s.mode),
                );
            }
            if !(s.comfort_factor.is_finite() && s.comfort_factor > 0.0 && s.comfort_factor <= 10.0)
            {
                self.err(
                    "spec.sizing.comfortFactor",
                    "must be a number above 0 and at most 10 (1.3 adds 30% headroom)",
                );
            }
        }
        if p.bandwidth_mbps == Some(0) {
            self.err(
                "spec.bandwidthMbps",
                "must be above 0 (megabits per second)",
            );
        }
        for (i, w) in p.maintenance_windows.iter().enumerate() {
            if !is_timestamp(&w.start) {
                self.err(
                    format!("spec.maintenanceWindows[{i}].start"),
                    format!(
                        "{:?} is not an RFC 3339 time (2027-01-09T22:00:00Z)",
                        w.start
                    ),
                );
            }
            if let Err(e) = w.duration.parse::<crate::duration::Duration>() {
                self.err(
                    format!("spec.maintenanceWindows[{i}].duration"),
                    format!("{:?}: {e}", w.duration),
                );
            }
        }
    }

    /// A secret as a client writes it. Messages name keys, never values.
    fn secret(&mut self, s: &crate::secret::SecretSpec) {
        use base64::Engine as _;
        if s.sealed.is_some() {
            self.err(
                "spec.sealed",
                "is the server's encrypted form; write values in spec.data (base64) or spec.stringData",
            );
        }
        if !s.keys.is_empty() {
            self.err(
                "spec.keys",
                "is maintained by the server; write values in spec.data or spec.stringData",
            );
        }
        let mut total = 0usize;
        for (field, map) in [("data", &s.data), ("stringData", &s.string_data)] {
            for (k, v) in map {
                if !is_secret_key(k) {
                    self.err(
                        format!("spec.{field}.{k}"),
                        "a key is 1 to 253 characters of letters, digits, '-', '_' and '.' (e.g. password, tls.crt)",
                    );
                }
                if field == "data" {
                    match base64::engine::general_purpose::STANDARD.decode(v) {
                        Ok(b) => total += b.len(),
                        Err(_) => self.err(
                            format!("spec.data.{k}"),
                            "is not base64; encode the value (e.g. `echo -n VALUE | base64`) or put it in spec.stringData",
                        ),
                    }
                } else {
                    total += v.len();
                }
            }
        }
        let keys = secret_keys(s).len();
        if keys > crate::secret::MAX_KEYS {
            self.err(
                "spec.data",
                format!(
                    "{keys} keys; a secret holds at most {}",
                    crate::secret::MAX_KEYS
                ),
            );
        }
        if total > crate::secret::MAX_BYTES {
            self.err(
                "spec.data",
                format!(
                    "the values hold {total} bytes; a secret holds at most {} (1 MiB)",
                    crate::secret::MAX_BYTES
                ),
            );
        }
        if let Some(t) = &s.type_ {
            self.non_empty("spec.type", t);
        }
    }
}

/// A secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn is_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The key names of a secret in any of its forms (as written, or as stored), sorted.
pub fn secret_keys(s: &crate::secret::SecretSpec) -> Vec<String> {
    let mut keys: Vec<String> = s
        .data
        .keys()
        .chain(s.string_data.keys())
        .chain(s.keys.iter())
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Checks meaning and reports every problem.
pub fn validate(object: &AnyObject) -> Result<(), FieldErrors> {
    let mut c = Checker::default();
    c.meta(object.kind_info(), object.meta());
    match object {
        AnyObject::Site(o) => c.site(&o.spec),
        AnyObject::Node(o) => c.node(&o.spec),
        AnyObject::Workload(o) => {
            c.workload(&o.spec);
            // A run is `{name}-{minutes}` (8 digits for centuries), within 63 characters.
            if o.spec.schedule.is_some() && o.metadata.name.len() > 52 {
                c.err(
                    "metadata.name",
                    "a periodic job's name is at most 52 characters (its runs add a time)",
                );
            }
        }
        AnyObject::Allocation(o) => c.allocation(&o.spec),
        AnyObject::Policy(o) => c.policy(&o.spec),
        AnyObject::Project(o) => c.project(&o.spec),
        AnyObject::Secret(o) => c.secret(&o.spec),
        AnyObject::Event(e) => c.event(e),
        AnyObject::VirtualMachine(o) => c.virtual_machine(&o.spec),
        AnyObject::MigrationPlan(o) => c.migration_plan(&o.spec),
        AnyObject::Queue(o) => c.queue(&o.spec),
        AnyObject::Cohort(o) => c.cohort(&o.metadata.name, &o.spec),
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(FieldErrors(c.errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(clippy::needless_pass_by_value)]
    fn workload(spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "payroll-api", "namespace": "finance"},
            "spec": spec,
        })
    }

    fn base_spec() -> serde_json::Value {
        json!({
            "type": "service",
            "task": {"driver": "exec", "command": ["/bin/app"],
                     "resources": {"cpu": "500m", "memory": "256Mi"}},
        })
    }

    fn errors(v: serde_json::Value) -> Vec<String> {
        match object_from_value(v) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn fair_sharing_strategies_are_a_list_without_never_or_repeats_and_not_beside_one() {
        let queue = |preemption: serde_json::Value| {
            json!({
                "apiVersion": "meridian.dev/v1", "kind": "Queue",
                "metadata": {"name": "research"},
                "spec": {"cohort": "lab", "preemption": preemption},
            })
        };
        assert!(
            errors(queue(json!({"fairSharingStrategies":
                ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]})))
            .is_empty()
        );
        let mut no_flavors = queue(json!({}));
        no_flavors["spec"]["flavorFungibility"] = json!({"whenCanBorrow": "TryNextFlavor"});
        assert_eq!(
            errors(no_flavors),
            vec![
                "spec.flavorFungibility: applies to queues with spec.flavors: add flavors, or remove flavorFungibility"
            ]
        );
        let both = errors(queue(json!({"fairSharing": "LessThanInitialShare",
            "fairSharingStrategies": ["LessThanInitialShare"]})));
        assert!(
            both.iter()
                .any(|e| e.contains("spec.preemption.fairSharing") && e.contains("not both")),
            "{both:?}"
        );
        let bad = errors(queue(json!({"fairSharingStrategies":
            ["Never", "LessThanInitialShare", "LessThanInitialShare"]})));
        assert!(
            bad.iter()
                .any(|e| e.contains("fairSharingStrategies[0]") && e.contains("Never")),
            "{bad:?}"
        );
        assert!(
            bad.iter()
                .any(|e| e.contains("fairSharingStrategies[2]") && e.contains("twice")),
            "{bad:?}"
        );
    }

    #[test]
    fn min_parallelism_is_for_jobs_that_are_not_gangs_and_at_most_parallelism() {
        let job = |extra: serde_json::Value| {
            let mut s = base_spec();
            s["type"] = json!("job");
            s["replicas"] = json!(4);
            for (k, v) in extra.as_object().expect("object") {
                s[k] = v.clone();
            }
            errors(workload(s))
        };
        assert!(job(json!({"minParallelism": 2})).is_empty());
        assert_eq!(
            job(json!({"minParallelism": 5})),
            vec!["spec.minParallelism: 5 is more than spec.replicas (4)"]
        );
        assert_eq!(
            job(json!({"minParallelism": 3, "parallelism": 2})),
            vec!["spec.minParallelism: 3 is more than spec.parallelism (2)"]
        );
        assert_eq!(
            job(json!({"minParallelism": 0})),
            vec!["spec.minParallelism: must be 1 or more"]
        );
        assert!(
            job(json!({"minParallelism": 2, "gang": 4}))[0].contains("a gang is admitted whole")
        );
        let mut service = base_spec();
        service["minParallelism"] = json!(1);
        assert!(errors(workload(service))[0].contains("only jobs are admitted partially"));
    }

    #[test]
    fn a_good_workload() {
        let o = object_from_value(workload(base_spec())).unwrap();
        let AnyObject::Workload(w) = o else { panic!() };
        assert_eq!(w.spec.replicas, 1);
        assert_eq!(w.spec.task.resources.cpu.millis(), 500);
    }

    #[test]
    fn gpu_shares_are_below_one_and_whole_above() {
        let with_gpu = |gpu: serde_json::Value| {
            let mut s = base_spec();
            s["task"]["resources"]["gpu"] = gpu;
            errors(workload(s))
        };
        assert!(with_gpu(json!({"count": 0.25})).is_empty());
        assert!(with_gpu(json!({"count": "500m", "model": "L4"})).is_empty());
        assert!(with_gpu(json!({"count": 2})).is_empty());
        let e = with_gpu(json!({"count": 1.5}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.task.resources.gpu.count: 1.5 GPUs: above 1 a GPU count must be whole (1 or 2)"),
            "{e:?}"
        );
        let e = with_gpu(json!({"count": 0}));
        assert!(e[0].contains("must be more than 0"), "{e:?}");
        let e = with_gpu(json!({"count": 1, "devices": [0]}));
        assert!(
            e[0].starts_with(
                "spec.task.resources.gpu.devices: devices are chosen by the scheduler"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn bad_quantity_names_the_path() {
        let mut s = base_spec();
        s["task"]["resources"]["memory"] = json!("12Zi");
        assert_eq!(
            errors(workload(s)),
            vec![r#"spec.task.resources.memory: "12Zi" is not a quantity (use e.g. 512Mi, 4Gi)"#]
        );
    }

    #[test]
    fn unknown_field_suggests() {
        let mut s = base_spec();
        s["task"]["comand"] = json!(["x"]);
        assert_eq!(
            errors(workload(s)),
            vec![r#"spec.task.comand: unknown field (did you mean "command"?)"#]
        );
        let mut s = base_spec();
        s["task"]["zzzzzz"] = json!(1);
        let e = errors(workload(s));
        assert!(
            e[0].starts_with("spec.task.zzzzzz: unknown field (expected one of: driver, command"),
            "{e:?}"
        );
    }

    #[test]
    fn missing_and_variant_errors() {
        let mut s = base_spec();
        s["task"].as_object_mut().unwrap().remove("driver");
        assert_eq!(
            errors(workload(s)),
            vec!["spec.task.driver: required field is missing"]
        );
        let mut s = base_spec();
        s["type"] = json!("servce");
        assert_eq!(
            errors(workload(s)),
            vec![
                r#"spec.type: "servce" is not one of: service, job, vm (did you mean "service"?)"#
            ]
        );
        let mut s = base_spec();
        s["task"]["command"] = json!([1, {"a": 1}]);
        let e = errors(workload(s));
        assert_eq!(
            e,
            vec!["spec.task.command[0]: expected a string, got integer 1"]
        );
        let mut s = base_spec();
        s["replicas"] = json!("two");
        assert_eq!(
            errors(workload(s)),
            vec![r#"spec.replicas: expected an integer, got string "two""#]
        );
        let v =
            json!({"apiVersion": "meridian.dev/v1", "kind": "Workload", "metadata": {"name": "x"}});
        assert_eq!(errors(v), vec!["spec: required field is missing"]);
    }

    #[test]
    fn envelope_errors() {
        let e = errors(json!({"apiVersion": "v1", "kind": "Pod"}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with(r#"kind: "Pod" is not a Meridian kind (known kinds: Site, Node"#));
        assert!(e[1].starts_with(r#"apiVersion: "v1" is not served here (use meridian.dev/v1)"#));
        let e = errors(json!({"apiVersion": "meridian.dev/v1", "kind": "workload"}));
        assert_eq!(
            e,
            vec![r#"kind: "workload" is not a kind; did you mean "Workload"?"#]
        );
        let e = errors(json!([1]));
        assert!(e[0].starts_with("expected an object"));
        let p =
            json!({"apiVersion": "meridian.dev/v1", "kind": "Project", "metadata": {"name": "p"}});
        assert!(
            object_from_value(p.clone()).is_ok(),
            "spec optional for projects"
        );
        let info = crate::kinds::SITE;
        let e = object_from_value_as(info, p).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("kind: \"Project\" does not match"),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let v = json!({
            "apiVersion": "meridian.dev/v1", "kind": "Workload",
            "metadata": {"name": "Payroll_API", "labels": {"bad key!": "ok", "k": "bad value!"}},
            "spec": {
                "type": "service", "replicas": -1, "gang": 2, "priority": 2_000_000_000,
                "task": {"driver": "qemu", "resources": {"cpu": 0, "memory": "1Gi"},
                         "os": {"family": "windows", "build": "20348"}},
                "data": {"residency": ["EU", "UK", "de"], "sovereignty": "strict"},
                "placement": {
                    "matchExpressions": [{"key": "site.provider", "operator": "In"}],
                    "preferences": [{"weight": 150, "matchExpressions": [{"key": "a", "operator": "Exists"}]}],
                    "spread": {"key": "site.zone", "maxSkew": 0}
                },
                "restart": {"policy": "always", "maxRetries": 3, "backoff": "soon"}
            }
        });
        let e = errors(v);
        let fields: Vec<&str> = e.iter().map(|m| m.split(':').next().unwrap()).collect();
        for f in [
            "metadata.name",
            "metadata.labels.bad key!",
            "metadata.labels.k",
            "spec.replicas",
            "spec.task.disk",
            "spec.type",
            "spec.task.resources.cpu",
            "spec.task.os.build",
            "spec.data.residency[1]",
            "spec.data.residency[2]",
            "spec.placement.matchExpressions[0]",
            "spec.placement.preferences[0].weight",
            "spec.placement.spread.maxSkew",
            "spec.priority",
            "spec.gang",
            "spec.restart.maxRetries",
            "spec.restart.backoff",
        ] {
            assert!(fields.contains(&f), "missing {f} in {e:#?}");
        }
        assert!(e.iter().any(|m| m.contains("RFC 1123 label")));
        assert!(e.iter().any(|m| m.contains("the United Kingdom is GB")));
    }

    #[test]
    fn vm_and_exec_coherence() {
        let mut s = base_spec();
        s["type"] = json!("vm");
        let e = errors(workload(s));
        assert!(e.iter().any(|m| m.starts_with("spec.task.driver: a vm workload runs with the qemu driver")), "{e:?}");
        let mut s = base_spec();
        s["task"]["command"] = json!([]);
        let e = errors(workload(s));
        assert!(
            e[0].starts_with("spec.task.command: the exec driver needs a command"),
            "{e:?}"
        );
        let mut s = base_spec();
        s["type"] = json!("job");
        s["gang"] = json!(0);
        assert_eq!(errors(workload(s)), vec!["spec.gang: must be 1 or more"]);
    }

    #[test]
    fn global_kinds_refuse_namespaces() {
        let v = json!({"apiVersion": "meridian.dev/v1", "kind": "Project",
                       "metadata": {"name": "p", "namespace": "x"}});
        let e = errors(v);
        assert!(
            e[0].starts_with("metadata.namespace: a Project is global"),
            "{e:?}"
        );
    }

    #[test]
    fn helpers() {
        assert!(check_dns_label("a-1").is_ok());
        assert!(check_dns_label("-a").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_subdomain("gpu-01.fra").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
        assert!(check_label_key("meridian.dev/tier").is_ok());
        assert!(check_label_key("Tier_1").is_ok());
        assert!(check_label_key("/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("a b").is_err());
        assert_eq!(parse_windows_build("10.0.20348"), Some(vec![10, 0, 20348]));
        assert!(parse_windows_build("10.0.20348.2340").is_some());
        assert!(parse_windows_build("10.0").is_none());
        assert!(parse_windows_build("10.0.x").is_none());
        assert_eq!(suggest("comand", &["driver", "command"]), Some("command"));
        assert_eq!(
            suggest("gramsPerKwh", &["gramsPerKWh"]),
            Some("gramsPerKWh")
        );
        assert_eq!(suggest("zzzzzz", &["driver", "command"]), None);
    }

    fn with_health(health: serde_json::Value) -> Vec<String> {
        let mut s = base_spec();
        s["task"]["health"] = health;
        errors(workload(s))
    }

    #[test]
    fn health_checks_parse_with_defaults() {
        let mut s = base_spec();
        s["task"]["health"] =
            json!({"http": {"port": 8080}, "failureThreshold": 5, "initialDelay": "1m30s"});
        let AnyObject::Workload(w) = object_from_value(workload(s)).unwrap() else {
            panic!()
        };
        let h = w.spec.task.health.unwrap();
        assert_eq!(h.http.as_ref().unwrap().path, "/");
        assert_eq!(h.interval(), std::time::Duration::from_secs(10));
        assert_eq!(h.timeout(), std::time::Duration::from_secs(2));
        assert_eq!(h.failure_threshold(), 5);
        assert_eq!(h.initial_delay(), std::time::Duration::from_secs(90));
        assert!(
            with_health(json!({"tcp": {"port": 5432}, "interval": "5s", "timeout": "1s"}))
                .is_empty()
        );
        assert!(with_health(json!({"command": {"command": ["/bin/true"]}})).is_empty());
    }

    #[test]
    fn health_check_errors_name_the_field() {
        assert_eq!(
            with_health(json!({"interval": "5s"})),
            vec![
                "spec.task.health: a health check needs one of http {port, path}, tcp {port} or command {command: [...]}"
            ]
        );
        assert_eq!(
            with_health(json!({"tcp": {"port": 1}, "command": {"command": ["/bin/true"]}})),
            vec![
                "spec.task.health: a health check has exactly one of http, tcp or command; remove all but one of tcp, command"
            ]
        );
        assert_eq!(
            with_health(json!({"http": {"port": 0, "path": "healthz"}})),
            vec![
                "spec.task.health.http.port: must be 1 to 65535",
                r#"spec.task.health.http.path: "healthz" is not a URL path: start it with / and use no spaces (e.g. /healthz)"#,
            ]
        );
        assert_eq!(
            with_health(
                json!({"tcp": {"port": 80}, "interval": "ten", "timeout": "0s", "failureThreshold": 0})
            ),
            vec![
                r#"spec.task.health.interval: "ten" is not a duration: expected a duration such as 30s, 5m, 1h30m or 7d"#,
                "spec.task.health.timeout: must be more than 0 (e.g. 10s)",
                "spec.task.health.failureThreshold: must be 1 or more (the failures in a row that restart the task)",
            ]
        );
        assert_eq!(
            with_health(json!({"tcp": {"port": 80}, "interval": "1s", "timeout": "5s"})),
            vec![
                "spec.task.health.timeout: 5s is longer than the interval (1s): a check must end before the next one starts"
            ]
        );
        assert_eq!(
            with_health(json!({"command": {"command": []}})),
            vec![
                r#"spec.task.health.command.command: needs a program, e.g. ["/usr/bin/pg_isready", "-q"]"#
            ]
        );
        let e = with_health(json!({"tcp": {"port": 80}, "intervall": "5s"}));
        assert_eq!(
            e,
            vec![r#"spec.task.health.intervall: unknown field (did you mean "interval"?)"#]
        );
    }

    #[test]
    fn a_kernel_booted_vm() {
        let vm = |disk: serde_json::Value| {
            errors(workload(json!({
                "type": "vm",
                "task": {"driver": "qemu", "disk": disk,
                         "resources": {"cpu": "1", "memory": "128Mi"}},
            })))
        };
        assert!(
            vm(
                json!({"image": "/img/root.raw", "format": "raw", "kernel": "/img/vmlinuz",
                          "initrd": "/img/initrd.gz", "cmdline": "console=ttyS0 quiet"})
            )
            .is_empty()
        );
        assert_eq!(
            vm(json!({"image": "/img/root.raw", "initrd": "/img/initrd.gz", "cmdline": "quiet"})),
            vec![
                "spec.task.disk.initrd: initrd is for booting a kernel directly: set spec.task.disk.kernel too (e.g. /var/lib/meridian/images/vmlinuz), or remove initrd",
                "spec.task.disk.cmdline: cmdline is for booting a kernel directly: set spec.task.disk.kernel too (e.g. /var/lib/meridian/images/vmlinuz), or remove cmdline",
            ]
        );
        assert_eq!(
            vm(json!({"image": "/img/root.raw", "kernel": " "})),
            vec!["spec.task.disk.kernel: must not be empty"]
        );
    }

    #[test]
    fn event_checks() {
        let event = |reason: &str, message: String, kind: &str| {
            json!({
                "apiVersion": "meridian.dev/v1", "kind": "Event",
                "metadata": {"name": "w.17e3f0a1b2c3d4e5", "namespace": "p"},
                "involvedObject": {"kind": kind, "name": "w", "namespace": "p"},
                "reason": reason, "message": message, "type": "Warning", "count": 3,
                "firstTimestamp": "2026-12-06T05:00:00Z", "lastTimestamp": "2026-12-06T05:01:00Z",
                "source": {"component": "scheduler"},
            })
        };
        assert_eq!(
            errors(event("FailedScheduling", "x".into(), "Workload")),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(event("failed scheduling", "x".repeat(1025), "")),
            vec![
                "involvedObject.kind: required: the kind of the object the event is about",
                r#"reason: "failed scheduling" is not a CamelCase reason such as FailedScheduling: a capital letter, then letters and digits"#,
                "message: is 1025 bytes long: at most 1024 (shorten it)",
            ]
        );
        assert_eq!(
            errors(event(&"A".repeat(129), String::new(), "Workload")),
            vec!["reason: is 129 bytes long: at most 128"]
        );
        let mut bad = event("Started", String::new(), "Workload");
        bad["type"] = json!("Error");
        assert_eq!(errors(bad).len(), 1);
        let mut bad = event("Started", String::new(), "Workload");
        bad["lastTimestamp"] = json!("yesterday");
        assert_eq!(
            errors(bad),
            vec![
                r#"lastTimestamp: "yesterday" is not an RFC 3339 time such as 2026-12-06T05:00:00Z"#
            ]
        );
    }

    #[test]
    fn queue_flavors_are_named_once_say_where_and_bound_something() {
        let queue = |flavors: serde_json::Value| {
            json!({"apiVersion": "meridian.dev/v1", "kind": "Queue",
                   "metadata": {"name": "eu"}, "spec": {"flavors": flavors}})
        };
        let ok = queue(json!([
            {"name": "fra", "sites": ["onprem-frankfurt"], "quota": {"cpu": {"nominal": "8"}}},
            {"name": "spot", "nodeSelector": {"pool": "spot"},
             "quota": {"gpusByModel": {"H100": {"nominal": 8}}}}
        ]));
        assert_eq!(errors(ok), Vec::<String>::new());
        let bad = errors(queue(json!([
            {"name": "fra", "sites": ["fra"], "quota": {"cpu": {"nominal": "8"}}},
            {"name": "fra", "sites": ["ams"], "quota": {"cpu": {"nominal": "8"}}},
            {"name": "empty", "quota": {}},
            {"name": "x", "sites": ["a", "a"], "nodeSelector": {"pool": ""},
             "quota": {"cpu": {"nominal": "1", "borrowingLimit": "1"}}}
        ])));
        let has = |field: &str, words: &str| {
            assert!(
                bad.iter()
                    .any(|e| e.starts_with(field) && e.contains(words)),
                "{field}: {words}: {bad:?}"
            );
        };
        has("spec.flavors[1].name", "flavor fra is listed twice");
        has("spec.flavors[2]", "give it sites, a nodeSelector, or both");
        has("spec.flavors[2].quota", "bounds at least one resource");
        has("spec.flavors[3].sites[1]", "site a is listed twice");
        has(
            "spec.flavors[3].nodeSelector.pool",
            "a label value is empty",
        );
        has("spec.flavors[3].quota.cpu", "need spec.cohort");
    }

    #[test]
    fn a_cohort_names_a_parent_other_than_itself_and_limits_need_one() {
        let cohort = |name: &str, spec: serde_json::Value| {
            json!({"apiVersion": "meridian.dev/v1", "kind": "Cohort",
                   "metadata": {"name": name}, "spec": spec})
        };
        let ok = cohort(
            "ml",
            json!({"parent": "research",
                   "quota": {"cpu": {"nominal": "8", "lendingLimit": "32", "borrowingLimit": "4"}},
                   "flavors": [{"name": "spot", "quota": {"gpus": {"nominal": 4}}}]}),
        );
        assert_eq!(errors(ok), Vec::<String>::new());
        let bad = errors(cohort(
            "ml",
            json!({"parent": "ml",
                   "flavors": [{"name": "spot", "quota": {}},
                               {"name": "spot", "quota": {"cpu": {"nominal": "1"}}}]}),
        ));
        let has = |field: &str, words: &str| {
            assert!(
                bad.iter()
                    .any(|e| e.starts_with(field) && e.contains(words)),
                "{field}: {words}: {bad:?}"
            );
        };
        has("spec.parent", "cannot be its own parent");
        has("spec.flavors[0].quota", "bounds at least one resource");
        has("spec.flavors[1].name", "flavor spot is listed twice");
        let root = errors(cohort(
            "org",
            json!({"quota": {"cpu": {"nominal": "8", "borrowingLimit": "1"}}}),
        ));
        assert!(
            root.iter()
                .any(|e| e.starts_with("spec.quota.cpu") && e.contains("need spec.parent")),
            "{root:?}"
        );
    }
}
