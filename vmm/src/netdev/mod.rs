//! The VM's virtio-net devices: where each one goes (virtio-mmio window or
//! PCI slot, interrupt line), and wiring it up: the device on its
//! transport, the transport on the buses, interrupts through irqfds and
//! KVM_SIGNAL_MSI, queue notifications through ioeventfds, and the
//! device's queue processing in the event loop.
//!
//! Placement is decided from the configuration alone (`plan`), before KVM is
//! opened, because it feeds the kernel command line (`virtio_mmio.device=`)
//! and the MP table (PCI interrupt routing); `kvm` holds the KVM glue.

mod kvm;
mod plan;

pub use plan::{Placement, Plan, Slot, DEVICE_GSIS, FIRST_PCI_SLOT};

use kvm::{register_notifiers, KvmMsi, NotifyMover};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use devices::event_log::EventLog;
use devices::net::memory::MemoryPeer;
use devices::pci::{MsiSender, PciConfigIo, PciMmioWindow, PciRoot};
use devices::virtio::mmio::{MmioTransport, MMIO_DEVICE_SIZE};
use devices::virtio::net::{NetConfig, NetControl, NetDevice};
use devices::virtio::pci::{VirtioPciDevice, VirtioPciPlacement};
use devices::virtio::VirtioDevice;
use devices::Bus;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use crate::layout::{PCI_MMIO_SIZE, PCI_MMIO_START};
use crate::machine::Subscriber;

/// The PCI configuration-mechanism #1 ports.
const PCI_CONFIG_PORT: u64 = 0xcf8;
const PCI_CONFIG_PORT_LEN: u64 = 8;

/// Errors from placing or wiring the devices.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More devices than interrupt lines.
    #[error("the VM has {0} network devices; at most {max} are supported", max = DEVICE_GSIS.len())]
    TooMany(usize),
    /// Two devices with the same name.
    #[error("two network devices are named `{0}`; give each a distinct id=")]
    DuplicateId(String),
    /// The device could not be created (e.g. its TAP could not be opened).
    #[error("cannot create the network device {0}")]
    Device(String, #[source] devices::virtio::net::NetError),
    /// A transport could not be created.
    #[error("cannot create the {1} transport of {0}: {2}")]
    Transport(String, &'static str, String),
    /// A bus registration failed.
    #[error("cannot place {0} on its bus")]
    Bus(String, #[source] devices::BusError),
    /// A KVM interrupt or ioeventfd registration failed.
    #[error("cannot wire {0}: {1}")]
    Kvm(String, &'static str, #[source] kvm_ioctls::Error),
    /// An eventfd could not be cloned.
    #[error("cannot set up the queue notifications of {0}")]
    Notifiers(String, #[source] std::io::Error),
}

/// What a wired device leaves to the rest of the VMM.
pub struct Attached {
    /// Control handles, for the control socket and status.
    pub controls: Vec<NetControl>,
    /// The other end of each `backend=memory` device, by device name.
    pub memory_peers: Vec<(String, MemoryPeer)>,
    /// Event-loop subscribers: each device's queue processing.
    pub subscribers: Vec<Subscriber>,
}

/// Creates the devices of `plan` from `nets`, puts them on their
/// transports and buses, and wires their interrupts and notifications.
#[allow(clippy::too_many_arguments)]
pub fn attach(
    plan: &Plan,
    nets: &[NetConfig],
    log: &EventLog,
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<Attached, Error> {
    let mut attached = Attached {
        controls: Vec::new(),
        memory_peers: Vec::new(),
        subscribers: Vec::new(),
    };
    let mut pci_root = if plan.has_pci() {
        Some(
            PciRoot::new(PCI_MMIO_START, PCI_MMIO_SIZE)
                .map_err(|e| Error::Transport("pci".into(), "PCI root", e.to_string()))?,
        )
    } else {
        None
    };
    let mut mover = NotifyMover {
        vm: vm.clone(),
        queues: HashMap::new(),
    };
    for (index, (place, net)) in plan.devices.iter().zip(nets).enumerate() {
        let id = place.id.clone();
        let mut cfg = net.clone();
        cfg.id = Some(id.clone());
        if cfg.mac == NetConfig::default().mac {
            // Devices without mac= get distinct addresses: the default
            // plus their index.
            cfg.mac.0[5] = cfg.mac.0[5].wrapping_add(index as u8);
        }
        let (device, peer) =
            NetDevice::from_config(cfg, log.clone()).map_err(|e| Error::Device(id.clone(), e))?;
        if let Some(peer) = peer {
            attached.memory_peers.push((id.clone(), peer));
        }
        attached.controls.push(device.control());
        attached
            .subscribers
            .push(Arc::new(Mutex::new(device.event_handler())));
        let device: Arc<Mutex<dyn VirtioDevice>> = Arc::new(Mutex::new(device));
        let kvm = |what, e| Error::Kvm(id.clone(), what, e);
        match place.slot {
            Slot::Mmio { base } => {
                let transport = MmioTransport::new(&id, device, mem.clone())
                    .map_err(|e| Error::Transport(id.clone(), "virtio-mmio", e.to_string()))?;
                vm.register_irqfd(transport.interrupt_evt(), place.gsi)
                    .map_err(|e| kvm("the virtio-mmio interrupt", e))?;
                let notifiers = transport
                    .notifiers(base)
                    .map_err(|e| Error::Notifiers(id.clone(), e))?;
                register_notifiers(vm, &id, &notifiers)?;
                mmio.insert(Arc::new(Mutex::new(transport)), base, MMIO_DEVICE_SIZE)
                    .map_err(|e| Error::Bus(id.clone(), e))?;
                log::info!("{id}: virtio-mmio at {base:#x}, IRQ {}", place.gsi);
            }
            Slot::Pci { slot, bar } => {
                let placement = VirtioPciPlacement {
                    bar_addr: bar,
                    interrupt_line: place.gsi as u8,
                    memory_enabled: true,
                };
                let msi: Arc<dyn MsiSender> = Arc::new(KvmMsi(vm.clone()));
                let function = VirtioPciDevice::new(&id, device, mem.clone(), msi, placement)
                    .map_err(|e| Error::Transport(id.clone(), "virtio-pci", e.to_string()))?;
                vm.register_irqfd(function.intx_evt(), place.gsi)
                    .map_err(|e| kvm("the PCI INTx interrupt", e))?;
                let notifiers = function
                    .notifiers()
                    .map_err(|e| Error::Notifiers(id.clone(), e))?;
                register_notifiers(vm, &id, &notifiers)?;
                let mut queues = Vec::new();
                for n in notifiers {
                    queues.push((n.queue, n.evt));
                }
                mover.queues.insert(slot, queues);
                if let Some(root) = pci_root.as_mut() {
                    root.add_device(slot, Box::new(function))
                        .map_err(|e| Error::Transport(id.clone(), "PCI slot", e.to_string()))?;
                }
                log::info!(
                    "{id}: virtio-pci at 00:{slot:02x}.0, BAR {bar:#x}, INTx on IRQ {}",
                    place.gsi
                );
            }
        }
    }
    if let Some(mut root) = pci_root {
        root.set_bar_observer(Box::new(mover));
        let root = Arc::new(Mutex::new(root));
        pio.insert(
            Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
            PCI_CONFIG_PORT,
            PCI_CONFIG_PORT_LEN,
        )
        .map_err(|e| Error::Bus("the PCI configuration ports".into(), e))?;
        mmio.insert(
            Arc::new(Mutex::new(PciMmioWindow::new(root))),
            PCI_MMIO_START,
            PCI_MMIO_SIZE,
        )
        .map_err(|e| Error::Bus("the PCI MMIO window".into(), e))?;
    }
    Ok(attached)
}
