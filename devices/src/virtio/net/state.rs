//! The device state behind one lock, shared by the transport (through
//! [`super::NetDevice`]), the event loop ([`super::NetEventHandler`]) and
//! the control socket ([`super::NetControl`]); here are its set-up, the
//! transport-facing operations (features, config space, activation, reset)
//! and the status report. Queue processing is in `process`, link control
//! in `link`.
//!
//! Interrupts are collected while the lock is held and raised after it is
//! released ([`Shared::with`]), so a transport whose interrupt code takes
//! its own locks cannot deadlock against a vCPU that holds the transport
//! and reads the device's config space. A reset or a new activation can
//! come in between; the [`IrqGate`] makes sure such stale interrupts are
//! dropped instead of setting ISR / InterruptStatus after the reset.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_FAILED;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_STATUS,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::config::NetConfig;
use super::config_space::{self, ConfigFields, WriteOutcome};
use super::ctrl_queue::CtrlScratch;
use super::features::{self, has, FeatureSet};
use super::pass::{Faults, Negotiated, Pass};
use super::rx::RxScratch;
use super::rx_filter::RxFilter;
use super::status::{Counters, NetStatus, QueueStats};
use super::tx::TxScratch;
use crate::error::display_chain;
use crate::event_log::EventLog;
use crate::net::{Backend, GuestOffloads};
use crate::ratelimit::{limited, RateLimiter};
use crate::virtio::transport::status::bit_names;
use crate::virtio::transport::QueueConfigError;
use crate::virtio::{ActivateContext, ActivateError, VirtioInterrupt, VirtioInterruptType};

/// Guest faults written to the event log over the device's life (resets
/// and activations do not start a new allowance); later ones are only
/// counted (`counters.guest_faults`).
pub(super) const FAULTS_LOGGED: u32 = 32;
/// Event-log entries of one guest-triggered kind (control commands, MAC
/// writes, refused FEATURES_OK) written at once before the rate limit.
pub(super) const EVENT_BURST: u32 = 32;
/// Time for one more such entry once the burst is spent.
pub(super) const EVENT_REFILL: std::time::Duration = std::time::Duration::from_secs(1);
/// Lifecycle entries of one kind (status transitions, acked features,
/// resets) written at once before their rate limit: far more than drivers
/// need to initialise and re-initialise, few enough that a guest looping
/// on resets cannot fill the host's disk.
pub(super) const LIFECYCLE_BURST: u32 = 1024;
/// Time for one more lifecycle entry once that burst is spent.
pub(super) const LIFECYCLE_REFILL: std::time::Duration = std::time::Duration::from_millis(10);

/// What a queue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receive queue of a pair.
    Rx(u16),
    /// Transmit queue of a pair.
    Tx(u16),
    /// The control queue.
    Ctrl,
}

impl Role {
    pub(super) fn name(self) -> String {
        match self {
            Self::Rx(p) => format!("rx{p}"),
            Self::Tx(p) => format!("tx{p}"),
            Self::Ctrl => "ctrl".into(),
        }
    }
}

/// The device's activation epoch: bumped by every reset and activation.
/// Interrupts remember the epoch they were collected in, and are raised
/// only if it is still current; raising holds the gate, so a reset (which
/// bumps it first, under the state lock) cannot slip in between the check
/// and the raise.
#[derive(Debug, Default)]
pub(crate) struct IrqGate(Mutex<u64>);

impl IrqGate {
    fn epoch(&self) -> u64 {
        *crate::sync::lock(&self.0)
    }

    /// A reset or an activation: interrupts collected before are stale.
    fn bump(&self) {
        let mut e = crate::sync::lock(&self.0);
        *e = e.wrapping_add(1);
    }
}

/// Interrupts to raise once the lock is released.
#[derive(Default)]
pub struct Irqs {
    /// Where to raise them, through which gate, collected in which epoch.
    target: Option<(Arc<dyn VirtioInterrupt>, Arc<IrqGate>, u64)>,
    config: bool,
    queues: Vec<u16>,
}

impl Irqs {
    /// Raises the collected interrupts, unless the device was reset or
    /// activated again since they were collected; failures are logged
    /// through `limiter` (one per interrupt would be the guest's choice).
    pub(crate) fn fire(self, name: &str, limiter: &RateLimiter) {
        let Some((target, gate, epoch)) = self.target else {
            return;
        };
        let current = crate::sync::lock(&gate.0);
        if *current != epoch {
            log::debug!("{name}: interrupts collected before a reset or re-activation dropped");
            return;
        }
        if self.config {
            if let Err(e) = target.trigger(VirtioInterruptType::Config) {
                limited!(
                    limiter,
                    "interrupt_failed",
                    log::Level::Error,
                    "{name}: cannot raise the configuration interrupt: {e}"
                );
            }
        }
        for q in self.queues {
            if let Err(e) = target.trigger(VirtioInterruptType::Queue(q)) {
                limited!(
                    limiter,
                    "interrupt_failed",
                    log::Level::Error,
                    "{name}: cannot raise the interrupt of queue {q}: {e}"
                );
            }
        }
    }
}

/// What DRIVER_OK started.
pub(crate) struct Active {
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) interrupt: Arc<dyn VirtioInterrupt>,
    /// By queue index; `None` where the driver enabled no queue.
    pub(crate) queues: Vec<Option<Queue>>,
    pub(crate) evts: Vec<(u16, EventFd)>,
    pub(crate) neg: Negotiated,
    pub(crate) ctrl_index: Option<u16>,
    /// Queue pairs the driver may use: all with MQ, one without.
    pub(crate) pairs: u16,
    /// The event loop still has to run a first pass over every queue.
    pub(crate) kick: bool,
}

impl Active {
    pub(super) fn role(&self, idx: u16) -> Option<Role> {
        if Some(idx) == self.ctrl_index {
            return Some(Role::Ctrl);
        }
        let pair = idx / 2;
        (pair < self.pairs).then_some(if idx % 2 == 0 {
            Role::Rx(pair)
        } else {
            Role::Tx(pair)
        })
    }
}

/// The device state.
pub(crate) struct NetState {
    pub(crate) name: String,
    pub(crate) cfg: NetConfig,
    pub(crate) offered: u64,
    pub(crate) acked: u64,
    pub(crate) device_status: u8,
    pub(crate) fields: ConfigFields,
    pub(super) initial_mac: [u8; 6],
    pub(crate) generation: u32,
    pub(crate) needs_reset: bool,
    pub(crate) filter: RxFilter,
    pub(crate) vq_pairs: u16,
    pub(crate) guest_offloads: GuestOffloads,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) active: Option<Active>,
    /// Queue events of a previous activation, kept open until the event
    /// loop has removed them from its epoll set.
    pub(crate) retired: Vec<EventFd>,
    pub(crate) handler_attached: bool,
    /// Checked when collected interrupts are raised (see [`IrqGate`]).
    pub(crate) irq_gate: Arc<IrqGate>,
    /// An RX pass stopped at its budget; the event loop runs another.
    pub(crate) rx_more: bool,
    /// Transmit and control queues whose pass stopped at its budget; the
    /// event loop runs another pass for each.
    pub(crate) queue_more: Vec<u16>,
    pub(crate) counters: Counters,
    pub(super) queue_stats: Vec<QueueStats>,
    /// Guest faults written to the event log so far (never reset).
    pub(super) faults_logged: u32,
    /// Rate limit of the guest-triggered event-log entries.
    pub(super) event_limiter: RateLimiter,
    /// The looser rate limit of the lifecycle entries.
    pub(super) lifecycle_limiter: RateLimiter,
    pub(super) tx: TxScratch,
    pub(super) rx: RxScratch,
    pub(super) ctrl: CtrlScratch,
    pub(crate) log: EventLog,
}

/// The lock and the event loop's wake-up.
pub(crate) struct Shared {
    state: Mutex<NetState>,
    /// Rate limit of interrupt failures, logged outside the lock.
    irq_limiter: RateLimiter,
    /// Written when the event loop must re-read the queue events (after
    /// activation and reset) or run another RX pass.
    pub(crate) wake: EventFd,
}

impl Shared {
    pub(crate) fn new(state: NetState, wake: EventFd) -> Arc<Self> {
        Arc::new(Self {
            irq_limiter: RateLimiter::new(state.name.clone()),
            state: Mutex::new(state),
            wake,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NetState> {
        crate::sync::lock(&self.state)
    }

    /// Runs `f` under the lock, then raises the interrupts it collected.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut NetState, &mut Irqs) -> R) -> R {
        let mut irqs = Irqs::default();
        let (r, name) = {
            let mut st = self.lock();
            let r = f(&mut st, &mut irqs);
            (r, st.name.clone())
        };
        irqs.fire(&name, &self.irq_limiter);
        r
    }

    pub(crate) fn wake_handler(&self) {
        if let Err(e) = self.wake.write(1) {
            log::error!("cannot wake the net event handler: {e}");
        }
    }
}

impl NetState {
    pub(crate) fn new(cfg: NetConfig, backend: Box<dyn Backend>, log: EventLog) -> Self {
        let offered = cfg.features;
        let mac = if has(offered, VIRTIO_NET_F_MAC) {
            cfg.mac.0
        } else {
            [0; 6]
        };
        let st = Self {
            name: cfg.name().to_string(),
            offered,
            acked: 0,
            device_status: 0,
            fields: ConfigFields {
                mac,
                link_up: cfg.link_up,
                announce: false,
                max_pairs: cfg.queue_pairs,
                mtu: cfg.mtu.unwrap_or(0),
            },
            initial_mac: mac,
            generation: 0,
            needs_reset: false,
            filter: RxFilter::default(),
            vq_pairs: 1,
            guest_offloads: GuestOffloads::default(),
            backend,
            active: None,
            retired: Vec::new(),
            handler_attached: false,
            irq_gate: Arc::default(),
            rx_more: false,
            queue_more: Vec::new(),
            counters: Counters::default(),
            queue_stats: Vec::new(),
            faults_logged: 0,
            event_limiter: RateLimiter::with_rate(cfg.name(), EVENT_BURST, EVENT_REFILL),
            lifecycle_limiter: RateLimiter::with_rate(
                cfg.name(),
                LIFECYCLE_BURST,
                LIFECYCLE_REFILL,
            ),
            tx: TxScratch::default(),
            rx: RxScratch::default(),
            ctrl: CtrlScratch::default(),
            log,
            cfg,
        };
        st.event(
            log::Level::Info,
            "features_offered",
            json!({
                "offered": FeatureSet::new(offered),
                "not_offered_by_default": features::names(features::default_mask() & !offered),
                "added_to_defaults": features::names(offered & !features::default_mask()),
                "allow_invalid": st.cfg.allow_invalid,
                "offer_unimplemented": st.cfg.offer_unimplemented,
                "unimplemented_offered": features::names(offered & !features::implemented_mask()),
                "backend": st.backend.describe(),
                "mac": st.cfg.mac,
                "mtu": st.cfg.mtu,
                "queue_pairs": st.cfg.queue_pairs,
                "queue_size": st.cfg.queue_size,
                "link_up": st.cfg.link_up,
            }),
        );
        st
    }

    pub(crate) fn event(&self, level: log::Level, event: &str, fields: serde_json::Value) {
        self.log.record(level, &self.name, event, fields);
    }

    /// Records an event the guest can cause at will (a control command, a
    /// MAC write), within the rate limit: past it the entry is dropped and
    /// counted, and the next one let through is preceded by an
    /// `events_suppressed` entry with the count.
    pub(crate) fn event_limited(
        &mut self,
        level: log::Level,
        event: &'static str,
        fields: serde_json::Value,
    ) {
        self.record_admitted(false, level, event, fields);
    }

    /// Records a lifecycle event (a status transition, the acked features,
    /// a reset) within the lifecycle rate limit, which no driver's normal
    /// use reaches: only a guest looping on resets sees entries dropped
    /// (and counted, as in [`event_limited`](Self::event_limited)).
    pub(crate) fn event_lifecycle(
        &mut self,
        level: log::Level,
        event: &'static str,
        fields: serde_json::Value,
    ) {
        self.record_admitted(true, level, event, fields);
    }

    fn record_admitted(
        &mut self,
        lifecycle: bool,
        level: log::Level,
        event: &'static str,
        fields: serde_json::Value,
    ) {
        let limiter = if lifecycle {
            &self.lifecycle_limiter
        } else {
            &self.event_limiter
        };
        match limiter.admit(event) {
            None => self.counters.events_suppressed += 1,
            Some(n) => {
                if n > 0 {
                    self.event(
                        log::Level::Warn,
                        "events_suppressed",
                        json!({ "kind": event, "count": n }),
                    );
                }
                self.event(level, event, fields);
            }
        }
    }

    /// Records a guest fault: counted always, written to the event log
    /// while the device's allowance of [`FAULTS_LOGGED`] lasts.
    pub(crate) fn log_fault(&mut self, fields: serde_json::Value) {
        self.counters.guest_faults += 1;
        self.write_fault(fields);
    }

    /// Writes a (counted) guest fault to the event log, within the
    /// allowance.
    fn write_fault(&mut self, fields: serde_json::Value) {
        if self.faults_logged >= FAULTS_LOGGED {
            return;
        }
        self.faults_logged += 1;
        self.event(log::Level::Warn, "guest_fault", fields);
        if self.faults_logged == FAULTS_LOGGED {
            self.event(
                log::Level::Warn,
                "guest_faults_suppressed",
                json!({ "after": FAULTS_LOGGED, "see": "counters.guest_faults" }),
            );
        }
    }

    /// The number of queues: a pair per configured pair, plus control.
    pub(crate) fn queue_count(cfg: &NetConfig) -> usize {
        2 * usize::from(cfg.queue_pairs) + usize::from(has(cfg.features, VIRTIO_NET_F_CTRL_VQ))
    }

    pub(super) fn raise_config(&mut self, irqs: &mut Irqs, why: &str) {
        let Some(active) = &self.active else {
            return;
        };
        irqs.target = Some(self.irq_target(active));
        irqs.config = true;
        self.counters.config_interrupts += 1;
        self.event(
            log::Level::Info,
            "config_interrupt",
            json!({ "why": why, "generation": self.generation }),
        );
    }

    pub(super) fn raise_queue(&mut self, irqs: &mut Irqs, idx: u16) {
        let Some(active) = &self.active else {
            return;
        };
        irqs.target = Some(self.irq_target(active));
        if !irqs.queues.contains(&idx) {
            irqs.queues.push(idx);
        }
        self.counters.queue_interrupts += 1;
        if let Some(s) = self.queue_stats.get_mut(usize::from(idx)) {
            s.interrupts += 1;
        }
    }

    fn irq_target(&self, active: &Active) -> (Arc<dyn VirtioInterrupt>, Arc<IrqGate>, u64) {
        (
            active.interrupt.clone(),
            self.irq_gate.clone(),
            self.irq_gate.epoch(),
        )
    }

    /// Enters DEVICE_NEEDS_RESET (virtio 1.2 section 2.1.2): stop using the
    /// queues and tell the driver with a configuration interrupt.
    pub(crate) fn enter_needs_reset(&mut self, irqs: &mut Irqs, why: &str) {
        if self.needs_reset {
            return;
        }
        self.needs_reset = true;
        self.counters.needs_reset += 1;
        self.event(log::Level::Error, "needs_reset", json!({ "why": why }));
        self.raise_config(irqs, "needs_reset");
    }

    /// Writes the faults a pass kept to the event log (the pass counted
    /// all of them already), within the device's allowance.
    pub(super) fn log_faults(&mut self, queue: u16, faults: &Faults) {
        for fault in &faults.kept {
            if self.faults_logged >= FAULTS_LOGGED {
                return;
            }
            self.write_fault(json!({ "queue": queue, "fault": fault.to_string() }));
        }
    }

    pub(super) fn note_pass(&mut self, idx: u16, pass: Pass, irqs: &mut Irqs) {
        if let Some(s) = self.queue_stats.get_mut(usize::from(idx)) {
            if s.chains == 0 && pass.used > 0 {
                let role = s.role.clone();
                self.event(
                    log::Level::Info,
                    "queue_active",
                    json!({ "queue": idx, "role": role }),
                );
            }
            if let Some(s) = self.queue_stats.get_mut(usize::from(idx)) {
                s.chains += u64::from(pass.used);
            }
        }
        if pass.interrupt {
            self.raise_queue(irqs, idx);
        }
    }

    pub(super) fn log_backend_error(&mut self, direction: &str, error: Option<String>) {
        if let Some(e) = error {
            let count = if direction == "tx" {
                self.counters.tx_errors
            } else {
                self.counters.rx_errors
            };
            // The first error, then every thousandth.
            if count == 1 || count % 1000 == 0 {
                self.event(
                    log::Level::Warn,
                    "backend_error",
                    json!({ "direction": direction, "error": e, "count": count }),
                );
            }
        }
    }

    // ----- VirtioDevice -----

    pub(crate) fn set_acked_features(&mut self, acked: u64) {
        let unoffered = acked & !self.offered;
        if unoffered != 0 {
            self.log_fault(json!({
                "fault": "driver acked features that were not offered; ignored",
                "bits": FeatureSet::new(unoffered),
            }));
        }
        self.acked = acked & self.offered;
        self.filter.vlan_filtering = has(self.acked, VIRTIO_NET_F_CTRL_VLAN);
        self.set_guest_offloads(GuestOffloads::from_features(self.acked));
        self.event_lifecycle(
            log::Level::Info,
            "features_acked",
            json!({
                "acked": FeatureSet::new(self.acked),
                "offered_not_acked": features::names(self.offered & !self.acked),
                "status_negotiated": has(self.acked, VIRTIO_NET_F_STATUS),
            }),
        );
    }

    /// The transport refused FEATURES_OK: the driver acked bits that were
    /// not offered. A driver can retry at will, so the entry is
    /// rate-limited.
    pub(crate) fn features_refused(&mut self, acked: u64) {
        self.event_limited(
            log::Level::Warn,
            "features_refused",
            json!({
                "acked": FeatureSet::new(acked),
                "offered": FeatureSet::new(self.offered),
                "not_offered": features::names(acked & !self.offered),
            }),
        );
    }

    pub(super) fn set_guest_offloads(&mut self, offloads: GuestOffloads) {
        self.guest_offloads = offloads;
        if let Err(e) = self.backend.set_guest_offloads(offloads) {
            self.event(
                log::Level::Error,
                "backend_error",
                json!({ "direction": "offloads", "error": display_chain(&e) }),
            );
        }
    }

    pub(crate) fn read_config(&self, offset: u64, data: &mut [u8]) {
        config_space::read(&self.fields, self.offered, offset, data);
    }

    pub(crate) fn write_config(&mut self, offset: u64, data: &[u8]) {
        let outcome = config_space::write(&mut self.fields, offset, data);
        match outcome {
            WriteOutcome::MacChanged => {
                self.generation = self.generation.wrapping_add(1);
                let mac = super::config::MacAddr(self.fields.mac);
                self.event_limited(
                    log::Level::Info,
                    "config_write",
                    json!({ "offset": offset, "len": data.len(), "mac": mac }),
                );
            }
            WriteOutcome::Unchanged => {}
            WriteOutcome::ReadOnly => {
                self.log_fault(json!({
                    "fault": "driver wrote read-only configuration space; ignored",
                    "offset": offset,
                    "len": data.len(),
                }));
            }
        }
    }

    pub(crate) fn status_changed(&mut self, old: u8, new: u8) {
        self.device_status = new;
        self.event_lifecycle(
            log::Level::Info,
            "device_status",
            json!({
                "old": old,
                "new": new,
                "old_names": bit_names(old),
                "new_names": bit_names(new),
                "set": bit_names(new & !old),
                "cleared": bit_names(old & !new),
            }),
        );
        if u32::from(new) & VIRTIO_CONFIG_S_FAILED != 0
            && u32::from(old) & VIRTIO_CONFIG_S_FAILED == 0
        {
            self.event_lifecycle(log::Level::Warn, "driver_failed", json!({}));
        }
    }

    pub(crate) fn activate(
        &mut self,
        ctx: ActivateContext,
        max_size: u16,
    ) -> Result<(), ActivateError> {
        if self.active.is_some() {
            return Err(ActivateError::Other(
                "the device is already active; it must be reset first".into(),
            ));
        }
        let count = Self::queue_count(&self.cfg);
        let neg = Negotiated::new(self.acked);
        let ActivateContext {
            mem,
            interrupt,
            queues,
            queue_evts,
        } = ctx;
        // A failed activation leaves the device in DEVICE_NEEDS_RESET. The
        // transport learns of it from the error and raises the
        // configuration interrupt itself (as the lab's transports do), so
        // the device does not raise a second one.
        let fail = |st: &mut Self, e: ActivateError| {
            st.needs_reset = true;
            st.counters.needs_reset += 1;
            st.event(
                log::Level::Error,
                "needs_reset",
                json!({ "why": e.to_string(), "during": "activation" }),
            );
            Err(e)
        };
        if queues.len() != queue_evts.len() {
            let e = ActivateError::Other(format!(
                "{} queues but {} notification events",
                queues.len(),
                queue_evts.len()
            ));
            return fail(self, e);
        }
        let mut slots: Vec<Option<Queue>> = (0..count).map(|_| None).collect();
        let mut evts = Vec::with_capacity(queue_evts.len());
        for ((idx, mut q), evt) in queues.into_iter().zip(queue_evts) {
            let why = if usize::from(idx) >= count {
                Some(format!("the device has only {count} queues"))
            } else if slots[usize::from(idx)].is_some() {
                Some("it was given twice".to_string())
            } else if !q.size().is_power_of_two() || q.size() > max_size {
                Some(format!(
                    "size {} is not a power of two up to {max_size}",
                    q.size()
                ))
            } else if !q.is_valid(&mem) {
                Some("it is not ready or its rings lie outside guest memory".to_string())
            } else if q.avail_ring() == 0 {
                Some(QueueConfigError::AvailRingAtZero.to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return fail(self, ActivateError::InvalidQueue(idx, why));
            }
            q.set_event_idx(neg.event_idx);
            slots[usize::from(idx)] = Some(q);
            evts.push((idx, evt));
        }
        for required in [0u16, 1] {
            if slots[usize::from(required)].is_none() {
                return fail(self, ActivateError::MissingQueue(required));
            }
        }
        // virtio 1.2 section 5.1.2: the control queue follows the last
        // pair, which is the first one unless MQ is negotiated.
        let pairs = if has(self.acked, VIRTIO_NET_F_MQ) {
            self.cfg.queue_pairs
        } else {
            1
        };
        let ctrl_index = has(self.acked, VIRTIO_NET_F_CTRL_VQ).then_some(2 * pairs);
        let active = Active {
            mem,
            interrupt,
            queues: slots,
            evts,
            neg,
            ctrl_index,
            pairs,
            kick: true,
        };
        // Indexed by queue index; queues the driver did not enable keep an
        // empty role.
        self.queue_stats = vec![QueueStats::default(); count];
        for (idx, _) in &active.evts {
            self.queue_stats[usize::from(*idx)] = QueueStats {
                index: *idx,
                role: active
                    .role(*idx)
                    .map_or_else(|| "unused".into(), Role::name),
                ..QueueStats::default()
            };
        }
        self.event(
            log::Level::Info,
            "activated",
            json!({
                "queues": self.queue_stats.iter().filter(|s| !s.role.is_empty()).map(|s| json!({"index": s.index, "role": s.role})).collect::<Vec<_>>(),
                "hdr_len": neg.hdr_len,
                "mrg_rxbuf": neg.mrg_rxbuf,
                "event_idx": neg.event_idx,
                "link_up": self.fields.link_up,
            }),
        );
        self.irq_gate.bump();
        self.active = Some(active);
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        let stats: Vec<&QueueStats> = self
            .queue_stats
            .iter()
            .filter(|s| !s.role.is_empty())
            .collect();
        self.event_lifecycle(
            log::Level::Info,
            "reset",
            json!({ "was_active": self.active.is_some(), "queues": stats, "counters": self.counters }),
        );
        // Interrupts collected before now and not raised yet must not
        // reach the driver after the transport cleared its interrupt state.
        self.irq_gate.bump();
        if let Some(active) = self.active.take() {
            self.retired.extend(active.evts.into_iter().map(|(_, e)| e));
        }
        if !self.handler_attached {
            self.retired.clear();
        }
        self.acked = 0;
        self.needs_reset = false;
        self.fields.announce = false;
        if self.fields.mac != self.initial_mac {
            self.fields.mac = self.initial_mac;
            self.generation = self.generation.wrapping_add(1);
        }
        self.filter = RxFilter::default();
        self.vq_pairs = 1;
        self.set_guest_offloads(GuestOffloads::default());
        if self.rx.drop_pending() {
            self.counters.rx_dropped += 1;
        }
        self.rx_more = false;
        self.queue_more.clear();
        self.queue_stats.clear();
    }

    pub(crate) fn status(&self) -> NetStatus {
        NetStatus {
            id: self.name.clone(),
            transport: self.cfg.transport,
            offered: FeatureSet::new(self.offered),
            acked: FeatureSet::new(self.acked),
            device_status: self.device_status,
            device_status_names: bit_names(self.device_status),
            active: self.active.is_some(),
            needs_reset: self.needs_reset,
            link_up: self.fields.link_up,
            status_offered: has(self.offered, VIRTIO_NET_F_STATUS),
            status_negotiated: has(self.acked, VIRTIO_NET_F_STATUS),
            announce_pending: self.fields.announce,
            config_status: if has(self.offered, VIRTIO_NET_F_STATUS) {
                config_space::status_word(&self.fields)
            } else {
                0
            },
            config_generation: self.generation,
            mac: super::config::MacAddr(self.fields.mac),
            mtu: has(self.offered, virtio_bindings::virtio_net::VIRTIO_NET_F_MTU)
                .then_some(self.fields.mtu),
            max_queue_pairs: self.cfg.queue_pairs,
            queue_pairs: self.vq_pairs,
            rx_filter: self.filter.clone(),
            counters: self.counters,
            queues: self
                .queue_stats
                .iter()
                .filter(|s| !s.role.is_empty())
                .cloned()
                .collect(),
            backend: self.backend.status(),
        }
    }
}
