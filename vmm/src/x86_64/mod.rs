//! x86-64 specifics: boot-time CPU state (GDT, page tables, registers,
//! MSRs, CPUID, local APIC), the MP table, the ACPI tables and the Linux
//! zero page.

pub mod acpi;
pub mod bootparams;
pub mod cpuid;
pub mod gdt;
pub mod interrupts;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod regs;
