//! The MSR values a Linux guest expects at boot.

use kvm_bindings::{kvm_msr_entry, Msrs};

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled, default memory type write-back.
const MTRR_ENABLE_WB: u64 = (1 << 11) | 0x6;

/// Errors from building or setting the boot MSRs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MSR list could not be built.
    #[error("cannot build the MSR list")]
    Build(#[source] vmm_sys_util::fam::Error),
    /// KVM refused to set them.
    #[error("cannot set the boot MSRs")]
    Set(#[source] kvm_ioctls::Error),
    /// KVM set fewer than asked.
    #[error("KVM set only {set} of {wanted} boot MSRs")]
    Partial {
        /// How many were set.
        set: usize,
        /// How many were asked for.
        wanted: usize,
    },
}

/// The boot MSR entries: SYSENTER/SYSCALL state cleared, TSC at 0, fast
/// strings on, MTRRs on with write-back default.
pub fn boot_msr_entries() -> Vec<kvm_msr_entry> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

/// Sets the boot MSRs on `vcpu`.
pub fn setup_msrs(vcpu: &kvm_ioctls::VcpuFd) -> Result<(), Error> {
    let entries = boot_msr_entries();
    let msrs = Msrs::from_entries(&entries).map_err(Error::Build)?;
    let set = vcpu.set_msrs(&msrs).map_err(Error::Set)?;
    if set != entries.len() {
        return Err(Error::Partial {
            set,
            wanted: entries.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_msrs_enable_fast_strings_and_mtrrs() {
        let e = boot_msr_entries();
        let get = |i| e.iter().find(|m| m.index == i).map(|m| m.data);
        assert_eq!(get(MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(get(MSR_MTRR_DEF_TYPE), Some(0x806));
        assert_eq!(get(MSR_LSTAR), Some(0));
        assert!(Msrs::from_entries(&e).is_ok());
    }
}
