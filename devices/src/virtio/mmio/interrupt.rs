//! The interrupt of a virtio-mmio device: the InterruptStatus bits (used
//! buffer, configuration change) and the eventfd that raises the line.

use std::sync::atomic::{AtomicU32, Ordering};

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtio::{VirtioInterrupt, VirtioInterruptType};

/// InterruptStatus plus the eventfd bound to the device's GSI. Shared by the
/// transport (register accesses) and the device (which raises interrupts
/// from its own thread), so it has no lock.
#[derive(Debug)]
pub struct MmioInterrupt {
    label: String,
    status: AtomicU32,
    evt: EventFd,
}

impl MmioInterrupt {
    /// No interrupt pending; `label` names the device in logs.
    pub fn new(label: String) -> std::io::Result<Self> {
        Ok(Self {
            label,
            status: AtomicU32::new(0),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// The eventfd written on every interrupt.
    pub fn evt(&self) -> &EventFd {
        &self.evt
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// The driver acknowledges the bits in `bits` (InterruptACK).
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::AcqRel);
    }

    /// Clears InterruptStatus on a device reset.
    pub fn reset(&self) {
        self.status.store(0, Ordering::Release);
    }

    /// For a level-triggered line bound with a resampling irqfd
    /// (`KVM_IRQFD_FLAG_RESAMPLE`): call when the resample eventfd fires;
    /// raises the line again while the driver has not acknowledged
    /// everything.
    pub fn resample(&self) -> std::io::Result<()> {
        if self.status() != 0 {
            self.evt.write(1)?;
        }
        Ok(())
    }
}

impl VirtioInterrupt for MmioInterrupt {
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()> {
        let bit = match kind {
            VirtioInterruptType::Config => VIRTIO_MMIO_INT_CONFIG,
            VirtioInterruptType::Queue(_) => VIRTIO_MMIO_INT_VRING,
        };
        self.status.fetch_or(bit, Ordering::AcqRel);
        log::trace!("{}: interrupt {kind:?}", self.label);
        self.evt.write(1)
    }
}
