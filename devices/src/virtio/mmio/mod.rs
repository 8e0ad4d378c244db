//! The virtio-mmio transport, version 2 (virtio 1.2 section 4.2): a 4 KiB
//! register file on the MMIO bus, one interrupt line signalled through an
//! eventfd (the VMM binds it to a GSI with an irqfd), and a kernel
//! command-line fragment that tells Linux where the device is.

mod interrupt;
#[cfg(test)]
mod tests;

pub use interrupt::MmioInterrupt;

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_mmio::*;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::transport::{
    AddrPart, QueueNotifier, RingArea, StatusWrite, TransportError, TransportState,
};
use super::{VirtioDevice, VirtioInterrupt};
use crate::bus::BusDevice;
use crate::ratelimit::limited;

/// "virt" in little endian, the value of the MagicValue register.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// The register layout version this transport implements (non-legacy).
pub const MMIO_VERSION: u32 = 2;
/// The VendorID register: the virtio PCI vendor ID, as QEMU and the spec's
/// examples use for "no particular vendor".
pub const MMIO_VENDOR_ID: u32 = 0x1af4;
/// The size of the MMIO region of one device: registers and configuration
/// space fit in one page.
pub const MMIO_DEVICE_SIZE: u64 = 0x1000;
/// The most queues a virtio-mmio device may have here.
pub const MMIO_MAX_QUEUES: usize = 1024;

/// Why a virtio-mmio transport could not be created.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device or its queues are unusable.
    #[error("cannot set up the virtio-mmio transport")]
    Transport(#[from] TransportError),
    /// The interrupt eventfd could not be created.
    #[error("cannot create the virtio-mmio interrupt eventfd")]
    InterruptEventFd(#[source] std::io::Error),
}

/// A `Result` with an [`MmioError`].
pub type Result<T> = std::result::Result<T, MmioError>;

/// The kernel command-line fragment that declares a virtio-mmio device to
/// Linux (`CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`), e.g.
/// `virtio_mmio.device=4K@0xd0000000:5`.
pub fn mmio_cmdline(base: u64, size: u64, irq: u32) -> String {
    const MIB: u64 = 1 << 20;
    let size = if size != 0 && size % MIB == 0 {
        format!("{}M", size / MIB)
    } else if size != 0 && size % 1024 == 0 {
        format!("{}K", size / 1024)
    } else {
        format!("{size:#x}")
    };
    format!("virtio_mmio.device={size}@{base:#x}:{irq}")
}

/// A virtio device behind the virtio-mmio register file.
///
/// To install it the VMM:
/// 1. registers it on the MMIO bus at `base` for [`MMIO_DEVICE_SIZE`]
///    bytes;
/// 2. binds [`interrupt_evt`](Self::interrupt_evt) to the device's GSI with
///    an irqfd, and adds [`mmio_cmdline`] for `base` and that GSI to the
///    kernel command line;
/// 3. optionally registers [`notifiers`](Self::notifiers) as ioeventfds.
pub struct MmioTransport {
    state: TransportState,
    interrupt: Arc<MmioInterrupt>,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("state", &self.state)
            .field("interrupt_status", &self.interrupt.status())
            .finish()
    }
}

impl MmioTransport {
    /// A transport for `device` in guest memory `mem`; `name` identifies it
    /// in logs (e.g. `net0`).
    pub fn new(
        name: &str,
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
    ) -> Result<Self> {
        let label = format!("virtio-mmio {name}");
        let interrupt =
            Arc::new(MmioInterrupt::new(label.clone()).map_err(MmioError::InterruptEventFd)?);
        let state = TransportState::new(
            label,
            device,
            mem,
            interrupt.clone() as Arc<dyn VirtioInterrupt>,
            MMIO_MAX_QUEUES,
        )?;
        Ok(Self { state, interrupt })
    }

    /// The eventfd written on every interrupt; bind it to the device's GSI
    /// with an irqfd.
    pub fn interrupt_evt(&self) -> &EventFd {
        self.interrupt.evt()
    }

    /// The interrupt state, shared with the device.
    pub fn interrupt(&self) -> &Arc<MmioInterrupt> {
        &self.interrupt
    }

    /// One notifier per queue, for a device registered at `base`: address
    /// `base + QueueNotify`, datamatch the queue index (4-byte writes).
    pub fn notifiers(&self, base: u64) -> std::io::Result<Vec<QueueNotifier>> {
        self.state.notifiers(|queue| {
            (
                base + u64::from(VIRTIO_MMIO_QUEUE_NOTIFY),
                Some(u32::from(queue)),
            )
        })
    }

    /// The driver-facing state (status, features, queues).
    pub fn state(&self) -> &TransportState {
        &self.state
    }

    fn read_register(&self, offset: u32) -> u32 {
        let state = &self.state;
        let queue = state.selected_queue();
        match offset {
            VIRTIO_MMIO_MAGIC_VALUE => MMIO_MAGIC,
            VIRTIO_MMIO_VERSION => MMIO_VERSION,
            VIRTIO_MMIO_DEVICE_ID => state.device().device_type(),
            VIRTIO_MMIO_VENDOR_ID => MMIO_VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => state.device_features(),
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => state.device_features_select(),
            VIRTIO_MMIO_DRIVER_FEATURES => state.driver_features_page(),
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => state.driver_features_select(),
            VIRTIO_MMIO_QUEUE_SEL => state.queue_select(),
            // 0 tells the driver that the queue does not exist.
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            VIRTIO_MMIO_QUEUE_NUM => queue.map_or(0, |q| u32::from(q.size())),
            VIRTIO_MMIO_QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS => u32::from(state.status()),
            VIRTIO_MMIO_QUEUE_DESC_LOW => queue.map_or(0, |q| q.addr(RingArea::Desc) as u32),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => {
                queue.map_or(0, |q| (q.addr(RingArea::Desc) >> 32) as u32)
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.map_or(0, |q| q.addr(RingArea::Avail) as u32),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => {
                queue.map_or(0, |q| (q.addr(RingArea::Avail) >> 32) as u32)
            }
            VIRTIO_MMIO_QUEUE_USED_LOW => queue.map_or(0, |q| q.addr(RingArea::Used) as u32),
            VIRTIO_MMIO_QUEUE_USED_HIGH => {
                queue.map_or(0, |q| (q.addr(RingArea::Used) >> 32) as u32)
            }
            // No shared memory regions: a length of -1 says the selected
            // region does not exist.
            VIRTIO_MMIO_SHM_LEN_LOW
            | VIRTIO_MMIO_SHM_LEN_HIGH
            | VIRTIO_MMIO_SHM_BASE_LOW
            | VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            VIRTIO_MMIO_CONFIG_GENERATION => state.config_generation(),
            _ => {
                limited!(
                    state.limiter(),
                    "bad_register",
                    log::Level::Warn,
                    "{}: read of unknown or write-only register {offset:#x}; returning 0",
                    state.label()
                );
                0
            }
        }
    }

    fn write_register(&mut self, offset: u32, v: u32) {
        use AddrPart::{High, Low};
        use RingArea::{Avail, Desc, Used};
        let state = &mut self.state;
        match offset {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => state.set_device_features_select(v),
            VIRTIO_MMIO_DRIVER_FEATURES => state.write_driver_features(v),
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => state.set_driver_features_select(v),
            VIRTIO_MMIO_QUEUE_SEL => state.set_queue_select(v),
            VIRTIO_MMIO_QUEUE_NUM => state.write_queue_size(v),
            VIRTIO_MMIO_QUEUE_READY => state.write_queue_ready(v != 0),
            // The low 16 bits are the queue index, also with
            // VIRTIO_F_NOTIFICATION_DATA.
            VIRTIO_MMIO_QUEUE_NOTIFY => state.notify(v & 0xffff),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            VIRTIO_MMIO_STATUS => self.write_status(v),
            VIRTIO_MMIO_QUEUE_DESC_LOW => state.write_queue_addr(Desc, Low, v.into()),
            VIRTIO_MMIO_QUEUE_DESC_HIGH => state.write_queue_addr(Desc, High, v.into()),
            VIRTIO_MMIO_QUEUE_AVAIL_LOW => state.write_queue_addr(Avail, Low, v.into()),
            VIRTIO_MMIO_QUEUE_AVAIL_HIGH => state.write_queue_addr(Avail, High, v.into()),
            VIRTIO_MMIO_QUEUE_USED_LOW => state.write_queue_addr(Used, Low, v.into()),
            VIRTIO_MMIO_QUEUE_USED_HIGH => state.write_queue_addr(Used, High, v.into()),
            // No shared memory regions to select.
            VIRTIO_MMIO_SHM_SEL => {}
            VIRTIO_MMIO_GUEST_PAGE_SIZE | VIRTIO_MMIO_QUEUE_ALIGN | VIRTIO_MMIO_QUEUE_PFN => {
                limited!(
                    state.limiter(),
                    "bad_register",
                    log::Level::Warn,
                    "{}: write of legacy (version 1) register {offset:#x} on a version 2 device; ignored",
                    state.label()
                )
            }
            _ => {
                limited!(
                    state.limiter(),
                    "bad_register",
                    log::Level::Warn,
                    "{}: write of unknown or read-only register {offset:#x} (value {v:#x}); ignored",
                    state.label()
                )
            }
        }
    }

    fn write_status(&mut self, v: u32) {
        let Ok(v) = u8::try_from(v) else {
            limited!(
                self.state.limiter(),
                "bad_register",
                log::Level::Warn,
                "{}: status {v:#x} does not fit the 8-bit device status; ignored",
                self.state.label()
            );
            return;
        };
        if self.state.write_status(v) == StatusWrite::Reset {
            self.interrupt.reset();
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let config = u64::from(VIRTIO_MMIO_CONFIG);
        if offset >= config {
            self.state.read_config(offset - config, data);
            return;
        }
        data.fill(0);
        // The registers are 32 bits wide and must be accessed as such.
        if data.len() != 4 || offset % 4 != 0 {
            limited!(
                self.state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{}: {}-byte read at register offset {offset:#x}; registers are read as aligned 32-bit words",
                self.state.label(),
                data.len()
            );
            return;
        }
        // `offset` is below the configuration space, so it fits in u32.
        let v = self.read_register(offset as u32);
        data.copy_from_slice(&v.to_le_bytes());
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let config = u64::from(VIRTIO_MMIO_CONFIG);
        if offset >= config {
            self.state.write_config(offset - config, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            limited!(
                self.state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{}: {}-byte write at register offset {offset:#x}; ignored (registers are written as aligned 32-bit words)",
                self.state.label(),
                data.len()
            );
            return;
        };
        if offset % 4 != 0 {
            limited!(
                self.state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{}: unaligned write at register offset {offset:#x}; ignored",
                self.state.label()
            );
            return;
        }
        self.write_register(offset as u32, u32::from_le_bytes(bytes));
    }
}
