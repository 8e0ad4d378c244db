//! PCI for the guest: one root bus (bus 0) with a host bridge at 00:00.0,
//! configuration mechanism #1 on ports 0xCF8-0xCFF, type-0 configuration
//! spaces with memory BARs and capabilities, and MSI-X.
//!
//! Memory BARs live in one PCI MMIO window that is a single entry on the
//! VMM's MMIO bus ([`PciMmioWindow`]); the root routes each access to the
//! BAR that currently decodes it, so a guest that moves a BAR needs nothing
//! from the VMM. A [`BarObserver`] hears about moves, for ioeventfds.

mod config;
mod config_io;
mod host_bridge;
mod msix;
mod root;
mod window;

pub use config::{BarKind, PciConfigError, PciConfigSpace, PciHeader};
pub use config_io::{PciConfigIo, PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_SIZE};
pub use host_bridge::HostBridge;
pub use msix::{msix_capability, MsiSender, Msix, MSIX_TABLE_ENTRY_SIZE};
pub use root::{BarObserver, PciRoot, PciRootError, HOST_BRIDGE_SLOT, PCI_SLOTS};
pub use window::PciMmioWindow;

#[cfg(test)]
pub(crate) use msix::tests::RecordingSender;

/// Offsets and bits of the type-0 configuration header and capabilities.
pub mod regs {
    /// Vendor ID (16 bits).
    pub const VENDOR_ID: usize = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE_ID: usize = 0x02;
    /// Command register (16 bits).
    pub const COMMAND: usize = 0x04;
    /// Status register (16 bits).
    pub const STATUS: usize = 0x06;
    /// Revision ID.
    pub const REVISION_ID: usize = 0x08;
    /// Programming interface.
    pub const PROG_IF: usize = 0x09;
    /// Subclass.
    pub const SUBCLASS: usize = 0x0a;
    /// Base class.
    pub const CLASS_CODE: usize = 0x0b;
    /// Cache line size.
    pub const CACHE_LINE_SIZE: usize = 0x0c;
    /// Latency timer.
    pub const LATENCY_TIMER: usize = 0x0d;
    /// Header type (bit 7: multi-function).
    pub const HEADER_TYPE: usize = 0x0e;
    /// BAR 0; BAR n is at `BAR0 + 4 * n`.
    pub const BAR0: usize = 0x10;
    /// Number of BARs of a type-0 header.
    pub const NUM_BARS: usize = 6;
    /// Subsystem vendor ID (16 bits).
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    /// Subsystem ID (16 bits).
    pub const SUBSYSTEM_ID: usize = 0x2e;
    /// Capabilities pointer.
    pub const CAPABILITY_LIST: usize = 0x34;
    /// Interrupt line (written by firmware or the OS).
    pub const INTERRUPT_LINE: usize = 0x3c;
    /// Interrupt pin (1 = INTA#).
    pub const INTERRUPT_PIN: usize = 0x3d;

    /// Command: respond to I/O space accesses.
    pub const COMMAND_IO: u16 = 1 << 0;
    /// Command: respond to memory space accesses.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Command: bus master.
    pub const COMMAND_MASTER: u16 = 1 << 2;
    /// Command: parity error response.
    pub const COMMAND_PARITY: u16 = 1 << 6;
    /// Command: SERR# enable.
    pub const COMMAND_SERR: u16 = 1 << 8;
    /// Command: INTx emulation disable.
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
    /// Status: INTx asserted.
    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    /// Status: the capability list is valid.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;

    /// BAR bit 0: I/O space.
    pub const BAR_IO: u32 = 1 << 0;
    /// BAR bits 2:1 = 10b: a 64-bit memory BAR.
    pub const BAR_MEM_TYPE_64: u32 = 0b10 << 1;
    /// BAR bit 3: prefetchable.
    pub const BAR_MEM_PREFETCH: u32 = 1 << 3;

    /// Capability ID of MSI-X.
    pub const CAP_ID_MSIX: u8 = 0x11;
    /// Capability ID of a vendor-specific capability.
    pub const CAP_ID_VENDOR: u8 = 0x09;

    /// PCI class: network controller.
    pub const CLASS_NETWORK: u8 = 0x02;
    /// PCI subclass of network controller: Ethernet.
    pub const SUBCLASS_ETHERNET: u8 = 0x00;
    /// PCI class: bridge.
    pub const CLASS_BRIDGE: u8 = 0x06;
    /// PCI subclass of bridge: host bridge.
    pub const SUBCLASS_HOST_BRIDGE: u8 = 0x00;
    /// PCI class: unassigned ("device does not fit any class").
    pub const CLASS_OTHER: u8 = 0xff;
}

/// A memory range a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRange {
    /// BAR index (0-5; the lower index of a 64-bit BAR).
    pub index: usize,
    /// Guest-physical base address.
    pub addr: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

impl BarRange {
    /// Whether `addr` falls in the range.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.addr && addr - self.addr < self.size
    }

    /// Whether two ranges share an address.
    pub fn overlaps(&self, other: &BarRange) -> bool {
        self.addr < other.addr.saturating_add(other.size)
            && other.addr < self.addr.saturating_add(self.size)
    }
}

/// A PCI function on the root bus: its configuration space and the BARs it
/// decodes. Implemented by the host bridge and by the virtio-pci transport.
pub trait PciDevice: Send {
    /// The guest reads 1, 2 or 4 bytes at `offset` (< 256) of the
    /// configuration space; the access does not cross a dword.
    fn read_config(&mut self, offset: usize, data: &mut [u8]);

    /// The guest writes 1, 2 or 4 bytes at `offset` (< 256) of the
    /// configuration space; the access does not cross a dword.
    fn write_config(&mut self, offset: usize, data: &[u8]);

    /// The memory BARs as currently programmed, decoding or not.
    fn bars(&self) -> Vec<BarRange>;

    /// Whether memory space decoding is enabled (command register bit 1).
    fn memory_enabled(&self) -> bool;

    /// The guest reads `data.len()` bytes at `offset` into memory BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);

    /// The guest writes `data` at `offset` into memory BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
}

#[cfg(test)]
mod tests;
