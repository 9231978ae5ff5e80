//! RVTools exports: the XLSX workbook ([`Xlsx`], read with calamine) and the CSV files it
//! also writes, one per sheet ([`CsvExport`]). Both become [`Table`]s, which one
//! interpreter ([`interpret`]) turns into VMs.
//!
//! What real exports do that this reader expects (each has a test):
//! - two column generations: `Provisioned MiB`, `In Use MiB`, `Capacity MiB` (RVTools 4.x
//!   and later) and `Provisioned MB`, `In Use MB`, `In use MB`, `Capacity MB` (older);
//!   headers in any case and spacing (they are normalized: [`crate::table::normalize`]);
//! - only one of `OS according to the configuration file` and `OS according to the
//!   VMware Tools`;
//! - rows that end early (missing cells are empty);
//! - templates and SRM placeholders (skipped unless asked);
//! - sheets whose declared range (`<dimension ref="A1:BZ1048576">`) claims a million rows:
//!   cells are streamed, so only rows that hold data exist;
//! - sheets of a newer or older RVTools than this reader knows: unknown sheets and
//!   columns are ignored, a missing optional sheet leaves its facts unknown.
//!
//! Child sheets (vDisk, vNetwork, ...) are joined to vInfo rows by `VM UUID` when both
//! have it, else by VM name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use api::migrate::{
    GuestOs, Utilization, VirtualMachineSpec, VmDisk, VmNic, VmPartition, VmSnapshot, VmSource,
    VmTools,
};

use crate::source::{
    ImportOptions, Inventory, Issue, Location, Severity, Source, SourceError, base_name,
};
use crate::table::{Cell, Row, Table, boolean, number, text};

/// The sheets read, by normalized name.
const SHEETS: &[&str] = &[
    "vinfo",
    "vcpu",
    "vmemory",
    "vdisk",
    "vpartition",
    "vnetwork",
    "vhost",
    "vsnapshot",
    "vtools",
    "vusb",
];

/// An RVTools XLSX workbook.
pub struct Xlsx {
    path: PathBuf,
}

impl Xlsx {
    pub fn new(path: &Path) -> Self {
        Xlsx {
            path: path.to_path_buf(),
        }
    }
}

impl Source for Xlsx {
    fn kind(&self) -> &'static str {
        "rvtools"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self, options: &ImportOptions) -> Result<Inventory, SourceError> {
        let file = base_name(&self.path);
        let tables = read_xlsx(&self.path, &file)?;
        Ok(interpret(&file, "rvtools", &tables, options))
    }
}

/// Reads the known sheets of a workbook into tables, streaming cells (never the declared
/// range).
pub fn read_xlsx(path: &Path, file: &str) -> Result<Vec<Table>, SourceError> {
    use calamine::{DataRef, Reader, Xlsx as Workbook, open_workbook};

    let mut workbook: Workbook<_> = open_workbook(path).map_err(|e: calamine::XlsxError| {
        SourceError::invalid(
            Location::file(file),
            format!("not a readable XLSX workbook ({e}); export it again from RVTools, or pass its CSV export"),
        )
    })?;
    let names: Vec<String> = workbook.sheet_names();
    let mut tables = Vec::new();
    for name in names {
        let key = crate::table::normalize(&name);
        if !SHEETS.contains(&key.as_str()) {
            continue;
        }
        let mut reader = workbook.worksheet_cells_reader(&name).map_err(|e| {
            SourceError::invalid(
                Location {
                    sheet: Some(name.clone()),
                    ..Location::file(file)
                },
                format!("cannot read the sheet: {e}"),
            )
        })?;
        let mut rows: BTreeMap<u32, Vec<Cell>> = BTreeMap::new();
        loop {
            let cell = match reader.next_cell() {
                Ok(Some(cell)) => cell,
                Ok(None) => break,
                Err(e) => {
                    return Err(SourceError::invalid(
                        Location {
                            sheet: Some(name.clone()),
                            ..Location::file(file)
                        },
                        format!("the sheet is damaged: {e}; export it again"),
                    ));
                }
            };
            let value = match cell.get_value() {
                DataRef::Empty => continue,
                DataRef::String(s) => Cell::Text(s.clone()),
                DataRef::SharedString(s) => Cell::Text((*s).to_string()),
                DataRef::Float(f) => Cell::Number(*f),
                DataRef::Int(i) => Cell::Number(*i as f64),
                DataRef::Bool(b) => Cell::Bool(*b),
                DataRef::DateTime(d) => Cell::Text(excel_date(d.as_f64())),
                DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
                DataRef::Error(_) => continue,
            };
            let (row, col) = cell.get_position();
            let cells = rows.entry(row).or_default();
            let col = col as usize;
            if cells.len() <= col {
                cells.resize(col + 1, Cell::Empty);
            }
            cells[col] = value;
        }
        let rows = rows.into_iter().map(|(number, cells)| Row {
            number: number as usize + 1,
            cells,
        });
        if let Some(table) = Table::from_rows(file, &name, rows, true) {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// An Excel serial date (days since 1899-12-30) as RFC 3339 UTC.
fn excel_date(serial: f64) -> String {
    let days = serial.floor() as i64;
    let secs = ((serial - serial.floor()) * 86_400.0).round() as i64;
    // 1970-01-01 is serial 25569.
    let z = days - 25_569 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// An RVTools CSV export: one file per sheet (`RVTools_tabvInfo.csv`, `vDisk.csv`...).
pub struct CsvExport {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl CsvExport {
    pub fn new(dir: PathBuf, files: Vec<PathBuf>) -> Self {
        CsvExport { dir, files }
    }
}

impl Source for CsvExport {
    fn kind(&self) -> &'static str {
        "rvtools-csv"
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn read(&self, options: &ImportOptions) -> Result<Inventory, SourceError> {
        let mut tables = Vec::new();
        let mut issues = Vec::new();
        for path in &self.files {
            let file = base_name(path);
            let stem = path
                .file_stem()
                .map(|s| crate::table::normalize(&s.to_string_lossy()))
                .unwrap_or_default();
            let Some(sheet) = SHEETS
                .iter()
                .filter(|s| stem.ends_with(*s))
                .max_by_key(|s| s.len())
            else {
                issues.push(Issue {
                    severity: Severity::Warning,
                    at: Location::file(&file),
                    message: "not an RVTools sheet this reader knows (its name should end in vInfo, vCPU, vMemory, vDisk, vPartition, vNetwork, vHost, vSnapshot, vTools or vUSB); ignored".into(),
                });
                continue;
            };
            let sheet_name = SHEET_TITLES
                .iter()
                .find(|(k, _)| k == sheet)
                .map_or(*sheet, |(_, t)| *t);
            match read_csv(path, &file, sheet_name) {
                Ok(Some(t)) => tables.push(t),
                Ok(None) => {}
                Err(e) => issues.push(Issue {
                    severity: Severity::Error,
                    at: Location::file(&file),
                    message: format!("{e}; nothing was read from this file"),
                }),
            }
        }
        let file = base_name(&self.dir);
        if !tables
            .iter()
            .any(|t| crate::table::normalize(&t.sheet) == "vinfo")
        {
            return Err(SourceError::invalid(
                Location::file(file),
                "no vInfo CSV file among the inputs: the VMs are listed there; pass it with the other sheets",
            ));
        }
        let mut inventory = interpret(&file, "rvtools-csv", &tables, options);
        inventory.issues.splice(0..0, issues);
        Ok(inventory)
    }
}

const SHEET_TITLES: &[(&str, &str)] = &[
    ("vinfo", "vInfo"),
    ("vcpu", "vCPU"),
    ("vmemory", "vMemory"),
    ("vdisk", "vDisk"),
    ("vpartition", "vPartition"),
    ("vnetwork", "vNetwork"),
    ("vhost", "vHost"),
    ("vsnapshot", "vSnapshot"),
    ("vtools", "vTools"),
    ("vusb", "vUSB"),
];

/// One CSV file as a table; the delimiter (`,` `;` or tab) is sniffed from the header line.
fn read_csv(path: &Path, file: &str, sheet: &str) -> Result<Option<Table>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first_line.iter().filter(|b| **b == d).count();
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| count(*d))
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes.as_slice());
    let mut rows = Vec::new();
    for (i, record) in reader.byte_records().enumerate() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: not valid CSV: {e}", p.line()),
            None => format!("not valid CSV: {e}"),
        })?;
        let line = record.position().map_or(i + 1, |p| p.line() as usize);
        let cells = record
            .iter()
            .map(|field| {
                let text = String::from_utf8_lossy(field);
                let text = text.trim();
                if text.is_empty() {
                    Cell::Empty
                } else {
                    Cell::Text(text.to_string())
                }
            })
            .collect();
        rows.push(Row {
            number: line,
            cells,
        });
    }
    Ok(Table::from_rows(file, sheet, rows, false))
}

// ---------------------------------------------------------------------------------------
// Interpretation

/// Column aliases, normalized. Both generations and the names older exports used.
mod col {
    pub const VM: &[&str] = &["vm", "vmname", "name"];
    pub const UUID: &[&str] = &["vmuuid", "smbiosuuid", "uuid", "biosuuid", "instanceuuid"];
    pub const VM_ID: &[&str] = &["vmid"];
    pub const POWER: &[&str] = &["powerstate"];
    pub const TEMPLATE: &[&str] = &["template"];
    pub const SRM: &[&str] = &["srmplaceholder"];
    pub const CPUS: &[&str] = &["cpus", "numcpu", "vcpus", "cpu"];
    pub const MEMORY: &[&str] = &["memory", "memorymib", "memorymb", "sizemib", "sizemb"];
    pub const PROVISIONED: &[&str] = &["provisionedmib", "provisionedmb"];
    pub const TOTAL_DISK: &[&str] = &["totaldiskcapacitymib", "totaldiskcapacitymb"];
    pub const OS_CONFIG: &[&str] = &["osaccordingtotheconfigurationfile", "guestos"];
    pub const OS_TOOLS: &[&str] = &["osaccordingtothevmwaretools"];
    pub const DATACENTER: &[&str] = &["datacenter"];
    pub const CLUSTER: &[&str] = &["cluster"];
    pub const HOST: &[&str] = &["host"];
    pub const FOLDER: &[&str] = &["folder"];
    pub const RESOURCE_POOL: &[&str] = &["resourcepool"];
    pub const VAPP: &[&str] = &["vapp"];
    pub const VCENTER: &[&str] = &["visdkserver", "vcenter", "vcenterserver"];
    pub const FIRMWARE: &[&str] = &["firmware"];
    pub const SECURE_BOOT: &[&str] = &["efisecureboot", "secureboot"];
    pub const TPM: &[&str] = &["vtpm", "tpm"];
    pub const CBT: &[&str] = &["cbt", "changedblocktracking"];
    pub const HW_VERSION: &[&str] = &["hwversion", "hardwareversion", "vmversion"];
    pub const ANNOTATION: &[&str] = &["annotation", "notes"];
    pub const DNS: &[&str] = &["dnsname"];
    pub const PASSTHROUGH: &[&str] = &["pcipassthrough", "passthrough", "pcidevices"];
    pub const TAGS: &[&str] = &["tags", "tag"];
    pub const AFFINITY: &[&str] = &["affinityrules", "drsrules", "drsaffinityrules"];
    pub const CORES: &[&str] = &["coresps", "corespersocket"];
    pub const HOT_ADD: &[&str] = &["hotadd"];
    pub const OVERALL: &[&str] = &["overall"];
    pub const MAX: &[&str] = &["max"];
    pub const ACTIVE: &[&str] = &["active"];
    pub const DISK: &[&str] = &["disk", "label"];
    pub const CAPACITY: &[&str] = &["capacitymib", "capacitymb"];
    pub const DISK_MODE: &[&str] = &["diskmode"];
    pub const SHARING: &[&str] = &["sharingmode", "sharing"];
    pub const THIN: &[&str] = &["thin"];
    pub const RAW: &[&str] = &["raw"];
    pub const RAW_MODE: &[&str] = &["rawcompmode", "rawcompatibilitymode"];
    pub const DISK_PATH: &[&str] = &["path", "diskpath"];
    pub const CONTROLLER: &[&str] = &["controller"];
    pub const FREE: &[&str] = &["freemib", "freemb"];
    pub const NIC: &[&str] = &["niclabel", "nic"];
    pub const ADAPTER: &[&str] = &["adapter"];
    pub const NETWORK: &[&str] = &["network"];
    pub const CONNECTED: &[&str] = &["connected"];
    pub const MAC: &[&str] = &["macaddress", "mac"];
    pub const IP: &[&str] = &["ipv4address", "ipaddress", "primaryipaddress"];
    pub const SNAPSHOT: &[&str] = &["name", "snapshot"];
    pub const SNAP_DATE: &[&str] = &["datetime", "date", "created"];
    pub const SNAP_SIZE: &[&str] = &[
        "sizemibtotal",
        "sizembtotal",
        "sizemibvmsn",
        "sizembvmsn",
        "sizemib",
        "sizemb",
    ];
    pub const TOOLS: &[&str] = &["tools", "toolsstatus"];
    pub const TOOLS_VERSION: &[&str] = &["toolsversion"];
}

/// Index of the VMs built so far: by lowercase UUID and by name (names may repeat).
struct Index {
    by_uuid: HashMap<String, usize>,
    by_name: HashMap<String, Vec<usize>>,
    skipped_uuids: HashSet<String>,
    skipped_names: HashSet<String>,
}

impl Index {
    fn find(
        &self,
        table: &Table,
        row: &Row,
        vm_col: Option<usize>,
        uuid_col: Option<usize>,
    ) -> Lookup {
        if let Some(uuid) = text(row, uuid_col).map(|u| u.to_ascii_lowercase()) {
            if let Some(i) = self.by_uuid.get(&uuid) {
                return Lookup::Found(*i);
            }
            if self.skipped_uuids.contains(&uuid) {
                return Lookup::Skipped;
            }
        }
        let Some(name) = text(row, vm_col) else {
            return Lookup::Missing(format!(
                "the row names no VM (column {} is empty); fill it in or delete the row",
                table
                    .at(row, vm_col)
                    .column
                    .unwrap_or_else(|| "VM".to_string())
            ));
        };
        match self.by_name.get(&name).map(Vec::as_slice) {
            Some([i]) => Lookup::Found(*i),
            Some(many) if many.len() > 1 => Lookup::Missing(format!(
                "VM {name:?} is not unique in vInfo and this row has no VM UUID to tell which; the row is ignored"
            )),
            _ if self.skipped_names.contains(&name) => Lookup::Skipped,
            _ => Lookup::Missing(format!(
                "VM {name:?} is not in vInfo (or its vInfo row was refused); the row is ignored"
            )),
        }
    }
}

enum Lookup {
    Found(usize),
    Skipped,
    Missing(String),
}

/// Turns the tables of one export into VMs; `file` names the export in messages.
pub fn interpret(file: &str, kind: &str, tables: &[Table], options: &ImportOptions) -> Inventory {
    let mut inventory = Inventory::default();
    let sheet = |name: &str| {
        tables
            .iter()
            .find(|t| crate::table::normalize(&t.sheet) == name)
    };
    for t in tables {
        inventory.read.push((t.sheet.clone(), t.rows.len()));
    }
    let Some(info) = sheet("vinfo") else {
        inventory.issues.push(Issue {
            severity: Severity::Error,
            at: Location::file(file),
            message: "no vInfo sheet: it lists the VMs; export with RVTools' default sheets (or include vInfo)".into(),
        });
        return inventory;
    };
    let mut index = Index {
        by_uuid: HashMap::new(),
        by_name: HashMap::new(),
        skipped_uuids: HashSet::new(),
        skipped_names: HashSet::new(),
    };
    read_info(file, kind, info, options, &mut inventory, &mut index);
    if sheet("vdisk").is_some() {
        // vDisk lists the real disks; vInfo's total only stands in without it.
        for vm in &mut inventory.vms {
            vm.disks.clear();
        }
    }

    if let Some(t) = sheet("vcpu") {
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            if let Some(c) = uint(t, row, t.column(col::CORES), issues) {
                vm.cores_per_socket = Some(c as u32);
            }
            if let Some(h) = flag(t, row, t.column(col::HOT_ADD), issues) {
                vm.cpu_hot_add = Some(h);
            }
            let overall = num(t, row, t.column(col::OVERALL), issues);
            let max = num(t, row, t.column(col::MAX), issues);
            if let (Some(o), Some(m)) = (overall, max)
                && m > 0.0
            {
                let u = vm.utilization.get_or_insert_with(Utilization::default);
                // Two decimals: a figure that survives every JSON round trip unchanged.
                u.cpu_percent = Some(((o / m * 100.0).clamp(0.0, 100.0) * 100.0).round() / 100.0);
            }
        });
    }
    if let Some(t) = sheet("vmemory") {
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            if let Some(h) = flag(t, row, t.column(col::HOT_ADD), issues) {
                vm.memory_hot_add = Some(h);
            }
            if let Some(a) = uint(t, row, t.column(col::ACTIVE), issues) {
                vm.utilization
                    .get_or_insert_with(Utilization::default)
                    .memory_active_mib = Some(a);
            }
        });
    }
    if let Some(t) = sheet("vdisk") {
        let capacity = t.column(col::CAPACITY);
        if capacity.is_none() {
            inventory.issues.push(Issue {
                severity: Severity::Warning,
                at: Location {
                    sheet: Some(t.sheet.clone()),
                    ..Location::file(file)
                },
                message: "no Capacity MiB (or Capacity MB) column: disk sizes are unknown".into(),
            });
        }
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            let raw = flag(t, row, t.column(col::RAW), issues).unwrap_or(false);
            let rdm = if raw {
                Some(
                    text(row, t.column(col::RAW_MODE))
                        .map(|m| {
                            if m.to_ascii_lowercase().contains("phys") {
                                "physical".to_string()
                            } else {
                                "virtual".to_string()
                            }
                        })
                        .unwrap_or_else(|| "virtual".to_string()),
                )
            } else {
                None
            };
            let label = text(row, t.column(col::DISK))
                .unwrap_or_else(|| format!("Hard disk {}", vm.disks.len() + 1));
            vm.disks.push(VmDisk {
                label,
                capacity_mib: uint(t, row, capacity, issues).unwrap_or(0),
                path: text(row, t.column(col::DISK_PATH)),
                thin: flag(t, row, t.column(col::THIN), issues),
                mode: text(row, t.column(col::DISK_MODE)),
                sharing: text(row, t.column(col::SHARING)),
                rdm,
                controller: text(row, t.column(col::CONTROLLER)),
                format: None,
            });
        });
    }
    if let Some(t) = sheet("vpartition") {
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            vm.partitions.push(VmPartition {
                path: text(row, t.column(col::DISK)).unwrap_or_default(),
                capacity_mib: uint(t, row, t.column(col::CAPACITY), issues).unwrap_or(0),
                free_mib: uint(t, row, t.column(col::FREE), issues).unwrap_or(0),
            });
        });
    }
    if let Some(t) = sheet("vnetwork") {
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            let adapter = text(row, t.column(col::ADAPTER));
            if let Some(a) = &adapter {
                let l = a.to_ascii_lowercase().replace(['-', ' '], "");
                if l.contains("sriov") || l.contains("passthrough") || l.contains("pcipassthru") {
                    vm.passthrough.push(format!("network adapter {a}"));
                }
            }
            vm.nics.push(VmNic {
                label: text(row, t.column(col::NIC))
                    .unwrap_or_else(|| format!("Network adapter {}", vm.nics.len() + 1)),
                network: text(row, t.column(col::NETWORK)),
                adapter,
                mac: text(row, t.column(col::MAC)),
                connected: flag(t, row, t.column(col::CONNECTED), issues),
                ip_address: text(row, t.column(col::IP)),
            });
        });
    }
    if let Some(t) = sheet("vsnapshot") {
        for_rows(t, &index, &mut inventory, |vm, row, issues| {
            vm.snapshots.push(VmSnapshot {
                name: text(row, t.column(col::SNAPSHOT)).unwrap_or_else(|| "snapshot".into()),
                created: text(row, t.column(col::SNAP_DATE)),
                size_mib: uint(t, row, t.column(col::SNAP_SIZE), issues),
            });
        });
    }
    if let Some(t) = sheet("vtools") {
        for_rows(t, &index, &mut inventory, |vm, row, _| {
            let tools = vm.tools.get_or_insert_with(VmTools::default);
            tools.status = text(row, t.column(col::TOOLS)).or(tools.status.take());
            tools.version = text(row, t.column(col::TOOLS_VERSION)).or(tools.version.take());
        });
    }
    if let Some(t) = sheet("vusb") {
        for_rows(t, &index, &mut inventory, |vm, _, _| vm.usb = Some(true));
    }
    if sheet("vusb").is_some() {
        for vm in &mut inventory.vms {
            vm.usb.get_or_insert(false);
        }
    }
    inventory
}

/// Reads vInfo: one VM per row, unless the row is a template or SRM placeholder or is
/// refused (no name, no identity, a bad number).
fn read_info(
    file: &str,
    kind: &str,
    t: &Table,
    options: &ImportOptions,
    inventory: &mut Inventory,
    index: &mut Index,
) {
    let c = |names: &[&str]| t.column(names);
    let (vm_col, uuid_col, id_col) = (c(col::VM), c(col::UUID), c(col::VM_ID));
    if vm_col.is_none() {
        inventory.issues.push(Issue {
            severity: Severity::Error,
            at: Location {
                sheet: Some(t.sheet.clone()),
                row: Some(1),
                ..Location::file(file)
            },
            message: "no VM column in the header row: is this an RVTools vInfo sheet?".into(),
        });
        return;
    }
    if uuid_col.is_none() {
        inventory.issues.push(Issue {
            severity: Severity::Warning,
            at: Location {
                sheet: Some(t.sheet.clone()),
                row: Some(1),
                ..Location::file(file)
            },
            message: "no VM UUID column: VMs are identified by vCenter and VM ID (or name) instead, so a re-import after a rename creates new objects; export with a newer RVTools".into(),
        });
    }
    let (cpus_col, mem_col) = (c(col::CPUS), c(col::MEMORY));
    let total_col = c(col::TOTAL_DISK).or(c(col::PROVISIONED));
    for row in &t.rows {
        let mut issues = Vec::new();
        let Some(name) = text(row, vm_col) else {
            inventory.issues.push(t.issue(
                Severity::Error,
                row,
                vm_col,
                "no VM name; fill it in or delete the row",
            ));
            continue;
        };
        let template = flag(t, row, c(col::TEMPLATE), &mut issues).unwrap_or(false);
        let srm = flag(t, row, c(col::SRM), &mut issues).unwrap_or(false)
            || text(row, c(col::SRM)).is_some_and(|s| s.eq_ignore_ascii_case("placeholder"));
        let vcenter = text(row, c(col::VCENTER));
        let uuid = text(row, uuid_col).or_else(|| {
            text(row, id_col).map(|id| match &vcenter {
                Some(v) => format!("{v}-{id}"),
                None => id,
            })
        });
        let uuid = match uuid {
            Some(u) => u,
            None if uuid_col.is_none() => match &vcenter {
                Some(v) => format!("{v}-{name}"),
                None => name.clone(),
            },
            None => {
                inventory.issues.push(t.issue(
                    Severity::Error,
                    row,
                    uuid_col,
                    format!("VM {name:?} has no UUID, its identity across imports; the row is refused (fill in the UUID from vCenter)"),
                ));
                continue;
            }
        };
        if (template || srm) && !options.include_templates {
            inventory.skipped_templates += 1;
            index.skipped_uuids.insert(uuid.to_ascii_lowercase());
            index.skipped_names.insert(name);
            continue;
        }
        let cpus = uint(t, row, cpus_col, &mut issues);
        let memory = uint(t, row, mem_col, &mut issues);
        let (Some(cpus), Some(memory)) = (cpus, memory) else {
            if issues.iter().all(|i| i.severity != Severity::Error) {
                let missing = if cpus.is_none() { cpus_col } else { mem_col };
                issues.push(t.issue(
                    Severity::Error,
                    row,
                    missing,
                    format!("VM {name:?}: CPUs and Memory are required; the row is refused"),
                ));
            }
            for i in &mut issues {
                if i.severity == Severity::Error && !i.message.contains("refused") {
                    i.message.push_str("; the row is refused");
                }
            }
            inventory.issues.extend(issues);
            continue;
        };
        let key = uuid.to_ascii_lowercase();
        if index.by_uuid.contains_key(&key) {
            inventory.issues.push(t.issue(
                Severity::Error,
                row,
                uuid_col,
                format!("VM {name:?} has the UUID {uuid} of an earlier row (a clone keeps its BIOS UUID); give it a new UUID in vCenter; this row is refused"),
            ));
            continue;
        }
        let os = GuestOs {
            configured: text(row, c(col::OS_CONFIG)),
            tools: text(row, c(col::OS_TOOLS)),
            family: None,
        };
        let family = os_family(os.tools.as_deref().or(os.configured.as_deref()));
        let firmware = text(row, c(col::FIRMWARE)).map(|f| f.to_ascii_lowercase());
        let provisioned = uint(t, row, total_col, &mut issues);
        let mut vm = VirtualMachineSpec {
            uuid,
            name: name.clone(),
            source: VmSource {
                kind: kind.to_string(),
                file: Some(file.to_string()),
                vcenter,
                datacenter: text(row, c(col::DATACENTER)),
                cluster: text(row, c(col::CLUSTER)),
                host: text(row, c(col::HOST)),
                folder: text(row, c(col::FOLDER)),
                resource_pool: text(row, c(col::RESOURCE_POOL)),
                vapp: text(row, c(col::VAPP)),
            },
            power_state: text(row, c(col::POWER)),
            template: template || srm,
            cpus: cpus as u32,
            memory_mib: memory,
            os: GuestOs {
                family: family.map(str::to_string),
                ..os
            },
            firmware,
            secure_boot: flag(t, row, c(col::SECURE_BOOT), &mut issues),
            tpm: flag(t, row, c(col::TPM), &mut issues),
            hardware_version: text(row, c(col::HW_VERSION)),
            cbt: flag(t, row, c(col::CBT), &mut issues),
            annotation: text(row, c(col::ANNOTATION)),
            dns_name: text(row, c(col::DNS)),
            passthrough: text(row, c(col::PASSTHROUGH))
                .filter(|p| {
                    !matches!(
                        p.to_ascii_lowercase().as_str(),
                        "false" | "no" | "none" | "0"
                    )
                })
                .into_iter()
                .collect(),
            affinity_rules: text(row, c(col::AFFINITY))
                .map(|a| {
                    a.split([';', ','])
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            tags: text(row, c(col::TAGS))
                .map(|s| parse_tags(&s))
                .unwrap_or_default(),
            ..Default::default()
        };
        if let Some(total) = provisioned {
            // Sized again from vDisk when that sheet is present.
            vm.disks.push(VmDisk {
                label: "Total (vInfo)".into(),
                capacity_mib: total,
                ..Default::default()
            });
        }
        inventory.issues.extend(issues);
        let i = inventory.vms.len();
        index.by_uuid.insert(key, i);
        index.by_name.entry(name).or_default().push(i);
        inventory.vms.push(vm);
    }
}

/// `Owner=finance; Env=prod` or `finance/prod, pci` → a map (a bare tag maps to `""`;
/// `Category/Tag` to category → tag).
fn parse_tags(s: &str) -> BTreeMap<String, String> {
    s.split([';', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(['=', ':', '/']) {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (t.to_string(), String::new()),
        })
        .collect()
}

/// `windows`, `linux` or `other` from a guest OS description.
pub fn os_family(os: Option<&str>) -> Option<&'static str> {
    let os = os?.to_ascii_lowercase();
    if os.contains("windows") {
        return Some("windows");
    }
    const LINUX: &[&str] = &[
        "linux", "red hat", "rhel", "centos", "ubuntu", "debian", "suse", "sles", "oracle",
        "rocky", "alma", "photon", "fedora", "coreos",
    ];
    if LINUX.iter().any(|l| os.contains(l)) {
        Some("linux")
    } else {
        Some("other")
    }
}

/// Applies `f` to the VM of each row of a child sheet, reporting rows that name no known VM.
fn for_rows(
    t: &Table,
    index: &Index,
    inventory: &mut Inventory,
    mut f: impl FnMut(&mut VirtualMachineSpec, &Row, &mut Vec<Issue>),
) {
    let (vm_col, uuid_col) = (t.column(col::VM), t.column(col::UUID));
    let mut issues = Vec::new();
    for row in &t.rows {
        match index.find(t, row, vm_col, uuid_col) {
            Lookup::Found(i) => f(&mut inventory.vms[i], row, &mut issues),
            Lookup::Skipped => {}
            Lookup::Missing(message) => {
                issues.push(t.issue(Severity::Warning, row, vm_col, message));
            }
        }
    }
    inventory.issues.extend(issues);
}

fn num(t: &Table, row: &Row, column: Option<usize>, issues: &mut Vec<Issue>) -> Option<f64> {
    match number(row, column) {
        Ok(n) => n,
        Err(e) => {
            issues.push(t.issue(Severity::Error, row, column, format!("{e}; write a number")));
            None
        }
    }
}

fn uint(t: &Table, row: &Row, column: Option<usize>, issues: &mut Vec<Issue>) -> Option<u64> {
    let n = num(t, row, column, issues)?;
    if n < 0.0 || !n.is_finite() {
        issues.push(t.issue(
            Severity::Error,
            row,
            column,
            format!("{n} is negative; write a size or count of 0 or more"),
        ));
        return None;
    }
    Some(n.round() as u64)
}

fn flag(t: &Table, row: &Row, column: Option<usize>, issues: &mut Vec<Issue>) -> Option<bool> {
    match boolean(row, column) {
        Ok(b) => b,
        Err(e) => {
            issues.push(t.issue(
                Severity::Warning,
                row,
                column,
                format!("{e}; the value is treated as unknown"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_dates() {
        assert_eq!(excel_date(45_000.5), "2023-03-15T12:00:00Z");
        assert_eq!(excel_date(25_569.0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn tags() {
        let t = parse_tags("Owner=finance; Env:prod, pci");
        assert_eq!(t["Owner"], "finance");
        assert_eq!(t["Env"], "prod");
        assert_eq!(t["pci"], "");
    }
}
