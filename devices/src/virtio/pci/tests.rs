//! Tests of the virtio-pci transport as a driver sees it: configuration
//! mechanism #1 ports, the capability chain, the BAR in the PCI MMIO
//! window, MSI-X and INTx.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

use super::layout::common::*;
use super::*;
use crate::bus::Bus;
use crate::pci::regs::{
    CAP_ID_MSIX, CAP_ID_VENDOR, COMMAND_INTX_DISABLE, COMMAND_MEMORY, STATUS_CAP_LIST,
    STATUS_INTERRUPT,
};
use crate::pci::{
    PciConfigIo, PciMmioWindow, PciRoot, RecordingSender, PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_SIZE,
};
use crate::virtio::transport::status::*;
use crate::virtio::transport::testing::{guest_memory, ring_addrs, Dummy};
use crate::virtio::VirtioInterruptType;

const WINDOW: u64 = 0xc000_0000;
const WINDOW_SIZE: u64 = 0x1000_0000;
const BAR: u64 = WINDOW + 0x8000;
const SLOT: u32 = 3;
const OFFERED: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX) | (1 << 5) | (1 << 16);
/// `device_status` in the common configuration.
const DEVICE_STATUS: u64 = super::layout::common::STATUS;
const ALL_OK: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;

/// A guest's view: ports, MMIO, and what the VMM holds.
struct Guest {
    pio: Bus,
    mmio: Bus,
    dummy: Arc<Mutex<Dummy>>,
    msi: Arc<RecordingSender>,
    intx: vmm_sys_util::eventfd::EventFd,
    irq: Arc<VirtioPciInterrupt>,
    notifiers: Vec<crate::virtio::transport::QueueNotifier>,
}

impl Guest {
    fn new(max_sizes: &[u16]) -> Self {
        Self::with_memory(max_sizes, false)
    }

    fn with_memory(max_sizes: &[u16], memory_enabled: bool) -> Self {
        let dummy = Dummy::new(OFFERED, max_sizes);
        let msi = Arc::new(RecordingSender::default());
        let dev = VirtioPciDevice::new(
            "test",
            dummy.clone(),
            guest_memory(),
            msi.clone(),
            VirtioPciPlacement {
                bar_addr: BAR,
                interrupt_line: 10,
                memory_enabled,
            },
        )
        .unwrap();
        let intx = dev.intx_evt().try_clone().unwrap();
        let irq = dev.interrupt().clone();
        let notifiers = dev.notifiers().unwrap();
        let mut root = PciRoot::new(WINDOW, WINDOW_SIZE).unwrap();
        root.add_device(SLOT as u8, Box::new(dev)).unwrap();
        let root = Arc::new(Mutex::new(root));
        let mut pio = Bus::new();
        pio.insert(
            Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
            PCI_CONFIG_IO_BASE.into(),
            PCI_CONFIG_IO_SIZE,
        )
        .unwrap();
        let mut mmio = Bus::new();
        mmio.insert(
            Arc::new(Mutex::new(PciMmioWindow::new(root))),
            WINDOW,
            WINDOW_SIZE,
        )
        .unwrap();
        Self {
            pio,
            mmio,
            dummy,
            msi,
            intx,
            irq,
            notifiers,
        }
    }

    fn cfg_read(&self, offset: u32, len: usize) -> u32 {
        self.pio.write(
            0xcf8,
            &(0x8000_0000 | SLOT << 11 | (offset & 0xfc)).to_le_bytes(),
        );
        let mut d = [0u8; 4];
        self.pio.read(0xcfc + u64::from(offset & 3), &mut d[..len]);
        u32::from_le_bytes(d)
    }
    fn cfg8(&self, offset: u32) -> u8 {
        self.cfg_read(offset, 1) as u8
    }
    fn cfg16(&self, offset: u32) -> u16 {
        self.cfg_read(offset, 2) as u16
    }
    fn cfg32(&self, offset: u32) -> u32 {
        self.cfg_read(offset, 4)
    }
    fn cfg_write(&self, offset: u32, data: &[u8]) {
        self.pio.write(
            0xcf8,
            &(0x8000_0000 | SLOT << 11 | (offset & 0xfc)).to_le_bytes(),
        );
        self.pio.write(0xcfc + u64::from(offset & 3), data);
    }

    fn enable_memory(&self) {
        self.cfg_write(0x04, &COMMAND_MEMORY.to_le_bytes());
    }

    fn read(&self, addr: u64, len: usize) -> u64 {
        let mut d = [0u8; 8];
        self.mmio.read(addr, &mut d[..len]);
        u64::from_le_bytes(d)
    }
    fn write(&self, addr: u64, v: u64, len: usize) {
        self.mmio.write(addr, &v.to_le_bytes()[..len]);
    }

    /// Walks the capability list like Linux's virtio_pci_find_capability.
    fn find_virtio_cap(&self, cfg_type: u8) -> Option<(u32, u8, u32, u32)> {
        let mut pos = u32::from(self.cfg8(0x34));
        let mut hops = 0;
        while pos != 0 && hops < 48 {
            if self.cfg8(pos) == CAP_ID_VENDOR && self.cfg8(pos + 3) == cfg_type {
                return Some((
                    pos,
                    self.cfg8(pos + 4),
                    self.cfg32(pos + 8),
                    self.cfg32(pos + 12),
                ));
            }
            pos = u32::from(self.cfg8(pos + 1));
            hops += 1;
        }
        None
    }

    fn find_cap(&self, id: u8) -> Option<u32> {
        let mut pos = u32::from(self.cfg8(0x34));
        while pos != 0 {
            if self.cfg8(pos) == id {
                return Some(pos);
            }
            pos = u32::from(self.cfg8(pos + 1));
        }
        None
    }

    fn common(&self, field: u64) -> u64 {
        BAR + COMMON_CFG_OFFSET + field
    }

    fn status(&self) -> u8 {
        self.read(self.common(DEVICE_STATUS), 1) as u8
    }

    fn set_status(&self, s: u8) {
        self.write(self.common(DEVICE_STATUS), s.into(), 1);
    }

    fn negotiate(&self, features: u64) {
        self.set_status(ACKNOWLEDGE);
        self.set_status(ACKNOWLEDGE | DRIVER);
        self.write(self.common(GFSELECT), 0, 4);
        self.write(self.common(GF), features & 0xffff_ffff, 4);
        self.write(self.common(GFSELECT), 1, 4);
        self.write(self.common(GF), features >> 32, 4);
        self.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    }

    fn setup_queue(&self, i: u16, size: u16, vector: u16) {
        let (desc, avail, used) = ring_addrs(i);
        self.write(self.common(Q_SELECT), i.into(), 2);
        self.write(self.common(Q_SIZE), size.into(), 2);
        self.write(self.common(Q_MSIX), vector.into(), 2);
        // Linux writes 64-bit fields as two halves; also try one qword.
        self.write(self.common(Q_DESCLO), desc & 0xffff_ffff, 4);
        self.write(self.common(Q_DESCHI), desc >> 32, 4);
        self.write(self.common(Q_AVAILLO), avail, 8);
        self.write(self.common(Q_USEDLO), used & 0xffff_ffff, 4);
        self.write(self.common(Q_USEDHI), used >> 32, 4);
        self.write(self.common(Q_ENABLE), 1, 2);
    }

    /// Programs MSI-X entry `v` to (0xfee0_0000 + v << 12, 0x40 + v),
    /// unmasked.
    fn program_vector(&self, v: u64) {
        let entry = BAR + MSIX_TABLE_OFFSET + v * 16;
        self.write(entry, 0xfee0_0000 + (v << 12), 8);
        self.write(entry + 8, 0x40 + v, 4);
        self.write(entry + 12, 0, 4);
    }

    fn enable_msix(&self, function_mask: bool) {
        let cap = self.find_cap(CAP_ID_MSIX).unwrap();
        let control =
            (self.cfg16(cap + 2) & !0xc000) | 0x8000 | if function_mask { 0x4000 } else { 0 };
        self.cfg_write(cap + 2, &control.to_le_bytes());
    }
}

#[test]
fn pci_identity() {
    let g = Guest::new(&[256, 256]);
    assert_eq!(g.cfg16(0x00), 0x1af4);
    assert_eq!(g.cfg16(0x02), 0x1041);
    assert_eq!(g.cfg8(0x08), 1, "revision");
    assert_eq!(g.cfg32(0x08) >> 8, 0x02_00_00, "class: Ethernet controller");
    assert_eq!(g.cfg8(0x0e), 0, "type-0, single function");
    assert_eq!(g.cfg16(0x2c), 0x1af4);
    assert_eq!(g.cfg16(0x2e), 0x1100);
    assert_eq!(g.cfg8(0x3d), 1, "INTA#");
    assert_eq!(g.cfg8(0x3c), 10);
    g.cfg_write(0x3c, &[11]);
    assert_eq!(g.cfg8(0x3c), 11);
    assert_ne!(g.cfg16(0x06) & STATUS_CAP_LIST, 0);
    // Read-only identity.
    g.cfg_write(0x00, &[0; 4]);
    assert_eq!(g.cfg32(0x00), 0x1041_1af4);
}

#[test]
fn bar_sizing_and_type() {
    let g = Guest::new(&[16]);
    let lo = g.cfg32(0x10);
    assert_eq!(lo, BAR as u32 | 0x4, "64-bit, non-prefetchable memory");
    assert_eq!(g.cfg32(0x14), 0);
    g.cfg_write(0x10, &[0xff; 4]);
    g.cfg_write(0x14, &[0xff; 4]);
    let mask = (u64::from(g.cfg32(0x14)) << 32) | u64::from(g.cfg32(0x10) & !0xf);
    assert_eq!(!mask + 1, BAR_SIZE);
    // Other BARs are unimplemented.
    for bar in 2..6 {
        g.cfg_write(0x10 + 4 * bar, &[0xff; 4]);
        assert_eq!(g.cfg32(0x10 + 4 * bar), 0);
    }
}

#[test]
fn capability_chain_as_a_driver_walks_it() {
    let g = Guest::new(&[16, 16, 16]);
    let (_, bar, off, len) = g.find_virtio_cap(VIRTIO_PCI_CAP_COMMON_CFG).unwrap();
    assert_eq!((bar, off, len), (0, 0, 0x38));
    let (pos, bar, off, len) = g.find_virtio_cap(VIRTIO_PCI_CAP_NOTIFY_CFG).unwrap();
    assert_eq!((bar, off, len), (0, 0x3000, 3 * 4));
    assert_eq!(g.cfg8(pos + 2), 20, "cap_len of virtio_pci_notify_cap");
    assert_eq!(g.cfg32(pos + 16), 4, "notify_off_multiplier");
    let (_, bar, off, len) = g.find_virtio_cap(VIRTIO_PCI_CAP_ISR_CFG).unwrap();
    assert_eq!((bar, off, len), (0, 0x1000, 1));
    let (_, bar, off, len) = g.find_virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG).unwrap();
    assert_eq!((bar, off, len), (0, 0x2000, 0x1000));
    let (pos, _, _, _) = g.find_virtio_cap(VIRTIO_PCI_CAP_PCI_CFG).unwrap();
    assert_eq!(g.cfg8(pos + 2), 20);
    // Every structure lies inside the BAR.
    for t in 1..=4 {
        let (_, _, off, len) = g.find_virtio_cap(t).unwrap();
        assert!(u64::from(off) + u64::from(len) <= BAR_SIZE);
    }

    let msix = g.find_cap(CAP_ID_MSIX).unwrap();
    assert_eq!(g.cfg16(msix + 2) & 0x7ff, 3, "4 vectors: config + 3 queues");
    assert_eq!(g.cfg32(msix + 4), 0x4000, "table in BAR 0 at 0x4000");
    assert_eq!(g.cfg32(msix + 8), 0x5000, "PBA in BAR 0 at 0x5000");
    // Only enable and function mask are writable.
    g.cfg_write(msix + 2, &[0xff, 0xff]);
    assert_eq!(g.cfg16(msix + 2), 0xc003);
    g.cfg_write(msix + 4, &[0xff; 4]);
    assert_eq!(g.cfg32(msix + 4), 0x4000);
}

#[test]
fn bar_answers_only_with_memory_enabled() {
    let g = Guest::new(&[16]);
    assert_eq!(g.read(g.common(NUMQ), 2), 0xffff);
    g.enable_memory();
    assert_eq!(g.read(g.common(NUMQ), 2), 1);
    // A VMM acting as firmware can leave decoding on.
    let g = Guest::with_memory(&[16], true);
    assert_eq!(g.cfg16(0x04), COMMAND_MEMORY);
    assert_eq!(g.read(g.common(NUMQ), 2), 1);
}

#[test]
fn common_cfg_negotiation() {
    let g = Guest::new(&[256, 128]);
    g.enable_memory();
    assert_eq!(g.read(g.common(DF), 4), OFFERED & 0xffff_ffff);
    g.write(g.common(DFSELECT), 1, 4);
    assert_eq!(g.read(g.common(DFSELECT), 4), 1);
    assert_eq!(g.read(g.common(DF), 4), OFFERED >> 32);
    assert_eq!(g.read(g.common(NUMQ), 2), 2);
    g.dummy.lock().unwrap().generation = 0x1_05;
    assert_eq!(g.read(g.common(CFGGENERATION), 1), 5);

    // FEATURES_OK refused for a bit that was not offered.
    g.negotiate(OFFERED | 1 << 6);
    assert_eq!(g.status(), ACKNOWLEDGE | DRIVER);
    assert_eq!(g.dummy.lock().unwrap().acked, None);
    // Accepted once the driver drops it.
    g.write(g.common(GFSELECT), 0, 4);
    g.write(g.common(GF), OFFERED & 0xffff_ffff, 4);
    assert_eq!(g.read(g.common(GF), 4), OFFERED & 0xffff_ffff);
    g.set_status(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(g.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(g.dummy.lock().unwrap().acked, Some(OFFERED));

    // Queue registers.
    g.write(g.common(Q_SELECT), 1, 2);
    assert_eq!(g.read(g.common(Q_SIZE), 2), 128);
    assert_eq!(g.read(g.common(Q_NOFF), 2), 1);
    assert_eq!(g.read(g.common(Q_MSIX), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    g.write(g.common(Q_SIZE), 100, 2);
    assert_eq!(g.read(g.common(Q_SIZE), 2), 128, "not a power of two");
    g.setup_queue(1, 64, 2);
    assert_eq!(g.read(g.common(Q_SIZE), 2), 64);
    assert_eq!(g.read(g.common(Q_ENABLE), 2), 1);
    assert_eq!(g.read(g.common(Q_DESCLO), 8), ring_addrs(1).0);
    assert_eq!(g.read(g.common(Q_AVAILLO), 4), ring_addrs(1).1);
    assert_eq!(g.read(g.common(Q_MSIX), 2), 2);
    // An absent queue.
    g.write(g.common(Q_SELECT), 7, 2);
    assert_eq!(g.read(g.common(Q_SIZE), 2), 0);

    g.set_status(ALL_OK);
    assert_eq!(g.status(), ALL_OK);
    let d = g.dummy.lock().unwrap();
    let (desc, avail, used) = ring_addrs(1);
    assert_eq!(d.activations.len(), 1);
    assert_eq!(
        d.activations[0].queues,
        vec![(1, 64, desc, avail, used, true)]
    );
    assert_eq!(
        d.transitions,
        vec![
            (0, ACKNOWLEDGE),
            (ACKNOWLEDGE, ACKNOWLEDGE | DRIVER),
            (ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | FEATURES_OK),
            (ACKNOWLEDGE | DRIVER | FEATURES_OK, ALL_OK),
        ]
    );
}

#[test]
fn notifications() {
    let g = Guest::new(&[16, 16]);
    g.enable_memory();
    assert_eq!(g.notifiers[1].addr, BAR + NOTIFY_OFFSET + 4);
    assert_eq!(g.notifiers[1].datamatch, None);
    // Before DRIVER_OK: ignored.
    g.write(BAR + NOTIFY_OFFSET, 0, 2);
    assert!(g.notifiers[0].evt.read().is_err());
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.setup_queue(0, 16, VIRTIO_MSI_NO_VECTOR);
    g.setup_queue(1, 16, VIRTIO_MSI_NO_VECTOR);
    g.set_status(ALL_OK);
    g.write(BAR + NOTIFY_OFFSET + 4, 1, 2);
    assert_eq!(g.notifiers[1].evt.read().unwrap(), 1);
    assert!(g.notifiers[0].evt.read().is_err());
    // With notification data the driver writes 4 bytes; the address counts.
    g.write(BAR + NOTIFY_OFFSET, 0x0005_0000, 4);
    assert_eq!(g.notifiers[0].evt.read().unwrap(), 1);
    // Unaligned and out-of-range notifications.
    g.write(BAR + NOTIFY_OFFSET + 2, 0, 2);
    g.write(BAR + NOTIFY_OFFSET + 0x100, 0, 2);
    assert!(g.notifiers[0].evt.read().is_err());
}

#[test]
fn msix_delivery_and_vector_mapping() {
    let g = Guest::new(&[16, 16]);
    g.enable_memory();
    g.enable_msix(true);
    for v in 0..3 {
        g.program_vector(v);
    }
    g.enable_msix(false);
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.write(g.common(MSIX), 0, 2);
    assert_eq!(g.read(g.common(MSIX), 2), 0);
    // A vector the table does not have reads back as NO_VECTOR.
    g.write(g.common(MSIX), 3, 2);
    assert_eq!(g.read(g.common(MSIX), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    g.write(g.common(MSIX), 0, 2);
    g.setup_queue(0, 16, 1);
    g.setup_queue(1, 16, 2);
    g.set_status(ALL_OK);

    let d = g.dummy.lock().unwrap();
    d.trigger(VirtioInterruptType::Queue(1));
    d.trigger(VirtioInterruptType::Config);
    d.trigger(VirtioInterruptType::Queue(0));
    drop(d);
    assert_eq!(
        g.msi.take(),
        vec![
            (0xfee0_2000, 0x42),
            (0xfee0_0000, 0x40),
            (0xfee0_1000, 0x41)
        ]
    );
    // No INTx with MSI-X; ISR has the configuration bit only (virtio 1.2
    // section 4.1.4.5.1), cleared by the read.
    assert!(g.intx.read().is_err());
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), u64::from(ISR_CONFIG));
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), 0);
    let d = g.dummy.lock().unwrap();
    d.trigger(VirtioInterruptType::Queue(0));
    drop(d);
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), 0, "no queue bit with MSI-X");
}

#[test]
fn masked_vector_sets_pending_and_unmask_delivers() {
    let g = Guest::new(&[16]);
    g.enable_memory();
    g.program_vector(1);
    g.enable_msix(false);
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.setup_queue(0, 16, 1);
    g.set_status(ALL_OK);
    // Mask vector 1.
    g.write(BAR + MSIX_TABLE_OFFSET + 16 + 12, 1, 4);
    g.dummy
        .lock()
        .unwrap()
        .trigger(VirtioInterruptType::Queue(0));
    assert!(g.msi.take().is_empty());
    assert_eq!(g.read(BAR + MSIX_PBA_OFFSET, 8), 0b10);
    g.write(BAR + MSIX_TABLE_OFFSET + 16 + 12, 0, 4);
    assert_eq!(g.msi.take(), vec![(0xfee0_1000, 0x41)]);
    assert_eq!(g.read(BAR + MSIX_PBA_OFFSET, 8), 0);
    // The function mask works the same way.
    g.enable_msix(true);
    g.dummy
        .lock()
        .unwrap()
        .trigger(VirtioInterruptType::Queue(0));
    assert!(g.msi.take().is_empty());
    g.enable_msix(false);
    assert_eq!(g.msi.take(), vec![(0xfee0_1000, 0x41)]);
}

#[test]
fn intx_fallback_and_isr_read_to_clear() {
    let g = Guest::new(&[16]);
    g.enable_memory();
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.setup_queue(0, 16, VIRTIO_MSI_NO_VECTOR);
    g.set_status(ALL_OK);
    g.dummy
        .lock()
        .unwrap()
        .trigger(VirtioInterruptType::Queue(0));
    assert_eq!(g.intx.read().unwrap(), 1);
    assert_ne!(g.cfg16(0x06) & STATUS_INTERRUPT, 0, "INTx shown in status");
    // A level-triggered line is raised again until the ISR is read.
    g.irq.resample().unwrap();
    assert_eq!(g.intx.read().unwrap(), 1);
    g.dummy.lock().unwrap().trigger(VirtioInterruptType::Config);
    assert_eq!(
        g.read(BAR + ISR_OFFSET, 1),
        u64::from(ISR_QUEUE | ISR_CONFIG)
    );
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), 0, "read clears");
    assert_eq!(g.cfg16(0x06) & STATUS_INTERRUPT, 0);
    g.irq.resample().unwrap();
    g.intx.read().unwrap();
    assert!(g.intx.read().is_err());

    // INTx disabled in the command register: ISR only.
    g.cfg_write(0x04, &(COMMAND_MEMORY | COMMAND_INTX_DISABLE).to_le_bytes());
    g.dummy
        .lock()
        .unwrap()
        .trigger(VirtioInterruptType::Queue(0));
    assert!(g.intx.read().is_err());
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), u64::from(ISR_QUEUE));
}

#[test]
fn reset_through_common_cfg() {
    let g = Guest::new(&[16, 16]);
    g.enable_memory();
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.write(g.common(MSIX), 0, 2);
    g.setup_queue(1, 8, 1);
    g.set_status(ALL_OK);
    g.dummy.lock().unwrap().trigger(VirtioInterruptType::Config);
    g.set_status(0);
    assert_eq!(g.status(), 0);
    assert_eq!(g.dummy.lock().unwrap().resets, 1);
    assert_eq!(g.read(g.common(MSIX), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), 0);
    assert_eq!(g.read(g.common(Q_SELECT), 2), 0);
    g.write(g.common(Q_SELECT), 1, 2);
    assert_eq!(g.read(g.common(Q_ENABLE), 2), 0);
    assert_eq!(g.read(g.common(Q_SIZE), 2), 16);
    assert_eq!(g.read(g.common(Q_MSIX), 2), u64::from(VIRTIO_MSI_NO_VECTOR));
    assert_eq!(g.read(g.common(Q_DESCLO), 8), 0);
    assert_eq!(g.read(g.common(GF), 4), 0);
}

#[test]
fn bad_queue_size_then_driver_ok_needs_reset() {
    let g = Guest::new(&[16]);
    g.enable_memory();
    g.negotiate(1 << VIRTIO_F_VERSION_1);
    g.setup_queue(0, 12, VIRTIO_MSI_NO_VECTOR);
    g.set_status(ALL_OK);
    assert_eq!(g.status(), ALL_OK | NEEDS_RESET);
    assert!(g.dummy.lock().unwrap().activations.is_empty());
    // The configuration change went out on INTx.
    assert_eq!(g.intx.read().unwrap(), 1);
    assert_eq!(g.read(BAR + ISR_OFFSET, 1), u64::from(ISR_CONFIG));
}

#[test]
fn pci_cfg_access_window() {
    let g = Guest::new(&[16]);
    // Works without memory decoding: that is its purpose.
    let (pos, ..) = g.find_virtio_cap(VIRTIO_PCI_CAP_PCI_CFG).unwrap();
    g.cfg_write(pos + 4, &[0]);
    g.cfg_write(
        pos + 8,
        &(COMMON_CFG_OFFSET as u32 + DF as u32).to_le_bytes(),
    );
    g.cfg_write(pos + 12, &4u32.to_le_bytes());
    assert_eq!(u64::from(g.cfg32(pos + 16)), OFFERED & 0xffff_ffff);
    // Write the status through it.
    g.cfg_write(
        pos + 8,
        &(COMMON_CFG_OFFSET as u32 + DEVICE_STATUS as u32).to_le_bytes(),
    );
    g.cfg_write(pos + 12, &1u32.to_le_bytes());
    g.cfg_write(pos + 16, &[ACKNOWLEDGE]);
    assert_eq!(g.cfg8(pos + 16), ACKNOWLEDGE);
    // A bad window (other BAR, misaligned) reads 0 and writes nothing.
    g.cfg_write(pos + 4, &[2]);
    assert_eq!(g.cfg32(pos + 16), 0);
    g.cfg_write(pos + 4, &[0]);
    g.cfg_write(pos + 8, &1u32.to_le_bytes());
    g.cfg_write(pos + 12, &4u32.to_le_bytes());
    g.cfg_write(pos + 16, &[0; 4]);
    g.cfg_write(pos + 8, &(DEVICE_STATUS as u32).to_le_bytes());
    g.cfg_write(pos + 12, &1u32.to_le_bytes());
    assert_eq!(g.cfg8(pos + 16), ACKNOWLEDGE);
}

#[test]
fn bar_relocation_moves_the_registers() {
    let g = Guest::new(&[16]);
    g.enable_memory();
    let new = WINDOW + 0x40_0000;
    g.cfg_write(0x10, &((new as u32) | 4).to_le_bytes());
    assert_eq!(g.read(BAR + COMMON_CFG_OFFSET + NUMQ, 2), 0xffff);
    assert_eq!(g.read(new + COMMON_CFG_OFFSET + NUMQ, 2), 1);
    assert_eq!(VirtioPciDevice::notify_addr(new, 3), new + 0x300c);
}

#[test]
fn device_config_through_the_bar() {
    let g = Guest::new(&[16]);
    g.enable_memory();
    assert_eq!(g.read(BAR + DEVICE_CFG_OFFSET + 4, 2), 0xa5a4);
    g.write(BAR + DEVICE_CFG_OFFSET + 6, 0x0102, 2);
    assert_eq!(
        g.dummy.lock().unwrap().config_writes,
        vec![(6, vec![0x02, 0x01])]
    );
}

#[test]
fn guest_garbage_never_panics() {
    // Every width at every offset of the configuration space and the BAR,
    // with changing values; the transport must survive and keep answering.
    let g = Guest::new(&[16, 16]);
    g.enable_memory();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3 {
        for offset in (0..BAR_SIZE).step_by(if round == 0 { 1 } else { 3 }) {
            for len in [0, 1, 2, 4, 8] {
                let v = next();
                g.write(BAR + offset, v, len);
                g.read(BAR + offset, len);
            }
        }
        for offset in 0x10..0x100u32 {
            // Keep memory decoding and the BAR where they are.
            if (0x04..0x18).contains(&offset) {
                continue;
            }
            let v = next();
            for len in [1usize, 2, 4] {
                if offset as usize % len == 0 {
                    g.cfg_write(offset, &v.to_le_bytes()[..len]);
                    g.cfg_read(offset, len);
                }
            }
        }
        // Bring the device up in between, so queue paths run too.
        g.set_status(0);
        g.negotiate(1 << VIRTIO_F_VERSION_1);
        g.setup_queue(0, 16, 0);
        g.set_status(ALL_OK);
    }
    assert_eq!(g.read(g.common(NUMQ), 2), 2);
}
