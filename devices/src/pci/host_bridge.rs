//! The host bridge at 00:00.0. Linux's configuration mechanism #1 probe
//! (`pci_sanity_check`) looks for a host bridge or an Intel device on bus
//! 0, so it must be there even though it does nothing.

use super::regs::{CLASS_BRIDGE, SUBCLASS_HOST_BRIDGE};
use super::{BarRange, PciConfigSpace, PciDevice, PciHeader};

/// Vendor ID of the host bridge (Intel), as in Cloud Hypervisor and
/// Firecracker.
pub const HOST_BRIDGE_VENDOR_ID: u16 = 0x8086;
/// Device ID of the host bridge, as in Cloud Hypervisor and Firecracker.
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x0d57;

/// A host bridge: identification only, no BARs, no interrupt.
#[derive(Debug)]
pub struct HostBridge {
    config: PciConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    /// The host bridge.
    pub fn new() -> Self {
        Self {
            config: PciConfigSpace::new(&PciHeader {
                vendor_id: HOST_BRIDGE_VENDOR_ID,
                device_id: HOST_BRIDGE_DEVICE_ID,
                revision_id: 0,
                class_code: CLASS_BRIDGE,
                subclass: SUBCLASS_HOST_BRIDGE,
                prog_if: 0,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
                interrupt_pin: 0,
                interrupt_line: 0,
            }),
        }
    }
}

impl PciDevice for HostBridge {
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn bars(&self) -> Vec<BarRange> {
        Vec::new()
    }

    fn memory_enabled(&self) -> bool {
        false
    }

    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
