//! `etcd://HOST:PORT[,HOST:PORT…]`, the `--store` value of an etcd cluster. Compiled
//! without the `etcd` feature too, so that a build without the backend still reads the
//! flag and says what is missing.

/// Parses `etcd://HOST:PORT[,HOST:PORT…]` into its endpoints. Returns a message naming what
/// is wrong otherwise.
pub fn parse_url(url: &str) -> Result<Vec<String>, String> {
    let Some(rest) = url.strip_prefix("etcd://") else {
        return Err(format!(
            "{url:?} is not an etcd URL: expected etcd://HOST:PORT[,HOST:PORT...]"
        ));
    };
    let mut endpoints = Vec::new();
    for part in rest.trim_end_matches('/').split(',') {
        let part = part.trim();
        let Some((host, port)) = part.rsplit_once(':') else {
            return Err(format!(
                "etcd endpoint {part:?} has no port: expected HOST:PORT (etcd's client port is usually 2379)"
            ));
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("etcd endpoint {part:?} has no valid host"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "etcd endpoint {part:?} has an invalid port {port:?}"
            ));
        }
        endpoints.push(part.to_owned());
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("etcd://a:2379,10.0.0.2:2379").unwrap(),
            ["a:2379", "10.0.0.2:2379"]
        );
        assert_eq!(parse_url("etcd://[::1]:2379").unwrap(), ["[::1]:2379"]);
        assert!(parse_url("http://a:2379").unwrap_err().contains("etcd://"));
        assert!(parse_url("etcd://a").unwrap_err().contains("no port"));
        assert!(
            parse_url("etcd://a:x")
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(parse_url("etcd://").is_err());
    }
}
