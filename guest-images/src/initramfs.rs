//! The initramfs of a guest: busybox, iproute2's `ip` and its libraries, the
//! kernel's virtio networking modules (with `modules.dep` for `modprobe`),
//! and the guest agent as `/init`; a newc cpio archive, uncompressed or gzip.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::agent::{self, encode_step};
use crate::apt::PackageRef;
use crate::cache::{sha256_hex, ObjectRef};
use crate::cpio::{Archive, EntryKind};
use crate::kernel::KernelModule;
use crate::kmod::{self, ModInfo};
use crate::step::{BuildContext, StepOutput};
use crate::userland::userland;
use crate::{Error, Result};

const INITRAMFS_RECIPE: u32 = 1;

/// How the archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitramfsCompression {
    /// Plain cpio: what the emulated-KVM profile needs (its decompressor is slow).
    #[default]
    None,
    /// gzip.
    Gzip,
}

impl InitramfsCompression {
    /// File name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "cpio",
            Self::Gzip => "cpio.gz",
        }
    }
}

/// What goes into one initramfs.
#[derive(Debug, Clone)]
pub struct InitramfsSpec<'a> {
    /// Kernel release (`/lib/modules/<release>`).
    pub release: &'a str,
    /// Modules in load order.
    pub modules: &'a [KernelModule],
    /// The kernel's `modules.builtin`.
    pub modules_builtin: &'a Path,
    /// Compression.
    pub compression: InitramfsCompression,
    /// Steps baked into `/vnetlab/steps` (used when the command line has none).
    pub default_steps: Vec<String>,
    /// Name used in the file name and progress, e.g. `6.1-stock`.
    pub label: String,
}

/// A built initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initramfs {
    /// The archive in the cache.
    pub path: PathBuf,
    /// Compression used.
    pub compression: InitramfsCompression,
    /// Packages its user space came from.
    pub packages: Vec<PackageRef>,
    /// The stored object.
    pub object: ObjectRef,
}

/// Builds (or reuses) an initramfs.
pub fn build_initramfs(ctx: &BuildContext, spec: &InitramfsSpec<'_>) -> Result<Initramfs> {
    let user = userland(ctx)?;
    let builtin_text =
        std::fs::read_to_string(spec.modules_builtin).map_err(|source| Error::Io {
            path: spec.modules_builtin.into(),
            source,
        })?;
    let inputs = json!({
        "release": spec.release,
        "userland": user.files.iter().map(|(f, _, sha)| json!([f.guest_path, f.mode, sha])).collect::<Vec<_>>(),
        "modules": spec.modules.iter().map(|m| json!([m.name, m.install_path, m.sha256])).collect::<Vec<_>>(),
        "modules_builtin": sha256_hex(builtin_text.as_bytes()),
        "init": sha256_hex(agent::INIT_SCRIPT.as_bytes()),
        "lib": sha256_hex(agent::LIB_SCRIPT.as_bytes()),
        "steps": spec.default_steps,
        "compression": spec.compression,
        "recipe": INITRAMFS_RECIPE,
    });
    let file_name = format!(
        "initramfs-{}-{}.{}",
        spec.label,
        spec.release,
        spec.compression.suffix()
    );
    let record = ctx.step(
        "initramfs",
        &format!("initramfs {} ({})", spec.label, spec.compression.suffix()),
        inputs,
        |scratch| {
            let mut archive = Archive::new(0);
            for d in [
                "dev", "proc", "sys", "tmp", "run", "etc", "root", "bin", "sbin", "usr/bin",
                "usr/sbin", "vnetlab",
            ] {
                archive.dir(d);
            }
            archive.add("dev/console", 0o600, EntryKind::CharDev(5, 1));
            archive.add("dev/null", 0o666, EntryKind::CharDev(1, 3));
            archive.file("init", 0o755, agent::INIT_SCRIPT.as_bytes().to_vec());
            archive.file(
                "vnetlab/lib.sh",
                0o644,
                agent::LIB_SCRIPT.as_bytes().to_vec(),
            );
            archive.symlink("bin/sh", "busybox");
            for (f, path, _) in &user.files {
                let data = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                archive.file(&f.guest_path, f.mode, data);
            }
            add_modules(&mut archive, spec, &builtin_text)?;
            if !spec.default_steps.is_empty() {
                let steps: String = spec
                    .default_steps
                    .iter()
                    .map(|s| encode_step(s) + "\n")
                    .collect();
                archive.file("vnetlab/steps", 0o644, steps.into_bytes());
            }
            let out = scratch.join(&file_name);
            let file = std::fs::File::create(&out).map_err(|source| Error::Io {
                path: out.clone(),
                source,
            })?;
            let mut writer = std::io::BufWriter::new(file);
            let io = |source| Error::Io {
                path: out.clone(),
                source,
            };
            match spec.compression {
                InitramfsCompression::None => archive.write_to(&mut writer).map_err(io)?,
                InitramfsCompression::Gzip => {
                    let mut gz =
                        flate2::write::GzEncoder::new(&mut writer, flate2::Compression::default());
                    archive.write_to(&mut gz).map_err(io)?;
                    gz.finish().map_err(io)?;
                }
            }
            writer.flush().map_err(io)?;
            Ok(StepOutput::default()
                .file("initramfs", &out, &file_name)
                .meta(json!({ "entries": archive.paths().count() })))
        },
    )?;
    let object = record
        .outputs
        .get("initramfs")
        .cloned()
        .ok_or_else(|| Error::Input("the cached initramfs record lists no file".into()))?;
    Ok(Initramfs {
        path: ctx.cache.object_path(&object),
        compression: spec.compression,
        packages: user.packages,
        object,
    })
}

fn add_modules(archive: &mut Archive, spec: &InitramfsSpec<'_>, builtin_text: &str) -> Result<()> {
    let moddir = format!("lib/modules/{}", spec.release);
    let mut infos: BTreeMap<String, ModInfo> = BTreeMap::new();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    let mut order = String::new();
    for m in spec.modules {
        let data = std::fs::read(&m.path).map_err(|source| Error::Io {
            path: m.path.clone(),
            source,
        })?;
        archive.file(&format!("{moddir}/{}", m.install_path), 0o644, data);
        infos.insert(
            m.name.clone(),
            ModInfo {
                name: m.name.clone(),
                depends: m.depends.clone(),
                vermagic: m.vermagic.clone(),
            },
        );
        paths.insert(m.name.clone(), m.install_path.clone());
        order.push_str(&m.install_path);
        order.push('\n');
    }
    let builtin: BTreeSet<String> = kmod::builtin_names(builtin_text);
    let dep = kmod::modules_dep(&infos, &paths, &builtin)?;
    archive.file(&format!("{moddir}/modules.dep"), 0o644, dep.into_bytes());
    archive.file(
        &format!("{moddir}/modules.builtin"),
        0o644,
        builtin_text.as_bytes().to_vec(),
    );
    archive.file(
        &format!("{moddir}/modules.order"),
        0o644,
        order.clone().into_bytes(),
    );
    archive.file("vnetlab/modules", 0o644, order.into_bytes());
    Ok(())
}
