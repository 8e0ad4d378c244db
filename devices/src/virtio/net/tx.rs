//! The transmit path: every available chain of a transmit queue is walked,
//! its virtio-net header parsed and checked against the negotiated host
//! offloads, and the frame handed to the backend; the chain is returned
//! with a used length of 0 (the device writes nothing).

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, ChainBuf, GuestFault, RingError};
use super::features::has;
use super::pass::{self, Faults, Negotiated, Pass, Step};
use super::status::Counters;
use crate::error::display_chain;
use crate::net::hdr::HDR_LEN;
use crate::net::{Backend, NetHdr, SendOutcome, MAX_FRAME_LEN};

const ETH_HLEN: usize = 14;

/// Buffers reused by every transmit pass.
#[derive(Debug)]
pub struct TxScratch {
    chain: ChainBuf,
    buf: Vec<u8>,
    /// The last backend error, for the device to log.
    pub last_error: Option<String>,
}

impl Default for TxScratch {
    fn default() -> Self {
        Self {
            chain: ChainBuf::new(),
            buf: vec![0; MAX_FRAME_LEN + HDR_LEN],
            last_error: None,
        }
    }
}

/// Checks a transmit header against the negotiated host offloads.
fn check_offloads(hdr: &NetHdr, acked: u64, frame_len: usize) -> Result<(), GuestFault> {
    if u32::from(hdr.flags) & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        if !has(acked, VIRTIO_NET_F_CSUM) {
            return Err(GuestFault::TxOffload("checksum offload (csum)"));
        }
        let end = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2;
        if end > frame_len {
            return Err(GuestFault::TxCsumOutside {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
                len: frame_len,
            });
        }
    }
    let gso = u32::from(hdr.gso_type);
    let (needed, what) = match gso & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE => return Ok(()),
        VIRTIO_NET_HDR_GSO_TCPV4 => (VIRTIO_NET_F_HOST_TSO4, "TCPv4 segmentation (host_tso4)"),
        VIRTIO_NET_HDR_GSO_TCPV6 => (VIRTIO_NET_F_HOST_TSO6, "TCPv6 segmentation (host_tso6)"),
        VIRTIO_NET_HDR_GSO_UDP => (VIRTIO_NET_F_HOST_UFO, "UDP fragmentation (host_ufo)"),
        _ => return Err(GuestFault::TxOffload("an unknown segmentation type")),
    };
    if !has(acked, needed) {
        return Err(GuestFault::TxOffload(what));
    }
    if gso & VIRTIO_NET_HDR_GSO_ECN != 0 && !has(acked, VIRTIO_NET_F_HOST_ECN) {
        return Err(GuestFault::TxOffload("segmentation with ECN (host_ecn)"));
    }
    Ok(())
}

/// Sends the frame in the walked chain `scratch.chain`.
fn send_one(
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    link_up: bool,
    backend: &mut dyn Backend,
    scratch: &mut TxScratch,
    counters: &mut Counters,
) -> Result<(), GuestFault> {
    let c = &scratch.chain;
    if !c.writable.is_empty() {
        return Err(GuestFault::TxWritable);
    }
    let len = c.readable_len;
    if len < (neg.hdr_len + ETH_HLEN) as u64 {
        return Err(GuestFault::TxTooShort {
            len,
            hdr_len: neg.hdr_len,
        });
    }
    let max = neg.hdr_len + MAX_FRAME_LEN;
    if len > max as u64 {
        return Err(GuestFault::TxTooLong { len, max });
    }
    let len = len as usize;
    let buf = &mut scratch.buf[..len];
    if chain::read_into(mem, &c.readable, buf).is_err() {
        // `walk` checked every buffer; memory that vanished since is the
        // VMM's problem, not the guest's: drop the frame.
        counters.tx_errors += 1;
        scratch.last_error = Some("guest memory became unreadable".into());
        return Ok(());
    }
    let Some(hdr) = NetHdr::parse(buf) else {
        return Err(GuestFault::TxTooShort {
            len: len as u64,
            hdr_len: neg.hdr_len,
        });
    };
    let frame = &buf[neg.hdr_len..];
    check_offloads(&hdr, neg.acked, frame.len())?;
    if !link_up {
        counters.tx_dropped += 1;
        return Ok(());
    }
    match backend.send(&hdr, frame) {
        Ok(SendOutcome::Sent) => {
            counters.tx_frames += 1;
            counters.tx_bytes += frame.len() as u64;
        }
        Ok(SendOutcome::Dropped) => counters.tx_dropped += 1,
        Err(e) => {
            counters.tx_errors += 1;
            scratch.last_error = Some(display_chain(&e));
        }
    }
    Ok(())
}

/// Sends the frames available on transmit queue `qidx`, up to
/// [`pass::BUDGET`] of them (see [`pass::drain`]); with the link down the
/// frames are dropped (and counted), as a NIC without carrier does.
#[allow(clippy::too_many_arguments)]
pub fn process_tx(
    q: &mut Queue,
    qidx: u16,
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    link_up: bool,
    backend: &mut dyn Backend,
    scratch: &mut TxScratch,
    counters: &mut Counters,
    faults: &mut Faults,
) -> Result<Pass, RingError> {
    pass::drain(q, mem, qidx, neg, pass::BUDGET, |q| {
        let Some(c) = chain::pop(q, mem, qidx)? else {
            return Ok(Step::RingEmpty {
                seen: q.next_avail(),
            });
        };
        chain::walk(c, mem, &mut scratch.chain)?;
        if let Err(fault) = send_one(mem, neg, link_up, backend, scratch, counters) {
            counters.guest_faults += 1;
            faults.push(fault);
        }
        chain::add_used(q, mem, qidx, scratch.chain.head, 0)?;
        Ok(Step::Did { used: 1 })
    })
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::net::memory::MemoryBackend;
    use crate::virtio::net::features::{default_mask, mask};
    use crate::virtio::net::test_util;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    struct Rig {
        backend: MemoryBackend,
        peer: crate::net::memory::MemoryPeer,
        scratch: TxScratch,
        counters: Counters,
        faults: Faults,
        link_up: bool,
    }

    impl Rig {
        fn new() -> Self {
            let (backend, peer) = MemoryBackend::pair(64).unwrap();
            Self {
                link_up: true,
                backend,
                peer,
                scratch: TxScratch::default(),
                counters: Counters::default(),
                faults: Faults::default(),
            }
        }

        fn run(&mut self, q: &mut Queue, m: &GuestMemoryMmap, acked: u64) -> Pass {
            process_tx(
                q,
                1,
                m,
                &Negotiated::new(acked),
                self.link_up,
                &mut self.backend,
                &mut self.scratch,
                &mut self.counters,
                &mut self.faults,
            )
            .unwrap()
        }
    }

    fn frame(n: usize) -> Vec<u8> {
        (0..n).map(|i| i as u8).collect()
    }

    #[test]
    fn sends_split_header_and_frame() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let hdr = NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
            csum_start: 34,
            csum_offset: 6,
            ..NetHdr::default()
        };
        m.write_slice(&hdr.to_bytes(0), GuestAddress(0x4000))
            .unwrap();
        let data = frame(100);
        m.write_slice(&data[..40], GuestAddress(0x5000)).unwrap();
        m.write_slice(&data[40..], GuestAddress(0x6000)).unwrap();
        let descs = [
            RawDescriptor::from(Descriptor::new(0x4000, 12, VRING_DESC_F_NEXT as u16, 1)),
            RawDescriptor::from(Descriptor::new(0x5000, 40, VRING_DESC_F_NEXT as u16, 2)),
            RawDescriptor::from(Descriptor::new(0x6000, 60, 0, 0)),
        ];
        vq.build_desc_chain(&descs).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let pass = rig.run(&mut q, &m, default_mask());
        assert_eq!(pass.used, 1);
        assert!(pass.interrupt);
        let sent = rig.peer.take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].data, data);
        assert_eq!(sent[0].hdr, hdr);
        assert_eq!(rig.counters.tx_frames, 1);
        assert_eq!(rig.counters.tx_bytes, 100);
        assert_eq!(test_util::used(&m, &vq), vec![(0, 0)]);
    }

    #[test]
    fn link_down_drops_frames_but_returns_chains() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.build_desc_chain(&[RawDescriptor::from(Descriptor::new(0x4000, 72, 0, 0))])
            .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.link_up = false;
        assert_eq!(rig.run(&mut q, &m, default_mask()).used, 1);
        assert!(rig.peer.take_sent().is_empty());
        assert_eq!((rig.counters.tx_dropped, rig.counters.tx_frames), (1, 0));
    }

    #[test]
    fn legacy_header_is_ten_bytes() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let data = frame(60);
        m.write_slice(&[0u8; 10], GuestAddress(0x4000)).unwrap();
        m.write_slice(&data, GuestAddress(0x400a)).unwrap();
        vq.build_desc_chain(&[RawDescriptor::from(Descriptor::new(0x4000, 70, 0, 0))])
            .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        rig.run(&mut q, &m, 0);
        assert_eq!(rig.peer.take_sent()[0].data, data);
    }

    #[test]
    fn bad_frames_are_dropped_and_returned() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        let gso = NetHdr {
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4 as u8,
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
            csum_start: 10,
            ..NetHdr::default()
        };
        m.write_slice(&gso.to_bytes(0), GuestAddress(0x4000))
            .unwrap();
        let huge = (HDR_LEN + MAX_FRAME_LEN + 1) as u32;
        let descs = [
            // 1: shorter than a header.
            RawDescriptor::from(Descriptor::new(0x8000, 5, 0, 0)),
            // 2: zero bytes in total.
            RawDescriptor::from(Descriptor::new(0x8000, 0, 0, 0)),
            // 3: longer than any frame.
            RawDescriptor::from(Descriptor::new(0x1_0000, huge, 0, 0)),
            // 4: GSO without host_tso4.
            RawDescriptor::from(Descriptor::new(0x4000, 80, 0, 0)),
            // 5: a writable buffer.
            RawDescriptor::from(Descriptor::new(0x8000, 80, VRING_DESC_F_WRITE as u16, 0)),
        ];
        vq.build_multiple_desc_chains(&descs).unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let acked = default_mask() & !mask(VIRTIO_NET_F_HOST_TSO4);
        let pass = rig.run(&mut q, &m, acked);
        assert_eq!(pass.used, 5, "every chain goes back to the driver");
        assert!(rig.peer.take_sent().is_empty());
        assert_eq!(rig.counters.guest_faults, 5);
        let kinds: Vec<String> = rig.faults.kept.iter().map(|f| f.to_string()).collect();
        assert!(
            matches!(rig.faults.kept[0], GuestFault::TxTooShort { len: 5, .. }),
            "{kinds:?}"
        );
        assert!(matches!(
            rig.faults.kept[1],
            GuestFault::TxTooShort { len: 0, .. }
        ));
        assert!(matches!(rig.faults.kept[2], GuestFault::TxTooLong { .. }));
        assert!(kinds[3].contains("host_tso4"), "{kinds:?}");
        assert_eq!(rig.faults.kept[4], GuestFault::TxWritable);

        // The same GSO frame goes out when host_tso4 is negotiated.
        let vq = MockSplitQueue::new(&m, 16);
        vq.build_desc_chain(&[RawDescriptor::from(Descriptor::new(0x4000, 80, 0, 0))])
            .unwrap();
        let mut q = test_util::queue(&vq);
        rig.run(&mut q, &m, default_mask());
        assert_eq!(rig.peer.take_sent().len(), 1);
    }

    #[test]
    fn a_driver_that_keeps_posting_cannot_hold_a_pass() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.build_desc_chain(&[RawDescriptor::from(Descriptor::new(0x4000, 72, 0, 0))])
            .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        let mut guest = test_util::Reposter::new(&m, &vq, 0, u64::MAX);
        let neg = Negotiated::new(default_mask());
        let mut run = |q: &mut Queue, guest: &mut test_util::Reposter| {
            process_tx(
                q,
                1,
                &m,
                &neg,
                true,
                guest,
                &mut rig.scratch,
                &mut rig.counters,
                &mut rig.faults,
            )
            .unwrap()
        };
        // The pass returns after its budget although the ring never
        // empties, and says there is more.
        let pass = run(&mut q, &mut guest);
        assert_eq!(pass.used, pass::BUDGET);
        assert!(pass.more);
        // The rest is processed by the next passes; once the driver stops
        // posting, a pass ends with the ring empty and nothing more.
        assert!(run(&mut q, &mut guest).more);
        guest.left = 10;
        let pass = run(&mut q, &mut guest);
        assert_eq!((pass.used, pass.more), (11, false));
        let used_idx: u16 = m
            .read_obj(GuestAddress(test_util::used_addr(&vq).0 + 2))
            .unwrap();
        assert_eq!(used_idx, 2 * pass::BUDGET as u16 + 11);
    }

    /// A backend whose every send fails.
    struct Failing;

    impl Backend for Failing {
        fn describe(&self) -> String {
            "failing".into()
        }

        fn send(&mut self, _: &NetHdr, _: &[u8]) -> crate::net::Result<SendOutcome> {
            Err(crate::net::BackendError::Send(std::io::Error::other(
                "boom",
            )))
        }

        fn recv(&mut self, _: &mut [u8]) -> crate::net::Result<Option<(NetHdr, usize)>> {
            Ok(None)
        }
    }

    #[test]
    fn backend_errors_keep_their_cause() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.build_desc_chain(&[RawDescriptor::from(Descriptor::new(0x4000, 72, 0, 0))])
            .unwrap();
        let mut q = test_util::queue(&vq);
        let mut rig = Rig::new();
        process_tx(
            &mut q,
            1,
            &m,
            &Negotiated::new(default_mask()),
            true,
            &mut Failing,
            &mut rig.scratch,
            &mut rig.counters,
            &mut rig.faults,
        )
        .unwrap();
        assert_eq!(rig.counters.tx_errors, 1);
        assert_eq!(
            rig.scratch.last_error.as_deref(),
            Some("cannot send a frame: boom")
        );
    }

    #[test]
    fn checksum_request_must_fit_the_frame() {
        let acked = default_mask();
        let hdr = |start, offset| NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM as u8,
            csum_start: start,
            csum_offset: offset,
            ..NetHdr::default()
        };
        assert!(check_offloads(&hdr(50, 8), acked, 60).is_ok());
        assert!(matches!(
            check_offloads(&hdr(50, 9), acked, 60),
            Err(GuestFault::TxCsumOutside { .. })
        ));
        assert!(check_offloads(&hdr(0, 0), acked & !mask(VIRTIO_NET_F_CSUM), 60).is_err());
        let ecn = NetHdr {
            gso_type: (VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN) as u8,
            ..NetHdr::default()
        };
        assert!(check_offloads(&ecn, acked, 60).is_ok());
        assert!(check_offloads(&ecn, acked & !mask(VIRTIO_NET_F_HOST_ECN), 60).is_err());
        let odd = NetHdr {
            gso_type: 7,
            ..NetHdr::default()
        };
        assert!(check_offloads(&odd, acked, 60).is_err());
    }
}
