//! Prints what the agent would report for this machine: the Node spec and security
//! facts as JSON on stdout, the rest (hostname, OS name, disks) on stderr.
//!
//! `cargo run -p agent --example facts [DATA_DIR]`

fn main() {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/var/lib/meridian".into());
    let options = match agent::Options::for_this_host(data_dir) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let facts = agent::discover(&agent::HostProbe::default(), &options);
    eprintln!("hostname: {}", facts.hostname);
    eprintln!("os: {}", facts.os_name.as_deref().unwrap_or("unknown"));
    eprintln!("disks: {:?}", facts.disks);
    let report = serde_json::json!({
        "spec": agent::node_spec(&facts, "local"),
        "security": agent::security_status(&facts),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("api types serialize")
    );
}
