//! The `input` document policies see: conversion of JSON objects to regorus values (once
//! per object, shared by every policy), the read-only [`FleetContext`], the [`Actor`] and
//! the [`Operation`].

use std::collections::HashMap;
use std::fmt;

use api::kinds;
use regorus::Value;
use serde::Deserialize;

/// Converts a JSON value to a regorus value without a string round-trip.
pub fn to_rego(value: &serde_json::Value) -> Value {
    // `&serde_json::Value` is a serde Deserializer; regorus values deserialize from any
    // JSON-like source. Every JSON value has a regorus value, so this cannot fail.
    Value::deserialize(value).unwrap_or(Value::Null)
}

/// Converts a regorus value back to JSON (for messages that are not strings).
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn key(s: &str) -> Value {
    Value::from(s)
}

/// Builds a regorus object from `(key, value)` pairs, skipping undefined values.
pub(crate) fn object<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let mut v = Value::new_object();
    if let Ok(map) = v.as_object_mut() {
        for (k, val) in entries {
            if val != Value::Undefined {
                map.insert(key(k), val);
            }
        }
    }
    v
}

/// The request being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// `CREATE`, `UPDATE` or `DELETE`, as Kubernetes admission spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `input.operation` during the continuous audit.
pub const AUDIT_OPERATION: &str = "AUDIT";

/// The authenticated actor of a request (`input.actor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// Token id or user name.
    pub id: String,
    /// `admin`, `operator`, `viewer` or `node`; the scheduler admits its Allocations as
    /// `{"id": "system:scheduler", "role": "admin"}`.
    pub role: String,
    /// The project a project-scoped token is limited to.
    pub project: Option<String>,
}

impl Actor {
    pub(crate) fn to_rego(&self) -> Value {
        object([
            ("id", Value::from(self.id.as_str())),
            ("role", Value::from(self.role.as_str())),
            (
                "project",
                self.project
                    .as_deref()
                    .map(Value::from)
                    .unwrap_or(Value::Undefined),
            ),
        ])
    }
}

/// Read-only facts about the estate that policies may consult (`input.context`): the
/// sites (for residency and operator checks), the projects (for allowed locations) and
/// which site each node is in (for allocations that do not name their site).
///
/// Values are converted to regorus values when set, so building an input costs
/// reference-count increments only. Cheap to clone; rebuild or update it when a Site,
/// Project or Node changes.
#[derive(Debug, Clone)]
pub struct FleetContext {
    /// `{site name: SiteSpec}`.
    sites: Value,
    /// Project name → ProjectSpec.
    projects: HashMap<String, Value>,
    /// Node name → site name.
    node_sites: HashMap<String, String>,
}

impl Default for FleetContext {
    fn default() -> Self {
        FleetContext {
            sites: Value::new_object(),
            projects: HashMap::new(),
            node_sites: HashMap::new(),
        }
    }
}

impl FleetContext {
    /// An empty context (no sites, no projects).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context from a list of objects of any kind: Sites, Projects and Nodes are picked,
    /// the rest ignored.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a serde_json::Value>) -> Self {
        let mut ctx = FleetContext::new();
        for o in objects {
            ctx.observe(o);
        }
        ctx
    }

    /// Takes a Site, Project or Node into account (other kinds are ignored).
    pub fn observe(&mut self, object: &serde_json::Value) {
        let name = object
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        let spec = object.get("spec").unwrap_or(&serde_json::Value::Null);
        let kind = object
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind == kinds::SITE.kind {
            self.set_site(name, spec);
        } else if kind == kinds::PROJECT.kind {
            self.set_project(name, spec);
        } else if kind == kinds::NODE.kind
            && let Some(site) = spec.get("site").and_then(|s| s.as_str())
        {
            self.set_node_site(name, site);
        }
    }

    /// Forgets a Site, Project or Node that was deleted.
    pub fn forget(&mut self, kind: &str, name: &str) {
        if kind == kinds::SITE.kind {
            self.remove_site(name);
        } else if kind == kinds::PROJECT.kind {
            self.projects.remove(name);
        } else if kind == kinds::NODE.kind {
            self.node_sites.remove(name);
        }
    }

    /// Sets the spec of a site.
    pub fn set_site(&mut self, name: &str, spec: &serde_json::Value) {
        if let Ok(map) = self.sites.as_object_mut() {
            map.insert(key(name), to_rego(spec));
        }
    }

    pub fn remove_site(&mut self, name: &str) {
        if let Ok(map) = self.sites.as_object_mut() {
            map.remove(&key(name));
        }
    }

    /// Sets the spec of a project.
    pub fn set_project(&mut self, name: &str, spec: &serde_json::Value) {
        self.projects.insert(name.to_string(), to_rego(spec));
    }

    /// Records which site a node is in.
    pub fn set_node_site(&mut self, node: &str, site: &str) {
        self.node_sites.insert(node.to_string(), site.to_string());
    }

    /// Number of sites known.
    pub fn site_count(&self) -> usize {
        self.sites.as_object().map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) fn sites(&self) -> &Value {
        &self.sites
    }

    pub(crate) fn project(&self, name: &str) -> Option<&Value> {
        self.projects.get(name)
    }

    pub(crate) fn site(&self, name: &str) -> Option<&Value> {
        self.sites.as_object().ok()?.get(&key(name))
    }

    pub(crate) fn node_site(&self, node: &str) -> Option<&str> {
        self.node_sites.get(node).map(String::as_str)
    }
}

/// Kind, project and name of a JSON object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> Head<'a> {
    pub fn of(object: &'a serde_json::Value) -> Head<'a> {
        let s = |p: &str| object.pointer(p).and_then(|v| v.as_str());
        Head {
            kind: s("/kind").unwrap_or_default(),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").unwrap_or_default(),
        }
    }

    /// The project the object belongs to for `match.projects`: its namespace, or its own
    /// name for a Project.
    pub fn project(&self) -> Option<&'a str> {
        if self.kind == kinds::PROJECT.kind {
            Some(self.name)
        } else {
            self.namespace
        }
    }
}

/// Builds `input.context` for an object.
pub(crate) fn context(
    fleet: &FleetContext,
    head: &Head<'_>,
    object: &serde_json::Value,
    workload: Option<Value>,
) -> Value {
    let project = head
        .namespace
        .and_then(|ns| fleet.project(ns))
        .cloned()
        .unwrap_or(Value::Undefined);
    let mut target_site = Value::Undefined;
    if head.kind == kinds::ALLOCATION.kind {
        let spec = object.get("spec");
        let site = spec
            .and_then(|s| s.get("site"))
            .and_then(|s| s.as_str())
            .or_else(|| {
                spec.and_then(|s| s.get("node"))
                    .and_then(|n| n.as_str())
                    .and_then(|n| fleet.node_site(n))
            });
        if let Some(site) = site.and_then(|s| fleet.site(s)) {
            target_site = site.clone();
        }
    }
    object_entries(
        fleet.sites().clone(),
        project,
        target_site,
        workload.unwrap_or(Value::Undefined),
    )
}

fn object_entries(sites: Value, project: Value, target_site: Value, workload: Value) -> Value {
    object([
        ("sites", sites),
        ("project", project),
        ("targetSite", target_site),
        ("workload", workload),
    ])
}

/// Builds the whole `input` document.
pub(crate) fn input(
    operation: &str,
    object: Value,
    old_object: Value,
    actor: Value,
    context: Value,
) -> Value {
    self::object([
        ("operation", Value::from(operation)),
        ("object", object),
        ("oldObject", old_object),
        ("actor", actor),
        ("context", context),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_json_to_rego() {
        let j = json!({"a": [1, 2.5, "x", null, true], "b": {"c": {}}});
        let v = to_rego(&j);
        assert_eq!(to_json(&v), j);
    }

    #[test]
    fn context_resolves_target_site_through_node() {
        let ctx = FleetContext::from_objects(&[
            json!({"kind": "Site", "metadata": {"name": "fra"}, "spec": {"provider": "onprem", "jurisdiction": "DE"}}),
            json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {"site": "fra"}}),
            json!({"kind": "Project", "metadata": {"name": "finance"}, "spec": {"allowedLocations": ["EU"]}}),
        ]);
        assert_eq!(ctx.site_count(), 1);
        let alloc = json!({"kind": "Allocation", "metadata": {"name": "a", "namespace": "finance"},
                           "spec": {"node": "n1", "workload": "w"}});
        let c = context(&ctx, &Head::of(&alloc), &alloc, None);
        let c = to_json(&c);
        assert_eq!(c["targetSite"]["jurisdiction"], "DE");
        assert_eq!(c["project"]["allowedLocations"], json!(["EU"]));
        assert!(c.get("workload").is_none());
    }
}
