//! OPA built-ins regorus lacks, registered as regorus extensions on every engine Meridian
//! builds: the `crypto` digests and HMACs (hex strings, as OPA returns them).
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
