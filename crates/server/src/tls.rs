//! TLS for listening beyond loopback: a self-generated CA and server certificate on first
//! start (kept in the data directory), or certificate and key files given by the operator.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
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

/// Generate a CA and a server certificate in `dir` unless they exist. The server
/// certificate names localhost, the loopback addresses, the host name and `ip`.
pub fn ensure_generated(dir: &Path, ip: IpAddr) -> Result<TlsMaterial> {
    let material = TlsMaterial {
        cert: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
        ca: Some(dir.join(CA_CERT)),
    };
    if material.cert.exists() && material.key.exists() {
        return Ok(material);
    }
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Meridian local CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut names = vec!["localhost".to_owned()];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "meridian-server");
    for addr in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ] {
        params.subject_alt_names.push(SanType::IpAddress(addr));
    }
    if !ip.is_unspecified() && !ip.is_loopback() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;

    write_private(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes())?;
    fs::write(dir.join(CA_CERT), ca_cert.pem())?;
    write_private(&material.key, key.serialize_pem().as_bytes())?;
    fs::write(&material.cert, cert.pem())?;
    Ok(material)
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
