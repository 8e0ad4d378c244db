//! The GDT for 64-bit entry: segment descriptor encoding and its decoding
//! into the `kvm_segment`s loaded into the vCPU.

use kvm_bindings::kvm_segment;

/// A segment descriptor: `flags` holds the access byte (bits 0-7) and the
/// flags nibble (bits 12-15), as in the Intel SDM's layout shifted by 40.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// Null descriptor.
pub const NULL: u64 = 0;
/// 64-bit code, present, ring 0, execute/read, 4 KiB granularity.
pub const CODE64: u64 = gdt_entry(0xa09b, 0, 0xfffff);
/// Data, present, ring 0, read/write, 32-bit default, 4 KiB granularity.
pub const DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
/// A 64-bit TSS descriptor (busy); KVM needs a usable TR in long mode.
pub const TSS: u64 = gdt_entry(0x808b, 0, 0xfffff);

/// The boot GDT. The Linux 64-bit boot protocol wants `__BOOT_CS` = 0x10
/// and `__BOOT_DS` = 0x18, so code and data sit at indexes 2 and 3.
pub const BOOT_GDT: [u64; 5] = [NULL, NULL, CODE64, DATA, TSS];
/// Index of the code segment in `BOOT_GDT`.
pub const CODE_INDEX: u16 = 2;
/// Index of the data segment in `BOOT_GDT`.
pub const DATA_INDEX: u16 = 3;
/// Index of the TSS in `BOOT_GDT`.
pub const TSS_INDEX: u16 = 4;

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let raw = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0xffff)) as u32;
    if (entry >> 55) & 1 == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

/// Decodes descriptor `entry` at GDT index `index` into a KVM segment.
pub fn kvm_segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let present = bit(47);
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_decodes_as_long_mode_code() {
        let seg = kvm_segment_from_gdt(CODE64, CODE_INDEX);
        assert_eq!(seg.selector, 0x10);
        assert_eq!(seg.type_, 0xb);
        assert_eq!((seg.present, seg.s, seg.l, seg.db, seg.g), (1, 1, 1, 0, 1));
        assert_eq!(seg.limit, 0xffff_ffff);
        assert_eq!(seg.base, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let ds = kvm_segment_from_gdt(DATA, DATA_INDEX);
        assert_eq!(ds.selector, 0x18);
        assert_eq!((ds.type_, ds.db, ds.l, ds.s), (0x3, 1, 0, 1));
        let tss = kvm_segment_from_gdt(TSS, TSS_INDEX);
        assert_eq!((tss.selector, tss.type_, tss.s), (0x20, 0xb, 0));
        let null = kvm_segment_from_gdt(NULL, 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn base_and_limit_round_trip() {
        let e = gdt_entry(0x0093, 0x1234_5678, 0xabcde);
        let seg = kvm_segment_from_gdt(e, 1);
        assert_eq!(seg.base, 0x1234_5678);
        assert_eq!(seg.limit, 0xabcde);
    }
}
