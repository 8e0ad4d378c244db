//! Per-vCPU CPUID: what KVM supports, with the topology fields (APIC IDs,
//! logical processor count) and the hypervisor bit filled in.
//!
//! On this project's emulated KVM the guest does not see what is set here
//! (environment.md); features are turned off through `clearcpuid=` there.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// Adjusts `cpuid` (from KVM_GET_SUPPORTED_CPUID) for vCPU `cpu_id` of
/// `num_cpus`.
pub fn patch_cpuid(cpuid: &mut CpuId, cpu_id: u8, num_cpus: u8) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                // EBX: initial APIC ID (31:24), logical processors (23:16),
                // CLFLUSH line size in 8-byte units (15:8).
                entry.ebx = (u32::from(cpu_id) << 24) | (u32::from(num_cpus) << 16) | (8 << 8);
                entry.ecx |= ECX_HYPERVISOR;
                if num_cpus > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // EAX 31:26: cores per package minus one.
                entry.eax &= !(0x3f << 26);
                entry.eax |= u32::from(num_cpus.saturating_sub(1) & 0x3f) << 26;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                patch_topology_entry(entry, cpu_id, num_cpus);
            }
            _ => {}
        }
    }
}

/// Level type "SMT" in ECX[15:8] of leaves 0xB/0x1F.
const LEVEL_TYPE_SMT: u32 = 1;
/// Level type "core".
const LEVEL_TYPE_CORE: u32 = 2;

/// Rewrites one sub-leaf of the extended topology leaves for a package of
/// `num_cpus` single-threaded cores, instead of keeping the host's shifts
/// and counts: sub-leaf 0 is the SMT level (1 thread, shift 0), sub-leaf 1
/// the core level (`num_cpus` cores, shift to cover their APIC IDs), and
/// the rest are invalid. EDX is the x2APIC ID on every sub-leaf.
fn patch_topology_entry(entry: &mut kvm_bindings::kvm_cpuid_entry2, cpu_id: u8, num_cpus: u8) {
    let core_shift = u32::from(num_cpus).next_power_of_two().trailing_zeros();
    let sub = entry.index;
    let (eax, ebx, level_type) = match sub {
        0 => (0, 1, LEVEL_TYPE_SMT),
        1 => (core_shift, u32::from(num_cpus), LEVEL_TYPE_CORE),
        _ => (0, 0, 0),
    };
    entry.eax = eax;
    entry.ebx = ebx;
    entry.ecx = (level_type << 8) | (sub & 0xff);
    entry.edx = u32::from(cpu_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn topology_fields_follow_the_cpu() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xffff_ffff,
                edx: EDX_HTT,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                // What a host with SMT might report on sub-leaf 0.
                eax: 1,
                ebx: 2,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                eax: 7,
                ebx: 64,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 2,
                eax: 9,
                ebx: 9,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 4,
                eax: 0xffff_ffff,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        patch_cpuid(&mut cpuid, 2, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        // Sub-leaf 0: SMT level, one thread per core.
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (0, 1, 0x100, 2));
        // Sub-leaf 1: core level, 4 cores need a 2-bit shift.
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx, e[2].edx), (2, 4, 0x201, 2));
        // Beyond: invalid level.
        assert_eq!((e[3].eax, e[3].ebx, e[3].ecx, e[3].edx), (0, 0, 2, 2));
        assert_eq!(e[4].eax >> 26, 3);

        patch_cpuid(&mut cpuid, 0, 1);
        assert_eq!(cpuid.as_slice()[0].edx & EDX_HTT, 0);
    }
}
