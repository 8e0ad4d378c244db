//! The virtio-net device (virtio 1.2 section 5.1): feature bits chosen bit by
//! bit, configuration space, queue processing and runtime link control.
//!
//! # Using it from a VMM
//!
//! ```no_run
//! use devices::event_log::EventLog;
//! use devices::virtio::net::{NetConfig, NetDevice};
//!
//! let cfg: NetConfig = "backend=tap,features=-status,id=net0".parse()?;
//! let log = EventLog::to_file("events.jsonl".as_ref())?;
//! let (dev, _peer) = NetDevice::from_config(cfg, log)?;
//! let control = dev.control(); // for the control socket thread
//! let handler = dev.event_handler(); // event_manager.add_subscriber(Arc::new(Mutex::new(handler)))
//! // hand `dev` to the transport as its VirtioDevice
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Design
//!
//! * One state behind one lock (module `state`), seen three ways: the transport's
//!   [`NetDevice`] (a [`crate::virtio::VirtioDevice`]), the event loop's
//!   [`NetEventHandler`] and the control socket's [`NetControl`].
//!   Interrupts are raised after the lock is released.
//! * Descriptor processing is in plain functions ([`tx`], [`rx`],
//!   [`ctrl_queue`] over [`chain`]), tested with virtio-queue's
//!   `MockSplitQueue` and the in-memory backend. Each pass is bounded
//!   ([`pass::drain`], [`pass::BUDGET`]): a driver that keeps posting gets
//!   one budget per event-loop iteration, and the lock is released in
//!   between.
//! * A guest mistake that breaks a ring (a chain that loops or points
//!   outside guest memory, an available index that jumps) puts the device
//!   in DEVICE_NEEDS_RESET with a configuration interrupt; a bad frame or
//!   command is dropped or answered VIRTIO_NET_ERR, counted and logged.
//! * Receive steering: every frame goes to the first receive queue (the
//!   spec lets the device choose); transmit queues of every pair work.
//! * The link is the user's cable: it survives resets, and while it is
//!   down no frames flow.
//!
//! # Event log entries
//!
//! Each line (see [`crate::event_log`]) has `t_us`, `source` (the device
//! id) and `event`, one of:
//!
//! | event | when | main fields |
//! |---|---|---|
//! | `features_offered` | device created | `offered` {bits, value, names}, `not_offered_by_default`, `added_to_defaults`, `allow_invalid`, `offer_unimplemented`, `unimplemented_offered` (bits offered that the device will not honour), `backend`, `mac`, `mtu` |
//! | `features_acked` | FEATURES_OK | `acked`, `offered_not_acked`, `status_negotiated` |
//! | `features_refused` | FEATURES_OK refused: the driver acked bits not offered (rate-limited) | `acked`, `offered` {bits, value, names}, `not_offered` (names) |
//! | `device_status` | every status byte change | `old`, `new`, `set`, `cleared` (bit names) |
//! | `driver_failed` | the driver set FAILED | |
//! | `activated` | DRIVER_OK | `queues`, `hdr_len`, `mrg_rxbuf`, `event_idx`, `link_up` |
//! | `reset` | device reset | `was_active`, per-queue `queues`, `counters` |
//! | `config_interrupt` | a configuration interrupt is raised | `why` (`link_change`, `announce`, `needs_reset`), `generation` |
//! | `link_change` / `link_change_refused` | `set_link` | `up`, `outcome` or `why` |
//! | `announce` / `announce_refused` | `announce` | `config_status` or `why` |
//! | `ctrl_command` | each control command (rate-limited) | `command`, `ok`, `effect` or `error` |
//! | `queue_active` | first chain used on a queue since activation | `queue`, `role` |
//! | `guest_fault` | a malformed request survived (the first 32 in the device's life; then `guest_faults_suppressed` once, and only `counters.guest_faults`) | `queue`, `fault` |
//! | `needs_reset` | the device enters DEVICE_NEEDS_RESET | `why` |
//! | `backend_error` | the backend failed (first, then every 1000th) | `direction`, `error`, `count` |
//! | `config_write` | the driver changed the MAC in config space (rate-limited) | `offset`, `len`, `mac` |
//! | `events_suppressed` | before a rate-limited entry, when some of its kind were left out | `kind` (the event left out), `count` |
//!
//! The entries the harness relies on (features offered and acked, every
//! device-status transition, link changes, configuration interrupts) are
//! always written. The ones a driver can cause at will (control commands,
//! MAC writes) are rate-limited per kind: a burst of 32, then one a second,
//! the rest counted in `counters.events_suppressed`; guest faults have a
//! fixed allowance for the life of the device.

pub mod chain;
pub mod config;
pub mod config_space;
pub mod ctrl;
pub mod ctrl_queue;
mod device;
pub mod features;
mod handler;
mod link;
pub mod pass;
mod process;
pub mod rx;
pub mod rx_filter;
mod state;
pub mod status;
pub mod tx;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use config::{MacAddr, NetConfig, Transport};
pub use device::{NetControl, NetDevice, NetError};
pub use handler::NetEventHandler;
pub use link::{LinkChange, LinkError};
pub use process::ProcessError;
pub use status::{Counters, NetStatus};
