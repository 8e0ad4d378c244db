//! The tiny guest both VMMs run: the same instructions (print a few bytes
//! on the serial port, write 0 to the debug-exit port, halt), wrapped once
//! as the 64-bit ELF our `vmm` boots and once as a PVH ELF for QEMU.

use std::io;
use std::path::{Path, PathBuf};

use iced_x86::code_asm::{al, dx, CodeAssembler};
use testkit::guest::{DEBUG_EXIT_PORT, LOAD_ADDR, SERIAL_PORT};

/// What the guest writes to its serial port, and so what each VMM must
/// print on its standard output.
pub const MESSAGE: &[u8] = b"OK\n";

/// Xen's note type for the 32-bit physical entry point (PVH boot), from
/// xen/include/public/elfnote.h.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The guest's code for `bitness` (32 or 64), loaded at `LOAD_ADDR`:
/// `MESSAGE` to the serial port, 0 to the debug-exit port, then halt with
/// interrupts off so that a VMM that keeps the vCPU running a moment
/// longer does not spin.
fn code(bitness: u32) -> io::Result<Vec<u8>> {
    let assemble = || -> Result<Vec<u8>, iced_x86::IcedError> {
        let mut a = CodeAssembler::new(bitness)?;
        a.mov(dx, u32::from(SERIAL_PORT))?;
        for &b in MESSAGE {
            a.mov(al, u32::from(b))?;
            a.out(dx, al)?;
        }
        a.mov(dx, u32::from(DEBUG_EXIT_PORT))?;
        a.mov(al, 0u32)?;
        a.out(dx, al)?;
        let mut halt = a.create_label();
        a.set_label(&mut halt)?;
        a.cli()?;
        a.hlt()?;
        a.jmp(halt)?;
        a.assemble(LOAD_ADDR)
    };
    assemble()
        .map_err(|e| io::Error::other(format!("cannot assemble the {bitness}-bit guest: {e}")))
}

/// Writes the guest our `vmm` boots (entered in 64-bit mode at
/// `LOAD_ADDR`) into `dir`.
pub fn write_vmm_guest(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("tiny-vmm.elf");
    std::fs::write(&path, testkit::guest::elf(&code(64)?, LOAD_ADDR))?;
    Ok(path)
}

/// Writes the guest QEMU boots into `dir`: a 32-bit ELF with a PVH entry
/// note, which QEMU's `-kernel` loads and its firmware enters in 32-bit
/// protected mode with paging off.
pub fn write_pvh_guest(dir: &Path) -> io::Result<PathBuf> {
    let entry = u32::try_from(LOAD_ADDR).map_err(io::Error::other)?;
    let path = dir.join("tiny-pvh.elf");
    std::fs::write(&path, pvh_elf(&code(32)?, entry))?;
    Ok(path)
}

/// Wraps 32-bit `code` in an ELF32 executable with one loadable segment at
/// `entry` and a `XEN_ELFNOTE_PHYS32_ENTRY` note that points at it.
fn pvh_elf(code: &[u8], entry: u32) -> Vec<u8> {
    const EHDR: u32 = 52;
    const PHDR: u32 = 32;
    const PT_LOAD: u32 = 1;
    const PT_NOTE: u32 = 4;

    let mut note = Vec::with_capacity(20);
    note.extend_from_slice(&4u32.to_le_bytes()); // name size ("Xen\0")
    note.extend_from_slice(&4u32.to_le_bytes()); // descriptor size
    note.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&entry.to_le_bytes());
    let note_len = note.len() as u32;
    let note_off = EHDR + 2 * PHDR;
    let code_off = note_off + note_len; // 4-byte aligned, like the segment
    let code_len = code.len() as u32;

    let mut f = Vec::with_capacity((code_off + code_len) as usize);
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[1, 1, 1, 0]); // 32-bit, little endian, version 1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    f.extend_from_slice(&1u32.to_le_bytes()); // version
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&EHDR.to_le_bytes()); // program headers
    f.extend_from_slice(&0u32.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR as u16).to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&[0; 6]); // section header entry size, count, names
    debug_assert_eq!(f.len(), EHDR as usize);
    for field in [
        PT_LOAD, code_off, entry, entry, code_len, code_len, 5, /* R+X */ 4,
    ] {
        f.extend_from_slice(&field.to_le_bytes());
    }
    for field in [
        PT_NOTE, note_off, 0, 0, note_len, note_len, 4, /* R */
        4,
    ] {
        f.extend_from_slice(&field.to_le_bytes());
    }
    f.extend_from_slice(&note);
    debug_assert_eq!(f.len(), code_off as usize);
    f.extend_from_slice(code);
    f
}
