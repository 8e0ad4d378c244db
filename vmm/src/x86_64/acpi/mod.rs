//! ACPI tables, so that kernels without MP-table support (stock Debian
//! kernels lack `CONFIG_X86_MPPARSE`) find every vCPU's local APIC and the
//! IO-APIC, and can power off and reset the machine.
//!
//! The machine is hardware-reduced ACPI (as Cloud Hypervisor's and
//! Firecracker's): no PM1 blocks, no SCI, no legacy PIC for the guest. The
//! tables sit in the reserved BIOS area from [`ACPI_START`]:
//!
//! | table | what it says |
//! |-------|--------------|
//! | RSDP (at `ACPI_START`) | where the XSDT is; found by scanning 0xe0000-0xfffff, or through `boot_params.acpi_rsdp_addr` |
//! | XSDT | where the FADT and the MADT are |
//! | FADT (`FACP`) | hardware-reduced; the sleep control/status and reset registers ([`ACPI_PM_PORT`](crate::layout::ACPI_PM_PORT)); where the DSDT is |
//! | MADT (`APIC`) | one enabled local APIC per vCPU, the IO-APIC at GSI 0 |
//! | DSDT | `\_S5`, the serial port, the PCI host bridge (if any) |

mod dsdt;
mod fadt;
mod madt;
#[cfg(test)]
mod tests;

use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{ACPI_START, HIMEM_START};
use crate::x86_64::mptable::PciIrq;

/// The OEM ID in every table.
const OEM_ID: [u8; 6] = *b"VNTLAB";
/// The OEM table ID in every table.
const OEM_TABLE_ID: [u8; 8] = *b"VNETLAB ";
/// The OEM revision in every table.
const OEM_REVISION: u32 = 1;
/// Tables are placed at this alignment.
const TABLE_ALIGN: u64 = 16;

/// Most vCPUs the MADT describes: APIC IDs are 8 bits and the IO-APIC
/// takes the ID after the last vCPU's (as in the MP table).
pub const MAX_CPUS: u8 = 254;

/// Errors from building or writing the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too many or no vCPUs.
    #[error("the ACPI tables can describe 1 to {MAX_CPUS} vCPUs, not {0}")]
    CpuCount(u8),
    /// The tables do not fit in the BIOS area.
    #[error("the ACPI tables ({0} bytes) do not fit between {ACPI_START:#x} and {HIMEM_START:#x}")]
    TooLarge(u64),
    /// Writing them to guest memory failed.
    #[error("cannot write the ACPI tables to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// What the tables describe.
#[derive(Debug, Clone, Copy)]
pub struct Machine<'a> {
    /// Number of vCPUs (APIC IDs 0..vcpus; the IO-APIC gets ID `vcpus`).
    pub vcpus: u8,
    /// `Some` when the VM has a PCI bus (configuration mechanism #1 and the
    /// BAR window): the INTx routing of its devices.
    pub pci: Option<&'a [PciIrq]>,
}

/// The tables laid out in guest memory.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Guest address of the RSDP.
    pub rsdp: u64,
    /// Each table (the RSDP too) and where it goes.
    pub placed: Vec<(u64, Vec<u8>)>,
}

/// Hands out addresses from `ACPI_START` on.
struct Placer {
    next: u64,
    placed: Vec<(u64, Vec<u8>)>,
}

impl Placer {
    fn place(&mut self, bytes: Vec<u8>) -> u64 {
        let addr = self.next;
        self.next = (addr + bytes.len() as u64).next_multiple_of(TABLE_ALIGN);
        self.placed.push((addr, bytes));
        addr
    }
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Builds the tables for `machine` and lays them out from `ACPI_START`.
pub fn build(machine: &Machine) -> Result<Tables, Error> {
    if machine.vcpus == 0 || machine.vcpus > MAX_CPUS {
        return Err(Error::CpuCount(machine.vcpus));
    }
    let mut placer = Placer {
        // The RSDP comes first, at the address a scan finds first.
        next: (ACPI_START + Rsdp::len() as u64).next_multiple_of(TABLE_ALIGN),
        placed: Vec::new(),
    };
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&dsdt::aml(machine));
    let dsdt_addr = placer.place(dsdt.as_slice().to_vec());
    let fadt_addr = placer.place(fadt::fadt(dsdt_addr));
    let madt_addr = placer.place(madt::madt(machine.vcpus));
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = placer.place(aml_bytes(&xsdt));
    if placer.next > HIMEM_START {
        return Err(Error::TooLarge(placer.next - ACPI_START));
    }
    placer
        .placed
        .insert(0, (ACPI_START, aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr))));
    Ok(Tables {
        rsdp: ACPI_START,
        placed: placer.placed,
    })
}

/// Builds the tables and writes them to guest memory; returns the RSDP's
/// address (for `boot_params.acpi_rsdp_addr`).
pub fn setup_acpi(mem: &GuestMemoryMmap, machine: &Machine) -> Result<u64, Error> {
    let tables = build(machine)?;
    for (addr, bytes) in &tables.placed {
        mem.write_slice(bytes, GuestAddress(*addr))
            .map_err(Error::Memory)?;
    }
    Ok(tables.rsdp)
}
