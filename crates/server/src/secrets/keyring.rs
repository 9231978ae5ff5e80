//! The keys that seal Secret values at rest, and the AEAD itself (AES-256-GCM, `ring`).
//!
//! Files in the data directory, all owner-only (0600) and written atomically (a temporary
//! file in the same directory, fsynced, renamed, the directory fsynced):
//!
//! - `secrets.key`: the current key, 32 raw bytes, created on first start. New seals use it.
//! - `secrets.keys/<key id>.key`: every key the server has used, the current one included
//!   (a rotation writes the new key here before it becomes `secrets.key`), so values sealed
//!   under an older key still open. A key id is the first 16 hex digits of the SHA-256 of
//!   the key (it names the key without revealing it).
//!
//! Nonces are 96 random bits from the system's CSPRNG per seal. With random nonces one key
//! should seal fewer than 2^32 messages (NIST SP 800-38D); a secret is sealed once per
//! write, so a key rotation well before that is the operator's lever.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};

use api::secret::Sealed;

/// The current key's file in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The directory of every key used so far, by id.
pub const KEYS_DIR: &str = "secrets.keys";

const KEY_LEN: usize = 32;

/// Why sealed values did not open. Messages name key ids, never values.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "sealed with key {0}, which this server does not have: restore {KEYS_DIR}/{0}.key \
         (or the secrets.key of that time) into the data directory"
    )]
    UnknownKey(String),
    #[error(
        "sealed values do not open with key {0}: the stored object was altered or moved \
         to another name (the project and name are authenticated)"
    )]
    Corrupt(String),
}

struct Key {
    id: String,
    aead: LessSafeKey,
}

struct Keys {
    current: Arc<Key>,
    all: HashMap<String, Arc<Key>>,
}

/// The server's secret keys: one current (sealing) key and every older one (opening).
pub struct Keyring {
    dir: PathBuf,
    keys: RwLock<Keys>,
    rng: SystemRandom,
}

/// The id of a key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

fn make_key(bytes: &[u8]) -> Result<Key> {
    if bytes.len() != KEY_LEN {
        bail!(
            "a secrets key is {KEY_LEN} bytes, this one has {}",
            bytes.len()
        );
    }
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| anyhow::anyhow!("AES-256-GCM refused the key"))?;
    Ok(Key {
        id: key_id(bytes),
        aead: LessSafeKey::new(unbound),
    })
}

/// Write `contents` to `path` owner-only and atomically: a temporary file beside it,
/// fsynced, renamed over `path`, then the directory fsynced. A crash leaves the old file
/// or the new one, never a half-written key.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secrets");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

fn read_key_file(path: &Path) -> Result<Key> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "a secrets key was open to other users (mode {mode:o}); setting 600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(
                || format!("cannot restrict {} to mode 600; chmod it", path.display()),
            )?;
        }
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    make_key(&bytes).with_context(|| format!("{} is not a secrets key", path.display()))
}

impl Keyring {
    /// The keys of `data_dir`: `secrets.key` (created, 0600, when absent) and every key in
    /// `secrets.keys/`.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let rng = SystemRandom::new();
        let keys_dir = data_dir.join(KEYS_DIR);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&keys_dir)
            .with_context(|| format!("cannot create {}", keys_dir.display()))?;
        let key_file = data_dir.join(KEY_FILE);
        if !key_file.exists() {
            let bytes = random_key(&rng)?;
            let id = key_id(&bytes);
            write_atomic(&keys_dir.join(format!("{id}.key")), &bytes)?;
            write_atomic(&key_file, &bytes)?;
            tracing::info!(key_id = %id, path = %key_file.display(), "created the secrets key");
        }
        let current = Arc::new(read_key_file(&key_file)?);
        let mut all = HashMap::new();
        for entry in std::fs::read_dir(&keys_dir)
            .with_context(|| format!("cannot read {}", keys_dir.display()))?
        {
            let path = entry?.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
            else {
                continue;
            };
            let key = read_key_file(&path)?;
            if key.id != stem {
                bail!(
                    "{} holds key {}, not {stem}: a key file is named by its id; rename it",
                    path.display(),
                    key.id
                );
            }
            all.insert(key.id.clone(), Arc::new(key));
        }
        if !all.contains_key(&current.id) {
            // A key file from before `secrets.keys/` existed, or restored by hand: keep a copy.
            let bytes = std::fs::read(&key_file)?;
            write_atomic(&keys_dir.join(format!("{}.key", current.id)), &bytes)?;
        }
        all.insert(current.id.clone(), Arc::clone(&current));
        Ok(Self {
            dir: data_dir.to_owned(),
            keys: RwLock::new(Keys { current, all }),
            rng,
        })
    }

    /// The id of the key new seals use.
    pub fn current_id(&self) -> String {
        self.keys
            .read()
            .expect("keyring poisoned")
            .current
            .id
            .clone()
    }

    /// Ids of every key the server holds, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys
            .read()
            .expect("keyring poisoned")
            .all
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Seal `data` (key → base64 value) under the current key; `aad` (the object's
    /// `project/name`) is authenticated with it.
    pub fn seal(&self, aad: &str, data: &BTreeMap<String, String>) -> Result<Sealed, SealError> {
        let key = Arc::clone(&self.keys.read().expect("keyring poisoned").current);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
        let mut in_out = serde_json::to_vec(data).expect("a map of strings serializes");
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| SealError)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(Sealed {
            key_id: key.id.clone(),
            nonce: b64.encode(nonce),
            ciphertext: b64.encode(&in_out),
        })
    }

    /// Open what [`Keyring::seal`] sealed with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &Sealed) -> Result<BTreeMap<String, String>, OpenError> {
        let key = self
            .keys
            .read()
            .expect("keyring poisoned")
            .all
            .get(&sealed.key_id)
            .cloned()
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let corrupt = || OpenError::Corrupt(sealed.key_id.clone());
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce: [u8; NONCE_LEN] = b64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let mut in_out = b64.decode(&sealed.ciphertext).map_err(|_| corrupt())?;
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| corrupt())?;
        serde_json::from_slice(plain).map_err(|_| corrupt())
    }

    /// A new current key: written to `secrets.keys/<id>.key`, then atomically to
    /// `secrets.key`, then used for every new seal. Older keys stay (they open what is
    /// still sealed under them). Returns the new key's id.
    pub fn rotate(&self) -> Result<String> {
        let bytes = random_key(&self.rng)?;
        let key = make_key(&bytes)?;
        let id = key.id.clone();
        write_atomic(&self.dir.join(KEYS_DIR).join(format!("{id}.key")), &bytes)?;
        write_atomic(&self.dir.join(KEY_FILE), &bytes)?;
        let key = Arc::new(key);
        let mut keys = self.keys.write().expect("keyring poisoned");
        keys.all.insert(id.clone(), Arc::clone(&key));
        keys.current = key;
        tracing::info!(key_id = %id, "rotated the secrets key");
        Ok(id)
    }
}

/// The system's random generator failed (nothing was sealed).
#[derive(Debug, thiserror::Error)]
#[error("the system random generator or AES-GCM failed; nothing was sealed")]
pub struct SealError;

fn random_key(rng: &SystemRandom) -> Result<[u8; KEY_LEN]> {
    let mut bytes = [0u8; KEY_LEN];
    rng.fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, String> {
        BTreeMap::from([("password".to_owned(), "aHVudGVyMg==".to_owned())])
    }

    #[test]
    fn seals_opens_and_authenticates_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load_or_create(dir.path()).expect("keyring");
        let sealed = ring.seal("finance/db", &data()).expect("seal");
        assert_eq!(sealed.key_id, ring.current_id());
        assert!(!sealed.ciphertext.contains("aHVudGVyMg"));
        assert_eq!(ring.open("finance/db", &sealed).expect("open"), data());
        assert!(matches!(
            ring.open("finance/other", &sealed),
            Err(OpenError::Corrupt(_))
        ));
        // Two seals of the same values differ (random nonces).
        assert_ne!(ring.seal("finance/db", &data()).expect("seal"), sealed);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_survive_a_restart_and_a_rotation() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load_or_create(dir.path()).expect("keyring");
        let first = ring.current_id();
        let sealed = ring.seal("p/s", &data()).expect("seal");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = ring.rotate().expect("rotate");
        assert_ne!(first, second);
        let again = Keyring::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.current_id(), second);
        assert_eq!(again.ids().len(), 2);
        assert_eq!(again.open("p/s", &sealed).expect("old key opens"), data());
    }
}
