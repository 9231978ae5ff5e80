//! TLS, always on unless `--insecure-http` on loopback: a self-generated CA (kept in the
//! data directory, valid 10 years) and a server certificate it signs (valid a year,
//! reissued at start when it expires within 30 days or no longer names what the listener
//! serves), or certificate and key files given by the operator. Clients trust the CA's
//! file, or check its [`fingerprint`] (`meridian login`).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// File names of the generated material inside the data directory.
pub const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

/// Where the server's certificate comes from.
pub struct TlsMaterial {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA clients should trust, when Meridian generated it.
    pub ca: Option<PathBuf>,
}

/// Write a file readable only by its owner.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Lifetime of the generated CA (clients keep its file, so it lasts).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the generated server certificate, renewed at start (see [`needs_renewal`]).
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// A server certificate expiring within this is renewed at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates start this long before now, for clients whose clocks are a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A name a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectName {
    Dns(String),
    Ip(IpAddr),
}

impl std::fmt::Display for SubjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubjectName::Dns(name) => f.write_str(name),
            SubjectName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl SubjectName {
    /// A `--tls-san` value: an IP address or a DNS name.
    pub fn parse(value: &str) -> Result<SubjectName> {
        let value = value.trim();
        if let Ok(ip) = value.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(SubjectName::Ip(ip));
        }
        match ServerName::try_from(value) {
            Ok(ServerName::DnsName(_)) => Ok(SubjectName::Dns(value.to_ascii_lowercase())),
            _ => bail!("--tls-san {value:?} is neither an IP address nor a DNS name"),
        }
    }

    fn server_name(&self) -> Option<ServerName<'static>> {
        match self {
            SubjectName::Dns(name) => ServerName::try_from(name.clone()).ok(),
            SubjectName::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        }
    }

    fn san(&self) -> Result<SanType> {
        Ok(match self {
            SubjectName::Dns(name) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .with_context(|| format!("{name} cannot be a certificate name"))?,
            ),
            SubjectName::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

/// The names the generated server certificate must cover: localhost and the loopback
/// addresses, the host name, the listen address (for `0.0.0.0` or `::`, the host's own
/// addresses instead), and the operator's `--tls-san` values.
pub fn subject_names(
    listen: IpAddr,
    extra: &[SubjectName],
    hostname: Option<&str>,
    host_addresses: &[IpAddr],
) -> Vec<SubjectName> {
    let mut names = vec![
        SubjectName::Dns("localhost".to_owned()),
        SubjectName::Ip(IpAddr::from([127, 0, 0, 1])),
        SubjectName::Ip(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    if let Some(host) = hostname.map(str::trim).filter(|h| !h.is_empty())
        && let Ok(ServerName::DnsName(_)) = ServerName::try_from(host)
    {
        names.push(SubjectName::Dns(host.to_ascii_lowercase()));
    }
    if listen.is_unspecified() {
        names.extend(host_addresses.iter().copied().map(SubjectName::Ip));
    } else {
        names.push(SubjectName::Ip(listen));
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// This host's name (Linux: the kernel's; else `/etc/hostname`).
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

/// The addresses a listener on `listen` (unspecified: `0.0.0.0` or `::`) serves, other
/// than loopback: on Linux the local IPv4 addresses of the routing table
/// (`/proc/net/fib_trie`) and, for `::`, the global IPv6 ones (`/proc/net/if_inet6`);
/// elsewhere, or when those files cannot be read, what the host name resolves to.
pub fn host_addresses(listen: IpAddr, hostname: Option<&str>) -> Vec<IpAddr> {
    let mut addrs = Vec::new();
    if let Ok(trie) = fs::read_to_string("/proc/net/fib_trie") {
        addrs.extend(parse_fib_trie(&trie).into_iter().map(IpAddr::V4));
    }
    if listen.is_ipv6()
        && let Ok(table) = fs::read_to_string("/proc/net/if_inet6")
    {
        addrs.extend(parse_if_inet6(&table).into_iter().map(IpAddr::V6));
    }
    if addrs.is_empty()
        && let Some(host) = hostname
    {
        use std::net::ToSocketAddrs;
        if let Ok(resolved) = (host, 0).to_socket_addrs() {
            addrs.extend(resolved.map(|a| a.ip()));
        }
    }
    addrs.retain(|a| {
        !a.is_loopback()
            && !a.is_unspecified()
            && (listen.is_ipv6() || a.is_ipv4())
            && !matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local())
    });
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The local addresses in `/proc/net/fib_trie`: each `|-- a.b.c.d` leaf followed by a
/// `/32 host LOCAL` line.
pub fn parse_fib_trie(text: &str) -> Vec<std::net::Ipv4Addr> {
    let mut found = Vec::new();
    let mut leaf = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(addr) = leaf
            && !found.contains(&addr)
        {
            found.push(addr);
        }
    }
    found
}

/// The global-scope addresses in `/proc/net/if_inet6` (32 hex digits, index, prefix
/// length, scope, flags, interface).
pub fn parse_if_inet6(text: &str) -> Vec<std::net::Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (hex, scope) = (fields.first()?, fields.get(3)?);
            if *scope != "00" || hex.len() != 32 {
                return None;
            }
            u128::from_str_radix(hex, 16)
                .ok()
                .map(std::net::Ipv6Addr::from)
        })
        .collect()
}

/// Why a generated server certificate must be made again, or `None` to keep it: it does
/// not verify against the CA now (expired, not yet valid, another CA's), it expires within
/// [`RENEW_BEFORE`], it outlives [`SERVER_LIFETIME`] (made before certificates had a
/// lifetime), or it does not cover one of `names`.
pub fn needs_renewal(
    cert: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    names: &[SubjectName],
    now: Duration,
) -> Option<String> {
    let anchor = match webpki::anchor_from_trusted_cert(ca) {
        Ok(a) => a,
        Err(e) => return Some(format!("the CA certificate cannot be read ({e})")),
    };
    let cert = match webpki::EndEntityCert::try_from(cert) {
        Ok(c) => c,
        Err(e) => return Some(format!("it cannot be read ({e})")),
    };
    let algorithms = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let valid_at = |at: Duration| {
        cert.verify_for_usage(
            algorithms,
            std::slice::from_ref(&anchor),
            &[],
            UnixTime::since_unix_epoch(at),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    };
    if let Err(e) = valid_at(now) {
        return Some(format!("it does not verify against the CA now ({e})"));
    }
    if valid_at(now + RENEW_BEFORE).is_err() {
        return Some("it expires within 30 days".to_owned());
    }
    if valid_at(now + SERVER_LIFETIME + Duration::from_secs(24 * 3600)).is_ok() {
        return Some("it is valid for more than a year".to_owned());
    }
    for name in names {
        let Some(server_name) = name.server_name() else {
            continue;
        };
        if cert.verify_is_valid_for_subject_name(&server_name).is_err() {
            return Some(format!("it does not name {name}"));
        }
    }
    None
}

fn validity(params: &mut CertificateParams, now: Duration, lifetime: Duration) -> Result<()> {
    let at = |d: Duration| {
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .context("the system clock is out of range")
    };
    params.not_before = at(now.saturating_sub(BACKDATE))?;
    params.not_after = at(now + lifetime)?;
    Ok(())
}

fn ca_params(now: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Meridian local CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_LIFETIME)?;
    Ok(params)
}

/// A server certificate for `names`, valid for [`SERVER_LIFETIME`] from `now`, signed by
/// the CA whose key is `ca_key` (the CA's name is always the one [`ca_params`] gives).
/// Returns the certificate and key in PEM.
pub fn issue_server_cert(
    names: &[SubjectName],
    ca_key: &KeyPair,
    now: Duration,
) -> Result<(String, String)> {
    let issuer = ca_params(now)?.self_signed(ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "meridian-server");
    params.subject_alt_names = names.iter().map(SubjectName::san).collect::<Result<_>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, now, SERVER_LIFETIME)?;
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = params.signed_by(&key, &issuer, ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn first_cert(pem: &[u8]) -> Option<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &*pem).next()?.ok()
}

/// Make sure `dir` holds a CA and a server certificate it signed for `names` (see
/// [`subject_names`]): the CA is generated on first start and kept (clients trust its
/// file); the server certificate is (re)issued when missing or when [`needs_renewal`]
/// says so.
pub fn ensure_generated(dir: &Path, names: &[SubjectName]) -> Result<TlsMaterial> {
    let material = TlsMaterial {
        cert: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
        ca: Some(dir.join(CA_CERT)),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let (ca_pem, ca_key) = match (
        fs::read(dir.join(CA_CERT)),
        fs::read_to_string(dir.join(CA_KEY)),
    ) {
        (Ok(cert), Ok(key)) => {
            let key = KeyPair::from_pem(&key).with_context(|| {
                format!("{} is not a PEM private key", dir.join(CA_KEY).display())
            })?;
            (cert, key)
        }
        _ => {
            let key = KeyPair::generate().context("generating the CA key")?;
            let cert = ca_params(now)?.self_signed(&key)?;
            write_private(&dir.join(CA_KEY), key.serialize_pem().as_bytes())?;
            fs::write(dir.join(CA_CERT), cert.pem())
                .with_context(|| format!("cannot write {}", dir.join(CA_CERT).display()))?;
            tracing::info!(ca = %dir.join(CA_CERT).display(), "generated a TLS CA");
            (cert.pem().into_bytes(), key)
        }
    };
    let ca_der = first_cert(&ca_pem)
        .with_context(|| format!("{} holds no PEM certificate", dir.join(CA_CERT).display()))?;

    let current = fs::read(&material.cert)
        .ok()
        .filter(|_| material.key.exists());
    let why = match current.as_deref().and_then(first_cert) {
        None => "there is none".to_owned(),
        Some(cert) => match needs_renewal(&cert, &ca_der, names, now) {
            None => return Ok(material),
            Some(why) => why,
        },
    };
    let (cert_pem, key_pem) = issue_server_cert(names, &ca_key, now)?;
    let issued = first_cert(cert_pem.as_bytes()).context("rcgen wrote no certificate")?;
    if let Some(problem) = needs_renewal(&issued, &ca_der, names, now) {
        bail!(
            "the server certificate issued with {} does not verify against {} ({problem}); \
             move {}, {}, {} and {} away to generate a new CA (clients then need the new {})",
            dir.join(CA_KEY).display(),
            dir.join(CA_CERT).display(),
            CA_CERT,
            CA_KEY,
            SERVER_CERT,
            SERVER_KEY,
            CA_CERT
        );
    }
    // Key first, then certificate, each replaced by rename.
    let key_tmp = dir.join(format!("{SERVER_KEY}.new"));
    let cert_tmp = dir.join(format!("{SERVER_CERT}.new"));
    write_private(&key_tmp, key_pem.as_bytes())?;
    fs::write(&cert_tmp, &cert_pem)
        .with_context(|| format!("cannot write {}", cert_tmp.display()))?;
    fs::rename(&key_tmp, &material.key)
        .with_context(|| format!("cannot replace {}", material.key.display()))?;
    fs::rename(&cert_tmp, &material.cert)
        .with_context(|| format!("cannot replace {}", material.cert.display()))?;
    tracing::info!(
        reason = %why,
        names = %names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        "issued the TLS server certificate (valid for a year, renewed at start within 30 days of expiry)"
    );
    Ok(material)
}

/// The SHA-256 fingerprint of a certificate (its DER bytes), as `sha256:` and the digest
/// in upper-case hex pairs joined by colons (`sha256:AB:CD:…`, OpenSSL's
/// `x509 -fingerprint -sha256` with a prefix naming the digest). The server logs its CA's
/// at start; `meridian login` shows the same for the user to compare.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der);
    let pairs: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", pairs.join(":"))
}

/// The [`fingerprint`] of the first certificate of a PEM file; `None` when it holds none.
pub fn pem_fingerprint(pem: &[u8]) -> Option<String> {
    first_cert(pem).map(|der| fingerprint(&der))
}

/// A fingerprint as a user types it (`--ca-fingerprint`): `sha256:` (optional, any case)
/// then 64 hex digits, with or without colons, any case; returned as [`fingerprint`]
/// writes it, so that two forms of one digest compare equal.
pub fn parse_fingerprint(text: &str) -> Result<String> {
    let text = text.trim();
    let hex_digits = match text.split_once(':') {
        Some((algorithm, rest)) if algorithm.eq_ignore_ascii_case("sha256") => rest,
        Some((algorithm, _)) if !algorithm.chars().all(|c| c.is_ascii_hexdigit()) => bail!(
            "{text:?} is not a SHA-256 fingerprint: only sha256 is supported (sha256:AB:CD:…)"
        ),
        _ => text,
    };
    let digits: String = hex_digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "{text:?} is not a SHA-256 fingerprint: expected sha256: and 32 hex pairs \
             (sha256:AB:CD:…, as the server logs it at start)"
        );
    }
    let pairs: Vec<String> = digits
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    Ok(format!("sha256:{}", pairs.join(":")))
}

/// A rustls server configuration (HTTP/2 and HTTP/1.1) from PEM files.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = {
        let pem = fs::read(&material.cert)
            .with_context(|| format!("cannot read --tls-cert {}", material.cert.display()))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is not a PEM certificate", material.cert.display()))?
    };
    if certs.is_empty() {
        bail!("{} holds no certificate", material.cert.display());
    }
    let key: PrivateKeyDer<'static> = {
        let pem = fs::read(&material.key)
            .with_context(|| format!("cannot read --tls-key {}", material.key.display()))?;
        rustls_pemfile::private_key(&mut pem.as_slice())
            .with_context(|| format!("{} is not a PEM private key", material.key.display()))?
            .with_context(|| format!("{} holds no private key", material.key.display()))?
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn now() -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        first_cert(pem.as_bytes()).expect("a certificate")
    }

    fn ip(s: &str) -> SubjectName {
        SubjectName::Ip(s.parse().expect("ip"))
    }

    fn dns(s: &str) -> SubjectName {
        SubjectName::Dns(s.to_owned())
    }

    /// A CA (PEM certificate and key) as `ensure_generated` makes it.
    fn ca(now: Duration) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let cert = ca_params(now)
            .expect("params")
            .self_signed(&key)
            .expect("CA");
        (cert.der().clone(), key)
    }

    #[test]
    fn an_unspecified_listener_names_the_host_addresses_and_a_specific_one_itself() {
        let host = [
            "192.0.2.2".parse().expect("ip"),
            "fd00::2".parse().expect("ip"),
        ];
        let extra = [dns("meridian.example"), ip("203.0.113.7"), dns("localhost")];
        let names = subject_names(
            "0.0.0.0".parse().expect("ip"),
            &extra,
            Some("node-1\n"),
            &host,
        );
        assert_eq!(
            names,
            [
                dns("localhost"),
                ip("127.0.0.1"),
                ip("::1"),
                dns("node-1"),
                ip("192.0.2.2"),
                ip("fd00::2"),
                dns("meridian.example"),
                ip("203.0.113.7"),
            ]
        );
        let names = subject_names("192.0.2.9".parse().expect("ip"), &[], None, &host);
        assert_eq!(
            names,
            [
                dns("localhost"),
                ip("127.0.0.1"),
                ip("::1"),
                ip("192.0.2.9")
            ]
        );
    }

    #[test]
    fn fingerprints_are_sha256_in_hex_pairs_and_parse_in_any_common_form() {
        // SHA-256 of the empty string.
        let empty = "sha256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:\
                     27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55";
        assert_eq!(fingerprint(b""), empty);
        for typed in [
            empty.to_owned(),
            empty.to_ascii_lowercase(),
            empty.trim_start_matches("sha256:").to_owned(),
            empty.replace(':', "").replacen("sha256", "SHA256:", 1),
            format!(
                "  {}\n",
                empty.replace(':', "").trim_start_matches("sha256")
            ),
        ] {
            assert_eq!(parse_fingerprint(&typed).expect("parses"), empty, "{typed}");
        }
        for bad in [
            "",
            "sha256:AB:CD",
            "md5:E3B0",
            &format!("{empty}00"),
            "sha256:zz",
        ] {
            let err = parse_fingerprint(bad).expect_err(bad);
            assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let material = ensure_generated(dir.path(), &[dns("localhost")]).expect("generated");
        let pem = fs::read(material.ca.expect("a CA")).expect("ca");
        let der = first_cert(&pem).expect("a certificate");
        assert_eq!(pem_fingerprint(&pem), Some(fingerprint(&der)));
        assert_eq!(pem_fingerprint(b"not PEM"), None);
    }

    #[test]
    fn tls_san_values_are_ips_or_dns_names() {
        assert_eq!(SubjectName::parse("10.0.0.1").expect("ip"), ip("10.0.0.1"));
        assert_eq!(SubjectName::parse("[fd00::1]").expect("ip"), ip("fd00::1"));
        assert_eq!(
            SubjectName::parse("API.Example.com").expect("dns"),
            dns("api.example.com")
        );
        let err = SubjectName::parse("not a name").expect_err("refused");
        assert!(format!("{err:#}").contains("--tls-san"), "{err:#}");
    }

    #[test]
    fn local_addresses_are_read_from_proc() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 4\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                    |-- 127.0.0.1\n              /32 host LOCAL\n\
                    |-- 192.0.2.0\n              /24 link UNICAST\n\
                    |-- 192.0.2.2\n              /32 host LOCAL\n\
                    |-- 192.0.2.255\n           /32 link BROADCAST\n\
                    Local:\n           |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(trie),
            [
                std::net::Ipv4Addr::new(127, 0, 0, 1),
                std::net::Ipv4Addr::new(192, 0, 2, 2)
            ]
        );
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                     fd000000000000000000000000000002 04 40 00 82     eth0\n\
                     fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";
        assert_eq!(
            parse_if_inet6(inet6),
            ["fd00::2".parse::<std::net::Ipv6Addr>().expect("ip")]
        );
    }

    #[test]
    fn an_issued_certificate_names_what_was_asked_for_a_year() {
        let now = now();
        let (ca_der, ca_key) = ca(now);
        let names = [
            dns("localhost"),
            ip("127.0.0.1"),
            ip("192.0.2.2"),
            dns("meridian.example"),
        ];
        let (cert, _key) = issue_server_cert(&names, &ca_key, now).expect("issued");
        let cert = der(&cert);
        assert_eq!(needs_renewal(&cert, &ca_der, &names, now), None);
        // Backdated a few minutes, for clocks a little behind, not more.
        assert_eq!(
            needs_renewal(&cert, &ca_der, &[], now - Duration::from_secs(60)),
            None
        );
        assert!(needs_renewal(&cert, &ca_der, &[], now - Duration::from_secs(3600)).is_some());
        // Renewed within 30 days of expiry, and invalid after a year.
        assert_eq!(needs_renewal(&cert, &ca_der, &[], now + 300 * DAY), None);
        assert_eq!(
            needs_renewal(&cert, &ca_der, &[], now + 340 * DAY).as_deref(),
            Some("it expires within 30 days")
        );
        assert!(
            needs_renewal(&cert, &ca_der, &[], now + 366 * DAY)
                .expect("expired")
                .contains("does not verify")
        );
        // A name it lacks.
        assert_eq!(
            needs_renewal(&cert, &ca_der, &[ip("198.51.100.1")], now).as_deref(),
            Some("it does not name 198.51.100.1")
        );
        // Another CA's.
        let (other_ca, _) = ca(now);
        assert!(
            needs_renewal(&cert, &other_ca, &names, now)
                .expect("not ours")
                .contains("does not verify")
        );
    }

    #[test]
    fn a_certificate_with_rcgen_default_validity_is_renewed() {
        let now = now();
        let (ca_der, ca_key) = ca(now);
        let issuer = ca_params(now)
            .expect("params")
            .self_signed(&ca_key)
            .expect("CA");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let legacy = params.signed_by(&key, &issuer, &ca_key).expect("signed");
        assert_eq!(
            needs_renewal(legacy.der(), &ca_der, &[dns("localhost")], now).as_deref(),
            Some("it is valid for more than a year")
        );
    }

    #[test]
    fn ensure_generated_keeps_a_good_certificate_and_reissues_for_new_names_with_the_same_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = [dns("localhost"), ip("127.0.0.1")];
        ensure_generated(dir.path(), &names).expect("generated");
        let ca_pem = fs::read(dir.path().join(CA_CERT)).expect("ca");
        let first = fs::read(dir.path().join(SERVER_CERT)).expect("cert");

        ensure_generated(dir.path(), &names).expect("kept");
        assert_eq!(fs::read(dir.path().join(SERVER_CERT)).expect("cert"), first);

        let more = [dns("localhost"), ip("127.0.0.1"), dns("meridian.example")];
        let material = ensure_generated(dir.path(), &more).expect("reissued");
        let second = fs::read(&material.cert).expect("cert");
        assert_ne!(second, first);
        assert_eq!(
            fs::read(dir.path().join(CA_CERT)).expect("ca"),
            ca_pem,
            "same CA"
        );
        let ca_der = first_cert(&ca_pem).expect("ca");
        let cert = first_cert(&second).expect("cert");
        assert_eq!(needs_renewal(&cert, &ca_der, &more, now()), None);
        server_config(&material).expect("the new key matches the new certificate");
    }
}
