//! The minimal test kernel: Linux 6.1 from Debian's `linux-source-6.1`,
//! `make tinyconfig` plus the fragment `kconfig/test-kernel-6.1.config`
//! (serial console, initramfs, virtio-pci and command-line virtio-mmio,
//! virtio_net built in). Built twice in one tree: with the stock driver and
//! with the bda7fab54828 revert, since the second build only recompiles
//! `virtio_net.c`.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::apt::PackageRef;
use crate::cache::{sha256_hex, ObjectRef};
use crate::driver::revert_patch;
use crate::exec::{self, Tool, MAKE, PATCH, TAR, XZ};
use crate::kernel::{fetch_deb, Series};
use crate::step::{BuildContext, StepOutput};
use crate::{apt, DriverVariant, Error, Result};

const TEST_KERNEL_RECIPE: u32 = 1;
/// The config fragment kept in the repository.
pub const CONFIG_FRAGMENT: &str = include_str!("../kconfig/test-kernel-6.1.config");

const GCC: Tool = Tool {
    program: "gcc",
    package: "gcc",
};
const FLEX: Tool = Tool {
    program: "flex",
    package: "flex",
};
const BISON: Tool = Tool {
    program: "bison",
    package: "bison",
};
const BC: Tool = Tool {
    program: "bc",
    package: "bc",
};
const PERL: Tool = Tool {
    program: "perl",
    package: "perl",
};

/// One build of the test kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestKernel {
    /// Which virtio_net it has built in.
    pub variant: DriverVariant,
    /// The uncompressed ELF kernel (64-bit boot protocol).
    pub vmlinux: PathBuf,
    /// The bzImage (QEMU `-kernel`).
    pub bzimage: PathBuf,
    /// The kernel's System.map.
    pub system_map: PathBuf,
    /// The merged `.config`.
    pub config: PathBuf,
    /// The source package it was built from.
    pub package: PackageRef,
    /// Stored objects by role.
    pub objects: Vec<(String, ObjectRef)>,
}

/// Options in the fragment that must survive `olddefconfig` (`CONFIG_X=y`).
pub fn required_options(fragment: &str) -> Vec<String> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_") && l.ends_with("=y"))
        .map(str::to_string)
        .collect()
}

/// Builds (or reuses) the test kernel of `linux-source-6.1` at the pinned
/// version, in the requested variant.
pub fn test_kernel(ctx: &BuildContext, variant: DriverVariant) -> Result<TestKernel> {
    let package = Series::V6_1.pin().source_package();
    let inputs = json!({
        "package": package,
        "fragment": sha256_hex(CONFIG_FRAGMENT.as_bytes()),
        "patch": sha256_hex(revert_patch(Series::V6_1).as_bytes()),
        "recipe": TEST_KERNEL_RECIPE,
    });
    let record = ctx.step(
        "test-kernel",
        &format!("test kernel from {package} (stock and pre-fix)"),
        inputs,
        |scratch| build(ctx, &package, scratch),
    )?;
    let get = |role: &str| -> Result<ObjectRef> {
        record
            .outputs
            .get(role)
            .cloned()
            .ok_or_else(|| Error::Input(format!("the cached test kernel record lacks {role}")))
    };
    let v = variant.as_str();
    let roles = [
        format!("{v}:vmlinux"),
        format!("{v}:bzImage"),
        format!("{v}:System.map"),
        "config".to_string(),
    ];
    let objects: Vec<(String, ObjectRef)> = roles
        .iter()
        .map(|r| get(r).map(|o| (r.clone(), o)))
        .collect::<Result<_>>()?;
    Ok(TestKernel {
        variant,
        vmlinux: ctx.cache.object_path(&objects[0].1),
        bzimage: ctx.cache.object_path(&objects[1].1),
        system_map: ctx.cache.object_path(&objects[2].1),
        config: ctx.cache.object_path(&objects[3].1),
        package,
        objects,
    })
}

fn make(tree: &Path, args: &[&str], what: &str) -> Result<()> {
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut all: Vec<&str> = vec!["-C", tree.to_str().unwrap_or("."), "ARCH=x86_64", &jobs];
    all.extend_from_slice(args);
    exec::run(MAKE, all, None, what)?;
    Ok(())
}

fn build(ctx: &BuildContext, package: &PackageRef, scratch: &Path) -> Result<StepOutput> {
    for tool in [MAKE, GCC, FLEX, BISON, BC, PERL, PATCH, TAR, XZ] {
        exec::find_tool(tool)?;
    }
    if !Path::new("/usr/include/gelf.h").exists() && !Path::new("/usr/include/libelf.h").exists() {
        return Err(Error::Exec(exec::ExecError::MissingTool {
            program: "libelf headers (gelf.h)",
            package: "libelf-dev",
        }));
    }
    let deb = fetch_deb(ctx, package)?;
    let root = scratch.join("root");
    apt::extract(&deb, &root)?;
    let usr_src = root.join("usr/src");
    let tarball = std::fs::read_dir(&usr_src)
        .map_err(|source| Error::Io {
            path: usr_src.clone(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .ok_or_else(|| Error::Input(format!("{package} has no source tarball")))?;
    let src = scratch.join("src");
    std::fs::create_dir_all(&src).map_err(|source| Error::Io {
        path: src.clone(),
        source,
    })?;
    let args: [&std::ffi::OsStr; 5] = [
        "-xJf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        src.as_os_str(),
        "--no-same-owner".as_ref(),
    ];
    exec::run(TAR, args, None, &format!("unpacking {}", tarball.display()))?;
    let _ = std::fs::remove_dir_all(&root);
    let tree = std::fs::read_dir(&src)
        .map_err(|source| Error::Io {
            path: src.clone(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("Makefile").exists())
        .ok_or_else(|| Error::Input(format!("{package}'s tarball holds no kernel tree")))?;

    make(&tree, &["tinyconfig"], "make tinyconfig")?;
    let fragment = scratch.join("fragment.config");
    std::fs::write(&fragment, CONFIG_FRAGMENT).map_err(|source| Error::Io {
        path: fragment.clone(),
        source,
    })?;
    let merge = tree.join("scripts/kconfig/merge_config.sh");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(&merge)
        .args(["-m", ".config"])
        .arg(&fragment)
        .current_dir(&tree);
    exec::run_command(cmd, "merging the test kernel config fragment")?;
    make(&tree, &["olddefconfig"], "make olddefconfig")?;
    let config_path = tree.join(".config");
    let config = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let missing: Vec<String> = required_options(CONFIG_FRAGMENT)
        .into_iter()
        .filter(|o| !config.lines().any(|l| l == o))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "the merged test kernel config lacks {}",
            missing.join(", ")
        )));
    }
    let mut out = StepOutput::default().file("config", &config_path, "config-test-6.1");
    let mut results = serde_json::Map::new();
    for variant in [DriverVariant::Stock, DriverVariant::Prefix] {
        if variant == DriverVariant::Prefix {
            let patch_file = scratch.join("revert.patch");
            std::fs::write(&patch_file, revert_patch(Series::V6_1)).map_err(|source| {
                Error::Io {
                    path: patch_file.clone(),
                    source,
                }
            })?;
            let args: [&std::ffi::OsStr; 5] = [
                "-p1".as_ref(),
                "-d".as_ref(),
                tree.as_os_str(),
                "-i".as_ref(),
                patch_file.as_os_str(),
            ];
            exec::run(
                PATCH,
                args,
                None,
                "applying the bda7fab54828 revert to the test kernel",
            )?;
        }
        let started = std::time::Instant::now();
        make(
            &tree,
            &["vmlinux", "bzImage"],
            &format!("make vmlinux bzImage (test kernel, {variant} virtio_net)"),
        )?;
        let v = variant.as_str();
        let dir = scratch.join(v);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        for (from, name) in [
            ("vmlinux", "vmlinux"),
            ("arch/x86/boot/bzImage", "bzImage"),
            ("System.map", "System.map"),
        ] {
            let dest = dir.join(name);
            std::fs::copy(tree.join(from), &dest).map_err(|source| Error::Io {
                path: tree.join(from),
                source,
            })?;
            out = out.file(format!("{v}:{name}"), dest, format!("{name}-test-6.1-{v}"));
        }
        results.insert(
            v.into(),
            json!({ "build_secs": started.elapsed().as_secs() }),
        );
    }
    Ok(out.meta(serde_json::Value::Object(results)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_requires_the_virtio_options() {
        let req = required_options(CONFIG_FRAGMENT);
        for o in [
            "CONFIG_VIRTIO_NET=y",
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
            "CONFIG_VIRTIO_PCI=y",
            "CONFIG_SERIAL_8250_CONSOLE=y",
            "CONFIG_BLK_DEV_INITRD=y",
        ] {
            assert!(req.iter().any(|r| r == o), "{o}");
        }
    }
}
