//! The guest physical address map: where the VMM puts boot structures, RAM,
//! the MMIO hole and the devices in it, and which port and IRQ each legacy
//! device uses.

/// Start of the GDT the VMM builds for 64-bit entry.
pub const BOOT_GDT_START: u64 = 0x500;
/// Start of the (empty) IDT loaded at entry, after the five GDT entries.
pub const BOOT_IDT_START: u64 = 0x530;
/// Top of the stack the boot vCPU starts with (grows down).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Top-level page table (PML4).
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of the four page directories that map 0..4 GiB with 2 MiB pages.
pub const PDE_START: u64 = 0xb000;
/// How much of the address space the boot page tables identity-map: all of
/// the first 4 GiB, so a kernel or a bare-metal test guest can reach RAM and
/// the MMIO hole without building page tables first.
pub const IDENTITY_MAP_SIZE: u64 = 4 << 30;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line accepted (Linux's COMMAND_LINE_SIZE on x86 is 2048,
/// including the terminating NUL).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Where the MP table goes: the start of the EBDA, the first place Linux
/// scans for the MP floating pointer.
pub const MPTABLE_START: u64 = 0x9fc00;
/// End of the low RAM the e820 map reports below 1 MiB (the EBDA follows).
pub const EBDA_START: u64 = MPTABLE_START;
/// Where the ACPI tables go: the RSDP at the start of the BIOS area
/// (0xe0000-0xfffff, which Linux scans for it, 16-byte aligned), the other
/// tables after it, up to `HIMEM_START`. The e820 map reserves the area, and
/// the MP table must end below it.
pub const ACPI_START: u64 = 0xe_0000;
/// Start of high memory; a bzImage's protected-mode code is loaded here.
pub const HIMEM_START: u64 = 0x10_0000;

/// The MMIO hole below 4 GiB: RAM above this address is relocated above
/// 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// Size of the MMIO hole.
pub const MMIO_HOLE_SIZE: u64 = (4 << 30) - MMIO_HOLE_START;
/// Where RAM continues above the hole.
pub const HIGH_RAM_START: u64 = 4 << 30;

/// The window for PCI BARs, at the start of the MMIO hole.
pub const PCI_MMIO_START: u64 = MMIO_HOLE_START;
/// Size of the PCI BAR window.
pub const PCI_MMIO_SIZE: u64 = 0x1000_0000;
/// First virtio-mmio device; the next ones follow every
/// `VIRTIO_MMIO_STRIDE` bytes.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Size of each virtio-mmio device's register window.
pub const VIRTIO_MMIO_STRIDE: u64 = 0x1000;

/// The IO-APIC's MMIO address (KVM's in-kernel IO-APIC).
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs' MMIO address.
pub const APIC_START: u64 = 0xfee0_0000;
/// Address KVM needs for the TSS of real-mode emulation (3 pages).
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// Address KVM needs for its identity-map page (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// The first serial port.
pub const SERIAL_PORT: u16 = 0x3f8;
/// Its interrupt line.
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 controller's ports 0x60..=0x64.
pub const I8042_PORT: u16 = 0x60;
/// The ACPI power-management registers (sleep control, sleep status,
/// reset: `devices::legacy::AcpiPm`), where Cloud Hypervisor has them and
/// QEMU's PIIX4/ICH9 have their PM block; nothing else of this machine
/// uses these ports.
pub const ACPI_PM_PORT: u16 = 0x600;
/// First IRQ handed to virtio-mmio devices (one each, in order).
pub const VIRTIO_MMIO_FIRST_IRQ: u32 = 5;
/// Number of IO-APIC pins (KVM's in-kernel IO-APIC has 24).
pub const IOAPIC_PINS: u32 = 24;
