//! Interrupts of a virtio-pci function: MSI-X vectors for the configuration
//! change and each queue, or, while MSI-X is disabled, the ISR status byte
//! and the INTx line (an eventfd the VMM binds to the IO-APIC pin that
//! INTA# of the slot is routed to).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::layout::VIRTIO_MSI_NO_VECTOR;
use crate::pci::{MsiSender, Msix};
use crate::ratelimit::{limited, RateLimiter};
use crate::virtio::{VirtioInterrupt, VirtioInterruptType};

/// ISR bit 0: a queue was used.
pub const ISR_QUEUE: u8 = 1 << 0;
/// ISR bit 1: the configuration changed.
pub const ISR_CONFIG: u8 = 1 << 1;

/// The interrupt state of a virtio-pci function, shared by the transport
/// (register accesses on a vCPU thread) and the device (which raises
/// interrupts from its own thread).
pub struct VirtioPciInterrupt {
    label: String,
    isr: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    msix: Mutex<Msix>,
    intx_evt: EventFd,
    intx_disabled: AtomicBool,
    limiter: RateLimiter,
}

impl std::fmt::Debug for VirtioPciInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciInterrupt")
            .field("isr", &self.isr)
            .field("config_vector", &self.config_vector)
            .field("msix", &*self.msix())
            .finish_non_exhaustive()
    }
}

impl VirtioPciInterrupt {
    /// State for `num_queues` queues and `num_vectors` MSI-X vectors, every
    /// vector unassigned, MSI-X disabled.
    pub fn new(
        label: String,
        num_queues: usize,
        num_vectors: u16,
        msi: Arc<dyn MsiSender>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            msix: Mutex::new(Msix::new(label.clone(), num_vectors, msi)),
            limiter: RateLimiter::new(label.clone()),
            label,
            isr: AtomicU8::new(0),
            config_vector: AtomicU16::new(VIRTIO_MSI_NO_VECTOR),
            queue_vectors: (0..num_queues)
                .map(|_| AtomicU16::new(VIRTIO_MSI_NO_VECTOR))
                .collect(),
            intx_evt: EventFd::new(EFD_NONBLOCK)?,
            intx_disabled: AtomicBool::new(false),
        })
    }

    /// The MSI-X table and pending bits.
    pub fn msix(&self) -> MutexGuard<'_, Msix> {
        crate::sync::lock(&self.msix)
    }

    /// The eventfd written to raise INTx; bind it to the GSI of the slot's
    /// INTA# with an irqfd.
    pub fn intx_evt(&self) -> &EventFd {
        &self.intx_evt
    }

    /// Reads and clears the ISR status (reading it is the driver's
    /// acknowledgement, and lowers INTx).
    pub fn read_isr(&self) -> u8 {
        self.isr.swap(0, Ordering::AcqRel)
    }

    /// The ISR status, without clearing it.
    pub fn isr(&self) -> u8 {
        self.isr.load(Ordering::Acquire)
    }

    /// Whether INTx is asserted: the ISR has bits set and MSI-X is off.
    pub fn intx_asserted(&self) -> bool {
        self.isr() != 0 && !self.msix().enabled()
    }

    /// Follows the command register's INTx disable bit.
    pub fn set_intx_disabled(&self, disabled: bool) {
        self.intx_disabled.store(disabled, Ordering::Release);
    }

    /// For a level-triggered INTx bound with a resampling irqfd
    /// (`KVM_IRQFD_FLAG_RESAMPLE`): call when the resample eventfd fires;
    /// raises the line again while the ISR has not been read.
    pub fn resample(&self) -> std::io::Result<()> {
        if self.intx_asserted() && !self.intx_disabled.load(Ordering::Acquire) {
            self.intx_evt.write(1)?;
        }
        Ok(())
    }

    /// The MSI-X vector of configuration changes.
    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    /// The MSI-X vector of queue `q` (NO_VECTOR for an unknown queue).
    pub fn queue_vector(&self, q: usize) -> u16 {
        self.queue_vectors
            .get(q)
            .map_or(VIRTIO_MSI_NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    // A vector the table has, or NO_VECTOR, which the driver reads back to
    // learn that the mapping failed.
    fn checked_vector(&self, v: u16) -> u16 {
        if v != VIRTIO_MSI_NO_VECTOR && v >= self.msix().num_vectors() {
            limited!(
                self.limiter,
                "bad_vector",
                log::Level::Warn,
                "{}: MSI-X vector {v} does not exist ({} vectors); mapping refused",
                self.label,
                self.msix().num_vectors()
            );
            VIRTIO_MSI_NO_VECTOR
        } else {
            v
        }
    }

    /// The driver maps configuration changes to vector `v`.
    pub fn set_config_vector(&self, v: u16) {
        self.config_vector
            .store(self.checked_vector(v), Ordering::Release);
    }

    /// The driver maps queue `q` to vector `v`.
    pub fn set_queue_vector(&self, q: usize, v: u16) {
        if let Some(slot) = self.queue_vectors.get(q) {
            slot.store(self.checked_vector(v), Ordering::Release);
        }
    }

    /// A device reset: vectors unassigned, ISR and pending bits cleared.
    /// The MSI-X table itself belongs to PCI and stays.
    pub fn reset(&self) {
        self.isr.store(0, Ordering::Release);
        self.config_vector
            .store(VIRTIO_MSI_NO_VECTOR, Ordering::Release);
        for v in &self.queue_vectors {
            v.store(VIRTIO_MSI_NO_VECTOR, Ordering::Release);
        }
        self.msix().clear_pending();
    }
}

impl VirtioInterrupt for VirtioPciInterrupt {
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()> {
        let mut msix = self.msix();
        if msix.enabled() {
            // virtio 1.2 section 4.1.4.5.1: the configuration bit is set
            // before any configuration change notification, MSI-X or not;
            // section 4.1.5.3/4: then the mapped vector, and no queue bit.
            if kind == VirtioInterruptType::Config {
                self.isr.fetch_or(ISR_CONFIG, Ordering::AcqRel);
            }
            let vector = match kind {
                VirtioInterruptType::Config => self.config_vector(),
                VirtioInterruptType::Queue(q) => self.queue_vector(usize::from(q)),
            };
            if vector == VIRTIO_MSI_NO_VECTOR {
                log::debug!(
                    "{}: interrupt {kind:?} has no MSI-X vector; dropped",
                    self.label
                );
                return Ok(());
            }
            return msix.trigger(vector);
        }
        drop(msix);
        let bit = match kind {
            VirtioInterruptType::Config => ISR_CONFIG,
            VirtioInterruptType::Queue(_) => ISR_QUEUE,
        };
        self.isr.fetch_or(bit, Ordering::AcqRel);
        if self.intx_disabled.load(Ordering::Acquire) {
            log::trace!(
                "{}: interrupt {kind:?} with INTx disabled; ISR only",
                self.label
            );
            return Ok(());
        }
        log::trace!("{}: INTx for {kind:?}", self.label);
        self.intx_evt.write(1)
    }
}
