//! Guest RAM: sizes, the regions around the MMIO hole, and their creation.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::layout::{HIGH_RAM_START, MMIO_HOLE_START};

/// Smallest guest memory accepted, in MiB.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest guest memory accepted, in MiB (1 TiB; the host decides whether
/// it can really back it, memory is only touched when used).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// Errors from creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The size is outside the accepted bounds.
    #[error("guest memory of {0} MiB is out of range ({MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB)")]
    Size(u64),
    /// The host could not map it.
    #[error("cannot map {0} MiB of guest memory")]
    Mmap(u64, #[source] vm_memory::mmap::FromRangesError),
}

/// The RAM ranges (start, length) for `mem_mib` MiB of guest memory: one
/// range below the MMIO hole, and one above 4 GiB for what does not fit.
pub fn ram_ranges(mem_mib: u64) -> Result<Vec<(GuestAddress, u64)>, Error> {
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&mem_mib) {
        return Err(Error::Size(mem_mib));
    }
    let size = mem_mib << 20;
    Ok(if size <= MMIO_HOLE_START {
        vec![(GuestAddress(0), size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(HIGH_RAM_START), size - MMIO_HOLE_START),
        ]
    })
}

/// Maps `mem_mib` MiB of anonymous guest memory.
pub fn create_guest_memory(mem_mib: u64) -> Result<GuestMemoryMmap, Error> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(mem_mib)?
        .into_iter()
        .map(|(a, l)| (a, l as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| Error::Mmap(mem_mib, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_split_around_the_hole() {
        assert_eq!(ram_ranges(256).unwrap(), vec![(GuestAddress(0), 256 << 20)]);
        assert_eq!(ram_ranges(3072).unwrap(), vec![(GuestAddress(0), 3 << 30)]);
        assert_eq!(
            ram_ranges(4096).unwrap(),
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 1 << 30)]
        );
        assert!(matches!(ram_ranges(1), Err(Error::Size(1))));
        assert!(matches!(ram_ranges(u64::MAX), Err(Error::Size(_))));
    }
}
