//! The control queue pass: each chain is one command (readable class,
//! command and data, then a writable ack byte). The command is decoded and
//! applied by [`super::ctrl`]; the ack is always written and the chain
//! always returned, so a driver spinning on the answer never hangs.

use virtio_bindings::virtio_net::{VIRTIO_NET_ERR, VIRTIO_NET_OK};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, ChainBuf, GuestFault, RingError};
use super::ctrl::{self, CtrlContext, CtrlEffect, CtrlError};
use super::pass::{self, Faults, Negotiated, Pass, Step};
use super::status::Counters;

/// The longest command accepted (a MAC table of ~10000 addresses).
pub const MAX_COMMAND_LEN: usize = 65536;

/// One answered command, for the device to act on and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The class and command, named.
    pub what: String,
    /// What it did, or why it was refused.
    pub result: Result<CtrlEffect, CtrlError>,
}

/// Buffers reused by every control pass.
#[derive(Debug)]
pub struct CtrlScratch {
    chain: ChainBuf,
    buf: Vec<u8>,
}

impl Default for CtrlScratch {
    fn default() -> Self {
        Self {
            chain: ChainBuf::new(),
            buf: vec![0; MAX_COMMAND_LEN],
        }
    }
}

/// Answers the commands available on control queue `qidx`, up to
/// [`pass::BUDGET`] of them (see [`pass::drain`]).
#[allow(clippy::too_many_arguments)]
pub fn process_ctrl(
    q: &mut Queue,
    qidx: u16,
    mem: &GuestMemoryMmap,
    neg: &Negotiated,
    ctx: &mut CtrlContext<'_>,
    s: &mut CtrlScratch,
    counters: &mut Counters,
    faults: &mut Faults,
    answered: &mut Vec<Answered>,
) -> Result<Pass, RingError> {
    pass::drain(q, mem, qidx, neg, pass::BUDGET, |q| {
        let Some(c) = chain::pop(q, mem, qidx)? else {
            return Ok(Step::RingEmpty {
                seen: q.next_avail(),
            });
        };
        chain::walk(c, mem, &mut s.chain)?;
        let head = s.chain.head;
        if s.chain.writable_len == 0 {
            counters.guest_faults += 1;
            faults.push(GuestFault::CtrlNoAck);
            chain::add_used(q, mem, qidx, head, 0)?;
            return Ok(Step::Did { used: 1 });
        }
        let len = s.chain.readable_len;
        let (what, result) = if len > MAX_COMMAND_LEN as u64 {
            counters.guest_faults += 1;
            faults.push(GuestFault::CtrlTooLong(len));
            ("?".to_string(), Err(CtrlError::TooLong(len)))
        } else {
            let cmd = &mut s.buf[..len as usize];
            match chain::read_into(mem, &s.chain.readable, cmd) {
                Ok(()) => {
                    let what = match cmd {
                        [class, c, ..] => ctrl::describe(*class, *c),
                        _ => "?".to_string(),
                    };
                    (what, ctrl::handle(cmd, ctx))
                }
                Err(e) => {
                    log::error!("control command became unreadable: {e}");
                    ("?".to_string(), Err(CtrlError::Unreadable))
                }
            }
        };
        let ack = if result.is_ok() {
            VIRTIO_NET_OK
        } else {
            counters.ctrl_errors += 1;
            VIRTIO_NET_ERR
        } as u8;
        counters.ctrl_commands += 1;
        let written = chain::write_at(mem, &s.chain.writable, 0, &[ack]).unwrap_or(0);
        chain::add_used(q, mem, qidx, head, written as u32)?;
        answered.push(Answered { what, result });
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
    use crate::net::GuestOffloads;
    use crate::virtio::net::config_space::ConfigFields;
    use crate::virtio::net::features::default_mask;
    use crate::virtio::net::rx_filter::RxFilter;
    use crate::virtio::net::test_util;

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Queues one command per entry (header desc, data desc, ack desc) and
    /// runs a pass; returns the acks and answers.
    fn run(commands: &[&[u8]]) -> (Vec<u8>, Vec<Answered>, RxFilter, Faults) {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 64);
        let mut descs = Vec::new();
        for (i, cmd) in commands.iter().enumerate() {
            let base = 0x1_0000 + i as u64 * 0x1000;
            m.write_slice(cmd, GuestAddress(base)).unwrap();
            let first = (descs.len() + 1) as u16;
            let hdr_len = cmd.len().min(2) as u32;
            descs.push(RawDescriptor::from(Descriptor::new(
                base, hdr_len, NEXT, first,
            )));
            descs.push(RawDescriptor::from(Descriptor::new(
                base + 2,
                (cmd.len() as u32).saturating_sub(2),
                NEXT,
                first + 1,
            )));
            m.write_obj(0xaau8, GuestAddress(base + 0x800)).unwrap();
            descs.push(RawDescriptor::from(Descriptor::new(base + 0x800, 1, W, 0)));
        }
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q = test_util::queue(&vq);
        let mut filter = RxFilter::default();
        let mut fields = ConfigFields {
            mac: [0x52, 0x54, 0, 0, 0, 1],
            link_up: true,
            announce: true,
            max_pairs: 1,
            mtu: 1500,
        };
        let (mut pairs, mut offloads) = (1, GuestOffloads::default());
        let mut ctx = CtrlContext {
            acked: default_mask(),
            max_pairs: 1,
            filter: &mut filter,
            fields: &mut fields,
            vq_pairs: &mut pairs,
            guest_offloads: &mut offloads,
        };
        let mut counters = Counters::default();
        let mut faults = Faults::default();
        let mut answered = Vec::new();
        let pass = process_ctrl(
            &mut q,
            2,
            &m,
            &Negotiated::new(default_mask()),
            &mut ctx,
            &mut CtrlScratch::default(),
            &mut counters,
            &mut faults,
            &mut answered,
        )
        .unwrap();
        assert_eq!(pass.used as usize, commands.len());
        let used = test_util::used(&m, &vq);
        assert_eq!(used.len(), commands.len());
        assert_eq!(counters.ctrl_commands as usize, commands.len());
        let acks = (0..commands.len())
            .map(|i| {
                assert_eq!(used[i].1, 1, "the ack byte is the used length");
                m.read_obj::<u8>(GuestAddress(0x1_0800 + i as u64 * 0x1000))
                    .unwrap()
            })
            .collect();
        (acks, answered, filter, faults)
    }

    #[test]
    fn every_command_gets_an_ack() {
        let (acks, answered, filter, _) = run(&[
            &[0, 0, 0],       // promisc off
            &[0, 1, 1],       // allmulti on
            &[3, 0],          // announce ack
            &[42, 0, 1, 2],   // unknown class
            &[4, 0, 1, 0],    // mq pairs: mq not negotiated
            &[0, 0, 1, 2, 3], // promisc with extra bytes
        ]);
        let ok = VIRTIO_NET_OK as u8;
        let err = VIRTIO_NET_ERR as u8;
        assert_eq!(acks, vec![ok, ok, ok, err, err, err]);
        assert!(!filter.promisc && filter.allmulti);
        assert_eq!(answered[2].result, Ok(CtrlEffect::AnnounceAcked));
        assert!(answered[0].what.starts_with("rx.promisc"));
        assert_eq!(answered[3].result, Err(CtrlError::UnknownClass(42)));
    }

    #[test]
    fn a_pass_answers_at_most_its_budget() {
        let n = pass::BUDGET as usize + 44;
        let m = mem();
        let vq = MockSplitQueue::new(&m, 1024);
        m.write_slice(&[3, 0], GuestAddress(0x1_0000)).unwrap();
        let descs: Vec<RawDescriptor> = (0..n)
            .flat_map(|i| {
                let ack = 0x2_0000 + i as u64;
                [
                    RawDescriptor::from(Descriptor::new(0x1_0000, 2, NEXT, 2 * i as u16 + 1)),
                    RawDescriptor::from(Descriptor::new(ack, 1, W, 0)),
                ]
            })
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        // test_util's used ring would overlap a table this large.
        let mut q: Queue = vq.create_queue().unwrap();
        q.try_set_used_ring_address(GuestAddress(0x8_0000)).unwrap();
        let (mut filter, mut pairs, mut offloads) =
            (RxFilter::default(), 1, GuestOffloads::default());
        let mut fields = ConfigFields {
            mac: [0; 6],
            link_up: true,
            announce: true,
            max_pairs: 1,
            mtu: 0,
        };
        let mut ctx = CtrlContext {
            acked: default_mask(),
            max_pairs: 1,
            filter: &mut filter,
            fields: &mut fields,
            vq_pairs: &mut pairs,
            guest_offloads: &mut offloads,
        };
        let mut scratch = CtrlScratch::default();
        let mut counters = Counters::default();
        let mut pass = |q: &mut Queue| {
            process_ctrl(
                q,
                2,
                &m,
                &Negotiated::new(default_mask()),
                &mut ctx,
                &mut scratch,
                &mut counters,
                &mut Faults::default(),
                &mut Vec::new(),
            )
            .unwrap()
        };
        let first = pass(&mut q);
        assert_eq!((first.used, first.more), (pass::BUDGET, true));
        let second = pass(&mut q);
        assert_eq!((second.used, second.more), (44, false));
    }

    #[test]
    fn a_command_without_ack_byte_is_returned_anyway() {
        let m = mem();
        let vq = MockSplitQueue::new(&m, 16);
        m.write_slice(&[0, 0, 1], GuestAddress(0x1_0000)).unwrap();
        vq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(0x1_0000, 3, 0, 0))],
            0,
        )
        .unwrap();
        let mut q = test_util::queue(&vq);
        let (mut filter, mut pairs, mut offloads) =
            (RxFilter::default(), 1, GuestOffloads::default());
        let mut fields = ConfigFields {
            mac: [0; 6],
            link_up: true,
            announce: false,
            max_pairs: 1,
            mtu: 0,
        };
        let mut ctx = CtrlContext {
            acked: default_mask(),
            max_pairs: 1,
            filter: &mut filter,
            fields: &mut fields,
            vq_pairs: &mut pairs,
            guest_offloads: &mut offloads,
        };
        let mut faults = Faults::default();
        let pass = process_ctrl(
            &mut q,
            2,
            &m,
            &Negotiated::new(default_mask()),
            &mut ctx,
            &mut CtrlScratch::default(),
            &mut Counters::default(),
            &mut faults,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(pass.used, 1);
        assert_eq!(faults.kept, vec![GuestFault::CtrlNoAck]);
        assert!(filter.promisc, "the command was not applied");
    }
}
