//! Where each network device goes, decided from the configuration alone:
//! its name, interrupt line, and virtio-mmio window or PCI slot. This feeds
//! the kernel command line and the MP table before KVM is opened.

use devices::virtio::mmio::{mmio_cmdline, MMIO_DEVICE_SIZE};
use devices::virtio::net::{NetConfig, Transport};
use devices::virtio::pci::BAR_SIZE;

use super::Error;
use crate::layout::{PCI_MMIO_START, VIRTIO_MMIO_START, VIRTIO_MMIO_STRIDE};
use crate::x86_64::mptable::PciIrq;

/// Interrupt lines handed to devices, in order: the ISA IRQs no legacy
/// device of this VM uses (8, the RTC, and 13, the FPU, are left alone).
/// Lines below 16 work both through the IO-APIC and through the PIC, which
/// a stock kernel without MP-table or ACPI support uses.
pub const DEVICE_GSIS: [u32; 9] = [5, 6, 7, 9, 10, 11, 12, 14, 15];
/// The PCI slot of the first virtio-pci device (00:03.0, as in the cloud
/// instance the lab reproduces); the next ones follow.
pub const FIRST_PCI_SLOT: u8 = 3;

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

    /// Whether the VM has a PCI bus: some device sits on PCI.
    pub fn has_pci(&self) -> bool {
        self.devices
            .iter()
            .any(|d| matches!(d.slot, Slot::Pci { .. }))
    }
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
