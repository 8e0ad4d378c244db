//! Stock Debian cloud kernels: which package versions are pinned, fetching
//! them, and turning the image package into `vmlinuz`, `vmlinux`, config,
//! `System.map` (when the package has a real one) and the virtio networking
//! modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apt::{self, AptError, PackageRef};
use crate::cache::ObjectRef;
use crate::kmod::{self, ModInfo, NETWORK_MODULES};
use crate::step::{BuildContext, StepOutput};
use crate::{bzimage, Error, Result};

/// Bumped when the extraction logic changes, so cached results are redone.
const UNPACK_RECIPE: u32 = 1;
const VMLINUX_RECIPE: u32 = 1;
const DEB_RECIPE: u32 = 1;

/// A Debian kernel series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Series {
    /// Linux 6.1 (bookworm's kernel).
    #[serde(rename = "6.1")]
    V6_1,
    /// Linux 6.12 (bookworm-security's newer kernel).
    #[serde(rename = "6.12")]
    V6_12,
}

impl Series {
    /// Every series, oldest first.
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    /// `"6.1"` or `"6.12"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// The pinned package version of this series.
    pub fn pin(self) -> KernelPin {
        match self {
            Series::V6_1 => KernelPin::new(self, "6.1.0-50", "6.1.176-1"),
            Series::V6_12 => KernelPin::new(self, "6.12.117+deb12", "6.12.117-1~deb12u1"),
        }
    }

    /// The `linux-source-*` package name.
    pub fn source_package(self) -> String {
        format!("linux-source-{}", self.as_str())
    }

    fn image_name_regex(self) -> &'static str {
        match self {
            Series::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
            Series::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$",
        }
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Series {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "6.1" => Ok(Series::V6_1),
            "6.12" => Ok(Series::V6_12),
            other => Err(Error::Input(format!(
                "unknown kernel series `{other}`: use 6.1 or 6.12"
            ))),
        }
    }
}

/// An exact Debian kernel: the ABI name part and the package version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KernelPin {
    /// The series.
    pub series: Series,
    /// ABI part of the package names, e.g. `6.1.0-50` or `6.12.117+deb12`.
    pub abi: String,
    /// Debian version of all the kernel packages, e.g. `6.1.176-1`.
    pub version: String,
}

impl KernelPin {
    /// A pin.
    pub fn new(series: Series, abi: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            series,
            abi: abi.into(),
            version: version.into(),
        }
    }

    /// Kernel release (`uname -r`), e.g. `6.1.0-50-cloud-amd64`.
    pub fn release(&self) -> String {
        format!("{}-cloud-amd64", self.abi)
    }

    /// The unsigned image package.
    pub fn image_package(&self) -> PackageRef {
        PackageRef::new(
            format!("linux-image-{}-cloud-amd64-unsigned", self.abi),
            &self.version,
        )
    }

    /// The flavour's headers package.
    pub fn headers_package(&self) -> PackageRef {
        PackageRef::new(
            format!("linux-headers-{}-cloud-amd64", self.abi),
            &self.version,
        )
    }

    /// The architecture-independent headers package.
    pub fn headers_common_package(&self) -> PackageRef {
        PackageRef::new(format!("linux-headers-{}-common", self.abi), &self.version)
    }

    /// The kbuild tools package (unversioned name on 6.1).
    pub fn kbuild_package(&self) -> PackageRef {
        let name = match self.series {
            Series::V6_1 => "linux-kbuild-6.1".to_string(),
            Series::V6_12 => format!("linux-kbuild-{}", self.abi),
        };
        PackageRef::new(name, &self.version)
    }

    /// The kernel source package of the same version.
    pub fn source_package(&self) -> PackageRef {
        PackageRef::new(self.series.source_package(), &self.version)
    }

    /// The newest kernel of `series` that apt can download and whose
    /// `linux-source` package has the same version.
    pub fn latest(series: Series) -> Result<Self> {
        let sources = apt::available_versions(&series.source_package())?;
        let mut best: Option<KernelPin> = None;
        for name in apt::search_names(series.image_name_regex())? {
            let Some(abi) = name
                .strip_prefix("linux-image-")
                .and_then(|n| n.strip_suffix("-cloud-amd64-unsigned"))
            else {
                continue;
            };
            for version in apt::available_versions(&name)? {
                if !sources.contains(&version) {
                    continue;
                }
                let newer = match &best {
                    None => true,
                    Some(b) => {
                        apt::compare_versions(&version, &b.version)? == std::cmp::Ordering::Greater
                    }
                };
                if newer {
                    best = Some(KernelPin::new(series, abi, version));
                }
            }
        }
        best.ok_or_else(|| {
            Error::Input(format!(
                "apt knows no {series} cloud kernel with a matching linux-source"
            ))
        })
    }
}

/// Which kernel versions a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VersionPolicy {
    /// The pinned versions; if the archive no longer has one, the newest
    /// available kernel of the series, with a warning.
    #[default]
    PinnedOrLatest,
    /// Only the pinned versions.
    Pinned,
    /// The newest available kernels.
    Latest,
}

/// A kernel module ready to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelModule {
    /// Module name (underscores).
    pub name: String,
    /// The uncompressed `.ko`.
    pub path: PathBuf,
    /// Its path under `/lib/modules/<release>/` (uncompressed name).
    pub install_path: String,
    /// Modules it depends on (not built-in ones).
    pub depends: Vec<String>,
    /// Its `vermagic`.
    pub vermagic: String,
    /// Its SHA-256.
    pub sha256: String,
}

/// A stock Debian kernel, unpacked in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelArtifacts {
    /// The series.
    pub series: Series,
    /// `uname -r`, e.g. `6.1.0-50-cloud-amd64`.
    pub release: String,
    /// The image package it came from.
    pub package: PackageRef,
    /// The compressed bzImage, for QEMU `-kernel` or the bzImage boot protocol.
    pub vmlinuz: PathBuf,
    /// The uncompressed ELF kernel, for a 64-bit ELF boot.
    pub vmlinux: PathBuf,
    /// The real `System.map`, when the image package has one (Debian's
    /// packages ship a placeholder; the real one is in the -dbg package).
    pub system_map: Option<PathBuf>,
    /// The kernel's `.config`.
    pub config: PathBuf,
    /// The networking modules in load order (dependencies first); modules
    /// built into this kernel are absent.
    pub modules: Vec<KernelModule>,
    /// Wanted modules that are built into this kernel (e.g. virtio_pci on 6.12).
    pub builtin_modules: Vec<String>,
    /// The `vermagic` every module of this kernel carries.
    pub vermagic: String,
    /// `modules.builtin` of the package (modprobe treats those as loaded).
    pub modules_builtin: PathBuf,
    /// Every stored file with its hash, by role (for the manifest).
    #[serde(skip)]
    pub objects: BTreeMap<String, ObjectRef>,
}

impl KernelArtifacts {
    /// The exact kernel this is (series, ABI name, Debian version).
    pub fn pin(&self) -> KernelPin {
        let abi = self
            .release
            .strip_suffix("-cloud-amd64")
            .unwrap_or(&self.release);
        KernelPin::new(self.series, abi, &self.package.version)
    }

    /// A module by name.
    pub fn module(&self, name: &str) -> Option<&KernelModule> {
        self.modules.iter().find(|m| m.name == name)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct UnpackMeta {
    release: String,
    vermagic: String,
    load_order: Vec<String>,
    builtin: Vec<String>,
    modules: BTreeMap<String, ModMeta>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ModMeta {
    install_path: String,
    info: ModInfo,
}

/// Downloads a Debian package into the cache (or finds it there).
pub fn fetch_deb(ctx: &BuildContext, package: &PackageRef) -> Result<PathBuf> {
    let inputs = json!({ "package": package, "recipe": DEB_RECIPE });
    let record = ctx.step("deb", &format!("download {package}"), inputs, |scratch| {
        let deb = apt::download(package, scratch)?;
        let name = deb
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(StepOutput::default()
            .file("deb", deb, name)
            .meta(json!({ "package": package })))
    })?;
    let obj = record
        .outputs
        .get("deb")
        .ok_or_else(|| Error::Input(format!("the cache record for {package} lists no .deb")))?;
    Ok(ctx.cache.object_path(obj))
}

/// The stock kernel of `series` with the default policy; see [`debian_kernel_with`].
pub fn debian_kernel(ctx: &BuildContext, series: Series) -> Result<KernelArtifacts> {
    debian_kernel_with(ctx, series, VersionPolicy::default())
}

/// The stock kernel of `series`: fetched, unpacked, `vmlinux` extracted.
/// Only steps whose inputs changed or whose cached outputs fail their hash
/// check run.
pub fn debian_kernel_with(
    ctx: &BuildContext,
    series: Series,
    policy: VersionPolicy,
) -> Result<KernelArtifacts> {
    let pin = match policy {
        VersionPolicy::Latest => KernelPin::latest(series)?,
        _ => series.pin(),
    };
    match kernel_from_pin(ctx, &pin) {
        Err(Error::Apt(AptError::Download { package, .. }))
            if policy == VersionPolicy::PinnedOrLatest =>
        {
            let latest = KernelPin::latest(series)?;
            log::warn!(
                "the pinned {package} is no longer downloadable; using the newest {series} kernel {} {} instead",
                latest.abi,
                latest.version
            );
            ctx.progress.note(&format!(
                "warning: pinned {package} is gone from the archive; using {} {}",
                latest.image_package().name,
                latest.version
            ));
            kernel_from_pin(ctx, &latest)
        }
        other => other,
    }
}

/// The kernel of an exact pin.
pub fn kernel_from_pin(ctx: &BuildContext, pin: &KernelPin) -> Result<KernelArtifacts> {
    let package = pin.image_package();
    let wanted: Vec<&str> = NETWORK_MODULES.to_vec();
    let inputs = json!({ "package": package, "modules": wanted, "recipe": UNPACK_RECIPE });
    let label = format!("unpack {} {}", package.name, package.version);
    let unpacked = ctx.step("kernel-unpack", &label, inputs, |scratch| {
        let deb = fetch_deb(ctx, &package)?;
        unpack_image(&deb, scratch, &wanted)
    })?;
    let meta: UnpackMeta = serde_json::from_value(unpacked.meta.clone()).map_err(|e| {
        Error::Input(format!(
            "the cached unpack record of {package} is unreadable: {e}"
        ))
    })?;
    let pkg_name = package.to_string();
    let obj = |role: &str| -> Result<ObjectRef> {
        unpacked.outputs.get(role).cloned().ok_or_else(|| {
            Error::Input(format!(
                "the cached unpack record of {pkg_name} lacks {role}"
            ))
        })
    };
    let vmlinuz = obj("vmlinuz")?;
    let vmlinux_inputs = json!({ "vmlinuz": vmlinuz.sha256, "recipe": VMLINUX_RECIPE });
    let vmlinuz_path = ctx.cache.object_path(&vmlinuz);
    let release = meta.release.clone();
    let vmlinux_rec = ctx.step(
        "vmlinux",
        &format!("extract vmlinux {release}"),
        vmlinux_inputs,
        |scratch| {
            let image = std::fs::read(&vmlinuz_path).map_err(|source| Error::Io {
                path: vmlinuz_path.clone(),
                source,
            })?;
            let compression = bzimage::payload(&image)
                .ok()
                .and_then(|p| p.compression)
                .map(|c| c.name());
            let elf = bzimage::extract_vmlinux(&image).map_err(|source| Error::BzImage {
                image: vmlinuz_path.display().to_string(),
                source,
            })?;
            let out = scratch.join("vmlinux");
            std::fs::write(&out, &elf).map_err(|source| Error::Io {
                path: out.clone(),
                source,
            })?;
            Ok(StepOutput::default()
                .file("vmlinux", out, format!("vmlinux-{release}"))
                .meta(json!({ "compression": compression })))
        },
    )?;
    let vmlinux = vmlinux_rec
        .outputs
        .get("vmlinux")
        .cloned()
        .ok_or_else(|| Error::Input("the cached vmlinux record lists no file".into()))?;

    let mut objects = unpacked.outputs.clone();
    objects.insert("vmlinux".into(), vmlinux.clone());
    let mut modules = Vec::new();
    for name in &meta.load_order {
        let m = meta
            .modules
            .get(name)
            .ok_or_else(|| Error::Input(format!("the cached unpack record lacks module {name}")))?;
        let o = obj(&format!("module:{name}"))?;
        modules.push(KernelModule {
            name: name.clone(),
            path: ctx.cache.object_path(&o),
            install_path: m.install_path.clone(),
            depends: m
                .info
                .depends
                .iter()
                .filter(|d| !meta.builtin.contains(d))
                .cloned()
                .collect(),
            vermagic: m.info.vermagic.clone(),
            sha256: o.sha256.clone(),
        });
    }
    let artifacts = KernelArtifacts {
        series: pin.series,
        release: meta.release.clone(),
        package,
        vmlinuz: ctx.cache.object_path(&vmlinuz),
        vmlinux: ctx.cache.object_path(&vmlinux),
        system_map: unpacked
            .outputs
            .get("system_map")
            .map(|o| ctx.cache.object_path(o)),
        config: ctx.cache.object_path(&obj("config")?),
        modules,
        builtin_modules: meta.builtin.clone(),
        vermagic: meta.vermagic.clone(),
        modules_builtin: ctx.cache.object_path(&obj("modules.builtin")?),
        objects,
    };
    Ok(artifacts)
}

fn single_file(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: dir.into(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// True when a System.map is Debian's one-line placeholder.
pub fn is_placeholder_system_map(text: &[u8]) -> bool {
    text.len() < 4096 && String::from_utf8_lossy(text).contains("The real System.map is in")
}

fn unpack_image(deb: &Path, scratch: &Path, wanted: &[&str]) -> Result<StepOutput> {
    let root = scratch.join("root");
    apt::extract(deb, &root)?;
    let boot = root.join("boot");
    let what = deb.display().to_string();
    let vmlinuz = single_file(&boot, "vmlinuz-")?
        .ok_or_else(|| Error::Input(format!("the package {what} has no boot/vmlinuz-*")))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let config = single_file(&boot, "config-")?
        .ok_or_else(|| Error::Input(format!("the package {what} has no boot/config-*")))?;
    let mut out = StepOutput::default()
        .file("vmlinuz", &vmlinuz, format!("vmlinuz-{release}"))
        .file("config", &config, format!("config-{release}"));
    if let Some(map) = single_file(&boot, "System.map-")? {
        let text = std::fs::read(&map).map_err(|source| Error::Io {
            path: map.clone(),
            source,
        })?;
        if is_placeholder_system_map(&text) {
            log::info!("{release}: the package's System.map is a placeholder (the real one is in the -dbg package)");
        } else {
            out = out.file("system_map", &map, format!("System.map-{release}"));
        }
    }
    let moddir = root.join("lib/modules").join(&release);
    let builtin_path = moddir.join("modules.builtin");
    let builtin_text = std::fs::read_to_string(&builtin_path).unwrap_or_default();
    let builtin_all = kmod::builtin_names(&builtin_text);
    let files = kmod::module_files(&moddir)?;

    // The wanted modules plus whatever they depend on, read from .modinfo.
    let mut infos: BTreeMap<String, ModInfo> = BTreeMap::new();
    let mut install_paths: BTreeMap<String, String> = BTreeMap::new();
    let mut builtin: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let mut vermagic = String::new();
    let modules_out = scratch.join("modules");
    std::fs::create_dir_all(&modules_out).map_err(|source| Error::Io {
        path: modules_out.clone(),
        source,
    })?;
    while let Some(name) = queue.pop() {
        if infos.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        if builtin_all.contains(&name) {
            builtin.insert(name);
            continue;
        }
        let rel = files
            .get(&name)
            .ok_or_else(|| kmod::KmodError::Missing(name.clone()))?;
        let bytes = kmod::read_module(&moddir.join(rel))?;
        let info = kmod::modinfo(&bytes, &rel.display().to_string())?;
        if vermagic.is_empty() {
            vermagic = info.vermagic.clone();
        }
        let file = modules_out.join(format!("{name}.ko"));
        std::fs::write(&file, &bytes).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let rel_str = rel.to_string_lossy();
        let install = ["", ".xz", ".gz", ".zst"]
            .iter()
            .find_map(|ext| rel_str.strip_suffix(&format!(".ko{ext}")))
            .map(|base| format!("{base}.ko"))
            .unwrap_or_else(|| rel_str.into_owned());
        out = out.file(format!("module:{name}"), file, format!("{name}.ko"));
        queue.extend(info.depends.iter().cloned());
        install_paths.insert(name.clone(), install);
        infos.insert(name, info);
    }
    let load_order = kmod::load_order(&infos, &builtin)?;
    if builtin_path.exists() {
        out = out.file("modules.builtin", &builtin_path, "modules.builtin");
    } else {
        let empty = scratch.join("modules.builtin");
        std::fs::write(&empty, b"").map_err(|source| Error::Io {
            path: empty.clone(),
            source,
        })?;
        out = out.file("modules.builtin", empty, "modules.builtin");
    }
    let modules = infos
        .into_iter()
        .map(|(name, info)| {
            let install_path = install_paths.remove(&name).unwrap_or_default();
            (name, ModMeta { install_path, info })
        })
        .collect();
    let meta = UnpackMeta {
        release,
        vermagic,
        load_order,
        builtin: builtin.into_iter().collect(),
        modules,
    };
    let meta =
        serde_json::to_value(meta).map_err(|e| Error::Input(format!("unpack metadata: {e}")))?;
    Ok(out.meta(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_name_the_packages() {
        let p = Series::V6_1.pin();
        assert_eq!(p.release(), "6.1.0-50-cloud-amd64");
        assert_eq!(
            p.image_package().name,
            "linux-image-6.1.0-50-cloud-amd64-unsigned"
        );
        assert_eq!(p.kbuild_package().name, "linux-kbuild-6.1");
        assert_eq!(p.source_package().to_string(), "linux-source-6.1=6.1.176-1");
        let p = Series::V6_12.pin();
        assert_eq!(p.release(), "6.12.117+deb12-cloud-amd64");
        assert_eq!(p.kbuild_package().name, "linux-kbuild-6.12.117+deb12");
        assert_eq!(
            p.headers_common_package().name,
            "linux-headers-6.12.117+deb12-common"
        );
    }

    #[test]
    fn series_parse_and_print() {
        assert_eq!("6.12".parse::<Series>().unwrap(), Series::V6_12);
        assert_eq!(Series::V6_1.to_string(), "6.1");
        assert!("5.10".parse::<Series>().is_err());
        assert_eq!(serde_json::to_string(&Series::V6_12).unwrap(), "\"6.12\"");
    }

    #[test]
    fn placeholder_system_map_is_recognised() {
        assert!(is_placeholder_system_map(
            b"ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n"
        ));
        assert!(!is_placeholder_system_map(b"ffffffff81000000 T _text\n"));
    }
}
