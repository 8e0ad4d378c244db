//! The PCI MMIO window as one entry on the VMM's MMIO bus: every access in
//! it goes to the [`PciRoot`], which knows which BAR decodes the address
//! now, so BARs can move without the VMM re-registering anything.

use std::sync::{Arc, Mutex};

use super::PciRoot;
use crate::bus::BusDevice;

/// The PCI MMIO window; register it on the MMIO bus at the window's base
/// for its size ([`PciRoot::mmio_window`]).
pub struct PciMmioWindow {
    root: Arc<Mutex<PciRoot>>,
}

impl std::fmt::Debug for PciMmioWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciMmioWindow").finish_non_exhaustive()
    }
}

impl PciMmioWindow {
    /// The window of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        Self { root }
    }
}

impl BusDevice for PciMmioWindow {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let addr = base.wrapping_add(offset);
        let mut root = crate::sync::lock(&self.root);
        if !root.mmio_read(addr, data) {
            log::debug!("PCI MMIO read at {addr:#x}: no BAR decodes it; all-ones");
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let addr = base.wrapping_add(offset);
        let mut root = crate::sync::lock(&self.root);
        if !root.mmio_write(addr, data) {
            log::debug!("PCI MMIO write at {addr:#x}: no BAR decodes it; dropped");
        }
    }
}
