//! Preemption: when an instance fits nowhere, the node where evicting strictly
//! lower-priority allocations makes room at the least cost, and which ones to evict.
//!
//! Gangs are preempted whole or not at all (as Volcano and Kueue treat them: a gang is
//! all-or-nothing, so a gang missing a member holds its resources for nothing): when a
//! victim belongs to a gang, every member of the gang, on whatever node, is a victim too
//! and counts in the choice's cost, so a choice that breaks no gang (or a smaller one) is
//! preferred at the same priority level.

use super::*;

impl Session<'_> {
    // -- preemption -------------------------------------------------------------------

    /// The node and the cheapest set of strictly lower-priority allocations on it whose
    /// eviction makes room: the lowest highest-victim priority, then the fewest victims,
    /// then the least evicted resources (as shares of the node), then the node name.
    /// A victim's gang is evicted with it (its members elsewhere included, and counted).
    pub(super) fn find_victims(&self, wi: usize) -> Option<(NodeId, Vec<AllocId>)> {
        let plan = self.plan(wi);
        let wl = self.wl(wi);
        let fleet = &*self.fleet;
        let min = self.spread_min(plan);
        let specials = fleet.replicas_on.get(&plan.wid);
        type Key = (i32, usize, u128, NodeId);
        let mut best: Option<(Key, Vec<AllocId>)> = None;
        for f in &plan.feasible {
            let class = &fleet.classes[f.class as usize];
            let cap = &class.key.capacity;
            if wl.res[0] > cap.cpu
                || wl.res[1] > cap.memory
                || (wl.res[2] > 0 && cap.ephemeral.is_none_or(|e| wl.res[2] > e))
            {
                continue;
            }
            if self.class_spread(plan, f.class, min).is_err() {
                continue;
            }
            let group_options: Vec<Option<u8>> = match &wl.gpu {
                Some(g) => f
                    .groups
                    .iter()
                    .copied()
                    .filter(|&i| cap.gpus[i as usize].count.saturating_mul(MILLI) >= g.milli)
                    .filter(|&i| {
                        !self.checks_models(wi)
                            || self
                                .model_breach(wi, &cap.gpus[i as usize].model, 1)
                                .is_none()
                    })
                    .map(Some)
                    .collect(),
                None => vec![None],
            };
            for &n in &class.nodes {
                let node = &fleet.nodes[n as usize];
                if node.excluded {
                    continue;
                }
                let on_node = specials.and_then(|m| m.get(&n)).copied().unwrap_or(0);
                if (wl.anti_affinity && on_node > 0)
                    || self.node_spread(plan, n, on_node, min).is_err()
                {
                    continue;
                }
                if !self.node_passes(f, wl, n) {
                    continue;
                }
                let victims: Vec<(AllocId, &Alloc)> = node
                    .allocs
                    .iter()
                    .filter_map(|&a| fleet.allocs[a as usize].as_ref().map(|x| (a, x)))
                    .filter(|(_, a)| a.priority < wl.priority)
                    .collect();
                if victims.is_empty() {
                    continue;
                }
                // Also try sparing the gangs: their members elsewhere would go too.
                let no_gangs: Vec<(AllocId, &Alloc)> = victims
                    .iter()
                    .filter(|(_, a)| !fleet.gang[a.workload as usize])
                    .copied()
                    .collect();
                let pools: &[&[(AllocId, &Alloc)]] =
                    if no_gangs.len() == victims.len() || no_gangs.is_empty() {
                        &[&victims]
                    } else {
                        &[&victims, &no_gangs]
                    };
                for &group in &group_options {
                    for pool in pools {
                        if let Some((max_prio, chosen, share)) =
                            select_victims(fleet, n, wl, group, pool)
                        {
                            let (chosen, share) = self.with_gangs(chosen, share);
                            let key = (max_prio, chosen.len(), share, n);
                            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                                best = Some((key, chosen));
                            }
                        }
                    }
                }
            }
        }
        best.map(|((_, _, _, n), v)| (n, v))
    }

    /// `chosen` with every member of the gangs among them, wherever they are, and
    /// `share` plus what the added members hold (as shares of their own nodes).
    fn with_gangs(&self, chosen: Vec<AllocId>, share: u128) -> (Vec<AllocId>, u128) {
        let fleet = &*self.fleet;
        let mut gangs: Vec<WorkloadId> = chosen
            .iter()
            .filter_map(|&id| fleet.allocs[id as usize].as_ref())
            .map(|a| a.workload)
            .filter(|&w| fleet.gang[w as usize])
            .collect();
        if gangs.is_empty() {
            return (chosen, share);
        }
        gangs.sort_unstable();
        gangs.dedup();
        let mut out = chosen;
        let mut share = share;
        for g in gangs {
            let Some(on) = fleet.replicas_on.get(&g) else {
                continue;
            };
            for &n in on.keys() {
                let cap = &fleet.class_of(n).key.capacity;
                for &id in &fleet.nodes[n as usize].allocs {
                    let Some(a) = fleet.allocs[id as usize].as_ref() else {
                        continue;
                    };
                    if a.workload == g && !out.contains(&id) {
                        let gpu = a.gpu.map_or(0, |(_, c)| u64::from(c));
                        share += share_of(&[a.res[0], a.res[1], a.res[2], gpu], cap);
                        out.push(id);
                    }
                }
            }
        }
        out.sort_unstable();
        (out, share)
    }
}

/// The victims to evict on node `n` (using GPU group `group`): the lowest priority
/// level that suffices, then greedily the fewest victims of at most that priority,
/// then any victim whose eviction turns out unnecessary is spared.
pub(super) fn select_victims(
    fleet: &Fleet,
    n: NodeId,
    wl: &Compiled,
    group: Option<u8>,
    victims: &[(AllocId, &Alloc)],
) -> Option<(i32, Vec<AllocId>, u128)> {
    let (cpu, memory, eph) = filter::free_of(fleet, n);
    let node = &fleet.nodes[n as usize];
    let cap = &fleet.classes[node.class as usize].key.capacity;
    if wl.res[2] > 0 && eph.is_none() {
        return None;
    }
    let gpu_need = match (group, &wl.gpu) {
        (Some(g), Some(req)) => req
            .milli
            .saturating_sub(filter::group_room(&node.devices[g as usize], req.milli))
            as u64,
        _ => 0,
    };
    let need = [
        wl.res[0].saturating_sub(cpu),
        wl.res[1].saturating_sub(memory),
        wl.res[2].saturating_sub(eph.unwrap_or(0)),
        gpu_need,
    ];
    if need.iter().all(|x| *x == 0) {
        return None;
    }
    let gives = |a: &Alloc| -> [u64; 4] {
        let gpu = match (a.gpu, group) {
            (Some((g, c)), Some(want)) if g == want => c as u64,
            _ => 0,
        };
        [a.res[0], a.res[1], a.res[2], gpu]
    };
    // Whether evicting `set` frees room on one device for a share, or enough whole
    // devices (milli-GPUs freed on different devices do not add up to a device).
    let devices_free = |set: &[&(AllocId, &Alloc)]| -> bool {
        let (Some(g), Some(req)) = (group, &wl.gpu) else {
            return true;
        };
        let mut dev = node.devices[g as usize].clone();
        for (_, a) in set {
            if let Some((held, milli)) = a.gpu
                && held == g
            {
                for &d in &a.devices {
                    if let Some(u) = dev.get_mut(d as usize) {
                        *u = u.saturating_sub(crate::fleet::per_device(milli));
                    }
                }
            }
        }
        filter::group_room(&dev, req.milli) >= req.milli
    };
    let covers = |set: &[&(AllocId, &Alloc)]| -> bool {
        let mut sum = [0u64; 4];
        for (_, a) in set {
            for (s, g) in sum.iter_mut().zip(gives(a)) {
                *s = s.saturating_add(g);
            }
        }
        sum.iter().zip(&need).all(|(s, n)| s >= n) && devices_free(set)
    };
    let mut sorted: Vec<&(AllocId, &Alloc)> = victims.iter().collect();
    sorted.sort_by_key(|(id, a)| (a.priority, *id));
    // The lowest priority level whose victims (all at or below it) suffice.
    let mut level = None;
    for (i, (_, a)) in sorted.iter().enumerate() {
        let last_of_level = sorted
            .get(i + 1)
            .is_none_or(|(_, b)| b.priority != a.priority);
        if last_of_level && covers(&sorted[..=i]) {
            level = Some(a.priority);
            break;
        }
    }
    let level = level?;
    let mut pool: Vec<&(AllocId, &Alloc)> = sorted
        .into_iter()
        .filter(|(_, a)| a.priority <= level)
        .collect();
    let coverage = |a: &Alloc| -> u128 {
        gives(a)
            .iter()
            .zip(&need)
            .filter(|(_, n)| **n > 0)
            .map(|(g, n)| (*g).min(*n) as u128 * UTIL_SCALE / *n as u128)
            .sum()
    };
    pool.sort_by(|(ia, a), (ib, b)| {
        coverage(b)
            .cmp(&coverage(a))
            .then(a.priority.cmp(&b.priority))
            .then(ia.cmp(ib))
    });
    let mut chosen: Vec<&(AllocId, &Alloc)> = Vec::new();
    for v in pool {
        if covers(&chosen) {
            break;
        }
        chosen.push(v);
    }
    // Spare victims that are not needed, the most valuable (highest priority) first.
    let mut order: Vec<usize> = (0..chosen.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(chosen[i].1.priority), chosen[i].0));
    let mut keep = vec![true; chosen.len()];
    for i in order {
        keep[i] = false;
        let rest: Vec<&(AllocId, &Alloc)> = chosen
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| *v)
            .collect();
        if !covers(&rest) {
            keep[i] = true;
        }
    }
    let chosen: Vec<&(AllocId, &Alloc)> = chosen
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| v)
        .collect();
    let max_prio = chosen.iter().map(|(_, a)| a.priority).max()?;
    let mut total = [0u64; 4];
    for (_, a) in &chosen {
        for (t, g) in total.iter_mut().zip(gives(a)) {
            *t = t.saturating_add(g);
        }
    }
    let share = share_of(&total, cap);
    let mut ids: Vec<AllocId> = chosen.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    Some((max_prio, ids, share))
}
