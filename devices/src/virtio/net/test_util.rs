//! Test helpers over virtio-queue's `MockSplitQueue`, which (in 0.18)
//! places the used ring over the second half of the available ring and its
//! `used_event` (its ring `end()` counts elements as bytes). These helpers
//! move the used ring to a page of its own and read it from there.

use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

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
