//! GPUs from `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`.
//!
//! Names become the short models Meridian schedules on (`NVIDIA H100 80GB HBM3` → `H100`)
//! and identical GPUs are grouped. Memory is what the driver reports, rounded up to a
//! whole GiB: an H100 80GB reports 81559 MiB (79.6 GiB) and is offered as `80Gi`, so a
//! request for `memory: 80Gi` fits the part sold as 80 GB. Parts with ECC carved out of
//! GDDR report less than their name (a T4 reports 15360 MiB, `15Gi`).

use std::collections::BTreeMap;

use api::Memory;
use api::kinds::GpuDevice;

/// The arguments Meridian runs `nvidia-smi` with.
pub const NVIDIA_SMI_ARGS: &[&str] = &[
    "--query-gpu=name,memory.total",
    "--format=csv,noheader,nounits",
];

/// Parses the CSV, one GPU a line, into groups of identical GPUs ordered by model and
/// memory. Also accepts the header and `MiB` units of `--format=csv`; skips lines it
/// cannot read.
pub fn parse_nvidia_smi(text: &str) -> Vec<GpuDevice> {
    let mut groups: BTreeMap<(String, Option<Memory>), u32> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, memory)) = line.rsplit_once(',') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name == "name" {
            continue;
        }
        let memory = memory
            .trim()
            .trim_end_matches("MiB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|mib| Memory::from_gib(mib.div_ceil(1024)));
        *groups.entry((model_of(name), memory)).or_default() += 1;
    }
    groups
        .into_iter()
        .map(|((model, memory), count)| GpuDevice {
            model,
            memory,
            count,
            shareable: None,
        })
        .collect()
}

/// The short model of a marketing name: vendor and brand words dropped, then the first
/// word up to a `-` (`A100-SXM4-40GB` → `A100`); workstation and consumer names keep their
/// number (`NVIDIA RTX A6000` → `RTX-A6000`, `NVIDIA GeForce RTX 4090` → `RTX-4090`).
pub fn model_of(name: &str) -> String {
    const BRANDS: &[&str] = &["NVIDIA", "Tesla", "GeForce", "Quadro"];
    let mut words = name
        .split_whitespace()
        .filter(|w| !BRANDS.iter().any(|b| w.eq_ignore_ascii_case(b)));
    let Some(first) = words.next() else {
        return name.trim().to_string();
    };
    let head = first.split('-').next().unwrap_or(first);
    match words.next() {
        Some(number) if matches!(head, "RTX" | "TITAN") => format!("{head}-{number}"),
        _ => head.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_h100_recorded() {
        let text = include_str!("../testdata/gpu-h100/nvidia-smi.csv");
        assert_eq!(
            parse_nvidia_smi(text),
            [GpuDevice {
                model: "H100".into(),
                memory: Some(Memory::from_gib(80)),
                count: 8,
                shareable: None,
            }]
        );
    }

    #[test]
    fn mixed_models_are_grouped_and_ordered() {
        let text =
            "Tesla T4, 15360\nNVIDIA L4, 23034\nTesla T4, 15360\nNVIDIA A100-SXM4-40GB, 40536\n";
        let got: Vec<(String, Option<Memory>, u32)> = parse_nvidia_smi(text)
            .into_iter()
            .map(|g| (g.model, g.memory, g.count))
            .collect();
        assert_eq!(
            got,
            [
                ("A100".into(), Some(Memory::from_gib(40)), 1),
                ("L4".into(), Some(Memory::from_gib(23)), 1),
                ("T4".into(), Some(Memory::from_gib(15)), 2),
            ]
        );
    }

    #[test]
    fn same_model_different_memory_are_two_groups() {
        let text = "NVIDIA A100-SXM4-40GB, 40536\nNVIDIA A100-SXM4-80GB, 81251\n";
        let groups = parse_nvidia_smi(text);
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.model == "A100"));
    }

    #[test]
    fn full_csv_and_unreadable_memory() {
        let text = "name, memory.total [MiB]\nNVIDIA H100 80GB HBM3, 81559 MiB\nNVIDIA H100 80GB HBM3, [N/A]\n\ngarbage\n";
        let groups = parse_nvidia_smi(text);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].memory, None);
        assert_eq!(groups[1].memory, Some(Memory::from_gib(80)));
        assert!(parse_nvidia_smi("").is_empty());
    }

    #[test]
    fn models() {
        for (name, model) in [
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA H100 PCIe", "H100"),
            ("NVIDIA H100 NVL", "H100"),
            ("NVIDIA H200", "H200"),
            ("NVIDIA A100-SXM4-40GB", "A100"),
            ("NVIDIA A100 80GB PCIe", "A100"),
            ("Tesla T4", "T4"),
            ("Tesla V100-SXM2-16GB", "V100"),
            ("NVIDIA L4", "L4"),
            ("NVIDIA L40S", "L40S"),
            ("NVIDIA A10", "A10"),
            ("NVIDIA GH200 480GB", "GH200"),
            ("NVIDIA RTX A6000", "RTX-A6000"),
            ("NVIDIA GeForce RTX 4090", "RTX-4090"),
            ("Quadro RTX 8000", "RTX-8000"),
            ("NVIDIA", "NVIDIA"),
        ] {
            assert_eq!(model_of(name), model, "{name}");
        }
    }
}
