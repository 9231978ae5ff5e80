//! The Alibaba GPU cluster trace of 2023 (`openb`), as CSV text: its nodes and its tasks.
//!
//! The trace was published with Qizhen Weng, Lingyun Yang, Yinghao Yu, Wei Wang, Xiaochuan
//! Tang, Guodong Yang and Liping Zhang, "Beware of Fragmentation: Scheduling GPU-Sharing
//! Workloads with Fragmentation Gradient Descent", USENIX ATC 2023
//! (<https://www.usenix.org/conference/atc23/presentation/weng>), in
//! `alibaba/clusterdata`, `cluster-trace-gpu-v2023`. Its README describes the columns:
//!
//! - nodes (`openb_node_list_*.csv`): `sn,cpu_milli,memory_mib,gpu,model`;
//! - tasks (`openb_pod_list_*.csv`): `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,
//!   qos,pod_phase,creation_time,deletion_time,scheduled_time`, where `gpu_milli` is the
//!   share of one GPU a GPU-sharing task (`num_gpu` 1) asks for, `gpu_spec` lists the GPU
//!   models a task may use (`V100M16|V100M32`; empty: any) and times are in seconds.
//!
//! Columns are found by their header name, so their order does not matter; unknown
//! columns are ignored. A bad cell is an error naming the file, the line and the column.
//! This module parses text; the caller reads the file (the crate's generators do no I/O).

use std::collections::HashMap;

/// A bad line of a trace file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: column {column}: {message}")]
pub struct TraceError {
    pub file: String,
    /// 1-based, the header being line 1.
    pub line: usize,
    /// The column's header name (or its 1-based position when the header lacks it).
    pub column: String,
    pub message: String,
}

/// One node of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceNode {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    /// `None` for nodes without GPUs.
    pub model: Option<String>,
}

/// One task of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceTask {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    /// Milli-GPUs: `num_gpu × 1000` for whole GPUs, `gpu_milli` for a share of one.
    pub gpu_milli: u32,
    /// GPU models the task may use; empty: any.
    pub gpu_spec: Vec<String>,
    /// `LS`, `BE`, `Burstable`, `Guaranteed` (what the replay reports queueing per).
    pub qos: String,
    pub creation: u64,
    pub deletion: u64,
    pub scheduled: Option<u64>,
}

impl TraceTask {
    /// How long it ran in the trace: from its start (its creation when it never started)
    /// to its deletion.
    pub fn duration(&self) -> u64 {
        let start = self.scheduled.unwrap_or(self.creation).max(self.creation);
        self.deletion.saturating_sub(start)
    }
}

/// The rows of a CSV file with a header, as cells by column name.
struct Table<'a> {
    file: &'a str,
    columns: HashMap<&'a str, usize>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    fn parse(file: &'a str, text: &'a str, required: &[&str]) -> Result<Table<'a>, TraceError> {
        let mut lines = text.lines().enumerate();
        let header = loop {
            match lines.next() {
                Some((_, l)) if l.trim().is_empty() => continue,
                Some((i, l)) => break (i + 1, l),
                None => {
                    return Err(TraceError {
                        file: file.to_string(),
                        line: 1,
                        column: required[0].to_string(),
                        message: format!("empty file; expected a header ({})", required.join(",")),
                    });
                }
            }
        };
        let columns: HashMap<&str, usize> = header
            .1
            .split(',')
            .enumerate()
            .map(|(i, c)| (c.trim().trim_start_matches('\u{feff}'), i))
            .collect();
        for c in required {
            if !columns.contains_key(c) {
                return Err(TraceError {
                    file: file.to_string(),
                    line: header.0,
                    column: (*c).to_string(),
                    message: format!(
                        "the header lacks column {c:?} (expected {})",
                        required.join(",")
                    ),
                });
            }
        }
        let rows = lines
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l.split(',').map(str::trim).collect()))
            .collect();
        Ok(Table {
            file,
            columns,
            rows,
        })
    }

    fn cell(&self, row: &(usize, Vec<&'a str>), column: &str) -> Result<&'a str, TraceError> {
        let i = self.columns[column];
        row.1.get(i).copied().ok_or_else(|| TraceError {
            file: self.file.to_string(),
            line: row.0,
            column: column.to_string(),
            message: format!("missing: the line has {} cells", row.1.len()),
        })
    }

    fn number(&self, row: &(usize, Vec<&'a str>), column: &str) -> Result<u64, TraceError> {
        let v = self.cell(row, column)?;
        parse_number(v).ok_or_else(|| TraceError {
            file: self.file.to_string(),
            line: row.0,
            column: column.to_string(),
            message: format!("{v:?} is not a whole number of 0 or more"),
        })
    }

    fn optional(
        &self,
        row: &(usize, Vec<&'a str>),
        column: &str,
    ) -> Result<Option<u64>, TraceError> {
        match self.cell(row, column)? {
            "" | "nan" | "NaN" => Ok(None),
            _ => self.number(row, column).map(Some),
        }
    }

    fn error(&self, row: &(usize, Vec<&'a str>), column: &str, message: String) -> TraceError {
        TraceError {
            file: self.file.to_string(),
            line: row.0,
            column: column.to_string(),
            message,
        }
    }
}

/// A whole number, also written as a float with no fraction (`8.0`, as pandas writes).
fn parse_number(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let f: f64 = v.parse().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e18).then_some(f as u64)
}

/// The nodes of `openb_node_list_*.csv` (`file` names it in errors).
pub fn parse_nodes(file: &str, text: &str) -> Result<Vec<TraceNode>, TraceError> {
    let t = Table::parse(
        file,
        text,
        &["sn", "cpu_milli", "memory_mib", "gpu", "model"],
    )?;
    let mut out = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let name = t.cell(row, "sn")?;
        if name.is_empty() {
            return Err(t.error(row, "sn", "empty node name".into()));
        }
        let gpus = t.number(row, "gpu")?;
        let gpus = u32::try_from(gpus)
            .map_err(|_| t.error(row, "gpu", format!("{gpus} GPUs is too many")))?;
        let model = match t.cell(row, "model")? {
            "" | "nan" | "NaN" => None,
            m => Some(m.to_string()),
        };
        if gpus > 0 && model.is_none() {
            return Err(t.error(
                row,
                "model",
                format!("the node has {gpus} GPUs but no model"),
            ));
        }
        out.push(TraceNode {
            name: name.to_string(),
            cpu_milli: t.number(row, "cpu_milli")?,
            memory_mib: t.number(row, "memory_mib")?,
            gpus,
            model: model.filter(|_| gpus > 0),
        });
    }
    Ok(out)
}

/// The tasks of `openb_pod_list_*.csv` (`file` names it in errors).
pub fn parse_tasks(file: &str, text: &str) -> Result<Vec<TraceTask>, TraceError> {
    let t = Table::parse(
        file,
        text,
        &[
            "name",
            "cpu_milli",
            "memory_mib",
            "num_gpu",
            "gpu_milli",
            "gpu_spec",
            "qos",
            "creation_time",
            "deletion_time",
            "scheduled_time",
        ],
    )?;
    let mut out = Vec::with_capacity(t.rows.len());
    for row in &t.rows {
        let num_gpu = t.number(row, "num_gpu")?;
        let gpu_milli = t.optional(row, "gpu_milli")?.unwrap_or(0);
        let milli = match num_gpu {
            0 => 0,
            1 if gpu_milli == 0 || gpu_milli > 1000 => {
                return Err(t.error(
                    row,
                    "gpu_milli",
                    format!("{gpu_milli} is not a share of one GPU (1 to 1000)"),
                ));
            }
            1 => gpu_milli as u32,
            n => u32::try_from(n.saturating_mul(1000))
                .map_err(|_| t.error(row, "num_gpu", format!("{n} GPUs is too many")))?,
        };
        let creation = t.number(row, "creation_time")?;
        let deletion = t.optional(row, "deletion_time")?.unwrap_or(creation);
        let spec = t.cell(row, "gpu_spec")?;
        out.push(TraceTask {
            name: t.cell(row, "name")?.to_string(),
            cpu_milli: t.number(row, "cpu_milli")?,
            memory_mib: t.number(row, "memory_mib")?,
            gpu_milli: milli,
            gpu_spec: match spec {
                "" | "nan" | "NaN" => Vec::new(),
                s => s.split('|').map(|m| m.trim().to_string()).collect(),
            },
            qos: t.cell(row, "qos")?.to_string(),
            creation,
            deletion,
            scheduled: t.optional(row, "scheduled_time")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
        openb-node-0000,32000,262144,0,\n\
        openb-node-0228,128000,786432,8,G3\n";

    #[test]
    fn nodes_and_tasks_read() {
        let nodes = parse_nodes("nodes.csv", NODES).unwrap();
        assert_eq!(nodes[0].model, None);
        assert_eq!((nodes[1].gpus, nodes[1].model.as_deref()), (8, Some("G3")));
        let tasks = parse_tasks(
            "pods.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n\
             p0,88000,327680,8,1000,,Burstable,Succeeded,9437497,10769854,9437497\n\
             p1,4000,15258,1,220,,BE,Running,9679175,9973826,9679175\n\
             p2,16000,32768,1,1000,V100M16|V100M32,LS,Pending,9967058,9968575,\n",
        )
        .unwrap();
        assert_eq!(tasks[0].gpu_milli, 8000);
        assert_eq!(tasks[1].gpu_milli, 220);
        assert_eq!(tasks[2].gpu_spec, ["V100M16", "V100M32"]);
        assert_eq!(tasks[2].scheduled, None);
        assert_eq!(tasks[1].duration(), 9973826 - 9679175);
    }

    #[test]
    fn bad_cells_name_file_line_and_column() {
        let e = parse_nodes(
            "nodes.csv",
            "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,262144,0,\nn1,lots,1,0,\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes.csv:3: column cpu_milli: \"lots\" is not a whole number of 0 or more"
        );
        let e = parse_nodes("nodes.csv", "sn,cpu_milli,memory_mib,gpu\n").unwrap_err();
        assert_eq!((e.line, e.column.as_str()), (1, "model"));
        let e = parse_nodes(
            "nodes.csv",
            "sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,2,\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes.csv:2: column model: the node has 2 GPUs but no model"
        );
        let e = parse_tasks(
            "pods.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,scheduled_time\n\
             p0,1000,1024,1,1500,,LS,0,10,0\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pods.csv:2: column gpu_milli: 1500 is not a share of one GPU (1 to 1000)"
        );
        let e = parse_tasks(
            "pods.csv",
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,creation_time,deletion_time,scheduled_time\n\
             p0,1000,1024,0,0,,LS,-5,10,0\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column.as_str()), (2, "creation_time"));
    }
}
