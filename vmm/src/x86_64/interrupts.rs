//! Local APIC set-up for the boot protocol: LINT0 delivers the PIC's
//! interrupts (ExtINT) and LINT1 is the NMI line, as a BIOS leaves them.

use kvm_bindings::kvm_lapic_state;
use kvm_ioctls::VcpuFd;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Errors from programming the local APIC.
#[derive(Debug, thiserror::Error)]
#[error("cannot {0} the local APIC state")]
pub struct Error(&'static str, #[source] kvm_ioctls::Error);

fn read_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (b, r) in bytes.iter_mut().zip(&state.regs[offset..offset + 4]) {
        *b = *r as u8;
    }
    u32::from_le_bytes(bytes)
}

fn write_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (r, b) in state.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *r = b as std::os::raw::c_char;
    }
}

fn set_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Programs LINT0 as ExtINT and LINT1 as NMI in `state`.
pub fn configure_lint(state: &mut kvm_lapic_state) {
    let lvt0 = read_reg(state, APIC_LVT0);
    write_reg(state, APIC_LVT0, set_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = read_reg(state, APIC_LVT1);
    write_reg(state, APIC_LVT1, set_delivery_mode(lvt1, APIC_MODE_NMI));
}

/// Applies `configure_lint` to `vcpu`'s in-kernel local APIC.
pub fn set_lint(vcpu: &VcpuFd) -> Result<(), Error> {
    let mut state = vcpu.get_lapic().map_err(|e| Error("read", e))?;
    configure_lint(&mut state);
    vcpu.set_lapic(&state).map_err(|e| Error("set", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_modes() {
        let mut s = kvm_lapic_state::default();
        write_reg(&mut s, APIC_LVT0, 0x1_0000);
        configure_lint(&mut s);
        assert_eq!(read_reg(&s, APIC_LVT0), 0x1_0700);
        assert_eq!(read_reg(&s, APIC_LVT1), 0x400);
    }
}
