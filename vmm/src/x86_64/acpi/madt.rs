//! The MADT: one enabled local APIC per vCPU and KVM's in-kernel IO-APIC.
//!
//! No interrupt source overrides: on a hardware-reduced ACPI machine Linux
//! has no legacy PIC and maps no ISA IRQs (the PIT's IRQ 0 is not used; the
//! local APIC timer is the clock event), and every interrupt a device has
//! comes with its GSI (DSDT `_CRS` and `_PRT`, or MSI). KVM's default
//! routing wires GSI n to IO-APIC pin n, which is what the IO-APIC entry
//! (GSI base 0) says.

use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::Aml;

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{APIC_START, IOAPIC_START};

/// The MADT for `vcpus` vCPUs (1 to `MAX_CPUS`): APIC IDs and processor
/// UIDs 0..vcpus, the IO-APIC with ID `vcpus`, as in the MP table.
pub fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus, IOAPIC_START as u32, 0));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    bytes
}
