//! Tests of the PCI root through the ports and the MMIO window, as a guest
//! sees them.

use std::sync::{Arc, Mutex};

use super::regs::*;
use super::*;
use crate::bus::{Bus, BusDevice};

const WINDOW: u64 = 0xc000_0000;
const WINDOW_SIZE: u64 = 0x1000_0000;

/// A device with one 64-bit 4 KiB BAR backed by bytes.
struct RamDev {
    config: PciConfigSpace,
    ram: Vec<u8>,
}

impl RamDev {
    fn new(addr: u64) -> Self {
        let mut config = PciConfigSpace::new(&PciHeader {
            vendor_id: 0x1234,
            device_id: 0x5678,
            revision_id: 0,
            class_code: CLASS_OTHER,
            subclass: 0,
            prog_if: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
            interrupt_pin: 0,
            interrupt_line: 0,
        });
        config
            .add_memory_bar(
                0,
                addr,
                0x1000,
                BarKind::Memory64 {
                    prefetchable: false,
                },
            )
            .unwrap();
        Self {
            config,
            ram: vec![0; 0x1000],
        }
    }
}

impl PciDevice for RamDev {
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
    }
    fn bars(&self) -> Vec<BarRange> {
        self.config.bars()
    }
    fn memory_enabled(&self) -> bool {
        self.config.memory_enabled()
    }
    fn read_bar(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        let o = offset as usize;
        data.copy_from_slice(&self.ram[o..o + data.len()]);
    }
    fn write_bar(&mut self, _bar: usize, offset: u64, data: &[u8]) {
        let o = offset as usize;
        self.ram[o..o + data.len()].copy_from_slice(data);
    }
}

/// (slot, BAR, old address, new address) of each move.
type MoveLog = Arc<Mutex<Vec<(u8, usize, Option<u64>, Option<u64>)>>>;

#[derive(Default)]
struct Moves(MoveLog);

impl BarObserver for Moves {
    fn bar_moved(&self, slot: u8, bar: usize, old: Option<u64>, new: Option<u64>) {
        self.0.lock().unwrap().push((slot, bar, old, new));
    }
}

/// The VMM's view: a port bus and an MMIO bus with the PCI devices on them.
struct Machine {
    pio: Bus,
    mmio: Bus,
    moves: MoveLog,
}

impl Machine {
    fn new() -> Self {
        let mut root = PciRoot::new(WINDOW, WINDOW_SIZE).unwrap();
        root.add_device(3, Box::new(RamDev::new(WINDOW + 0x1_0000)))
            .unwrap();
        let moves = Moves::default();
        let log = moves.0.clone();
        root.set_bar_observer(Box::new(moves));
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
            moves: log,
        }
    }

    fn outl(&self, port: u16, v: u32) {
        self.pio.write(port.into(), &v.to_le_bytes());
    }
    fn inl(&self, port: u16) -> u32 {
        let mut d = [0u8; 4];
        self.pio.read(port.into(), &mut d);
        u32::from_le_bytes(d)
    }
    fn select(&self, bus: u32, slot: u32, func: u32, reg: u32) {
        self.outl(
            0xcf8,
            0x8000_0000 | bus << 16 | slot << 11 | func << 8 | reg,
        );
    }
    fn cfg_read(&self, slot: u32, reg: u32) -> u32 {
        self.select(0, slot, 0, reg);
        self.inl(0xcfc)
    }
    fn cfg_write(&self, slot: u32, reg: u32, v: u32) {
        self.select(0, slot, 0, reg);
        self.outl(0xcfc, v);
    }
}

#[test]
fn host_bridge_ids() {
    let m = Machine::new();
    assert_eq!(m.cfg_read(0, 0x00), 0x0d57_8086);
    assert_eq!(m.cfg_read(0, 0x08) >> 16, 0x0600);
    assert_eq!(
        m.cfg_read(0, 0x0c) & 0x00ff_0000,
        0,
        "single function, type 0"
    );
}

#[test]
fn linux_type1_probe() {
    // arch/x86/pci/direct.c pci_check_type1.
    let m = Machine::new();
    m.pio.write(0xcfb, &[1]);
    let saved = m.inl(0xcf8);
    m.outl(0xcf8, 0x8000_0000);
    assert_eq!(m.inl(0xcf8), 0x8000_0000);
    m.outl(0xcf8, saved);
    // Reserved bits of CONFIG_ADDRESS read as 0.
    m.outl(0xcf8, 0xffff_ffff);
    assert_eq!(m.inl(0xcf8), 0x80ff_fffc);
}

#[test]
fn absent_devices_read_all_ones() {
    let m = Machine::new();
    assert_eq!(m.cfg_read(5, 0), 0xffff_ffff);
    assert_eq!(m.cfg_read(31, 0), 0xffff_ffff);
    m.select(1, 0, 0, 0);
    assert_eq!(m.inl(0xcfc), 0xffff_ffff);
    m.select(0, 0, 1, 0);
    assert_eq!(m.inl(0xcfc), 0xffff_ffff);
    // Access disabled (bit 31 clear).
    m.outl(0xcf8, 0);
    assert_eq!(m.inl(0xcfc), 0xffff_ffff);
    m.cfg_write(5, 0x3c, 0x1234);
}

#[test]
fn byte_and_word_accesses_at_offsets() {
    let m = Machine::new();
    m.select(0, 3, 0, 0);
    let mut w = [0u8; 2];
    m.pio.read(0xcfe, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x5678);
    let mut b = [0u8; 1];
    m.pio.read(0xcfd, &mut b);
    assert_eq!(b[0], 0x12);
    // Interrupt line by byte at 0xcfc with register 0x3c.
    m.select(0, 3, 0, 0x3c);
    m.pio.write(0xcfc, &[9]);
    assert_eq!(m.cfg_read(3, 0x3c) & 0xff, 9);
    // A misaligned word is ignored and reads all-ones.
    m.select(0, 3, 0, 0);
    m.pio.read(0xcfd, &mut w);
    assert_eq!(w, [0xff, 0xff]);
}

#[test]
fn bar_sizing_through_the_ports() {
    let m = Machine::new();
    let orig_lo = m.cfg_read(3, 0x10);
    let orig_hi = m.cfg_read(3, 0x14);
    assert_eq!(orig_lo, (WINDOW as u32 + 0x1_0000) | 0x4);
    m.cfg_write(3, 0x10, 0xffff_ffff);
    m.cfg_write(3, 0x14, 0xffff_ffff);
    let lo = m.cfg_read(3, 0x10);
    let hi = m.cfg_read(3, 0x14);
    let mask = (u64::from(hi) << 32) | u64::from(lo & !0xf);
    assert_eq!(!mask + 1, 0x1000);
    assert_eq!(lo & 0xf, 0x4);
    m.cfg_write(3, 0x10, orig_lo);
    m.cfg_write(3, 0x14, orig_hi);
    assert_eq!(m.cfg_read(3, 0x10), orig_lo);
}

#[test]
fn bars_decode_only_with_memory_enabled_and_follow_relocation() {
    let m = Machine::new();
    let bar = WINDOW + 0x1_0000;
    // Memory decoding is off after reset: nothing answers.
    let mut d = [0u8; 4];
    m.mmio.write(bar, &[1, 2, 3, 4]);
    m.mmio.read(bar, &mut d);
    assert_eq!(d, [0xff; 4]);
    m.cfg_write(3, 0x04, u32::from(COMMAND_MEMORY));
    assert_eq!(*m.moves.lock().unwrap(), vec![(3, 0, None, Some(bar))]);
    m.mmio.read(bar, &mut d);
    assert_eq!(d, [0; 4], "the write before enabling went nowhere");
    m.mmio.write(bar + 8, &[1, 2, 3, 4]);
    m.mmio.read(bar + 8, &mut d);
    assert_eq!(d, [1, 2, 3, 4]);

    // Move the BAR: the old address stops answering, the new one answers.
    let new = WINDOW + 0x20_0000;
    m.cfg_write(3, 0x10, new as u32);
    m.mmio.read(bar + 8, &mut d);
    assert_eq!(d, [0xff; 4]);
    m.mmio.read(new + 8, &mut d);
    assert_eq!(d, [1, 2, 3, 4]);
    assert_eq!(
        m.moves.lock().unwrap().last(),
        Some(&(3, 0, Some(bar), Some(new)))
    );

    // Disable decoding: nothing answers.
    m.cfg_write(3, 0x04, 0);
    m.mmio.read(new + 8, &mut d);
    assert_eq!(d, [0xff; 4]);
    assert_eq!(
        m.moves.lock().unwrap().last(),
        Some(&(3, 0, Some(new), None))
    );
}

#[test]
fn add_device_errors() {
    let mut root = PciRoot::new(WINDOW, WINDOW_SIZE).unwrap();
    assert_eq!(
        root.add_device(0, Box::new(RamDev::new(WINDOW)))
            .unwrap_err(),
        PciRootError::SlotInUse(0)
    );
    assert_eq!(
        root.add_device(32, Box::new(RamDev::new(WINDOW)))
            .unwrap_err(),
        PciRootError::InvalidSlot(32)
    );
    assert!(matches!(
        root.add_device(3, Box::new(RamDev::new(0x1000))),
        Err(PciRootError::BarOutsideWindow { .. })
    ));
    assert!(matches!(
        root.add_device(3, Box::new(RamDev::new(WINDOW + WINDOW_SIZE - 0x1000))),
        Ok(())
    ));
    assert!(matches!(
        root.add_device(4, Box::new(RamDev::new(WINDOW + WINDOW_SIZE - 0x1000))),
        Err(PciRootError::BarOverlap { other_slot: 3, .. })
    ));
    assert!(PciRoot::new(u64::MAX, 2).is_err());
    assert!(PciRoot::new(0, 0).is_err());
}

#[test]
fn config_io_ignores_odd_accesses() {
    let root = Arc::new(Mutex::new(PciRoot::new(WINDOW, WINDOW_SIZE).unwrap()));
    let mut io = PciConfigIo::new(root);
    io.write(0xcf8, 0, &[0xff, 0xff]);
    io.write(0xcf8, 2, &[0xff; 4]);
    io.write(0xcf8, 8, &[0xff; 4]);
    let mut d = [0u8; 4];
    io.read(0xcf8, 0, &mut d);
    assert_eq!(d, [0; 4]);
    io.read(0xcf8, 6, &mut d);
    assert_eq!(d, [0xff; 4]);
    let mut big = [0u8; 8];
    io.read(0xcf8, 4, &mut big);
    assert_eq!(big, [0xff; 8]);
}
