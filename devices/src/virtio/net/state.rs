//! The device state behind one lock, shared by the transport (through
//! [`super::NetDevice`]), the event loop ([`super::NetEventHandler`]) and
//! the control socket ([`super::NetControl`]).
//!
//! Interrupts are collected while the lock is held and raised after it is
//! released ([`Shared::with`]), so a transport whose interrupt code takes
//! its own locks cannot deadlock against a vCPU that holds the transport
//! and reads the device's config space.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_FAILED;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MQ, VIRTIO_NET_F_STATUS,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::chain::RingError;
use super::config::NetConfig;
use super::config_space::{self, ConfigFields, WriteOutcome};
use super::ctrl::{CtrlContext, CtrlEffect};
use super::ctrl_queue::{self, CtrlScratch};
use super::features::{self, has, FeatureSet};
use super::pass::{Faults, Negotiated, Pass};
use super::rx::{self, RxContext, RxScratch, RX_BUDGET};
use super::rx_filter::RxFilter;
use super::status::{device_status_names, Counters, NetStatus, QueueStats};
use super::tx::{self, TxScratch};
use crate::event_log::EventLog;
use crate::net::{Backend, GuestOffloads};
use crate::virtio::{ActivateContext, ActivateError, VirtioInterrupt, VirtioInterruptType};

/// Guest faults logged per activation before the log only counts them.
const FAULTS_LOGGED: u32 = 32;

/// Why a runtime link or announce request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// STATUS is not offered: there is no status field.
    #[error("the device does not offer VIRTIO_NET_F_STATUS, the guest cannot be told about link changes")]
    StatusNotOffered,
    /// GUEST_ANNOUNCE is not offered.
    #[error("the device does not offer VIRTIO_NET_F_GUEST_ANNOUNCE, the guest cannot be asked to announce itself")]
    AnnounceNotOffered,
    /// GUEST_ANNOUNCE without STATUS: the ANNOUNCE bit has nowhere to go.
    #[error("the device does not offer VIRTIO_NET_F_STATUS, so the ANNOUNCE bit cannot be shown to the guest")]
    AnnounceWithoutStatus,
    /// No driver runs the device.
    #[error("the driver has not set DRIVER_OK, so there is no driver to announce")]
    NotActive,
    /// The driver did not negotiate the feature and would ignore the request.
    #[error("the driver did not negotiate VIRTIO_NET_F_{0}, so it would ignore the request")]
    NotNegotiated(&'static str),
}

/// What a successful `set_link` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChange {
    /// The status field changed and one configuration interrupt was raised.
    Notified,
    /// The link already was in that state: nothing changed, no interrupt.
    Unchanged,
    /// The status field changed; no driver runs yet, it reads the field
    /// when it starts.
    NotStarted,
    /// The status field changed; the driver did not negotiate STATUS, so
    /// it was not interrupted.
    NotNegotiated,
}

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
    fn name(self) -> String {
        match self {
            Self::Rx(p) => format!("rx{p}"),
            Self::Tx(p) => format!("tx{p}"),
            Self::Ctrl => "ctrl".into(),
        }
    }
}

/// Interrupts to raise once the lock is released.
#[derive(Default)]
pub struct Irqs {
    target: Option<Arc<dyn VirtioInterrupt>>,
    config: bool,
    queues: Vec<u16>,
}

impl Irqs {
    fn fire(self, name: &str) {
        let Some(target) = self.target else {
            return;
        };
        if self.config {
            if let Err(e) = target.trigger(VirtioInterruptType::Config) {
                log::error!("{name}: cannot raise the configuration interrupt: {e}");
            }
        }
        for q in self.queues {
            if let Err(e) = target.trigger(VirtioInterruptType::Queue(q)) {
                log::error!("{name}: cannot raise the interrupt of queue {q}: {e}");
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
    /// The event loop still has to run a first pass over every queue.
    pub(crate) kick: bool,
}

impl Active {
    fn role(&self, idx: u16) -> Option<Role> {
        if Some(idx) == self.ctrl_index {
            return Some(Role::Ctrl);
        }
        let pair = idx / 2;
        let pairs = match self.ctrl_index {
            Some(c) => c / 2,
            None => (self.queues.len() / 2) as u16,
        };
        (pair < pairs).then_some(if idx % 2 == 0 {
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
    initial_mac: [u8; 6],
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
    /// An RX pass stopped at its budget; the event loop runs another.
    pub(crate) rx_more: bool,
    pub(crate) counters: Counters,
    queue_stats: Vec<QueueStats>,
    faults_logged: u32,
    tx: TxScratch,
    rx: RxScratch,
    ctrl: CtrlScratch,
    pub(crate) log: EventLog,
}

/// The lock and the event loop's wake-up.
pub(crate) struct Shared {
    state: Mutex<NetState>,
    /// Written when the event loop must re-read the queue events (after
    /// activation and reset) or run another RX pass.
    pub(crate) wake: EventFd,
}

impl Shared {
    pub(crate) fn new(state: NetState, wake: EventFd) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            wake,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NetState> {
        // A panic while holding the lock leaves the state usable; the
        // panic itself is reported by the thread that had it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then raises the interrupts it collected.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut NetState, &mut Irqs) -> R) -> R {
        let mut irqs = Irqs::default();
        let (r, name) = {
            let mut st = self.lock();
            let r = f(&mut st, &mut irqs);
            (r, st.name.clone())
        };
        irqs.fire(&name);
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
            rx_more: false,
            counters: Counters::default(),
            queue_stats: Vec::new(),
            faults_logged: 0,
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

    /// The number of queues: a pair per configured pair, plus control.
    pub(crate) fn queue_count(cfg: &NetConfig) -> usize {
        2 * usize::from(cfg.queue_pairs) + usize::from(has(cfg.features, VIRTIO_NET_F_CTRL_VQ))
    }

    fn raise_config(&mut self, irqs: &mut Irqs, why: &str) {
        let Some(active) = &self.active else {
            return;
        };
        irqs.target = Some(active.interrupt.clone());
        irqs.config = true;
        self.counters.config_interrupts += 1;
        self.event(
            log::Level::Info,
            "config_interrupt",
            json!({ "why": why, "generation": self.generation }),
        );
    }

    fn raise_queue(&mut self, irqs: &mut Irqs, idx: u16) {
        let Some(active) = &self.active else {
            return;
        };
        irqs.target = Some(active.interrupt.clone());
        if !irqs.queues.contains(&idx) {
            irqs.queues.push(idx);
        }
        self.counters.queue_interrupts += 1;
        if let Some(s) = self.queue_stats.get_mut(usize::from(idx)) {
            s.interrupts += 1;
        }
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

    fn log_faults(&mut self, queue: u16, faults: &Faults) {
        for fault in &faults.kept {
            if self.faults_logged < FAULTS_LOGGED {
                self.faults_logged += 1;
                self.event(
                    log::Level::Warn,
                    "guest_fault",
                    json!({ "queue": queue, "fault": fault.to_string() }),
                );
                if self.faults_logged == FAULTS_LOGGED {
                    self.event(
                        log::Level::Warn,
                        "guest_faults_suppressed",
                        json!({ "after": FAULTS_LOGGED, "see": "counters.guest_faults" }),
                    );
                }
            }
        }
    }

    fn note_pass(&mut self, idx: u16, pass: Pass, irqs: &mut Irqs) {
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

    fn log_backend_error(&mut self, direction: &str, error: Option<String>) {
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
            self.event(
                log::Level::Warn,
                "guest_fault",
                json!({
                    "fault": "driver acked features that were not offered; ignored",
                    "bits": FeatureSet::new(unoffered),
                }),
            );
        }
        self.acked = acked & self.offered;
        self.filter.vlan_filtering = has(self.acked, VIRTIO_NET_F_CTRL_VLAN);
        self.set_guest_offloads(GuestOffloads::from_features(self.acked));
        self.event(
            log::Level::Info,
            "features_acked",
            json!({
                "acked": FeatureSet::new(self.acked),
                "offered_not_acked": features::names(self.offered & !self.acked),
                "status_negotiated": has(self.acked, VIRTIO_NET_F_STATUS),
            }),
        );
    }

    fn set_guest_offloads(&mut self, offloads: GuestOffloads) {
        self.guest_offloads = offloads;
        if let Err(e) = self.backend.set_guest_offloads(offloads) {
            self.event(
                log::Level::Error,
                "backend_error",
                json!({ "direction": "offloads", "error": format!("{e}: {}", source_text(&e)) }),
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
                self.event(
                    log::Level::Info,
                    "config_write",
                    json!({ "offset": offset, "len": data.len(), "mac": super::config::MacAddr(self.fields.mac) }),
                );
            }
            WriteOutcome::Unchanged => {}
            WriteOutcome::ReadOnly => {
                self.counters.guest_faults += 1;
                self.event(
                    log::Level::Warn,
                    "guest_fault",
                    json!({
                        "fault": "driver wrote read-only configuration space; ignored",
                        "offset": offset,
                        "len": data.len(),
                    }),
                );
            }
        }
    }

    pub(crate) fn status_changed(&mut self, old: u8, new: u8) {
        self.device_status = new;
        self.event(
            log::Level::Info,
            "device_status",
            json!({
                "old": old,
                "new": new,
                "old_names": device_status_names(old),
                "new_names": device_status_names(new),
                "set": device_status_names(new & !old),
                "cleared": device_status_names(old & !new),
            }),
        );
        if u32::from(new) & VIRTIO_CONFIG_S_FAILED != 0
            && u32::from(old) & VIRTIO_CONFIG_S_FAILED == 0
        {
            self.event(log::Level::Warn, "driver_failed", json!({}));
        }
    }

    pub(crate) fn activate(
        &mut self,
        irqs: &mut Irqs,
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
        let fail = |st: &mut Self, irqs: &mut Irqs, e: ActivateError| {
            st.needs_reset = true;
            st.counters.needs_reset += 1;
            st.event(
                log::Level::Error,
                "needs_reset",
                json!({ "why": e.to_string() }),
            );
            irqs.target = Some(interrupt.clone());
            irqs.config = true;
            st.counters.config_interrupts += 1;
            Err(e)
        };
        if queues.len() != queue_evts.len() {
            let e = ActivateError::Other(format!(
                "{} queues but {} notification events",
                queues.len(),
                queue_evts.len()
            ));
            return fail(self, irqs, e);
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
            } else {
                None
            };
            if let Some(why) = why {
                return fail(self, irqs, ActivateError::InvalidQueue(idx, why));
            }
            q.set_event_idx(neg.event_idx);
            slots[usize::from(idx)] = Some(q);
            evts.push((idx, evt));
        }
        for required in [0u16, 1] {
            if slots[usize::from(required)].is_none() {
                return fail(self, irqs, ActivateError::MissingQueue(required));
            }
        }
        let ctrl_index = has(self.acked, VIRTIO_NET_F_CTRL_VQ).then(|| {
            if has(self.acked, VIRTIO_NET_F_MQ) {
                2 * self.cfg.queue_pairs
            } else {
                2
            }
        });
        let active = Active {
            mem,
            interrupt,
            queues: slots,
            evts,
            neg,
            ctrl_index,
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
        self.faults_logged = 0;
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
        self.active = Some(active);
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        let stats: Vec<&QueueStats> = self
            .queue_stats
            .iter()
            .filter(|s| !s.role.is_empty())
            .collect();
        self.event(
            log::Level::Info,
            "reset",
            json!({ "was_active": self.active.is_some(), "queues": stats, "counters": self.counters }),
        );
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
        self.queue_stats.clear();
    }

    // ----- Runtime control -----

    pub(crate) fn set_link(&mut self, irqs: &mut Irqs, up: bool) -> Result<LinkChange, LinkError> {
        if !has(self.offered, VIRTIO_NET_F_STATUS) {
            self.event(
                log::Level::Warn,
                "link_change_refused",
                json!({ "up": up, "why": LinkError::StatusNotOffered.to_string() }),
            );
            return Err(LinkError::StatusNotOffered);
        }
        if self.fields.link_up == up {
            return Ok(LinkChange::Unchanged);
        }
        self.fields.link_up = up;
        self.generation = self.generation.wrapping_add(1);
        let outcome = match &self.active {
            None => LinkChange::NotStarted,
            Some(_) if !has(self.acked, VIRTIO_NET_F_STATUS) => LinkChange::NotNegotiated,
            Some(_) => LinkChange::Notified,
        };
        self.event(
            log::Level::Info,
            "link_change",
            json!({
                "up": up,
                "outcome": outcome,
                "config_status": config_space::status_word(&self.fields),
                "generation": self.generation,
            }),
        );
        if outcome == LinkChange::Notified {
            self.raise_config(irqs, "link_change");
        }
        Ok(outcome)
    }

    pub(crate) fn announce(&mut self, irqs: &mut Irqs) -> Result<(), LinkError> {
        let refused = if !has(self.offered, VIRTIO_NET_F_GUEST_ANNOUNCE) {
            Some(LinkError::AnnounceNotOffered)
        } else if !has(self.offered, VIRTIO_NET_F_STATUS) {
            Some(LinkError::AnnounceWithoutStatus)
        } else if self.active.is_none() {
            Some(LinkError::NotActive)
        } else if !has(self.acked, VIRTIO_NET_F_GUEST_ANNOUNCE) {
            Some(LinkError::NotNegotiated("GUEST_ANNOUNCE"))
        } else if !has(self.acked, VIRTIO_NET_F_STATUS) {
            Some(LinkError::NotNegotiated("STATUS"))
        } else {
            None
        };
        if let Some(e) = refused {
            self.event(
                log::Level::Warn,
                "announce_refused",
                json!({ "why": e.to_string() }),
            );
            return Err(e);
        }
        self.fields.announce = true;
        self.generation = self.generation.wrapping_add(1);
        self.event(
            log::Level::Info,
            "announce",
            json!({ "config_status": config_space::status_word(&self.fields) }),
        );
        self.raise_config(irqs, "announce");
        Ok(())
    }

    pub(crate) fn status(&self) -> NetStatus {
        NetStatus {
            id: self.name.clone(),
            transport: self.cfg.transport,
            offered: FeatureSet::new(self.offered),
            acked: FeatureSet::new(self.acked),
            device_status: self.device_status,
            device_status_names: device_status_names(self.device_status),
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

    // ----- Queue processing -----

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
            if self.faults_logged < FAULTS_LOGGED {
                self.faults_logged += 1;
                self.event(
                    log::Level::Warn,
                    "guest_fault",
                    json!({ "queue": idx, "fault": "queue notified before DRIVER_OK; ignored" }),
                );
            }
            self.counters.guest_faults += 1;
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
        Ok(())
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
                    self.event(
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
                Err(e) => self.event(
                    log::Level::Warn,
                    "ctrl_command",
                    json!({ "command": a.what, "ok": false, "error": e.to_string() }),
                ),
            }
        }
        let pass = r?;
        self.note_pass(idx, pass, irqs);
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

fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
