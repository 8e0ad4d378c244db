//! The guest's user space from Debian packages: static busybox and the real
//! iproute2 `ip` with every shared library it needs. Libraries are found by
//! following each ELF's `DT_NEEDED` entries (and the program interpreter)
//! recursively through the packages named in the `Depends` fields.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apt::{self, PackageRef};
use crate::kernel::fetch_deb;
use crate::step::{BuildContext, StepOutput};
use crate::{Error, Result};

const USERLAND_RECIPE: u32 = 1;
/// Directories the dynamic loader searches, inside a package tree.
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// The Debian package with static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The Debian package with iproute2's `ip`.
pub const IPROUTE2_PACKAGE: &str = "iproute2";

/// A file of the guest user space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFile {
    /// Absolute path in the guest.
    pub guest_path: String,
    /// Permission bits.
    pub mode: u32,
    /// The stored object's role in the userland step record.
    pub role: String,
}

/// The guest user space: files in the cache and the packages they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userland {
    /// Files with their cache paths.
    pub files: Vec<(UserFile, PathBuf, String)>,
    /// Packages used, with versions.
    pub packages: Vec<PackageRef>,
}

/// `DT_NEEDED` entries and the program interpreter of an ELF.
pub fn elf_needs(data: &[u8]) -> std::result::Result<(Vec<String>, Option<String>), String> {
    let elf = goblin::elf::Elf::parse(data).map_err(|e| e.to_string())?;
    Ok((
        elf.libraries.iter().map(|s| s.to_string()).collect(),
        elf.interpreter.map(str::to_string),
    ))
}

/// Resolves `path` inside the tree at `root`, following symlinks (absolute
/// ones relative to `root`). Returns the real file, if it stays inside.
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut current = PathBuf::from(path.trim_start_matches('/'));
    for _ in 0..16 {
        let full = root.join(&current);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(full);
        }
        let target = std::fs::read_link(&full).ok()?;
        current = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_path_buf()
        } else {
            current.parent().unwrap_or(Path::new("")).join(target)
        };
        // Normalise `..` without leaving the root.
        let mut norm = PathBuf::new();
        for c in current.components() {
            match c {
                Component::ParentDir => {
                    norm.pop();
                }
                Component::Normal(p) => norm.push(p),
                _ => {}
            }
        }
        current = norm;
    }
    None
}

/// Finds a library by soname in an unpacked package: (guest path, real file).
fn find_library(root: &Path, soname: &str) -> Option<(String, PathBuf)> {
    LIB_DIRS.iter().find_map(|dir| {
        let guest = format!("/{dir}/{soname}");
        resolve_in_root(root, &guest).map(|real| (guest, real))
    })
}

/// The package Debian's library naming policy gives a soname
/// (`libfoo.so.1` -> `libfoo1`, `libfoo1.so.2` -> `libfoo1-2`).
pub fn policy_package_name(soname: &str) -> Option<String> {
    let (base, version) = soname.split_once(".so.")?;
    let sep = if base.ends_with(|c: char| c.is_ascii_digit()) {
        "-"
    } else {
        ""
    };
    Some(
        format!("{base}{sep}{version}")
            .to_lowercase()
            .replace('_', "-"),
    )
}

struct Unpacked {
    package: PackageRef,
    root: PathBuf,
    depends: Vec<String>,
}

fn unpack(ctx: &BuildContext, name: &str, scratch: &Path) -> Result<Unpacked> {
    let version = apt::candidate_version(name)?;
    let package = PackageRef::new(name, version);
    let deb = fetch_deb(ctx, &package)?;
    let root = scratch.join(name);
    apt::extract(&deb, &root)?;
    let depends = apt::control_field(&deb, "Depends")?
        .map(|d| apt::depends_names(&d))
        .unwrap_or_default();
    let pre = apt::control_field(&deb, "Pre-Depends")?
        .map(|d| apt::depends_names(&d))
        .unwrap_or_default();
    Ok(Unpacked {
        package,
        root,
        depends: pre.into_iter().chain(depends).collect(),
    })
}

/// Builds (or reuses) the user space: busybox, `ip` and its libraries.
pub fn userland(ctx: &BuildContext) -> Result<Userland> {
    let busybox_version = apt::candidate_version(BUSYBOX_PACKAGE)?;
    let ip_version = apt::candidate_version(IPROUTE2_PACKAGE)?;
    let inputs = json!({
        "busybox": PackageRef::new(BUSYBOX_PACKAGE, &busybox_version),
        "iproute2": PackageRef::new(IPROUTE2_PACKAGE, &ip_version),
        "recipe": USERLAND_RECIPE,
    });
    let record = ctx.step(
        "userland",
        "user space: busybox, ip and its libraries",
        inputs,
        |scratch| build_userland(ctx, scratch),
    )?;
    let files: Vec<UserFile> = serde_json::from_value(record.meta["files"].clone())
        .map_err(|e| Error::Input(format!("the cached userland record is unreadable: {e}")))?;
    let packages: Vec<PackageRef> = serde_json::from_value(record.meta["packages"].clone())
        .map_err(|e| Error::Input(format!("the cached userland record is unreadable: {e}")))?;
    let mut out = Vec::new();
    for f in files {
        let obj = record
            .outputs
            .get(&f.role)
            .ok_or_else(|| Error::Input(format!("the cached userland record lacks {}", f.role)))?;
        let path = ctx.cache.object_path(obj);
        let sha = obj.sha256.clone();
        out.push((f, path, sha));
    }
    Ok(Userland {
        files: out,
        packages,
    })
}

fn build_userland(ctx: &BuildContext, scratch: &Path) -> Result<StepOutput> {
    let mut output = StepOutput::default();
    let mut files: Vec<UserFile> = Vec::new();
    let mut unpacked: Vec<Unpacked> = Vec::new();

    let busybox = unpack(ctx, BUSYBOX_PACKAGE, scratch)?;
    let bb = resolve_in_root(&busybox.root, "/bin/busybox")
        .ok_or_else(|| Error::Input(format!("{} has no /bin/busybox", busybox.package)))?;
    output = output.file("bin/busybox", bb, "busybox");
    files.push(UserFile {
        guest_path: "/bin/busybox".into(),
        mode: 0o755,
        role: "bin/busybox".into(),
    });
    unpacked.push(busybox);

    let iproute = unpack(ctx, IPROUTE2_PACKAGE, scratch)?;
    let ip = resolve_in_root(&iproute.root, "/bin/ip")
        .or_else(|| resolve_in_root(&iproute.root, "/usr/bin/ip"))
        .or_else(|| resolve_in_root(&iproute.root, "/sbin/ip"))
        .ok_or_else(|| Error::Input(format!("{} has no ip binary", iproute.package)))?;
    let ip_bytes = std::fs::read(&ip).map_err(|source| Error::Io {
        path: ip.clone(),
        source,
    })?;
    output = output.file("bin/ip", &ip, "ip");
    files.push(UserFile {
        guest_path: "/bin/ip".into(),
        mode: 0o755,
        role: "bin/ip".into(),
    });
    unpacked.push(iproute);

    // Breadth-first over needed sonames: (soname, index of the package whose ELF needs it).
    let (needed, interp) =
        elf_needs(&ip_bytes).map_err(|e| Error::Input(format!("ip is not a valid ELF: {e}")))?;
    let mut queue: Vec<(String, usize)> = needed.into_iter().map(|n| (n, 1)).collect();
    if let Some(interp) = interp {
        queue.push((interp, 1));
    }
    let mut provided: BTreeSet<String> = BTreeSet::new();
    let mut tried: BTreeSet<String> = unpacked.iter().map(|u| u.package.name.clone()).collect();
    while !queue.is_empty() {
        let (soname, owner) = queue.remove(0);
        if provided.contains(&soname) {
            continue;
        }
        let is_path = soname.starts_with('/');
        let locate = |u: &Unpacked| -> Option<(String, PathBuf)> {
            if is_path {
                resolve_in_root(&u.root, &soname).map(|real| (soname.clone(), real))
            } else {
                find_library(&u.root, &soname)
            }
        };
        let mut found = unpacked
            .iter()
            .enumerate()
            .find_map(|(i, u)| locate(u).map(|f| (i, f)));
        if found.is_none() {
            // Candidates: the owner's dependencies, policy name first.
            let mut candidates: Vec<String> = unpacked[owner].depends.clone();
            if let Some(policy) = policy_package_name(&soname) {
                candidates.sort_by_key(|c| *c != policy);
            }
            if is_path || soname.starts_with("libc.so") {
                candidates.insert(0, "libc6".into());
            }
            for name in candidates {
                if !tried.insert(name.clone()) {
                    continue;
                }
                log::debug!("looking for {soname} in {name}");
                let u = match unpack(ctx, &name, scratch) {
                    Ok(u) => u,
                    Err(e) => {
                        log::debug!("skipping {name}: {e}");
                        continue;
                    }
                };
                unpacked.push(u);
                let idx = unpacked.len() - 1;
                if let Some(f) = locate(&unpacked[idx]) {
                    found = Some((idx, f));
                    break;
                }
            }
        }
        let (idx, (guest_path, real)) = found.ok_or_else(|| {
            Error::Input(format!(
                "no package among the dependencies of {} provides {soname}",
                unpacked[owner].package.name
            ))
        })?;
        let bytes = std::fs::read(&real).map_err(|source| Error::Io {
            path: real.clone(),
            source,
        })?;
        let (needed, _) = elf_needs(&bytes)
            .map_err(|e| Error::Input(format!("{soname} is not a valid ELF: {e}")))?;
        queue.extend(needed.into_iter().map(|n| (n, idx)));
        // One stored object per real file; several guest paths may share it
        // (the interpreter is both /lib64/ld-linux-x86-64.so.2 and libc's DT_NEEDED).
        let role = match output.files.iter().find(|(_, p, _)| *p == real) {
            Some((role, _, _)) => role.clone(),
            None => {
                let name = Path::new(&guest_path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let role = format!("lib:{}", guest_path.trim_start_matches('/'));
                output = output.file(&role, &real, name);
                role
            }
        };
        if !files.iter().any(|f| f.guest_path == guest_path) {
            files.push(UserFile {
                guest_path,
                mode: 0o755,
                role,
            });
        }
        provided.insert(soname);
    }
    // Only packages that contributed files (or were the roots) are recorded.
    let used: BTreeSet<usize> = files
        .iter()
        .filter_map(|f| {
            output
                .files
                .iter()
                .find(|(r, _, _)| *r == f.role)
                .map(|(_, p, _)| p)
        })
        .filter_map(|p| unpacked.iter().position(|u| p.starts_with(&u.root)))
        .collect();
    let packages: Vec<PackageRef> = used
        .into_iter()
        .map(|i| unpacked[i].package.clone())
        .collect();
    let by_role: BTreeMap<&str, &str> = files
        .iter()
        .map(|f| (f.role.as_str(), f.guest_path.as_str()))
        .collect();
    log::debug!("userland files: {by_role:?}");
    Ok(output.meta(json!({ "files": files, "packages": packages })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_follow_debian() {
        assert_eq!(
            policy_package_name("libbpf.so.1").as_deref(),
            Some("libbpf1")
        );
        assert_eq!(
            policy_package_name("libmnl.so.0").as_deref(),
            Some("libmnl0")
        );
        assert_eq!(
            policy_package_name("libcap.so.2").as_deref(),
            Some("libcap2")
        );
        assert_eq!(
            policy_package_name("libfoo1.so.2").as_deref(),
            Some("libfoo1-2")
        );
        assert_eq!(policy_package_name("ld-linux"), None);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(root.join("lib64")).unwrap();
        std::fs::write(root.join("lib/x86_64-linux-gnu/ld-2.36.so"), b"ld").unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-2.36.so",
            root.join("lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        std::os::unix::fs::symlink("ld-2.36.so", root.join("lib/x86_64-linux-gnu/libz.so.1"))
            .unwrap();
        std::os::unix::fs::symlink(
            "../../../etc/passwd",
            root.join("lib/x86_64-linux-gnu/evil.so.1"),
        )
        .unwrap();
        assert_eq!(
            resolve_in_root(root, "/lib64/ld-linux-x86-64.so.2").unwrap(),
            root.join("lib/x86_64-linux-gnu/ld-2.36.so")
        );
        let (guest, _) = find_library(root, "libz.so.1").unwrap();
        assert_eq!(guest, "/lib/x86_64-linux-gnu/libz.so.1");
        assert!(
            find_library(root, "evil.so.1").is_none(),
            "a link out of the root resolves to nothing there"
        );
        assert!(find_library(root, "missing.so.1").is_none());
    }

    #[test]
    fn non_elf_has_no_needs() {
        assert!(elf_needs(b"#!/bin/sh").is_err());
    }
}
