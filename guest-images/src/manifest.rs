//! The build manifest: every artifact of a build with its path, size,
//! SHA-256 and the Debian packages (name and version) it was made from,
//! written as JSON to `<cache>/manifest.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apt::PackageRef;
use crate::cache::{self, Cache, ObjectRef};
use crate::kernel::{KernelArtifacts, Series};
use crate::{Error, Result};

/// Manifest format version.
pub const MANIFEST_FORMAT: u32 = 1;

/// Every artifact of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// `guest-images <version>`.
    pub generator: String,
    /// Seconds since the Unix epoch when written.
    pub created_unix: u64,
    /// The cache root the paths point into.
    pub cache_root: PathBuf,
    /// The artifacts.
    pub artifacts: Vec<Artifact>,
}

/// One file of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Unique id: `<series>/<profile>/<role>`, e.g. `6.1/stock/vmlinux`.
    pub id: String,
    /// Kernel series.
    pub series: Series,
    /// `stock` or `prefix` (the pre-fix driver variant).
    pub profile: String,
    /// What it is: `vmlinuz`, `vmlinux`, `config`, `system_map`, `module`,
    /// `modules.builtin`, `initramfs`, ...
    pub kind: String,
    /// Absolute path in the cache.
    pub path: PathBuf,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The Debian packages it was made from.
    pub packages: Vec<PackageRef>,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            format: MANIFEST_FORMAT,
            generator: format!("guest-images {}", env!("CARGO_PKG_VERSION")),
            created_unix: 0,
            cache_root: PathBuf::new(),
            artifacts: Vec::new(),
        }
    }
}

impl Manifest {
    /// An empty manifest for a cache.
    pub fn new(cache: &Cache) -> Self {
        Self {
            cache_root: cache.root().to_path_buf(),
            ..Self::default()
        }
    }

    /// Adds one stored object.
    pub fn add(
        &mut self,
        cache: &Cache,
        series: Series,
        profile: &str,
        role: &str,
        obj: &ObjectRef,
        packages: Vec<PackageRef>,
    ) {
        let kind = role.split(':').next().unwrap_or(role).to_string();
        let id = format!("{series}/{profile}/{role}");
        self.artifacts.retain(|a| a.id != id);
        self.artifacts.push(Artifact {
            id,
            series,
            profile: profile.to_string(),
            kind,
            path: cache.object_path(obj),
            sha256: obj.sha256.clone(),
            size: obj.size,
            packages,
        });
    }

    /// Adds the files of a stock kernel under profile `stock`.
    pub fn add_kernel(&mut self, cache: &Cache, kernel: &KernelArtifacts) {
        for (role, obj) in &kernel.objects {
            self.add(
                cache,
                kernel.series,
                "stock",
                role,
                obj,
                vec![kernel.package.clone()],
            );
        }
    }

    /// An artifact by id.
    pub fn get(&self, id: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.id == id)
    }

    /// Writes `<cache>/manifest.json` (sorted by id) and returns its path.
    pub fn write(&mut self, cache: &Cache) -> Result<PathBuf> {
        self.artifacts.sort_by(|a, b| a.id.cmp(&b.id));
        self.created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = cache.root().join("manifest.json");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Input(format!("manifest: {e}")))?;
        cache::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Reads a manifest file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Input(format!("{} is not a manifest: {e}", path.display())))
    }

    /// Points `<cache>/out/<series>/<profile>/<file>` at each artifact, so
    /// people find the latest build without reading JSON.
    pub fn link_out(&self, cache: &Cache) -> Result<()> {
        for a in &self.artifacts {
            let Some(file) = a.path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let role = a.id.rsplit('/').next().unwrap_or(&a.kind);
            // Modules keep their file name; other roles are named by role.
            let link = if a.kind == "module" {
                file.clone()
            } else {
                role.to_string()
            };
            let obj = ObjectRef {
                name: file,
                sha256: a.sha256.clone(),
                size: a.size,
            };
            cache.link_out(&format!("{}/{}", a.series, a.profile), &link, &obj)?;
        }
        Ok(())
    }

    /// Ids of artifacts whose file is missing or no longer matches its hash.
    pub fn verify(&self) -> Vec<String> {
        self.artifacts
            .iter()
            .filter(|a| !matches!(cache::hash_file(&a.path), Ok((h, s)) if h == a.sha256 && s == a.size))
            .map(|a| a.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let obj = cache.store_bytes(b"kernel", "vmlinux").unwrap();
        let mut m = Manifest::new(&cache);
        m.add(
            &cache,
            Series::V6_1,
            "stock",
            "vmlinux",
            &obj,
            vec![PackageRef::new("p", "1")],
        );
        m.add(&cache, Series::V6_1, "stock", "vmlinux", &obj, vec![]);
        assert_eq!(m.artifacts.len(), 1, "same id replaces");
        let path = m.write(&cache).unwrap();
        let back = Manifest::read(&path).unwrap();
        assert_eq!(back, m);
        assert!(back.verify().is_empty());
        std::fs::write(cache.object_path(&obj), b"KERNEL").unwrap();
        assert_eq!(back.verify(), ["6.1/stock/vmlinux"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"sha256\"") && text.contains("\"packages\""),
            "{text}"
        );
    }
}
