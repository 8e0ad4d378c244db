//! PCI configuration mechanism #1: the CONFIG_ADDRESS register at port
//! 0xCF8 and the CONFIG_DATA window at 0xCFC-0xCFF, as a port-I/O bus
//! device.

use std::sync::{Arc, Mutex};

use super::PciRoot;
use crate::bus::BusDevice;

/// First port of configuration mechanism #1.
pub const PCI_CONFIG_IO_BASE: u16 = 0xcf8;
/// Ports covered: CONFIG_ADDRESS (0xCF8-0xCFB) and CONFIG_DATA
/// (0xCFC-0xCFF).
pub const PCI_CONFIG_IO_SIZE: u64 = 8;

/// CONFIG_ADDRESS bit 31: configuration space access enabled.
const ENABLE: u32 = 1 << 31;
/// The bits of CONFIG_ADDRESS that hold something: enable, bus, device,
/// function, register (dword aligned).
const ADDRESS_MASK: u32 = ENABLE | 0x00ff_fffc;

/// Configuration mechanism #1 for a [`PciRoot`]; register it on the port
/// I/O bus at [`PCI_CONFIG_IO_BASE`] for [`PCI_CONFIG_IO_SIZE`] ports.
pub struct PciConfigIo {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
}

impl std::fmt::Debug for PciConfigIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfigIo")
            .field("address", &format_args!("{:#010x}", self.address))
            .finish_non_exhaustive()
    }
}

impl PciConfigIo {
    /// The ports for `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        Self { root, address: 0 }
    }

    // (bus, slot, function, offset) of a CONFIG_DATA access `byte` bytes
    // into the data window, if CONFIG_ADDRESS enables one.
    fn target(&self, byte: u64) -> Option<(u8, u8, u8, usize)> {
        if self.address & ENABLE == 0 {
            return None;
        }
        let a = self.address;
        Some((
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 0x7) as u8,
            (a & 0xfc) as usize + byte as usize,
        ))
    }

    fn root(&self) -> std::sync::MutexGuard<'_, PciRoot> {
        crate::sync::lock(&self.root)
    }
}

// Whether an access of `len` bytes at `byte` of a 4-byte register is
// naturally aligned and inside it.
fn valid_access(byte: u64, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && byte % len as u64 == 0 && byte + len as u64 <= 4
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            // Only dword accesses reach CONFIG_ADDRESS (PCI 3.0 section
            // 3.2.2.3.2); others read as nothing there.
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 if valid_access(offset - 4, data.len()) => match self.target(offset - 4) {
                Some((bus, slot, function, reg)) => {
                    self.root().config_read(bus, slot, function, reg, data)
                }
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let mut v = [0u8; 4];
                v.copy_from_slice(data);
                self.address = u32::from_le_bytes(v) & ADDRESS_MASK;
            }
            4..=7 if valid_access(offset - 4, data.len()) => {
                if let Some((bus, slot, function, reg)) = self.target(offset - 4) {
                    self.root().config_write(bus, slot, function, reg, data);
                }
            }
            _ => log::debug!(
                "PCI config I/O: {}-byte write at port {:#x} ignored",
                data.len(),
                0xcf8 + offset
            ),
        }
    }
}
