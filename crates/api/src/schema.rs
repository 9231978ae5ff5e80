//! OpenAPI 3 component schemas for every kind, its list and the envelope types, for the
//! server to publish at `/openapi/v3` (kubectl `explain` and client generators read them).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::kinds::*;
use crate::meta::{ListMeta, ObjectMeta, Status};

/// Where the schemas are referenced from (`#/components/schemas/Workload`).
pub const REF_PREFIX: &str = "#/components/schemas/";

fn add<T: JsonSchema>(
    generator: &mut SchemaGenerator,
    names: &mut Vec<(String, String)>,
    kind: &str,
) {
    let reference = generator.subschema_for::<T>();
    if let Some(r) = reference.get("$ref").and_then(Value::as_str) {
        let generated = r.trim_start_matches(REF_PREFIX).to_string();
        names.push((generated, kind.to_string()));
    }
}

/// Component schemas by name: `Site`, `SiteList`, `SiteSpec`, ..., `ObjectMeta`,
/// `ListMeta`, `Status`. Every kind carries `x-kubernetes-group-version-kind`.
pub fn openapi_schemas() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut names = Vec::new();
    add::<Site>(&mut generator, &mut names, "Site");
    add::<Node>(&mut generator, &mut names, "Node");
    add::<Workload>(&mut generator, &mut names, "Workload");
    add::<Allocation>(&mut generator, &mut names, "Allocation");
    add::<Policy>(&mut generator, &mut names, "Policy");
    add::<Project>(&mut generator, &mut names, "Project");
    add::<crate::secret::Secret>(&mut generator, &mut names, "Secret");
    add::<crate::event::Event>(&mut generator, &mut names, "Event");
    add::<crate::migrate::VirtualMachine>(&mut generator, &mut names, "VirtualMachine");
    add::<crate::migrate::MigrationPlan>(&mut generator, &mut names, "MigrationPlan");
    add::<crate::queue::Queue>(&mut generator, &mut names, "Queue");
    add::<crate::queue::Cohort>(&mut generator, &mut names, "Cohort");
    generator.subschema_for::<ObjectMeta>();
    generator.subschema_for::<ListMeta>();
    generator.subschema_for::<Status>();
    let mut definitions = generator.take_definitions(true);
    for (generated, kind) in names {
        let Some(mut schema) = definitions.remove(&generated) else {
            continue;
        };
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "apiVersion".into(),
                json!({"type": "string", "enum": [crate::API_VERSION]}),
            );
            props.insert("kind".into(), json!({"type": "string", "enum": [kind]}));
        }
        if let Some(obj) = schema.as_object_mut() {
            obj.insert("description".into(), json!(format!("A Meridian {kind}.")));
            obj.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": crate::GROUP, "version": crate::VERSION, "kind": kind}]),
            );
        }
        definitions.insert(kind.clone(), schema);
        let list = format!("{kind}List");
        definitions.insert(
            list.clone(),
            json!({
                "type": "object",
                "description": format!("A list of {kind} objects."),
                "required": ["apiVersion", "kind", "items"],
                "properties": {
                    "apiVersion": {"type": "string", "enum": [crate::API_VERSION]},
                    "kind": {"type": "string", "enum": [list]},
                    "metadata": {"$ref": format!("{REF_PREFIX}ListMeta")},
                    "items": {"type": "array", "items": {"$ref": format!("{REF_PREFIX}{kind}")}},
                },
                "x-kubernetes-group-version-kind":
                    [{"group": crate::GROUP, "version": crate::VERSION, "kind": list}],
            }),
        );
    }
    for schema in definitions.values_mut() {
        tighten(schema);
    }
    if let Some(name) = definitions
        .get_mut("ObjectMeta")
        .and_then(|m| m.pointer_mut("/properties/name"))
        .and_then(Value::as_object_mut)
    {
        // Validation refuses an empty name (unless `generateName` is set) and anything
        // but an RFC 1123 subdomain (a label for every kind but Node, which the shared
        // `ObjectMeta` cannot say).
        name.insert("minLength".into(), json!(1));
        name.insert("maxLength".into(), json!(253));
        name.insert("pattern".into(), json!(NAME_PATTERN));
    }
    definitions
}

/// An RFC 1123 subdomain, as `validate::check_dns_subdomain` checks it.
const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Makes a generated schema say what validation accepts, so that what a client (or
/// Schemathesis) generates from it is not refused: no `nullable` (an absent field is how
/// to leave one out; validation refuses some nulls), and every required string is
/// non-empty (`minLength: 1`), as validation requires.
fn tighten(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("nullable");
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            let required: Vec<String> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
                for name in &required {
                    if let Some(prop) = props.get_mut(name).and_then(Value::as_object_mut)
                        && prop.get("type").and_then(Value::as_str) == Some("string")
                        && !prop.contains_key("enum")
                        && !prop.contains_key("minLength")
                    {
                        prop.insert("minLength".into(), json!(1));
                    }
                }
            }
            for child in map.values_mut() {
                tighten(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tighten),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema() {
        let s = openapi_schemas();
        for k in KINDS {
            let schema = &s[k.kind];
            assert_eq!(schema["properties"]["kind"]["enum"][0], k.kind);
            assert_eq!(
                schema["properties"]["spec"].is_object(),
                k.has_spec(),
                "{}",
                k.kind
            );
            assert!(s.contains_key(&k.list_kind()));
        }
        assert!(s["Event"]["properties"]["involvedObject"].is_object());
        for name in [
            "ObjectMeta",
            "ListMeta",
            "Status",
            "WorkloadSpec",
            "Task",
            "Resources",
        ] {
            assert!(
                s.contains_key(name),
                "{name}: {:?}",
                s.keys().collect::<Vec<_>>()
            );
        }
        // Quantities are int-or-string.
        let text = serde_json::to_string(&s["Resources"]).unwrap();
        assert!(text.contains("x-kubernetes-int-or-string"), "{text}");
        // What validation refuses, the schema does not offer: no nulls, no empty names.
        let all = serde_json::to_string(&s).unwrap();
        assert!(!all.contains("\"nullable\""), "{all}");
        assert_eq!(s["ObjectMeta"]["properties"]["name"]["minLength"], 1);
        let pattern = s["ObjectMeta"]["properties"]["name"]["pattern"]
            .as_str()
            .unwrap();
        assert!(pattern.starts_with("^[a-z0-9]"), "{pattern}");
        // No reference dangles.
        let all = serde_json::to_string(&s).unwrap();
        for r in all.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap().trim_start_matches(REF_PREFIX);
            assert!(s.contains_key(name), "dangling $ref {name}");
        }
    }
}
