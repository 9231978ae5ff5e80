//! What a session computes once and shares between its workloads: the verdict of each
//! `matchExpression` per class ([`ExprMemo`]), the site filters per site ([`SiteKey`]),
//! the platform filters per class ([`PlatformKey`]), and the whole static verdict per
//! [`FilterKey`] (workloads with the same constraints pass the same classes for the same
//! reasons).

use super::*;

/// Per class: whether a `matchExpression` holds on every node of the class, on none, or
/// on some (its attribute differs between them, so it is checked node by node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClassMatch {
    No,
    Yes,
    Mixed,
}

/// An expression's [`ClassMatch`] per class, and the attribute's value where every
/// node of the class has the same, computed once per session (workloads repeat the same
/// expressions; the classes do not change within a batch).
#[derive(Debug)]
pub(super) struct ExprMemo {
    matches: Vec<ClassMatch>,
    /// Index into `values` (`"absent"` for no value), `NONE` where nodes differ.
    value: Vec<u32>,
    values: Vec<String>,
}

impl std::ops::Index<usize> for ExprMemo {
    type Output = ClassMatch;
    fn index(&self, class: usize) -> &ClassMatch {
        &self.matches[class]
    }
}

pub(super) type Memo = Arc<ExprMemo>;

pub(super) fn class_matches(fleet: &Fleet, e: &crate::workload::Expr) -> Memo {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut values = Vec::new();
    let mut matches = Vec::with_capacity(fleet.classes.len());
    let mut value = Vec::with_capacity(fleet.classes.len());
    for c in &fleet.classes {
        if !e.attr.is_uniform(c) {
            matches.push(ClassMatch::Mixed);
            value.push(NONE);
            continue;
        }
        let v = e.attr.uniform_value(fleet, c);
        matches.push(if e.expr.matches(v.as_deref()) {
            ClassMatch::Yes
        } else {
            ClassMatch::No
        });
        let v = v.as_deref().unwrap_or("absent");
        value.push(match ids.get(v) {
            Some(&id) => id,
            None => {
                let id = values.len() as u32;
                values.push(v.to_string());
                ids.insert(v.to_string(), id);
                id
            }
        });
    }
    Arc::new(ExprMemo {
        matches,
        value,
        values,
    })
}

/// The memos of a workload's expressions and preferences.
pub(super) struct Memos {
    pub(super) exprs: Vec<Memo>,
    pub(super) prefs: Vec<Vec<Memo>>,
}

/// A toleration, as a key (`api::kinds::Toleration` is not `Hash`).
pub(super) type TolerationKey = (
    Option<String>,
    TolerationOperator,
    Option<String>,
    Option<TaintEffect>,
);

/// What the static filters of a workload depend on: workloads with equal keys pass and
/// fail the same nodes for the same reasons, so their [`Verdict`] is computed once per
/// session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FilterKey {
    residency: Option<CountrySet>,
    project: Option<CountrySet>,
    strict: bool,
    compliance: Vec<String>,
    os: Option<OsFamily>,
    arch: Option<Arch>,
    driver: Driver,
    windows: Option<(WindowsBuild, Isolation)>,
    tolerations: Vec<TolerationKey>,
    /// Model, memory, and whether the request is a share of one device (which only
    /// shareable GPUs take).
    gpu: Option<(Option<String>, Option<u64>, bool)>,
    volumes: Vec<(String, bool)>,
    exprs: Vec<api::MatchExpression>,
}

impl FilterKey {
    pub(super) fn of(wl: &Compiled) -> FilterKey {
        FilterKey {
            residency: wl.residency.as_ref().map(|f| f.set),
            project: wl.project.as_ref().map(|(_, f)| f.set),
            strict: wl.strict,
            compliance: wl.compliance.clone(),
            os: wl.os,
            arch: wl.arch,
            driver: wl.driver,
            windows: wl.windows,
            tolerations: wl
                .tolerations
                .iter()
                .map(|t| (t.key.clone(), t.operator, t.value.clone(), t.effect))
                .collect(),
            gpu: wl
                .gpu
                .as_ref()
                .map(|g| (g.model.clone(), g.memory, g.is_share())),
            volumes: wl.volumes.clone(),
            exprs: wl.exprs.iter().map(|e| e.expr.clone()).collect(),
        }
    }
}

/// Which classes pass the static filters for a [`FilterKey`], and why the others'
/// nodes do not.
#[derive(Debug)]
pub(super) struct Verdict {
    /// Classes that passed: id, nodes that passed, and whether per-node expressions
    /// must be checked node by node (their attributes differ within the class).
    pub(super) passed: Vec<(ClassId, u32, bool)>,
    pub(super) tally: Tally,
}

/// What the site filters depend on (a part of [`FilterKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SiteKey {
    residency: Option<CountrySet>,
    project: Option<CountrySet>,
    strict: bool,
    compliance: Vec<String>,
}

impl SiteKey {
    pub(super) fn of(wl: &Compiled) -> SiteKey {
        SiteKey {
            residency: wl.residency.as_ref().map(|f| f.set),
            project: wl.project.as_ref().map(|(_, f)| f.set),
            strict: wl.strict,
            compliance: wl.compliance.clone(),
        }
    }
}

/// The first site filter each site fails for a [`SiteKey`], computed once per session.
pub(super) fn site_memo(fleet: &Fleet, wl: &Compiled) -> Vec<Option<Reason>> {
    let mut buf = Vec::new();
    fleet
        .sites
        .iter()
        .map(|site| {
            buf.clear();
            filter::site_failures(site, wl, false, &mut buf);
            buf.pop()
        })
        .collect()
}

/// What the platform filters depend on (a part of [`FilterKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PlatformKey {
    os: Option<OsFamily>,
    arch: Option<Arch>,
    driver: Driver,
    windows: Option<(WindowsBuild, Isolation)>,
    tolerations: Vec<TolerationKey>,
    /// Model, memory, and whether the request is a share of one device (which only
    /// shareable GPUs take).
    gpu: Option<(Option<String>, Option<u64>, bool)>,
    volumes: Vec<(String, bool)>,
}

impl PlatformKey {
    pub(super) fn of(wl: &Compiled) -> PlatformKey {
        let f = FilterKey::of(wl);
        PlatformKey {
            os: f.os,
            arch: f.arch,
            driver: f.driver,
            windows: f.windows,
            tolerations: f.tolerations,
            gpu: f.gpu,
            volumes: f.volumes,
        }
    }
}

/// The first platform filter each class fails for a [`PlatformKey`], computed once per
/// session: an index into `reasons`, or `NONE`.
#[derive(Debug)]
pub(super) struct PlatformMemo {
    first: Vec<u32>,
    reasons: Vec<Reason>,
}

pub(super) fn platform_memo(fleet: &Fleet, wl: &Compiled) -> PlatformMemo {
    let mut ids: HashMap<Reason, u32> = HashMap::new();
    let mut reasons = Vec::new();
    let mut buf = Vec::new();
    let first = fleet
        .classes
        .iter()
        .map(|class| {
            buf.clear();
            filter::platform_failures(class, wl, false, &mut buf);
            match buf.pop() {
                None => NONE,
                Some(r) => *ids.entry(r).or_insert_with_key(|r| {
                    reasons.push(r.clone());
                    reasons.len() as u32 - 1
                }),
            }
        })
        .collect();
    PlatformMemo { first, reasons }
}

/// The static filters for one workload, over every class. Each class's nodes are
/// counted under the first filter the class fails, as [`filter::class_failures`] and
/// [`filter::node_failures`] would find it, but with the site filters evaluated once
/// per site and the platform filters and expressions looked up in the session's memos.
pub(super) fn static_verdict(
    fleet: &Fleet,
    wl: &Compiled,
    memos: &Memos,
    platform: &PlatformMemo,
    sites: &[Option<Reason>],
) -> Verdict {
    let mut tally = Tally::default();
    let mut passed = Vec::new();
    let node_level = wl.exprs.iter().any(|e| e.attr.is_node_level());
    let mut excluded = 0u32;
    let mut platform_counts = vec![0u32; platform.reasons.len()];
    let mut expr_counts = vec![0u32; wl.exprs.len()];
    let mut expr_values: Vec<std::collections::BTreeSet<String>> =
        vec![Default::default(); wl.exprs.len()];
    // Values seen on failing classes, by id in the expression's memo.
    let mut seen: Vec<Vec<bool>> = memos
        .exprs
        .iter()
        .map(|m| vec![false; m.values.len()])
        .collect();
    let mut visit = |ci: ClassId, site_failed: bool, site_count: &mut u32, tally: &mut Tally| {
        let hot = &fleet.hot[ci as usize];
        excluded += hot.excluded;
        let rest = hot.nodes - hot.excluded;
        if rest == 0 {
            return;
        }
        if let Some(s) = filter::state_failure(hot.state) {
            tally.reject(&s, rest);
            return;
        }
        if hot.site == u32::MAX {
            let class = &fleet.classes[ci as usize];
            tally.reject(
                &Reason::UnknownSite(fleet.site_name_of_class(class).to_string()),
                rest,
            );
            return;
        }
        if site_failed {
            *site_count += rest;
            return;
        }
        let pf = platform.first[ci as usize];
        if pf != NONE {
            platform_counts[pf as usize] += rest;
            return;
        }
        let class = &fleet.classes[ci as usize];
        let m = |i: usize| memos.exprs[i][ci as usize];
        let class_level = (0..wl.exprs.len())
            .find(|&i| !wl.exprs[i].attr.is_node_level() && m(i) == ClassMatch::No);
        if let Some(i) = class_level {
            expr_counts[i] += rest;
            seen[i][memos.exprs[i].value[ci as usize] as usize] = true;
            return;
        }
        // Per-node expressions: once for the class when its nodes agree on their
        // attributes (pools share their labels), else node by node.
        let node_check = node_level && (0..wl.exprs.len()).any(|i| m(i) == ClassMatch::Mixed);
        if node_level && !node_check {
            let failed = (0..wl.exprs.len())
                .find(|&i| wl.exprs[i].attr.is_node_level() && m(i) == ClassMatch::No);
            if let Some(i) = failed {
                expr_counts[i] += rest;
                seen[i][memos.exprs[i].value[ci as usize] as usize] = true;
                return;
            }
        }
        let mut eligible = rest;
        if node_check {
            let mut out = Vec::new();
            for &n in &class.nodes {
                let node = &fleet.nodes[n as usize];
                if node.excluded {
                    continue;
                }
                out.clear();
                filter::node_failures(fleet, n, wl, false, &mut out);
                if let Some(Reason::Expression(i)) = out.first() {
                    expr_counts[*i] += 1;
                    let v = wl.exprs[*i].attr.value(fleet, class, Some(node));
                    expr_values[*i]
                        .insert(v.map_or_else(|| "absent".to_string(), |v| v.into_owned()));
                    eligible -= 1;
                }
            }
        }
        tally.pass(eligible);
        if eligible > 0 {
            passed.push((ci, eligible, node_check));
        }
    };
    for (failure, classes) in sites.iter().zip(&fleet.site_classes) {
        let mut count = 0;
        for &ci in classes {
            visit(ci, failure.is_some(), &mut count, &mut tally);
        }
        if let Some(r) = failure
            && count > 0
        {
            tally.reject(r, count);
        }
    }
    for &ci in &fleet.unknown_site_classes {
        visit(ci, false, &mut 0, &mut tally);
    }
    if excluded > 0 {
        tally.reject(&Reason::Excluded, excluded);
    }
    for (r, &n) in platform.reasons.iter().zip(&platform_counts) {
        if n > 0 {
            tally.reject(r, n);
        }
    }
    for (i, mut values) in expr_values.into_iter().enumerate() {
        if expr_counts[i] > 0 {
            for (v, s) in memos.exprs[i].values.iter().zip(&seen[i]) {
                if *s {
                    values.insert(v.clone());
                }
            }
            tally.reject(&Reason::Expression(i), expr_counts[i]).values = values;
        }
    }
    Verdict { passed, tally }
}
