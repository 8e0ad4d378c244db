//! Descriptor chains as the net device sees them: the chain is walked once
//! (direct or indirect), every buffer is checked to lie inside guest memory,
//! and the result is a list of readable and writable segments that the
//! TX, RX and control paths copy from and to.
//!
//! Every way a chain can be broken is a [`RingError`]: the device cannot
//! tell what the driver meant, so it stops and asks for a reset (virtio 1.2
//! section 2.1.2, DEVICE_NEEDS_RESET). Content errors in a well-formed
//! chain (a frame too short, a command too long) are [`GuestFault`]s: the
//! device drops the frame or answers VIRTIO_NET_ERR and carries on.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

/// A guest mistake that breaks a queue: the device needs a reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The head index is out of range or its descriptor unreadable.
    #[error(
        "descriptor chain head {head} is out of range, unreadable or an invalid indirect table"
    )]
    BadHead {
        /// The head index from the available ring.
        head: u16,
    },
    /// The chain loops, is longer than the queue, points past the table or
    /// adds up to 4 GiB or more.
    #[error("descriptor chain at head {head} loops, is too long, points outside its table or exceeds 4 GiB in total")]
    Truncated {
        /// The head index.
        head: u16,
    },
    /// A buffer lies (partly) outside guest memory.
    #[error(
        "descriptor chain at head {head} has a buffer at {addr:#x}+{len:#x} outside guest memory"
    )]
    OutsideMemory {
        /// The head index.
        head: u16,
        /// The buffer address.
        addr: u64,
        /// The buffer length.
        len: u32,
    },
    /// A device-readable descriptor follows a device-writable one
    /// (virtio 1.2 section 2.7.4.2).
    #[error("descriptor chain at head {head} has a readable descriptor after a writable one")]
    ReadableAfterWritable {
        /// The head index.
        head: u16,
    },
    /// The available ring cannot be used (index jumped by more than the
    /// queue size, ring outside memory).
    #[error("available ring of queue {queue}: {why}")]
    AvailRing {
        /// The queue index.
        queue: u16,
        /// The virtio-queue error text.
        why: String,
    },
    /// The used ring cannot be written.
    #[error("used ring of queue {queue}: {why}")]
    UsedRing {
        /// The queue index.
        queue: u16,
        /// The virtio-queue error text.
        why: String,
    },
}

/// A guest mistake the device survives: it drops the frame or answers
/// VIRTIO_NET_ERR, counts it and logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFault {
    /// A transmit chain shorter than the header plus an Ethernet header.
    #[error("transmit chain of {len} bytes is shorter than the {hdr_len}-byte virtio-net header plus an Ethernet header")]
    TxTooShort {
        /// Bytes in the chain.
        len: u64,
        /// The negotiated header size.
        hdr_len: usize,
    },
    /// A transmit chain longer than any frame can be.
    #[error(
        "transmit chain of {len} bytes is longer than the largest frame ({max} bytes with header)"
    )]
    TxTooLong {
        /// Bytes in the chain.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A transmit chain with device-writable buffers.
    #[error("transmit chain has device-writable descriptors")]
    TxWritable,
    /// A transmit header asking for an offload the driver did not negotiate.
    #[error("transmit header asks for {0} without the feature being negotiated")]
    TxOffload(&'static str),
    /// A checksum request pointing outside the frame.
    #[error("transmit header asks for a checksum at {start}+{offset} in a {len}-byte frame")]
    TxCsumOutside {
        /// csum_start.
        start: u16,
        /// csum_offset.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A receive chain too small for the frame (without MRG_RXBUF) or for
    /// the header (with it).
    #[error("receive buffer of {have} bytes cannot hold {need} bytes")]
    RxBufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: u64,
    },
    /// With MRG_RXBUF, a received frame larger than all the buffers a
    /// full ring can offer at once: it could never be delivered.
    #[error("a {need}-byte received frame does not fit the {chains} receive buffers of the whole ring ({have} bytes); frame dropped, buffers left available")]
    RxFrameExceedsRing {
        /// Bytes needed (header and frame).
        need: usize,
        /// Bytes in every buffer of the ring together.
        have: u64,
        /// Chains in the ring (its size).
        chains: u16,
    },
    /// A receive chain with device-readable buffers.
    #[error("receive chain has device-readable descriptors")]
    RxReadable,
    /// A control chain without a writable status byte.
    #[error("control command has no writable byte for the ack")]
    CtrlNoAck,
    /// A control chain too large to be a command.
    #[error("control command of {0} bytes is too long")]
    CtrlTooLong(u64),
}

/// One buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest address.
    pub addr: GuestAddress,
    /// Length, never zero.
    pub len: u32,
}

/// A walked chain; reused across chains to avoid allocations.
#[derive(Debug, Default)]
pub struct ChainBuf {
    /// The head index, for the used ring.
    pub head: u16,
    /// Device-readable buffers, in order.
    pub readable: Vec<Segment>,
    /// Device-writable buffers, in order.
    pub writable: Vec<Segment>,
    /// Total readable bytes.
    pub readable_len: u64,
    /// Total writable bytes.
    pub writable_len: u64,
}

impl ChainBuf {
    /// An empty buffer with room for typical chains.
    pub fn new() -> Self {
        Self {
            readable: Vec::with_capacity(64),
            writable: Vec::with_capacity(64),
            ..Self::default()
        }
    }

    fn clear(&mut self, head: u16) {
        self.head = head;
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
    }
}

/// Pops the next available chain of `queue` (index `qidx` for messages).
pub fn pop<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
    qidx: u16,
) -> Result<Option<DescriptorChain<&'m GuestMemoryMmap>>, RingError> {
    let mut iter = queue.iter(mem).map_err(|e| RingError::AvailRing {
        queue: qidx,
        why: e.to_string(),
    })?;
    Ok(iter.next())
}

/// Puts a chain in the used ring.
pub fn add_used(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    qidx: u16,
    head: u16,
    len: u32,
) -> Result<(), RingError> {
    queue
        .add_used(mem, head, len)
        .map_err(|e| RingError::UsedRing {
            queue: qidx,
            why: e.to_string(),
        })
}

/// Whether `addr..addr + len` (len > 0) lies in guest memory. The common
/// case, a buffer inside one region, is a single lookup; buffers that span
/// regions take vm-memory's general (slower) check.
fn in_guest_memory(mem: &GuestMemoryMmap, addr: GuestAddress, len: u32) -> bool {
    let Some(last) = addr.0.checked_add(u64::from(len) - 1) else {
        return false;
    };
    match mem.find_region(addr) {
        Some(r) if last <= r.last_addr().0 => true,
        Some(_) => GuestMemoryBackend::check_range(mem, addr, len as usize),
        None => false,
    }
}

/// Walks `chain` into `out`, checking every buffer.
pub fn walk(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    out: &mut ChainBuf,
) -> Result<(), RingError> {
    let head = chain.head_index();
    out.clear(head);
    let mut count = 0u32;
    let mut last_has_next = false;
    for desc in chain {
        count += 1;
        last_has_next = desc.has_next();
        let writable = desc.is_write_only();
        if !writable && !out.writable.is_empty() {
            return Err(RingError::ReadableAfterWritable { head });
        }
        let len = desc.len();
        if len == 0 {
            continue;
        }
        let addr = desc.addr();
        if !in_guest_memory(mem, addr, len) {
            return Err(RingError::OutsideMemory {
                head,
                addr: addr.0,
                len,
            });
        }
        let seg = Segment { addr, len };
        if writable {
            out.writable.push(seg);
            out.writable_len += u64::from(len);
        } else {
            out.readable.push(seg);
            out.readable_len += u64::from(len);
        }
    }
    // The iterator stops silently on every error; what it yielded tells
    // which: nothing at all, or a last descriptor that promised a next one.
    if count == 0 {
        return Err(RingError::BadHead { head });
    }
    if last_has_next {
        return Err(RingError::Truncated { head });
    }
    Ok(())
}

/// The host view of `len` bytes at `addr` when they lie in one region:
/// the fast path for buffer copies, which skips vm-memory's general
/// multi-region iterator (a third of the per-frame time otherwise).
fn region_slice(
    mem: &GuestMemoryMmap,
    addr: GuestAddress,
    len: usize,
) -> Option<vm_memory::VolatileSlice<'_, ()>> {
    let (region, offset) = mem.to_region_addr(addr)?;
    region.get_slice(offset, len).ok()
}

/// Copies the first `dst.len()` readable bytes of the chain into `dst`.
/// Callers check `readable_len` first; the buffers were checked by `walk`.
pub fn read_into(
    mem: &GuestMemoryMmap,
    segs: &[Segment],
    dst: &mut [u8],
) -> Result<(), vm_memory::GuestMemoryError> {
    let mut done = 0;
    for seg in segs {
        if done == dst.len() {
            break;
        }
        let n = (seg.len as usize).min(dst.len() - done);
        let out = &mut dst[done..done + n];
        match region_slice(mem, seg.addr, n) {
            Some(slice) => {
                slice.copy_to(out);
            }
            None => mem.read_slice(out, seg.addr)?,
        }
        done += n;
    }
    Ok(())
}

/// Copies `src` into the writable buffers starting at byte `offset` of
/// the chain; returns how many bytes fit.
pub fn write_at(
    mem: &GuestMemoryMmap,
    segs: &[Segment],
    mut offset: u64,
    src: &[u8],
) -> Result<usize, vm_memory::GuestMemoryError> {
    let mut done = 0;
    for seg in segs {
        if done == src.len() {
            break;
        }
        let len = u64::from(seg.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        let room = (len - offset) as usize;
        let n = room.min(src.len() - done);
        let at = seg.addr.unchecked_add(offset);
        let part = &src[done..done + n];
        match region_slice(mem, at, n) {
            Some(slice) => slice.copy_from(part),
            None => mem.write_slice(part, at)?,
        }
        done += n;
        offset = 0;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    use super::*;
    use crate::virtio::net::test_util;

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, next))
    }

    /// Puts `descs` at table index 0.. and offers index `head`.
    fn walk_table(descs: &[RawDescriptor], head: u16) -> Result<ChainBuf, RingError> {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        for (i, d) in descs.iter().enumerate() {
            vq.desc_table().store(i as u16, *d).unwrap();
        }
        vq.avail().ring().ref_at(0).unwrap().store(u16::to_le(head));
        vq.avail().idx().store(u16::to_le(1));
        let mut q = test_util::queue(&vq);
        let chain = pop(&mut q, &m, 0)?.expect("one chain");
        let mut out = ChainBuf::new();
        walk(chain, &m, &mut out).map(|()| out)
    }

    #[test]
    fn walks_readable_then_writable() {
        let out = walk_table(
            &[
                desc(0x8000, 10, NEXT, 1),
                desc(0x9000, 0, NEXT, 2),
                desc(0xa000, 100, NEXT | WRITE, 3),
                desc(0xb000, 50, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        assert_eq!(out.readable.len(), 1, "zero-length buffers are skipped");
        assert_eq!((out.readable_len, out.writable_len), (10, 150));
        assert_eq!(out.writable[1].addr, GuestAddress(0xb000));
    }

    #[test]
    fn broken_chains_are_ring_errors() {
        // Loop: 0 -> 1 -> 0.
        let looped = walk_table(&[desc(0x8000, 1, NEXT, 1), desc(0x8000, 1, NEXT, 0)], 0);
        assert_eq!(looped.unwrap_err(), RingError::Truncated { head: 0 });
        // Next index past the table.
        let past = walk_table(&[desc(0x8000, 1, NEXT, 99)], 0);
        assert_eq!(past.unwrap_err(), RingError::Truncated { head: 0 });
        // Head index past the table.
        assert_eq!(
            walk_table(&[], 40).unwrap_err(),
            RingError::BadHead { head: 40 }
        );
        // Buffer outside guest memory, and one of 4 GiB - 1 bytes.
        let outside = walk_table(&[desc(0xff_0000_0000, 64, 0, 0)], 0);
        assert!(matches!(outside, Err(RingError::OutsideMemory { .. })));
        let huge = walk_table(&[desc(0x1000, u32::MAX, 0, 0)], 0);
        assert!(matches!(
            huge,
            Err(RingError::OutsideMemory { len: u32::MAX, .. })
        ));
        // Two buffers adding up to 4 GiB or more.
        let sum = walk_table(
            &[
                desc(0x1000, 0x8000_0000, NEXT, 1),
                desc(0x1000, 0x8000_0000, 0, 0),
            ],
            0,
        );
        assert!(sum.is_err());
        // Readable after writable.
        let order = walk_table(
            &[desc(0x8000, 4, NEXT | WRITE, 1), desc(0x9000, 4, 0, 0)],
            0,
        );
        assert_eq!(
            order.unwrap_err(),
            RingError::ReadableAfterWritable { head: 0 }
        );
    }

    #[test]
    fn avail_index_jump_is_a_ring_error() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        vq.avail().idx().store(u16::to_le(17));
        let mut q = test_util::queue(&vq);
        assert!(matches!(
            pop(&mut q, &m, 3),
            Err(RingError::AvailRing { queue: 3, .. })
        ));
    }

    #[test]
    fn memory_checks_cover_region_edges() {
        let m = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x4000), 0x1000),
        ])
        .unwrap();
        assert!(in_guest_memory(&m, GuestAddress(0xfff), 1));
        assert!(
            in_guest_memory(&m, GuestAddress(0xf00), 0x200),
            "spans two adjacent regions"
        );
        assert!(
            !in_guest_memory(&m, GuestAddress(0x1f00), 0x200),
            "runs into a hole"
        );
        assert!(!in_guest_memory(&m, GuestAddress(0x3000), 1), "in the hole");
        assert!(in_guest_memory(&m, GuestAddress(0x4000), 0x1000));
        assert!(!in_guest_memory(&m, GuestAddress(0x4000), 0x1001));
        assert!(!in_guest_memory(&m, GuestAddress(u64::MAX), 2), "wraps");
    }

    #[test]
    fn copies_across_a_region_boundary_take_the_slow_path() {
        let m = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1000), 0x1000),
        ])
        .unwrap();
        let segs = [Segment {
            addr: GuestAddress(0xff0),
            len: 0x20,
        }];
        let data: Vec<u8> = (0..0x20).collect();
        assert_eq!(write_at(&m, &segs, 0, &data).unwrap(), 0x20);
        let mut out = vec![0u8; 0x20];
        read_into(&m, &segs, &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x1000)).unwrap(), 0x10);
    }

    #[test]
    fn read_and_write_span_segments() {
        let m = mem();
        let segs = [
            Segment {
                addr: GuestAddress(0x1000),
                len: 3,
            },
            Segment {
                addr: GuestAddress(0x2000),
                len: 5,
            },
        ];
        assert_eq!(write_at(&m, &segs, 2, b"abcdefghij").unwrap(), 6);
        let mut out = [0u8; 8];
        read_into(&m, &segs, &mut out).unwrap();
        assert_eq!(&out, b"\0\0abcdef");
        assert_eq!(write_at(&m, &segs, 8, b"x").unwrap(), 0);
    }
}
