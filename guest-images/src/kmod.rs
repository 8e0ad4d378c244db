//! Kernel modules: reading `.modinfo` (name, dependencies, vermagic),
//! decompressing `.ko.xz`/`.ko.gz`/`.ko.zst`, finding the virtio networking
//! modules in an unpacked kernel package, ordering them for loading and
//! writing a `modules.dep` that busybox `modprobe` understands.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The modules the virtio-net guest needs, in the order the kernel would
/// resolve them (helpers first). Names use underscores, as `lsmod` does.
pub const NETWORK_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Errors about kernel modules.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The module file is no ELF or has no `.modinfo`.
    #[error("{0} is not a kernel module with a .modinfo section.")]
    NotAModule(String),
    /// A compressed module did not decompress.
    #[error("The compressed module {name} did not decompress: {detail}.")]
    Decompress {
        /// File name.
        name: String,
        /// Why.
        detail: String,
    },
    /// A needed module is neither a file nor built in.
    #[error("The kernel package has no module `{0}` (neither a .ko file nor listed in modules.builtin).")]
    Missing(String),
    /// Dependencies form a cycle or name an unknown module.
    #[error("The dependencies of module `{module}` cannot be satisfied: `{dependency}` is missing or circular.")]
    Dependency {
        /// The module.
        module: String,
        /// The dependency that failed.
        dependency: String,
    },
    /// Reading the module tree failed.
    #[error("Reading {path} failed.")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, KmodError>;

/// What `.modinfo` says about a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModInfo {
    /// `name=`.
    pub name: String,
    /// `depends=`, split.
    pub depends: Vec<String>,
    /// `vermagic=`, trimmed.
    pub vermagic: String,
}

/// Normalises a module name (`virtio-net` and `virtio_net` are the same).
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads `.modinfo` from an uncompressed module.
pub fn modinfo(ko: &[u8], what: &str) -> Result<ModInfo> {
    let not_module = || KmodError::NotAModule(what.to_string());
    let elf = goblin::elf::Elf::parse(ko).map_err(|_| not_module())?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(not_module)?;
    let start = section.sh_offset as usize;
    let data = start
        .checked_add(section.sh_size as usize)
        .and_then(|end| ko.get(start..end))
        .ok_or_else(not_module)?;
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    for entry in data.split(|&b| b == 0) {
        let Ok(text) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some((k, v)) = text.split_once('=') {
            fields.entry(k).or_insert_with(|| v.to_string());
        }
    }
    let name = fields.get("name").cloned().ok_or_else(not_module)?;
    let depends = fields
        .get("depends")
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(canonical_name)
                .collect()
        })
        .unwrap_or_default();
    let vermagic = fields
        .get("vermagic")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    Ok(ModInfo {
        name: canonical_name(&name),
        depends,
        vermagic,
    })
}

/// Returns the uncompressed bytes of a module file, by its extension.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let data = std::fs::read(path).map_err(|source| KmodError::Io {
        path: path.into(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    decompress_module(&name, data)
}

/// Decompresses module bytes according to the file name's extension.
pub fn decompress_module(name: &str, data: Vec<u8>) -> Result<Vec<u8>> {
    let err = |detail: String| KmodError::Decompress {
        name: name.to_string(),
        detail,
    };
    let mut out = Vec::new();
    if name.ends_with(".ko.xz") {
        lzma_rs::xz_decompress(&mut data.as_slice(), &mut out).map_err(|e| err(e.to_string()))?;
    } else if name.ends_with(".ko.gz") {
        flate2::read::GzDecoder::new(data.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
    } else if name.ends_with(".ko.zst") {
        let mut dec =
            ruzstd::StreamingDecoder::new(data.as_slice()).map_err(|e| err(e.to_string()))?;
        dec.read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
    } else {
        return Ok(data);
    }
    Ok(out)
}

/// Module files of an unpacked `/lib/modules/<release>` directory, by name,
/// with their paths relative to that directory (e.g. `kernel/drivers/net/virtio_net.ko.xz`).
pub fn module_files(modules_dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| KmodError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| KmodError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(stem) = module_stem(&path) {
                let rel = path
                    .strip_prefix(modules_dir)
                    .unwrap_or(&path)
                    .to_path_buf();
                found.insert(canonical_name(&stem), rel);
            }
        }
    }
    Ok(found)
}

fn module_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    [".ko", ".ko.xz", ".ko.gz", ".ko.zst"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .map(str::to_string)
}

/// Names of built-in modules from a `modules.builtin` file's text.
pub fn builtin_names(modules_builtin: &str) -> BTreeSet<String> {
    modules_builtin
        .lines()
        .filter_map(|l| {
            Path::new(l.trim())
                .file_name()?
                .to_str()
                .map(str::to_string)
        })
        .filter_map(|n| n.strip_suffix(".ko").map(canonical_name))
        .collect()
}

/// Orders `wanted` modules (with their infos) so that each comes after its
/// dependencies; dependencies that are built in are skipped, a dependency
/// that is not among the infos is pulled in by the caller beforehand.
pub fn load_order(
    infos: &BTreeMap<String, ModInfo>,
    builtin: &BTreeSet<String>,
) -> Result<Vec<String>> {
    fn visit(
        name: &str,
        infos: &BTreeMap<String, ModInfo>,
        builtin: &BTreeSet<String>,
        state: &mut BTreeMap<String, bool>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => {
                return Err(KmodError::Dependency {
                    module: name.into(),
                    dependency: name.into(),
                })
            }
            None => {}
        }
        state.insert(name.to_string(), false);
        let info = infos
            .get(name)
            .ok_or_else(|| KmodError::Missing(name.to_string()))?;
        for dep in &info.depends {
            if builtin.contains(dep) {
                continue;
            }
            if !infos.contains_key(dep) {
                return Err(KmodError::Dependency {
                    module: name.into(),
                    dependency: dep.clone(),
                });
            }
            visit(dep, infos, builtin, state, order).map_err(|e| match e {
                KmodError::Dependency { dependency, .. } => KmodError::Dependency {
                    module: name.into(),
                    dependency,
                },
                other => other,
            })?;
        }
        state.insert(name.to_string(), true);
        order.push(name.to_string());
        Ok(())
    }
    let mut state = BTreeMap::new();
    let mut order = Vec::new();
    // Visit in NETWORK_MODULES order first for a stable, natural order.
    let mut names: Vec<&str> = NETWORK_MODULES
        .iter()
        .copied()
        .filter(|n| infos.contains_key(*n))
        .collect();
    names.extend(
        infos
            .keys()
            .map(String::as_str)
            .filter(|n| !NETWORK_MODULES.contains(n)),
    );
    for name in names {
        visit(name, infos, builtin, &mut state, &mut order)?;
    }
    Ok(order)
}

/// `modules.dep` text for modules installed at `kernel/<name>.ko` paths given
/// in `paths` (relative to `/lib/modules/<release>`).
pub fn modules_dep(
    infos: &BTreeMap<String, ModInfo>,
    paths: &BTreeMap<String, String>,
    builtin: &BTreeSet<String>,
) -> Result<String> {
    let mut out = String::new();
    for (name, info) in infos {
        let path = paths
            .get(name)
            .ok_or_else(|| KmodError::Missing(name.clone()))?;
        // modules.dep lists the transitive closure, nearest first.
        let mut closure: Vec<String> = Vec::new();
        let mut queue: Vec<&str> = info.depends.iter().map(String::as_str).collect();
        while let Some(dep) = queue.first().copied() {
            queue.remove(0);
            if builtin.contains(dep) || closure.iter().any(|c| c == dep) {
                continue;
            }
            let dep_info = infos.get(dep).ok_or_else(|| KmodError::Dependency {
                module: name.clone(),
                dependency: dep.into(),
            })?;
            closure.push(dep.to_string());
            queue.extend(dep_info.depends.iter().map(String::as_str));
        }
        let deps: Vec<&str> = closure
            .iter()
            .filter_map(|d| paths.get(d).map(String::as_str))
            .collect();
        out.push_str(&format!("{path}:"));
        for d in deps {
            out.push(' ');
            out.push_str(d);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, deps: &[&str]) -> ModInfo {
        ModInfo {
            name: name.into(),
            depends: deps.iter().map(|s| s.to_string()).collect(),
            vermagic: "v".into(),
        }
    }

    fn net_infos() -> BTreeMap<String, ModInfo> {
        [
            info("virtio_net", &["virtio_ring", "virtio", "net_failover"]),
            info("net_failover", &["failover"]),
            info("failover", &[]),
            info("virtio", &[]),
            info("virtio_ring", &["virtio"]),
        ]
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect()
    }

    #[test]
    fn load_order_puts_dependencies_first() {
        let order = load_order(&net_infos(), &BTreeSet::new()).unwrap();
        assert_eq!(
            order,
            [
                "virtio",
                "virtio_ring",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
    }

    #[test]
    fn builtin_dependencies_are_skipped() {
        let mut infos = net_infos();
        infos.remove("virtio");
        infos.remove("virtio_ring");
        let builtin: BTreeSet<String> = ["virtio".to_string(), "virtio_ring".to_string()].into();
        let order = load_order(&infos, &builtin).unwrap();
        assert_eq!(order, ["failover", "net_failover", "virtio_net"]);
        let err = load_order(&infos, &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("virtio_ring"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let infos: BTreeMap<_, _> = [info("a", &["b"]), info("b", &["a"])]
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        assert!(matches!(
            load_order(&infos, &BTreeSet::new()),
            Err(KmodError::Dependency { .. })
        ));
    }

    #[test]
    fn modules_dep_lists_the_closure() {
        let infos = net_infos();
        let paths: BTreeMap<String, String> = infos
            .keys()
            .map(|n| (n.clone(), format!("kernel/{n}.ko")))
            .collect();
        let dep = modules_dep(&infos, &paths, &BTreeSet::new()).unwrap();
        assert!(dep.contains("kernel/virtio_net.ko: kernel/virtio_ring.ko kernel/virtio.ko kernel/net_failover.ko kernel/failover.ko\n"), "{dep}");
        assert!(dep.contains("kernel/failover.ko:\n"), "{dep}");
    }

    #[test]
    fn builtin_file_is_parsed() {
        let names = builtin_names(
            "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci-legacy.ko\n\n",
        );
        assert!(names.contains("virtio") && names.contains("virtio_pci_legacy"));
    }

    #[test]
    fn non_modules_are_rejected() {
        assert!(matches!(
            modinfo(b"garbage", "x.ko"),
            Err(KmodError::NotAModule(_))
        ));
        assert!(decompress_module("x.ko.xz", b"garbage".to_vec()).is_err());
        assert_eq!(decompress_module("x.ko", b"raw".to_vec()).unwrap(), b"raw");
    }
}
