//! [`NetDevice`], the virtio-net device the transport drives, and
//! [`NetControl`], the handle the control socket uses to flip the link,
//! ask for an announce and read the status while the guest runs.

use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::config::{ConfigError, NetConfig};
use super::config_space;
use super::handler::NetEventHandler;
use super::link::{LinkChange, LinkError};
use super::process::ProcessError;
use super::state::{NetState, Shared};
use super::status::NetStatus;
use crate::event_log::EventLog;
use crate::net::{Backend, BackendError};
use crate::virtio::{ActivateContext, ActivateError, VirtioDevice};

/// Why a device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The description is invalid.
    #[error("invalid net device description")]
    Config(#[from] ConfigError),
    /// The backend could not be opened.
    #[error("cannot open the {kind} backend")]
    Backend {
        /// The backend kind.
        kind: String,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// The event loop's wake-up eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
}

/// A `Result` with a [`NetError`].
pub type Result<T> = std::result::Result<T, NetError>;

/// A virtio-net device. The transport owns it (through [`VirtioDevice`]);
/// [`NetDevice::control`] and [`NetDevice::event_handler`] hand out the
/// other two views of the same device.
pub struct NetDevice {
    shared: Arc<Shared>,
    queue_sizes: Vec<u16>,
    offered: u64,
}

impl std::fmt::Debug for NetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetDevice")
            .field("name", &self.shared.lock().name)
            .field("offered", &format_args!("{:#x}", self.offered))
            .finish_non_exhaustive()
    }
}

impl NetDevice {
    /// A device described by `cfg` (validated here) over `backend`,
    /// recording its events in `log`.
    pub fn new(cfg: NetConfig, backend: Box<dyn Backend>, log: EventLog) -> Result<Self> {
        cfg.validate()?;
        let wake = EventFd::new(EFD_NONBLOCK).map_err(NetError::EventFd)?;
        let queue_sizes = vec![cfg.queue_size; NetState::queue_count(&cfg)];
        let offered = cfg.features;
        Ok(Self {
            shared: Shared::new(NetState::new(cfg, backend, log), wake),
            queue_sizes,
            offered,
        })
    }

    /// A device with the backend `cfg.backend` names. For a `memory`
    /// backend the peer is returned too.
    pub fn from_config(
        cfg: NetConfig,
        log: EventLog,
    ) -> Result<(Self, Option<crate::net::memory::MemoryPeer>)> {
        let opened = cfg.backend.open().map_err(|source| NetError::Backend {
            kind: cfg.backend.to_string(),
            source,
        })?;
        Ok((Self::new(cfg, opened.backend, log)?, opened.peer))
    }

    /// A handle for the control socket (cheap to clone, `Send + Sync`).
    pub fn control(&self) -> NetControl {
        NetControl {
            shared: self.shared.clone(),
        }
    }

    /// The event-loop side of the device, to add to the VMM's
    /// `EventManager` once: it watches the backend, and the queue
    /// notification events of every activation.
    pub fn event_handler(&self) -> NetEventHandler {
        NetEventHandler::new(self.shared.clone())
    }

    /// The length of the configuration space for the offered features (for
    /// a transport that sizes its device-config window).
    pub fn config_len(&self) -> usize {
        config_space::len(self.offered)
    }

    /// Processes queue `idx` as if the driver had notified it: the
    /// synchronous entry point for tests, benchmarks and transports without
    /// an event loop. One pass does at most [`super::pass::BUDGET`] chains;
    /// the event loop runs the rest in its next iteration, a caller
    /// without one calls again.
    pub fn process_queue(&self, idx: u16) -> std::result::Result<(), ProcessError> {
        self.shared.with(|st, irqs| st.notified(irqs, idx))
    }

    /// Moves frames waiting in the backend into the guest (what the event
    /// loop does when the backend becomes readable).
    pub fn process_rx(&self) -> std::result::Result<(), ProcessError> {
        self.shared.with(|st, irqs| {
            if st.needs_reset {
                return Err(ProcessError::NeedsReset(0));
            }
            if st.active.is_none() {
                return Err(ProcessError::NotActive(0));
            }
            st.backend.rx_event_consumed();
            st.run_rx(irqs).map_err(|e| {
                st.enter_needs_reset(irqs, &e.to_string());
                ProcessError::Ring(e)
            })
        })
    }

    /// The shared state, for tests that interleave with the lock.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// See [`NetControl::set_link`].
    pub fn set_link(&self, up: bool) -> std::result::Result<LinkChange, LinkError> {
        self.control().set_link(up)
    }

    /// See [`NetControl::announce`].
    pub fn announce(&self) -> std::result::Result<(), LinkError> {
        self.control().announce()
    }

    /// See [`NetControl::status`].
    pub fn status(&self) -> NetStatus {
        self.control().status()
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn offered_features(&self) -> u64 {
        self.offered
    }

    fn set_acked_features(&mut self, acked: u64) {
        self.shared.lock().set_acked_features(acked);
    }

    fn features_refused(&mut self, acked: u64) {
        self.shared.lock().features_refused(acked);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.shared.lock().read_config(offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.shared.lock().write_config(offset, data);
    }

    fn config_generation(&self) -> u32 {
        self.shared.lock().generation
    }

    fn activate(&mut self, ctx: ActivateContext) -> std::result::Result<(), ActivateError> {
        let max = self.queue_sizes.first().copied().unwrap_or(0);
        let r = self.shared.lock().activate(ctx, max);
        // The event loop now watches the new queue events and runs a
        // first pass over them.
        self.shared.wake_handler();
        r
    }

    fn reset(&mut self) {
        self.shared.lock().reset();
        self.shared.wake_handler();
    }

    fn needs_reset(&self) -> bool {
        self.shared.lock().needs_reset
    }

    fn status_changed(&mut self, old: u8, new: u8) {
        self.shared.lock().status_changed(old, new);
    }
}

/// The control socket's handle on a device: link, announce, status.
#[derive(Clone)]
pub struct NetControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NetControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetControl").finish_non_exhaustive()
    }
}

impl NetControl {
    /// The device's name (`id`).
    pub fn name(&self) -> String {
        self.shared.lock().name.clone()
    }

    /// Sets the link up or down. The config `status` field exists when
    /// VIRTIO_NET_F_STATUS is offered, so the change is refused without
    /// it; with it, the field changes and — when the driver runs and
    /// negotiated STATUS — exactly one configuration interrupt is raised
    /// (none when the link already was in that state). With the link down
    /// the device drops the frames in both directions, as a NIC without
    /// carrier does.
    pub fn set_link(&self, up: bool) -> std::result::Result<LinkChange, LinkError> {
        self.shared.with(|st, irqs| st.set_link(irqs, up))
    }

    /// Asks the driver to announce itself (VIRTIO_NET_S_ANNOUNCE and a
    /// configuration interrupt); the driver clears the bit with
    /// VIRTIO_NET_CTRL_ANNOUNCE_ACK. Needs GUEST_ANNOUNCE (and STATUS,
    /// where the bit lives) offered and negotiated, and a running driver.
    pub fn announce(&self) -> std::result::Result<(), LinkError> {
        self.shared.with(|st, irqs| st.announce(irqs))
    }

    /// A snapshot of features, status, link, counters and queues.
    pub fn status(&self) -> NetStatus {
        self.shared.lock().status()
    }

    /// The event log the device writes to.
    pub fn event_log(&self) -> EventLog {
        self.shared.lock().log.clone()
    }
}
