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
use crate::exec::{self, PATCH};
use crate::kbuild::{self, io};
use crate::kernel::Series;
use crate::step::{BuildContext, StepOutput};
use crate::{DriverVariant, Error, Result};

/// Bumped when the build recipe changes, so cached kernels are rebuilt
/// (2: the shared kbuild steps, with a fixed build identity).
const TEST_KERNEL_RECIPE: u32 = 2;
/// The config fragment kept in the repository.
pub const CONFIG_FRAGMENT: &str = include_str!("../kconfig/test-kernel-6.1.config");

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

/// Builds (or reuses) the test kernel of `linux-source-6.1` at the pinned
/// version, in the requested variant.
pub fn test_kernel(ctx: &BuildContext, variant: DriverVariant) -> Result<TestKernel> {
    let package = Series::V6_1.pin().source_package();
    let tools = kbuild::check_tools()?;
    let inputs = json!({
        "compiler": tools.compiler,
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

/// The fragment's name in the tree's `kernel/configs/`.
const FRAGMENT_NAME: &str = "vnetlab-test.config";

fn build(ctx: &BuildContext, package: &PackageRef, scratch: &Path) -> Result<StepOutput> {
    let tree = scratch.join("linux");
    kbuild::unpack_source(ctx, package, &tree, scratch)?;
    kbuild::configure(
        &tree,
        None,
        FRAGMENT_NAME,
        CONFIG_FRAGMENT,
        "the test kernel",
    )?;
    let config_path = tree.join(".config");
    let mut out = StepOutput::default().file("config", &config_path, "config-test-6.1");
    let mut results = serde_json::Map::new();
    let jobs = kbuild::jobs_arg();
    for variant in [DriverVariant::Stock, DriverVariant::Prefix] {
        if variant == DriverVariant::Prefix {
            let patch_file = scratch.join("revert.patch");
            std::fs::write(&patch_file, revert_patch(Series::V6_1)).map_err(io(&patch_file))?;
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
        kbuild::make(
            &tree,
            None,
            &[&jobs, "vmlinux", "bzImage"],
            &format!("make vmlinux bzImage (test kernel, {variant} virtio_net)"),
        )?;
        let v = variant.as_str();
        let dir = scratch.join(v);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for (from, name) in [
            ("vmlinux", "vmlinux"),
            ("arch/x86/boot/bzImage", "bzImage"),
            ("System.map", "System.map"),
        ] {
            let dest = dir.join(name);
            let built = tree.join(from);
            std::fs::copy(&built, &dest).map_err(io(&built))?;
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
        let wanted = kbuild::parse_fragment(CONFIG_FRAGMENT).unwrap();
        for o in [
            "CONFIG_VIRTIO_NET",
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
            "CONFIG_VIRTIO_PCI",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
        ] {
            assert_eq!(wanted.get(o).map(String::as_str), Some("y"), "{o}");
        }
    }
}
