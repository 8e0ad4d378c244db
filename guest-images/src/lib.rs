//! Guest kernels, modules, initramfs and the pre-fix virtio_net driver for
//! the virtio-net lab, all built from Debian packages so that every user gets
//! the same bytes.
//!
//! The quickest entry point is [`debian_kernel`]: it returns the paths of a
//! stock Debian cloud kernel (`vmlinuz`, the extracted `vmlinux`, config,
//! `System.map` when available) and its virtio networking modules, building
//! whatever is missing from the cache.
//!
//! ```no_run
//! let cache = guest_images::Cache::open_default(None)?;
//! let k = guest_images::debian_kernel(guest_images::Series::V6_1, &cache)?;
//! println!("{} {}", k.release, k.vmlinux.display());
//! # Ok::<(), guest_images::Error>(())
//! ```

pub mod agent;
pub mod apt;
pub mod bzimage;
pub mod cache;
pub mod cli;
pub mod cpio;
pub mod driver;
pub mod exec;
pub mod initramfs;
pub mod kbuild;
pub mod kernel;
pub mod kernel_only;
pub mod kmod;
pub mod manifest;
pub mod progress;
pub mod qemu;
mod step;
pub mod testkernel;
pub mod userland;

use std::path::PathBuf;

pub use agent::{AgentConfig, PowerOff, Transcript};
pub use apt::PackageRef;
pub use cache::Cache;
pub use initramfs::{Initramfs, InitramfsCompression};
pub use kernel::{KernelArtifacts, KernelModule, KernelPin, Series, VersionPolicy};
pub use manifest::{Artifact, Manifest};
pub use progress::Progress;
pub use step::BuildContext;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// apt or dpkg failed.
    #[error(transparent)]
    Apt(#[from] apt::AptError),
    /// A host tool is missing or failed.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A kernel module problem.
    #[error(transparent)]
    Kmod(#[from] kmod::KmodError),
    /// `vmlinux` could not be extracted.
    #[error("cannot extract vmlinux from {image}")]
    BzImage {
        /// The bzImage.
        image: String,
        /// Why.
        #[source]
        source: bzimage::BzImageError,
    },
    /// A file operation outside the cache failed.
    #[error("cannot access {path}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Guest agent input is malformed.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    /// Bad input or inconsistent data.
    #[error("{0}.")]
    Input(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The stock Debian cloud kernel of `series` (pinned version, or the newest
/// available one if the archive dropped the pin), built into `cache` as
/// needed. Progress goes to the `log` crate.
pub fn debian_kernel(series: Series, cache: &Cache) -> Result<KernelArtifacts> {
    kernel::debian_kernel(&BuildContext::new(cache.clone()), series)
}

/// Which virtio_net driver a guest loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverVariant {
    /// The kernel package's own virtio_net.ko.
    Stock,
    /// virtio_net.ko built from the same source with bda7fab54828 reverted.
    Prefix,
}

impl DriverVariant {
    /// `stock` or `prefix` (the manifest's profile names).
    pub fn as_str(self) -> &'static str {
        match self {
            DriverVariant::Stock => "stock",
            DriverVariant::Prefix => "prefix",
        }
    }
}

impl std::fmt::Display for DriverVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DriverVariant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stock" => Ok(DriverVariant::Stock),
            "prefix" | "pre-fix" => Ok(DriverVariant::Prefix),
            other => Err(Error::Input(format!(
                "unknown driver variant `{other}`: use stock or prefix"
            ))),
        }
    }
}

/// A bootable guest: kernel, the modules its initramfs loads, the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The stock kernel.
    pub kernel: KernelArtifacts,
    /// Which virtio_net it loads.
    pub variant: DriverVariant,
    /// The modules in the initramfs, in load order.
    pub modules: Vec<KernelModule>,
    /// The initramfs.
    pub initramfs: Initramfs,
}

/// Builds (or reuses) a guest of `series` with the given driver variant.
pub fn guest(
    ctx: &BuildContext,
    series: Series,
    variant: DriverVariant,
    compression: InitramfsCompression,
) -> Result<Guest> {
    let kernel = kernel::debian_kernel(ctx, series)?;
    guest_for_kernel(ctx, kernel, variant, compression)
}

/// Builds (or reuses) a guest for an already built kernel.
pub fn guest_for_kernel(
    ctx: &BuildContext,
    kernel: KernelArtifacts,
    variant: DriverVariant,
    compression: InitramfsCompression,
) -> Result<Guest> {
    let modules = match variant {
        DriverVariant::Stock => kernel.modules.clone(),
        DriverVariant::Prefix => {
            let prefix = driver::prefix_driver(ctx, &kernel)?;
            kernel
                .modules
                .iter()
                .map(|m| {
                    if m.name == prefix.module.name {
                        prefix.module.clone()
                    } else {
                        m.clone()
                    }
                })
                .collect()
        }
    };
    let spec = initramfs::InitramfsSpec {
        release: &kernel.release,
        modules: &modules,
        modules_builtin: &kernel.modules_builtin,
        compression,
        default_steps: Vec::new(),
        label: format!("{}-{}", kernel.series, variant),
    };
    let initramfs = initramfs::build_initramfs(ctx, &spec)?;
    Ok(Guest {
        kernel,
        variant,
        modules,
        initramfs,
    })
}

/// A bootable test-kernel guest: the built-in-everything 6.1 kernel and an
/// initramfs without modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestGuest {
    /// The kernel build.
    pub kernel: testkernel::TestKernel,
    /// The initramfs (agent, busybox, ip; no modules).
    pub initramfs: Initramfs,
}

/// Builds (or reuses) the test kernel in `variant` and its initramfs.
pub fn test_guest(
    ctx: &BuildContext,
    variant: DriverVariant,
    compression: InitramfsCompression,
) -> Result<TestGuest> {
    let kernel = testkernel::test_kernel(ctx, variant)?;
    let empty = ctx.cache.store_bytes(b"", "modules.builtin")?;
    let spec = initramfs::InitramfsSpec {
        release: "test-6.1",
        modules: &[],
        modules_builtin: &ctx.cache.object_path(&empty),
        compression,
        default_steps: Vec::new(),
        label: format!("test-{variant}"),
    };
    let initramfs = initramfs::build_initramfs(ctx, &spec)?;
    Ok(TestGuest { kernel, initramfs })
}
