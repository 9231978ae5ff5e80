//! Tampering with a stopped store's audit log, as an intruder with file access would:
//! shared by the tests of `meridian audit verify --data-dir` and `meridian restore`.

use std::path::Path;

/// Alters the first audit entry a token wrote (the server's own entries, such as its
/// term as leader, may come before it) in the SQLite database `db`, flipping one byte
/// of its actor; returns the entry's sequence number.
pub fn forge_first_token_entry(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).expect("open the database");
    let entries: Vec<(Vec<u8>, Vec<u8>)> = conn
        .prepare("SELECT key, value FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")
        .expect("prepare")
        .query_map(
            [b"/meridian/audit/0".to_vec(), b"/meridian/audit/1".to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let (key, mut forged) = entries
        .into_iter()
        .find(|(_, v)| v.windows(6).any(|w| w == b"token:"))
        .expect("an entry written by a token");
    let at = forged
        .windows(6)
        .position(|w| w == b"token:")
        .expect("the entry names its actor");
    forged[at] = b'T';
    conn.execute(
        "UPDATE kv SET value = ?1 WHERE key = ?2",
        rusqlite::params![forged, key],
    )
    .expect("tamper");
    String::from_utf8(key)
        .expect("utf-8")
        .rsplit('/')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .expect("a sequence number")
}
