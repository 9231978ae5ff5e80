//! OPA built-ins regorus lacks, registered as regorus extensions on every engine Meridian
//! builds: the `crypto` digests and HMACs (hex strings, as OPA returns them) and
//! `net.cidr_intersects`.
//!
//! Extensions run on regorus's interpreter only; a module calling one is evaluated there
//! (the bytecode VM compiler refuses it), which is slower but the same answer.

use anyhow::{Result, bail};
use md5::Digest as _;
use regorus::{Engine, Value};
use ring::{digest, hmac};

/// Registers the extensions on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    type Digest = fn(&[u8]) -> Vec<u8>;
    let digests: [(&str, Digest); 3] = [
        ("crypto.md5", |b| md5::Md5::digest(b).to_vec()),
        ("crypto.sha1", |b| {
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, b)
                .as_ref()
                .to_vec()
        }),
        ("crypto.sha256", |b| {
            digest::digest(&digest::SHA256, b).as_ref().to_vec()
        }),
    ];
    for (name, f) in digests {
        // Registering twice on one engine is the only failure; engines are fresh.
        let _ = engine.add_extension(
            name.to_string(),
            1,
            Box::new(move |args: Vec<Value>| -> Result<Value> {
                let s = string_arg(name, &args, 0)?;
                Ok(Value::from(hex::encode(f(s.as_bytes()))))
            }),
        );
    }
    let hmacs: [(&str, hmac::Algorithm); 3] = [
        ("crypto.hmac.sha1", hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        ("crypto.hmac.sha256", hmac::HMAC_SHA256),
        ("crypto.hmac.sha512", hmac::HMAC_SHA512),
    ];
    for (name, algorithm) in hmacs {
        let _ = engine.add_extension(
            name.to_string(),
            2,
            Box::new(move |args: Vec<Value>| -> Result<Value> {
                let message = string_arg(name, &args, 0)?;
                let key = string_arg(name, &args, 1)?;
                let key = hmac::Key::new(algorithm, key.as_bytes());
                Ok(Value::from(hex::encode(
                    hmac::sign(&key, message.as_bytes()).as_ref(),
                )))
            }),
        );
    }
    let _ = engine.add_extension(
        "net.cidr_intersects".to_string(),
        2,
        Box::new(|args: Vec<Value>| -> Result<Value> {
            const NAME: &str = "net.cidr_intersects";
            let (a0, a1) = cidr_range(NAME, string_arg(NAME, &args, 0)?)?;
            let (b0, b1) = cidr_range(NAME, string_arg(NAME, &args, 1)?)?;
            Ok(Value::from(a0 <= b1 && b0 <= a1))
        }),
    );
    let _ = engine.add_extension(
        "crypto.hmac.equal".to_string(),
        2,
        Box::new(|args: Vec<Value>| -> Result<Value> {
            let a = string_arg("crypto.hmac.equal", &args, 0)?;
            let b = string_arg("crypto.hmac.equal", &args, 1)?;
            // Constant time in the length of the inputs, as OPA's hmac.Equal.
            let equal = a.len() == b.len()
                && a.bytes()
                    .zip(b.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0;
            Ok(Value::from(equal))
        }),
    );
}

/// The first and last address of a CIDR (`10.0.0.0/8`, `2001:db8::/32`), as numbers in
/// one space (IPv4 mapped into IPv6), or an error naming the text.
fn cidr_range(name: &str, cidr: &str) -> Result<(u128, u128)> {
    let Some((addr, len)) = cidr.split_once('/') else {
        bail!("{name}: {cidr:?} is not a CIDR (ADDRESS/PREFIX)");
    };
    let (bits, width): (u128, u32) = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => (u128::from(a.to_ipv6_mapped()), 32),
        Ok(std::net::IpAddr::V6(a)) => (u128::from(a), 128),
        Err(_) => bail!("{name}: {addr:?} is not an IP address"),
    };
    let len: u32 = match len.parse() {
        Ok(l) if l <= width => l,
        _ => bail!("{name}: {len:?} is not a prefix length of 0..={width}"),
    };
    let host_bits = width - len;
    let mask = if host_bits == 0 {
        0
    } else {
        (1u128 << host_bits) - 1
    };
    Ok((bits & !mask, bits | mask))
}

fn string_arg<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a str> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => bail!(
            "{name}: operand {} must be string but got {}",
            i + 1,
            type_name(other)
        ),
        None => bail!("{name}: missing operand {}", i + 1),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}
