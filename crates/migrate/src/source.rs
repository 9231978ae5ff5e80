//! The source-plugin seam: every inventory source (an RVTools export, an OVF descriptor,
//! later a live vSphere collector) is a [`Source`] that yields normalized
//! [`VirtualMachineSpec`]s and the problems it met, never aborting on one bad row.

use std::fmt;
use std::path::{Path, PathBuf};

use api::migrate::VirtualMachineSpec;

/// What an import may skip or keep.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Keep templates and SRM placeholders (skipped by default: they never run).
    pub include_templates: bool,
    /// OVF: the DeploymentOptionSection configuration to use (default: the one marked
    /// `ovf:default`, else the first).
    pub deployment_option: Option<String>,
}

/// Where in an input a problem is: file, then sheet and row (spreadsheets, CSV) or line
/// (XML), then column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub sheet: Option<String>,
    /// 1-based, as a spreadsheet or an editor shows it.
    pub row: Option<usize>,
    /// A spreadsheet column (`AB (Provisioned MiB)`) or an XML column number.
    pub column: Option<String>,
    /// XML: 1-based line.
    pub line: Option<u32>,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Self {
        Location {
            file: file.into(),
            ..Default::default()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(sheet) = &self.sheet {
            write!(f, ", sheet {sheet}")?;
        }
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(column) = &self.column {
            if self.line.is_some() {
                write!(f, ":{column}")?;
            } else {
                write!(f, ", column {column}")?;
            }
        }
        Ok(())
    }
}

/// How bad a problem is: an `Error` dropped a row or a file, a `Warning` kept it with
/// something missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem met while importing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub at: Location,
    /// What was wrong and what to do.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {what}: {}", self.at, self.message)
    }
}

/// What a source found.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub vms: Vec<VirtualMachineSpec>,
    pub issues: Vec<Issue>,
    /// Templates and SRM placeholders left out (see [`ImportOptions::include_templates`]).
    pub skipped_templates: usize,
    /// Per sheet or section: how many rows were read (for the summary).
    pub read: Vec<(String, usize)>,
}

impl Inventory {
    pub fn errors(&self) -> usize {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count()
    }

    /// Adds another inventory's VMs and issues; a VM whose UUID is already present is
    /// reported and the first one kept.
    pub fn merge(&mut self, other: Inventory) {
        let mut seen: std::collections::HashSet<String> = self
            .vms
            .iter()
            .map(|v| v.uuid.to_ascii_lowercase())
            .collect();
        for vm in other.vms {
            if seen.insert(vm.uuid.to_ascii_lowercase()) {
                self.vms.push(vm);
            } else {
                self.issues.push(Issue {
                    severity: Severity::Warning,
                    at: Location::file(vm.source.file.clone().unwrap_or_default()),
                    message: format!(
                        "VM {:?} (UUID {}) was already imported from another input; the first one is kept",
                        vm.name, vm.uuid
                    ),
                });
            }
        }
        self.issues.extend(other.issues);
        self.skipped_templates += other.skipped_templates;
        self.read.extend(other.read);
    }
}

/// A whole input that could not be read at all (the file, not a row).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

impl SourceError {
    pub(crate) fn invalid(at: Location, message: impl Into<String>) -> Self {
        SourceError::Invalid {
            at,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SourceError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A source of VM facts. Implement it for a new source (a live vSphere inventory, a
/// Hyper-V or Nutanix export); `meridian migrate import` and the rest of the crate only see
/// this trait and the [`Inventory`] it yields.
pub trait Source {
    /// `rvtools`, `rvtools-csv`, `ovf`, `ova`, `vsphere`.
    fn kind(&self) -> &'static str;
    /// What it reads, for messages (`estate.xlsx`, `vcenter.example.com`).
    fn describe(&self) -> String;
    /// Reads the VMs. Bad rows become [`Issue`]s; only an input that cannot be read at all
    /// is an error.
    fn read(&self, options: &ImportOptions) -> Result<Inventory, SourceError>;
}

/// The sources for some paths, by extension: `.xlsx` (RVTools), `.csv` (RVTools CSV, one
/// file per sheet: the files of one export are grouped by directory), `.ovf`, `.ova`; a
/// directory holding RVTools CSV files is one source.
pub fn sources_for(paths: &[PathBuf]) -> Result<Vec<Box<dyn Source>>, SourceError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut csv_groups: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| SourceError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| extension(p) == "csv")
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SourceError::invalid(
                    Location::file(path.display().to_string()),
                    "the directory holds no .csv file; pass RVTools CSV exports, an .xlsx, .ovf or .ova file",
                ));
            }
            csv_groups.push((path.clone(), files));
            continue;
        }
        match extension(path).as_str() {
            "xlsx" | "xlsm" => sources.push(Box::new(crate::rvtools::Xlsx::new(path))),
            "csv" => {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                match csv_groups.iter_mut().find(|(d, _)| *d == dir) {
                    Some((_, files)) => files.push(path.clone()),
                    None => csv_groups.push((dir, vec![path.clone()])),
                }
            }
            "ovf" => sources.push(Box::new(crate::ovf::OvfFile::new(path))),
            "ova" => sources.push(Box::new(crate::ovf::OvaFile::new(path))),
            other => {
                return Err(SourceError::invalid(
                    Location::file(path.display().to_string()),
                    format!(
                        "unknown input type {other:?}: pass an RVTools export (.xlsx, or .csv files/a directory of them), an OVF descriptor (.ovf) or an OVA archive (.ova)"
                    ),
                ));
            }
        }
    }
    for (dir, files) in csv_groups {
        sources.push(Box::new(crate::rvtools::CsvExport::new(dir, files)));
    }
    Ok(sources)
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Reads every source and merges what they found; a source that cannot be read at all is
/// an error issue, the others still import.
pub fn read_all(sources: &[Box<dyn Source>], options: &ImportOptions) -> Inventory {
    let mut inventory = Inventory::default();
    for source in sources {
        match source.read(options) {
            Ok(found) => inventory.merge(found),
            Err(e) => inventory.issues.push(Issue {
                severity: Severity::Error,
                at: match &e {
                    SourceError::Invalid { at, .. } => at.clone(),
                    SourceError::Io { path, .. } => Location::file(path.clone()),
                },
                message: match e {
                    SourceError::Invalid { message, .. } => {
                        format!("{message}; nothing was imported from it")
                    }
                    SourceError::Io { source, .. } => {
                        format!("cannot read it: {source}; nothing was imported from it")
                    }
                },
            }),
        }
    }
    inventory
}

/// `file.xlsx` from a path, for locations.
pub(crate) fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
