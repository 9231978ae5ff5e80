//! The fixed tables the generators draw from: provider regions and private data centres
//! with their jurisdiction, operator and certifications; node shapes; GPU models; grid
//! carbon intensity per country; projects with their allowed locations.
//!
//! Figures are illustrative list prices and published grid averages, rounded; they make
//! the fleet heterogeneous in the ways placement cares about, not a price list.

/// What kind of place a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A public cloud region (hyperscaler or European provider).
    Cloud,
    /// A data centre of the estate's own (bare metal).
    Onprem,
    /// A vSphere cluster in one of the estate's data centres.
    Vmware,
    /// A branch or store: a few small hosts.
    Edge,
}

/// A place a site can be: a provider's region or one of the estate's data centres.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub provider: &'static str,
    pub region: &'static str,
    /// ISO 3166-1 alpha-2 code of where the hardware is.
    pub country: &'static str,
    pub operator: &'static str,
    /// Home jurisdiction of the operator (or its parent): what strict sovereignty checks.
    pub operator_country: &'static str,
    /// Certifications beyond the provider's baseline.
    pub certs: &'static [&'static str],
    pub kind: Kind,
}

const AWS: &str = "Amazon Web Services, Inc.";
const AZURE: &str = "Microsoft Corporation";
const GCP: &str = "Google LLC";
const OVH: &str = "OVH SAS";

const fn cloud(
    provider: &'static str,
    region: &'static str,
    country: &'static str,
    operator: &'static str,
    operator_country: &'static str,
    certs: &'static [&'static str],
) -> Region {
    Region {
        provider,
        region,
        country,
        operator,
        operator_country,
        certs,
        kind: Kind::Cloud,
    }
}

const fn own(
    kind: Kind,
    region: &'static str,
    country: &'static str,
    operator: &'static str,
    certs: &'static [&'static str],
) -> Region {
    Region {
        provider: match kind {
            Kind::Vmware => "vmware",
            Kind::Edge => "edge",
            _ => "onprem",
        },
        region,
        country,
        operator,
        operator_country: country,
        certs,
        kind,
    }
}

/// The 24 sites every fleet starts with: 24 jurisdictions, 7 providers, and US-operated
/// regions inside the EU next to EU-operated ones (so strict sovereignty matters).
pub(crate) const CORE: &[Region] = &[
    own(
        Kind::Onprem,
        "frankfurt",
        "DE",
        "Example Bank AG",
        &["C5", "TISAX"],
    ),
    cloud("azure", "westeurope", "NL", AZURE, "US", &["C5"]),
    cloud("aws", "us-east-1", "US", AWS, "US", &["FedRAMP"]),
    cloud("ovhcloud", "sbg", "FR", OVH, "FR", &["SecNumCloud", "HDS"]),
    own(
        Kind::Onprem,
        "zurich",
        "CH",
        "Example Bank (Schweiz) AG",
        &[],
    ),
    cloud("gcp", "europe-west1", "BE", GCP, "US", &[]),
    cloud("azure", "northeurope", "IE", AZURE, "US", &["C5"]),
    cloud("aws", "eu-north-1", "SE", AWS, "US", &[]),
    cloud("gcp", "europe-north1", "FI", GCP, "US", &[]),
    cloud("azure", "polandcentral", "PL", AZURE, "US", &[]),
    cloud("aws", "eu-south-1", "IT", AWS, "US", &[]),
    cloud("aws", "eu-south-2", "ES", AWS, "US", &["ENS"]),
    own(Kind::Onprem, "vienna", "AT", "Example Bank Austria AG", &[]),
    own(
        Kind::Onprem,
        "lisbon",
        "PT",
        "Example Bank Portugal SA",
        &[],
    ),
    own(Kind::Vmware, "prague", "CZ", "Example Bank CZ a.s.", &[]),
    cloud("upcloud", "dk-cph1", "DK", "UpCloud Oy", "FI", &[]),
    cloud("azure", "norwayeast", "NO", AZURE, "US", &[]),
    own(
        Kind::Onprem,
        "london",
        "GB",
        "Example Bank UK plc",
        &["PCI-DSS"],
    ),
    cloud("azure", "canadacentral", "CA", AZURE, "US", &[]),
    cloud("aws", "ap-northeast-1", "JP", AWS, "US", &["ISMAP"]),
    cloud("gcp", "asia-southeast1", "SG", GCP, "US", &["MTCS"]),
    cloud("azure", "australiaeast", "AU", AZURE, "US", &["IRAP"]),
    cloud("gcp", "asia-south1", "IN", GCP, "US", &[]),
    cloud("aws", "sa-east-1", "BR", AWS, "US", &[]),
];

/// Every other place a site can be, drawn from (in an order shuffled by the seed) once
/// the core sites are taken.
pub(crate) const MORE: &[Region] = &[
    // AWS
    cloud("aws", "us-west-2", "US", AWS, "US", &["FedRAMP"]),
    cloud("aws", "ca-central-1", "CA", AWS, "US", &[]),
    cloud("aws", "eu-central-1", "DE", AWS, "US", &["C5"]),
    cloud("aws", "eu-west-1", "IE", AWS, "US", &["C5"]),
    cloud(
        "aws",
        "eu-west-2",
        "GB",
        AWS,
        "US",
        &["CyberEssentialsPlus"],
    ),
    cloud("aws", "eu-west-3", "FR", AWS, "US", &["HDS"]),
    cloud("aws", "eu-central-2", "CH", AWS, "US", &[]),
    cloud("aws", "ap-southeast-1", "SG", AWS, "US", &["MTCS"]),
    cloud("aws", "ap-southeast-2", "AU", AWS, "US", &["IRAP"]),
    cloud("aws", "ap-south-1", "IN", AWS, "US", &[]),
    // The European Sovereign Cloud: a German operating company.
    cloud(
        "aws",
        "eusc-de-east-1",
        "DE",
        "AWS European Sovereign Cloud GmbH",
        "DE",
        &["C5"],
    ),
    // Azure
    cloud("azure", "germanywestcentral", "DE", AZURE, "US", &["C5"]),
    cloud("azure", "francecentral", "FR", AZURE, "US", &["HDS"]),
    cloud("azure", "switzerlandnorth", "CH", AZURE, "US", &[]),
    cloud("azure", "swedencentral", "SE", AZURE, "US", &[]),
    cloud("azure", "italynorth", "IT", AZURE, "US", &[]),
    cloud("azure", "spaincentral", "ES", AZURE, "US", &["ENS"]),
    cloud("azure", "belgiumcentral", "BE", AZURE, "US", &[]),
    cloud("azure", "uksouth", "GB", AZURE, "US", &[]),
    cloud("azure", "eastus", "US", AZURE, "US", &["FedRAMP"]),
    cloud("azure", "brazilsouth", "BR", AZURE, "US", &[]),
    cloud("azure", "japaneast", "JP", AZURE, "US", &["ISMAP"]),
    cloud("azure", "southeastasia", "SG", AZURE, "US", &["MTCS"]),
    cloud("azure", "centralindia", "IN", AZURE, "US", &[]),
    // Google Cloud, and S3NS (Thales and Google; a French operator, SecNumCloud)
    cloud("gcp", "europe-west3", "DE", GCP, "US", &["C5"]),
    cloud("gcp", "europe-west4", "NL", GCP, "US", &[]),
    cloud("gcp", "europe-west9", "FR", GCP, "US", &["HDS"]),
    cloud("gcp", "europe-central2", "PL", GCP, "US", &[]),
    cloud("gcp", "europe-west6", "CH", GCP, "US", &[]),
    cloud("gcp", "europe-west8", "IT", GCP, "US", &[]),
    cloud("gcp", "europe-southwest1", "ES", GCP, "US", &[]),
    cloud("gcp", "europe-west2", "GB", GCP, "US", &[]),
    cloud("gcp", "us-central1", "US", GCP, "US", &["FedRAMP"]),
    cloud("gcp", "northamerica-northeast1", "CA", GCP, "US", &[]),
    cloud("gcp", "southamerica-east1", "BR", GCP, "US", &[]),
    cloud("gcp", "asia-northeast1", "JP", GCP, "US", &[]),
    cloud("gcp", "australia-southeast1", "AU", GCP, "US", &[]),
    cloud(
        "s3ns",
        "paris",
        "FR",
        "S3NS SAS",
        "FR",
        &["SecNumCloud", "HDS"],
    ),
    // European providers
    cloud("ovhcloud", "gra", "FR", OVH, "FR", &["SecNumCloud", "HDS"]),
    cloud("ovhcloud", "rbx", "FR", OVH, "FR", &["HDS"]),
    cloud("ovhcloud", "fra", "DE", OVH, "FR", &["C5"]),
    cloud("ovhcloud", "waw", "PL", OVH, "FR", &[]),
    cloud("ovhcloud", "lon", "GB", OVH, "FR", &[]),
    cloud("ovhcloud", "bhs", "CA", OVH, "FR", &[]),
    cloud("ovhcloud", "sgp", "SG", OVH, "FR", &[]),
    cloud("ovhcloud", "syd", "AU", OVH, "FR", &[]),
    cloud("ionos", "de-fra", "DE", "IONOS SE", "DE", &["C5"]),
    cloud("ionos", "de-txl", "DE", "IONOS SE", "DE", &["C5"]),
    cloud("ionos", "es-vit", "ES", "IONOS SE", "DE", &["ENS"]),
    cloud("ionos", "gb-lhr", "GB", "IONOS SE", "DE", &[]),
    cloud(
        "stackit",
        "eu01",
        "DE",
        "STACKIT GmbH & Co. KG",
        "DE",
        &["C5", "BSI-Grundschutz"],
    ),
    cloud(
        "stackit",
        "eu02",
        "AT",
        "STACKIT GmbH & Co. KG",
        "DE",
        &["C5"],
    ),
    cloud("hetzner", "fsn1", "DE", "Hetzner Online GmbH", "DE", &[]),
    cloud("hetzner", "nbg1", "DE", "Hetzner Online GmbH", "DE", &[]),
    cloud("hetzner", "hel1", "FI", "Hetzner Online GmbH", "DE", &[]),
    cloud("hetzner", "ash", "US", "Hetzner Online GmbH", "DE", &[]),
    cloud("scaleway", "fr-par", "FR", "Scaleway SAS", "FR", &["HDS"]),
    cloud("scaleway", "nl-ams", "NL", "Scaleway SAS", "FR", &[]),
    cloud("scaleway", "pl-waw", "PL", "Scaleway SAS", "FR", &[]),
    cloud("exoscale", "ch-gva-2", "CH", "Akenes SA", "CH", &[]),
    cloud("exoscale", "de-fra-1", "DE", "Akenes SA", "CH", &[]),
    cloud("exoscale", "at-vie-1", "AT", "Akenes SA", "CH", &[]),
    cloud("exoscale", "bg-sof-1", "BG", "Akenes SA", "CH", &[]),
    cloud(
        "swisscom",
        "zurich",
        "CH",
        "Swisscom (Schweiz) AG",
        "CH",
        &[],
    ),
    cloud("upcloud", "fi-hel1", "FI", "UpCloud Oy", "FI", &[]),
    cloud("upcloud", "de-fra1", "DE", "UpCloud Oy", "FI", &[]),
    cloud("upcloud", "se-sto1", "SE", "UpCloud Oy", "FI", &[]),
    cloud("upcloud", "es-mad1", "ES", "UpCloud Oy", "FI", &[]),
    // The estate's own data centres and vSphere clusters
    own(Kind::Onprem, "munich", "DE", "Example Bank AG", &["TISAX"]),
    own(
        Kind::Onprem,
        "paris",
        "FR",
        "Example Bank France SA",
        &["HDS"],
    ),
    own(
        Kind::Onprem,
        "amsterdam",
        "NL",
        "Example Bank Nederland NV",
        &[],
    ),
    own(
        Kind::Onprem,
        "dublin",
        "IE",
        "Example Bank Ireland DAC",
        &[],
    ),
    own(
        Kind::Onprem,
        "madrid",
        "ES",
        "Example Bank Espana SA",
        &["ENS"],
    ),
    own(Kind::Onprem, "milan", "IT", "Example Bank Italia SpA", &[]),
    own(
        Kind::Onprem,
        "luxembourg",
        "LU",
        "Example Bank Luxembourg SA",
        &[],
    ),
    own(
        Kind::Onprem,
        "brussels",
        "BE",
        "Example Bank Belgium NV",
        &[],
    ),
    own(
        Kind::Onprem,
        "copenhagen",
        "DK",
        "Example Bank Danmark A/S",
        &[],
    ),
    own(Kind::Onprem, "oslo", "NO", "Example Bank Norge AS", &[]),
    own(
        Kind::Onprem,
        "new-york",
        "US",
        "Example Bank Inc.",
        &["PCI-DSS"],
    ),
    own(
        Kind::Onprem,
        "toronto",
        "CA",
        "Example Bank Canada Ltd",
        &[],
    ),
    own(Kind::Onprem, "tokyo", "JP", "Example Bank Japan KK", &[]),
    own(
        Kind::Onprem,
        "singapore",
        "SG",
        "Example Bank Singapore Pte",
        &[],
    ),
    own(
        Kind::Onprem,
        "sydney",
        "AU",
        "Example Bank Australia Pty",
        &[],
    ),
    own(Kind::Onprem, "mumbai", "IN", "Example Bank India Pvt", &[]),
    own(
        Kind::Onprem,
        "sao-paulo",
        "BR",
        "Example Bank Brasil SA",
        &[],
    ),
    own(Kind::Vmware, "frankfurt", "DE", "Example Bank AG", &[]),
    own(Kind::Vmware, "paris", "FR", "Example Bank France SA", &[]),
    own(Kind::Vmware, "london", "GB", "Example Bank UK plc", &[]),
    own(
        Kind::Vmware,
        "zurich",
        "CH",
        "Example Bank (Schweiz) AG",
        &[],
    ),
    own(Kind::Vmware, "new-york", "US", "Example Bank Inc.", &[]),
    own(Kind::Vmware, "milan", "IT", "Example Bank Italia SpA", &[]),
    // Branches and stores
    own(Kind::Edge, "berlin", "DE", "Example Retail GmbH", &[]),
    own(Kind::Edge, "lyon", "FR", "Example Retail France SAS", &[]),
    own(Kind::Edge, "rotterdam", "NL", "Example Retail BV", &[]),
    own(Kind::Edge, "warsaw", "PL", "Example Retail Polska", &[]),
    own(Kind::Edge, "chicago", "US", "Example Retail Inc.", &[]),
    own(Kind::Edge, "osaka", "JP", "Example Retail KK", &[]),
];

/// What every site of a provider holds, before the region's own certifications.
pub(crate) fn baseline_certs(provider: &str) -> &'static [&'static str] {
    match provider {
        "aws" | "azure" | "gcp" => &[
            "ISO27001", "ISO27017", "ISO27018", "SOC2", "PCI-DSS", "CSA-STAR",
        ],
        "ovhcloud" | "exoscale" | "swisscom" => &["ISO27001", "SOC2"],
        "s3ns" | "ionos" | "stackit" | "hetzner" | "scaleway" | "upcloud" => &["ISO27001"],
        "onprem" => &["ISO27001", "SOC2"],
        "vmware" => &["ISO27001"],
        _ => &[],
    }
}

/// Grid carbon intensity (g CO2e per kWh), rounded published averages.
pub(crate) fn carbon(country: &str) -> f64 {
    match country {
        "NO" => 30.0,
        "SE" => 41.0,
        "CH" => 45.0,
        "FR" => 56.0,
        "FI" => 79.0,
        "LU" => 90.0,
        "BR" => 100.0,
        "AT" => 110.0,
        "CA" => 130.0,
        "DK" => 150.0,
        "BE" => 150.0,
        "ES" => 150.0,
        "PT" => 160.0,
        "GB" => 230.0,
        "IE" => 290.0,
        "IT" => 330.0,
        "NL" => 330.0,
        "US" => 370.0,
        "DE" => 380.0,
        "BG" => 400.0,
        "SG" => 410.0,
        "CZ" => 430.0,
        "JP" => 460.0,
        "AU" => 500.0,
        "PL" => 660.0,
        "IN" => 710.0,
        _ => 300.0,
    }
}

/// Price of a core-hour at a provider (EUR), before the country factor.
pub(crate) fn core_hour(provider: &str) -> f64 {
    match provider {
        "aws" => 0.040,
        "azure" => 0.044,
        "gcp" => 0.038,
        "s3ns" => 0.046,
        "ovhcloud" => 0.032,
        "ionos" | "stackit" => 0.034,
        "hetzner" => 0.012,
        "scaleway" | "upcloud" => 0.022,
        "exoscale" | "swisscom" => 0.041,
        "onprem" => 0.030,
        "vmware" => 0.036,
        _ => 0.050,
    }
}

/// Regional price factor.
pub(crate) fn country_factor(country: &str) -> f64 {
    match country {
        "CH" | "BR" => 1.3,
        "JP" | "AU" | "SG" | "NO" => 1.2,
        "GB" | "DK" | "SE" => 1.1,
        "IN" | "PL" | "CZ" | "BG" => 0.9,
        "US" => 0.95,
        _ => 1.0,
    }
}

/// GPU models: name, memory per GPU (GiB), list price per GPU-hour (EUR).
pub(crate) const GPUS: &[(&str, u64, f64)] = &[
    ("H100", 80, 5.5),
    ("A100", 80, 3.4),
    ("L40S", 48, 1.6),
    ("L4", 24, 0.75),
    ("A10G", 24, 1.0),
    ("T4", 16, 0.45),
];

/// GPU models a provider offers.
pub(crate) fn gpu_models(provider: &str) -> &'static [&'static str] {
    match provider {
        "aws" => &["H100", "A100", "L4", "A10G", "T4"],
        "azure" => &["H100", "A100", "T4"],
        "gcp" | "s3ns" => &["H100", "A100", "L4", "T4"],
        "ovhcloud" | "scaleway" => &["H100", "L40S", "L4"],
        "onprem" => &["H100", "A100", "L40S"],
        "ionos" | "stackit" | "hetzner" | "exoscale" | "swisscom" | "upcloud" => &["L40S", "L4"],
        _ => &[],
    }
}

/// A node shape: cores, memory (GiB), ephemeral storage (GiB, 0 for none reported).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub name: &'static str,
    pub cpu: u64,
    pub memory_gib: u64,
    pub ephemeral_gib: u64,
}

const fn shape(name: &'static str, cpu: u64, memory_gib: u64, ephemeral_gib: u64) -> Shape {
    Shape {
        name,
        cpu,
        memory_gib,
        ephemeral_gib,
    }
}

/// Linux amd64 shapes of cloud regions (general purpose, memory and compute optimised).
pub(crate) const CLOUD_LINUX: &[Shape] = &[
    shape("gp-4x16", 4, 16, 100),
    shape("gp-8x32", 8, 32, 200),
    shape("gp-16x64", 16, 64, 400),
    shape("gp-32x128", 32, 128, 800),
    shape("gp-64x256", 64, 256, 1600),
    shape("mo-16x128", 16, 128, 400),
    shape("mo-32x256", 32, 256, 800),
    shape("co-16x32", 16, 32, 0),
    shape("co-32x64", 32, 64, 0),
];

/// Bare-metal and vSphere host shapes of the estate's data centres.
pub(crate) const ONPREM_LINUX: &[Shape] = &[
    shape("r660-32x256", 32, 256, 1700),
    shape("r760-64x512", 64, 512, 1800),
    shape("r760-96x768", 96, 768, 3500),
    shape("dl380-48x384", 48, 384, 1800),
    shape("vm-16x64", 16, 64, 200),
];

pub(crate) const ARM: &[Shape] = &[
    shape("arm-16x64", 16, 64, 200),
    shape("arm-32x128", 32, 128, 400),
    shape("arm-64x256", 64, 256, 800),
];

pub(crate) const WINDOWS: &[Shape] = &[
    shape("win-4x16", 4, 16, 128),
    shape("win-8x32", 8, 32, 256),
    shape("win-16x64", 16, 64, 256),
    shape("win-32x128", 32, 128, 512),
];

pub(crate) const EDGE: &[Shape] = &[
    shape("nuc-8x32", 8, 32, 500),
    shape("edge-16x64", 16, 64, 1000),
];

/// A GPU shape for `count` GPUs of a model: cores, memory (GiB), ephemeral (GiB).
pub(crate) fn gpu_shape(model: &str, count: u32) -> (u64, u64, u64) {
    match (model, count) {
        ("H100", _) => (112, 2048, 30_000),
        ("A100", _) => (96, 1024, 8_000),
        ("L40S", _) => (48, 384, 3_800),
        (_, 1) => (8, 32, 250),
        _ => (48, 192, 1_800),
    }
}

/// Windows Server releases: build, version, weight in the fleet.
pub(crate) const WINDOWS_BUILDS: &[(&str, &str, u32)] = &[
    ("10.0.17763", "2019", 20),
    ("10.0.20348", "2022", 55),
    ("10.0.26100", "2025", 25),
];

/// Linux distributions per provider: distro, version, kernel (for amd64).
pub(crate) fn distros(provider: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    const UBUNTU_22: (&str, &str, &str) = ("ubuntu", "22.04", "5.15.0-105-generic");
    const UBUNTU_24: (&str, &str, &str) = ("ubuntu", "24.04", "6.8.0-45-generic");
    const DEBIAN_12: (&str, &str, &str) = ("debian", "12", "6.1.0-26-amd64");
    const RHEL_9: (&str, &str, &str) = ("rhel", "9.4", "5.14.0-427.13.1.el9_4.x86_64");
    const RHEL_8: (&str, &str, &str) = ("rhel", "8.10", "4.18.0-553.el8_10.x86_64");
    const ROCKY_9: (&str, &str, &str) = ("rocky", "9.4", "5.14.0-427.13.1.el9_4.x86_64");
    const SLES_15: (&str, &str, &str) = ("sles", "15.6", "6.4.0-150600.23.25-default");
    match provider {
        "aws" => &[
            ("amzn", "2023", "6.1.115-126.197.amzn2023.x86_64"),
            UBUNTU_22,
            UBUNTU_24,
            RHEL_9,
        ],
        "azure" => &[
            ("azurelinux", "3.0", "6.6.47.1-1.azl3"),
            UBUNTU_22,
            UBUNTU_24,
            RHEL_9,
        ],
        "gcp" | "s3ns" => &[UBUNTU_22, UBUNTU_24, DEBIAN_12, ROCKY_9],
        "onprem" | "vmware" => &[RHEL_9, RHEL_8, SLES_15, ROCKY_9],
        "edge" => &[UBUNTU_24, DEBIAN_12],
        _ => &[UBUNTU_22, UBUNTU_24, DEBIAN_12, ROCKY_9],
    }
}

/// The provider's word for a node's shape, as a label key.
pub(crate) fn shape_label(provider: &str) -> &'static str {
    match provider {
        "aws" => "instance-type",
        "azure" => "vm-size",
        "gcp" | "s3ns" => "machine-type",
        "onprem" | "vmware" | "edge" => "hardware",
        _ => "flavor",
    }
}

/// A project of the estate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProjectDef {
    pub name: &'static str,
    /// Jurisdictions or blocs (`allowedLocations`).
    pub allowed: &'static [&'static str],
    /// The residencies its workloads declare, each within `allowed` (`[]`: the
    /// project's fence only).
    pub residencies: &'static [&'static [&'static str]],
}

const fn project(
    name: &'static str,
    allowed: &'static [&'static str],
    residencies: &'static [&'static [&'static str]],
) -> ProjectDef {
    ProjectDef {
        name,
        allowed,
        residencies,
    }
}

/// Projects: name, allowed locations, and the residencies their workloads declare
/// (each within the allowed locations; `[]` means "the project's fence only").
pub(crate) const PROJECTS: &[ProjectDef] = &[
    project("default", &[], &[&[], &[], &["EU"], &["US"]]),
    project(
        "finance",
        &["EU"],
        &[&[], &["EU"], &["DE"], &["FR"], &["NL"]],
    ),
    project(
        "payments",
        &["EU", "GB", "CH", "NO"],
        &[&[], &["EU"], &["GB"], &["CH"], &["EEA"]],
    ),
    project("hr", &["EU"], &[&[], &["EU"], &["DE", "AT"]]),
    project("health-fr", &["FR"], &[&[], &["FR"]]),
    project("public-de", &["DE"], &[&[], &["DE"]]),
    project(
        "research",
        &["EEA", "CH"],
        &[&[], &["EEA"], &["CH"], &["EU"]],
    ),
    project("retail-us", &["US", "CA"], &[&[], &["US"], &["CA"]]),
    project(
        "apac",
        &["JP", "SG", "AU", "IN"],
        &[&[], &["JP"], &["SG"], &["AU"]],
    ),
    project("latam", &["BR", "US"], &[&[], &["BR"]]),
    project(
        "ml-platform",
        &["EEA", "CH", "GB", "US"],
        &[&[], &["EU"], &["US"], &["EEA", "CH"]],
    ),
    project("web", &[], &[&[], &[], &["EU"], &["FIVE_EYES"], &["EFTA"]]),
    project(
        "data-platform",
        &["EEA", "CH", "GB"],
        &[&[], &["EU"], &["GB"], &["DE", "FR", "NL"]],
    ),
    project(
        "identity",
        &["EU", "FIVE_EYES"],
        &[&[], &["EU"], &["FIVE_EYES"]],
    ),
    project(
        "nordics",
        &["SE", "NO", "FI", "DK"],
        &[&[], &["SE"], &["NO"]],
    ),
    project("logistics", &[], &[&[], &["EU"], &["US", "CA"], &["JP"]]),
];

/// Teams, as node and workload labels.
pub(crate) const TEAMS: &[&str] = &[
    "platform", "payments", "retail", "data", "ml", "identity", "erp", "risk", "web",
];

/// Low-carbon grids workloads may prefer.
pub(crate) const LOW_CARBON: &[&str] = &["NO", "SE", "CH", "FR", "FI"];
