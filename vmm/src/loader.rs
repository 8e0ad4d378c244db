//! Kernel, initramfs and command line loading: recognises an ELF `vmlinux`
//! or a bzImage, checks that it fits in guest memory, and loads it through
//! linux-loader.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{CMDLINE_MAX_SIZE, HIMEM_START};

/// Bit 0 of the bzImage `xloadflags`: the kernel has a 64-bit entry point
/// at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry point in a loaded bzImage.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Where a kernel without an initrd limit may still have its initramfs:
/// the 64-bit boot protocol maps everything, but keep below 4 GiB.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0xffff_ffff;
const PAGE_SIZE: u64 = 0x1000;
/// The bzImage setup header fields this loader reads end here
/// (`init_size` at 0x260).
const BZIMAGE_HEADER_END: usize = 0x264;

/// Errors from loading the kernel, initramfs or command line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The kernel file is neither format.
    #[error("{} is not a kernel: it is neither an ELF vmlinux nor a bzImage", .0.display())]
    NotAKernel(PathBuf),
    /// A bzImage without the 64-bit entry point.
    #[error("{} is a bzImage without a 64-bit entry point (xloadflags lacks XLF_KERNEL_64)", .0.display())]
    No64BitEntry(PathBuf),
    /// A malformed ELF.
    #[error("{} is a malformed ELF kernel: {}", .0.display(), .1)]
    BadElf(PathBuf, String),
    /// The kernel does not fit in guest memory.
    #[error("the kernel needs guest memory up to {needed_mib} MiB, but the guest has only {have_mib} MiB below the MMIO hole; give it more with --memory")]
    KernelTooLarge {
        /// MiB needed.
        needed_mib: u64,
        /// MiB available.
        have_mib: u64,
    },
    /// linux-loader refused the image.
    #[error("cannot load the kernel {}", .0.display())]
    Load(PathBuf, #[source] linux_loader::loader::Error),
    /// The initramfs is empty.
    #[error("the initramfs {} is empty", .0.display())]
    InitrdEmpty(PathBuf),
    /// The initramfs does not fit.
    #[error("the initramfs ({size_mib} MiB) does not fit in guest memory after the kernel: {room_mib} MiB free below the kernel's initramfs limit; give the guest more with --memory")]
    InitrdTooLarge {
        /// Its size.
        size_mib: u64,
        /// Room left.
        room_mib: u64,
    },
    /// Reading the initramfs into guest memory failed.
    #[error("cannot copy the initramfs {} into guest memory", .0.display())]
    InitrdCopy(PathBuf, #[source] vm_memory::GuestMemoryError),
    /// The command line is empty.
    #[error("the kernel command line is empty")]
    CmdlineEmpty,
    /// The command line is too long.
    #[error("the kernel command line is {len} bytes long; the limit is {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command line has a character Linux cannot take.
    #[error("the kernel command line is invalid: {0}")]
    CmdlineInvalid(String),
    /// Writing the command line failed.
    #[error("cannot write the kernel command line to guest memory")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
}

/// The two kernel formats the VMM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`, entered at its ELF entry point.
    Elf,
    /// A bzImage, entered at its 64-bit entry point.
    BzImage,
}

/// Where the kernel was loaded.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    /// Its format.
    pub format: KernelFormat,
    /// Guest address of the 64-bit entry point.
    pub entry: u64,
    /// First guest address past the kernel's memory (for a bzImage, past
    /// the space its decompressor needs, `init_size`).
    pub end: u64,
    /// The bzImage setup header, to be copied into the zero page.
    pub setup_header: Option<setup_header>,
}

/// Recognises the format from the first bytes of the file.
pub fn detect_format(head: &[u8]) -> Option<KernelFormat> {
    if head.starts_with(b"\x7fELF") {
        Some(KernelFormat::Elf)
    } else if head.get(0x202..0x206) == Some(b"HdrS") {
        Some(KernelFormat::BzImage)
    } else {
        None
    }
}

/// The highest guest address an ELF kernel's loadable segments reach.
fn elf_extent(file: &mut File, path: &Path) -> Result<u64, Error> {
    let bad = |why: &str| Error::BadElf(path.to_owned(), why.to_owned());
    let io = |e| Error::Io(path.to_owned(), e);
    let mut ehdr = [0u8; 64];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_exact(&mut ehdr)
        .map_err(|_| bad("the ELF header is truncated"))?;
    if ehdr[4] != 2 {
        return Err(bad("not a 64-bit ELF"));
    }
    let u16_at = |o: usize| u16::from_le_bytes([ehdr[o], ehdr[o + 1]]);
    let phoff = u64::from_le_bytes(ehdr[32..40].try_into().unwrap_or_default());
    let phentsize = u64::from(u16_at(54));
    let phnum = u64::from(u16_at(56));
    if phentsize < 56 {
        return Err(bad("its program header size is too small"));
    }
    let mut end = 0u64;
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        file.seek(SeekFrom::Start(phoff + i * phentsize))
            .map_err(io)?;
        file.read_exact(&mut ph)
            .map_err(|_| bad("a program header is truncated"))?;
        let word = |o: usize| u64::from_le_bytes(ph[o..o + 8].try_into().unwrap_or_default());
        const PT_LOAD: u32 = 1;
        if u32::from_le_bytes(ph[0..4].try_into().unwrap_or_default()) != PT_LOAD {
            continue;
        }
        let (paddr, memsz) = (word(24), word(40));
        if paddr < HIMEM_START {
            return Err(bad(
                "a segment loads below 1 MiB, where the boot structures go",
            ));
        }
        let seg_end = paddr
            .checked_add(memsz)
            .ok_or_else(|| bad("a segment wraps around the address space"))?;
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(bad("it has no loadable segment"));
    }
    Ok(end)
}

/// The end of the RAM range that starts at 0 (the low memory the kernel,
/// boot structures and initramfs go into).
fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    mem.iter()
        .find(|r| r.start_addr().0 == 0)
        .map_or(0, |r| r.len())
}

fn mib_up(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Loads the kernel at `path` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, Error> {
    let mut file = File::open(path).map_err(|e| Error::Io(path.to_owned(), e))?;
    let mut head = vec![0u8; BZIMAGE_HEADER_END];
    let n = read_up_to(&mut file, &mut head).map_err(|e| Error::Io(path.to_owned(), e))?;
    head.truncate(n);
    let format = detect_format(&head).ok_or_else(|| Error::NotAKernel(path.to_owned()))?;
    let low_end = low_ram_end(mem);
    let too_large = |needed: u64| Error::KernelTooLarge {
        needed_mib: mib_up(needed),
        have_mib: low_end >> 20,
    };
    match format {
        KernelFormat::Elf => {
            let end = elf_extent(&mut file, path)?;
            if end > low_end {
                return Err(too_large(end));
            }
            let r = Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
                .map_err(|e| Error::Load(path.to_owned(), e))?;
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.0,
                // linux-loader leaves segments without file bytes (a pure
                // .bss) out of `kernel_end`; the initramfs must not go there.
                end: end.max(r.kernel_end),
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            if head.len() < BZIMAGE_HEADER_END {
                return Err(Error::NotAKernel(path.to_owned()));
            }
            let hdr = BzHeader::parse(&head);
            // xloadflags exists from boot protocol 2.12 on.
            if hdr.version < 0x20c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(Error::No64BitEntry(path.to_owned()));
            }
            let file_len = file
                .metadata()
                .map_err(|e| Error::Io(path.to_owned(), e))?
                .len();
            let needed = (HIMEM_START + file_len).max(hdr.runtime_end(HIMEM_START));
            if needed > low_end {
                return Err(too_large(needed));
            }
            let r = BzImage::load(
                mem,
                Some(GuestAddress(HIMEM_START)),
                &mut file,
                Some(GuestAddress(HIMEM_START)),
            )
            .map_err(|e| Error::Load(path.to_owned(), e))?;
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
                end: needed.max(r.kernel_end),
                setup_header: r.setup_header,
            })
        }
    }
}

/// The bzImage setup-header fields that decide where the kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BzHeader {
    version: u16,
    xloadflags: u16,
    relocatable: bool,
    kernel_alignment: u64,
    pref_address: u64,
    init_size: u64,
}

impl BzHeader {
    /// Reads the fields from the first `BZIMAGE_HEADER_END` bytes.
    fn parse(head: &[u8]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Self {
            version: u16_at(0x206),
            xloadflags: u16_at(0x236),
            relocatable: head[0x234] != 0,
            kernel_alignment: u64::from(u32_at(0x230)),
            pref_address: u64_at(0x258),
            init_size: u64::from(u32_at(0x260)),
        }
    }

    /// The end of the memory the kernel needs before it reads the memory
    /// map, when loaded at `load`: `init_size` bytes from its runtime start
    /// (Documentation/arch/x86/boot.rst, "init_size"). A relocatable kernel
    /// runs at `load` or `pref_address`, whichever is higher, aligned up to
    /// `kernel_alignment`; another one runs at `pref_address`.
    fn runtime_end(&self, load: u64) -> u64 {
        let start = if self.relocatable {
            let base = load.max(self.pref_address);
            match self.kernel_alignment {
                0 => base,
                a => base.div_ceil(a).saturating_mul(a),
            }
        } else {
            self.pref_address.max(load)
        };
        start.saturating_add(self.init_size)
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Loads the initramfs at the top of low memory (below the kernel's limit),
/// page aligned, above the kernel. Returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel: &LoadedKernel,
) -> Result<(u64, u64), Error> {
    let mut file = File::open(path).map_err(|e| Error::Io(path.to_owned(), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::Io(path.to_owned(), e))?
        .len();
    if size == 0 {
        return Err(Error::InitrdEmpty(path.to_owned()));
    }
    let limit = kernel
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|&m| m != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let top = low_ram_end(mem).min(limit.saturating_add(1));
    let floor = kernel.end.next_multiple_of(PAGE_SIZE);
    let room = top.saturating_sub(floor);
    if size > room {
        return Err(Error::InitrdTooLarge {
            size_mib: mib_up(size),
            room_mib: room >> 20,
        });
    }
    let addr = (top - size) & !(PAGE_SIZE - 1);
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| Error::InitrdCopy(path.to_owned(), e))?;
    Ok((addr, size))
}

/// Checks the command line and writes it at `addr`. Returns its length.
pub fn load_cmdline(
    mem: &GuestMemoryMmap,
    addr: u64,
    cmdline: &str,
    kernel: &LoadedKernel,
) -> Result<usize, Error> {
    let text = cmdline.trim();
    if text.is_empty() {
        return Err(Error::CmdlineEmpty);
    }
    // A bzImage says how long a command line it takes (without the NUL).
    let max = kernel
        .setup_header
        .map(|h| h.cmdline_size as usize)
        .filter(|&n| n > 0)
        .map_or(CMDLINE_MAX_SIZE - 1, |n| n.min(CMDLINE_MAX_SIZE - 1));
    if text.len() > max {
        return Err(Error::CmdlineTooLong {
            len: text.len(),
            max,
        });
    }
    let mut cl = Cmdline::new(max + 1).map_err(|e| Error::CmdlineInvalid(e.to_string()))?;
    cl.insert_str(text)
        .map_err(|e| Error::CmdlineInvalid(e.to_string()))?;
    linux_loader::loader::load_cmdline(mem, GuestAddress(addr), &cl)
        .map_err(Error::CmdlineWrite)?;
    Ok(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_formats() {
        assert_eq!(detect_format(b"\x7fELF\x02\x01"), Some(KernelFormat::Elf));
        let mut bz = vec![0u8; 0x210];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect_format(&bz), Some(KernelFormat::BzImage));
        assert_eq!(detect_format(b"#!/bin/sh\n"), None);
        assert_eq!(detect_format(b""), None);
    }

    fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-loader-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    /// A minimal ELF64 with one PT_LOAD segment of `code` at `paddr`.
    fn elf(paddr: u64, code: &[u8], memsz: u64) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&paddr.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&5u32.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // offset
        ph[16..24].copy_from_slice(&paddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    fn mem(mib: u64) -> GuestMemoryMmap {
        crate::memory::create_guest_memory(mib).unwrap()
    }

    #[test]
    fn loads_elf_and_initrd() {
        let m = mem(16);
        let k = tmp_file("k.elf", &elf(0x20_0000, &[0xf4], 0x1000));
        let kernel = load_kernel(&m, &k).unwrap();
        assert_eq!(kernel.format, KernelFormat::Elf);
        assert_eq!(kernel.entry, 0x20_0000);
        assert_eq!(kernel.end, 0x20_1000);
        let b: u8 = m.read_obj(GuestAddress(0x20_0000)).unwrap();
        assert_eq!(b, 0xf4);

        let i = tmp_file("initrd", &[7u8; 5000]);
        let (addr, size) = load_initrd(&m, &i, &kernel).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr % 0x1000, 0);
        assert!(addr + size <= 16 << 20 && addr >= kernel.end);
        let b: u8 = m.read_obj(GuestAddress(addr + 4999)).unwrap();
        assert_eq!(b, 7);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let m = mem(16);
        let k = tmp_file("big.elf", &elf(0x100_0000, &[0x90], 0x10_0000));
        assert!(matches!(
            load_kernel(&m, &k),
            Err(Error::KernelTooLarge {
                needed_mib: 17,
                have_mib: 16
            })
        ));
        let small = tmp_file("small.elf", &elf(0x20_0000, &[0x90], 0x10));
        let kernel = load_kernel(&m, &small).unwrap();
        let huge = tmp_file("huge-initrd", &vec![0u8; 16 << 20]);
        let err = load_initrd(&m, &huge, &kernel).unwrap_err();
        assert!(
            matches!(err, Error::InitrdTooLarge { size_mib: 16, .. }),
            "{err}"
        );
        let empty = tmp_file("empty-initrd", &[]);
        assert!(matches!(
            load_initrd(&m, &empty, &kernel),
            Err(Error::InitrdEmpty(_))
        ));
    }

    #[test]
    fn elf_segments_below_1_mib_are_refused_and_bss_counts() {
        let m = mem(16);
        let low = tmp_file("low.elf", &elf(0x8000, &[0xf4], 0x10));
        let err = load_kernel(&m, &low).unwrap_err();
        assert!(err.to_string().contains("below 1 MiB"), "{err}");
        // A second PT_LOAD with no file bytes (a .bss) ends the kernel.
        let mut two = elf(0x20_0000, &[0xf4], 0x1000);
        two[56..58].copy_from_slice(&2u16.to_le_bytes());
        let mut bss = two[64..120].to_vec();
        bss[16..24].copy_from_slice(&0x30_0000u64.to_le_bytes());
        bss[24..32].copy_from_slice(&0x30_0000u64.to_le_bytes());
        bss[32..40].copy_from_slice(&0u64.to_le_bytes());
        bss[40..48].copy_from_slice(&0x8_0000u64.to_le_bytes());
        two.splice(120..120, bss);
        // The code moved 56 bytes on.
        two[64 + 8..64 + 16].copy_from_slice(&176u64.to_le_bytes());
        let k = tmp_file("bss.elf", &two);
        let kernel = load_kernel(&m, &k).unwrap();
        assert_eq!(kernel.end, 0x38_0000, "the initramfs goes above this");
    }

    #[test]
    fn rejects_non_kernels_and_missing_files() {
        let m = mem(16);
        let text = tmp_file("notes.txt", b"hello, this is not a kernel");
        let err = load_kernel(&m, &text).unwrap_err();
        assert!(matches!(err, Error::NotAKernel(_)));
        assert!(err
            .to_string()
            .contains("neither an ELF vmlinux nor a bzImage"));
        let err = load_kernel(&m, Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, Error::Io(..)));
        let mut trunc = elf(0x20_0000, &[0x90], 0x10);
        trunc.truncate(70);
        let t = tmp_file("trunc.elf", &trunc);
        assert!(matches!(load_kernel(&m, &t), Err(Error::BadElf(..))));
    }

    #[test]
    fn bzimage_runtime_end_follows_the_boot_protocol() {
        let mut head = vec![0u8; BZIMAGE_HEADER_END];
        head[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        head[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        head[0x234] = 1;
        head[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        head[0x260..0x264].copy_from_slice(&0x300_0000u32.to_le_bytes());
        let hdr = BzHeader::parse(&head);
        assert_eq!(hdr.version, 0x20f);
        // Relocatable, loaded at 1 MiB: runs at pref_address (16 MiB).
        assert_eq!(hdr.runtime_end(0x10_0000), 0x100_0000 + 0x300_0000);
        // Loaded above pref_address: runs there, aligned up to 2 MiB.
        assert_eq!(hdr.runtime_end(0x110_0000), 0x120_0000 + 0x300_0000);
        // Not relocatable: runs at pref_address.
        let fixed = BzHeader {
            relocatable: false,
            ..hdr
        };
        assert_eq!(fixed.runtime_end(0x10_0000), 0x100_0000 + 0x300_0000);
    }

    #[test]
    fn bzimage_without_64bit_entry_is_refused() {
        let m = mem(16);
        let mut bz = vec![0u8; 0x1000];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let p = tmp_file("old.bzimage", &bz);
        assert!(matches!(load_kernel(&m, &p), Err(Error::No64BitEntry(_))));
        // A file that stops inside the setup header is not a kernel.
        bz.truncate(0x210);
        let p = tmp_file("cut.bzimage", &bz);
        assert!(matches!(load_kernel(&m, &p), Err(Error::NotAKernel(_))));
    }

    #[test]
    fn command_line_checks() {
        let m = mem(16);
        let kernel = LoadedKernel {
            format: KernelFormat::Elf,
            entry: 0,
            end: 0,
            setup_header: None,
        };
        assert!(matches!(
            load_cmdline(&m, 0x20000, "  ", &kernel),
            Err(Error::CmdlineEmpty)
        ));
        let long = "a".repeat(2048);
        assert!(matches!(
            load_cmdline(&m, 0x20000, &long, &kernel),
            Err(Error::CmdlineTooLong {
                len: 2048,
                max: 2047
            })
        ));
        let n = load_cmdline(&m, 0x20000, "console=ttyS0 quiet", &kernel).unwrap();
        assert_eq!(n, 19);
        let mut buf = [0u8; 20];
        m.read_slice(&mut buf, GuestAddress(0x20000)).unwrap();
        assert_eq!(&buf, b"console=ttyS0 quiet\0");
    }
}
