//! The engines `harness run --engine NAME` can choose from. Without a name
//! the first real engine that can run here is used, in the order listed;
//! the fake is used only by name.

use std::sync::Arc;

use super::fake::{FakeEngine, FAULTS_ENV};
use super::kernel_only::KernelOnlyEngine;
use super::qemu::{Accel, QemuEngine};
use super::vmm_guest::VmmGuestEngine;
use super::Engine;

/// The environment variable that names the engine when `--engine` is not
/// given.
pub const ENGINE_ENV: &str = "VNETLAB_ENGINE";

/// One engine the harness knows.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    /// The name `--engine` takes.
    pub name: &'static str,
    /// One line about it.
    pub summary: &'static str,
    /// A test double: never chosen automatically.
    pub test_double: bool,
    /// Builds the engine, or says why it cannot run on this machine.
    pub make: fn() -> Result<Arc<dyn Engine>, String>,
}

/// The known engines.
#[derive(Debug, Clone)]
pub struct Registry {
    engines: Vec<EngineInfo>,
}

fn make_kernel_only() -> Result<Arc<dyn Engine>, String> {
    let cache = guest_images::Cache::open_default(None).map_err(|e| e.to_string())?;
    Ok(Arc::new(KernelOnlyEngine::new(cache)?))
}

fn make_fake() -> Result<Arc<dyn Engine>, String> {
    let spec = std::env::var(FAULTS_ENV).unwrap_or_default();
    let fake = FakeEngine::from_spec(&spec)?;
    Ok(Arc::new(fake))
}

fn make_vmm_guest() -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(VmmGuestEngine::make()?))
}

fn make_qemu() -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(QemuEngine::auto()?))
}

fn make_qemu_tcg() -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(QemuEngine::new(Accel::Tcg)?))
}

fn make_qemu_kvm() -> Result<Arc<dyn Engine>, String> {
    Ok(Arc::new(QemuEngine::new(Accel::Kvm)?))
}

impl Registry {
    /// The engines built into this harness.
    pub fn builtin() -> Self {
        Self {
            engines: vec![
                EngineInfo {
                    name: "vmm-guest",
                    summary: "the lab's VMM and virtio-net device running the Debian guest and \
                              its agent; needs hardware-backed KVM",
                    test_double: false,
                    make: make_vmm_guest,
                },
                EngineInfo {
                    name: "vmm-kernel-only",
                    summary: "the lab's VMM and virtio-net device with the lab's test kernel, \
                              whose built-in probe runs the steps (no guest user space needed: \
                              runs on emulated KVM too)",
                    test_double: false,
                    make: make_kernel_only,
                },
                EngineInfo {
                    name: "qemu",
                    summary: "Debian guests under QEMU's own virtio-net-pci: -accel kvm where KVM \
                              is hardware-backed, else tcg; link changes by QMP set_link",
                    test_double: false,
                    make: make_qemu,
                },
                EngineInfo {
                    name: "qemu-tcg",
                    summary: "the qemu engine, always with TCG (software emulation)",
                    test_double: false,
                    make: make_qemu_tcg,
                },
                EngineInfo {
                    name: "qemu-kvm",
                    summary: "the qemu engine with -accel kvm (only where KVM is hardware-backed)",
                    test_double: false,
                    make: make_qemu_kvm,
                },
                EngineInfo {
                    name: "fake",
                    summary: "TEST DOUBLE: simulates the virtio_net driver's carrier logic; boots \
                          nothing and proves nothing about a real guest (faults from \
                          VNETLAB_FAKE_FAULTS)",
                    test_double: true,
                    make: make_fake,
                },
            ],
        }
    }

    /// A registry of these engines (for tests).
    pub fn new(engines: Vec<EngineInfo>) -> Self {
        Self { engines }
    }

    /// Every engine, in order.
    pub fn engines(&self) -> &[EngineInfo] {
        &self.engines
    }

    /// The engine called `name`, or, without a name, the first real engine
    /// that can run here. Test doubles are only used by name.
    pub fn create(&self, name: Option<&str>) -> Result<Arc<dyn Engine>, String> {
        let names = || {
            self.engines
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(name) = name {
            let info = self
                .engines
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| {
                    format!("no engine is called `{name}`; known engines: {}", names())
                })?;
            return (info.make)().map_err(|why| format!("engine {name} cannot run: {why}"));
        }
        let mut reasons = Vec::new();
        for info in self.engines.iter().filter(|e| !e.test_double) {
            match (info.make)() {
                Ok(engine) => return Ok(engine),
                Err(why) => reasons.push(format!("{}: {why}", info.name)),
            }
        }
        if reasons.is_empty() {
            Err(format!(
                "no real engine exists in this harness; choose one with --engine or \
                 {ENGINE_ENV} (known: {}); `fake` is a test double that runs no guest",
                names()
            ))
        } else {
            Err(format!("no engine can run here: {}", reasons.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_is_only_used_by_name() {
        let r = Registry::builtin();
        let fake = r.create(Some("fake")).unwrap();
        assert!(fake.name().contains("test double"));
        let e = r.create(Some("nonesuch")).err().unwrap();
        assert!(
            e.contains("known engines: vmm-guest, vmm-kernel-only, qemu, qemu-tcg, qemu-kvm, fake"),
            "{e}"
        );
        // Whatever this host can run, the automatic choice is never the
        // test double.
        match r.create(None) {
            Ok(engine) => assert!(!engine.name().contains("test double")),
            Err(e) => assert!(e.contains("no engine can run here"), "{e}"),
        }
    }

    #[test]
    fn without_a_real_engine_the_choice_says_so() {
        let r = Registry::new(vec![EngineInfo {
            name: "fake",
            summary: "",
            test_double: true,
            make: || Ok(Arc::new(FakeEngine::new())),
        }]);
        let e = r.create(None).err().unwrap();
        assert!(e.contains("no real engine"), "{e}");
    }

    #[test]
    fn kvm_engines_only_on_hardware_kvm() {
        let r = Registry::builtin();
        let kind = crate::host::KvmKind::detect();
        for name in ["qemu-kvm", "vmm-guest"] {
            match (&kind, r.create(Some(name))) {
                (crate::host::KvmKind::Hardware, _) => {}
                (_, Ok(e)) => panic!("{} was made without hardware KVM", e.name()),
                (crate::host::KvmKind::Emulated(why), Err(e)) => assert!(e.contains(why), "{e}"),
                (crate::host::KvmKind::Absent(why), Err(e)) => assert!(e.contains(why), "{e}"),
            }
        }
    }

    #[test]
    fn automatic_choice_skips_engines_that_cannot_run() {
        let r = Registry::new(vec![
            EngineInfo {
                name: "broken",
                summary: "",
                test_double: false,
                make: || Err("no /dev/kvm".into()),
            },
            EngineInfo {
                name: "fake",
                summary: "",
                test_double: true,
                make: || Ok(Arc::new(FakeEngine::new())),
            },
        ]);
        let e = r.create(None).err().unwrap();
        assert_eq!(e, "no engine can run here: broken: no /dev/kvm");
    }
}
