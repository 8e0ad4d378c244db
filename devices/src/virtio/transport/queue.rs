//! The driver's configuration of one virtqueue, as written through a
//! transport's registers, and its validation into a `virtio_queue::Queue`
//! when the device is activated.

use virtio_queue::{Queue, QueueState, QueueT};
use vm_memory::GuestMemoryMmap;

/// Which of a split virtqueue's three areas an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingArea {
    /// The descriptor table (`QueueDesc`, `queue_desc`).
    Desc,
    /// The driver area, i.e. the available ring (`QueueDriver`, `queue_driver`).
    Avail,
    /// The device area, i.e. the used ring (`QueueDevice`, `queue_device`).
    Used,
}

/// Which part of a 64-bit ring address a register write replaces: the
/// transports' registers are 32-bit halves (virtio-mmio, virtio-pci) or the
/// whole address (a 64-bit virtio-pci access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrPart {
    /// Bits 0-31; the value is the register's 32 bits.
    Low,
    /// Bits 32-63; the value is the register's 32 bits, not shifted.
    High,
    /// All 64 bits.
    Full,
}

impl AddrPart {
    /// `addr` with this part replaced by `value`.
    pub fn apply(self, addr: u64, value: u64) -> u64 {
        const LOW: u64 = 0xffff_ffff;
        match self {
            Self::Low => (addr & !LOW) | (value & LOW),
            Self::High => (addr & LOW) | (value << 32),
            Self::Full => value,
        }
    }
}

/// Why a configured queue cannot be handed to the device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueConfigError {
    /// The driver wrote a size the device refused and did not correct it.
    #[error(
        "the driver wrote the invalid size {0} (the maximum is {1} and it must be a power of two)"
    )]
    RefusedSize(u32, u16),
    /// virtio-queue rejected the configuration (size or ring alignment).
    #[error("the queue configuration is invalid: {0}")]
    Invalid(String),
    /// A ring lies partly or wholly outside guest memory.
    #[error("its rings are not inside guest memory")]
    OutsideMemory,
    /// The available ring is at guest address 0. The spec allows any
    /// address, but virtio-queue takes 0 to mean "not set up" and refuses
    /// to read such a ring, so the queue would break on first use.
    #[error("its available ring is at guest address 0, which the spec allows but this device cannot use (virtio-queue treats an available ring at 0 as not configured)")]
    AvailRingAtZero,
}

/// The registers of one queue. Addresses are kept exactly as the driver
/// wrote them (it may write the halves of a 64-bit address in any order);
/// they are validated only when the device is activated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
    // The last size write that was refused, until a valid size is written.
    refused_size: Option<u32>,
}

impl QueueConfig {
    /// A queue in its reset state: size = maximum, not ready, addresses 0.
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
            refused_size: None,
        }
    }

    /// Returns the queue to its reset state.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The largest size the device supports.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The size the driver chose (the maximum until it writes one).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether the driver enabled the queue.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The address of one of the rings, as written.
    pub fn addr(&self, area: RingArea) -> u64 {
        match area {
            RingArea::Desc => self.desc,
            RingArea::Avail => self.avail,
            RingArea::Used => self.used,
        }
    }

    /// Sets the queue size; refuses 0, sizes above the maximum and sizes
    /// that are not a power of two (split rings need one), keeping the
    /// previous size, so that a driver reading it back sees the refusal.
    pub fn set_size(&mut self, size: u32) -> Result<(), QueueConfigError> {
        match u16::try_from(size) {
            Ok(s) if s != 0 && s <= self.max_size && s.is_power_of_two() => {
                self.size = s;
                self.refused_size = None;
                Ok(())
            }
            _ => {
                self.refused_size = Some(size);
                Err(QueueConfigError::RefusedSize(size, self.max_size))
            }
        }
    }

    /// Enables or disables the queue.
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }

    /// Replaces `part` of a ring address with `value`.
    pub fn set_addr(&mut self, area: RingArea, part: AddrPart, value: u64) {
        let field = match area {
            RingArea::Desc => &mut self.desc,
            RingArea::Avail => &mut self.avail,
            RingArea::Used => &mut self.used,
        };
        *field = part.apply(*field, value);
    }

    /// Builds the queue the device will use, checking the size, the ring
    /// alignments and that every ring lies inside guest memory.
    pub fn build(&self, mem: &GuestMemoryMmap, event_idx: bool) -> Result<Queue, QueueConfigError> {
        if let Some(size) = self.refused_size {
            return Err(QueueConfigError::RefusedSize(size, self.max_size));
        }
        if self.avail == 0 {
            return Err(QueueConfigError::AvailRingAtZero);
        }
        let state = QueueState {
            max_size: self.max_size,
            next_avail: 0,
            next_used: 0,
            event_idx_enabled: event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc,
            avail_ring: self.avail,
            used_ring: self.used,
        };
        let queue = Queue::try_from(state).map_err(|e| QueueConfigError::Invalid(e.to_string()))?;
        if !queue.is_valid(mem) {
            return Err(QueueConfigError::OutsideMemory);
        }
        Ok(queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    #[test]
    fn size_must_be_power_of_two_and_at_most_max() {
        let mut q = QueueConfig::new(256);
        for bad in [0, 3, 100, 512, 0x1_0000] {
            assert!(q.set_size(bad).is_err(), "{bad} must be refused");
            assert_eq!(q.size(), 256);
        }
        q.set_size(64).unwrap();
        assert_eq!(q.size(), 64);
    }

    #[test]
    fn refused_size_blocks_activation_until_corrected() {
        let mut q = QueueConfig::new(16);
        q.set_ready(true);
        q.set_addr(RingArea::Desc, AddrPart::Full, 0x1000);
        q.set_addr(RingArea::Avail, AddrPart::Full, 0x2000);
        q.set_addr(RingArea::Used, AddrPart::Full, 0x3000);
        q.set_size(7).unwrap_err();
        assert_eq!(
            q.build(&mem(), false).unwrap_err(),
            QueueConfigError::RefusedSize(7, 16)
        );
        q.set_size(8).unwrap();
        let queue = q.build(&mem(), true).unwrap();
        assert_eq!(queue.size(), 8);
        assert!(queue.event_idx_enabled());
    }

    #[test]
    fn halves_and_bad_rings() {
        let mut q = QueueConfig::new(16);
        q.set_ready(true);
        q.set_addr(RingArea::Desc, AddrPart::High, 0x1234_5678);
        q.set_addr(RingArea::Desc, AddrPart::Low, 0x9000);
        assert_eq!(q.addr(RingArea::Desc), 0x1234_5678_0000_9000);
        // Halves in the other order, and a low half that is replaced.
        q.set_addr(RingArea::Avail, AddrPart::Low, 0xdead_0000);
        q.set_addr(RingArea::Avail, AddrPart::High, 0x1);
        q.set_addr(RingArea::Avail, AddrPart::Low, 0x2000);
        assert_eq!(q.addr(RingArea::Avail), 0x1_0000_2000);
        q.set_addr(RingArea::Avail, AddrPart::Full, 0x2000);
        q.set_addr(RingArea::Used, AddrPart::Full, 0x3000);
        assert_eq!(
            q.build(&mem(), false).unwrap_err(),
            QueueConfigError::OutsideMemory
        );
        // A misaligned descriptor table.
        q.set_addr(RingArea::Desc, AddrPart::Full, 0x1008);
        assert!(matches!(
            q.build(&mem(), false),
            Err(QueueConfigError::Invalid(_))
        ));
        q.reset();
        assert_eq!(q, QueueConfig::new(16));
    }

    #[test]
    fn available_ring_at_zero_is_refused_with_the_reason() {
        let mut q = QueueConfig::new(16);
        q.set_ready(true);
        q.set_addr(RingArea::Desc, AddrPart::Full, 0x1000);
        q.set_addr(RingArea::Avail, AddrPart::Full, 0);
        q.set_addr(RingArea::Used, AddrPart::Full, 0x3000);
        let err = q.build(&mem(), false).unwrap_err();
        assert_eq!(err, QueueConfigError::AvailRingAtZero);
        assert!(err.to_string().contains("virtio-queue"), "{err}");
        // Only the available ring has the limitation.
        q.set_addr(RingArea::Desc, AddrPart::Full, 0);
        q.set_addr(RingArea::Avail, AddrPart::Full, 0x1000);
        q.set_addr(RingArea::Used, AddrPart::Full, 0x2000);
        q.build(&mem(), false).unwrap();
    }
}
