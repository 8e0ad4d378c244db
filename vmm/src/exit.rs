//! vCPU exit dispatch: one plain function from a `VcpuExit` to the port-I/O
//! or MMIO bus, or to a reason to stop. No port numbers live here; devices
//! are found on the buses by address.

use devices::Bus;
use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuExit;

/// KVM_SYSTEM_EVENT_SHUTDOWN.
const SYSTEM_EVENT_SHUTDOWN: u32 = 1;
/// KVM_SYSTEM_EVENT_RESET.
const SYSTEM_EVENT_RESET: u32 = 2;
/// KVM_INTERNAL_ERROR_EMULATION: the instruction emulator gave up.
pub const INTERNAL_ERROR_EMULATION: u32 = 1;
/// KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES.
const EMULATION_FLAG_INSTRUCTION_BYTES: u64 = 1;

/// What the vCPU loop does after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuAction {
    /// Run the vCPU again.
    Continue,
    /// Stop the VM for this reason.
    Stop(VcpuStop),
}

/// Why a vCPU stopped the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// KVM_EXIT_SHUTDOWN: the guest triple-faulted (or asked for a shutdown
    /// the CPU way).
    TripleFault,
    /// KVM_EXIT_SYSTEM_EVENT of type shutdown.
    PowerOff,
    /// KVM_EXIT_SYSTEM_EVENT of type reset.
    Reset,
    /// KVM_EXIT_INTERNAL_ERROR; the details are read from `kvm_run`.
    InternalError,
    /// Any other exit the VMM cannot continue from.
    Unexpected(String),
}

/// Dispatches one vCPU exit. Accesses no device claims are logged at debug
/// level; reads of them return all ones, as on a PC.
pub fn handle_exit(exit: VcpuExit<'_>, pio: &Bus, mmio: &Bus) -> VcpuAction {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                data.fill(0xff);
                log::debug!("unclaimed port read: {port:#x} ({} bytes)", data.len());
            }
        }
        VcpuExit::IoOut(port, data) => {
            if !pio.write(u64::from(port), data) {
                log::debug!("unclaimed port write: {port:#x} <- {data:02x?}");
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                data.fill(0xff);
                log::debug!("unclaimed MMIO read: {addr:#x} ({} bytes)", data.len());
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !mmio.write(addr, data) {
                log::debug!("unclaimed MMIO write: {addr:#x} <- {data:02x?}");
            }
        }
        VcpuExit::Shutdown => return VcpuAction::Stop(VcpuStop::TripleFault),
        VcpuExit::InternalError => return VcpuAction::Stop(VcpuStop::InternalError),
        VcpuExit::SystemEvent(SYSTEM_EVENT_SHUTDOWN, _) => {
            return VcpuAction::Stop(VcpuStop::PowerOff)
        }
        VcpuExit::SystemEvent(SYSTEM_EVENT_RESET, _) => return VcpuAction::Stop(VcpuStop::Reset),
        VcpuExit::Hlt => {
            // With the in-kernel local APIC, KVM handles HLT itself; an exit
            // here means a halted CPU nothing can wake.
            return VcpuAction::Stop(VcpuStop::Unexpected(
                "the vCPU halted and nothing can wake it".into(),
            ));
        }
        VcpuExit::FailEntry(reason, cpu) => {
            return VcpuAction::Stop(VcpuStop::Unexpected(format!(
                "KVM could not enter the guest (hardware entry failure reason {reason:#x} on CPU {cpu})"
            )))
        }
        other => {
            return VcpuAction::Stop(VcpuStop::Unexpected(format!(
                "unexpected vCPU exit: {other:?}"
            )))
        }
    }
    VcpuAction::Continue
}

/// The details of a KVM_EXIT_INTERNAL_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalError {
    /// KVM's suberror (1 = emulation failure).
    pub suberror: u32,
    /// The instruction bytes the emulator could not handle, when KVM gave
    /// them.
    pub insn_bytes: Option<Vec<u8>>,
    /// The raw exit data words.
    pub data: Vec<u64>,
}

impl InternalError {
    /// Reads the details from the `kvm_run` area after an internal-error
    /// exit.
    pub fn from_run(run: &kvm_run) -> Self {
        // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal` member of the
        // exit union is the one KVM filled; every bit pattern is a valid
        // value of its integer fields.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let data = internal.data[..ndata].to_vec();
        Self::from_parts(internal.suberror, data)
    }

    /// Decodes the suberror and data words. For an emulation failure with
    /// the instruction-bytes flag, the words after the flags hold the
    /// instruction length (one byte) and up to 15 instruction bytes.
    pub fn from_parts(suberror: u32, data: Vec<u64>) -> Self {
        let insn_bytes = (suberror == INTERNAL_ERROR_EMULATION
            && data.len() >= 2
            && data[0] & EMULATION_FLAG_INSTRUCTION_BYTES != 0)
            .then(|| {
                let bytes: Vec<u8> = data[1..].iter().flat_map(|w| w.to_le_bytes()).collect();
                let len = usize::from(bytes[0]).min(15).min(bytes.len() - 1);
                bytes[1..1 + len].to_vec()
            });
        Self {
            suberror,
            insn_bytes,
            data,
        }
    }
}

impl std::fmt::Display for InternalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.suberror {
            INTERNAL_ERROR_EMULATION => "emulation failure",
            2 => "simultaneous exceptions",
            3 => "delivery event failure",
            _ => "internal error",
        };
        write!(f, "KVM internal error, suberror {} ({what})", self.suberror)?;
        match &self.insn_bytes {
            Some(b) => {
                write!(f, ", instruction bytes:")?;
                for byte in b {
                    write!(f, " {byte:02x}")?;
                }
                Ok(())
            }
            None => write!(f, ", data: {:x?}", self.data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::BusDevice;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Scratch {
        log: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Scratch {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(0x40 + offset as u8);
        }
        fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
            self.log.push((offset, data.to_vec()));
        }
    }

    fn buses() -> (Bus, Bus, Arc<Mutex<Scratch>>, Arc<Mutex<Scratch>>) {
        let port_dev = Arc::new(Mutex::new(Scratch::default()));
        let mmio_dev = Arc::new(Mutex::new(Scratch::default()));
        let mut pio = Bus::new();
        pio.insert(port_dev.clone(), 0x3f8, 8).unwrap();
        let mut mmio = Bus::new();
        mmio.insert(mmio_dev.clone(), 0xd000_0000, 0x1000).unwrap();
        (pio, mmio, port_dev, mmio_dev)
    }

    #[test]
    fn port_io_goes_to_the_port_bus() {
        let (pio, mmio, port_dev, mmio_dev) = buses();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3f9, &[0x12]), &pio, &mmio),
            VcpuAction::Continue
        );
        let mut data = [0u8; 1];
        handle_exit(VcpuExit::IoIn(0x3fd, &mut data), &pio, &mmio);
        assert_eq!(data, [0x45]);
        assert_eq!(port_dev.lock().unwrap().log, vec![(1, vec![0x12])]);
        assert!(mmio_dev.lock().unwrap().log.is_empty());
    }

    #[test]
    fn mmio_goes_to_the_mmio_bus() {
        let (pio, mmio, port_dev, mmio_dev) = buses();
        handle_exit(VcpuExit::MmioWrite(0xd000_0070, &[1, 2, 3, 4]), &pio, &mmio);
        let mut data = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0xd000_0002, &mut data), &pio, &mmio);
        assert_eq!(data, [0x42; 4]);
        assert_eq!(mmio_dev.lock().unwrap().log, vec![(0x70, vec![1, 2, 3, 4])]);
        assert!(port_dev.lock().unwrap().log.is_empty());
    }

    #[test]
    fn unclaimed_accesses_read_all_ones_and_continue() {
        let (pio, mmio, ..) = buses();
        let mut data = [0u8; 2];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x80, &mut data), &pio, &mmio),
            VcpuAction::Continue
        );
        assert_eq!(data, [0xff, 0xff]);
        let mut data = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0x1000, &mut data), &pio, &mmio);
        assert_eq!(data, [0xff; 4]);
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x80, &[0]), &pio, &mmio),
            VcpuAction::Continue
        );
    }

    #[test]
    fn stop_reasons() {
        let (pio, mmio, ..) = buses();
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &pio, &mmio),
            VcpuAction::Stop(VcpuStop::TripleFault)
        );
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &pio, &mmio),
            VcpuAction::Stop(VcpuStop::InternalError)
        );
        assert_eq!(
            handle_exit(VcpuExit::SystemEvent(2, &[]), &pio, &mmio),
            VcpuAction::Stop(VcpuStop::Reset)
        );
        assert_eq!(
            handle_exit(VcpuExit::SystemEvent(1, &[]), &pio, &mmio),
            VcpuAction::Stop(VcpuStop::PowerOff)
        );
        assert!(matches!(
            handle_exit(VcpuExit::FailEntry(7, 0), &pio, &mmio),
            VcpuAction::Stop(VcpuStop::Unexpected(m)) if m.contains("0x7")
        ));
    }

    #[test]
    fn decodes_emulation_failure_instruction_bytes() {
        // flags = instruction bytes; then length 3 and `f0 48 0f` ...
        let insn = u64::from_le_bytes([3, 0xf0, 0x48, 0x0f, 0xc7, 0, 0, 0]);
        let e = InternalError::from_parts(1, vec![1, insn, 0, 0]);
        assert_eq!(e.insn_bytes, Some(vec![0xf0, 0x48, 0x0f]));
        let text = e.to_string();
        assert!(text.contains("suberror 1 (emulation failure)"), "{text}");
        assert!(text.contains("instruction bytes: f0 48 0f"), "{text}");

        let e = InternalError::from_parts(3, vec![0x80000b0e]);
        assert_eq!(e.insn_bytes, None);
        assert!(e.to_string().contains("data: [80000b0e]"));
        // A length byte larger than what follows is clamped.
        let e = InternalError::from_parts(1, vec![1, 0xff]);
        assert_eq!(e.insn_bytes, Some(vec![0, 0, 0, 0, 0, 0, 0]));
    }
}
