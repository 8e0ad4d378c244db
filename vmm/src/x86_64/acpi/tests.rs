//! The tables read back from guest memory the way a kernel reads them:
//! scan for the RSDP, check every checksum, follow the XSDT and the FADT.

use std::collections::BTreeMap;

use devices::legacy::{RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL_OFFSET, SLP_EN, SLP_TYP_SHIFT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::fadt::IAPC_BOOT_ARCH;
use super::*;
use crate::layout::{ACPI_PM_PORT, MPTABLE_START};
use crate::memory::ram_ranges;
use crate::x86_64::bootparams::{e820_map, E820_RESERVED};
use crate::x86_64::mptable;

/// FADT offsets (ACPI 6.5 table 5.9).
const FADT_DSDT: usize = 40;
const FADT_IAPC_BOOT_ARCH: usize = 109;
const FADT_FLAGS: usize = 112;
const FADT_RESET_REG: usize = 116;
const FADT_RESET_VALUE: usize = 128;
const FADT_X_DSDT: usize = 140;
const FADT_SLEEP_CONTROL: usize = 244;
const FADT_SLEEP_STATUS: usize = 256;
const FADT_LEN: usize = 276;

const FLAG_RESET_REG_SUP: u32 = 1 << 10;
const FLAG_HW_REDUCED_ACPI: u32 = 1 << 20;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Guest memory (first MiB) with the tables of `machine` written to it.
fn memory_with(machine: &Machine) -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let rsdp = setup_acpi(&mem, machine).unwrap();
    assert_eq!(rsdp, ACPI_START);
    mem
}

/// A table as a kernel reads it: the header's length, the whole table's
/// checksum.
fn read_table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let mut header = [0u8; 36];
    mem.read_slice(&mut header, GuestAddress(addr)).unwrap();
    let len = u32_at(&header, 4) as usize;
    assert!(len >= 36, "table at {addr:#x} is {len} bytes long");
    let mut table = vec![0u8; len];
    mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
    let signature = String::from_utf8_lossy(&table[0..4]).into_owned();
    assert_eq!(sum(&table), 0, "checksum of {signature} at {addr:#x}");
    table
}

/// What a kernel finds: every table by signature, with its address.
struct Found {
    rsdp_addr: u64,
    tables: BTreeMap<String, (u64, Vec<u8>)>,
}

impl Found {
    fn table(&self, signature: &str) -> &[u8] {
        &self.tables[signature].1
    }
}

/// Scans 0xe0000-0xfffff on 16-byte boundaries for the RSDP, as ACPICA's
/// `acpi_find_root_pointer()` does, then follows XSDT and FADT.
fn find_tables(mem: &GuestMemoryMmap) -> Found {
    let rsdp_addr = (0xe_0000u64..0x10_0000)
        .step_by(16)
        .find(|&a| {
            let mut r = [0u8; 36];
            mem.read_slice(&mut r, GuestAddress(a)).is_ok()
                && &r[0..8] == b"RSD PTR "
                && sum(&r[0..20]) == 0
        })
        .expect("an RSDP in the BIOS area");
    let mut rsdp = [0u8; 36];
    mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr)).unwrap();
    assert_eq!(rsdp[15], 2, "ACPI 2.0+ RSDP");
    assert_eq!(u32_at(&rsdp, 20), 36, "RSDP length");
    assert_eq!(sum(&rsdp), 0, "extended checksum");
    assert_eq!(u32_at(&rsdp, 16), 0, "no RSDT");
    let xsdt_addr = u64_at(&rsdp, 24);
    let xsdt = read_table(mem, xsdt_addr);
    assert_eq!(&xsdt[0..4], b"XSDT");
    let mut tables = BTreeMap::new();
    for entry in xsdt[36..].chunks(8) {
        let addr = u64::from_le_bytes(entry.try_into().unwrap());
        let table = read_table(mem, addr);
        let signature = String::from_utf8_lossy(&table[0..4]).into_owned();
        assert!(tables.insert(signature, (addr, table)).is_none());
    }
    let dsdt_addr = u64_at(&tables["FACP"].1, FADT_X_DSDT);
    tables.insert("DSDT".into(), (dsdt_addr, read_table(mem, dsdt_addr)));
    tables.insert("XSDT".into(), (xsdt_addr, xsdt));
    Found { rsdp_addr, tables }
}

/// The MADT's interrupt controller structures: (type, bytes).
fn madt_entries(madt: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 44;
    while off < madt.len() {
        let len = madt[off + 1] as usize;
        assert!(len >= 2 && off + len <= madt.len(), "entry at {off}");
        out.push((madt[off], madt[off..off + len].to_vec()));
        off += len;
    }
    out
}

const ONE_CPU: Machine = Machine {
    vcpus: 1,
    pci: None,
};

#[test]
fn tables_are_found_where_a_kernel_looks() {
    let found = find_tables(&memory_with(&ONE_CPU));
    assert_eq!(found.rsdp_addr, ACPI_START);
    let names: Vec<&str> = found.tables.keys().map(String::as_str).collect();
    assert_eq!(names, ["APIC", "DSDT", "FACP", "XSDT"]);

    // Every table lies in the BIOS area, reserved in the e820 map, and no
    // two overlap.
    let e820 = e820_map(&ram_ranges(128).unwrap());
    let mut spans: Vec<(u64, u64)> = found
        .tables
        .values()
        .map(|(addr, t)| (*addr, addr + t.len() as u64))
        .chain([(ACPI_START, ACPI_START + 36)])
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{pair:x?} overlap");
    }
    for (start, end) in spans {
        assert!(start >= ACPI_START && end <= HIMEM_START);
        assert!(
            e820.iter()
                .any(|e| e.r#type == E820_RESERVED && e.addr <= start && end <= e.addr + e.size),
            "{start:#x}..{end:#x} is not reserved in the e820 map"
        );
    }
}

#[test]
fn the_largest_mp_table_ends_below_the_acpi_tables() {
    let irqs: Vec<mptable::PciIrq> = (0..9)
        .map(|i| mptable::PciIrq {
            slot: 3 + i,
            pin: 0,
            ioapic_pin: 5 + i,
        })
        .collect();
    let table = mptable::build_table(mptable::MAX_CPUS, &irqs).unwrap();
    assert!(MPTABLE_START + 16 + table.len() as u64 <= ACPI_START);
}

#[test]
fn madt_lists_every_vcpu_and_the_ioapic() {
    for vcpus in [1u8, 2, 8, MAX_CPUS] {
        let found = find_tables(&memory_with(&Machine { vcpus, pci: None }));
        let madt = found.table("APIC");
        assert_eq!(u32_at(madt, 36), 0xfee0_0000, "local APIC address");
        let entries = madt_entries(madt);
        let lapics: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|(t, _)| *t == 0)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(lapics.len(), usize::from(vcpus));
        for (i, e) in lapics.iter().enumerate() {
            assert_eq!(e.len(), 8);
            assert_eq!((e[2], e[3]), (i as u8, i as u8), "UID and APIC ID");
            assert_eq!(u32_at(e, 4) & 1, 1, "enabled");
        }
        let ioapics: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|(t, _)| *t == 1)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(ioapics.len(), 1);
        let io = ioapics[0];
        assert_eq!(io[2], vcpus, "IO-APIC ID follows the vCPUs");
        assert_eq!(u32_at(io, 4), 0xfec0_0000);
        assert_eq!(u32_at(io, 8), 0, "GSI base");
        assert_eq!(entries.len(), usize::from(vcpus) + 1, "nothing else");
    }
}

#[test]
fn fadt_is_hardware_reduced_with_the_pm_registers() {
    let found = find_tables(&memory_with(&ONE_CPU));
    let fadt = found.table("FACP");
    assert_eq!(fadt.len(), FADT_LEN);
    assert_eq!(fadt[8], 6, "FADT major revision");
    assert_eq!(fadt[131], 5, "FADT minor revision");
    let flags = u32_at(fadt, FADT_FLAGS);
    assert_eq!(
        flags & (FLAG_HW_REDUCED_ACPI | FLAG_RESET_REG_SUP),
        FLAG_HW_REDUCED_ACPI | FLAG_RESET_REG_SUP
    );
    assert_eq!(
        u16::from_le_bytes([fadt[FADT_IAPC_BOOT_ARCH], fadt[FADT_IAPC_BOOT_ARCH + 1]]),
        IAPC_BOOT_ARCH
    );
    assert_eq!(IAPC_BOOT_ARCH & (1 << 3), 0, "MSI is supported");
    let port = u64::from(ACPI_PM_PORT);
    // Generic address structures: I/O space, 8 bits wide at offset 0, byte
    // access, the port.
    for (offset, addr) in [
        (FADT_SLEEP_CONTROL, port + SLEEP_CONTROL_OFFSET),
        (FADT_SLEEP_STATUS, port + 1),
        (FADT_RESET_REG, port + 2),
    ] {
        assert_eq!(&fadt[offset..offset + 4], &[1, 8, 0, 1], "GAS at {offset}");
        assert_eq!(u64_at(fadt, offset + 4), addr, "GAS at {offset}");
    }
    assert_eq!(fadt[FADT_RESET_VALUE], RESET_VALUE);
    assert_eq!(u32_at(fadt, FADT_DSDT), 0, "the DSDT is given as X_DSDT");
    assert_eq!(found.tables["DSDT"].0, u64_at(fadt, FADT_X_DSDT));
    // No PM1 blocks and no SCI on a hardware-reduced machine.
    assert_eq!(&fadt[46..48], &[0, 0], "SCI_INT");
    assert!(fadt[56..88].iter().all(|b| *b == 0), "legacy PM blocks");
}

/// The value of `\_S5`'s first package element: NameOp "_S5_" PackageOp
/// PkgLength NumElements, then an integer (ZeroOp, OneOp or BytePrefix).
fn s5_sleep_type(dsdt: &[u8]) -> u8 {
    let at = dsdt
        .windows(5)
        .position(|w| w == b"\x08_S5_")
        .expect("a Name(_S5_, ...) in the DSDT");
    let package = &dsdt[at + 5..];
    assert_eq!(package[0], 0x12, "_S5_ is a package");
    assert!(package[1] < 0x40, "one-byte PkgLength");
    assert!(package[2] >= 1, "at least one element");
    match package[3] {
        0x00 => 0,
        0x01 => 1,
        0x0a => package[4],
        op => panic!("unexpected opcode {op:#x} in _S5_"),
    }
}

#[test]
fn dsdt_declares_s5_and_the_serial_port() {
    let found = find_tables(&memory_with(&ONE_CPU));
    let dsdt = found.table("DSDT");
    assert_eq!(dsdt[8], 2, "DSDT revision 2: 64-bit integers");
    assert_eq!(s5_sleep_type(dsdt), S5_SLEEP_TYPE);
    // What Linux then writes to the sleep control register for S5 is what
    // the device powers off on.
    assert_eq!((S5_SLEEP_TYPE << SLP_TYP_SHIFT) | SLP_EN, 0x34);
    // \_SB.COM1: EisaId("PNP0501"), IO 0x3f8-0x3ff, IRQ 4 (extended
    // interrupt descriptor: consumer, edge, active high, exclusive).
    assert!(contains(dsdt, b"_SB_COM1"));
    assert!(contains(dsdt, &[0x0c, 0x41, 0xd0, 0x05, 0x01]));
    assert!(contains(dsdt, &[0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8]));
    assert!(contains(dsdt, &[0x89, 6, 0, 0x03, 1, 4, 0, 0, 0]));
    assert!(!contains(dsdt, b"PCI0"), "no PCI host bridge without PCI");
}

#[test]
fn dsdt_names_the_pci_host_bridge_and_its_routing() {
    let irqs = [
        mptable::PciIrq {
            slot: 3,
            pin: 0,
            ioapic_pin: 5,
        },
        mptable::PciIrq {
            slot: 4,
            pin: 0,
            ioapic_pin: 6,
        },
    ];
    let found = find_tables(&memory_with(&Machine {
        vcpus: 2,
        pci: Some(&irqs),
    }));
    let dsdt = found.table("DSDT");
    assert!(contains(dsdt, b"_SB_PCI0"));
    // EisaId("PNP0A03").
    assert!(contains(dsdt, &[0x0c, 0x41, 0xd0, 0x0a, 0x03]));
    // _CRS: bus 0 only, the configuration ports, the BAR window
    // 0xc0000000-0xcfffffff (a DWord memory descriptor, producer).
    assert!(contains(
        dsdt,
        &[0x88, 13, 0, 2, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    ));
    assert!(contains(dsdt, &[0x47, 1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8]));
    let mut window = vec![0x87, 23, 0, 0, 0x0c, 0x01];
    window.extend_from_slice(&0u32.to_le_bytes());
    window.extend_from_slice(&0xc000_0000u32.to_le_bytes());
    window.extend_from_slice(&0xcfff_ffffu32.to_le_bytes());
    window.extend_from_slice(&0u32.to_le_bytes());
    window.extend_from_slice(&0x1000_0000u32.to_le_bytes());
    assert!(contains(dsdt, &window));
    // _PRT: Package { 0x0003ffff, 0 (INTA#), 0 (no link), 5 }, ...
    assert!(contains(dsdt, b"_PRT\x12"));
    for (slot, gsi) in [(3u8, 5u8), (4, 6)] {
        let entry = [0x12, 11, 4, 0x0c, 0xff, 0xff, slot, 0, 0, 0, 0x0a, gsi];
        assert!(contains(dsdt, &entry), "_PRT entry for slot {slot}");
    }
}

#[test]
fn rejects_bad_vcpu_counts() {
    for vcpus in [0, 255] {
        assert!(matches!(
            build(&Machine { vcpus, pci: None }),
            Err(Error::CpuCount(n)) if n == vcpus
        ));
    }
}

#[test]
fn tables_are_small() {
    // The biggest machine: every vCPU, every PCI line.
    let irqs: Vec<mptable::PciIrq> = (0..9)
        .map(|i| mptable::PciIrq {
            slot: 3 + i,
            pin: 0,
            ioapic_pin: 5 + i,
        })
        .collect();
    let tables = build(&Machine {
        vcpus: MAX_CPUS,
        pci: Some(&irqs),
    })
    .unwrap();
    let (last, bytes) = tables.placed.iter().max_by_key(|(a, _)| *a).unwrap();
    assert!(last + bytes.len() as u64 - ACPI_START < 0x1000);
}
