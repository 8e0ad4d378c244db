//! KVM glue for the network devices' transports: MSI delivery through
//! KVM_SIGNAL_MSI, queue ioeventfds, and moving the virtio-pci ones when the
//! guest moves a BAR.

use std::collections::HashMap;
use std::sync::Arc;

use devices::pci::{BarObserver, MsiSender};
use devices::virtio::pci::VirtioPciDevice;
use devices::virtio::transport::QueueNotifier;
use kvm_bindings::kvm_msi;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::Error;

/// MSI delivery through KVM_SIGNAL_MSI.
pub(super) struct KvmMsi(pub(super) Arc<VmFd>);

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

pub(super) fn register_notifiers(
    vm: &VmFd,
    id: &str,
    notifiers: &[QueueNotifier],
) -> Result<(), Error> {
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
pub(super) struct NotifyMover {
    pub(super) vm: Arc<VmFd>,
    /// Per PCI slot: (queue, eventfd).
    pub(super) queues: HashMap<u8, Vec<(u16, EventFd)>>,
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
