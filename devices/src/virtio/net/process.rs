//! Queue processing on the device state: which pass a notified queue
//! needs (transmit, receive, control), running it over the right queue,
//! and turning its results into interrupts, counters, log entries and,
//! for a broken ring, DEVICE_NEEDS_RESET.

use serde_json::json;

use virtio_bindings::virtio_net::VIRTIO_NET_F_MTU;

use super::chain::RingError;
use super::ctrl::{CtrlContext, CtrlEffect};
use super::ctrl_queue;
use super::features::has;
use super::pass::{Faults, Pass};
use super::rx::{self, RxContext, RX_BUDGET};
use super::state::{Irqs, NetState, Role};
use super::tx;

/// Why a queue was not processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The driver has not set DRIVER_OK.
    #[error("queue {0} was notified before the driver set DRIVER_OK")]
    NotActive(u16),
    /// The device waits for a reset.
    #[error("the device needs a reset; queue {0} is not processed")]
    NeedsReset(u16),
    /// No such queue.
    #[error("queue {0} does not exist")]
    NoSuchQueue(u16),
    /// The driver did not enable the queue.
    #[error("queue {0} was not enabled by the driver")]
    NotEnabled(u16),
    /// The queue is broken; the device now needs a reset.
    #[error("the device needs a reset: {0}")]
    Ring(#[from] RingError),
}

impl NetState {
    /// The driver notified queue `idx`.
    pub(crate) fn notified(&mut self, irqs: &mut Irqs, idx: u16) -> Result<(), ProcessError> {
        self.counters.queue_notifications += 1;
        if let Some(s) = self.queue_stats.get_mut(usize::from(idx)) {
            s.notifications += 1;
        }
        if self.needs_reset {
            return Err(ProcessError::NeedsReset(idx));
        }
        if self.active.is_none() {
            self.log_fault(
                json!({ "queue": idx, "fault": "queue notified before DRIVER_OK; ignored" }),
            );
            return Err(ProcessError::NotActive(idx));
        }
        self.process_queue(irqs, idx)
    }

    /// Runs the pass that queue `idx` needs.
    pub(crate) fn process_queue(&mut self, irqs: &mut Irqs, idx: u16) -> Result<(), ProcessError> {
        if self.needs_reset {
            return Err(ProcessError::NeedsReset(idx));
        }
        let Some(active) = &self.active else {
            return Err(ProcessError::NotActive(idx));
        };
        let role = active.role(idx).ok_or(ProcessError::NoSuchQueue(idx))?;
        if active
            .queues
            .get(usize::from(idx))
            .and_then(Option::as_ref)
            .is_none()
        {
            return Err(ProcessError::NotEnabled(idx));
        }
        let result = match role {
            Role::Tx(_) => self.run_tx(irqs, idx),
            Role::Rx(0) => self.run_rx(irqs),
            // Frames are only steered to the first pair; other receive
            // queues just collect buffers.
            Role::Rx(_) => Ok(()),
            Role::Ctrl => self.run_ctrl(irqs, idx),
        };
        if let Err(e) = &result {
            self.enter_needs_reset(irqs, &e.to_string());
        }
        result.map_err(ProcessError::Ring)
    }

    fn run_tx(&mut self, irqs: &mut Irqs, idx: u16) -> Result<(), RingError> {
        let mut faults = Faults::default();
        let link_up = self.fields.link_up;
        let Self {
            active,
            backend,
            tx,
            counters,
            ..
        } = self;
        let Some(a) = active else { return Ok(()) };
        let Some(Some(q)) = a.queues.get_mut(usize::from(idx)) else {
            return Ok(());
        };
        let r = tx::process_tx(
            q,
            idx,
            &a.mem,
            &a.neg,
            link_up,
            backend.as_mut(),
            tx,
            counters,
            &mut faults,
        );
        self.log_faults(idx, &faults);
        let err = self.tx.last_error.take();
        self.log_backend_error("tx", err);
        let pass = r?;
        self.note_pass(idx, pass, irqs);
        self.again_if_more(idx, pass);
        Ok(())
    }

    /// A pass that stopped at its budget gets another turn in the event
    /// loop's next iteration.
    fn again_if_more(&mut self, idx: u16, pass: Pass) {
        if pass.more && !self.queue_more.contains(&idx) {
            self.queue_more.push(idx);
        }
    }

    /// Whether a pass stopped at its budget and waits for another turn
    /// ([`Self::run_more`]); the event loop then wakes itself.
    pub(crate) fn has_more(&self) -> bool {
        self.rx_more || !self.queue_more.is_empty()
    }

    /// Gives every pass that stopped at its budget another turn (one
    /// budget each; they may ask again).
    pub(crate) fn run_more(&mut self, irqs: &mut Irqs) {
        for idx in std::mem::take(&mut self.queue_more) {
            // Errors were handled (NEEDS_RESET) inside.
            let _ = self.process_queue(irqs, idx);
        }
        if std::mem::take(&mut self.rx_more) {
            self.backend_readable(irqs);
        }
    }

    /// Moves frames from the backend into the first receive queue.
    pub(crate) fn run_rx(&mut self, irqs: &mut Irqs) -> Result<(), RingError> {
        let mut faults = Faults::default();
        let ctx = RxContext {
            filter: &self.filter,
            mac: self.fields.mac,
            offloads: self.guest_offloads,
            budget: RX_BUDGET,
            link_up: self.fields.link_up,
            mtu: has(self.acked, VIRTIO_NET_F_MTU).then_some(self.fields.mtu),
        };
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        let Some(Some(q)) = a.queues.get_mut(0) else {
            return Ok(());
        };
        let r = rx::process_rx(
            q,
            0,
            &a.mem,
            &a.neg,
            &ctx,
            self.backend.as_mut(),
            &mut self.rx,
            &mut self.counters,
            &mut faults,
        );
        self.log_faults(0, &faults);
        let err = self.rx.last_error.take();
        self.log_backend_error("rx", err);
        let pass = r?;
        self.rx_more = pass.more;
        self.note_pass(0, pass, irqs);
        Ok(())
    }

    /// Receives for a backend wake-up: into the guest when it runs, into
    /// the void (counted) when it does not.
    pub(crate) fn backend_readable(&mut self, irqs: &mut Irqs) {
        self.backend.rx_event_consumed();
        if self.active.is_some() && !self.needs_reset {
            if let Err(e) = self.run_rx(irqs) {
                self.enter_needs_reset(irqs, &e.to_string());
            }
            return;
        }
        let (dropped, errors) = self.rx.discard(self.backend.as_mut(), RX_BUDGET);
        self.counters.rx_dropped += dropped;
        self.counters.rx_errors += errors;
        if dropped == RX_BUDGET as u64 {
            self.rx_more = true;
        }
    }

    fn run_ctrl(&mut self, irqs: &mut Irqs, idx: u16) -> Result<(), RingError> {
        let mut faults = Faults::default();
        let mut answered = Vec::new();
        let Some(a) = &mut self.active else {
            return Ok(());
        };
        let Some(Some(q)) = a.queues.get_mut(usize::from(idx)) else {
            return Ok(());
        };
        let mut ctx = CtrlContext {
            acked: self.acked,
            max_pairs: self.cfg.queue_pairs,
            filter: &mut self.filter,
            fields: &mut self.fields,
            vq_pairs: &mut self.vq_pairs,
            guest_offloads: &mut self.guest_offloads,
        };
        let r = ctrl_queue::process_ctrl(
            q,
            idx,
            &a.mem,
            &a.neg,
            &mut ctx,
            &mut self.ctrl,
            &mut self.counters,
            &mut faults,
            &mut answered,
        );
        self.log_faults(idx, &faults);
        for a in answered {
            match &a.result {
                Ok(effect) => {
                    self.event_limited(
                        log::Level::Info,
                        "ctrl_command",
                        json!({ "command": a.what, "ok": true, "effect": format!("{effect:?}") }),
                    );
                    match effect {
                        CtrlEffect::AnnounceAcked | CtrlEffect::MacAddr(_) => {
                            self.generation = self.generation.wrapping_add(1);
                        }
                        CtrlEffect::GuestOffloads(o) => self.set_guest_offloads(*o),
                        _ => {}
                    }
                }
                Err(e) => self.event_limited(
                    log::Level::Warn,
                    "ctrl_command",
                    json!({ "command": a.what, "ok": false, "error": e.to_string() }),
                ),
            }
        }
        let pass = r?;
        self.note_pass(idx, pass, irqs);
        self.again_if_more(idx, pass);
        Ok(())
    }

    /// The first pass after activation: frames the driver queued before
    /// the event loop watched the queues.
    pub(crate) fn kick_all(&mut self, irqs: &mut Irqs) {
        let Some(active) = &mut self.active else {
            return;
        };
        if !std::mem::take(&mut active.kick) {
            return;
        }
        let indices: Vec<u16> = active.evts.iter().map(|(i, _)| *i).collect();
        for idx in indices {
            // Errors were handled (NEEDS_RESET) inside.
            let _ = self.process_queue(irqs, idx);
        }
    }
}
