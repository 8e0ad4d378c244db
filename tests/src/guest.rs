//! Bare-metal guest programs for KVM tests: x86-64 code assembled with
//! iced-x86 and wrapped in a minimal ELF that the VMM boots like a vmlinux.
//!
//! The VMM enters the program in 64-bit mode with the first 4 GiB
//! identity-mapped, so a program can use the serial port, the debug-exit
//! port and MMIO in the hole below 4 GiB right away. Keep programs small:
//! on an emulated KVM a guest runs about 0.5 million instructions a second.
//! Use general-purpose registers only (the emulator stops at SSE).

use std::path::PathBuf;

use iced_x86::code_asm::{al, dx, CodeAssembler};
use iced_x86::IcedError;

/// Guest physical (and virtual) address the program is loaded and entered
/// at.
pub const LOAD_ADDR: u64 = 0x20_0000;
/// The first serial port.
pub const SERIAL_PORT: u16 = 0x3f8;
/// The VMM's debug-exit port.
pub const DEBUG_EXIT_PORT: u16 = 0x501;
/// The i8042 command port; 0xfe there resets the machine.
pub const I8042_COMMAND_PORT: u16 = 0x64;

/// A program under construction.
pub struct Program {
    /// The assembler; use it directly for anything the helpers lack.
    pub asm: CodeAssembler,
}

impl Default for Program {
    fn default() -> Self {
        Self::new()
    }
}

impl Program {
    /// An empty 64-bit program.
    pub fn new() -> Self {
        Self {
            asm: CodeAssembler::new(64).expect("64 is a valid bitness"),
        }
    }

    /// Writes `text` to the serial port, byte by byte.
    pub fn print(&mut self, text: &str) -> Result<&mut Self, IcedError> {
        self.asm.mov(dx, SERIAL_PORT as u32)?;
        for b in text.bytes() {
            self.asm.mov(al, b as u32)?;
            self.asm.out(dx, al)?;
        }
        Ok(self)
    }

    /// Writes `code` to the debug-exit port: the VM stops with it.
    pub fn debug_exit(&mut self, code: u8) -> Result<&mut Self, IcedError> {
        self.asm.mov(dx, DEBUG_EXIT_PORT as u32)?;
        self.asm.mov(al, code as u32)?;
        self.asm.out(dx, al)?;
        self.hang()
    }

    /// Writes `al` to the debug-exit port.
    pub fn debug_exit_al(&mut self) -> Result<&mut Self, IcedError> {
        self.asm.mov(dx, DEBUG_EXIT_PORT as u32)?;
        self.asm.out(dx, al)?;
        self.hang()
    }

    /// Resets the machine through the i8042, as Linux's `reboot=k` does.
    pub fn reset(&mut self) -> Result<&mut Self, IcedError> {
        self.asm.mov(al, 0xfe)?;
        self.asm.out(I8042_COMMAND_PORT as u32, al)?;
        self.hang()
    }

    /// Loops forever.
    pub fn hang(&mut self) -> Result<&mut Self, IcedError> {
        let mut here = self.asm.create_label();
        self.asm.set_label(&mut here)?;
        self.asm.jmp(here)?;
        Ok(self)
    }

    /// Assembles the program for `LOAD_ADDR`.
    pub fn assemble(&mut self) -> Result<Vec<u8>, IcedError> {
        self.asm.assemble(LOAD_ADDR)
    }

    /// Assembles the program and writes it as an ELF file into `dir`.
    pub fn write_elf(&mut self, dir: &std::path::Path, name: &str) -> std::io::Result<PathBuf> {
        let code = self
            .assemble()
            .map_err(|e| std::io::Error::other(format!("cannot assemble {name}: {e}")))?;
        let path = dir.join(name);
        std::fs::write(&path, elf(&code, LOAD_ADDR))?;
        Ok(path)
    }
}

/// The bare-metal C guest `virtio_net_probe` (tests/guests), built by this
/// crate's build script: a virtio-net driver probe for the PCI and
/// virtio-mmio transports. `Err` says why it could not be built.
pub fn virtio_net_probe() -> Result<PathBuf, String> {
    match (
        option_env!("GUEST_ELF_VIRTIO_NET_PROBE"),
        option_env!("GUEST_ERROR_VIRTIO_NET_PROBE"),
    ) {
        (Some(path), _) => Ok(PathBuf::from(path)),
        (None, Some(why)) => Err(format!("the virtio_net_probe guest was not built: {why}")),
        (None, None) => Err("the virtio_net_probe guest was not built".into()),
    }
}

/// Wraps `code` in an ELF64 executable with one loadable segment at
/// `addr`, entered at its first byte.
pub fn elf(code: &[u8], addr: u64) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut f = Vec::with_capacity(EHDR + PHDR + code.len());
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&addr.to_le_bytes()); // entry
    f.extend_from_slice(&(EHDR as u64).to_le_bytes()); // program headers
    f.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&(EHDR as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR as u16).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&[0; 6]); // section header entry size, count, names
    debug_assert_eq!(f.len(), EHDR);
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R+X
    f.extend_from_slice(&((EHDR + PHDR) as u64).to_le_bytes());
    f.extend_from_slice(&addr.to_le_bytes()); // vaddr
    f.extend_from_slice(&addr.to_le_bytes()); // paddr
    f.extend_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(&(code.len() as u64).to_le_bytes());
    f.extend_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_port_output() {
        let code = Program::new().print("A").unwrap().assemble().unwrap();
        // mov dx, 0x3f8; mov al, 0x41; out dx, al
        assert_eq!(code, [0x66, 0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee]);
    }

    #[test]
    fn elf_layout() {
        let f = elf(&[0xf4], LOAD_ADDR);
        assert_eq!(&f[0..4], b"\x7fELF");
        assert_eq!(f.len(), 64 + 56 + 1);
        assert_eq!(u64::from_le_bytes(f[24..32].try_into().unwrap()), LOAD_ADDR);
        assert_eq!(f[120], 0xf4);
    }
}
