//! The FADT: a hardware-reduced ACPI machine whose sleep control, sleep
//! status and reset registers are I/O ports of `devices::legacy::AcpiPm`.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;
use devices::legacy::{RESET_OFFSET, RESET_VALUE, SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET};

use super::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::ACPI_PM_PORT;

/// IA-PC boot architecture flags (ACPI 6.5 table 5.11): ISA devices exist
/// (the serial port at 0x3f8).
pub const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
/// IA-PC boot architecture flags: no VGA.
pub const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IA-PC boot architecture flags: do not enable PCIe ASPM.
pub const IAPC_PCIE_ASPM_CONTROLS: u16 = 1 << 4;
/// IA-PC boot architecture flags: no CMOS RTC (nothing answers at 0x70).
pub const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// The flags this machine sets. Left out on purpose: "8042" (bit 1), so
/// that Linux does not probe a keyboard controller that only has a reset
/// line (its reset through port 0x64 works without the driver), and "MSI
/// not supported" (bit 3): virtio-pci devices use MSI-X.
pub const IAPC_BOOT_ARCH: u16 = IAPC_LEGACY_DEVICES
    | IAPC_VGA_NOT_PRESENT
    | IAPC_PCIE_ASPM_CONTROLS
    | IAPC_CMOS_RTC_NOT_PRESENT;

/// A one-byte register at `port`.
fn io_register(port: u64) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port)
}

/// The FADT, pointing at the DSDT at `dsdt_addr`.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let base = u64::from(ACPI_PM_PORT);
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        // No fixed-feature power or sleep button: Linux creates no button
        // device for them.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.sleep_control_reg = io_register(base + SLEEP_CONTROL_OFFSET);
    fadt.sleep_status_reg = io_register(base + SLEEP_STATUS_OFFSET);
    fadt.reset_reg = io_register(base + RESET_OFFSET);
    fadt.reset_value = RESET_VALUE;
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"VNETLAB\0").into();
    let mut bytes = Vec::new();
    fadt.finalize().to_aml_bytes(&mut bytes);
    bytes
}
