//! The receive path: frames from the backend pass the receive filter and
//! the guest-offload check, then go into the receive queue behind a
//! virtio-net header: one chain per frame without MRG_RXBUF, as many chains
//! as the frame needs with it (`num_buffers` says how many).
//!
//! A frame the guest has no buffers for stays pending in the device (never
//! dropped for lack of buffers); the device asks the driver for a
//! notification and resumes when buffers arrive. The exception is a frame
//! no number of buffers could take: with MRG_RXBUF, one that needs more
//! chains than the ring holds (a driver posting tiny buffers) is dropped
//! as a guest fault, and the chains it was offered stay available.
//!
//! With VIRTIO_NET_F_MTU negotiated, frames without GSO longer than the MTU
//! plus their Ethernet header are dropped (virtio 1.2 section 5.1.4.2: the
//! device MUST NOT pass them to the driver).

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, ChainBuf, GuestFault, RingError, Segment};
use super::pass::{self, Faults, Negotiated, Pass, Step};
use super::rx_filter::RxFilter;
use super::status::Counters;
use crate::error::display_chain;
use crate::net::{Backend, GuestOffloads, NetHdr, MAX_FRAME_LEN};

/// Frames one pass takes from the backend before yielding to the event
/// loop, so a flooding backend cannot starve other devices.
pub const RX_BUDGET: u32 = pass::BUDGET;

/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: u64 = 10;

/// What the receive path needs from the device state.
#[derive(Debug, Clone, Copy)]
pub struct RxContext<'a> {
    /// The receive filter.
    pub filter: &'a RxFilter,
    /// The device's MAC address.
    pub mac: [u8; 6],
    /// The offloads the guest accepts now.
    pub offloads: GuestOffloads,
    /// Frames to take from the backend in this pass.
    pub budget: u32,
    /// With the link down every frame is dropped.
    pub link_up: bool,
    /// The MTU when VIRTIO_NET_F_MTU is negotiated.
    pub mtu: Option<u16>,
}

/// Chain bookkeeping reused for every frame.
#[derive(Debug)]
struct Work {
    chain: ChainBuf,
    /// The writable buffers of a frame's first chain (for `num_buffers`).
    first: Vec<Segment>,
    /// The chains a frame went into, with their used lengths.
    used: Vec<(u16, u32)>,
}

/// Buffers reused by every receive pass, and the pending frame.
#[derive(Debug)]
pub struct RxScratch {
    work: Work,
    frame: Vec<u8>,
    pending: Option<(NetHdr, usize)>,
    /// The last backend error, for the device to log.
    pub last_error: Option<String>,
}

impl Default for RxScratch {
    fn default() -> Self {
        Self {
            work: Work {
                chain: ChainBuf::new(),
                first: Vec::with_capacity(8),
                used: Vec::with_capacity(64),
            },
            frame: vec![0; MAX_FRAME_LEN],
            pending: None,
            last_error: None,
        }
    }
}

impl RxScratch {
    /// Whether a frame waits for guest buffers.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops the pending frame (device reset); true if there was one.
    pub fn drop_pending(&mut self) -> bool {
        self.pending.take().is_some()
    }

    /// Takes up to `budget` frames from the backend and drops them, for
    /// when no driver runs the device; returns (frames dropped, errors).
    pub fn discard(&mut self, backend: &mut dyn Backend, budget: u32) -> (u64, u64) {
        let mut dropped = 0;
        for _ in 0..budget {
            match backend.recv(&mut self.frame) {
                Ok(Some(_)) => dropped += 1,
                Ok(None) => return (dropped, 0),
                Err(_) => return (dropped, 1),
            }
        }
        (dropped, 0)
    }
}

/// Why a frame from the backend is not for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Filtered,
    Dropped,
    OverMtu,
}

/// Bytes of Ethernet header in front of the payload: 14, or 18 with an
/// 802.1Q / 802.1ad tag.
fn eth_header_len(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some([0x81, 0x00] | [0x88, 0xa8]) => 18,
        _ => 14,
    }
}

/// Checks a frame against the filter and the guest's offloads; may clear
/// DATA_VALID, which only means something with GUEST_CSUM.
fn admit(hdr: &mut NetHdr, frame: &[u8], ctx: &RxContext<'_>) -> Result<(), Refusal> {
    if !ctx.link_up || frame.len() < 14 {
        return Err(Refusal::Dropped);
    }
    if !ctx.filter.accepts(frame, &ctx.mac) {
        return Err(Refusal::Filtered);
    }
    let o = ctx.offloads;
    let flags = u32::from(hdr.flags);
    if !o.has(VIRTIO_NET_F_GUEST_CSUM) {
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            return Err(Refusal::Dropped);
        }
        hdr.flags &= !(VIRTIO_NET_HDR_F_DATA_VALID as u8);
    }
    let gso = u32::from(hdr.gso_type);
    let needed = match gso & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE => {
            return match ctx.mtu {
                Some(mtu) if frame.len() > usize::from(mtu) + eth_header_len(frame) => {
                    Err(Refusal::OverMtu)
                }
                _ => Ok(()),
            }
        }
        VIRTIO_NET_HDR_GSO_TCPV4 => VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_HDR_GSO_TCPV6 => VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_HDR_GSO_UDP => VIRTIO_NET_F_GUEST_UFO,
        _ => return Err(Refusal::Dropped),
    };
    if !o.has(needed) || (gso & VIRTIO_NET_HDR_GSO_ECN != 0 && !o.has(VIRTIO_NET_F_GUEST_ECN)) {
        return Err(Refusal::Dropped);
    }
    Ok(())
}

/// The outcome of offering one frame to the receive queue.
enum Delivery {
    /// The frame is in the used ring, in this many chains.
    Delivered(u32),
    /// The guest's buffers cannot hold it; this many chains went back empty
    /// (none when they were left available).
    Dropped(u32, GuestFault),
    /// Not enough buffers: nothing consumed, try again later. `seen` is
    /// the available index the device found exhausted.
    NoBuffers { seen: u16 },
}

/// Writes bytes `from..from + n` of `hdr ++ frame` into `segs`.
fn write_part(
    mem: &GuestMemoryMmap,
    segs: &[Segment],
    hdr: &[u8],
    frame: &[u8],
    from: usize,
    n: usize,
) -> Result<(), vm_memory::GuestMemoryError> {
    let end = from + n;
    let mut at = 0u64;
    if from < hdr.len() {
        let h = &hdr[from..end.min(hdr.len())];
        chain::write_at(mem, segs, 0, h)?;
        at = h.len() as u64;
    }
    if end > hdr.len() {
        let start = from.max(hdr.len()) - hdr.len();
        chain::write_at(mem, segs, at, &frame[start..end - hdr.len()])?;
    }
    Ok(())
}

fn memory_fault(e: vm_memory::GuestMemoryError) -> GuestFault {
    // `walk` checked the buffers, so this cannot happen; report it as a
    // too-small buffer rather than panic.
    log::error!("receive buffer became unwritable: {e}");
    GuestFault::RxBufferTooSmall { need: 0, have: 0 }
}

/// Offers one frame to the queue.
fn deliver(
    q: &mut Queue,
    qidx: u16,
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    hdr: &NetHdr,
    frame: &[u8],
    s: &mut Work,
) -> Result<Delivery, RingError> {
    let hdr_bytes = hdr.to_bytes(1);
    let hdr_bytes = &hdr_bytes[..neg.hdr_len];
    let total = neg.hdr_len + frame.len();

    if !neg.mrg_rxbuf {
        let Some(c) = chain::pop(q, mem, qidx)? else {
            // `pop` found the available index equal to next_avail.
            return Ok(Delivery::NoBuffers {
                seen: q.next_avail(),
            });
        };
        chain::walk(c, mem, &mut s.chain)?;
        let head = s.chain.head;
        if s.chain.writable_len < total as u64 {
            let fault = GuestFault::RxBufferTooSmall {
                need: total,
                have: s.chain.writable_len,
            };
            chain::add_used(q, mem, qidx, head, 0)?;
            return Ok(Delivery::Dropped(1, fault));
        }
        if let Err(e) = write_part(mem, &s.chain.writable, hdr_bytes, frame, 0, total) {
            chain::add_used(q, mem, qidx, head, 0)?;
            return Ok(Delivery::Dropped(1, memory_fault(e)));
        }
        chain::add_used(q, mem, qidx, head, total as u32)?;
        return Ok(Delivery::Delivered(1));
    }

    let start = q.next_avail();
    let mut written = 0;
    s.used.clear();
    while written < total {
        if s.used.len() >= usize::from(q.size()) {
            // Every chain a full ring can hold is not enough: waiting for
            // more would stall receive until a reset. Drop the frame and
            // leave the chains available, untouched as far as the driver
            // can tell (see `ring_too_small`).
            q.set_next_avail(start);
            return Ok(Delivery::Dropped(
                0,
                ring_too_small(total, written, q.size()),
            ));
        }
        let Some(c) = chain::pop(q, mem, qidx)? else {
            // Give the chains back untouched (the driver has not seen them
            // used) and wait for more.
            let seen = q.next_avail();
            q.set_next_avail(start);
            return Ok(Delivery::NoBuffers { seen });
        };
        chain::walk(c, mem, &mut s.chain)?;
        let head = s.chain.head;
        if s.used.is_empty() {
            if s.chain.writable_len < neg.hdr_len as u64 {
                let fault = GuestFault::RxBufferTooSmall {
                    need: neg.hdr_len,
                    have: s.chain.writable_len,
                };
                chain::add_used(q, mem, qidx, head, 0)?;
                return Ok(Delivery::Dropped(1, fault));
            }
            s.first.clear();
            s.first.extend_from_slice(&s.chain.writable);
        }
        let n = (s.chain.writable_len.min((total - written) as u64)) as usize;
        if let Err(e) = write_part(mem, &s.chain.writable, hdr_bytes, frame, written, n) {
            let fault = memory_fault(e);
            s.used.push((head, 0));
            return give_back_empty(q, qidx, mem, s, fault);
        }
        s.used.push((head, n as u32));
        written += n;
    }
    // The header went out with num_buffers = 1; correct it for frames
    // that took more buffers.
    let num_buffers = s.used.len() as u16;
    if num_buffers > 1 {
        if let Err(e) = chain::write_at(
            mem,
            &s.first,
            NUM_BUFFERS_OFFSET,
            &num_buffers.to_le_bytes(),
        ) {
            return give_back_empty(q, qidx, mem, s, memory_fault(e));
        }
    }
    for (head, len) in &s.used {
        chain::add_used(q, mem, qidx, *head, *len)?;
    }
    Ok(Delivery::Delivered(u32::from(num_buffers)))
}

/// The fault for a frame larger than a whole ring of the driver's buffers.
///
/// Why the chains are put back rather than used with length 0: with
/// MRG_RXBUF every used buffer either starts a frame, with a header whose
/// `num_buffers` counts the buffers that follow, or continues one (virtio
/// 1.2 section 5.1.6.4). A zero-length used buffer is neither; a driver
/// that reads `num_buffers` from it (stale data) would take the next
/// frames' buffers as part of this one. Not using available buffers is
/// always allowed, and the ring's buffers then serve the next frames that
/// fit.
fn ring_too_small(need: usize, have: usize, chains: u16) -> GuestFault {
    GuestFault::RxFrameExceedsRing {
        need,
        have: have as u64,
        chains,
    }
}

/// Returns every chain taken for a frame with a used length of 0.
fn give_back_empty(
    q: &mut Queue,
    qidx: u16,
    mem: &GuestMemoryMmap,
    s: &Work,
    fault: GuestFault,
) -> Result<Delivery, RingError> {
    for (head, _) in &s.used {
        chain::add_used(q, mem, qidx, *head, 0)?;
    }
    Ok(Delivery::Dropped(s.used.len() as u32, fault))
}

/// Moves frames from the backend into receive queue `qidx` until the
/// backend is empty, the guest has no buffers, or `ctx.budget` frames were
/// taken (see [`pass::drain`]).
#[allow(clippy::too_many_arguments)]
pub fn process_rx(
    q: &mut Queue,
    qidx: u16,
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    ctx: &RxContext<'_>,
    backend: &mut dyn Backend,
    s: &mut RxScratch,
    counters: &mut Counters,
    faults: &mut Faults,
) -> Result<Pass, RingError> {
    // One step takes a frame from the backend (unless one is pending) and
    // offers it to the queue; a frame without buffers stays pending.
    pass::drain(q, mem, qidx, neg, ctx.budget, |q| {
        let (hdr, len) = match s.pending {
            Some(p) => p,
            None => match backend.recv(&mut s.frame) {
                Ok(Some((mut hdr, len))) => match admit(&mut hdr, &s.frame[..len], ctx) {
                    Ok(()) => (hdr, len),
                    Err(refusal) => {
                        match refusal {
                            Refusal::Filtered => counters.rx_filtered += 1,
                            Refusal::Dropped => counters.rx_dropped += 1,
                            Refusal::OverMtu => {
                                counters.rx_dropped += 1;
                                counters.rx_over_mtu += 1;
                            }
                        }
                        return Ok(Step::Did { used: 0 });
                    }
                },
                Ok(None) => return Ok(Step::Idle),
                Err(e) => {
                    counters.rx_errors += 1;
                    s.last_error = Some(display_chain(&e));
                    return Ok(Step::Idle);
                }
            },
        };
        // Pending until delivered or dropped, so that a reset counts it.
        s.pending = Some((hdr, len));
        Ok(
            match deliver(q, qidx, mem, neg, &hdr, &s.frame[..len], &mut s.work)? {
                Delivery::Delivered(chains) => {
                    s.pending = None;
                    counters.rx_frames += 1;
                    counters.rx_bytes += len as u64;
                    Step::Did { used: chains }
                }
                Delivery::Dropped(chains, fault) => {
                    s.pending = None;
                    counters.rx_dropped += 1;
                    counters.guest_faults += 1;
                    faults.push(fault);
                    Step::Did { used: chains }
                }
                Delivery::NoBuffers { seen } => Step::RingEmpty { seen },
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_net::{VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU};
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::net::memory::{MemoryBackend, MemoryPeer};
    use crate::virtio::net::features::{default_mask, mask};
    use crate::virtio::net::test_util;

    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
    }

    fn wdesc(addr: u64, len: u32) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, W, 0))
    }

    struct Rig {
        backend: MemoryBackend,
        peer: MemoryPeer,
        filter: RxFilter,
        scratch: RxScratch,
        counters: Counters,
        faults: Faults,
        link_up: bool,
        mtu: Option<u16>,
    }

    impl Rig {
        fn new() -> Self {
            let (backend, peer) = MemoryBackend::pair(64).unwrap();
            Self {
                link_up: true,
                mtu: None,
                backend,
                peer,
                filter: RxFilter::default(),
                scratch: RxScratch::default(),
                counters: Counters::default(),
                faults: Faults::default(),
            }
        }

        fn run(&mut self, q: &mut Queue, m: &GuestMemoryMmap, acked: u64) -> Pass {
            let ctx = RxContext {
                filter: &self.filter,
                mac: [0x52, 0x54, 0, 0, 0, 1],
                offloads: GuestOffloads::from_features(acked),
                budget: RX_BUDGET,
                link_up: self.link_up,
                mtu: self.mtu,
            };
            process_rx(
                q,
                0,
                m,
                &Negotiated::new(acked),
                &ctx,
                &mut self.backend,
                &mut self.scratch,
                &mut self.counters,
                &mut self.faults,
            )
            .unwrap()
        }
    }

    fn frame(n: usize, tag: u8) -> Vec<u8> {
        let mut f: Vec<u8> = (0..n).map(|i| (i as u8) ^ tag).collect();
        f[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f
    }

    fn used(m: &GuestMemoryMmap, vq: &MockSplitQueue<'_, GuestMemoryMmap>, i: usize) -> (u32, u32) {
        test_util::used(m, vq)[i]
    }

    #[test]
    fn without_mrg_rxbuf_one_chain_per_frame() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        // Linux's "small buffers": header and data in separate descriptors.
        vq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(
                    0x1_0000,
                    12,
                    W | VRING_DESC_F_NEXT as u16,
                    1,
                )),
                wdesc(0x1_1000, 1514),
                wdesc(0x2_0000, 1526),
            ],
            0,
        )
        .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let (f1, f2) = (frame(100, 1), frame(1514, 2));
        rig.peer.inject(&f1);
        rig.peer.inject(&f2);
        rig.peer.inject(&frame(60, 3));
        let acked = default_mask() & !mask(VIRTIO_NET_F_MRG_RXBUF);
        let pass = rig.run(&mut q, &m, acked);
        assert_eq!(pass.used, 2);
        assert!(pass.interrupt);
        assert!(
            rig.scratch.has_pending(),
            "the third frame waits for buffers"
        );
        assert_eq!(used(&m, &vq, 0), (0, 112));
        assert_eq!(used(&m, &vq, 1), (2, 1526));

        let mut hdr = [0u8; 12];
        m.read_slice(&mut hdr, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(hdr, NetHdr::default().to_bytes(1), "num_buffers is 1");
        let mut got = vec![0u8; 100];
        m.read_slice(&mut got, GuestAddress(0x1_1000)).unwrap();
        assert_eq!(got, f1);
        let mut got = vec![0u8; 1514];
        m.read_slice(&mut got, GuestAddress(0x2_000c)).unwrap();
        assert_eq!(got, f2);
        assert_eq!((rig.counters.rx_frames, rig.counters.rx_bytes), (2, 1614));

        // The guest adds a buffer; the pending frame goes in.
        vq.add_desc_chains(&[wdesc(0x3_0000, 2048)], 3).unwrap();
        let pass = rig.run(&mut q, &m, acked);
        assert_eq!(pass.used, 1);
        assert_eq!(used(&m, &vq, 2), (3, 72));
        assert!(!rig.scratch.has_pending());
    }

    #[test]
    fn with_mrg_rxbuf_frames_span_chains() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.add_desc_chains(
            &[
                wdesc(0x1_0000, 512),
                wdesc(0x1_1000, 512),
                wdesc(0x1_2000, 512),
                wdesc(0x1_3000, 512),
            ],
            0,
        )
        .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let big = frame(1200, 7);
        rig.peer.inject(&big);
        rig.peer.inject(&frame(1000, 8));
        let pass = rig.run(&mut q, &m, default_mask());
        assert_eq!(pass.used, 3, "1212 bytes take three 512-byte buffers");
        assert_eq!(
            [used(&m, &vq, 0), used(&m, &vq, 1), used(&m, &vq, 2)],
            [(0, 512), (1, 512), (2, 188)]
        );
        let mut hdr = [0u8; 12];
        m.read_slice(&mut hdr, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 3, "num_buffers");
        let mut got = vec![0u8; 1200];
        m.read_slice(&mut got[..500], GuestAddress(0x1_000c))
            .unwrap();
        m.read_slice(&mut got[500..1012], GuestAddress(0x1_1000))
            .unwrap();
        m.read_slice(&mut got[1012..], GuestAddress(0x1_2000))
            .unwrap();
        assert_eq!(got, big);

        // The second frame needs two buffers, only one is left: nothing is
        // consumed and the frame waits.
        assert!(rig.scratch.has_pending());
        assert_eq!(q.next_avail(), 3);
        assert_eq!(test_util::used(&m, &vq).len(), 3);
        vq.add_desc_chains(&[wdesc(0x1_4000, 512)], 4).unwrap();
        let pass = rig.run(&mut q, &m, default_mask());
        assert_eq!(pass.used, 2);
        assert_eq!([used(&m, &vq, 3), used(&m, &vq, 4)], [(3, 512), (4, 500)]);
    }

    #[test]
    fn small_buffers_drop_the_frame_and_return_the_chain() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.add_desc_chains(&[wdesc(0x1_0000, 64), wdesc(0x1_1000, 8)], 0)
            .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.peer.inject(&frame(100, 1));
        let acked = default_mask() & !mask(VIRTIO_NET_F_MRG_RXBUF);
        rig.run(&mut q, &m, acked);
        assert_eq!(used(&m, &vq, 0), (0, 0));
        assert!(matches!(
            rig.faults.kept[0],
            GuestFault::RxBufferTooSmall {
                need: 112,
                have: 64
            }
        ));
        // With MRG_RXBUF, a first buffer smaller than the header.
        rig.peer.inject(&frame(100, 1));
        rig.run(&mut q, &m, default_mask());
        assert_eq!(used(&m, &vq, 1), (1, 0));
        assert_eq!(rig.counters.rx_dropped, 2);
        assert_eq!(rig.counters.guest_faults, 2);
    }

    #[test]
    fn filter_and_offloads_decide_what_the_guest_gets() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.add_desc_chains(&[wdesc(0x1_0000, 2048)], 0).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.filter.promisc = false;
        let mut other = frame(60, 0);
        other[5] = 9;
        rig.peer.inject(&other);
        let gso = NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
            ..NetHdr::default()
        };
        rig.peer.inject_with_hdr(gso, &frame(60, 0));
        rig.peer.inject(&[0u8; 10]);
        let valid = NetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID as u8,
            ..NetHdr::default()
        };
        rig.peer.inject_with_hdr(valid, &frame(60, 0));
        let acked = default_mask() & !GuestOffloads::MASK;
        let pass = rig.run(&mut q, &m, acked);
        assert_eq!(pass.used, 1);
        assert_eq!(rig.counters.rx_filtered, 1);
        assert_eq!(rig.counters.rx_dropped, 2, "GSO frame and runt");
        let mut hdr = [0u8; 12];
        m.read_slice(&mut hdr, GuestAddress(0x1_0000)).unwrap();
        assert_eq!(hdr[0], 0, "DATA_VALID needs guest_csum");
    }

    #[test]
    fn link_down_drops_received_frames() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.add_desc_chains(&[wdesc(0x1_0000, 2048)], 0).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.link_up = false;
        rig.peer.inject(&frame(60, 0));
        assert_eq!(rig.run(&mut q, &m, default_mask()).used, 0);
        assert_eq!(rig.counters.rx_dropped, 1);
        assert_eq!(rig.peer.queued_to_guest(), 0);
    }

    #[test]
    fn budget_bounds_a_pass() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.filter.promisc = false;
        for _ in 0..10 {
            let mut f = frame(60, 0);
            f[0] = 2; // not for us: filtered, so no buffers are needed
            rig.peer.inject(&f);
        }
        let ctx = RxContext {
            filter: &rig.filter,
            mac: [0x52, 0x54, 0, 0, 0, 1],
            offloads: GuestOffloads::default(),
            budget: 4,
            link_up: true,
            mtu: None,
        };
        let pass = process_rx(
            &mut q,
            0,
            &m,
            &Negotiated::new(default_mask()),
            &ctx,
            &mut rig.backend,
            &mut rig.scratch,
            &mut rig.counters,
            &mut rig.faults,
        )
        .unwrap();
        assert!(pass.more);
        assert_eq!(rig.counters.rx_filtered, 4);
        assert_eq!(rig.peer.queued_to_guest(), 6);
    }

    #[test]
    fn frames_over_the_negotiated_mtu_are_dropped() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let bufs: Vec<RawDescriptor> = (0..8)
            .map(|i| wdesc(0x1_0000 + i * 0x1_0000, 0x1_0000))
            .collect();
        vq.add_desc_chains(&bufs, 0).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.mtu = Some(1500);
        let mut tagged = frame(1518, 3);
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        let tso = NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
            gso_size: 1448,
            ..NetHdr::default()
        };
        let ecn_only = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_ECN as u8,
            ..NetHdr::default()
        };
        rig.peer.inject(&frame(1514, 1)); // exactly mtu + Ethernet header
        rig.peer.inject(&frame(1515, 2)); // one byte over
        rig.peer.inject(&tagged); // mtu + a VLAN-tagged header
        rig.peer.inject_with_hdr(tso, &frame(9000, 4)); // GSO: not limited
        rig.peer.inject_with_hdr(ecn_only, &frame(1515, 5)); // "NONE or ECN"
        let pass = rig.run(&mut q, &m, default_mask() | mask(VIRTIO_NET_F_MTU));
        assert_eq!(pass.used, 3);
        assert_eq!(
            test_util::used(&m, &vq)
                .iter()
                .map(|u| u.1)
                .collect::<Vec<_>>(),
            vec![1526, 1530, 9012]
        );
        assert_eq!((rig.counters.rx_over_mtu, rig.counters.rx_dropped), (2, 2));

        // Without MTU negotiated there is no such limit.
        rig.mtu = None;
        rig.peer.inject(&frame(1515, 6));
        assert_eq!(rig.run(&mut q, &m, default_mask()).used, 1);
        assert_eq!(rig.counters.rx_over_mtu, 2);
    }

    #[test]
    fn a_frame_larger_than_the_whole_ring_is_dropped_not_waited_for() {
        let m = mem();
        // A driver that posts tiny buffers: the whole 4-entry ring holds
        // 4 x 64 bytes.
        let vq = MockSplitQueue::new(&m, 4);
        let tiny: Vec<RawDescriptor> = (0..4).map(|i| wdesc(0x1_0000 + i * 0x1000, 64)).collect();
        vq.add_desc_chains(&tiny, 0).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.peer.inject(&frame(1000, 1));
        rig.peer.inject(&frame(100, 2));
        let pass = rig.run(&mut q, &m, default_mask());
        // The big frame is dropped as a guest fault, its chains were left
        // available, and the next frame goes into them.
        assert_eq!(
            rig.faults.kept,
            vec![GuestFault::RxFrameExceedsRing {
                need: 1012,
                have: 256,
                chains: 4
            }]
        );
        assert_eq!((rig.counters.rx_dropped, rig.counters.guest_faults), (1, 1));
        assert_eq!(pass.used, 2);
        assert_eq!(test_util::used(&m, &vq), vec![(0, 64), (1, 48)]);
        assert_eq!(rig.counters.rx_frames, 1);
        assert!(!rig.scratch.has_pending(), "receive is not stuck");
    }

    #[test]
    fn header_split_across_tiny_buffers() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(
                    0x1_0000,
                    5,
                    W | VRING_DESC_F_NEXT as u16,
                    1,
                )),
                RawDescriptor::from(Descriptor::new(
                    0x1_1000,
                    9,
                    W | VRING_DESC_F_NEXT as u16,
                    2,
                )),
                wdesc(0x1_2000, 100),
            ],
            0,
        )
        .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let f = frame(60, 4);
        rig.peer.inject(&f);
        rig.run(&mut q, &m, default_mask());
        let mut hdr = [0u8; 12];
        m.read_slice(&mut hdr[..5], GuestAddress(0x1_0000)).unwrap();
        m.read_slice(&mut hdr[5..], GuestAddress(0x1_1000)).unwrap();
        assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 1);
        let mut got = vec![0u8; 60];
        m.read_slice(&mut got[..2], GuestAddress(0x1_1007)).unwrap();
        m.read_slice(&mut got[2..], GuestAddress(0x1_2000)).unwrap();
        assert_eq!(got, f);
        assert_eq!(used(&m, &vq, 0), (0, 72));
    }
}
