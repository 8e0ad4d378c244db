//! The DSDT's AML: what a hardware-reduced machine must describe for Linux
//! to power it off and to keep using its devices.
//!
//! - `\_S5`: the sleep type for power-off. Without it Linux registers no
//!   ACPI power-off handler.
//! - `\_SB.COM1` (PNP0501): the serial port and its interrupt. Without a
//!   legacy PIC Linux maps no ISA IRQs by itself; the 8250 driver finds
//!   IRQ 4 here (through PNP) or could not request it.
//! - `\_SB.PCI0` (PNP0A03), when the VM has a PCI bus: with ACPI, x86 Linux
//!   scans PCI buses only below the host bridges the DSDT names
//!   (`pci_acpi_init()` returns 0, so `pci_legacy_init()` never runs, and
//!   `pcibios_fixup_peer_bridges()` does nothing without a PCI BIOS's last
//!   bus number; a 6.1 kernel with ACPI found no PCI device on our VMM
//!   with this device left out). `_CRS` gives bus 0, the configuration ports and the BAR
//!   window; `_PRT` routes each slot's INTA# to its GSI (Linux registers
//!   such lines level-triggered, active-low; devices use MSI-X first).
//!
//! Left out on purpose: virtio-mmio devices (kernels that use them take
//! `virtio_mmio.device=` from the command line), processor objects (the
//! MADT lists the CPUs), the i8042 (no driver needed for its reset line).

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Name, Package,
    PackageBuilder, ResourceTemplate, IO, ZERO,
};
use acpi_tables::Aml;
use devices::legacy::S5_SLEEP_TYPE;
use devices::pci::{PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_SIZE};

use super::Machine;
use crate::layout::{PCI_MMIO_SIZE, PCI_MMIO_START, SERIAL_IRQ, SERIAL_PORT};
use crate::x86_64::mptable::PciIrq;

/// The DSDT body (without its header) for `machine`.
pub fn aml(machine: &Machine) -> Vec<u8> {
    let mut aml = Vec::new();
    Name::new("_S5_".into(), &Package::new(vec![&S5_SLEEP_TYPE])).to_aml_bytes(&mut aml);
    serial_port(&mut aml);
    if let Some(irqs) = machine.pci {
        pci_host_bridge(irqs, &mut aml);
    }
    aml
}

/// The 16550 at `SERIAL_PORT`, edge-triggered, active-high IRQ `SERIAL_IRQ`.
fn serial_port(sink: &mut Vec<u8>) {
    let ports = IO::new(SERIAL_PORT, SERIAL_PORT, 1, 8);
    // Consumer, edge-triggered, active-high, exclusive: an ISA IRQ.
    let irq = Interrupt::new(true, true, false, false, SERIAL_IRQ);
    let crs = ResourceTemplate::new(vec![&ports, &irq]);
    Device::new(
        "_SB_.COM1".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

/// The PCI host bridge of bus 0, with the INTx routing `irqs`.
fn pci_host_bridge(irqs: &[PciIrq], sink: &mut Vec<u8>) {
    let window_end = PCI_MMIO_START + PCI_MMIO_SIZE - 1;
    let buses = AddressSpace::<u16>::new_bus_number(0, 0);
    let config_ports = IO::new(
        PCI_CONFIG_IO_BASE,
        PCI_CONFIG_IO_BASE,
        1,
        PCI_CONFIG_IO_SIZE as u8,
    );
    let bar_window = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO_START as u32,
        window_end as u32,
        None,
    );
    let crs = ResourceTemplate::new(vec![&buses, &config_ports, &bar_window]);
    // _PRT entries: { address (slot << 16 | 0xffff: any function), pin
    // (0 = INTA#), source (0: a GSI, not a link device), GSI }.
    let mut prt = PackageBuilder::new();
    for irq in irqs {
        let address = (u32::from(irq.slot) << 16) | 0xffff;
        let gsi = u32::from(irq.ioapic_pin);
        prt.add_element(&Package::new(vec![&address, &irq.pin, &ZERO, &gsi]));
    }
    Device::new(
        "_SB_.PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_UID".into(), &ZERO),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &prt),
        ],
    )
    .to_aml_bytes(sink);
}
