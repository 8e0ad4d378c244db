//! The boot page tables: an identity map of the first 4 GiB with 2 MiB
//! pages, which covers the kernel, the zero page, the command line and the
//! MMIO hole.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{IDENTITY_MAP_SIZE, PDE_START, PDPTE_START, PML4_START};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;
const TWO_MIB: u64 = 2 << 20;
const ONE_GIB: u64 = 1 << 30;

/// Errors from writing the page tables.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the boot page tables to guest memory")]
pub struct Error(#[source] pub vm_memory::GuestMemoryError);

/// Writes PML4, PDPT and the page directories; returns the value for CR3.
pub fn setup_identity_map(mem: &GuestMemoryMmap) -> Result<u64, Error> {
    let directories = IDENTITY_MAP_SIZE / ONE_GIB;
    mem.write_obj(PDPTE_START | PRESENT | WRITABLE, GuestAddress(PML4_START))
        .map_err(Error)?;
    for d in 0..directories {
        let pd = PDE_START + d * 0x1000;
        mem.write_obj(pd | PRESENT | WRITABLE, GuestAddress(PDPTE_START + d * 8))
            .map_err(Error)?;
        for i in 0..512u64 {
            let phys = d * ONE_GIB + i * TWO_MIB;
            mem.write_obj(
                phys | PRESENT | WRITABLE | PAGE_SIZE_2M,
                GuestAddress(pd + i * 8),
            )
            .map_err(Error)?;
        }
    }
    Ok(PML4_START)
}

/// Walks the boot page tables the way the MMU would, for tests and
/// diagnostics: the physical address `virt` maps to, if any.
pub fn translate(mem: &GuestMemoryMmap, cr3: u64, virt: u64) -> Option<u64> {
    let entry = |table: u64, index: u64| -> Option<u64> {
        let e: u64 = mem.read_obj(GuestAddress(table + index * 8)).ok()?;
        (e & PRESENT != 0).then_some(e)
    };
    let addr_mask = 0x000f_ffff_ffff_f000u64;
    let pml4e = entry(cr3 & addr_mask, (virt >> 39) & 0x1ff)?;
    let pdpte = entry(pml4e & addr_mask, (virt >> 30) & 0x1ff)?;
    let pde = entry(pdpte & addr_mask, (virt >> 21) & 0x1ff)?;
    if pde & PAGE_SIZE_2M == 0 {
        return None;
    }
    Some((pde & 0x000f_ffff_ffe0_0000) | (virt & (TWO_MIB - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_the_first_4_gib() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = setup_identity_map(&mem).unwrap();
        assert_eq!(cr3, PML4_START);
        for addr in [
            0,
            0x1000,
            0x1234_5678,
            0xd000_0000,
            0xfee0_0000,
            0xffff_ffff,
        ] {
            assert_eq!(translate(&mem, cr3, addr), Some(addr), "{addr:#x}");
        }
        assert_eq!(translate(&mem, cr3, 4 << 30), None);
        let pde0: u64 = mem.read_obj(GuestAddress(PDE_START)).unwrap();
        assert_eq!(pde0, 0x83);
    }
}
