//! The pre-fix virtio_net driver: `drivers/net/virtio_net.c` from the
//! `linux-source` package of exactly the stock kernel's version, with Linux
//! commit bda7fab54828 reverted (`patches/<series>/`), built out of tree
//! against the kernel's `linux-headers` packages, and checked to carry the
//! stock module's vermagic so it loads into the stock kernel.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::apt::{self, PackageRef};
use crate::cache::{sha256_hex, ObjectRef};
use crate::exec::{self, GCC_12, MAKE, PATCH, STRIP, TAR, XZ};
use crate::kernel::{fetch_deb, KernelArtifacts, KernelModule, KernelPin, Series};
use crate::kmod;
use crate::step::{BuildContext, StepOutput};
use crate::{Error, Result};

const SOURCE_RECIPE: u32 = 1;
const DRIVER_RECIPE: u32 = 2;
/// The driver source inside the kernel tree.
pub const DRIVER_SOURCE: &str = "drivers/net/virtio_net.c";

/// The revert of bda7fab54828 for a series (a `patch -p1` diff with a header).
pub fn revert_patch(series: Series) -> &'static str {
    match series {
        Series::V6_1 => include_str!("../patches/6.1/0001-virtio_net-revert-bda7fab54828.patch"),
        Series::V6_12 => include_str!("../patches/6.12/0001-virtio_net-revert-bda7fab54828.patch"),
    }
}

/// The pre-fix driver of one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixDriver {
    /// The module, ready to replace the stock virtio_net.
    pub module: KernelModule,
    /// The stored object.
    pub object: ObjectRef,
    /// Source, headers and kbuild packages it was built from.
    pub packages: Vec<PackageRef>,
}

/// Takes `drivers/net/virtio_net.c` out of the `linux-source` package.
pub fn driver_source(ctx: &BuildContext, pin: &KernelPin) -> Result<PathBuf> {
    let source = pin.source_package();
    let inputs = json!({ "package": source, "file": DRIVER_SOURCE, "recipe": SOURCE_RECIPE });
    let record = ctx.step(
        "kernel-source-file",
        &format!("{DRIVER_SOURCE} from {source}"),
        inputs,
        |scratch| {
            exec::find_tool(TAR)?;
            exec::find_tool(XZ)?;
            let deb = fetch_deb(ctx, &source)?;
            let root = scratch.join("root");
            apt::extract(&deb, &root)?;
            let tarball = find_source_tarball(&root.join("usr/src"))?;
            let out = scratch.join("src");
            std::fs::create_dir_all(&out).map_err(|source| Error::Io {
                path: out.clone(),
                source,
            })?;
            let pattern = format!("*/{DRIVER_SOURCE}");
            let args: [&std::ffi::OsStr; 7] = [
                "-xJf".as_ref(),
                tarball.as_os_str(),
                "-C".as_ref(),
                out.as_os_str(),
                "--wildcards".as_ref(),
                "--no-same-owner".as_ref(),
                pattern.as_ref(),
            ];
            exec::run(
                TAR,
                args,
                None,
                &format!("extracting {DRIVER_SOURCE} from {}", tarball.display()),
            )?;
            let file = std::fs::read_dir(&out)
                .map_err(|source| Error::Io {
                    path: out.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .map(|e| e.path().join(DRIVER_SOURCE))
                .find(|p| p.is_file())
                .ok_or_else(|| Error::Input(format!("{source} has no {DRIVER_SOURCE}")))?;
            Ok(StepOutput::default()
                .file("source", file, "virtio_net.c")
                .meta(json!({ "package": source })))
        },
    )?;
    let obj = record
        .outputs
        .get("source")
        .ok_or_else(|| Error::Input("the cached source record lists no file".into()))?;
    Ok(ctx.cache.object_path(obj))
}

fn find_source_tarball(dir: &Path) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tar.xz"))
        })
        .ok_or_else(|| Error::Input(format!("no linux-source-*.tar.xz in {}", dir.display())))
}

/// Builds (or reuses) the pre-fix virtio_net for a stock kernel.
pub fn prefix_driver(ctx: &BuildContext, kernel: &KernelArtifacts) -> Result<PrefixDriver> {
    let pin = kernel.pin();
    let stock = kernel
        .module("virtio_net")
        .ok_or_else(|| {
            Error::Input(format!(
                "{} has no virtio_net module to replace",
                kernel.release
            ))
        })?
        .clone();
    let packages = vec![
        pin.source_package(),
        pin.headers_package(),
        pin.headers_common_package(),
        pin.kbuild_package(),
    ];
    let patch = revert_patch(pin.series);
    let source_path = driver_source(ctx, &pin)?;
    let source_text = std::fs::read(&source_path).map_err(|source| Error::Io {
        path: source_path.clone(),
        source,
    })?;
    let inputs = json!({
        "release": kernel.release,
        "packages": packages,
        "source": sha256_hex(&source_text),
        "patch": sha256_hex(patch.as_bytes()),
        "vermagic": stock.vermagic,
        "recipe": DRIVER_RECIPE,
    });
    let label = format!("pre-fix virtio_net.ko for {}", kernel.release);
    let release = kernel.release.clone();
    let record = ctx.step("prefix-driver", &label, inputs, |scratch| {
        for tool in [MAKE, GCC_12, PATCH, STRIP] {
            exec::find_tool(tool)?;
        }
        let root = scratch.join("root");
        for p in &packages[1..] {
            let deb = fetch_deb(ctx, p)?;
            apt::extract(&deb, &root)?;
        }
        let headers = root.join("usr/src").join(format!("linux-headers-{release}"));
        relocate_headers(&headers, &root)?;

        let build = scratch.join("build");
        let src_dir = build.join("drivers/net");
        std::fs::create_dir_all(&src_dir).map_err(|source| Error::Io { path: src_dir.clone(), source })?;
        let c_file = src_dir.join("virtio_net.c");
        std::fs::write(&c_file, &source_text).map_err(|source| Error::Io { path: c_file.clone(), source })?;
        let patch_file = scratch.join("revert.patch");
        std::fs::write(&patch_file, patch).map_err(|source| Error::Io { path: patch_file.clone(), source })?;
        let args: [&std::ffi::OsStr; 6] = [
            "-p1".as_ref(),
            "--forward".as_ref(),
            "--no-backup-if-mismatch".as_ref(),
            "-d".as_ref(),
            build.as_os_str(),
            "-i".as_ref(),
        ];
        exec::run(
            PATCH,
            args.iter().copied().chain([patch_file.as_os_str()]),
            None,
            &format!("applying the bda7fab54828 revert to {DRIVER_SOURCE} of {}", packages[0]),
        )?;
        let kbuild = src_dir.join("Kbuild");
        std::fs::write(&kbuild, "obj-m := virtio_net.o\n").map_err(|source| Error::Io { path: kbuild.clone(), source })?;
        let m_arg = format!("M={}", src_dir.display());
        let c_arg = headers.as_os_str();
        let args: [&std::ffi::OsStr; 6] = [
            "-C".as_ref(),
            c_arg,
            m_arg.as_ref(),
            // No pahole needed: BTF for one out-of-tree module is not worth a tool.
            "CONFIG_DEBUG_INFO_BTF_MODULES=".as_ref(),
            "KBUILD_BUILD_TIMESTAMP=".as_ref(),
            "modules".as_ref(),
        ];
        exec::run(MAKE, args, None, &format!("make modules (pre-fix virtio_net for {release})"))?;
        let ko = src_dir.join("virtio_net.ko");
        // Debian strips debug info from its modules; keep the initramfs as small.
        let args: [&std::ffi::OsStr; 2] = ["--strip-debug".as_ref(), ko.as_os_str()];
        exec::run(STRIP, args, None, "strip --strip-debug virtio_net.ko")?;
        let bytes = std::fs::read(&ko).map_err(|source| Error::Io { path: ko.clone(), source })?;
        let info = kmod::modinfo(&bytes, "the built virtio_net.ko")?;
        if info.vermagic != stock.vermagic {
            return Err(Error::Input(format!(
                "the pre-fix virtio_net.ko has vermagic `{}` but the stock kernel's modules have `{}`",
                info.vermagic, stock.vermagic
            )));
        }
        Ok(StepOutput::default()
            .file("module", ko, "virtio_net.ko")
            .meta(json!({ "info": info, "packages": packages })))
    })?;
    let object =
        record.outputs.get("module").cloned().ok_or_else(|| {
            Error::Input("the cached pre-fix driver record lists no module".into())
        })?;
    let info: kmod::ModInfo = serde_json::from_value(record.meta["info"].clone()).map_err(|e| {
        Error::Input(format!(
            "the cached pre-fix driver record is unreadable: {e}"
        ))
    })?;
    let module = KernelModule {
        name: stock.name.clone(),
        path: ctx.cache.object_path(&object),
        install_path: stock.install_path.clone(),
        depends: info
            .depends
            .iter()
            .filter(|d| !kernel.builtin_modules.contains(d))
            .cloned()
            .collect(),
        vermagic: info.vermagic,
        sha256: object.sha256.clone(),
    };
    Ok(PrefixDriver {
        module,
        object,
        packages,
    })
}

/// Debian's headers Makefile includes `/usr/src/linux-headers-*-common/Makefile`
/// by absolute path; point it into the unpacked tree instead.
fn relocate_headers(headers: &Path, root: &Path) -> Result<()> {
    let makefile = headers.join("Makefile");
    let text = std::fs::read_to_string(&makefile).map_err(|source| Error::Io {
        path: makefile.clone(),
        source,
    })?;
    let usr_src = format!("{}/usr/src/", root.display());
    let relocated = text.replace("include /usr/src/", &format!("include {usr_src}"));
    std::fs::write(&makefile, relocated).map_err(|source| Error::Io {
        path: makefile.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_revert_the_one_line() {
        for series in Series::ALL {
            let p = revert_patch(series);
            assert!(
                p.contains("bda7fab54828"),
                "{series}: the header cites the commit"
            );
            assert!(p.contains("--- a/drivers/net/virtio_net.c\n+++ b/drivers/net/virtio_net.c\n"));
            let removed: Vec<&str> = p
                .lines()
                .filter(|l| l.starts_with('-') && !l.starts_with("---"))
                .collect();
            let added: Vec<&str> = p
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .collect();
            assert_eq!(removed, ["-\tnetif_carrier_off(dev);"], "{series}");
            assert_eq!(added, ["+\t\tnetif_carrier_off(dev);"], "{series}");
        }
    }

    #[test]
    fn headers_makefile_is_relocated() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(
            h.join("Makefile"),
            "include /usr/src/linux-headers-6.1.0-50-common/Makefile\n",
        )
        .unwrap();
        relocate_headers(&h, Path::new("/x/root")).unwrap();
        assert_eq!(
            std::fs::read_to_string(h.join("Makefile")).unwrap(),
            "include /x/root/usr/src/linux-headers-6.1.0-50-common/Makefile\n"
        );
    }
}
