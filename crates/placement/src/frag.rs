//! Fragmentation-aware GPU scoring: place a GPU task where it fragments the fleet's GPUs
//! least, measured against the mix of tasks the scheduler expects.
//!
//! The idea is Fragmentation Gradient Descent, from Qizhen Weng, Lingyun Yang, Yinghao Yu,
//! Wei Wang, Xiaochuan Tang, Guodong Yang and Liping Zhang, "Beware of Fragmentation:
//! Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent", USENIX ATC 2023
//! (<https://www.usenix.org/conference/atc23/presentation/weng>); the Alibaba trace it was
//! measured on is the one `meridian bench queue` replays. This is Meridian's own code of
//! that idea, not a port.
//!
//! A node's GPU capacity is *fragmented* with respect to one task shape when the task
//! cannot use it: all of the node's free GPU if the task does not fit on the node at all
//! (too little free cpu or memory, no device with room for its share, too few free whole
//! devices); otherwise the free part of every device the task could not use (a device
//! with less free than a share needs, or any partly used device for a whole-GPU task,
//! or a device that may not be shared for a share). A node's fragmentation with respect
//! to a *mix* of task shapes is the popularity-weighted mean over the shapes
//! ([`TaskMix`]). A task then goes where placing it raises that measure least (or lowers
//! it most): the steepest descent of the fleet's fragmentation, one task at a time.
//!
//! The mix is estimated from what the scheduler sees, never from a clock or a random
//! draw: the caller may hand one over ([`crate::Options::task_mix`]: the benchmark passes
//! the requests that arrived so far), else the batch's own GPU requests are the mix.
//! Shapes that need no GPU are left out: every node counts all its free GPU as fragment
//! for them, so they shift every node's measure by the same amount and never change a
//! choice. Only the most popular [`MAX_SHAPES`] shapes are kept (the cost of scoring a
//! node is linear in them). GPU-model constraints of the shapes are not modelled (a
//! shape is measured against every GPU).

use std::collections::BTreeMap;

use crate::fleet::{Capacity, MILLI, NodeInfo, per_device, pick_devices};

/// How many task shapes (the most popular) a mix keeps.
pub const MAX_SHAPES: usize = 48;

/// The expected mix of GPU tasks: shapes (cpu, memory, GPU request) and how many of each
/// were seen. Build it with [`TaskMix::add`]; the scheduler normalises it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMix {
    /// `(cpu millicores, memory bytes, milli-GPUs)` → count.
    counts: BTreeMap<(u64, u64, u32), u64>,
}

impl TaskMix {
    pub fn new() -> TaskMix {
        TaskMix::default()
    }

    /// Counts `n` tasks of one shape; shapes without a GPU are ignored (see the module
    /// documentation).
    pub fn add(&mut self, cpu_millis: u64, memory_bytes: u64, gpu: api::GpuCount, n: u64) {
        if gpu.is_zero() || n == 0 {
            return;
        }
        *self
            .counts
            .entry((cpu_millis, memory_bytes, gpu.milli()))
            .or_default() += n;
    }

    /// Whether no GPU task was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The [`MAX_SHAPES`] most popular shapes with weights that sum to 1 (ties by
    /// shape, so the result is deterministic).
    pub(crate) fn shapes(&self) -> Vec<Shape> {
        let mut all: Vec<(&(u64, u64, u32), &u64)> = self.counts.iter().collect();
        all.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        all.truncate(MAX_SHAPES);
        let total: u64 = all.iter().map(|(_, n)| **n).sum();
        all.into_iter()
            .map(|(&(cpu, memory, milli), &n)| Shape {
                cpu,
                memory,
                milli,
                weight: n as f64 / total.max(1) as f64,
            })
            .collect()
    }
}

/// One shape of a mix, with its popularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shape {
    pub cpu: u64,
    pub memory: u64,
    pub milli: u32,
    pub weight: f64,
}

/// One device as the measure sees it: free milli-GPUs and whether it may be shared.
#[derive(Debug, Clone, Copy)]
struct Device {
    free: u32,
    shareable: bool,
}

/// The fragmentation of a node whose free cpu and memory are `cpu` and `memory` and
/// whose devices are `devices`, with respect to `mix`, in milli-GPUs.
fn measure(mix: &[Shape], cpu: u64, memory: u64, devices: &[Device]) -> f64 {
    let total: u32 = devices.iter().map(|d| d.free).sum();
    if total == 0 {
        return 0.0;
    }
    let mut f = 0.0;
    for m in mix {
        let stranded = if m.cpu > cpu || m.memory > memory {
            total
        } else if m.milli < MILLI {
            // A share: devices that cannot hold it are fragments, unless none can.
            let unusable: u32 = devices
                .iter()
                .filter(|d| !(d.shareable && d.free >= m.milli))
                .map(|d| d.free)
                .sum();
            if unusable == total { total } else { unusable }
        } else {
            let whole = devices.iter().filter(|d| d.free >= MILLI).count() as u32;
            if whole * MILLI < m.milli {
                total
            } else {
                devices
                    .iter()
                    .filter(|d| d.free < MILLI)
                    .map(|d| d.free)
                    .sum()
            }
        };
        f += m.weight * f64::from(stranded);
    }
    f
}

/// How much placing a task of `res` (cpu, memory) and `milli` milli-GPUs from GPU group
/// `group` would change the fragmentation of node `node` (capacity `cap`) with respect to
/// `mix`, in milli-GPUs: negative when it fills a fragment. The devices are those
/// [`pick_devices`] would take, as the placement will.
pub(crate) fn delta(
    mix: &[Shape],
    cap: &Capacity,
    node: &NodeInfo,
    res: &[u64; 3],
    group: u8,
    milli: u32,
) -> f64 {
    let cpu = cap.cpu.saturating_sub(node.used[0]);
    let memory = cap.memory.saturating_sub(node.used[1]);
    // On the stack for the usual node (up to 16 GPUs).
    let total = cap.gpu_total() as usize;
    let mut stack = [Device {
        free: 0,
        shareable: false,
    }; 16];
    let mut heap = Vec::new();
    let devices: &mut [Device] = if total <= stack.len() {
        &mut stack[..total]
    } else {
        heap.resize(
            total,
            Device {
                free: 0,
                shareable: false,
            },
        );
        &mut heap
    };
    let mut start = 0;
    let mut chosen: (usize, Vec<u16>) = (0, Vec::new());
    for (g, (group_cap, used)) in cap.gpus.iter().zip(&node.devices).enumerate() {
        if g == group as usize {
            chosen = (start, pick_devices(used, milli).unwrap_or_default());
        }
        for (d, u) in devices[start..].iter_mut().zip(used) {
            *d = Device {
                free: MILLI.saturating_sub(u32::from(*u)),
                shareable: group_cap.shareable,
            };
        }
        start += used.len();
    }
    let devices = &mut devices[..start.min(total)];
    let before = measure(mix, cpu, memory, devices);
    let (offset, picked) = chosen;
    for d in picked {
        let dev = &mut devices[offset + d as usize];
        dev.free = dev.free.saturating_sub(u32::from(per_device(milli)));
    }
    let after = measure(
        mix,
        cpu.saturating_sub(res[0]),
        memory.saturating_sub(res[1]),
        devices,
    );
    after - before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(free: u32) -> Device {
        Device {
            free,
            shareable: true,
        }
    }

    #[test]
    fn a_share_strands_what_is_left_too_small() {
        let mix = [Shape {
            cpu: 1000,
            memory: 0,
            milli: 500,
            weight: 1.0,
        }];
        // 0.3 free on one device, one whole free: the 0.3 cannot hold a 0.5 share.
        assert_eq!(measure(&mix, 8000, 0, &[dev(300), dev(1000)]), 300.0);
        // Too little cpu: every free GPU is stranded.
        assert_eq!(measure(&mix, 500, 0, &[dev(300), dev(1000)]), 1300.0);
        // Not shareable: a share can use none of it.
        let locked = Device {
            free: 1000,
            shareable: false,
        };
        assert_eq!(measure(&mix, 8000, 0, &[locked]), 1000.0);
    }

    #[test]
    fn whole_gpus_strand_partly_used_devices() {
        let mix = [Shape {
            cpu: 0,
            memory: 0,
            milli: 2000,
            weight: 1.0,
        }];
        assert_eq!(
            measure(&mix, 0, 0, &[dev(1000), dev(1000), dev(400)]),
            400.0
        );
        assert_eq!(measure(&mix, 0, 0, &[dev(1000), dev(400)]), 1400.0);
    }

    #[test]
    fn mixes_keep_the_most_popular_gpu_shapes() {
        let mut mix = TaskMix::new();
        mix.add(1000, 1, api::GpuCount::from_milli(250), 3);
        mix.add(1000, 1, api::GpuCount::whole(1), 1);
        mix.add(1000, 1, api::GpuCount::default(), 100);
        let shapes = mix.shapes();
        assert_eq!(shapes.len(), 2);
        assert_eq!((shapes[0].milli, shapes[0].weight), (250, 0.75));
    }
}
