//! An address-range bus: devices are registered by base address and length,
//! and a guest access is routed to the one device whose range contains it.
//!
//! The VMM has two of these, one for MMIO and one for port I/O; a vCPU exit
//! goes exit dispatch -> `Bus::read`/`Bus::write` -> `BusDevice`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// A device that answers guest accesses to its address range.
pub trait BusDevice: Send {
    /// The guest reads `data.len()` bytes at `base + offset`; fill `data`.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `base + offset`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

/// Errors from registering a device on a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range has length zero or wraps around the address space.
    #[error("invalid bus range: base {base:#x}, length {len:#x}")]
    InvalidRange {
        /// Base address of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps the device at {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// Base address of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
        /// Base address of the device already registered.
        other_base: u64,
        /// Length of the device already registered.
        other_len: u64,
    },
}

/// A shared, lockable bus device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Entry {
    len: u64,
    device: SharedDevice,
}

/// A set of devices, each owning a disjoint address range.
#[derive(Default)]
pub struct Bus {
    // Keyed by base address.
    devices: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for (base, e) in &self.devices {
            list.entry(&format_args!("{base:#x}+{:#x}", e.len));
        }
        list.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `device` for the addresses `base..base + len`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        // The candidate overlapping neighbours are the last range starting
        // before `end`.
        if let Some((&other_base, other)) = self.devices.range(..end).next_back() {
            if other_base + other.len > base {
                return Err(BusError::Overlap {
                    base,
                    len,
                    other_base,
                    other_len: other.len,
                });
            }
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    /// The device whose range contains `addr`, with its base address.
    pub fn device_at(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (&base, entry) = self.devices.range(..=addr).next_back()?;
        (addr - base < entry.len).then_some((base, &entry.device))
    }

    /// Routes a guest read; returns false when no device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.device_at(addr) {
            Some((base, dev)) => {
                lock(dev).read(base, addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Routes a guest write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.device_at(addr) {
            Some((base, dev)) => {
                lock(dev).write(base, addr - base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            data.fill((base as u8).wrapping_add(offset as u8));
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.writes.push((base, offset, data.to_vec()));
        }
    }

    fn dev() -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder::default()))
    }

    #[test]
    fn routes_by_range_and_offset() {
        let mut bus = Bus::new();
        let a = dev();
        let b = dev();
        bus.insert(a.clone(), 0x10, 0x10).unwrap();
        bus.insert(b.clone(), 0x20, 0x8).unwrap();

        assert!(bus.write(0x1f, &[1]));
        assert!(bus.write(0x20, &[2, 3]));
        assert!(!bus.write(0x28, &[4]));
        assert!(!bus.write(0xf, &[5]));

        assert_eq!(a.lock().unwrap().writes, vec![(0x10, 0xf, vec![1])]);
        assert_eq!(b.lock().unwrap().writes, vec![(0x20, 0, vec![2, 3])]);

        let mut data = [0u8; 2];
        assert!(bus.read(0x13, &mut data));
        assert_eq!(data, [0x13, 0x13]);
        assert!(!bus.read(0x30, &mut data));
    }

    #[test]
    fn rejects_overlap_and_bad_ranges() {
        let mut bus = Bus::new();
        bus.insert(dev(), 0x100, 0x10).unwrap();
        for (base, len) in [(0xf8, 0x9), (0x100, 1), (0x10f, 4), (0x0, 0x1000)] {
            assert!(
                matches!(bus.insert(dev(), base, len), Err(BusError::Overlap { .. })),
                "{base:#x}+{len:#x} must overlap"
            );
        }
        assert_eq!(
            bus.insert(dev(), 0x200, 0).unwrap_err(),
            BusError::InvalidRange {
                base: 0x200,
                len: 0
            }
        );
        assert!(bus.insert(dev(), u64::MAX, 2).is_err());
        // Adjacent ranges are fine.
        bus.insert(dev(), 0xf0, 0x10).unwrap();
        bus.insert(dev(), 0x110, 0x10).unwrap();
    }
}
