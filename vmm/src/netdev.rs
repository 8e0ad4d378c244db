//! The VM's virtio-net devices: where each one goes (virtio-mmio window or
//! PCI slot, interrupt line), and wiring it up: the device on its
//! transport, the transport on the buses, interrupts through irqfds and
//! KVM_SIGNAL_MSI, queue notifications through ioeventfds, and the
//! device's queue processing in the event loop.
//!
//! Placement is decided from the configuration alone (`plan`), before KVM is
//! opened, because it feeds the kernel command line (`virtio_mmio.device=`)
//! and the MP table (PCI interrupt routing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use devices::event_log::EventLog;
use devices::net::memory::MemoryPeer;
use devices::pci::{BarObserver, MsiSender, PciConfigIo, PciMmioWindow, PciRoot};
use devices::virtio::mmio::{mmio_cmdline, MmioTransport, MMIO_DEVICE_SIZE};
use devices::virtio::net::{NetConfig, NetControl, NetDevice, Transport};
use devices::virtio::pci::{VirtioPciDevice, VirtioPciPlacement, BAR_SIZE};
use devices::virtio::transport::QueueNotifier;
use devices::virtio::VirtioDevice;
use devices::Bus;
use kvm_bindings::kvm_msi;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::layout::{PCI_MMIO_SIZE, PCI_MMIO_START, VIRTIO_MMIO_START, VIRTIO_MMIO_STRIDE};
use crate::machine::Subscriber;
use crate::x86_64::mptable::PciIrq;

/// Interrupt lines handed to devices, in order: the ISA IRQs no legacy
/// device of this VM uses (8, the RTC, and 13, the FPU, are left alone).
/// Lines below 16 work both through the IO-APIC and through the PIC, which
/// a stock kernel without MP-table or ACPI support uses.
pub const DEVICE_GSIS: [u32; 9] = [5, 6, 7, 9, 10, 11, 12, 14, 15];
/// The PCI slot of the first virtio-pci device (00:03.0, as in the cloud
/// instance the lab reproduces); the next ones follow.
pub const FIRST_PCI_SLOT: u8 = 3;
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

/// Where one device goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The device's name (`net0`, ... unless the user gave `id=`).
    pub id: String,
    /// Its interrupt line (GSI): virtio-mmio's interrupt, or the PCI
    /// function's INTx (used when the driver does not enable MSI-X).
    pub gsi: u32,
    /// The transport-specific place.
    pub slot: Slot,
}

/// The transport-specific place of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A virtio-mmio window at this guest-physical address.
    Mmio {
        /// Base of the register window.
        base: u64,
    },
    /// A PCI function on bus 0.
    Pci {
        /// Device number.
        slot: u8,
        /// Initial address of its BAR.
        bar: u64,
    },
}

/// The placement of every device, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One entry per device.
    pub devices: Vec<Placement>,
}

impl Plan {
    /// Places `nets`: names, interrupt lines, virtio-mmio windows and PCI
    /// slots, in order.
    pub fn new(nets: &[NetConfig]) -> Result<Self, Error> {
        if nets.len() > DEVICE_GSIS.len() {
            return Err(Error::TooMany(nets.len()));
        }
        let (mut mmio, mut pci) = (0u64, 0u8);
        let mut devices: Vec<Placement> = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let id = net.id.clone().unwrap_or_else(|| format!("net{i}"));
            if devices.iter().any(|d| d.id == id) {
                return Err(Error::DuplicateId(id));
            }
            let slot = match net.transport {
                Transport::Mmio => {
                    mmio += 1;
                    Slot::Mmio {
                        base: VIRTIO_MMIO_START + (mmio - 1) * VIRTIO_MMIO_STRIDE,
                    }
                }
                Transport::Pci => {
                    pci += 1;
                    Slot::Pci {
                        slot: FIRST_PCI_SLOT + pci - 1,
                        bar: PCI_MMIO_START + u64::from(pci - 1) * BAR_SIZE,
                    }
                }
            };
            devices.push(Placement {
                id,
                gsi: DEVICE_GSIS[i],
                slot,
            });
        }
        Ok(Self { devices })
    }

    /// What the kernel command line needs: a `virtio_mmio.device=` per
    /// virtio-mmio device.
    pub fn cmdline(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter_map(|d| match d.slot {
                Slot::Mmio { base } => Some(mmio_cmdline(base, MMIO_DEVICE_SIZE, d.gsi)),
                Slot::Pci { .. } => None,
            })
            .collect()
    }

    /// The PCI INTx routing for the MP table: INTA# of each function to its
    /// line.
    pub fn pci_irqs(&self) -> Vec<PciIrq> {
        self.devices
            .iter()
            .filter_map(|d| match d.slot {
                Slot::Pci { slot, .. } => Some(PciIrq {
                    slot,
                    pin: 0,
                    ioapic_pin: d.gsi as u8,
                }),
                Slot::Mmio { .. } => None,
            })
            .collect()
    }

    fn has_pci(&self) -> bool {
        self.devices
            .iter()
            .any(|d| matches!(d.slot, Slot::Pci { .. }))
    }
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

/// MSI delivery through KVM_SIGNAL_MSI.
struct KvmMsi(Arc<VmFd>);

impl MsiSender for KvmMsi {
    fn send(&self, address: u64, data: u32) -> std::io::Result<()> {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        self.0
            .signal_msi(msi)
            .map(drop)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

fn register_notifiers(vm: &VmFd, id: &str, notifiers: &[QueueNotifier]) -> Result<(), Error> {
    for n in notifiers {
        let addr = IoEventAddress::Mmio(n.addr);
        match n.datamatch {
            Some(v) => vm.register_ioevent(&n.evt, &addr, v),
            None => vm.register_ioevent(&n.evt, &addr, NoDatamatch),
        }
        .map_err(|e| Error::Kvm(id.to_owned(), "a queue ioeventfd", e))?;
    }
    Ok(())
}

/// Moves the ioeventfds of virtio-pci notification areas with their BAR.
struct NotifyMover {
    vm: Arc<VmFd>,
    /// Per PCI slot: (queue, eventfd).
    queues: HashMap<u8, Vec<(u16, EventFd)>>,
}

impl BarObserver for NotifyMover {
    fn bar_moved(&self, slot: u8, bar: usize, old: Option<u64>, new: Option<u64>) {
        if bar != devices::virtio::pci::BAR_INDEX {
            return;
        }
        let Some(queues) = self.queues.get(&slot) else {
            return;
        };
        for (q, evt) in queues {
            if let Some(old) = old {
                let addr = IoEventAddress::Mmio(VirtioPciDevice::notify_addr(old, *q));
                if let Err(e) = self.vm.unregister_ioevent(evt, &addr, NoDatamatch) {
                    log::warn!(
                        "slot {slot} queue {q}: cannot remove the ioeventfd at {old:#x}: {e}"
                    );
                }
            }
            if let Some(new) = new {
                let addr = IoEventAddress::Mmio(VirtioPciDevice::notify_addr(new, *q));
                if let Err(e) = self.vm.register_ioevent(evt, &addr, NoDatamatch) {
                    // The transport still sees the write through the bus and
                    // notifies the queue itself, only slower.
                    log::warn!("slot {slot} queue {q}: no ioeventfd at {new:#x}: {e}");
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(spec: &str) -> NetConfig {
        NetConfig::parse(spec).unwrap()
    }

    #[test]
    fn places_devices_in_order() {
        let plan = Plan::new(&[
            net("transport=pci"),
            net("transport=mmio"),
            net("transport=mmio,id=uplink"),
            net("transport=pci"),
        ])
        .unwrap();
        let d = &plan.devices;
        assert_eq!(d[0].id, "net0");
        assert_eq!(
            d[0].slot,
            Slot::Pci {
                slot: 3,
                bar: 0xc000_0000
            }
        );
        assert_eq!(d[1].slot, Slot::Mmio { base: 0xd000_0000 });
        assert_eq!(d[2].id, "uplink");
        assert_eq!(d[2].slot, Slot::Mmio { base: 0xd000_1000 });
        assert_eq!(
            d[3].slot,
            Slot::Pci {
                slot: 4,
                bar: 0xc000_8000
            }
        );
        assert_eq!(
            d.iter().map(|p| p.gsi).collect::<Vec<_>>(),
            vec![5, 6, 7, 9]
        );
        assert_eq!(
            plan.cmdline(),
            vec![
                "virtio_mmio.device=4K@0xd0000000:6",
                "virtio_mmio.device=4K@0xd0001000:7"
            ]
        );
        assert_eq!(
            plan.pci_irqs(),
            vec![
                PciIrq {
                    slot: 3,
                    pin: 0,
                    ioapic_pin: 5
                },
                PciIrq {
                    slot: 4,
                    pin: 0,
                    ioapic_pin: 9
                }
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_be_placed() {
        let many = vec![net("transport=mmio"); DEVICE_GSIS.len() + 1];
        assert!(matches!(Plan::new(&many), Err(Error::TooMany(10))));
        let dup = [net("id=a"), net("id=a,transport=mmio")];
        assert!(matches!(Plan::new(&dup), Err(Error::DuplicateId(a)) if a == "a"));
        assert_eq!(Plan::new(&[]).unwrap(), Plan::default());
    }
}
