//! Device-level tests: a guest driver played with virtio-queue's
//! `MockSplitQueue`, the in-memory backend, a recording interrupt and an
//! in-memory event log; no root, no KVM.

use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, SubscriberOps};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::config_space::STATUS_OFFSET;
use super::features::{default_mask, mask};
use super::test_util::{self, used_addr};
use super::*;
use crate::event_log::{EventBuffer, EventLog};
use crate::net::memory::{MemoryBackend, MemoryPeer};
use crate::net::NetHdr;
use crate::virtio::{
    ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt, VirtioInterruptType,
};

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const W: u16 = VRING_DESC_F_WRITE as u16;
const OWN_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[derive(Default)]
struct Recorder(Mutex<Vec<VirtioInterruptType>>);

impl VirtioInterrupt for Recorder {
    fn trigger(&self, kind: VirtioInterruptType) -> std::io::Result<()> {
        self.0.lock().unwrap().push(kind);
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<VirtioInterruptType> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn guest_mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// A device, its memory peer, and the driver's three queues.
struct Rig<'m> {
    mem: &'m GuestMemoryMmap,
    rx: MockSplitQueue<'m, GuestMemoryMmap>,
    tx: MockSplitQueue<'m, GuestMemoryMmap>,
    ctrl: MockSplitQueue<'m, GuestMemoryMmap>,
    dev: NetDevice,
    peer: MemoryPeer,
    irq: Arc<Recorder>,
    log: EventBuffer,
    /// Clones of the queue notification events given at activation.
    evts: Vec<EventFd>,
    /// Next free descriptor index per queue.
    next_desc: [u16; 3],
}

impl<'m> Rig<'m> {
    fn new(mem: &'m GuestMemoryMmap, spec: &str) -> Self {
        let cfg = NetConfig::parse(spec).unwrap();
        let (backend, peer) = MemoryBackend::pair(256).unwrap();
        let (log, buf) = EventLog::in_memory();
        let dev = NetDevice::new(cfg, Box::new(backend), log).unwrap();
        Self {
            mem,
            rx: MockSplitQueue::create(mem, GuestAddress(0), 16),
            tx: MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16),
            ctrl: MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16),
            dev,
            peer,
            irq: Arc::new(Recorder::default()),
            log: buf,
            evts: Vec::new(),
            next_desc: [0; 3],
        }
    }

    /// The driver's queues (see `test_util` for why the used ring moves).
    fn queues(&self) -> Vec<(u16, Queue)> {
        (0..3)
            .map(|i| (i as u16, test_util::queue(self.queue(i))))
            .collect()
    }

    /// Walks the status byte through a driver's initialization with
    /// `acked` features, then DRIVER_OK.
    fn start(&mut self, acked: u64) -> Result<(), ActivateError> {
        let queues = self.queues();
        self.start_with(acked, queues)
    }

    fn start_with(&mut self, acked: u64, queues: Vec<(u16, Queue)>) -> Result<(), ActivateError> {
        let s = |bits: &[u32]| bits.iter().fold(0u8, |a, b| a | *b as u8);
        let a = s(&[VIRTIO_CONFIG_S_ACKNOWLEDGE]);
        let ad = s(&[VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER]);
        let f = ad | VIRTIO_CONFIG_S_FEATURES_OK as u8;
        self.dev.status_changed(0, a);
        self.dev.status_changed(a, ad);
        self.dev.set_acked_features(acked);
        self.dev.status_changed(ad, f);
        let evts: Vec<EventFd> = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect();
        self.evts = evts.iter().map(|e| e.try_clone().unwrap()).collect();
        let r = self.dev.activate(ActivateContext {
            mem: self.mem.clone(),
            interrupt: self.irq.clone(),
            queues,
            queue_evts: evts,
        });
        if r.is_ok() {
            self.dev
                .status_changed(f, f | VIRTIO_CONFIG_S_DRIVER_OK as u8);
        }
        r
    }

    fn queue(&self, q: usize) -> &MockSplitQueue<'m, GuestMemoryMmap> {
        [&self.rx, &self.tx, &self.ctrl][q]
    }

    /// Makes `descs` (linked by position) available on queue `q`.
    fn offer(&mut self, q: usize, descs: &[(u64, u32, u16)]) {
        let base = self.next_desc[q];
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, (addr, len, flags))| {
                let last = i + 1 == descs.len();
                let flags = if last { *flags } else { *flags | NEXT };
                RawDescriptor::from(Descriptor::new(*addr, *len, flags, base + i as u16 + 1))
            })
            .collect();
        self.queue(q).add_desc_chains(&raw, base).unwrap();
        self.next_desc[q] += descs.len() as u16;
    }

    /// Puts a frame with a virtio-net header on the transmit queue.
    fn send(&mut self, at: u64, hdr: NetHdr, frame: &[u8]) {
        let mut bytes = hdr.to_bytes(0).to_vec();
        bytes.extend_from_slice(frame);
        self.mem.write_slice(&bytes, GuestAddress(at)).unwrap();
        self.offer(1, &[(at, bytes.len() as u32, 0)]);
    }

    fn used(&self, q: usize) -> Vec<(u32, u32)> {
        test_util::used(self.mem, self.queue(q))
    }

    fn config_status(&self) -> u16 {
        let mut b = [0u8; 2];
        self.dev.read_config(STATUS_OFFSET as u64, &mut b);
        u16::from_le_bytes(b)
    }

    /// Sends a control command with a one-byte ack at `at`; returns the ack.
    fn command(&mut self, at: u64, cmd: &[u8]) -> u8 {
        self.mem.write_slice(cmd, GuestAddress(at)).unwrap();
        self.mem
            .write_obj(0xaau8, GuestAddress(at + 0x100))
            .unwrap();
        self.offer(2, &[(at, cmd.len() as u32, 0), (at + 0x100, 1, W)]);
        self.dev.process_queue(2).unwrap();
        self.mem.read_obj(GuestAddress(at + 0x100)).unwrap()
    }
}

fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ tag).collect();
    f[..6].copy_from_slice(&OWN_MAC);
    f
}

fn without(bits: &[u32]) -> u64 {
    bits.iter().fold(default_mask(), |m, b| m & !mask(*b))
}

// ----- Traffic -----

#[test]
fn tx_frame_reaches_the_backend_with_one_interrupt() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let f = frame(64, 1);
    rig.send(0x10_0000, NetHdr::default(), &f);
    rig.send(0x10_1000, NetHdr::default(), &frame(1500, 2));
    rig.dev.process_queue(1).unwrap();
    let sent = rig.peer.take_sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].data, f);
    assert_eq!(sent[1].data.len(), 1500);
    assert_eq!(rig.used(1), vec![(0, 0), (1, 0)]);
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(1)]);
    let st = rig.dev.status();
    assert_eq!((st.counters.tx_frames, st.counters.tx_bytes), (2, 1564));
    assert_eq!(st.counters.queue_notifications, 1);
    assert_eq!(rig.log.named("queue_active").len(), 1);
}

#[test]
fn rx_without_mrg_rxbuf() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory,features=-mrg_rxbuf");
    rig.start(without(&[VIRTIO_NET_F_MRG_RXBUF])).unwrap();
    rig.offer(0, &[(0x10_0000, 1526 + 12, W)]);
    let f = frame(1514, 3);
    rig.peer.inject(&f);
    rig.dev.process_rx().unwrap();
    assert_eq!(rig.used(0), vec![(0, 1526)]);
    let mut got = vec![0u8; 1526];
    m.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(&got[..12], &NetHdr::default().to_bytes(1));
    assert_eq!(&got[12..], &f[..]);
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(0)]);
    assert_eq!(rig.dev.status().counters.rx_frames, 1);
}

#[test]
fn rx_with_mrg_rxbuf_and_buffers_added_later() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let f = frame(3000, 4);
    rig.peer.inject(&f);
    // No buffers yet: the frame waits, nothing is used, no interrupt.
    rig.dev.process_rx().unwrap();
    assert!(rig.used(0).is_empty());
    assert!(rig.irq.take().is_empty());
    for i in 0..3 {
        rig.offer(0, &[(0x10_0000 + i * 0x1000, 1536, W)]);
    }
    // The driver's notification of the receive queue delivers it.
    rig.dev.process_queue(0).unwrap();
    assert_eq!(rig.used(0), vec![(0, 1536), (1, 1476)]);
    let mut hdr = [0u8; 12];
    m.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 2, "num_buffers");
    let mut got = vec![0u8; 3000];
    m.read_slice(&mut got[..1524], GuestAddress(0x10_000c))
        .unwrap();
    m.read_slice(&mut got[1524..], GuestAddress(0x10_1000))
        .unwrap();
    assert_eq!(got, f);
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(0)]);
}

/// A frame waiting for more buffers than are posted (MRG_RXBUF) must leave
/// `avail_event` past the chains the device saw, or, with EVENT_IDX, the
/// driver's next buffer never notifies and receive stalls.
#[test]
fn waiting_for_more_buffers_asks_for_a_notification_past_those_seen() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let avail_event = GuestAddress(used_addr(&rig.rx).0 + 4 + 8 * 16);
    let f = frame(3000, 6);
    rig.peer.inject(&f);
    rig.offer(0, &[(0x10_0000, 1536, W)]);
    rig.dev.process_queue(0).unwrap();
    assert!(rig.used(0).is_empty(), "one buffer is not enough");
    assert_eq!(
        m.read_obj::<u16>(avail_event).unwrap(),
        1,
        "notify me when the available index passes 1"
    );
    // The driver adds one more buffer and, as Linux does, notifies only
    // because the device's avail_event asks for it.
    rig.offer(0, &[(0x10_1000, 1536, W)]);
    rig.dev.process_queue(0).unwrap();
    assert_eq!(rig.used(0), vec![(0, 1536), (1, 1476)]);
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(0)]);
}

#[test]
fn rx_frame_larger_than_a_ring_of_tiny_buffers_is_a_logged_fault() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // 16 buffers of 32 bytes: 512 bytes in the whole ring.
    for i in 0..16 {
        rig.offer(0, &[(0x10_0000 + i * 0x1000, 32, W)]);
    }
    rig.peer.inject(&frame(1500, 1));
    rig.peer.inject(&frame(60, 2));
    rig.dev.process_rx().unwrap();
    let faults = rig.log.named("guest_fault");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0]["fault"]
        .as_str()
        .unwrap()
        .contains("does not fit the 16 receive buffers"));
    // Receive goes on: the small frame took three of the buffers.
    assert_eq!(rig.used(0), vec![(0, 32), (1, 32), (2, 8)]);
    assert_eq!(rig.dev.status().counters.rx_frames, 1);
    assert!(!rig.dev.needs_reset());
}

#[test]
fn indirect_descriptors_are_followed() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // An indirect table of two descriptors: header, then frame.
    let f = frame(100, 5);
    m.write_slice(&NetHdr::default().to_bytes(0), GuestAddress(0x11_0000))
        .unwrap();
    m.write_slice(&f, GuestAddress(0x11_1000)).unwrap();
    let table = [
        RawDescriptor::from(Descriptor::new(0x11_0000, 12, NEXT, 1)),
        RawDescriptor::from(Descriptor::new(0x11_1000, 100, 0, 0)),
    ];
    for (i, d) in table.iter().enumerate() {
        m.write_obj(*d, GuestAddress(0x12_0000 + 16 * i as u64))
            .unwrap();
    }
    rig.offer(
        1,
        &[(
            0x12_0000,
            32,
            virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT as u16,
        )],
    );
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.peer.take_sent()[0].data, f);
}

#[test]
fn event_idx_suppresses_interrupts_the_driver_does_not_want() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // used_event (after the avail ring) = 5: interrupt only once the used
    // index passes 5.
    let used_event = rig.tx.avail_addr().0 + 4 + 2 * 16;
    m.write_obj(5u16.to_le(), GuestAddress(used_event)).unwrap();
    for i in 0..3 {
        rig.send(0x10_0000 + i * 0x1000, NetHdr::default(), &frame(60, 0));
    }
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.irq.take(), vec![], "3 used, the driver asked at 6");
    for i in 3..6 {
        rig.send(0x10_0000 + i * 0x1000, NetHdr::default(), &frame(60, 0));
    }
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(1)]);
    // The device asked to be notified at the next available index.
    let avail_event = used_addr(&rig.tx).0 + 4 + 8 * 16;
    assert_eq!(m.read_obj::<u16>(GuestAddress(avail_event)).unwrap(), 6);
}

// ----- Control queue -----

#[test]
fn control_commands_change_filter_mac_and_announce() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let ok = VIRTIO_NET_OK as u8;
    let err = VIRTIO_NET_ERR as u8;
    assert_eq!(rig.command(0x10_0000, &[0, 0, 0]), ok, "promisc off");
    let mut table = vec![1, 0];
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&1u32.to_le_bytes());
    table.extend_from_slice(&[1, 0, 0x5e, 0, 0, 1]);
    assert_eq!(rig.command(0x10_1000, &table), ok, "mac table");
    let gen = rig.dev.config_generation();
    assert_eq!(
        rig.command(0x10_2000, &[1, 1, 2, 0, 0, 0, 0, 7]),
        ok,
        "mac addr"
    );
    assert!(rig.dev.config_generation() != gen);
    let mut mac = [0u8; 6];
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 7]);
    assert_eq!(rig.command(0x10_3000, &[2, 0, 10, 0]), ok, "vlan 10");
    assert_eq!(rig.command(0x10_4000, &[4, 0, 1, 0]), err, "mq not offered");
    assert_eq!(rig.command(0x10_5000, &[77, 3]), err, "unknown class");
    let mut off = vec![5, 0];
    off.extend_from_slice(&mask(VIRTIO_NET_F_GUEST_CSUM).to_le_bytes());
    assert_eq!(rig.command(0x10_6000, &off), ok, "guest offloads");
    assert_eq!(
        rig.peer.guest_offloads().bits(),
        mask(VIRTIO_NET_F_GUEST_CSUM),
        "the backend follows"
    );

    let st = rig.dev.status();
    assert!(!st.rx_filter.promisc);
    assert_eq!(st.rx_filter.multicast.len(), 1);
    assert_eq!(st.counters.ctrl_commands, 7);
    assert_eq!(st.counters.ctrl_errors, 2);
    assert_eq!(rig.log.named("ctrl_command").len(), 7);

    // The filter now applies: a frame for the old MAC is refused, one for
    // the new MAC delivered.
    rig.offer(0, &[(0x20_0000, 2048, W)]);
    rig.peer.inject(&frame(60, 0));
    let mut mine = frame(60, 0);
    mine[..6].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
    rig.peer.inject(&mine);
    rig.dev.process_rx().unwrap();
    let st = rig.dev.status();
    assert_eq!((st.counters.rx_filtered, st.counters.rx_frames), (1, 1));
}

#[test]
fn control_queue_without_ctrl_vq_negotiated_is_not_a_queue() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    let acked = without(&[
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_CTRL_RX,
        VIRTIO_NET_F_CTRL_VLAN,
        VIRTIO_NET_F_GUEST_ANNOUNCE,
        VIRTIO_NET_F_CTRL_MAC_ADDR,
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        VIRTIO_NET_F_CTRL_RX_EXTRA,
    ]);
    let queues = rig.queues().into_iter().take(2).collect();
    rig.start_with(acked, queues).unwrap();
    assert_eq!(rig.dev.process_queue(2), Err(ProcessError::NoSuchQueue(2)));
    assert!(!rig.dev.needs_reset());
}

// ----- Config space -----

#[test]
fn config_space_follows_the_offered_features() {
    let m = guest_mem();
    let rig = Rig::new(&m, "features=-status");
    assert_eq!(rig.dev.config_len(), 6);
    assert_eq!(rig.config_status(), 0);
    let mut mac = [0u8; 6];
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, OWN_MAC);

    let rig = Rig::new(&m, "mtu=9000,queue-pairs=2,features=+speed_duplex");
    assert_eq!(rig.dev.config_len(), 17);
    let mut all = [0u8; 17];
    rig.dev.read_config(0, &mut all);
    assert_eq!(&all[6..8], &[1, 0], "link up");
    assert_eq!(&all[8..10], &[2, 0], "pairs");
    assert_eq!(&all[10..12], &9000u16.to_le_bytes());
    assert_eq!(rig.dev.queue_max_sizes(), &[256; 5]);

    let rig = Rig::new(&m, "features=-mac,link=down");
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, [0; 6], "no MAC offered: the field is not meaningful");
    assert_eq!(rig.config_status(), 0, "link down at start");
    assert_eq!(rig.dev.device_type(), VIRTIO_ID_NET_FOR_TEST);
}

const VIRTIO_ID_NET_FOR_TEST: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_NET;

#[test]
fn driver_writes_to_config_space() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "");
    let gen = rig.dev.config_generation();
    rig.dev.write_config(0, &[2, 0, 0, 0, 0, 1]);
    let mut mac = [0u8; 6];
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
    assert!(rig.dev.config_generation() != gen);
    rig.dev.write_config(STATUS_OFFSET as u64, &[0, 0]);
    assert_eq!(rig.config_status(), 1, "status is read-only");
    rig.dev.write_config(u64::MAX, &[1; 8]);
    assert_eq!(rig.dev.status().counters.guest_faults, 2);
    // Reset restores the configured MAC.
    rig.dev.reset();
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, OWN_MAC);
}

// ----- Link and announce -----

#[test]
fn link_change_raises_exactly_one_config_interrupt() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let gen = rig.dev.config_generation();
    assert_eq!(rig.config_status(), VIRTIO_NET_S_LINK_UP as u16);

    assert_eq!(rig.dev.set_link(false), Ok(LinkChange::Notified));
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Config]);
    assert_eq!(rig.config_status(), 0);
    assert!(rig.dev.config_generation() != gen);

    assert_eq!(rig.dev.set_link(false), Ok(LinkChange::Unchanged));
    assert!(rig.irq.take().is_empty(), "no change, no interrupt");

    // While down, frames do not flow.
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig.dev.process_queue(1).unwrap();
    assert!(rig.peer.take_sent().is_empty());
    rig.irq.take();

    assert_eq!(rig.dev.control().set_link(true), Ok(LinkChange::Notified));
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Config]);
    assert_eq!(rig.config_status(), VIRTIO_NET_S_LINK_UP as u16);
    let st = rig.dev.status();
    assert_eq!(st.counters.config_interrupts, 2);
    assert_eq!(st.counters.tx_dropped, 1);
    let changes = rig.log.named("link_change");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["up"], false);
    assert_eq!(changes[0]["outcome"], "notified");
    assert_eq!(rig.log.named("config_interrupt").len(), 2);
}

#[test]
fn set_link_without_status_is_refused() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory,features=-status");
    rig.start(without(&[VIRTIO_NET_F_STATUS])).unwrap();
    let err = rig.dev.set_link(false).unwrap_err();
    assert_eq!(err, LinkError::StatusNotOffered);
    assert_eq!(
        err.to_string(),
        "the device does not offer VIRTIO_NET_F_STATUS, the guest cannot be told about link changes"
    );
    assert!(rig.irq.take().is_empty());
    assert!(rig.dev.status().link_up, "the link did not change");
    assert_eq!(rig.log.named("link_change_refused").len(), 1);
}

#[test]
fn set_link_before_driver_ok_or_without_negotiation() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    assert_eq!(rig.dev.set_link(false), Ok(LinkChange::NotStarted));
    assert_eq!(rig.config_status(), 0, "the driver will read it at probe");
    rig.start(without(&[VIRTIO_NET_F_STATUS])).unwrap();
    assert_eq!(rig.dev.set_link(true), Ok(LinkChange::NotNegotiated));
    assert!(rig.irq.take().is_empty());
    assert!(!rig.dev.status().status_negotiated);
}

#[test]
fn announce_sets_the_bit_and_the_ack_clears_it() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    assert_eq!(rig.dev.announce(), Err(LinkError::NotActive));
    rig.start(default_mask()).unwrap();
    rig.dev.announce().unwrap();
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Config]);
    let up_announce = (VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE) as u16;
    assert_eq!(rig.config_status(), up_announce);
    assert!(rig.dev.status().announce_pending);
    assert_eq!(rig.command(0x10_0000, &[3, 0]), VIRTIO_NET_OK as u8);
    assert_eq!(rig.config_status(), VIRTIO_NET_S_LINK_UP as u16);
    assert!(!rig.dev.status().announce_pending);

    let rig = Rig::new(&m, "features=-guest_announce");
    let err = rig.dev.announce().unwrap_err();
    assert_eq!(err, LinkError::AnnounceNotOffered);
    assert!(err.to_string().contains("VIRTIO_NET_F_GUEST_ANNOUNCE"));

    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(without(&[VIRTIO_NET_F_GUEST_ANNOUNCE])).unwrap();
    assert_eq!(
        rig.dev.announce(),
        Err(LinkError::NotNegotiated("GUEST_ANNOUNCE"))
    );
}

// ----- Observability -----

#[test]
fn event_log_records_negotiation_and_status() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory,features=-status,id=net3");
    rig.start(without(&[VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF]))
        .unwrap();
    let offered = rig.log.named("features_offered");
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0]["source"], "net3");
    let names = offered[0]["offered"]["names"].as_array().unwrap();
    assert!(!names.contains(&"status".into()));
    assert!(names.contains(&"mrg_rxbuf".into()));
    assert_eq!(
        offered[0]["not_offered_by_default"],
        serde_json::json!(["status"])
    );
    let acked = rig.log.named("features_acked");
    assert_eq!(
        acked[0]["offered_not_acked"],
        serde_json::json!(["mrg_rxbuf"])
    );
    let statuses: Vec<u64> = rig
        .log
        .named("device_status")
        .iter()
        .map(|e| e["new"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![1, 3, 11, 15]);
    assert_eq!(
        rig.log.named("device_status")[3]["set"],
        serde_json::json!(["DRIVER_OK"])
    );
    assert_eq!(rig.log.named("activated").len(), 1);

    let st = rig.dev.status();
    assert_eq!(st.device_status, 15);
    assert!(st.active && !st.status_offered);
    assert_eq!(
        st.acked.value,
        without(&[VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MRG_RXBUF])
    );
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["id"], "net3");
    assert_eq!(json["mac"], "52:54:00:12:34:56");
    assert_eq!(json["queues"][1]["role"], "tx0");
    assert_eq!(json["backend"]["backend"], "memory");
}

// ----- Bad input from the guest -----

fn assert_needs_reset(rig: &Rig<'_>, why: &str) {
    assert!(rig.dev.needs_reset());
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Config], "{why}");
    let ev = rig.log.named("needs_reset");
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0]["why"].as_str().unwrap().contains(why),
        "{}",
        ev[0]["why"]
    );
}

#[test]
fn descriptor_outside_guest_memory_needs_reset() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    rig.offer(1, &[(0x7fff_0000_0000, 100, 0)]);
    let err = rig.dev.process_queue(1).unwrap_err();
    assert!(matches!(
        err,
        ProcessError::Ring(RingErrorAlias::OutsideMemory { .. })
    ));
    assert_needs_reset(&rig, "outside guest memory");
    assert!(rig.used(1).is_empty(), "the broken chain is not used");
    // Nothing more is processed until reset; then all is well again.
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    assert_eq!(rig.dev.process_queue(1), Err(ProcessError::NeedsReset(1)));
    assert!(rig.peer.take_sent().is_empty());
    assert!(
        rig.irq.take().is_empty(),
        "one interrupt for entering NEEDS_RESET"
    );
    rig.dev.reset();
    assert!(!rig.dev.needs_reset());
    let mut rig2 = Rig::new(&m, "backend=memory");
    rig2.start(default_mask()).unwrap();
    rig2.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig2.dev.process_queue(1).unwrap();
    assert_eq!(rig2.peer.take_sent().len(), 1);
}

use super::chain::RingError as RingErrorAlias;

#[test]
fn looping_chain_needs_reset() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // Two descriptors pointing at each other.
    rig.tx
        .add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(0x10_0000, 64, NEXT, 1)),
                RawDescriptor::from(Descriptor::new(0x10_0000, 64, NEXT, 0)),
            ],
            0,
        )
        .unwrap();
    assert!(rig.dev.process_queue(1).is_err());
    assert_needs_reset(&rig, "loops");
}

#[test]
fn zero_and_four_gib_lengths() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // Zero length: a malformed frame, dropped; the device carries on.
    rig.offer(1, &[(0x10_0000, 0, 0)]);
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.used(1), vec![(0, 0)]);
    assert!(!rig.dev.needs_reset());
    assert_eq!(rig.dev.status().counters.guest_faults, 1);
    assert_eq!(rig.log.named("guest_fault").len(), 1);
    // Zero-length receive buffer: too small for any frame.
    rig.offer(0, &[(0x10_0000, 0, W)]);
    rig.peer.inject(&frame(60, 0));
    rig.dev.process_rx().unwrap();
    assert_eq!(rig.used(0), vec![(0, 0)]);
    rig.irq.take();
    // 4 GiB - 1 bytes: it cannot lie inside this guest's memory.
    rig.offer(1, &[(0x10_0000, u32::MAX, 0)]);
    assert!(rig.dev.process_queue(1).is_err());
    assert_needs_reset(&rig, "outside guest memory");
}

#[test]
fn descriptors_adding_up_to_4_gib_need_reset() {
    // 8 GiB of (sparse, lazily mapped) guest memory so each buffer is in
    // range and only the sum is wrong.
    let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x2_0000_0000)]).unwrap();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    rig.offer(
        1,
        &[(0x1000_0000, 0x8000_0000, 0), (0x1000_0000, 0x8000_0000, 0)],
    );
    assert!(rig.dev.process_queue(1).is_err());
    assert_needs_reset(&rig, "exceeds 4 GiB");
}

#[test]
fn available_index_jumping_past_the_queue_needs_reset() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    rig.tx.avail().idx().store(u16::to_le(40));
    assert!(rig.dev.process_queue(1).is_err());
    assert_needs_reset(&rig, "available ring of queue 1");
}

#[test]
fn queue_size_must_be_a_power_of_two() {
    // virtio-queue refuses such a size, so it can never reach the device.
    let mut q = Queue::new(256).unwrap();
    assert!(q.try_set_size(100).is_err());
    assert_eq!(q.size(), 256);
    assert!(NetConfig::parse("queue-size=100,allow-invalid").is_err());
}

#[test]
fn queue_outside_guest_memory_fails_activation() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    let mut queues = rig.queues();
    queues[1]
        .1
        .try_set_used_ring_address(GuestAddress(0x7f00_0000_0000))
        .unwrap();
    let err = rig.start_with(default_mask(), queues).unwrap_err();
    assert!(matches!(err, ActivateError::InvalidQueue(1, _)), "{err}");
    assert!(rig.dev.needs_reset());
    assert!(
        rig.irq.take().is_empty(),
        "the transport, told by the error, raises the configuration interrupt"
    );
    assert_eq!(rig.log.named("needs_reset")[0]["during"], "activation");
    assert_eq!(rig.dev.process_queue(1), Err(ProcessError::NeedsReset(1)));

    let mut rig = Rig::new(&m, "backend=memory");
    let queues = rig.queues().into_iter().skip(1).collect();
    assert!(matches!(
        rig.start_with(default_mask(), queues),
        Err(ActivateError::MissingQueue(0))
    ));

    // An available ring at 0, which virtio-queue cannot read: refused now
    // rather than NEEDS_RESET on the first notification.
    let mut rig = Rig::new(&m, "backend=memory");
    let mut queues = rig.queues();
    queues[1]
        .1
        .try_set_avail_ring_address(GuestAddress(0))
        .unwrap();
    let err = rig.start_with(default_mask(), queues).unwrap_err();
    assert!(
        matches!(&err, ActivateError::InvalidQueue(1, why) if why.contains("address 0")),
        "{err}"
    );
    assert!(rig.dev.needs_reset());
}

#[test]
fn notification_before_driver_ok_is_ignored_and_logged() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    assert_eq!(rig.dev.process_queue(1), Err(ProcessError::NotActive(1)));
    assert!(rig.peer.take_sent().is_empty());
    assert!(rig.used(1).is_empty());
    let faults = rig.log.named("guest_fault");
    assert!(faults[0]["fault"]
        .as_str()
        .unwrap()
        .contains("before DRIVER_OK"));
    // The frame goes out once the driver is ready.
    rig.start(default_mask()).unwrap();
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.peer.take_sent().len(), 1);
}

#[test]
fn reset_in_the_middle_of_traffic() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig.peer.inject(&frame(3000, 0));
    rig.offer(0, &[(0x20_0000, 1536, W)]); // not enough for the frame
    rig.dev.process_rx().unwrap();
    rig.dev.reset();
    rig.dev.status_changed(15, 0);
    let st = rig.dev.status();
    assert!(!st.active);
    assert_eq!(st.acked.value, 0);
    assert_eq!(st.counters.rx_dropped, 1, "the pending frame is dropped");
    assert_eq!(rig.dev.process_queue(1), Err(ProcessError::NotActive(1)));
    assert!(rig.peer.take_sent().is_empty());
    assert!(rig.log.named("reset")[0]["was_active"].as_bool().unwrap());

    // A fresh driver on fresh rings works.
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.peer.take_sent().len(), 1);
}

#[test]
fn interrupts_collected_before_a_reset_are_not_raised_after_it() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let limiter = crate::ratelimit::RateLimiter::new("net");
    let collect = |rig: &Rig<'_>| {
        let mut irqs = super::state::Irqs::default();
        let mut st = rig.dev.shared().lock();
        st.raise_queue(&mut irqs, 1);
        st.raise_config(&mut irqs, "test");
        irqs
    };
    // Raised after the lock, as Shared::with does.
    collect(&rig).fire("net", &limiter);
    assert_eq!(
        rig.irq.take(),
        vec![VirtioInterruptType::Config, VirtioInterruptType::Queue(1)]
    );
    // A reset between collecting and raising: nothing reaches the driver.
    let stale = collect(&rig);
    rig.dev.reset();
    stale.fire("net", &limiter);
    assert!(rig.irq.take().is_empty());
    // Nor after the driver started the device again.
    rig.start(default_mask()).unwrap();
    let stale = collect(&rig);
    rig.dev.reset();
    rig.start(default_mask()).unwrap();
    stale.fire("net", &limiter);
    assert!(rig.irq.take().is_empty());
    // Interrupts of the new activation go through.
    collect(&rig).fire("net", &limiter);
    assert_eq!(rig.irq.take().len(), 2);
}

#[test]
fn unimplemented_bits_offered_are_named_in_the_event_log() {
    let m = guest_mem();
    let rig = Rig::new(
        &m,
        "backend=memory,features=+ring_packed,offer-unimplemented",
    );
    assert!(rig.dev.offered_features() & mask(34) != 0);
    let ev = &rig.log.named("features_offered")[0];
    assert_eq!(ev["offer_unimplemented"], true);
    assert_eq!(ev["allow_invalid"], false);
    assert_eq!(
        ev["unimplemented_offered"],
        serde_json::json!(["ring_packed"])
    );
}

// ----- What the guest can make the VMM write -----

#[test]
fn guest_fault_allowance_is_per_device_not_per_activation() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    for cycle in 0..3u64 {
        rig.next_desc = [0; 3];
        rig.start(default_mask()).unwrap();
        // 20 writes to read-only config space and a runt frame, per cycle.
        for _ in 0..20 {
            rig.dev.write_config(STATUS_OFFSET as u64, &[0, 0]);
        }
        rig.offer(1, &[(0x10_0000 + cycle * 0x1000, 4, 0)]);
        rig.dev.process_queue(1).unwrap();
        rig.dev.reset();
    }
    // (The mock driver's ring keeps its index across resets, so each
    // activation sees the earlier runts again: more than 63.)
    assert!(rig.dev.status().counters.guest_faults >= 63, "all counted");
    assert_eq!(
        rig.log.named("guest_fault").len(),
        32,
        "32 logged in the device's life, however many activations"
    );
    assert_eq!(rig.log.named("guest_faults_suppressed").len(), 1);
}

#[test]
fn guest_triggered_event_log_entries_are_rate_limited() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    // MAC writes: a burst gets through, the rest is counted.
    for i in 0..1000u32 {
        rig.dev.write_config(5, &[i as u8]);
    }
    let writes = rig.log.named("config_write").len();
    assert!(
        (32..=40).contains(&writes),
        "{writes} config_write entries for 1000 MAC writes"
    );
    let suppressed = rig.dev.status().counters.events_suppressed;
    assert_eq!(suppressed as usize + writes, 1000);

    // Control commands, with a tighter limit to see the notice.
    rig.dev.shared().lock().event_limiter =
        crate::ratelimit::RateLimiter::with_rate("net", 3, std::time::Duration::from_millis(40));
    for i in 0..6 {
        rig.command(0x30_0000 + i * 0x1000, &[0, 0, 1]);
    }
    assert_eq!(rig.log.named("ctrl_command").len(), 3);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        rig.command(0x30_7000, &[0, 0, 1]),
        0,
        "answered all the same"
    );
    let notices = rig.log.named("events_suppressed");
    let last = notices.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["count"]),
        (&"ctrl_command".into(), &3.into())
    );
    assert_eq!(rig.log.named("ctrl_command").len(), 4);
    // What the harness needs is never limited: every status transition.
    for _ in 0..50 {
        rig.dev.reset();
        rig.next_desc = [0; 3];
        rig.start(default_mask()).unwrap();
    }
    let driver_ok = rig
        .log
        .named("device_status")
        .iter()
        .filter(|e| e["set"] == serde_json::json!(["DRIVER_OK"]))
        .count();
    assert_eq!(driver_ok, 51);
    // ... within a limit that only a guest looping on resets reaches.
    let before = rig.log.named("device_status").len();
    let suppressed = rig.dev.status().counters.events_suppressed;
    rig.dev.shared().lock().lifecycle_limiter =
        crate::ratelimit::RateLimiter::with_rate("net", 8, std::time::Duration::from_secs(60));
    for _ in 0..20 {
        rig.dev.reset();
        rig.next_desc = [0; 3];
        rig.start(default_mask()).unwrap();
    }
    assert_eq!(rig.log.named("device_status").len(), before + 8);
    assert!(rig.dev.status().counters.events_suppressed > suppressed);
    assert_eq!(rig.dev.status().device_status & 0x4, 0x4, "still works");
}

#[test]
fn failing_interrupts_are_logged_within_a_rate() {
    struct Broken;
    impl VirtioInterrupt for Broken {
        fn trigger(&self, _: VirtioInterruptType) -> std::io::Result<()> {
            Err(std::io::Error::other("no MSI route"))
        }
    }
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    let queues = rig.queues();
    let evts: Vec<EventFd> = queues
        .iter()
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    rig.dev.set_acked_features(default_mask());
    rig.dev
        .activate(ActivateContext {
            mem: m.clone(),
            interrupt: Arc::new(Broken),
            queues,
            queue_evts: evts,
        })
        .unwrap();
    let limiter = crate::ratelimit::RateLimiter::new("net");
    for _ in 0..1000 {
        let mut irqs = super::state::Irqs::default();
        rig.dev.shared().lock().raise_queue(&mut irqs, 1);
        irqs.fire("net", &limiter);
    }
    assert!(
        limiter.suppressed() >= 1000 - 12,
        "{}",
        limiter.suppressed()
    );
}

#[test]
fn refused_features_ok_is_in_the_event_log() {
    use crate::bus::BusDevice;
    use crate::virtio::mmio::MmioTransport;
    use virtio_bindings::virtio_mmio::*;

    let m = guest_mem();
    let cfg = NetConfig::parse("backend=memory,features=-mrg_rxbuf").unwrap();
    let (backend, _peer) = MemoryBackend::pair(16).unwrap();
    let (log, buf) = EventLog::in_memory();
    let dev = Arc::new(Mutex::new(
        NetDevice::new(cfg, Box::new(backend), log).unwrap(),
    ));
    let mut t = MmioTransport::new("net0", dev, m).unwrap();
    let mut w = |offset: u32, v: u32| t.write(0, u64::from(offset), &v.to_le_bytes());
    let acked = default_mask() | mask(VIRTIO_NET_F_MRG_RXBUF);
    w(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    w(
        VIRTIO_MMIO_STATUS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
    );
    w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w(VIRTIO_MMIO_DRIVER_FEATURES, acked as u32);
    w(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w(VIRTIO_MMIO_DRIVER_FEATURES, (acked >> 32) as u32);
    w(
        VIRTIO_MMIO_STATUS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
    );
    let ev = buf.named("features_refused");
    assert_eq!(ev.len(), 1, "{:?}", buf.events());
    assert_eq!(ev[0]["acked"]["value"], acked);
    assert_eq!(
        ev[0]["offered"]["value"],
        default_mask() & !mask(VIRTIO_NET_F_MRG_RXBUF)
    );
    assert_eq!(ev[0]["not_offered"], serde_json::json!(["mrg_rxbuf"]));
    assert!(buf.named("features_acked").is_empty());
}

#[test]
fn unoffered_acked_features_are_masked() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "features=-status");
    rig.dev.set_acked_features(u64::MAX);
    assert_eq!(rig.dev.status().acked.value, rig.dev.offered_features());
    assert_eq!(rig.log.named("guest_fault").len(), 1);
}

// ----- Event loop -----

#[test]
fn event_manager_drives_queues_backend_and_reset() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    let mut em = EventManager::<Arc<Mutex<NetEventHandler>>>::new().unwrap();
    em.add_subscriber(Arc::new(Mutex::new(rig.dev.event_handler())));
    rig.start(default_mask()).unwrap();
    // The wake-up after activation registers the queues and kicks them.
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 1));
    em.run_with_timeout(100).unwrap();
    assert_eq!(rig.peer.take_sent().len(), 1, "the activation kick sent it");

    // A notification through the queue's event.
    rig.send(0x10_1000, NetHdr::default(), &frame(60, 2));
    rig.evts[1].write(1).unwrap();
    em.run_with_timeout(100).unwrap();
    assert_eq!(rig.peer.take_sent().len(), 1);

    // A frame from the backend.
    rig.offer(0, &[(0x20_0000, 2048, W)]);
    rig.peer.inject(&frame(60, 3));
    em.run_with_timeout(100).unwrap();
    assert_eq!(rig.used(0), vec![(0, 72)]);
    rig.irq.take();

    // After a reset the old queue events are no longer watched: a write
    // to them does nothing and the loop goes quiet.
    rig.dev.reset();
    em.run_with_timeout(100).unwrap();
    rig.evts[1].write(1).unwrap();
    rig.send(0x10_2000, NetHdr::default(), &frame(60, 4));
    assert_eq!(em.run_with_timeout(50).unwrap(), 0);
    assert!(rig.peer.take_sent().is_empty());
    assert!(rig.evts.iter().all(|e| e.as_raw_fd() > 0));
}

#[test]
fn a_driver_that_keeps_posting_gets_one_budget_per_event_loop_iteration() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    // Every frame sent puts the chain back, 1000 times: a second vCPU
    // that posts as fast as the device uses.
    let guest = test_util::Reposter::new(&m, &rig.tx, 0, 1000);
    let cfg = NetConfig::parse("backend=memory").unwrap();
    rig.dev = NetDevice::new(cfg, Box::new(guest), EventLog::disabled()).unwrap();
    let mut em = EventManager::<Arc<Mutex<NetEventHandler>>>::new().unwrap();
    em.add_subscriber(Arc::new(Mutex::new(rig.dev.event_handler())));
    rig.start(default_mask()).unwrap();
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 1));
    let budget = u64::from(super::pass::BUDGET);
    let mut sent = Vec::new();
    for _ in 0..5 {
        em.run_with_timeout(100).unwrap();
        // The pass let go of the device between iterations: the control
        // socket's status request gets through.
        sent.push(rig.dev.status().counters.tx_frames);
    }
    assert_eq!(
        sent,
        vec![budget, 2 * budget, 3 * budget, 1001, 1001],
        "one budget per iteration, the rest in the following ones"
    );
    assert_eq!(
        em.run_with_timeout(50).unwrap(),
        0,
        "then the loop is quiet"
    );
}

#[test]
fn loopback_backend_echoes_through_the_event_loop() {
    let m = guest_mem();
    let cfg = NetConfig::parse("backend=loopback").unwrap();
    let (dev, peer) = NetDevice::from_config(cfg, EventLog::disabled()).unwrap();
    assert!(peer.is_none());
    let mut rig = Rig::new(&m, "backend=memory");
    rig.dev = dev;
    let mut em = EventManager::<Arc<Mutex<NetEventHandler>>>::new().unwrap();
    em.add_subscriber(Arc::new(Mutex::new(rig.dev.event_handler())));
    rig.start(default_mask()).unwrap();
    rig.offer(0, &[(0x20_0000, 2048, W)]);
    let f = frame(200, 9);
    rig.send(0x10_0000, NetHdr::default(), &f);
    for _ in 0..3 {
        em.run_with_timeout(50).unwrap();
    }
    assert_eq!(rig.used(0), vec![(0, 212)]);
    let mut got = vec![0u8; 200];
    m.read_slice(&mut got, GuestAddress(0x20_000c)).unwrap();
    assert_eq!(got, f);
}

// ----- Multiqueue, interrupt suppression without EVENT_IDX, TAP -----

#[test]
fn second_queue_pair_transmits_and_vq_pairs_set_is_answered() {
    let m = guest_mem();
    let cfg = NetConfig::parse("backend=memory,queue-pairs=2").unwrap();
    let (backend, peer) = MemoryBackend::pair(16).unwrap();
    let (log, _buf) = EventLog::in_memory();
    let mut dev = NetDevice::new(cfg, Box::new(backend), log).unwrap();
    assert_eq!(dev.queue_max_sizes().len(), 5, "rx0 tx0 rx1 tx1 ctrl");
    let vqs: Vec<MockSplitQueue<'_, GuestMemoryMmap>> = (0..5)
        .map(|i| MockSplitQueue::create(&m, GuestAddress(0x1_0000 * i), 16))
        .collect();
    dev.set_acked_features(default_mask() | mask(VIRTIO_NET_F_MQ));
    let irq = Arc::new(Recorder::default());
    dev.activate(ActivateContext {
        mem: m.clone(),
        interrupt: irq.clone(),
        queues: vqs
            .iter()
            .enumerate()
            .map(|(i, vq)| (i as u16, test_util::queue(vq)))
            .collect(),
        queue_evts: (0..5)
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect(),
    })
    .unwrap();
    // Control queue is index 4 (2 * max_virtqueue_pairs) with MQ.
    m.write_slice(&[4, 0, 2, 0], GuestAddress(0x10_0000))
        .unwrap();
    vqs[4]
        .add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(0x10_0000, 4, NEXT, 1)),
                RawDescriptor::from(Descriptor::new(0x10_0100, 1, W, 0)),
            ],
            0,
        )
        .unwrap();
    dev.process_queue(4).unwrap();
    assert_eq!(
        m.read_obj::<u8>(GuestAddress(0x10_0100)).unwrap(),
        VIRTIO_NET_OK as u8
    );
    assert_eq!(dev.status().queue_pairs, 2);
    // tx1 is queue 3.
    let mut bytes = NetHdr::default().to_bytes(0).to_vec();
    bytes.extend_from_slice(&frame(60, 0));
    m.write_slice(&bytes, GuestAddress(0x11_0000)).unwrap();
    vqs[3]
        .add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(
                0x11_0000,
                bytes.len() as u32,
                0,
                0,
            ))],
            0,
        )
        .unwrap();
    dev.process_queue(3).unwrap();
    assert_eq!(peer.take_sent().len(), 1);
    let roles: Vec<String> = dev.status().queues.iter().map(|q| q.role.clone()).collect();
    assert_eq!(roles, vec!["rx0", "tx0", "rx1", "tx1", "ctrl"]);
}

#[test]
fn no_interrupt_flag_and_notify_on_empty_without_event_idx() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory,features=+notify_on_empty");
    let acked = without(&[virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX]);
    let notify_on_empty = mask(virtio_bindings::virtio_config::VIRTIO_F_NOTIFY_ON_EMPTY);
    rig.start(acked).unwrap();
    // The driver sets VRING_AVAIL_F_NO_INTERRUPT (the avail ring's flags).
    m.write_obj(1u16, rig.tx.avail_addr()).unwrap();
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.used(1).len(), 1);
    assert!(
        rig.irq.take().is_empty(),
        "the driver asked for no interrupt"
    );

    // With NOTIFY_ON_EMPTY the device interrupts once the ring is empty.
    let m2 = guest_mem();
    let mut rig = Rig::new(&m2, "backend=memory,features=+notify_on_empty");
    rig.start(acked | notify_on_empty).unwrap();
    m2.write_obj(1u16, rig.tx.avail_addr()).unwrap();
    rig.send(0x10_0000, NetHdr::default(), &frame(60, 0));
    rig.dev.process_queue(1).unwrap();
    assert_eq!(rig.irq.take(), vec![VirtioInterruptType::Queue(1)]);
}

// The TAP backend's guest offloads are checked in tests/tap.rs (it needs
// /dev/net/tun and CAP_NET_ADMIN).

#[test]
fn link_changes_from_another_thread_while_traffic_flows() {
    let m = guest_mem();
    let mut rig = Rig::new(&m, "backend=memory");
    rig.start(default_mask()).unwrap();
    let control = rig.dev.control();
    let flipper = std::thread::spawn(move || {
        let mut notified = 0;
        for i in 0..1000 {
            if control.set_link(i % 2 == 1) == Ok(LinkChange::Notified) {
                notified += 1;
            }
        }
        notified
    });
    for round in 0..8u64 {
        rig.send(0x10_0000 + round * 0x1000, NetHdr::default(), &frame(60, 0));
        rig.dev.process_queue(1).unwrap();
    }
    let notified = flipper.join().unwrap();
    assert_eq!(notified, 1000, "every call changed the link");
    let config_irqs = rig
        .irq
        .take()
        .into_iter()
        .filter(|k| *k == VirtioInterruptType::Config)
        .count();
    assert_eq!(config_irqs, 1000, "one configuration interrupt per change");
    let st = rig.dev.status();
    assert!(st.link_up);
    assert_eq!(st.counters.tx_frames + st.counters.tx_dropped, 8);
    assert_eq!(rig.used(1).len(), 8);
}
