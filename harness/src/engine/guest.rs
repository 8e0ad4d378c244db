//! The guest images a scenario needs, from guest-images' cache (built on
//! first use): the kernel, the initramfs with the guest agent, and how that
//! guest must be booted.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use guest_images::{BuildContext, Cache, DriverVariant, InitramfsCompression, Series};

use super::EngineError;
use crate::scenario::{Driver, Kernel, Scenario};

/// A bootable guest for one scenario.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    /// What it is, for logs (`Debian 6.1.0-50-cloud-amd64, pre-fix virtio_net`).
    pub label: String,
    /// The compressed kernel QEMU boots (`vmlinuz`, bzImage).
    pub bzimage: PathBuf,
    /// The ELF kernel our VMM boots.
    pub vmlinux: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// Whether the agent loads modules (Debian) or everything is built in
    /// (the test kernel).
    pub load_modules: bool,
    /// Whether the kernel has ACPI, i.e. can power QEMU's pc machine off
    /// (Debian); the test kernel has none and ends by rebooting.
    pub acpi: bool,
}

fn variant(driver: Driver) -> DriverVariant {
    match driver {
        Driver::Stock => DriverVariant::Stock,
        Driver::Prefix => DriverVariant::Prefix,
    }
}

/// Builds (or finds in the cache) the guest of `scenario`. The first use
/// downloads Debian packages; the test kernel's first build takes minutes,
/// which is why the engines build their guests in `Engine::prepare`.
pub fn guest_files(
    scenario: &Scenario,
    compression: InitramfsCompression,
) -> Result<GuestFiles, EngineError> {
    let infra = |what: String| {
        move |e: guest_images::Error| EngineError::Infrastructure {
            detail: format!("{what}: {e}"),
        }
    };
    let cache = Cache::open_default(None).map_err(|e| EngineError::Infrastructure {
        detail: format!("cannot open the guest-images cache: {e}"),
    })?;
    let ctx = BuildContext::new(cache);
    let v = variant(scenario.guest.driver);
    let series = match scenario.guest.kernel {
        Kernel::Debian61 => Series::V6_1,
        Kernel::Debian612 => Series::V6_12,
        Kernel::Test => {
            let g = guest_images::test_guest(&ctx, v, compression)
                .map_err(infra(format!("cannot build the {v} test kernel guest")))?;
            return Ok(GuestFiles {
                label: format!("the lab's 6.1 test kernel, {v} virtio_net built in"),
                bzimage: g.kernel.bzimage,
                vmlinux: g.kernel.vmlinux,
                initramfs: g.initramfs.path,
                load_modules: false,
                acpi: false,
            });
        }
    };
    let g = guest_images::guest(&ctx, series, v, compression)
        .map_err(infra(format!("cannot build the Debian {series} {v} guest")))?;
    Ok(GuestFiles {
        label: format!("Debian {}, {v} virtio_net", g.kernel.release),
        bzimage: g.kernel.vmlinuz,
        vmlinux: g.kernel.vmlinux,
        initramfs: g.initramfs.path,
        load_modules: true,
        acpi: true,
    })
}

/// The guests an engine has built, by kernel and driver, so that each
/// scenario after `prepare` finds its guest without asking the builder
/// (and its progress log) again.
#[derive(Debug)]
pub struct Guests {
    compression: InitramfsCompression,
    built: Mutex<Vec<((Kernel, Driver), GuestFiles)>>,
}

impl Guests {
    /// None built yet; initramfs with `compression`.
    pub fn new(compression: InitramfsCompression) -> Self {
        Self {
            compression,
            built: Mutex::new(Vec::new()),
        }
    }

    /// The guest of `scenario`, built on first use.
    pub fn get(&self, scenario: &Scenario) -> Result<GuestFiles, EngineError> {
        let key = (scenario.guest.kernel, scenario.guest.driver);
        let built = || self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, files)) = built().iter().find(|(k, _)| *k == key) {
            return Ok(files.clone());
        }
        // Built outside the lock: the cache has its own, per build step.
        let files = guest_files(scenario, self.compression)?;
        built().push((key, files.clone()));
        Ok(files)
    }

    /// Builds the guests of `scenarios` ahead of their deadlines.
    pub fn prepare(&self, scenarios: &[&Scenario]) -> Result<(), EngineError> {
        scenarios.iter().try_for_each(|s| self.get(s).map(drop))
    }
}
