//! The Linux zero page (`struct boot_params`): the e820 memory map, the
//! command line pointer, the initramfs location and the setup header fields
//! a boot loader fills in.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{EBDA_START, HIMEM_START};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// Errors from writing the zero page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More memory ranges than the zero page can hold.
    #[error("the e820 map has {0} entries, more than the zero page holds")]
    TooManyE820Entries(usize),
    /// Writing it to guest memory failed.
    #[error("cannot write the zero page to guest memory")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// What the boot loader tells the kernel.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// The setup header from a bzImage; `None` for an ELF vmlinux.
    pub setup_header: Option<setup_header>,
    /// Guest address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Its length, without the NUL.
    pub cmdline_len: usize,
    /// Guest address and size of the initramfs.
    pub initrd: Option<(u64, u64)>,
    /// Guest address of the ACPI RSDP, when the VM has ACPI tables (Linux
    /// then need not scan for it).
    pub acpi_rsdp: Option<u64>,
}

/// The e820 map for the given RAM ranges (start, length): low memory up to
/// the EBDA, the EBDA and BIOS area reserved, then RAM from 1 MiB on.
pub fn e820_map(ram: &[(GuestAddress, u64)]) -> Vec<boot_e820_entry> {
    let entry = |addr, size, kind| boot_e820_entry {
        addr,
        size,
        r#type: kind,
    };
    let mut map = Vec::new();
    for &(start, len) in ram {
        let (start, end) = (start.0, start.0 + len);
        if start < HIMEM_START {
            map.push(entry(start, EBDA_START.min(end) - start, E820_RAM));
            map.push(entry(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED));
            if end > HIMEM_START {
                map.push(entry(HIMEM_START, end - HIMEM_START, E820_RAM));
            }
        } else {
            map.push(entry(start, len, E820_RAM));
        }
    }
    map
}

/// Builds the zero page.
pub fn build_boot_params(
    info: &BootInfo,
    ram: &[(GuestAddress, u64)],
) -> Result<boot_params, Error> {
    let mut params = boot_params::default();
    if let Some(hdr) = info.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = info.cmdline_addr as u32;
    params.ext_cmd_line_ptr = (info.cmdline_addr >> 32) as u32;
    params.hdr.cmdline_size = info.cmdline_len as u32;
    if let Some((addr, size)) = info.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.ext_ramdisk_image = (addr >> 32) as u32;
        params.hdr.ramdisk_size = size as u32;
        params.ext_ramdisk_size = (size >> 32) as u32;
    }
    if let Some(rsdp) = info.acpi_rsdp {
        params.acpi_rsdp_addr = rsdp;
    }
    let map = e820_map(ram);
    if map.len() > params.e820_table.len() {
        return Err(Error::TooManyE820Entries(map.len()));
    }
    params.e820_table[..map.len()].copy_from_slice(&map);
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Writes `params` at `addr`.
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    params: &boot_params,
    addr: u64,
) -> Result<(), Error> {
    mem.write_obj(*params, GuestAddress(addr))
        .map_err(Error::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ram_ranges;

    #[test]
    fn e820_low_memory_only() {
        let map = e820_map(&ram_ranges(128).unwrap());
        let m: Vec<_> = map.iter().map(|e| (e.addr, e.size, e.r#type)).collect();
        assert_eq!(
            m,
            vec![
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED),
                (0x100000, (128 << 20) - 0x100000, E820_RAM),
            ]
        );
    }

    #[test]
    fn e820_with_memory_above_4g() {
        let map = e820_map(&ram_ranges(4096).unwrap());
        assert_eq!(map.len(), 4);
        let last = map[3];
        assert_eq!(
            (last.addr, last.size, last.r#type),
            (4 << 30, 1 << 30, E820_RAM)
        );
        let below = map[2];
        assert_eq!(below.addr + below.size, 0xc000_0000);
    }

    #[test]
    fn elf_kernel_zero_page() {
        let info = BootInfo {
            setup_header: None,
            cmdline_addr: 0x20000,
            cmdline_len: 12,
            initrd: Some((0x700_0000, 0x1234)),
            acpi_rsdp: Some(0xe_0000),
        };
        let p = build_boot_params(&info, &ram_ranges(128).unwrap()).unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 12);
        assert_eq!({ hdr.ramdisk_image }, 0x700_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x1234);
        assert_eq!(p.e820_entries, 3);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe_0000);

        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_params(&mem, &p, 0x7000).unwrap();
        // The setup header sits at 0x1f1 in the zero page; "HdrS" at 0x202.
        let magic: u32 = mem.read_obj(GuestAddress(0x7000 + 0x202)).unwrap();
        assert_eq!(magic, 0x5372_6448);
        let cmdline: u32 = mem.read_obj(GuestAddress(0x7000 + 0x228)).unwrap();
        assert_eq!(cmdline, 0x20000);
        // acpi_rsdp_addr sits at 0x70 (Documentation/arch/x86/zero-page.rst).
        let rsdp: u64 = mem.read_obj(GuestAddress(0x7000 + 0x70)).unwrap();
        assert_eq!(rsdp, 0xe_0000);
    }

    #[test]
    fn bzimage_header_is_kept() {
        let hdr = setup_header {
            version: 0x20f,
            xloadflags: 1,
            ..Default::default()
        };
        let info = BootInfo {
            setup_header: Some(hdr),
            cmdline_addr: 0x20000,
            cmdline_len: 1,
            initrd: None,
            acpi_rsdp: None,
        };
        let p = build_boot_params(&info, &ram_ranges(64).unwrap()).unwrap();
        let got = p.hdr;
        assert_eq!({ got.version }, 0x20f);
        assert_eq!({ got.type_of_loader }, 0xff);
        assert_eq!({ got.ramdisk_size }, 0);
        assert_eq!({ p.acpi_rsdp_addr }, 0, "no ACPI, no RSDP pointer");
    }
}
