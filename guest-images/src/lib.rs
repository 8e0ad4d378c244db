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

pub mod apt;
pub mod bzimage;
pub mod cache;
pub mod exec;
pub mod kernel;
pub mod kernel_only;
pub mod kmod;
pub mod manifest;
pub mod progress;
mod step;

use std::path::PathBuf;

pub use apt::PackageRef;
pub use cache::Cache;
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
    #[error("Extracting vmlinux from {image} failed.")]
    BzImage {
        /// The bzImage.
        image: String,
        /// Why.
        #[source]
        source: bzimage::BzImageError,
    },
    /// A file operation outside the cache failed.
    #[error("File operation on {path} failed.")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
