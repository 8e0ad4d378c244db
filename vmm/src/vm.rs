//! The KVM VM: guest memory slots, the in-kernel interrupt controllers
//! (PIC, IO-APIC, local APICs), the PIT, and the addresses KVM needs.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};

/// Errors from creating the KVM VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm (is KVM available, and may this user use it?)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// The KVM API is not version 12.
    #[error("/dev/kvm speaks KVM API version {0}, this VMM needs version 12")]
    ApiVersion(i32),
    /// A KVM ioctl during VM set-up failed.
    #[error("cannot {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
}

/// Opens /dev/kvm and checks the API version.
pub fn open_kvm() -> Result<Kvm, Error> {
    let kvm = Kvm::new().map_err(Error::OpenKvm)?;
    let version = kvm.get_api_version();
    if version != kvm_bindings::KVM_API_VERSION as i32 {
        return Err(Error::ApiVersion(version));
    }
    Ok(kvm)
}

/// Creates a VM with `mem` registered, an in-kernel irqchip and, when
/// `pit` is set, the in-kernel PIT.
///
/// Memory is registered before the irqchip exists: afterwards KVM makes the
/// first memory-slot change wait for an RCU grace period (about 10 ms),
/// which would delay the guest's start. The PIT is optional because its
/// teardown costs about 15 ms at exit and a bare-metal guest does not need
/// it; Linux calibrates its clocks against it, so keep it for kernels.
///
/// # Safety
///
/// KVM keeps using the host mappings of `mem` after this returns: the
/// caller must keep `mem` alive (and mapped) until the returned VM and all
/// its vCPUs are closed.
pub unsafe fn create_vm(kvm: &Kvm, mem: &GuestMemoryMmap, pit: bool) -> Result<VmFd, Error> {
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::Kvm("create the KVM VM", e))?;
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|_| {
                Error::Kvm(
                    "find the host address of guest memory",
                    kvm_ioctls::Error::new(libc::EFAULT),
                )
            })?;
        let mem_region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the
        // caller keeps alive for as long as the VM exists (this function's
        // contract), and slots do not overlap since the regions do not.
        unsafe { vm.set_user_memory_region(mem_region) }
            .map_err(|e| Error::Kvm("register guest memory with KVM", e))?;
    }
    vm.set_tss_address(KVM_TSS_ADDRESS as usize)
        .map_err(|e| Error::Kvm("set the TSS address", e))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(|e| Error::Kvm("set the identity map address", e))?;
    vm.create_irq_chip()
        .map_err(|e| Error::Kvm("create the in-kernel irqchip", e))?;
    if pit {
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| Error::Kvm("create the in-kernel PIT", e))?;
    }
    Ok(vm)
}
