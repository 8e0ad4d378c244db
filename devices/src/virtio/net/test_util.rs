//! Test helpers over virtio-queue's `MockSplitQueue`, which (in 0.18)
//! places the used ring over the second half of the available ring and its
//! `used_event` (its ring `end()` counts elements as bytes). These helpers
//! move the used ring to a page of its own and read it from there; and a
//! driver that keeps posting ([`Reposter`]).

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::net::{Backend, NetHdr, SendOutcome};

/// Where the used ring of `vq` lives.
pub fn used_addr(vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> GuestAddress {
    GuestAddress(vq.start().0 + 0x1000)
}

/// The device side of `vq`, with the used ring moved to [`used_addr`].
pub fn queue(vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> Queue {
    let mut q: Queue = vq.create_queue().unwrap();
    q.try_set_used_ring_address(used_addr(vq)).unwrap();
    q
}

/// The used ring entries of `vq` as (head, length).
pub fn used(mem: &GuestMemoryMmap, vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
    let base = used_addr(vq).0;
    let idx: u16 = mem.read_obj(GuestAddress(base + 2)).unwrap();
    (0..u64::from(idx))
        .map(|i| {
            let at = base + 4 + 8 * i;
            let id: u32 = mem.read_obj(GuestAddress(at)).unwrap();
            let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
            (id, len)
        })
        .collect()
}

/// A driver on another vCPU that keeps posting: used as the backend, it
/// makes chain `head` available again every time the device sends a
/// frame, `left` more times (`u64::MAX`: for ever). A pass that drained
/// until the ring is empty would never end.
pub struct Reposter {
    mem: GuestMemoryMmap,
    avail: GuestAddress,
    size: u16,
    head: u16,
    /// Re-posts still to do.
    pub left: u64,
}

impl Reposter {
    /// Re-posts `head` on the available ring of `vq`.
    pub fn new(
        mem: &GuestMemoryMmap,
        vq: &MockSplitQueue<'_, GuestMemoryMmap>,
        head: u16,
        left: u64,
    ) -> Self {
        Self {
            mem: mem.clone(),
            avail: vq.avail_addr(),
            size: vq.create_queue::<Queue>().unwrap().size(),
            head,
            left,
        }
    }

    fn repost(&self) {
        let idx: u16 = self.mem.read_obj(GuestAddress(self.avail.0 + 2)).unwrap();
        let slot = self.avail.0 + 4 + 2 * u64::from(idx % self.size);
        self.mem.write_obj(self.head, GuestAddress(slot)).unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(self.avail.0 + 2))
            .unwrap();
    }
}

impl Backend for Reposter {
    fn describe(&self) -> String {
        "reposter".into()
    }

    fn send(&mut self, _: &NetHdr, _: &[u8]) -> crate::net::Result<SendOutcome> {
        if self.left > 0 {
            self.left -= 1;
            self.repost();
        }
        Ok(SendOutcome::Sent)
    }

    fn recv(&mut self, _: &mut [u8]) -> crate::net::Result<Option<(NetHdr, usize)>> {
        Ok(None)
    }
}
