//! The driver-facing virtio state shared by both transports: device status
//! and its state machine, feature negotiation, queue selection and set-up,
//! queue notifications, and activation of the device on DRIVER_OK.
//!
//! virtio-mmio and virtio-pci differ only in where these registers live and
//! how interrupts are delivered; each keeps a [`TransportState`] and maps its
//! register file onto it.

mod queue;
pub mod status;
#[cfg(test)]
pub(crate) mod testing;

pub use queue::{AddrPart, QueueConfig, QueueConfigError, RingArea};

use std::sync::{Arc, Mutex, MutexGuard};

use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, VirtioInterruptType};
use crate::ratelimit::{limited, RateLimiter};
use crate::sync::lock;

/// The largest queue size a split virtqueue may have.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Why a transport could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device declares a queue whose maximum size no driver could use.
    #[error(
        "queue {queue} has maximum size {size}, which is not a power of two between 1 and 32768"
    )]
    InvalidQueueMaxSize {
        /// The queue index.
        queue: usize,
        /// The declared maximum size.
        size: u16,
    },
    /// The device declares more queues than the transport can address.
    #[error("the device has {0} queues, more than the transport supports ({1})")]
    TooManyQueues(usize, usize),
    /// A notification eventfd could not be created.
    #[error("cannot create a queue notification eventfd")]
    EventFd(#[source] std::io::Error),
}

/// What a write to the device status did, so that the transport can reset
/// its own state (interrupt status, MSI-X vectors) on a device reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWrite {
    /// The driver wrote 0: the device and the transport state were reset.
    Reset,
    /// The status changed (a bit was set, or FEATURES_OK refused).
    Changed,
    /// The write was refused or set nothing new.
    Unchanged,
}

/// Where a driver's notification of one queue lands: what the VMM needs to
/// register the queue's eventfd with KVM as an ioeventfd (`KVM_IOEVENTFD`),
/// so that notifications skip the exit to user space. Without it the
/// transport writes the same eventfd itself when the access reaches it.
#[derive(Debug)]
pub struct QueueNotifier {
    /// The queue index.
    pub queue: u16,
    /// The guest-physical MMIO address the driver writes to.
    pub addr: u64,
    /// `Some(v)`: match only 4-byte writes of `v` (virtio-mmio, where all
    /// queues share one register). `None`: match any write to `addr`
    /// (virtio-pci, where each queue has its own address and Linux writes
    /// 2 bytes).
    pub datamatch: Option<u32>,
    /// A clone of the queue's notification eventfd.
    pub evt: EventFd,
}

/// Transport-independent driver-facing state of one virtio device.
pub struct TransportState {
    label: String,
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: Arc<dyn VirtioInterrupt>,
    // Bits the driver set (no NEEDS_RESET).
    status: u8,
    // The transport itself found the device unusable (failed activation).
    needs_reset: bool,
    activated: bool,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    queue_evts: Vec<EventFd>,
    // The guest decides how often the warnings here happen.
    limiter: RateLimiter,
}

impl std::fmt::Debug for TransportState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportState")
            .field("label", &self.label)
            .field("status", &status::names(self.status))
            .field("needs_reset", &self.needs_reset)
            .field("activated", &self.activated)
            .field(
                "driver_features",
                &format_args!("{:#x}", self.driver_features),
            )
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl TransportState {
    /// State for `device`, reset, with one notification eventfd per queue.
    /// `label` names the device in logs (e.g. `virtio-mmio@0xd0000000`).
    /// At most `max_queues` queues are accepted.
    pub fn new(
        label: String,
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        max_queues: usize,
    ) -> Result<Self, TransportError> {
        let max_sizes = lock(&device).queue_max_sizes().to_vec();
        if max_sizes.len() > max_queues {
            return Err(TransportError::TooManyQueues(max_sizes.len(), max_queues));
        }
        let mut queues = Vec::with_capacity(max_sizes.len());
        let mut queue_evts = Vec::with_capacity(max_sizes.len());
        for (queue, &size) in max_sizes.iter().enumerate() {
            if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() {
                return Err(TransportError::InvalidQueueMaxSize { queue, size });
            }
            queues.push(QueueConfig::new(size));
            queue_evts.push(EventFd::new(EFD_NONBLOCK).map_err(TransportError::EventFd)?);
        }
        Ok(Self {
            limiter: RateLimiter::new(label.clone()),
            label,
            device,
            mem,
            interrupt,
            status: 0,
            needs_reset: false,
            activated: false,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            queue_evts,
        })
    }

    /// The name of the device in logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The rate limit for log lines the driver's accesses cause (bad
    /// registers, refused writes); the transports' register code uses it
    /// too.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The virtio device.
    pub fn device(&self) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
        lock(&self.device)
    }

    /// The device status as the driver reads it: the bits it set, plus
    /// DEVICE_NEEDS_RESET when the transport or the device needs a reset.
    pub fn status(&self) -> u8 {
        let needs_reset = self.needs_reset || self.device().needs_reset();
        self.status | if needs_reset { status::NEEDS_RESET } else { 0 }
    }

    /// Whether the device was activated (DRIVER_OK accepted) since the last
    /// reset.
    pub fn activated(&self) -> bool {
        self.activated
    }

    /// The features the driver acknowledged (meaningful after FEATURES_OK).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// The number of queues of the device.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// The notification eventfd of each queue, in queue order; writing 1
    /// to one is what a driver's notification does.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// One [`QueueNotifier`] per queue; `place` gives each queue's address
    /// and datamatch.
    pub fn notifiers(
        &self,
        place: impl Fn(u16) -> (u64, Option<u32>),
    ) -> std::io::Result<Vec<QueueNotifier>> {
        self.queue_evts
            .iter()
            .enumerate()
            .map(|(i, evt)| {
                // The queue count fits in u16: `new` accepted at most that many.
                let queue = i as u16;
                let (addr, datamatch) = place(queue);
                Ok(QueueNotifier {
                    queue,
                    addr,
                    datamatch,
                    evt: evt.try_clone()?,
                })
            })
            .collect()
    }

    fn report(&mut self, old: u8, new: u8) {
        if old == new {
            return;
        }
        log::info!(
            "{}: device status {old:#04x} -> {new:#04x} ({} -> {})",
            self.label,
            status::names(old),
            status::names(new)
        );
        self.device().status_changed(old, new);
    }

    /// The driver writes the device status; runs the state machine of
    /// virtio 1.2 section 2.1 and 3.1.1. Writing 0 resets the device.
    pub fn write_status(&mut self, value: u8) -> StatusWrite {
        let old = self.status();
        if value == 0 {
            self.reset();
            self.report(old, self.status());
            return StatusWrite::Reset;
        }
        if value & !status::DRIVER_BITS != 0 {
            limited!(
                self.limiter,
                "status_reserved_bits",
                log::Level::Warn,
                "{}: the driver wrote reserved or device-owned status bits {:#04x}; ignoring them",
                self.label,
                value & !status::DRIVER_BITS
            );
        }
        let value = value & status::DRIVER_BITS;
        if value & self.status != self.status {
            limited!(
                self.limiter,
                "status_refused",
                log::Level::Warn,
                "{}: the driver tried to clear status bits ({} -> {}) without a reset; refused",
                self.label,
                status::names(self.status),
                status::names(value)
            );
            return StatusWrite::Unchanged;
        }
        let added = value & !self.status;
        if added == 0 {
            return StatusWrite::Unchanged;
        }
        if self.status & status::FAILED != 0 {
            limited!(
                self.limiter,
                "status_refused",
                log::Level::Warn,
                "{}: the driver set {} after FAILED without a reset; refused",
                self.label,
                status::names(added)
            );
            return StatusWrite::Unchanged;
        }
        if added & status::FAILED != 0 {
            limited!(
                self.limiter,
                "status_failed",
                log::Level::Warn,
                "{}: the driver gave up on the device (FAILED)",
                self.label
            );
            self.status |= status::FAILED;
            self.report(old, self.status());
            return StatusWrite::Changed;
        }
        let missing = [
            (status::DRIVER, status::ACKNOWLEDGE),
            (status::FEATURES_OK, status::DRIVER),
            (status::DRIVER_OK, status::FEATURES_OK),
        ]
        .into_iter()
        .find(|&(bit, needed)| value & bit != 0 && value & needed == 0);
        if let Some((bit, needed)) = missing {
            limited!(
                self.limiter,
                "status_refused",
                log::Level::Warn,
                "{}: the driver set {} without {}; refused",
                self.label,
                status::names(bit),
                status::names(needed)
            );
            return StatusWrite::Unchanged;
        }

        let mut value = value;
        if added & status::FEATURES_OK != 0 && !self.accept_features() {
            // The driver must read FEATURES_OK back clear; anything it set
            // along with it cannot stand either.
            value &= !(status::FEATURES_OK | status::DRIVER_OK);
        }
        if value == self.status {
            return StatusWrite::Unchanged;
        }
        self.status = value;
        self.report(old, self.status());
        if added & value & status::DRIVER_OK != 0 {
            self.activate();
        }
        StatusWrite::Changed
    }

    // Checks the driver's features against the offer; on success tells the
    // device.
    fn accept_features(&mut self) -> bool {
        let offered = self.device().offered_features();
        let unoffered = self.driver_features & !offered;
        if unoffered != 0 {
            limited!(
                self.limiter,
                "features_refused",
                log::Level::Warn,
                "{}: FEATURES_OK refused: the driver acked {:#x}, which includes {unoffered:#x} that the device did not offer ({offered:#x})",
                self.label,
                self.driver_features
            );
            let acked = self.driver_features;
            self.device().features_refused(acked);
            return false;
        }
        log::info!(
            "{}: features negotiated: offered {offered:#x}, acked {:#x}",
            self.label,
            self.driver_features
        );
        let acked = self.driver_features;
        self.device().set_acked_features(acked);
        true
    }

    fn activate(&mut self) {
        match self.try_activate() {
            Ok(()) => {
                self.activated = true;
                log::info!("{}: device activated", self.label);
            }
            Err(e) => {
                limited!(
                    self.limiter,
                    "activate_failed",
                    log::Level::Error,
                    "{}: the device cannot start: {e}",
                    self.label
                );
                let old = self.status();
                self.needs_reset = true;
                self.report(old, self.status());
                // virtio 1.2 section 2.1.2: after DRIVER_OK a device that
                // sets DEVICE_NEEDS_RESET sends a configuration change
                // notification.
                if let Err(e) = self.interrupt.trigger(VirtioInterruptType::Config) {
                    limited!(
                        self.limiter,
                        "interrupt_failed",
                        log::Level::Error,
                        "{}: cannot raise the configuration interrupt: {e}",
                        self.label
                    );
                }
            }
        }
    }

    fn try_activate(&mut self) -> Result<(), ActivateError> {
        let event_idx = self.driver_features & (1u64 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut queues = Vec::new();
        let mut queue_evts = Vec::new();
        for (index, config) in self.queues.iter().enumerate() {
            if !config.ready() {
                continue;
            }
            // The queue count fits in u16: `new` accepted at most that many.
            let index = index as u16;
            let queue = config
                .build(&self.mem, event_idx)
                .map_err(|e| ActivateError::InvalidQueue(index, e.to_string()))?;
            let evt = self.queue_evts[usize::from(index)]
                .try_clone()
                .map_err(|e| {
                    ActivateError::Other(format!(
                        "cannot clone the notification eventfd of queue {index}: {e}"
                    ))
                })?;
            queues.push((index, queue));
            queue_evts.push(evt);
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            interrupt: self.interrupt.clone(),
            queues,
            queue_evts,
        };
        log::debug!("{}: activating with {ctx:?}", self.label);
        self.device().activate(ctx)
    }

    // Resets the device and every piece of transport state.
    fn reset(&mut self) {
        log::info!("{}: the driver reset the device", self.label);
        self.device().reset();
        self.status = 0;
        self.needs_reset = false;
        self.activated = false;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        // Old notifications would only be spurious wake-ups now.
        for evt in &self.queue_evts {
            let _ = evt.read();
        }
    }

    /// The device feature select register.
    pub fn device_features_select(&self) -> u32 {
        self.device_features_sel
    }

    /// The driver selects which 32 feature bits `device_features` shows.
    pub fn set_device_features_select(&mut self, sel: u32) {
        self.device_features_sel = sel;
    }

    /// The selected 32 bits of the offered features (0 past bit 63).
    pub fn device_features(&self) -> u32 {
        let offered = self.device().offered_features();
        match self.device_features_sel {
            0 => offered as u32,
            1 => (offered >> 32) as u32,
            _ => 0,
        }
    }

    /// The driver feature select register.
    pub fn driver_features_select(&self) -> u32 {
        self.driver_features_sel
    }

    /// The driver selects which 32 feature bits it writes next.
    pub fn set_driver_features_select(&mut self, sel: u32) {
        self.driver_features_sel = sel;
    }

    /// The selected 32 bits of the features the driver wrote.
    pub fn driver_features_page(&self) -> u32 {
        match self.driver_features_sel {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        }
    }

    /// The driver writes 32 bits of the features it accepts. Allowed only
    /// between DRIVER and FEATURES_OK.
    pub fn write_driver_features(&mut self, value: u32) {
        if self.status & (status::DRIVER | status::FEATURES_OK | status::FAILED) != status::DRIVER {
            limited!(
                self.limiter,
                "driver_features_refused",
                log::Level::Warn,
                "{}: driver features {value:#010x} (select {}) written in status {}; ignored",
                self.label,
                self.driver_features_sel,
                status::names(self.status)
            );
            return;
        }
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            sel => {
                limited!(
                    self.limiter,
                    "driver_features_refused",
                    log::Level::Warn,
                    "{}: driver features {value:#010x} written with select {sel}; no such feature bits",
                    self.label
                );
                return;
            }
        };
        self.driver_features =
            (self.driver_features & !(0xffff_ffffu64 << shift)) | (u64::from(value) << shift);
    }

    /// The queue select register.
    pub fn queue_select(&self) -> u32 {
        self.queue_sel
    }

    /// The driver selects the queue the queue registers refer to; any value
    /// is accepted, a queue the device does not have reads as absent.
    pub fn set_queue_select(&mut self, sel: u32) {
        self.queue_sel = sel;
    }

    /// The selected queue, if the device has it.
    pub fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(self.queue_sel as usize)
    }

    // The selected queue, if the driver may configure it now: after
    // FEATURES_OK and before DRIVER_OK (virtio 1.2 section 3.1.1).
    fn configurable_queue(&mut self, what: &str) -> Option<&mut QueueConfig> {
        let sel = self.queue_sel;
        let allowed = self.status & (status::FEATURES_OK | status::DRIVER_OK | status::FAILED)
            == status::FEATURES_OK
            && !self.needs_reset;
        if !allowed {
            limited!(
                self.limiter,
                "queue_setup_refused",
                log::Level::Warn,
                "{}: queue {sel} {what} written in status {}; ignored (queues are set up between FEATURES_OK and DRIVER_OK)",
                self.label,
                status::names(self.status)
            );
            return None;
        }
        let label = &self.label;
        let queue = self.queues.get_mut(sel as usize);
        if queue.is_none() {
            limited!(
                self.limiter,
                "queue_setup_refused",
                log::Level::Warn,
                "{label}: queue {sel} {what} written, but there is no queue {sel}; ignored"
            );
        }
        queue
    }

    /// The driver writes the selected queue's size.
    pub fn write_queue_size(&mut self, size: u32) {
        if let Some(Err(e)) = self.configurable_queue("size").map(|q| q.set_size(size)) {
            limited!(
                self.limiter,
                "queue_setup_refused",
                log::Level::Warn,
                "{}: queue size refused: {e}",
                self.label
            );
        }
    }

    /// The driver enables (or disables) the selected queue.
    pub fn write_queue_ready(&mut self, ready: bool) {
        // After a reset no queue is enabled, so disabling one changes
        // nothing: Linux's virtio-mmio driver does it for every queue when it
        // tears a device down (vm_del_vq, after the reset). Not a warning.
        if !ready && self.status == 0 {
            log::debug!(
                "{}: queue {} disabled after reset",
                self.label,
                self.queue_sel
            );
            return;
        }
        if let Some(q) = self.configurable_queue("ready") {
            q.set_ready(ready);
        }
    }

    /// The driver writes `part` of one ring address of the selected queue.
    pub fn write_queue_addr(&mut self, area: RingArea, part: AddrPart, value: u64) {
        if let Some(q) = self.configurable_queue("address") {
            q.set_addr(area, part, value);
        }
    }

    /// The driver notified queue `queue`: wakes the device through the
    /// queue's eventfd. Ignored (and logged) before DRIVER_OK and for
    /// queues that do not exist or were not enabled.
    pub fn notify(&self, queue: u32) {
        if !self.activated {
            limited!(
                self.limiter,
                "notify_ignored",
                log::Level::Warn,
                "{}: notification of queue {queue} in status {} (before DRIVER_OK or after a failed activation); ignored",
                self.label,
                status::names(self.status())
            );
            return;
        }
        match self.queues.get(queue as usize) {
            Some(q) if q.ready() => {
                if let Err(e) = self.queue_evts[queue as usize].write(1) {
                    limited!(
                        self.limiter,
                        "notify_failed",
                        log::Level::Error,
                        "{}: cannot signal queue {queue}: {e}",
                        self.label
                    );
                }
            }
            Some(_) => limited!(
                self.limiter,
                "notify_ignored",
                log::Level::Warn,
                "{}: notification of queue {queue}, which the driver did not enable; ignored",
                self.label
            ),
            None => limited!(
                self.limiter,
                "notify_ignored",
                log::Level::Warn,
                "{}: notification of queue {queue}, which does not exist; ignored",
                self.label
            ),
        }
    }

    /// The device's configuration generation.
    pub fn config_generation(&self) -> u32 {
        self.device().config_generation()
    }

    /// Reads the device-specific configuration space.
    pub fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.device().read_config(offset, data);
    }

    /// Writes the device-specific configuration space.
    pub fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.device().write_config(offset, data);
    }
}
