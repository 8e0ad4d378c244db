//! The content-addressed cache: immutable objects stored under their SHA-256,
//! step records that name the objects a build step made from its inputs,
//! scratch directories and file locks.
//!
//! Layout under the cache root:
//!
//! ```text
//! objects/<sha256>/<name>      an artifact; the directory is its content hash
//! steps/<step>/<key>.json      what a step with these inputs produced (StepRecord)
//! locks/<step>-<key>.lock      held while that step runs (flock)
//! work/                        scratch directories, removed after each step
//! out/<profile>/<name>         symlinks to the latest build's artifacts, for people
//! manifest.json                the latest build's manifest
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variable that overrides the cache location.
pub const CACHE_ENV: &str = "VNETLAB_CACHE";
/// Directory name used under the user's cache directory.
pub const CACHE_DIR_NAME: &str = "virtio-net-lab";

/// Errors from the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache location could be derived from the environment.
    #[error("No cache directory could be chosen: pass --cache-dir or set VNETLAB_CACHE, XDG_CACHE_HOME or HOME.")]
    NoLocation,
    /// A file system operation failed.
    #[error("Cache file operation failed on {path}.")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A step record could not be parsed or written.
    #[error("The step record {path} is not valid JSON.")]
    Record {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, CacheError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A stored object: its name, content hash and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// File name inside the object directory, e.g. `vmlinux`.
    pub name: String,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What a build step produced from its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name, e.g. `kernel-extract`.
    pub step: String,
    /// Hex SHA-256 of the canonical inputs.
    pub key: String,
    /// The inputs, as given (for people reading the cache).
    pub inputs: serde_json::Value,
    /// Output objects by role.
    pub outputs: BTreeMap<String, ObjectRef>,
    /// Facts the step found (versions, module dependencies, ...).
    pub meta: serde_json::Value,
    /// How long the step took, in milliseconds.
    pub elapsed_ms: u64,
}

/// A cache rooted at a directory.
///
/// Objects are checked against their SHA-256 before reuse. A full hash is
/// remembered in a stamp (size, mtime, ctime, inode) next to the object; while
/// the file's metadata still equals the stamp the hash is not recomputed (any
/// write to the file changes its ctime). [`Cache::with_full_verify`] turns the
/// shortcut off.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    full_verify: bool,
}

impl Cache {
    /// Opens (creating if needed) a cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["objects", "steps", "locks", "work", "out"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Self {
            root,
            full_verify: false,
        })
    }

    /// Always re-hash objects before reuse, ignoring verification stamps.
    pub fn with_full_verify(mut self, full: bool) -> Self {
        self.full_verify = full;
        self
    }

    /// Opens the cache at `explicit` if given, else at [`Cache::default_root`].
    pub fn open_default(explicit: Option<PathBuf>) -> Result<Self> {
        match explicit {
            Some(root) => Self::open(root),
            None => Self::open(Self::default_root()?),
        }
    }

    /// `$VNETLAB_CACHE`, else `$XDG_CACHE_HOME/virtio-net-lab`, else
    /// `$HOME/.cache/virtio-net-lab`.
    pub fn default_root() -> Result<PathBuf> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(dir) = var(CACHE_ENV) {
            return Ok(dir);
        }
        if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
            return Ok(dir.join(CACHE_DIR_NAME));
        }
        var("HOME")
            .map(|home| home.join(".cache").join(CACHE_DIR_NAME))
            .ok_or(CacheError::NoLocation)
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object with this hash and name lives.
    pub fn object_path(&self, obj: &ObjectRef) -> PathBuf {
        self.root.join("objects").join(&obj.sha256).join(&obj.name)
    }

    /// Moves (or copies, across file systems) `src` into the store as `name`.
    pub fn store_file(&self, src: &Path, name: &str) -> Result<ObjectRef> {
        let (sha256, size) = hash_file(src)?;
        let obj = ObjectRef {
            name: name.to_string(),
            sha256,
            size,
        };
        let dest = self.object_path(&obj);
        if dest.exists()
            && hash_file(&dest)
                .map(|(h, _)| h == obj.sha256)
                .unwrap_or(false)
        {
            return Ok(obj);
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        if std::fs::rename(src, &tmp).is_err() {
            std::fs::copy(src, &tmp).map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        Ok(obj)
    }

    /// Stores `bytes` as an object called `name`.
    pub fn store_bytes(&self, bytes: &[u8], name: &str) -> Result<ObjectRef> {
        let sha256 = hex(&Sha256::digest(bytes));
        let obj = ObjectRef {
            name: name.to_string(),
            sha256,
            size: bytes.len() as u64,
        };
        let dest = self.object_path(&obj);
        if self.verify(&obj) {
            return Ok(obj);
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        Ok(obj)
    }

    /// True when the object exists with the recorded size and hash.
    pub fn verify(&self, obj: &ObjectRef) -> bool {
        let path = self.object_path(obj);
        let meta = match path.metadata() {
            Ok(m) if m.len() == obj.size => m,
            _ => return false,
        };
        let stamp_path = self.stamp_path(obj);
        let stamp = stamp_of(&meta);
        if !self.full_verify
            && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        {
            return true;
        }
        let ok = matches!(hash_file(&path), Ok((h, _)) if h == obj.sha256);
        if ok {
            if let Err(e) = std::fs::write(&stamp_path, stamp) {
                log::debug!("could not write {}: {e}", stamp_path.display());
            }
        }
        ok
    }

    fn stamp_path(&self, obj: &ObjectRef) -> PathBuf {
        self.root
            .join("objects")
            .join(&obj.sha256)
            .join(format!(".verified-{}", obj.name))
    }

    /// Removes an object (used when it no longer matches its hash).
    pub fn remove(&self, obj: &ObjectRef) {
        let path = self.object_path(obj);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("could not remove {}: {e}", path.display());
            }
        }
    }

    fn record_path(&self, step: &str, key: &str) -> PathBuf {
        self.root
            .join("steps")
            .join(step)
            .join(format!("{key}.json"))
    }

    /// The record of `step` with input key `key`, if one was saved.
    pub fn load_record(&self, step: &str, key: &str) -> Result<Option<StepRecord>> {
        let path = self.record_path(step, key);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        match serde_json::from_str(&text) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                log::warn!("ignoring unreadable step record {}: {e}", path.display());
                Ok(None)
            }
        }
    }

    /// Saves a step record atomically.
    pub fn save_record(&self, record: &StepRecord) -> Result<()> {
        let path = self.record_path(&record.step, &record.key);
        let text = serde_json::to_string_pretty(record).map_err(|source| CacheError::Record {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes())
    }

    /// A fresh scratch directory under `work/`, removed when dropped.
    pub fn scratch(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let dir = self.root.join("work");
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Takes an exclusive lock named `name`, waiting for other holders (other
    /// processes or threads building the same step).
    pub fn lock(&self, name: &str) -> Result<FileLock> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        loop {
            // SAFETY: flock on a file descriptor we own; it touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(CacheError::Io { path, source: err });
            }
        }
    }

    /// Points `out/<profile>/<name>` at an object, for people browsing the cache.
    pub fn link_out(&self, profile: &str, name: &str, obj: &ObjectRef) -> Result<PathBuf> {
        let dir = self.root.join("out").join(profile);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let link = dir.join(name);
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(self.object_path(obj), &tmp).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &link).map_err(io_err(&link))?;
        Ok(link)
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {}.{} {}.{} {} {}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino(),
        meta.dev()
    )
}

/// An exclusive lock on a file, released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| CacheError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// SHA-256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// SHA-256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_corruption_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let obj = cache.store_bytes(b"hello", "greeting").unwrap();
        assert_eq!(
            obj.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(cache.verify(&obj));
        assert!(cache.verify(&obj), "the stamp shortcut");
        std::fs::write(cache.object_path(&obj), b"jello").unwrap();
        assert!(!cache.verify(&obj), "same size, other bytes");
        assert!(!cache.clone().with_full_verify(true).verify(&obj));
        cache.remove(&obj);
        assert!(!cache.verify(&obj));
    }

    #[test]
    fn store_file_moves_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"data").unwrap();
        let obj = cache.store_file(&src, "f.bin").unwrap();
        assert_eq!(std::fs::read(cache.object_path(&obj)).unwrap(), b"data");
        assert_eq!(obj.size, 4);
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(cache.load_record("s", "k").unwrap().is_none());
        let rec = StepRecord {
            step: "s".into(),
            key: "k".into(),
            inputs: serde_json::json!({"a": 1}),
            outputs: BTreeMap::new(),
            meta: serde_json::Value::Null,
            elapsed_ms: 3,
        };
        cache.save_record(&rec).unwrap();
        assert_eq!(cache.load_record("s", "k").unwrap(), Some(rec));
        std::fs::write(cache.record_path("s", "k"), "{not json").unwrap();
        assert!(
            cache.load_record("s", "k").unwrap().is_none(),
            "a broken record means rebuild"
        );
    }

    #[test]
    fn locks_can_be_retaken() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        drop(cache.lock("x").unwrap());
        drop(cache.lock("x").unwrap());
    }
}
