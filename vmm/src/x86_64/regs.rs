//! The boot vCPU's register state for the Linux 64-bit boot protocol: long
//! mode with paging, the boot GDT, `rsi` pointing at the zero page.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{self, kvm_segment_from_gdt, BOOT_GDT};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, ZERO_PAGE_START};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Errors from setting up the boot registers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the GDT or IDT into guest memory failed.
    #[error("cannot write the boot GDT/IDT to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
    /// A KVM register ioctl failed.
    #[error("cannot {0} the vCPU registers")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
}

/// Writes the boot GDT and an empty IDT into guest memory.
pub fn write_gdt_idt(mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(Error::Memory)?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(Error::Memory)
}

/// The special registers for 64-bit entry, starting from `sregs` (what KVM
/// reports for a new vCPU), with page tables at `cr3`.
pub fn boot_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let code = kvm_segment_from_gdt(gdt::CODE64, gdt::CODE_INDEX);
    let data = kvm_segment_from_gdt(gdt::DATA, gdt::DATA_INDEX);
    let tss = kvm_segment_from_gdt(gdt::TSS, gdt::TSS_INDEX);

    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;

    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// The general registers for 64-bit entry at `entry`.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        // Bit 1 of RFLAGS is reserved and always set; interrupts are off.
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

/// Loads the boot state into `vcpu`: segments, control registers, general
/// registers and a clean FPU.
pub fn write_boot_state(vcpu: &VcpuFd, entry: u64, cr3: u64) -> Result<(), Error> {
    let sregs = vcpu.get_sregs().map_err(|e| Error::Kvm("read", e))?;
    vcpu.set_sregs(&boot_sregs(sregs, cr3))
        .map_err(|e| Error::Kvm("set", e))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|e| Error::Kvm("set", e))?;
    setup_fpu(vcpu)
}

/// A reset FPU state with the default control and MXCSR words.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), Error> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| Error::Kvm("set", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sregs_enter_long_mode_with_boot_selectors() {
        let s = boot_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.ds.selector, 0x18);
        assert_eq!(s.ss.selector, 0x18);
        assert_eq!(s.cs.l, 1);
        assert_eq!(s.cr3, 0x9000);
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_ne!(s.cr0 & X86_CR0_PE, 0);
        assert_ne!(s.cr4 & X86_CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.gdt.limit as usize, BOOT_GDT.len() * 8 - 1);
    }

    #[test]
    fn regs_point_rsi_at_zero_page() {
        let r = boot_regs(0x100_0000);
        assert_eq!(r.rip, 0x100_0000);
        assert_eq!(r.rsi, ZERO_PAGE_START);
        assert_eq!(r.rflags, 2);
    }

    #[test]
    fn gdt_is_written() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        write_gdt_idt(&mem).unwrap();
        let code: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START + 16)).unwrap();
        assert_eq!(code, gdt::CODE64);
    }
}
