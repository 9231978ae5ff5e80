//! Authentication (bearer tokens, stored hashed) and authorization (roles and project scope).
//!
//! A token is `mrd_` followed by 43 characters of base64url randomness (256 bits). Only its
//! SHA-256 digest is stored, under `/meridian/tokens/{digest}`; the clear token is shown once
//! to whoever created it. Because tokens are high-entropy, a fast hash is the right one (as
//! for API keys generally); a slow password hash would only cost latency.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Key prefix of token records.
pub const TOKEN_PREFIX: &str = "/meridian/tokens/";

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including tokens, sites, nodes, projects and policies.
    Admin,
    /// Read everything in scope; write workloads and allocations.
    Operator,
    /// Read only.
    Viewer,
    /// A node agent: reads its own allocations, writes its own Node and the status of
    /// its allocations, nothing else.
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Node => "node",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "node" => Err(
                "node credentials are issued to agents through join tokens: meridian node join-token create".into(),
            ),
            other => Err(format!(
                "unknown role {other:?}: use admin, operator or viewer"
            )),
        }
    }
}

/// A stored token: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRecord {
    /// Public identifier, used as the actor name in the audit log.
    pub id: String,
    pub role: Role,
    /// When set, the token only sees this project (and global kinds, read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// For role `node`: the node the credential is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For role `node`: the site of its join token, the only site its Node may be in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub created: String,
    /// Actor that created the token.
    pub created_by: String,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub role: Role,
    pub project: Option<String>,
    /// For a node agent: its node.
    pub node: Option<String>,
    /// For a node agent: the site its join token bound it to.
    pub site: Option<String>,
}

impl Principal {
    /// Audit-log name of the principal.
    pub fn actor(&self) -> String {
        match &self.project {
            Some(p) => format!("token:{} ({}, project {p})", self.id, self.role.as_str()),
            None => format!("token:{} ({})", self.id, self.role.as_str()),
        }
    }

    /// The server itself (bootstrap, controllers).
    pub fn system() -> Self {
        Principal {
            id: "system".to_owned(),
            role: Role::Admin,
            project: None,
            node: None,
            site: None,
        }
    }
}

/// Kinds of access checked by [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    pub fn writes(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

/// Decide whether `who` may do `verb` on `kind` in `namespace`.
///
/// Objects outside a project-scoped principal's project answer 404, so that their
/// existence does not leak; a missing permission on a visible object answers 403 and
/// names the role and the verb.
pub fn authorize(
    who: &Principal,
    verb: Verb,
    kind: &api::KindInfo,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    if who.role == Role::Node {
        return authorize_node(who, verb, kind, name);
    }
    let project_object = kind == api::kinds::PROJECT;
    // Project scope: a project-scoped principal sees its own namespace and, read-only,
    // global kinds; its own Project object is visible by name.
    if let Some(project) = &who.project {
        let visible = match namespace {
            Some(ns) => ns == project,
            None if project_object => name.is_none_or(|n| n == project),
            None => true,
        };
        if !visible {
            return Err(match (namespace, name) {
                (Some(ns), _) if ns != project => ApiError::not_found("projects", ns),
                (_, Some(n)) => ApiError::not_found(kind.plural, n),
                _ => ApiError::not_found_path(kind.plural),
            });
        }
    }
    if !verb.writes() {
        return Ok(());
    }
    if kind == api::kinds::ALLOCATION && verb == Verb::Create {
        return Err(allocation_spec_forbidden(who, verb));
    }
    let allowed = match who.role {
        Role::Viewer | Role::Node => false,
        Role::Operator => kind.namespaced(),
        Role::Admin => who.project.is_none() || kind.namespaced(),
    };
    if allowed {
        Ok(())
    } else {
        let scope = match &who.project {
            Some(p) => format!(" scoped to project {p:?}"),
            None => String::new(),
        };
        Err(ApiError::forbidden(format!(
            "{plural} is forbidden: token {id} (role {role}{scope}) cannot {verb} {plural}{what}; \
             ask an admin for a token with {needed}",
            plural = kind.plural,
            id = who.id,
            role = who.role.as_str(),
            verb = verb.as_str(),
            what = match namespace {
                Some(ns) => format!(" in project {ns:?}"),
                None => String::new(),
            },
            needed = if kind.namespaced() {
                "role operator or admin"
            } else {
                "role admin and no project scope"
            },
        )))
    }
}

fn node_forbidden(who: &Principal, verb: Verb, plural: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{plural} is forbidden: node credential {id} of node {node:?} cannot {verb} {plural}; \
         a node credential only reads its own allocations and writes its own Node and \
         the status of its allocations",
        id = who.id,
        node = who.node.as_deref().unwrap_or_default(),
        verb = verb.as_str(),
    ))
}

/// What a node credential may do, before the object is read: its own Node (read,
/// create once, update: which fields is [`crate::node_restriction`]'s job), allocations
/// (read, list, watch, update their status: which ones is checked on the object by
/// [`node_may_access`] and the list filter).
fn authorize_node(
    who: &Principal,
    verb: Verb,
    kind: &api::KindInfo,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let own = who.node.as_deref();
    let allowed = if kind == api::kinds::NODE {
        match verb {
            Verb::Get | Verb::Update | Verb::Patch => name.is_some() && name == own,
            // Before the body is read the name is unknown; it is checked again after.
            Verb::Create => name.is_none_or(|n| Some(n) == own),
            _ => false,
        }
    } else if kind == api::kinds::ALLOCATION {
        matches!(
            verb,
            Verb::Get | Verb::List | Verb::Watch | Verb::Update | Verb::Patch
        )
    } else {
        false
    };
    if allowed {
        Ok(())
    } else {
        Err(node_forbidden(who, verb, kind.plural))
    }
}

/// Whether a node credential may see `object` (an Allocation on its node, or its own
/// Node); always true for other principals.
pub fn node_may_access(who: &Principal, object: &serde_json::Value) -> bool {
    let Some(node) = who.node.as_deref() else {
        return who.role != Role::Node;
    };
    let field = match object.get("kind").and_then(serde_json::Value::as_str) {
        Some(k) if k == api::kinds::ALLOCATION.kind => "/spec/node",
        Some(k) if k == api::kinds::NODE.kind => "/metadata/name",
        _ => return false,
    };
    object.pointer(field).and_then(serde_json::Value::as_str) == Some(node)
}

/// Rules that depend on the subresource, checked before the body is read:
///
/// - An Allocation's spec is the scheduler's alone: nobody creates, updates or patches one
///   through the API (the scheduler derives site, resources and task from the node and the
///   workload, and applies the hard rules; an allocation written by hand would be believed).
///   Users delete allocations to have them placed again, and change the Workload to change
///   what runs.
/// - An Allocation's status is reported by the agent of its node (checked on the object by
///   [`node_may_access`]), or by a global admin (simulated nodes, repairs).
/// - A node credential writes only the status of its allocations and its own Node (whose
///   fields [`crate::node_restriction`] restricts).
pub fn check_subresource(
    who: &Principal,
    kind: &api::KindInfo,
    status: bool,
    verb: Verb,
) -> Result<(), ApiError> {
    if kind != api::kinds::ALLOCATION || !verb.writes() || verb == Verb::Delete {
        return Ok(());
    }
    if !status {
        return Err(allocation_spec_forbidden(who, verb));
    }
    let allowed = match who.role {
        Role::Node => true,
        Role::Admin => who.project.is_none(),
        Role::Operator | Role::Viewer => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "allocations/status is forbidden: token {id} (role {role}) cannot {verb} the status \
             of an allocation; it is reported by the agent of the allocation's node",
            id = who.id,
            role = who.role.as_str(),
            verb = verb.as_str(),
        )))
    }
}

fn allocation_spec_forbidden(who: &Principal, verb: Verb) -> ApiError {
    ApiError::forbidden(format!(
        "allocations is forbidden: token {id} (role {role}) cannot {verb} allocations: only the \
         scheduler places work, deriving the site, resources and task from the node and the \
         workload; apply or change the Workload instead, or delete an allocation to have it \
         placed again",
        id = who.id,
        role = who.role.as_str(),
        verb = verb.as_str(),
    ))
}

/// The token of an `Authorization: Bearer …` header. The scheme is case-insensitive
/// (RFC 9110 §11.1; Kubernetes accepts `bearer` too).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Admin-only endpoints (tokens): a global admin.
pub fn require_global_admin(who: &Principal, what: &str) -> Result<(), ApiError> {
    if who.role == Role::Admin && who.project.is_none() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token {} (role {}) cannot {what}: it needs role admin without project scope",
            who.id,
            who.role.as_str()
        )))
    }
}

/// Generate a new clear-text token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "mrd_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A short public id for a new token.
pub fn generate_token_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Hex SHA-256 digest of a token: what is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// In-memory view of the token records, kept current by a watch on [`TOKEN_PREFIX`].
#[derive(Clone, Default)]
pub struct TokenCache {
    inner: Arc<RwLock<HashMap<String, TokenRecord>>>,
}

impl TokenCache {
    /// Look up a clear token.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let digest = hash_token(token);
        let map = self.inner.read().expect("token cache poisoned");
        map.get(&digest).map(|r| Principal {
            id: r.id.clone(),
            role: r.role,
            project: r.project.clone(),
            node: r.node.clone(),
            site: r.site.clone(),
        })
    }

    pub fn insert(&self, digest: String, record: TokenRecord) {
        self.inner
            .write()
            .expect("token cache poisoned")
            .insert(digest, record);
    }

    pub fn remove(&self, digest: &str) {
        self.inner
            .write()
            .expect("token cache poisoned")
            .remove(digest);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().expect("token cache poisoned").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::kinds::{PROJECT, SITE, WORKLOAD};

    fn who(role: Role, project: Option<&str>) -> Principal {
        Principal {
            id: "t1".into(),
            role,
            project: project.map(str::to_owned),
            node: None,
            site: None,
        }
    }

    #[test]
    fn tokens_are_random_and_hash_is_stable() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with("mrd_") && a.len() == 47);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[4..]));
    }

    #[test]
    fn viewer_reads_but_never_writes() {
        let v = who(Role::Viewer, None);
        assert!(authorize(&v, Verb::Get, WORKLOAD, Some("finance"), Some("x")).is_ok());
        assert!(authorize(&v, Verb::List, SITE, None, None).is_ok());
        let err = authorize(&v, Verb::Create, WORKLOAD, Some("finance"), None)
            .expect_err("viewer cannot create");
        assert_eq!(err.code.as_u16(), 403);
        assert!(err.message.contains("role viewer"), "{}", err.message);
        assert!(
            err.message.contains("cannot create workloads"),
            "{}",
            err.message
        );
    }

    #[test]
    fn operator_writes_project_kinds_only() {
        let o = who(Role::Operator, None);
        assert!(authorize(&o, Verb::Create, WORKLOAD, Some("finance"), None).is_ok());
        assert!(authorize(&o, Verb::Delete, SITE, None, Some("s")).is_err());
    }

    #[test]
    fn project_scope_hides_other_projects_with_404() {
        let p = who(Role::Admin, Some("finance"));
        assert!(authorize(&p, Verb::Get, WORKLOAD, Some("finance"), Some("a")).is_ok());
        let err = authorize(&p, Verb::Get, WORKLOAD, Some("research"), Some("a"))
            .expect_err("other project");
        assert_eq!(err.code.as_u16(), 404);
        // Global kinds are readable, not writable.
        assert!(authorize(&p, Verb::Get, SITE, None, Some("s")).is_ok());
        assert_eq!(
            authorize(&p, Verb::Update, SITE, None, Some("s"))
                .expect_err("no global writes")
                .code
                .as_u16(),
            403
        );
        // Its own project is visible, others are not.
        assert!(authorize(&p, Verb::Get, PROJECT, None, Some("finance")).is_ok());
        assert_eq!(
            authorize(&p, Verb::Get, PROJECT, None, Some("research"))
                .expect_err("other project object")
                .code
                .as_u16(),
            404
        );
    }

    #[test]
    fn cache_authenticates_by_digest() {
        let cache = TokenCache::default();
        let token = generate_token();
        cache.insert(
            hash_token(&token),
            TokenRecord {
                id: "abc".into(),
                role: Role::Viewer,
                project: None,
                node: None,
                site: None,
                description: String::new(),
                created: "2026-01-01T00:00:00Z".into(),
                created_by: "system".into(),
            },
        );
        assert_eq!(
            cache.authenticate(&token).map(|p| p.role),
            Some(Role::Viewer)
        );
        assert!(cache.authenticate("mrd_wrong").is_none());
    }
}
