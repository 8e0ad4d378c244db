//! The modern virtio-pci transport (virtio 1.2 section 4.1): a PCI function
//! with the virtio vendor capabilities, one 64-bit memory BAR holding the
//! common configuration, ISR, device configuration, notification area and
//! MSI-X table/PBA, and MSI-X interrupts with an INTx fallback.
//!
//! Wiring, in the VMM:
//!
//! ```text
//! let dev = VirtioPciDevice::new("net0", net.clone(), mem.clone(), msi_sender,
//!     VirtioPciPlacement { bar_addr: WINDOW_BASE, interrupt_line: gsi, memory_enabled: true })?;
//! vm.register_irqfd(dev.intx_evt(), gsi)?;            // INTx fallback
//! for n in dev.notifiers()? {                         // optional fast path
//!     vm.register_ioevent(&n.evt, IoEventAddress::Mmio(n.addr), NoDatamatch)?;
//! }
//! let mut root = PciRoot::new(WINDOW_BASE, WINDOW_SIZE)?;
//! root.add_device(3, Box::new(dev))?;                 // 00:03.0
//! let root = Arc::new(Mutex::new(root));
//! pio_bus.insert(Arc::new(Mutex::new(PciConfigIo::new(root.clone()))), 0xcf8, 8)?;
//! mmio_bus.insert(Arc::new(Mutex::new(PciMmioWindow::new(root))), WINDOW_BASE, WINDOW_SIZE)?;
//! ```

mod common_cfg;
mod interrupt;
pub mod layout;
#[cfg(test)]
mod tests;

pub use interrupt::{VirtioPciInterrupt, ISR_CONFIG, ISR_QUEUE};
pub use layout::{BAR_INDEX, BAR_SIZE};

use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use self::layout::*;
use super::transport::{QueueNotifier, TransportError, TransportState};
use super::{VirtioDevice, VirtioInterrupt};
use crate::pci::regs::{COMMAND, COMMAND_INTX_DISABLE, COMMAND_MEMORY, STATUS, STATUS_INTERRUPT};
use crate::pci::{
    BarKind, BarRange, MsiSender, PciConfigError, PciConfigSpace, PciDevice, PciHeader,
};
use crate::ratelimit::limited;
use crate::sync::lock;

/// Why a virtio-pci function could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    /// The device or its queues are unusable.
    #[error("cannot set up the virtio-pci transport")]
    Transport(#[from] TransportError),
    /// The BAR or capabilities could not be laid out (a VMM mistake, such
    /// as a misaligned BAR address).
    #[error("cannot lay out the virtio-pci configuration space")]
    Config(#[from] PciConfigError),
    /// The INTx eventfd could not be created.
    #[error("cannot create the INTx eventfd")]
    IntxEventFd(#[source] std::io::Error),
    /// The device type does not fit a PCI device ID.
    #[error("virtio device type {0} has no virtio-pci device ID")]
    DeviceType(u32),
}

/// A `Result` with a [`VirtioPciError`].
pub type Result<T> = std::result::Result<T, VirtioPciError>;

/// Where the VMM puts a virtio-pci function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioPciPlacement {
    /// Initial guest-physical address of the BAR: inside the PCI MMIO
    /// window, aligned to [`BAR_SIZE`]. The guest may move it.
    pub bar_addr: u64,
    /// Initial interrupt line register: the IO-APIC pin (GSI) that the
    /// slot's INTA# is routed to in the MP table.
    pub interrupt_line: u8,
    /// Start with memory decoding enabled (command register bit 1), as
    /// firmware that assigned the BAR would leave it. Otherwise the BAR
    /// answers only once the guest sets the bit (Linux does in
    /// `pci_enable_device`; a bare-metal test guest must do it itself).
    pub memory_enabled: bool,
}

/// A virtio device behind the modern virtio-pci transport; add it to the
/// [`PciRoot`](crate::pci::PciRoot) at its slot.
///
/// The VMM also binds [`intx_evt`](Self::intx_evt) to the INTx GSI with an
/// irqfd, implements [`MsiSender`] for MSI-X, and may register
/// [`notifiers`](Self::notifiers) as ioeventfds.
pub struct VirtioPciDevice {
    state: TransportState,
    interrupt: Arc<VirtioPciInterrupt>,
    config: PciConfigSpace,
    caps: CapOffsets,
}

impl std::fmt::Debug for VirtioPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciDevice")
            .field("state", &self.state)
            .field("config", &self.config)
            .field("interrupt", &self.interrupt)
            .finish()
    }
}

impl VirtioPciDevice {
    /// A virtio-pci function for `device` in guest memory `mem`, sending
    /// MSI-X messages through `msi`; `name` identifies it in logs.
    pub fn new(
        name: &str,
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        msi: Arc<dyn MsiSender>,
        placement: VirtioPciPlacement,
    ) -> Result<Self> {
        let label = format!("virtio-pci {name}");
        let (device_type, num_queues) = {
            let d = lock(&device);
            (d.device_type(), d.queue_max_sizes().len())
        };
        let device_id = u16::try_from(device_type)
            .ok()
            .and_then(|t| VIRTIO_PCI_DEVICE_ID_BASE.checked_add(t))
            .filter(|&id| id <= 0x107f)
            .ok_or(VirtioPciError::DeviceType(device_type))?;
        if num_queues > MAX_QUEUES {
            return Err(TransportError::TooManyQueues(num_queues, MAX_QUEUES).into());
        }
        // A vector per queue plus one for configuration changes; more
        // queues than vectors make the driver share them.
        let num_vectors = u16::try_from(num_queues + 1)
            .unwrap_or(MAX_VECTORS)
            .min(MAX_VECTORS);

        let interrupt = Arc::new(
            VirtioPciInterrupt::new(label.clone(), num_queues, num_vectors, msi)
                .map_err(VirtioPciError::IntxEventFd)?,
        );
        let state = TransportState::new(
            label,
            device,
            mem,
            interrupt.clone() as Arc<dyn VirtioInterrupt>,
            MAX_QUEUES,
        )?;

        let (class_code, subclass) = class_of(device_type);
        let mut config = PciConfigSpace::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id,
            revision_id: VIRTIO_PCI_REVISION,
            class_code,
            subclass,
            prog_if: 0,
            subsystem_vendor_id: VIRTIO_PCI_SUBSYSTEM_VENDOR_ID,
            subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
            interrupt_pin: 1, // INTA#
            interrupt_line: placement.interrupt_line,
        });
        config.add_memory_bar(
            BAR_INDEX,
            placement.bar_addr,
            BAR_SIZE,
            BarKind::Memory64 {
                prefetchable: false,
            },
        )?;
        let caps = add_capabilities(&mut config, num_queues, num_vectors)?;
        if placement.memory_enabled {
            config.set_u16(COMMAND, COMMAND_MEMORY);
        }
        Ok(Self {
            state,
            interrupt,
            config,
            caps,
        })
    }

    /// The BAR's current guest-physical address.
    pub fn bar_addr(&self) -> u64 {
        self.config.bar_addr(BAR_INDEX).unwrap_or(0)
    }

    /// The eventfd written to raise INTx (while MSI-X is disabled); bind it
    /// with an irqfd to the GSI that the slot's INTA# is routed to.
    pub fn intx_evt(&self) -> &EventFd {
        self.interrupt.intx_evt()
    }

    /// The interrupt state, shared with the device.
    pub fn interrupt(&self) -> &Arc<VirtioPciInterrupt> {
        &self.interrupt
    }

    /// The driver-facing state (status, features, queues).
    pub fn state(&self) -> &TransportState {
        &self.state
    }

    /// The notification address of queue `queue` for a BAR at `bar_addr`.
    pub fn notify_addr(bar_addr: u64, queue: u16) -> u64 {
        bar_addr + NOTIFY_OFFSET + u64::from(queue) * u64::from(NOTIFY_OFF_MULTIPLIER)
    }

    /// One notifier per queue at the BAR's current address, without
    /// datamatch: each queue has its own address. If the guest moves the
    /// BAR, a [`BarObserver`](crate::pci::BarObserver) hears of it and the
    /// VMM moves them (see [`notify_addr`](Self::notify_addr)).
    pub fn notifiers(&self) -> std::io::Result<Vec<QueueNotifier>> {
        let bar = self.bar_addr();
        self.state
            .notifiers(|queue| (Self::notify_addr(bar, queue), None))
    }

    // The VIRTIO_PCI_CAP_PCI_CFG window: the BAR access its bar, offset and
    // length fields select, if they are valid.
    fn pci_cfg_target(&self) -> Option<(u64, usize)> {
        let cap = self.caps.pci_cfg;
        let bar = usize::from(self.config.read_u8(cap + CAP_BAR));
        let offset = u64::from(self.config.read_u32(cap + CAP_OFFSET));
        let len = self.config.read_u32(cap + CAP_LENGTH) as usize;
        let valid = bar == BAR_INDEX
            && matches!(len, 1 | 2 | 4)
            && offset % len as u64 == 0
            && offset + len as u64 <= BAR_SIZE;
        if !valid {
            limited!(
                self.state.limiter(),
                "pci_cfg_window",
                log::Level::Warn,
                "{}: PCI configuration access window used with bar {bar}, offset {offset:#x}, length {len}; ignored",
                self.state.label()
            );
        }
        valid.then_some((offset, len))
    }

    // `offset..offset + len` as a range within pci_cfg_data, if it is one.
    fn in_pci_cfg_data(&self, offset: usize, len: usize) -> Option<usize> {
        let start = self.caps.pci_cfg + CAP_PCI_CFG_DATA;
        (offset >= start && offset + len <= start + 4).then(|| offset - start)
    }

    fn sync_after_config_write(&mut self, offset: usize, len: usize) {
        let touches = |reg: usize, size: usize| offset < reg + size && reg < offset + len;
        if touches(COMMAND, 2) {
            let disabled = self.config.command() & COMMAND_INTX_DISABLE != 0;
            self.interrupt.set_intx_disabled(disabled);
        }
        let control = self.caps.msix + 2;
        if touches(control, 2) {
            let v = self.config.read_u16(control);
            self.interrupt.msix().set_control(v);
        }
    }

    fn read_bar_region(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some((region, rel)) = Region::of(offset, data.len()) else {
            log::debug!(
                "{}: {}-byte BAR read at {offset:#x} outside any structure; 0",
                self.state.label(),
                data.len()
            );
            return;
        };
        match region {
            Region::CommonCfg => common_cfg::read(&self.state, &self.interrupt, rel, data),
            // Reading the ISR clears it.
            Region::Isr if rel == 0 => {
                if let Some(b) = data.first_mut() {
                    *b = self.interrupt.read_isr();
                }
            }
            Region::Isr | Region::Notify => {}
            Region::DeviceCfg => self.state.read_config(rel, data),
            Region::MsixTable => self.interrupt.msix().read_table(rel, data),
            Region::MsixPba => self.interrupt.msix().read_pba(rel, data),
        }
    }

    fn write_bar_region(&mut self, offset: u64, data: &[u8]) {
        let label = self.state.label();
        match Region::of(offset, data.len()) {
            Some((Region::CommonCfg, rel)) => {
                common_cfg::write(&mut self.state, &self.interrupt, rel, data)
            }
            Some((Region::DeviceCfg, rel)) => self.state.write_config(rel, data),
            Some((Region::Notify, rel)) if rel % u64::from(NOTIFY_OFF_MULTIPLIER) == 0 => {
                // The address says which queue; the value written (the
                // index, or notification data) does not matter.
                let queue = rel / u64::from(NOTIFY_OFF_MULTIPLIER);
                self.state.notify(queue as u32);
            }
            Some((Region::MsixTable, rel)) => self.interrupt.msix().write_table(rel, data),
            Some((region, rel)) => limited!(
                self.state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{label}: {}-byte write at {rel:#x} of {region:?}, which takes no such write; ignored",
                data.len()
            ),
            None => limited!(
                self.state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{label}: {}-byte BAR write at {offset:#x} outside any structure; ignored",
                data.len()
            ),
        }
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        if let Some(rel) = self.in_pci_cfg_data(offset, data.len()) {
            let mut window = [0u8; 4];
            if let Some((bar_offset, len)) = self.pci_cfg_target() {
                self.read_bar_region(bar_offset, &mut window[..len]);
            }
            data.copy_from_slice(&window[rel..rel + data.len()]);
            return;
        }
        // The status register shows whether INTx is asserted.
        let status = self.config.read_u16(STATUS) & !STATUS_INTERRUPT;
        let pending = if self.interrupt.intx_asserted() {
            STATUS_INTERRUPT
        } else {
            0
        };
        self.config.set_u16(STATUS, status | pending);
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        if let Some(rel) = self.in_pci_cfg_data(offset, data.len()) {
            match self.pci_cfg_target() {
                Some((bar_offset, len)) if rel == 0 && data.len() >= len => {
                    self.write_bar_region(bar_offset, &data[..len]);
                }
                Some((_, len)) => limited!(
                    self.state.limiter(),
                    "pci_cfg_window",
                    log::Level::Warn,
                    "{}: {}-byte write at byte {rel} of the PCI configuration access window, which needs {len} bytes at byte 0; ignored",
                    self.state.label(),
                    data.len()
                ),
                None => {}
            }
            return;
        }
        self.config.write(offset, data);
        self.sync_after_config_write(offset, data.len());
    }

    fn bars(&self) -> Vec<BarRange> {
        self.config.bars()
    }

    fn memory_enabled(&self) -> bool {
        self.config.memory_enabled()
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == BAR_INDEX {
            self.read_bar_region(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == BAR_INDEX {
            self.write_bar_region(offset, data);
        }
    }
}
