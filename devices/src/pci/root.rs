//! The PCI root bus (bus 0): devices by slot, configuration accesses by
//! (bus, slot, function, offset), and routing of accesses in the PCI MMIO
//! window to the BAR that decodes them.

use super::config::CONFIG_SPACE_SIZE;
use super::{BarRange, HostBridge, PciDevice};
use crate::ratelimit::{limited, RateLimiter};

/// The slot of the host bridge.
pub const HOST_BRIDGE_SLOT: u8 = 0;
/// Slots on a PCI bus.
pub const PCI_SLOTS: u8 = 32;

/// Errors in putting together the PCI bus (VMM mistakes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciRootError {
    /// The slot number is 32 or more.
    #[error("PCI slot {0} does not exist (slots are 0-31)")]
    InvalidSlot(u8),
    /// Another device has the slot.
    #[error("PCI slot {0} is already taken")]
    SlotInUse(u8),
    /// The window is empty or wraps around.
    #[error("the PCI MMIO window {base:#x}+{size:#x} is empty or wraps around")]
    InvalidWindow {
        /// Base of the window.
        base: u64,
        /// Size of the window.
        size: u64,
    },
    /// A BAR of the new device lies outside the PCI MMIO window.
    #[error("BAR {bar} at {addr:#x}+{size:#x} of the device for slot {slot} is outside the PCI MMIO window")]
    BarOutsideWindow {
        /// The slot.
        slot: u8,
        /// The BAR index.
        bar: usize,
        /// The BAR address.
        addr: u64,
        /// The BAR size.
        size: u64,
    },
    /// A BAR of the new device overlaps a BAR of another device.
    #[error(
        "BAR {bar} of the device for slot {slot} overlaps BAR {other_bar} of slot {other_slot}"
    )]
    BarOverlap {
        /// The slot.
        slot: u8,
        /// The BAR index.
        bar: usize,
        /// The slot of the other device.
        other_slot: u8,
        /// The BAR index of the other device.
        other_bar: usize,
    },
}

/// Told when a BAR starts or stops decoding or moves, e.g. to move the
/// ioeventfds of a virtio-pci device's notification area. It is called with
/// the [`PciRoot`] locked, so it must not use the root. A guest sizing a
/// BAR with decoding on makes it "move" to the size mask and back.
pub trait BarObserver: Send {
    /// BAR `bar` of the device at `slot` decoded at `old` and now decodes at
    /// `new` (`None`: not decoding, because memory space is disabled).
    fn bar_moved(&self, slot: u8, bar: usize, old: Option<u64>, new: Option<u64>);
}

/// Bus 0: a host bridge at slot 0 and the devices the VMM adds.
pub struct PciRoot {
    devices: Vec<Option<Box<dyn PciDevice>>>,
    window_base: u64,
    window_size: u64,
    // What each slot decodes now, to route MMIO accesses.
    decoded: Vec<(u8, BarRange)>,
    observer: Option<Box<dyn BarObserver>>,
    // The guest moves BARs as often as it likes.
    limiter: RateLimiter,
}

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots: Vec<usize> = (0..self.devices.len())
            .filter(|&s| self.devices[s].is_some())
            .collect();
        f.debug_struct("PciRoot")
            .field("slots", &slots)
            .field(
                "window",
                &format_args!("{:#x}+{:#x}", self.window_base, self.window_size),
            )
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

impl PciRoot {
    /// A bus with the host bridge; device BARs must lie inside the PCI MMIO
    /// window `window_base..window_base + window_size`, which the VMM
    /// registers on its MMIO bus as a [`PciMmioWindow`](super::PciMmioWindow).
    pub fn new(window_base: u64, window_size: u64) -> Result<Self, PciRootError> {
        if window_size == 0 || window_base.checked_add(window_size).is_none() {
            return Err(PciRootError::InvalidWindow {
                base: window_base,
                size: window_size,
            });
        }
        let mut devices: Vec<Option<Box<dyn PciDevice>>> = (0..PCI_SLOTS).map(|_| None).collect();
        devices[usize::from(HOST_BRIDGE_SLOT)] = Some(Box::new(HostBridge::new()));
        Ok(Self {
            devices,
            window_base,
            window_size,
            decoded: Vec::new(),
            observer: None,
            limiter: RateLimiter::new("PCI"),
        })
    }

    /// The PCI MMIO window: (base, size).
    pub fn mmio_window(&self) -> (u64, u64) {
        (self.window_base, self.window_size)
    }

    fn in_window(&self, r: &BarRange) -> bool {
        r.addr >= self.window_base
            && r.size <= self.window_size
            && r.addr - self.window_base <= self.window_size - r.size
    }

    /// Puts `device` in `slot` (function 0). Its BARs must lie in the
    /// window and not overlap another device's.
    pub fn add_device(&mut self, slot: u8, device: Box<dyn PciDevice>) -> Result<(), PciRootError> {
        let entry = self
            .devices
            .get(usize::from(slot))
            .ok_or(PciRootError::InvalidSlot(slot))?;
        if entry.is_some() {
            return Err(PciRootError::SlotInUse(slot));
        }
        for bar in device.bars() {
            if !self.in_window(&bar) {
                return Err(PciRootError::BarOutsideWindow {
                    slot,
                    bar: bar.index,
                    addr: bar.addr,
                    size: bar.size,
                });
            }
            for (other_slot, d) in self.devices.iter().enumerate() {
                if let Some(other) = d
                    .as_ref()
                    .and_then(|d| d.bars().into_iter().find(|o| o.overlaps(&bar)))
                {
                    return Err(PciRootError::BarOverlap {
                        slot,
                        bar: bar.index,
                        // There are 32 slots.
                        other_slot: other_slot as u8,
                        other_bar: other.index,
                    });
                }
            }
        }
        self.devices[usize::from(slot)] = Some(device);
        self.update_decoding(slot);
        Ok(())
    }

    /// Sets the observer told about BAR moves.
    pub fn set_bar_observer(&mut self, observer: Box<dyn BarObserver>) {
        self.observer = Some(observer);
    }

    fn device(&mut self, bus: u8, slot: u8, function: u8) -> Option<&mut Box<dyn PciDevice>> {
        // One bus, single-function devices.
        if bus != 0 || function != 0 {
            return None;
        }
        self.devices.get_mut(usize::from(slot))?.as_mut()
    }

    /// A configuration read; absent devices read as all-ones.
    pub fn config_read(&mut self, bus: u8, slot: u8, function: u8, offset: usize, data: &mut [u8]) {
        match self.device(bus, slot, function) {
            Some(dev) if offset + data.len() <= CONFIG_SPACE_SIZE => dev.read_config(offset, data),
            _ => data.fill(0xff),
        }
    }

    /// A configuration write; writes to absent devices are dropped.
    pub fn config_write(&mut self, bus: u8, slot: u8, function: u8, offset: usize, data: &[u8]) {
        let Some(dev) = self.device(bus, slot, function) else {
            return;
        };
        if offset + data.len() > CONFIG_SPACE_SIZE {
            return;
        }
        dev.write_config(offset, data);
        self.update_decoding(slot);
    }

    // Recomputes what `slot` decodes and tells the observer what changed.
    fn update_decoding(&mut self, slot: u8) {
        let now: Vec<BarRange> = match &self.devices[usize::from(slot)] {
            Some(d) if d.memory_enabled() => d.bars(),
            _ => Vec::new(),
        };
        let before: Vec<BarRange> = self
            .decoded
            .iter()
            .filter(|(s, _)| *s == slot)
            .map(|(_, r)| *r)
            .collect();
        if before == now {
            return;
        }
        self.decoded.retain(|(s, _)| *s != slot);
        self.decoded.extend(now.iter().map(|r| (slot, *r)));
        let mut indexes: Vec<usize> = before.iter().chain(&now).map(|r| r.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        for index in indexes {
            let old = before.iter().find(|r| r.index == index).map(|r| r.addr);
            let new = now.iter().find(|r| r.index == index);
            if let Some(r) = new {
                if !self.in_window(r) {
                    limited!(
                        self.limiter,
                        "bar_outside_window",
                        log::Level::Warn,
                        "PCI 00:{slot:02x}.0: BAR {index} now at {:#x}+{:#x}, outside the PCI MMIO window {:#x}+{:#x}; the device will not see those accesses",
                        r.addr,
                        r.size,
                        self.window_base,
                        self.window_size
                    );
                }
            }
            let new = new.map(|r| r.addr);
            if old != new {
                limited!(
                    self.limiter,
                    "bar_moved",
                    log::Level::Info,
                    "PCI 00:{slot:02x}.0: BAR {index} decodes at {new:#x?} (was {old:#x?})"
                );
                if let Some(o) = &self.observer {
                    o.bar_moved(slot, index, old, new);
                }
            }
        }
    }

    fn route(&self, addr: u64) -> Option<(u8, BarRange)> {
        self.decoded.iter().find(|(_, r)| r.contains(addr)).copied()
    }

    /// An access in the PCI MMIO window; false (and all-ones read) when no
    /// BAR decodes `addr`.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        let Some((slot, bar)) = self.route(addr) else {
            data.fill(0xff);
            return false;
        };
        match self.devices[usize::from(slot)].as_mut() {
            Some(dev) => {
                dev.read_bar(bar.index, addr - bar.addr, data);
                true
            }
            None => false,
        }
    }

    /// An access in the PCI MMIO window; false when no BAR decodes `addr`.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        let Some((slot, bar)) = self.route(addr) else {
            return false;
        };
        let Some(dev) = self.devices[usize::from(slot)].as_mut() else {
            return false;
        };
        dev.write_bar(bar.index, addr - bar.addr, data);
        true
    }
}
