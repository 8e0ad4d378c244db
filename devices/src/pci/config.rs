//! A type-0 PCI configuration space: 256 bytes with a per-byte writable
//! mask, memory BARs whose sizing protocol falls out of that mask, and a
//! capability list.

use super::regs::*;
use super::BarRange;

/// Size of a (conventional) PCI configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Where the first capability goes: right after the type-0 header.
const FIRST_CAPABILITY: usize = 0x40;
/// Command register bits a guest may change.
const COMMAND_WRITABLE: u16 =
    COMMAND_MEMORY | COMMAND_MASTER | COMMAND_PARITY | COMMAND_SERR | COMMAND_INTX_DISABLE;

/// Errors in setting up a configuration space (VMM mistakes, not guest
/// input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciConfigError {
    /// There is no such BAR, or a 64-bit BAR does not fit after it.
    #[error("BAR {0} does not exist or has no room for a 64-bit BAR")]
    BarIndex(usize),
    /// The BAR (or the upper half of a 64-bit BAR) is already set up.
    #[error("BAR {0} is already in use")]
    BarInUse(usize),
    /// BAR sizes are powers of two of at least 16 bytes.
    #[error("BAR size {0:#x} is not a power of two of at least 16 bytes")]
    BarSize(u64),
    /// A BAR address is aligned to its size.
    #[error("BAR address {addr:#x} is not aligned to its size {size:#x}")]
    BarAlignment {
        /// The address.
        addr: u64,
        /// The size.
        size: u64,
    },
    /// A 32-bit BAR must lie below 4 GiB.
    #[error("32-bit BAR {addr:#x}+{size:#x} does not fit below 4 GiB")]
    Bar32Range {
        /// The address.
        addr: u64,
        /// The size.
        size: u64,
    },
    /// The capability does not fit in the configuration space.
    #[error("no room for a {0}-byte capability in the configuration space")]
    CapabilitySpace(usize),
    /// The capability's writable mask does not match its contents.
    #[error("the writable mask of a capability has {0} bytes instead of {1}")]
    CapabilityMask(usize, usize),
}

/// The identification part of a type-0 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciHeader {
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision_id: u8,
    /// Base class code.
    pub class_code: u8,
    /// Subclass code.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor_id: u16,
    /// Subsystem ID.
    pub subsystem_id: u16,
    /// Interrupt pin: 0 = none, 1 = INTA# ... 4 = INTD#.
    pub interrupt_pin: u8,
    /// Initial interrupt line (the OS may overwrite it).
    pub interrupt_line: u8,
}

/// The kind of a memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// A 32-bit memory BAR.
    Memory32,
    /// A 64-bit memory BAR, using two BAR slots.
    Memory64 {
        /// Whether the memory is prefetchable.
        prefetchable: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    size: u64,
    is_64: bool,
}

/// A type-0 configuration space.
#[derive(Clone)]
pub struct PciConfigSpace {
    regs: [u8; CONFIG_SPACE_SIZE],
    writable: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; NUM_BARS],
    // Set for the upper half of a 64-bit BAR.
    bar_upper: [bool; NUM_BARS],
    // Where the next capability goes, and the byte that must point to it.
    next_capability: usize,
    last_next_ptr: usize,
}

impl std::fmt::Debug for PciConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfigSpace")
            .field(
                "vendor_id",
                &format_args!("{:#06x}", self.read_u16(VENDOR_ID)),
            )
            .field(
                "device_id",
                &format_args!("{:#06x}", self.read_u16(DEVICE_ID)),
            )
            .field("command", &format_args!("{:#06x}", self.command()))
            .field("bars", &self.bars())
            .finish_non_exhaustive()
    }
}

impl PciConfigSpace {
    /// A single-function type-0 header with `header`'s identification, no
    /// BARs and no capabilities; command register 0 (nothing decoded).
    pub fn new(header: &PciHeader) -> Self {
        let mut c = Self {
            regs: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            bars: [None; NUM_BARS],
            bar_upper: [false; NUM_BARS],
            next_capability: FIRST_CAPABILITY,
            last_next_ptr: CAPABILITY_LIST,
        };
        c.set_u16(VENDOR_ID, header.vendor_id);
        c.set_u16(DEVICE_ID, header.device_id);
        c.set_u8(REVISION_ID, header.revision_id);
        c.set_u8(PROG_IF, header.prog_if);
        c.set_u8(SUBCLASS, header.subclass);
        c.set_u8(CLASS_CODE, header.class_code);
        c.set_u16(SUBSYSTEM_VENDOR_ID, header.subsystem_vendor_id);
        c.set_u16(SUBSYSTEM_ID, header.subsystem_id);
        c.set_u8(INTERRUPT_PIN, header.interrupt_pin);
        c.set_u8(INTERRUPT_LINE, header.interrupt_line);
        c.set_writable(COMMAND, &COMMAND_WRITABLE.to_le_bytes());
        c.set_writable(CACHE_LINE_SIZE, &[0xff, 0xff]);
        c.set_writable(INTERRUPT_LINE, &[0xff]);
        c
    }

    fn set_writable(&mut self, offset: usize, mask: &[u8]) {
        self.writable[offset..offset + mask.len()].copy_from_slice(mask);
    }

    /// Sets up memory BAR `index` at `addr` with `size` bytes. The guest can
    /// then size it (write all-ones, read back the size mask) and move it.
    pub fn add_memory_bar(
        &mut self,
        index: usize,
        addr: u64,
        size: u64,
        kind: BarKind,
    ) -> Result<(), PciConfigError> {
        let is_64 = matches!(kind, BarKind::Memory64 { .. });
        if index >= NUM_BARS || (is_64 && index + 1 >= NUM_BARS) {
            return Err(PciConfigError::BarIndex(index));
        }
        let used = |i: usize| self.bars[i].is_some() || self.bar_upper[i];
        if used(index) || (is_64 && used(index + 1)) {
            return Err(PciConfigError::BarInUse(index));
        }
        if size < 16 || !size.is_power_of_two() {
            return Err(PciConfigError::BarSize(size));
        }
        if addr % size != 0 {
            return Err(PciConfigError::BarAlignment { addr, size });
        }
        if !is_64 && (size > 1 << 31 || addr.checked_add(size).is_none_or(|e| e > 1 << 32)) {
            return Err(PciConfigError::Bar32Range { addr, size });
        }
        let flags = match kind {
            BarKind::Memory32 => 0,
            BarKind::Memory64 { prefetchable } => {
                BAR_MEM_TYPE_64 | if prefetchable { BAR_MEM_PREFETCH } else { 0 }
            }
        };
        let mask = !(size - 1);
        let reg = BAR0 + 4 * index;
        self.set_u32(reg, (addr as u32 & !0xf) | flags);
        self.set_writable(reg, &((mask as u32) & !0xf).to_le_bytes());
        if is_64 {
            self.set_u32(reg + 4, (addr >> 32) as u32);
            self.set_writable(reg + 4, &((mask >> 32) as u32).to_le_bytes());
            self.bar_upper[index + 1] = true;
        }
        self.bars[index] = Some(Bar { size, is_64 });
        Ok(())
    }

    /// The address BAR `index` is programmed with, if it is set up.
    pub fn bar_addr(&self, index: usize) -> Option<u64> {
        let bar = self.bars.get(index)?.as_ref()?;
        let reg = BAR0 + 4 * index;
        let low = u64::from(self.read_u32(reg) & !0xf);
        let high = if bar.is_64 {
            u64::from(self.read_u32(reg + 4)) << 32
        } else {
            0
        };
        Some(high | low)
    }

    /// The memory BARs as programmed now.
    pub fn bars(&self) -> Vec<BarRange> {
        (0..NUM_BARS)
            .filter_map(|index| {
                let size = self.bars[index]?.size;
                Some(BarRange {
                    index,
                    addr: self.bar_addr(index)?,
                    size,
                })
            })
            .collect()
    }

    /// Adds a capability with ID `id` whose bytes after the ID and next
    /// pointer are `body`, of which the guest may change the bits set in
    /// `writable`. Returns the capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, PciConfigError> {
        if writable.len() != body.len() {
            return Err(PciConfigError::CapabilityMask(writable.len(), body.len()));
        }
        let offset = self.next_capability;
        let len = 2 + body.len();
        if offset + len > CONFIG_SPACE_SIZE {
            return Err(PciConfigError::CapabilitySpace(len));
        }
        self.regs[offset] = id;
        self.regs[offset + 1] = 0;
        self.regs[offset + 2..offset + len].copy_from_slice(body);
        self.writable[offset + 2..offset + len].copy_from_slice(writable);
        // The capability list is a chain of byte pointers.
        self.regs[self.last_next_ptr] = offset as u8;
        self.last_next_ptr = offset + 1;
        self.next_capability = (offset + len).next_multiple_of(4);
        let status = self.read_u16(STATUS) | STATUS_CAP_LIST;
        self.set_u16(STATUS, status);
        Ok(offset)
    }

    /// The guest reads: bytes past the end read as all-ones.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|o| self.regs.get(o))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// The guest writes: only writable bits change.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i).filter(|&o| o < CONFIG_SPACE_SIZE) else {
                return;
            };
            let mask = self.writable[o];
            self.regs[o] = (self.regs[o] & !mask) | (b & mask);
        }
    }

    /// A byte, as the guest would read it.
    pub fn read_u8(&self, offset: usize) -> u8 {
        let mut b = [0u8; 1];
        self.read(offset, &mut b);
        b[0]
    }

    /// A little-endian word, as the guest would read it.
    pub fn read_u16(&self, offset: usize) -> u16 {
        let mut b = [0u8; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// A little-endian dword, as the guest would read it.
    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn set(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(dst) = self.regs.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Sets a byte regardless of the writable mask (device side).
    pub fn set_u8(&mut self, offset: usize, v: u8) {
        self.set(offset, &[v]);
    }

    /// Sets a word regardless of the writable mask (device side).
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.set(offset, &v.to_le_bytes());
    }

    /// Sets a dword regardless of the writable mask (device side).
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.set(offset, &v.to_le_bytes());
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND)
    }

    /// Whether memory space decoding is enabled.
    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1041,
            revision_id: 1,
            class_code: CLASS_NETWORK,
            subclass: SUBCLASS_ETHERNET,
            prog_if: 0,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
            interrupt_pin: 1,
            interrupt_line: 10,
        }
    }

    #[test]
    fn header_fields_and_read_only_bits() {
        let mut c = PciConfigSpace::new(&header());
        assert_eq!(c.read_u32(0), 0x1041_1af4);
        assert_eq!(c.read_u32(0x08), 0x0200_0001);
        assert_eq!(c.read_u32(0x2c), 0x1100_1af4);
        assert_eq!(c.read_u16(INTERRUPT_LINE), 0x010a);
        // IDs are read-only; the interrupt line and command are not.
        c.write(0, &[0xff; 4]);
        assert_eq!(c.read_u32(0), 0x1041_1af4);
        c.write(INTERRUPT_LINE, &[11, 4]);
        assert_eq!(c.read_u16(INTERRUPT_LINE), 0x010b);
        c.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.command(), COMMAND_WRITABLE);
        assert!(c.memory_enabled());
        // No capabilities yet, no expansion ROM.
        assert_eq!(c.read_u16(STATUS) & STATUS_CAP_LIST, 0);
        c.write(0x30, &[0xff; 4]);
        assert_eq!(c.read_u32(0x30), 0);
    }

    #[test]
    fn bar_sizing_protocol() {
        let mut c = PciConfigSpace::new(&header());
        c.add_memory_bar(
            0,
            0xc000_8000,
            0x8000,
            BarKind::Memory64 {
                prefetchable: false,
            },
        )
        .unwrap();
        c.add_memory_bar(2, 0xe000_0000, 0x1000, BarKind::Memory32)
            .unwrap();
        assert_eq!(c.read_u32(BAR0), 0xc000_8004);
        assert_eq!(c.read_u32(BAR0 + 4), 0);
        c.write(BAR0, &[0xff; 4]);
        c.write(BAR0 + 4, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0), 0xffff_8004);
        assert_eq!(c.read_u32(BAR0 + 4), 0xffff_ffff);
        c.write(BAR0 + 8, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0 + 8), 0xffff_f000);
        // Unused BARs size as 0.
        c.write(BAR0 + 12, &[0xff; 4]);
        assert_eq!(c.read_u32(BAR0 + 12), 0);
        // Relocation above 4 GiB.
        c.write(BAR0, &0x1000_0000u32.to_le_bytes());
        c.write(BAR0 + 4, &1u32.to_le_bytes());
        assert_eq!(c.bar_addr(0), Some(0x1_1000_0000));
        assert_eq!(
            c.bars(),
            vec![
                BarRange {
                    index: 0,
                    addr: 0x1_1000_0000,
                    size: 0x8000
                },
                BarRange {
                    index: 2,
                    addr: 0xffff_f000,
                    size: 0x1000
                },
            ]
        );
    }

    #[test]
    fn bar_errors() {
        let mut c = PciConfigSpace::new(&header());
        let k64 = BarKind::Memory64 { prefetchable: true };
        assert_eq!(
            c.add_memory_bar(5, 0, 0x1000, k64),
            Err(PciConfigError::BarIndex(5))
        );
        assert_eq!(
            c.add_memory_bar(6, 0, 0x1000, BarKind::Memory32),
            Err(PciConfigError::BarIndex(6))
        );
        assert_eq!(
            c.add_memory_bar(0, 0, 0x1800, k64),
            Err(PciConfigError::BarSize(0x1800))
        );
        assert!(matches!(
            c.add_memory_bar(0, 0x800, 0x1000, k64),
            Err(PciConfigError::BarAlignment { .. })
        ));
        assert!(matches!(
            c.add_memory_bar(0, 0x1_0000_0000, 0x1000, BarKind::Memory32),
            Err(PciConfigError::Bar32Range { .. })
        ));
        c.add_memory_bar(0, 0, 0x1000, k64).unwrap();
        assert_eq!(
            c.add_memory_bar(1, 0, 0x1000, BarKind::Memory32),
            Err(PciConfigError::BarInUse(1))
        );
        assert_eq!(c.read_u32(BAR0), 0xc);
    }

    #[test]
    fn capability_chain() {
        let mut c = PciConfigSpace::new(&header());
        let a = c.add_capability(0x11, &[1, 2, 3], &[0, 0xff, 0]).unwrap();
        let b = c.add_capability(0x09, &[4; 14], &[0; 14]).unwrap();
        assert_eq!((a, b), (0x40, 0x48));
        assert_ne!(c.read_u16(STATUS) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read_u8(CAPABILITY_LIST), 0x40);
        assert_eq!(c.read_u32(0x40), 0x0201_4811);
        assert_eq!(c.read_u16(0x48), 0x0009);
        c.write(0x42, &[9, 9, 9]);
        assert_eq!(c.read_u32(0x40), 0x0901_4811);
        assert_eq!(
            c.add_capability(0x09, &[0; 200], &[0; 200]),
            Err(PciConfigError::CapabilitySpace(202))
        );
        assert_eq!(
            c.add_capability(0x09, &[0; 2], &[0; 1]),
            Err(PciConfigError::CapabilityMask(1, 2))
        );
    }

    #[test]
    fn out_of_range_accesses() {
        let mut c = PciConfigSpace::new(&header());
        let mut d = [0u8; 4];
        c.read(254, &mut d);
        assert_eq!(d, [0, 0, 0xff, 0xff]);
        c.write(usize::MAX, &[1, 2]);
        c.write(255, &[1, 2]);
        c.read(usize::MAX, &mut d);
        assert_eq!(d, [0xff; 4]);
    }
}
