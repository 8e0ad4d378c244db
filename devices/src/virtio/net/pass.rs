//! What every queue pass (TX, RX, control) shares: the negotiated
//! parameters it depends on, the budgeted drain loop ([`drain`]), what a
//! pass reports back, and the decision whether the driver needs an
//! interrupt (EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT, NOTIFY_ON_EMPTY).
//!
//! # Budget
//!
//! A pass does at most [`BUDGET`] units of work (a chain for transmit and
//! control, a frame for receive) and then returns with [`Pass::more`] set,
//! even if the driver keeps posting: a guest with a second vCPU could
//! otherwise keep one pass, and the device lock the control socket and the
//! guest's own config reads wait for, busy for ever. The device then asks
//! the event loop for another turn, so the rest runs in its next
//! iteration, after other events.

use std::sync::atomic::Ordering;

use virtio_bindings::virtio_config::{VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_VERSION_1};
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::chain::{GuestFault, RingError};
use super::features::has;
use crate::net::hdr::{HDR_LEN, LEGACY_HDR_LEN};

/// Guest faults kept per pass for the event log; the rest are only counted.
pub const MAX_FAULTS_PER_PASS: usize = 16;

/// Units of work (chains for transmit and control, frames from the backend
/// for receive) one pass does before it yields to the event loop.
pub const BUDGET: u32 = 256;

/// Negotiated parameters a pass depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The acked features.
    pub acked: u64,
    /// The virtio-net header size: 12 with VERSION_1 or MRG_RXBUF, else 10.
    pub hdr_len: usize,
    /// MRG_RXBUF: a received frame may span several chains.
    pub mrg_rxbuf: bool,
    /// EVENT_IDX: used_event / avail_event suppression.
    pub event_idx: bool,
    /// NOTIFY_ON_EMPTY: interrupt when the ring runs empty regardless.
    pub notify_on_empty: bool,
}

impl Negotiated {
    /// The parameters for `acked` features.
    pub fn new(acked: u64) -> Self {
        let mrg_rxbuf = has(acked, VIRTIO_NET_F_MRG_RXBUF);
        Self {
            acked,
            hdr_len: if mrg_rxbuf || has(acked, VIRTIO_F_VERSION_1) {
                HDR_LEN
            } else {
                LEGACY_HDR_LEN
            },
            mrg_rxbuf,
            event_idx: has(acked, VIRTIO_RING_F_EVENT_IDX),
            notify_on_empty: has(acked, VIRTIO_F_NOTIFY_ON_EMPTY),
        }
    }
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Chains put in the used ring.
    pub used: u32,
    /// The driver wants an interrupt for them.
    pub interrupt: bool,
    /// The pass stopped at its budget and may have work left: run another
    /// pass soon (the event loop does, in its next iteration).
    pub more: bool,
}

/// What one step of a pass did; see [`drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// One unit of work is done; `used` chains went into the used ring.
    Did {
        /// Chains used by this step.
        used: u32,
    },
    /// The available ring has no (or not enough) chains; `seen` is the
    /// available index the step found, which new chains will move.
    RingEmpty {
        /// The available index when the ring ran out.
        seen: u16,
    },
    /// Nothing to do until something outside the ring happens (the
    /// backend has no frame for the guest).
    Idle,
}

/// The loop every pass runs: `step` until it is idle, the ring is empty
/// with notifications re-enabled, or `budget` steps did work.
///
/// Driver notifications are off while the pass works. When the ring runs
/// empty they are re-enabled, and the ring is checked once more, since
/// chains the driver added before the re-enable took effect came without
/// a notification. A pass that stops at its budget leaves them off and
/// returns [`Pass::more`]: the caller must run another pass.
pub fn drain(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    qidx: u16,
    neg: &Negotiated,
    budget: u32,
    mut step: impl FnMut(&mut Queue) -> Result<Step, RingError>,
) -> Result<Pass, RingError> {
    let mut out = Pass::default();
    let mut done = 0;
    disable_notification(q, mem, qidx)?;
    loop {
        if done >= budget {
            out.more = true;
            break;
        }
        match step(q)? {
            Step::Did { used } => {
                out.used += used;
                done += 1;
            }
            Step::Idle => break,
            Step::RingEmpty { seen } => {
                // Ask to be notified past what the step saw, not past
                // where it left the ring: a receive step that gave chains
                // back (a frame waiting for more buffers) rewound
                // `next_avail`, and with EVENT_IDX an `avail_event` behind
                // the chains already seen means the driver's next
                // additions never notify.
                let resume = q.next_avail();
                q.set_next_avail(seen);
                let enabled = enable_notification(q, mem, qidx);
                q.set_next_avail(resume);
                enabled?;
                if avail_idx(q, mem, qidx)? == seen {
                    break;
                }
                disable_notification(q, mem, qidx)?;
            }
        }
    }
    out.interrupt = out.used > 0 && needs_interrupt(q, mem, neg, qidx)?;
    Ok(out)
}

/// Guest faults seen in a pass: all counted, the first few kept.
#[derive(Debug, Default)]
pub struct Faults {
    /// The first faults.
    pub kept: Vec<GuestFault>,
    /// All faults.
    pub count: u64,
}

impl Faults {
    /// Notes a fault.
    pub fn push(&mut self, fault: GuestFault) {
        self.count += 1;
        if self.kept.len() < MAX_FAULTS_PER_PASS {
            self.kept.push(fault);
        }
    }
}

pub(crate) fn ring_err(qidx: u16, avail: bool, e: impl std::fmt::Display) -> RingError {
    if avail {
        RingError::AvailRing {
            queue: qidx,
            why: e.to_string(),
        }
    } else {
        RingError::UsedRing {
            queue: qidx,
            why: e.to_string(),
        }
    }
}

/// Stops driver notifications while the device works through the ring.
pub fn disable_notification(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    qidx: u16,
) -> Result<(), RingError> {
    q.disable_notification(mem)
        .map_err(|e| ring_err(qidx, false, e))
}

/// Asks for driver notifications again; true if chains arrived meanwhile.
pub fn enable_notification(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    qidx: u16,
) -> Result<bool, RingError> {
    q.enable_notification(mem)
        .map_err(|e| ring_err(qidx, false, e))
}

/// The driver's current available index.
pub fn avail_idx(q: &Queue, mem: &GuestMemoryMmap, qidx: u16) -> Result<u16, RingError> {
    q.avail_idx(mem, Ordering::Acquire)
        .map(|w| w.0)
        .map_err(|e| ring_err(qidx, true, e))
}

/// Whether the driver wants an interrupt now that chains were used.
pub fn needs_interrupt(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    qidx: u16,
) -> Result<bool, RingError> {
    if neg.event_idx {
        return q
            .needs_notification(mem)
            .map_err(|e| ring_err(qidx, true, e));
    }
    let flags: u16 = mem
        .read_obj(GuestAddress(q.avail_ring()))
        .map(u16::from_le)
        .map_err(|e| ring_err(qidx, true, e))?;
    if flags & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0 {
        return Ok(true);
    }
    Ok(neg.notify_on_empty && avail_idx(q, mem, qidx)? == q.next_avail())
}

#[cfg(test)]
mod tests {
    use virtio_queue::mock::MockSplitQueue;

    use super::*;
    use crate::virtio::net::features::{default_mask, mask};
    use crate::virtio::net::test_util;

    #[test]
    fn drain_stops_at_its_budget_however_much_work_is_left() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let vq = MockSplitQueue::new(&m, 16);
        let mut q = test_util::queue(&vq);
        let neg = Negotiated::new(default_mask());
        // A step that always finds work, as with a driver that re-posts
        // faster than the device uses.
        let mut steps = 0;
        let pass = drain(&mut q, &m, 0, &neg, 7, |_| {
            steps += 1;
            Ok(Step::Did { used: 0 })
        })
        .unwrap();
        assert_eq!(steps, 7);
        assert!(pass.more);

        // Idle and an empty ring end a pass without `more`.
        let pass = drain(&mut q, &m, 0, &neg, 7, |_| Ok(Step::Idle)).unwrap();
        assert!(!pass.more);
        let seen = q.next_avail();
        let pass = drain(&mut q, &m, 0, &neg, 7, |_| Ok(Step::RingEmpty { seen })).unwrap();
        assert_eq!(pass, Pass::default());
    }

    #[test]
    fn header_size_follows_features() {
        assert_eq!(Negotiated::new(0).hdr_len, 10);
        assert_eq!(Negotiated::new(mask(VIRTIO_F_VERSION_1)).hdr_len, 12);
        let n = Negotiated::new(mask(VIRTIO_NET_F_MRG_RXBUF) | mask(VIRTIO_RING_F_EVENT_IDX));
        assert_eq!(n.hdr_len, 12);
        assert!(n.mrg_rxbuf && n.event_idx && !n.notify_on_empty);
    }

    #[test]
    fn faults_are_counted_beyond_what_is_kept() {
        let mut f = Faults::default();
        for _ in 0..MAX_FAULTS_PER_PASS + 5 {
            f.push(GuestFault::TxWritable);
        }
        assert_eq!(f.count, MAX_FAULTS_PER_PASS as u64 + 5);
        assert_eq!(f.kept.len(), MAX_FAULTS_PER_PASS);
    }
}
