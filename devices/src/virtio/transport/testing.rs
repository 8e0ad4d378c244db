//! A dummy virtio device for the transports' register tests: it offers
//! configurable features and queues, has a small configuration space and
//! records every call the transport makes.

use std::sync::{Arc, Mutex};

use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::virtio::{ActivateContext, ActivateError, VirtioDevice, VirtioInterruptType};

/// Device type the dummy reports (virtio-net).
pub const DUMMY_TYPE: u32 = virtio_bindings::virtio_ids::VIRTIO_ID_NET;

/// What the dummy saw of one activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// (index, size, desc, avail, used, event_idx) of each queue.
    pub queues: Vec<(u16, u16, u64, u64, u64, bool)>,
    /// Number of notification eventfds received.
    pub evts: usize,
}

/// A device that records what the transport does to it.
pub struct Dummy {
    pub offered: u64,
    pub max_sizes: Vec<u16>,
    pub config: Vec<u8>,
    pub generation: u32,
    pub fail_activation: bool,
    pub needs_reset: bool,
    pub acked: Option<u64>,
    /// The feature sets of refused FEATURES_OK writes.
    pub refused: Vec<u64>,
    pub activations: Vec<Activation>,
    pub resets: usize,
    pub transitions: Vec<(u8, u8)>,
    pub config_writes: Vec<(u64, Vec<u8>)>,
    /// The context of the last activation, to raise interrupts and read
    /// the notification eventfds the way a real device would.
    pub ctx: Option<ActivateContext>,
}

impl Dummy {
    /// A device with the given offer and queue sizes.
    pub fn new(offered: u64, max_sizes: &[u16]) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            offered,
            max_sizes: max_sizes.to_vec(),
            config: (0u8..16).map(|b| 0xa0 + b).collect(),
            generation: 0,
            fail_activation: false,
            needs_reset: false,
            acked: None,
            refused: Vec::new(),
            activations: Vec::new(),
            resets: 0,
            transitions: Vec::new(),
            config_writes: Vec::new(),
            ctx: None,
        }))
    }

    /// Raises an interrupt through the transport handed over at activation.
    pub fn trigger(&self, kind: VirtioInterruptType) {
        self.ctx
            .as_ref()
            .expect("the device is not activated")
            .interrupt
            .trigger(kind)
            .unwrap();
    }
}

impl VirtioDevice for Dummy {
    fn device_type(&self) -> u32 {
        DUMMY_TYPE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn offered_features(&self) -> u64 {
        self.offered
    }

    fn set_acked_features(&mut self, acked: u64) {
        self.acked = Some(acked);
    }

    fn features_refused(&mut self, acked: u64) {
        self.refused.push(acked);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.config_writes.push((offset, data.to_vec()));
    }

    fn config_generation(&self) -> u32 {
        self.generation
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if self.fail_activation {
            return Err(ActivateError::Other("the dummy refuses to start".into()));
        }
        self.activations.push(Activation {
            queues: ctx
                .queues
                .iter()
                .map(|(i, q)| {
                    (
                        *i,
                        q.size(),
                        q.desc_table(),
                        q.avail_ring(),
                        q.used_ring(),
                        q.event_idx_enabled(),
                    )
                })
                .collect(),
            evts: ctx.queue_evts.len(),
        });
        self.ctx = Some(ctx);
        Ok(())
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.acked = None;
        self.ctx = None;
        self.needs_reset = false;
    }

    fn needs_reset(&self) -> bool {
        self.needs_reset
    }

    fn status_changed(&mut self, old: u8, new: u8) {
        self.transitions.push((old, new));
    }
}

/// 64 KiB of guest memory at address 0.
pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap()
}

/// Ring addresses inside [`guest_memory`] for queue `i`.
pub fn ring_addrs(i: u16) -> (u64, u64, u64) {
    let base = 0x1000 + u64::from(i) * 0x3000;
    (base, base + 0x1000, base + 0x2000)
}
