//! Debian packages through the ordinary clients: `apt-get download` of an
//! exact `name=version`, `apt-cache` for versions, `dpkg-deb` to unpack.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec::{self, ExecError, APT_CACHE, APT_GET, DPKG, DPKG_DEB};

/// A Debian binary package at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageRef {
    /// Package name, e.g. `linux-image-6.1.0-50-cloud-amd64-unsigned`.
    pub name: String,
    /// Debian version, e.g. `6.1.176-1`.
    pub version: String,
}

impl PackageRef {
    /// A package at a version.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl std::fmt::Display for PackageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.version)
    }
}

/// Errors from apt and dpkg.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// `apt-get download` failed for a package.
    #[error("The Debian package {package} could not be downloaded (is it still in the archive? `apt-cache policy {}` lists the versions apt knows; run `apt-get update` if the lists are old):\n{log_tail}", package.name)]
    Download {
        /// The package that failed.
        package: PackageRef,
        /// The end of apt-get's output.
        log_tail: String,
    },
    /// apt knows no version of a package.
    #[error("apt knows no version of the Debian package `{0}` (run `apt-get update`?).")]
    Unknown(String),
    /// A `.deb` could not be unpacked.
    #[error("The package file {path} could not be unpacked.")]
    Extract {
        /// The `.deb`.
        path: PathBuf,
        /// What dpkg-deb said.
        #[source]
        source: ExecError,
    },
    /// Running apt or dpkg failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// File system error around a download.
    #[error("File system error in {path}.")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, AptError>;

/// Downloads `package` into the empty directory `dest` and returns the path
/// of the `.deb` (apt-get checks it against the archive's signed index).
pub fn download(package: &PackageRef, dest: &Path) -> Result<PathBuf> {
    let spec = package.to_string();
    log::info!("downloading {spec}");
    match exec::run(
        APT_GET,
        ["download", "-q", spec.as_str()],
        Some(dest),
        &format!("apt-get download {spec}"),
    ) {
        Ok(_) => {}
        Err(ExecError::Failed { log_tail, .. }) => {
            return Err(AptError::Download {
                package: package.clone(),
                log_tail,
            })
        }
        Err(e) => return Err(e.into()),
    }
    let entries = std::fs::read_dir(dest).map_err(|source| AptError::Io {
        path: dest.into(),
        source,
    })?;
    let prefix = format!("{}_", package.name);
    for entry in entries {
        let entry = entry.map_err(|source| AptError::Io {
            path: dest.into(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(entry.path());
        }
    }
    Err(AptError::Download {
        package: package.clone(),
        log_tail: "  apt-get reported success but left no .deb file\n".into(),
    })
}

/// Unpacks the data of a `.deb` into `dest` (`dpkg-deb -x`).
pub fn extract(deb: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|source| AptError::Io {
        path: dest.into(),
        source,
    })?;
    let args: [&std::ffi::OsStr; 3] = ["-x".as_ref(), deb.as_os_str(), dest.as_os_str()];
    exec::run(
        DPKG_DEB,
        args,
        None,
        &format!("dpkg-deb -x {}", deb.display()),
    )
    .map_err(|source| AptError::Extract {
        path: deb.into(),
        source,
    })?;
    Ok(())
}

/// One control field of a `.deb` (e.g. `Depends`), if present.
pub fn control_field(deb: &Path, field: &str) -> Result<Option<String>> {
    let args: [&std::ffi::OsStr; 3] = ["-f".as_ref(), deb.as_os_str(), field.as_ref()];
    let out = exec::run(
        DPKG_DEB,
        args,
        None,
        &format!("dpkg-deb -f {} {field}", deb.display()),
    )?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((!text.is_empty()).then_some(text))
}

/// The versions of `name` that apt can download, newest first.
pub fn available_versions(name: &str) -> Result<Vec<String>> {
    let out = exec::run(
        APT_CACHE,
        ["madison", name],
        None,
        &format!("apt-cache madison {name}"),
    )?;
    let mut versions: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('|').map(str::trim);
        let (Some(pkg), Some(ver)) = (cols.next(), cols.next()) else {
            continue;
        };
        if pkg == name && !versions.iter().any(|v| v == ver) {
            versions.push(ver.to_string());
        }
    }
    sort_versions_desc(&mut versions)?;
    Ok(versions)
}

/// The version `apt-get download NAME` would fetch (asked once per process).
pub fn candidate_version(name: &str) -> Result<String> {
    static MEMO: std::sync::Mutex<BTreeMap<String, String>> =
        std::sync::Mutex::new(BTreeMap::new());
    if let Some(v) = MEMO.lock().ok().and_then(|m| m.get(name).cloned()) {
        return Ok(v);
    }
    let version = query_candidate(name)?;
    if let Ok(mut m) = MEMO.lock() {
        m.insert(name.to_string(), version.clone());
    }
    Ok(version)
}

fn query_candidate(name: &str) -> Result<String> {
    let out = exec::run(
        APT_CACHE,
        ["policy", name],
        None,
        &format!("apt-cache policy {name}"),
    )?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| v.trim().to_string())
        })
        .filter(|v| v != "(none)")
        .ok_or_else(|| AptError::Unknown(name.to_string()))
}

/// Package names matching an extended regular expression (`apt-cache search --names-only`).
pub fn search_names(regex: &str) -> Result<Vec<String>> {
    let out = exec::run(
        APT_CACHE,
        ["search", "--names-only", regex],
        None,
        "apt-cache search",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Compares two Debian versions with `dpkg --compare-versions`.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering> {
    if a == b {
        return Ok(Ordering::Equal);
    }
    let program = exec::find_tool(DPKG)?;
    let status = std::process::Command::new(program)
        .args(["--compare-versions", a, "lt", b])
        .status()
        .map_err(|source| ExecError::Spawn {
            program: "dpkg".into(),
            source,
        })?;
    Ok(if status.success() {
        Ordering::Less
    } else {
        Ordering::Greater
    })
}

fn sort_versions_desc(versions: &mut [String]) -> Result<()> {
    // Insertion sort: the lists are short and the comparison can fail.
    for i in 1..versions.len() {
        let mut j = i;
        while j > 0 && compare_versions(&versions[j - 1], &versions[j])? == Ordering::Less {
            versions.swap(j - 1, j);
            j -= 1;
        }
    }
    Ok(())
}

/// Parses a `Depends` field into package names (alternatives: the first one;
/// version constraints and architecture qualifiers dropped).
pub fn depends_names(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|clause| clause.split('|').next())
        .map(|alt| {
            let alt = alt.trim();
            let end = alt.find([' ', '(', ':']).unwrap_or(alt.len());
            alt[..end].to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_are_parsed() {
        let d = "debconf (>= 0.5) | debconf-2.0, libbpf1 (>= 1:0.6.0), libc6 (>= 2.34), libcap2-bin, zlib1g:amd64";
        assert_eq!(
            depends_names(d),
            ["debconf", "libbpf1", "libc6", "libcap2-bin", "zlib1g"]
        );
        assert!(depends_names("").is_empty());
    }

    #[test]
    fn package_ref_displays_as_apt_spec() {
        assert_eq!(PackageRef::new("a", "1.0-1").to_string(), "a=1.0-1");
    }
}
