//! The Intel MultiProcessor Specification 1.4 table: how a kernel without
//! ACPI finds its CPUs (local APICs), the IO-APIC, the buses and the routing
//! of ISA IRQs and PCI INTx lines to IO-APIC pins.
//!
//! Bus 0 is PCI (its MP bus ID must equal the PCI bus number for Linux to
//! match PCI interrupt entries) and bus 1 is ISA.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{APIC_START, IOAPIC_PINS, IOAPIC_START};

const MPF_SIGNATURE: &[u8; 4] = b"_MP_";
const MPC_SIGNATURE: &[u8; 4] = b"PCMP";
const MP_SPEC_REV: u8 = 4; // 1.4
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

const ENTRY_CPU: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;

/// MP bus ID of PCI bus 0.
pub const BUS_ID_PCI: u8 = 0;
/// MP bus ID of the ISA bus.
pub const BUS_ID_ISA: u8 = 1;

/// Interrupt flags: polarity and trigger "conform to the bus".
const IRQ_FLAGS_DEFAULT: u16 = 0;
/// Interrupt flags for PCI INTx: active high, edge triggered. The VMM
/// raises INTx through an irqfd, which delivers edges; virtio's ISR
/// (read-to-clear, one edge per event) works with that.
const IRQ_FLAGS_PCI: u16 = 0x1 | (0x1 << 2);

/// Number of ISA IRQs, routed 1:1 to IO-APIC pins 0..16.
const ISA_IRQS: u8 = 16;

/// Sizes of the structures, as the spec defines them.
const MPF_SIZE: usize = 16;
const MPC_HEADER_SIZE: usize = 44;
const CPU_ENTRY_SIZE: usize = 20;
const SMALL_ENTRY_SIZE: usize = 8;

/// Most CPUs the table can describe (APIC IDs are 8 bits and the IO-APIC
/// takes the next ID).
pub const MAX_CPUS: u8 = 254;

/// A PCI INTx line routed to an IO-APIC pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIrq {
    /// Device (slot) number on bus 0.
    pub slot: u8,
    /// Interrupt pin: 0 = INTA# ... 3 = INTD#.
    pub pin: u8,
    /// IO-APIC input the line is wired to.
    pub ioapic_pin: u8,
}

/// Errors from building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too many vCPUs for the table.
    #[error("the MP table can describe 1 to {MAX_CPUS} vCPUs, not {0}")]
    TooManyCpus(u8),
    /// A PCI routing entry is out of range.
    #[error("PCI interrupt routing for slot {0} uses an invalid pin or IO-APIC input")]
    BadPciIrq(u8),
    /// The table does not fit in the EBDA page it is placed in.
    #[error("the MP table ({0} bytes) does not fit in the EBDA")]
    TooLarge(usize),
    /// Writing it to guest memory failed.
    #[error("cannot write the MP table to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

fn small_entry(kind: u8, body: [u8; 7]) -> [u8; SMALL_ENTRY_SIZE] {
    let mut e = [0u8; SMALL_ENTRY_SIZE];
    e[0] = kind;
    e[1..].copy_from_slice(&body);
    e
}

fn intsrc(irqtype: u8, flags: u16, bus: u8, bus_irq: u8, apic: u8, pin: u8) -> [u8; 8] {
    let f = flags.to_le_bytes();
    small_entry(ENTRY_INTSRC, [irqtype, f[0], f[1], bus, bus_irq, apic, pin])
}

fn lintsrc(irqtype: u8, dest_apic: u8, lint: u8) -> [u8; 8] {
    let f = IRQ_FLAGS_DEFAULT.to_le_bytes();
    small_entry(
        ENTRY_LINTSRC,
        [irqtype, f[0], f[1], BUS_ID_ISA, 0, dest_apic, lint],
    )
}

/// The bytes of the MP configuration table (header and entries) for
/// `num_cpus` vCPUs, placed at guest address `table_addr`.
pub fn build_table(num_cpus: u8, pci_irqs: &[PciIrq]) -> Result<Vec<u8>, Error> {
    if num_cpus == 0 || num_cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;

    for cpu in 0..num_cpus {
        let mut e = [0u8; CPU_ENTRY_SIZE];
        e[0] = ENTRY_CPU;
        e[1] = cpu;
        e[2] = APIC_VERSION;
        e[3] = CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 };
        e[4..8].copy_from_slice(&CPU_STEPPING.to_le_bytes());
        e[8..12].copy_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&e);
        count += 1;
    }
    for (id, name) in [(BUS_ID_PCI, b"PCI   "), (BUS_ID_ISA, b"ISA   ")] {
        let mut body = [0u8; 7];
        body[0] = id;
        body[1..].copy_from_slice(name);
        entries.extend_from_slice(&small_entry(ENTRY_BUS, body));
        count += 1;
    }
    let addr = (IOAPIC_START as u32).to_le_bytes();
    entries.extend_from_slice(&small_entry(
        ENTRY_IOAPIC,
        [
            ioapic_id,
            IOAPIC_VERSION,
            1,
            addr[0],
            addr[1],
            addr[2],
            addr[3],
        ],
    ));
    count += 1;
    // ISA IRQ n is wired to pin n, except where a PCI line takes the pin.
    for irq in (0..ISA_IRQS).filter(|i| pci_irqs.iter().all(|p| p.ioapic_pin != *i)) {
        entries.extend_from_slice(&intsrc(
            INT_TYPE_INT,
            IRQ_FLAGS_DEFAULT,
            BUS_ID_ISA,
            irq,
            ioapic_id,
            irq,
        ));
        count += 1;
    }
    for p in pci_irqs {
        if p.slot > 31 || p.pin > 3 || u32::from(p.ioapic_pin) >= IOAPIC_PINS {
            return Err(Error::BadPciIrq(p.slot));
        }
        entries.extend_from_slice(&intsrc(
            INT_TYPE_INT,
            IRQ_FLAGS_PCI,
            BUS_ID_PCI,
            (p.slot << 2) | p.pin,
            ioapic_id,
            p.ioapic_pin,
        ));
        count += 1;
    }
    entries.extend_from_slice(&lintsrc(INT_TYPE_EXTINT, 0xff, 0));
    entries.extend_from_slice(&lintsrc(INT_TYPE_NMI, 0xff, 1));
    count += 2;

    let length = MPC_HEADER_SIZE + entries.len();
    let mut table = Vec::with_capacity(length);
    table.extend_from_slice(MPC_SIGNATURE);
    table.extend_from_slice(&(length as u16).to_le_bytes());
    table.push(MP_SPEC_REV);
    table.push(0); // checksum, filled below
    table.extend_from_slice(b"VNETLAB ");
    table.extend_from_slice(b"000000000000");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table: none
    debug_assert_eq!(table.len(), MPC_HEADER_SIZE);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    Ok(table)
}

/// The MP floating pointer structure pointing at a table at `table_addr`.
pub fn build_floating_pointer(table_addr: u32) -> [u8; MPF_SIZE] {
    let mut mpf = [0u8; MPF_SIZE];
    mpf[0..4].copy_from_slice(MPF_SIGNATURE);
    mpf[4..8].copy_from_slice(&table_addr.to_le_bytes());
    mpf[8] = 1; // length in 16-byte units
    mpf[9] = MP_SPEC_REV;
    // mpf[11] (feature byte 1) = 0: a configuration table is present.
    mpf[10] = checksum(&mpf);
    mpf
}

/// Writes the floating pointer at `start` and the table right after it.
/// `room` is how many bytes are available there.
pub fn setup_mptable(
    mem: &GuestMemoryMmap,
    start: u64,
    room: usize,
    num_cpus: u8,
    pci_irqs: &[PciIrq],
) -> Result<(), Error> {
    let table = build_table(num_cpus, pci_irqs)?;
    let total = MPF_SIZE + table.len();
    if total > room {
        return Err(Error::TooLarge(total));
    }
    let table_addr = start + MPF_SIZE as u64;
    let mpf = build_floating_pointer(table_addr as u32);
    mem.write_slice(&mpf, GuestAddress(start))
        .map_err(Error::Memory)?;
    mem.write_slice(&table, GuestAddress(table_addr))
        .map_err(Error::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    /// Parses the entries the way a kernel would: (type, bytes).
    fn entries(table: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let count = u16::from_le_bytes([table[34], table[35]]);
        let mut out = Vec::new();
        let mut off = MPC_HEADER_SIZE;
        for _ in 0..count {
            let size = if table[off] == ENTRY_CPU { 20 } else { 8 };
            out.push((table[off], table[off..off + size].to_vec()));
            off += size;
        }
        assert_eq!(off, table.len(), "entry count matches the length");
        out
    }

    #[test]
    fn table_checksums_and_layout() {
        let table = build_table(2, &[]).unwrap();
        assert_eq!(&table[0..4], b"PCMP");
        assert_eq!(sum(&table), 0);
        assert_eq!(
            u16::from_le_bytes([table[4], table[5]]) as usize,
            table.len()
        );
        assert_eq!(
            u32::from_le_bytes(table[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let e = entries(&table);
        let cpus: Vec<_> = e.iter().filter(|(t, _)| *t == ENTRY_CPU).collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].1[3], CPU_ENABLED | CPU_BOOTPROCESSOR);
        assert_eq!((cpus[1].1[1], cpus[1].1[3]), (1, CPU_ENABLED));
        let ioapic = e.iter().find(|(t, _)| *t == ENTRY_IOAPIC).unwrap();
        assert_eq!(ioapic.1[1], 2, "IO-APIC ID follows the CPUs");
        assert_eq!(
            u32::from_le_bytes(ioapic.1[4..8].try_into().unwrap()),
            0xfec0_0000
        );
        let isa: Vec<_> = e
            .iter()
            .filter(|(t, b)| *t == ENTRY_INTSRC && b[4] == BUS_ID_ISA)
            .collect();
        assert_eq!(isa.len(), 16);
        assert!(isa.iter().all(|(_, b)| b[5] == b[7]), "ISA IRQ n -> pin n");
        assert_eq!(e.iter().filter(|(t, _)| *t == ENTRY_LINTSRC).count(), 2);
    }

    #[test]
    fn pci_interrupt_routing_entries() {
        let table = build_table(
            1,
            &[PciIrq {
                slot: 3,
                pin: 0,
                ioapic_pin: 19,
            }],
        )
        .unwrap();
        assert_eq!(sum(&table), 0);
        let e = entries(&table);
        let pci: Vec<_> = e
            .iter()
            .filter(|(t, b)| *t == ENTRY_INTSRC && b[4] == BUS_ID_PCI)
            .collect();
        assert_eq!(pci.len(), 1);
        let b = &pci[0].1;
        assert_eq!(b[5], 3 << 2, "source bus IRQ encodes slot 3, INTA#");
        assert_eq!(b[7], 19);
        let isa = e
            .iter()
            .filter(|(t, b)| *t == ENTRY_INTSRC && b[4] == BUS_ID_ISA)
            .count();
        assert_eq!(isa, 16, "pin 19 is not an ISA pin");
        // A PCI line on an ISA pin takes it away from the ISA bus.
        let shared = build_table(
            1,
            &[PciIrq {
                slot: 3,
                pin: 0,
                ioapic_pin: 10,
            }],
        )
        .unwrap();
        let isa_pins: Vec<u8> = entries(&shared)
            .iter()
            .filter(|(t, b)| *t == ENTRY_INTSRC && b[4] == BUS_ID_ISA)
            .map(|(_, b)| b[7])
            .collect();
        assert_eq!(isa_pins.len(), 15);
        assert!(!isa_pins.contains(&10));
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), IRQ_FLAGS_PCI);
        let buses: Vec<_> = e.iter().filter(|(t, _)| *t == ENTRY_BUS).collect();
        assert_eq!(&buses[0].1[2..8], b"PCI   ");
        assert_eq!(buses[0].1[1], BUS_ID_PCI);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(build_table(0, &[]), Err(Error::TooManyCpus(0))));
        assert!(matches!(
            build_table(255, &[]),
            Err(Error::TooManyCpus(255))
        ));
        let bad = PciIrq {
            slot: 3,
            pin: 4,
            ioapic_pin: 19,
        };
        assert!(matches!(build_table(1, &[bad]), Err(Error::BadPciIrq(3))));
    }

    #[test]
    fn floating_pointer_is_found_and_valid() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        setup_mptable(&mem, 0x9fc00, 1024, 1, &[]).unwrap();
        let mut mpf = [0u8; 16];
        mem.read_slice(&mut mpf, GuestAddress(0x9fc00)).unwrap();
        assert_eq!(&mpf[0..4], b"_MP_");
        assert_eq!(sum(&mpf), 0);
        let ptr = u32::from_le_bytes(mpf[4..8].try_into().unwrap());
        assert_eq!(ptr, 0x9fc10);
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(u64::from(ptr)))
            .unwrap();
        assert_eq!(&sig, b"PCMP");
        assert!(matches!(
            setup_mptable(&mem, 0x9fc00, 64, 1, &[]),
            Err(Error::TooLarge(_))
        ));
    }
}
