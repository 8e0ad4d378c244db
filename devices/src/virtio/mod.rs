//! Virtio device framework: the contract between a virtio device (which knows
//! its features, configuration space and queues) and a transport (virtio-mmio
//! or virtio-pci, which knows registers and interrupts).
//!
//! The transport owns the driver-facing state machine (device status,
//! feature negotiation, queue set-up); the device only learns the negotiated
//! features and receives its queues, their notification events and an
//! interrupt handle when the driver sets DRIVER_OK (`VirtioDevice::activate`).

pub mod mmio;
pub mod net;
pub mod pci;
pub mod transport;

use std::fmt;
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Which interrupt a device asks its transport to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioInterruptType {
    /// The configuration space changed.
    Config,
    /// The device used buffers of this queue.
    Queue(u16),
}

/// How a device raises interrupts; implemented by each transport.
pub trait VirtioInterrupt: Send + Sync {
    /// Raises the interrupt of the given kind.
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()>;
}

/// What a device receives when the driver sets DRIVER_OK.
pub struct ActivateContext {
    /// Guest memory, for the queues' descriptor tables, rings and buffers.
    pub mem: GuestMemoryMmap,
    /// Raises queue and configuration interrupts through the transport.
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The queues the driver enabled, in queue index order, with the index.
    pub queues: Vec<(u16, Queue)>,
    /// One notification event per entry of `queues`, written when the driver
    /// notifies that queue (by the transport, or by KVM through an
    /// ioeventfd).
    pub queue_evts: Vec<EventFd>,
}

impl fmt::Debug for ActivateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivateContext")
            .field(
                "queues",
                &self.queues.iter().map(|q| q.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver did not enable a queue the device needs.
    #[error("the driver did not enable queue {0}, which the device needs")]
    MissingQueue(u16),
    /// The driver enabled a queue that is not valid (bad size or addresses).
    #[error("queue {0} is not valid: {1}")]
    InvalidQueue(u16, String),
    /// Any other reason.
    #[error("{0}")]
    Other(String),
}

/// A virtio device, independent of its transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`virtio_bindings::virtio_ids::VIRTIO_ID_NET`, ...).
    fn device_type(&self) -> u32;

    /// The maximum size of each of the device's queues; the length is the
    /// number of queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// The feature bits the device offers to the driver.
    fn offered_features(&self) -> u64;

    /// The driver's features were accepted (FEATURES_OK): `acked` is a
    /// subset of `offered_features()`, checked by the transport.
    fn set_acked_features(&mut self, acked: u64);

    /// The transport refused FEATURES_OK because the driver acked `acked`,
    /// which has bits the device did not offer; the driver reads
    /// FEATURES_OK back clear. Devices that keep an event log record it
    /// here.
    fn features_refused(&mut self, _acked: u64) {}

    /// Reads from the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes to the device-specific configuration space.
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// The configuration generation: changes whenever the configuration
    /// space changes, so that a driver can detect a torn read.
    fn config_generation(&self) -> u32 {
        0
    }

    /// The driver set DRIVER_OK: start processing queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;

    /// The driver reset the device (status 0): stop processing, drop the
    /// queues and the negotiated features.
    fn reset(&mut self);

    /// The device met an error it cannot recover from without a reset (a
    /// malformed queue, say): the transport then shows DEVICE_NEEDS_RESET in
    /// the device status. The device raises a configuration interrupt
    /// itself when this becomes true.
    fn needs_reset(&self) -> bool {
        false
    }

    /// The transport saw the device status change from `old` to `new`.
    /// Devices that keep an event log record it here.
    fn status_changed(&mut self, _old: u8, _new: u8) {}
}
