//! The "kernel-only" guest profile: a tinyconfig-based Linux 6.1 built from
//! Debian's `linux-source-6.1` with virtio_net and the lab's probe built in,
//! for machines whose `/dev/kvm` is an instruction emulator (no guest user
//! space can make a system call there). `guest-images/kernel-only/README.md`
//! explains the profile, the probe's protocol and the emulator work-arounds.
//!
//! ```no_run
//! use guest_images::kernel_only::{self, Variant};
//! let ctx = guest_images::BuildContext::new(guest_images::Cache::open_default(None)?);
//! let k = kernel_only::build(&ctx, Variant::Prefix)?;
//! let cmdline = format!(
//!     "{} {} {}",
//!     kernel_only::EMULATOR_CMDLINE,
//!     kernel_only::BASE_CMDLINE,
//!     kernel_only::probe::probe_args(&kernel_only::probe::operstate_steps(), None)
//! );
//! println!("{} {cmdline}", k.vmlinux.display());
//! # Ok::<(), guest_images::Error>(())
//! ```

pub mod probe;
pub mod trace;
mod tree;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::apt::PackageRef;
use crate::cache::{sha256_hex, ObjectRef};
use crate::kbuild;
use crate::kernel::Series;
use crate::manifest::Manifest;
use crate::step::BuildContext;
use crate::{Error, Result};

/// Bumped when the build recipe changes, so cached kernels are rebuilt.
const BUILD_RECIPE: u32 = 1;

/// The Kconfig fragment merged on top of `make tinyconfig`.
pub const CONFIG_FRAGMENT: &str = include_str!("../../kernel-only/vnetlab.config");
/// The probe's C source, copied to `drivers/net/vnetlab_probe.c`.
pub const PROBE_SOURCE: &str = include_str!("../../kernel-only/probe/vnetlab_probe.c");
/// Where the probe goes in the kernel tree.
pub const PROBE_TREE_PATH: &str = "drivers/net/vnetlab_probe.c";
/// The boot-time call trace's C source (`vnetlab.trace=`, see [`trace`]).
pub const TRACE_SOURCE: &str = include_str!("../../kernel-only/probe/vnetlab_trace.c");
/// Where the trace source goes in the kernel tree.
pub const TRACE_TREE_PATH: &str = "drivers/net/vnetlab_trace.c";
/// The lab's own sources in the kernel tree: (path in the tree, text).
pub const PROBE_FILES: [(&str, &str); 2] = [
    (PROBE_TREE_PATH, PROBE_SOURCE),
    (TRACE_TREE_PATH, TRACE_SOURCE),
];
/// Where the fragment goes in the kernel tree (so `make vnetlab.config` finds it).
pub const FRAGMENT_TREE_PATH: &str = "kernel/configs/vnetlab.config";

/// Patches both variants get, in order: (file name, text).
pub const COMMON_PATCHES: &[(&str, &str)] = &[
    (
        "0001-x86-alternative-vnetlab_no_int3_selftest.patch",
        include_str!(
            "../../kernel-only/patches/common/0001-x86-alternative-vnetlab_no_int3_selftest.patch"
        ),
    ),
    (
        "0002-net-build-the-vnetlab-probe.patch",
        include_str!("../../kernel-only/patches/common/0002-net-build-the-vnetlab-probe.patch"),
    ),
    (
        "0003-tracing-vnetlab_lean_tracing.patch",
        include_str!("../../kernel-only/patches/common/0003-tracing-vnetlab_lean_tracing.patch"),
    ),
];

/// The revert of bda7fab54828 (pre-fix variant only): the patch the
/// out-of-tree pre-fix module and the images test kernel use
/// (`guest-images/patches/6.1/`); it applies in-tree as it is.
pub const PREFIX_PATCH: (&str, &str) = (
    "0001-virtio_net-revert-bda7fab54828.patch",
    include_str!("../../patches/6.1/0001-virtio_net-revert-bda7fab54828.patch"),
);

/// Kernel command-line work-arounds for an instruction emulator standing in
/// for hardware virtualization (this project's CI machines; see
/// `shared/docs/environment.md`). Prepend them only when KVM is emulated;
/// on hardware virtualization the kernel needs none of them.
///
/// - `clearcpuid=...`: hide CPU features whose instructions the emulator
///   cannot run (`xrstor` of XSAVE, `cmpxchg16b`, `popcnt`, `clac`/`stac`
///   of SMAP, SSE4, AVX, ...); the VMM's CPUID masking does not reach the
///   guest there. Needs `CONFIG_X86_FEATURE_NAMES` (in the fragment).
///   `smap,smep` here replace the `nosmap nosmep` of older kernels, which
///   6.1 no longer has.
/// - `vnetlab_no_int3_selftest`: skip the INT3 self-test of
///   `alternative_instructions()` (patch 0001 of this profile).
/// - `vnetlab_lean_tracing`: skip ftrace's boot-time scan for weak-function
///   records and the eval-map rewrite of trace event formats (patch 0003),
///   half a minute of kallsyms lookups under the emulator.
///
/// `nopv no-kvmclock` (needed by kernels with paravirtualization, e.g.
/// Debian's) are left out: this kernel has no `CONFIG_HYPERVISOR_GUEST`, so
/// it has neither paravirt ops nor kvmclock and would only pass the unknown
/// words on to (non-existent) user space.
pub const EMULATOR_CMDLINE: &str = "clearcpuid=xsave,cx16,smap,smep,umip,pku,fsgsbase,popcnt,bmi1,bmi2,avx,avx2,movbe,abm,adx,rdrand,rdseed,sha_ni,aes,pclmulqdq,sse4_1,sse4_2,erms,fsrm,hypervisor vnetlab_no_int3_selftest vnetlab_lean_tracing";

/// The rest of the command line every kernel-only boot uses: the serial
/// console, and a restart (not a hang) should the kernel panic.
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// The work-arounds when `emulated` is true, else nothing.
pub fn workaround_cmdline(emulated: bool) -> &'static str {
    if emulated {
        EMULATOR_CMDLINE
    } else {
        ""
    }
}

/// The whole command line of a kernel-only boot: the work-arounds when KVM
/// is `emulated`, [`BASE_CMDLINE`], then the probe's arguments. (The lab's
/// VMM appends `virtio_mmio.device=` for its virtio-mmio devices itself.)
pub fn command_line(
    emulated: bool,
    steps: &[probe::ProbeStep],
    timeout_secs: Option<u32>,
) -> String {
    let parts = [
        workaround_cmdline(emulated).to_string(),
        BASE_CMDLINE.to_string(),
        probe::probe_args(steps, timeout_secs),
    ];
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `virtio_mmio.device=` for a virtio-mmio device of 4 KiB at `base` with
/// interrupt `irq` (the lab's VMM puts its first one at 0xd0000000, IRQ 5).
pub fn virtio_mmio_arg(base: u64, irq: u32) -> String {
    format!("virtio_mmio.device=4K@{base:#x}:{irq}")
}

/// Which virtio_net the kernel has: the crate's [`DriverVariant`]
/// (`Stock`: as in Debian's source; `Prefix`: bda7fab54828 reverted,
/// `netif_carrier_off()` only with VIRTIO_NET_F_STATUS).
pub use crate::DriverVariant as Variant;

/// Both variants, stock first.
pub const VARIANTS: [Variant; 2] = [Variant::Stock, Variant::Prefix];

/// The manifest profile of a variant, e.g. `kernel-only-prefix`.
pub fn profile(variant: Variant) -> String {
    format!("kernel-only-{}", variant.as_str())
}

/// The patches of a variant, in the order they apply: (file name, text).
pub fn patches(variant: Variant) -> Vec<(&'static str, &'static str)> {
    let mut p = COMMON_PATCHES.to_vec();
    if variant == Variant::Prefix {
        p.push(PREFIX_PATCH);
    }
    p
}

/// A built kernel-only test kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelOnlyArtifacts {
    /// Which virtio_net it has.
    pub variant: Variant,
    /// `make kernelrelease`, e.g. `6.1.176`.
    pub version: String,
    /// The source package it was built from.
    pub source: PackageRef,
    /// The uncompressed ELF kernel (64-bit boot protocol entry).
    pub vmlinux: PathBuf,
    /// Its `System.map` (real symbols).
    pub system_map: PathBuf,
    /// The final `.config`.
    pub config: PathBuf,
    /// Seconds the build step took when it ran (also when served from the
    /// cache: the time of the run that made it).
    pub build_seconds: f64,
    /// Objects make compiled in that run (a full build compiles ~600).
    pub compiled_objects: u64,
    /// Every stored file by role (`vmlinux`, `system_map`, `config`).
    #[serde(skip)]
    pub objects: BTreeMap<String, ObjectRef>,
}

impl KernelOnlyArtifacts {
    /// Adds the files to a manifest as `6.1/kernel-only-<variant>/<role>`.
    pub fn add_to_manifest(&self, ctx: &BuildContext, manifest: &mut Manifest) {
        for (role, obj) in &self.objects {
            manifest.add(
                &ctx.cache,
                Series::V6_1,
                &profile(self.variant),
                role,
                obj,
                vec![self.source.clone()],
            );
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct BuildMeta {
    version: String,
    compiled_objects: u64,
    fresh_tree: bool,
}

/// Checks that this host can build the kernel (x86-64, make, gcc, flex,
/// bison, bc, libelf headers, tar, xz, patch, dpkg-deb); the error names
/// the Debian package of a missing tool.
pub fn check_host() -> Result<()> {
    kbuild::check_tools().map(drop)
}

/// The pinned source package (the version of the pinned 6.1 stock kernel).
pub fn source_package() -> PackageRef {
    Series::V6_1.pin().source_package()
}

/// Builds (or takes from the cache) the kernel-only test kernel of `variant`
/// from the pinned `linux-source-6.1`.
pub fn build(ctx: &BuildContext, variant: Variant) -> Result<KernelOnlyArtifacts> {
    build_from(ctx, variant, &source_package())
}

/// Builds the kernel of `variant` from `source` (a `linux-source-6.1`
/// version). Only a changed input rebuilds, and then incrementally: one
/// kernel tree per source version is kept under `<cache>/trees/`, shared by
/// both variants.
pub fn build_from(
    ctx: &BuildContext,
    variant: Variant,
    source: &PackageRef,
) -> Result<KernelOnlyArtifacts> {
    let tools = kbuild::check_tools()?;
    let patch_keys: Vec<serde_json::Value> = patches(variant)
        .iter()
        .map(|(name, text)| json!({ "name": name, "sha256": sha256_hex(text.as_bytes()) }))
        .collect();
    let sources: Vec<serde_json::Value> = PROBE_FILES
        .iter()
        .map(|(path, text)| json!({ "path": path, "sha256": sha256_hex(text.as_bytes()) }))
        .collect();
    let inputs = json!({
        "source": source,
        "variant": variant,
        "fragment": sha256_hex(CONFIG_FRAGMENT.as_bytes()),
        "probe": sources,
        "patches": patch_keys,
        "compiler": tools.compiler,
        "recipe": BUILD_RECIPE,
    });
    let label = format!("kernel-only {variant} kernel from {source}");
    let record = ctx.step("kernel-only", &label, inputs, |scratch| {
        tree::build_kernel(ctx, variant, source, scratch)
    })?;
    let meta: BuildMeta = serde_json::from_value(record.meta.clone()).map_err(|e| {
        Error::Input(format!(
            "the cached kernel-only build record is unreadable: {e}"
        ))
    })?;
    let path = |role: &str| -> Result<PathBuf> {
        record
            .outputs
            .get(role)
            .map(|o| ctx.cache.object_path(o))
            .ok_or_else(|| {
                Error::Input(format!("the cached kernel-only build record lacks {role}"))
            })
    };
    Ok(KernelOnlyArtifacts {
        variant,
        version: meta.version.clone(),
        source: source.clone(),
        vmlinux: path("vmlinux")?,
        system_map: path("system_map")?,
        config: path("config")?,
        build_seconds: record.elapsed_ms as f64 / 1000.0,
        compiled_objects: meta.compiled_objects,
        objects: record.outputs.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_have_their_patches() {
        assert_eq!(profile(Variant::Prefix), "kernel-only-prefix");
        assert_eq!(patches(Variant::Stock).len(), COMMON_PATCHES.len());
        assert_eq!(patches(Variant::Prefix).last(), Some(&PREFIX_PATCH));
        assert_eq!(PREFIX_PATCH.1, crate::driver::revert_patch(Series::V6_1));
    }

    #[test]
    fn prefix_patch_moves_carrier_off_into_the_status_branch() {
        let text = PREFIX_PATCH.1;
        assert!(text.contains("bda7fab54828"));
        let removed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .collect();
        let added: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert_eq!(removed, ["-\tnetif_carrier_off(dev);"]);
        assert_eq!(added, ["+\t\tnetif_carrier_off(dev);"]);
    }

    #[test]
    fn patches_name_their_files() {
        let files: Vec<String> = patches(Variant::Prefix)
            .iter()
            .flat_map(|(_, t)| tree::patched_files(t).unwrap())
            .collect();
        assert_eq!(
            files,
            [
                "arch/x86/kernel/alternative.c",
                "drivers/net/Makefile",
                "kernel/trace/ftrace.c",
                "kernel/trace/trace.c",
                "drivers/net/virtio_net.c"
            ]
        );
    }

    #[test]
    fn command_lines() {
        assert!(EMULATOR_CMDLINE.contains("vnetlab_no_int3_selftest"));
        assert!(EMULATOR_CMDLINE.starts_with("clearcpuid=xsave,cx16,"));
        assert_eq!(workaround_cmdline(false), "");
        let steps = [probe::ProbeStep::Up, probe::ProbeStep::Show];
        assert_eq!(
            command_line(false, &steps, None),
            "console=ttyS0 reboot=k panic=-1 vnetlab.probe=up,show"
        );
        assert!(command_line(true, &steps, Some(9)).starts_with(&format!(
            "{EMULATOR_CMDLINE} {BASE_CMDLINE} vnetlab.probe=up,show vnetlab.timeout=9"
        )));
        assert_eq!(
            virtio_mmio_arg(0xd000_0000, 5),
            "virtio_mmio.device=4K@0xd0000000:5"
        );
    }

    #[test]
    fn fragment_and_probe_are_consistent() {
        let wanted = kbuild::parse_fragment(CONFIG_FRAGMENT).unwrap();
        assert_eq!(
            wanted.get("CONFIG_VIRTIO_NET").map(String::as_str),
            Some("y")
        );
        assert_eq!(wanted.get("CONFIG_MODULES").map(String::as_str), Some("n"));
        for key in [
            "CONFIG_FTRACE",
            "CONFIG_FUNCTION_TRACER",
            "CONFIG_DYNAMIC_FTRACE",
        ] {
            assert_eq!(wanted.get(key).map(String::as_str), Some("y"), "{key}");
        }
        for (_, text) in PROBE_FILES {
            assert!(text.starts_with("// SPDX-License-Identifier: GPL-2.0"));
        }
        assert!(PROBE_SOURCE.contains("late_initcall(vnetlab_probe_init);"));
        assert!(TRACE_SOURCE.contains("early_initcall(vnetlab_trace_init);"));
        assert!(TRACE_SOURCE.contains(&format!("#define VNL_TRACE_PROTOCOL\t{}", trace::PROTOCOL)));
        assert!(TRACE_SOURCE.contains(&format!(
            "#define VNL_TRACE_MAX_FUNCS\t{}",
            trace::MAX_FUNCTIONS
        )));
        assert!(PROBE_SOURCE.contains(&format!("#define VNL_PROTOCOL\t\t{}", probe::PROTOCOL)));
    }
}
