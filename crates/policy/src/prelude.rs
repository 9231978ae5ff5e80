//! `data.meridian.lib`: a small Rego library loaded next to every policy (and into every
//! `run_tests` engine) so policies can expand jurisdictions and blocs the way placement
//! does, from the same table (`api::jurisdiction::BLOCS`).

use std::sync::LazyLock;

/// Package of the prelude; user policies may not use it.
pub const PRELUDE_PACKAGE: &str = "data.meridian.lib";

/// File name the prelude is loaded under (appears in error messages).
pub const PRELUDE_PATH: &str = "meridian/lib.rego";

static PRELUDE: LazyLock<String> = LazyLock::new(build);

/// The prelude's Rego source.
pub fn prelude_source() -> &'static str {
    &PRELUDE
}

/// The base document loaded with the prelude: `data.meridian.blocs`, bloc name → member
/// countries. Data rather than a Rego rule, so it is built once, not on every evaluation.
pub(crate) fn prelude_data() -> regorus::Value {
    crate::input::to_rego(&prelude_data_json())
}

/// [`prelude_data`] as JSON, for tools that load the prelude into another Rego engine.
pub fn prelude_data_json() -> serde_json::Value {
    let mut blocs = serde_json::Map::new();
    for (name, _, members) in api::jurisdiction::BLOCS {
        blocs.insert(name.to_string(), serde_json::json!(members));
    }
    serde_json::json!({"meridian": {"blocs": blocs}})
}

fn build() -> String {
    let mut s = String::from(
        "# Meridian's policy prelude, loaded with every policy as `data.meridian.lib`.\n\
         package meridian.lib\n\n\
         # Bloc name -> member countries (ISO 3166-1 alpha-2), from the jurisdiction table\n\
         # placement uses (the base document data.meridian.blocs).\n\
         blocs := data.meridian.blocs\n",
    );
    s.push_str(
        "\n\
         # The countries a jurisdiction code covers: a bloc's members, or the country itself.\n\
         countries(code) := {c | some c in data.meridian.blocs[code]} if data.meridian.blocs[code]\n\n\
         countries(code) := {code} if not data.meridian.blocs[code]\n\n\
         # The countries a list of codes (countries or blocs) covers, as a set.\n\
         expand(codes) := {c | some code in codes; some c in countries(code)}\n\n\
         # Whether a country (or a code) is one of `codes` or a member of a bloc among them.\n\
         # The same as `country in expand(codes)` without building the set: prefer it in\n\
         # rules that run on every object.\n\
         within(country, codes) if country in codes\n\n\
         within(country, codes) if {\n\
         \tsome code in codes\n\
         \tcountry in data.meridian.blocs[code]\n\
         }\n\n\
         # `project/name` for project-scoped objects, `name` for global ones.\n\
         display(obj) := concat(\"/\", [obj.metadata.namespace, obj.metadata.name]) if obj.metadata.namespace\n\n\
         display(obj) := obj.metadata.name if not obj.metadata.namespace\n",
    );
    s
}
