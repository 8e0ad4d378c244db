//! How a VM run ended, and the process exit code for each ending.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | the guest ended the VM: ACPI power-off (S5) or reset through the ACPI registers (Linux `poweroff`, `reboot`), reset through the i8042 (`reboot` with `reboot=k`), a KVM shutdown/reset event, or 0 written to the debug-exit port |
//! | 1    | host-side error: bad input, KVM or I/O failure (the message says which) |
//! | 2    | command-line usage error |
//! | 3    | the guest triple-faulted (KVM_EXIT_SHUTDOWN) |
//! | 4    | KVM_EXIT_INTERNAL_ERROR: KVM could not run the guest (e.g. an instruction its emulator lacks) |
//! | 5    | the `--timeout` was reached |
//! | 6    | the VM stopped for another reason (halted for good, KVM_RUN failed, KVM entry failure, unexpected exit, the device thread failed) |
//! | 7    | stopped on the host's request (library callers, the control socket) |
//! | 100+N | the guest wrote N (1..=155) to the debug-exit port (port 0x501); larger N give 255 |

use std::time::Duration;

use crate::exit::InternalError;

/// Exit code: the guest ended the VM.
pub const EXIT_GUEST_DONE: i32 = 0;
/// Exit code: host-side error.
pub const EXIT_HOST_ERROR: i32 = 1;
/// Exit code: usage error (clap's own).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: triple fault.
pub const EXIT_TRIPLE_FAULT: i32 = 3;
/// Exit code: KVM internal error.
pub const EXIT_INTERNAL_ERROR: i32 = 4;
/// Exit code: timeout.
pub const EXIT_TIMEOUT: i32 = 5;
/// Exit code: other vCPU stop.
pub const EXIT_VCPU_STOPPED: i32 = 6;
/// Exit code: stopped on the host's request.
pub const EXIT_STOPPED: i32 = 7;
/// Base of the debug-exit codes.
pub const EXIT_DEBUG_BASE: i32 = 100;

/// Why a VM run ended (host errors are `Err` instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest reset the machine (ACPI reset register, i8042 or KVM
    /// reset event).
    GuestReset,
    /// The guest powered the machine off (ACPI S5 or KVM shutdown event).
    GuestPowerOff,
    /// The guest wrote this value to the debug-exit port.
    DebugExit(u8),
    /// The guest triple-faulted.
    TripleFault {
        /// Instruction pointer, if it could be read.
        rip: Option<u64>,
    },
    /// KVM could not go on running the guest.
    InternalError {
        /// The error's details.
        error: InternalError,
        /// Instruction pointer, if it could be read.
        rip: Option<u64>,
    },
    /// The time limit was reached.
    Timeout(Duration),
    /// A vCPU stopped for another reason.
    VcpuStopped(String),
    /// The host asked the VM to stop.
    Stopped,
}

impl Outcome {
    /// The guest instruction pointer the outcome reports, if any.
    pub fn rip(&self) -> Option<u64> {
        match self {
            Self::TripleFault { rip } | Self::InternalError { rip, .. } => *rip,
            _ => None,
        }
    }

    /// The process exit code for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::GuestReset | Self::GuestPowerOff | Self::DebugExit(0) => EXIT_GUEST_DONE,
            Self::DebugExit(n) => (EXIT_DEBUG_BASE + i32::from(*n)).min(255),
            Self::TripleFault { .. } => EXIT_TRIPLE_FAULT,
            Self::InternalError { .. } => EXIT_INTERNAL_ERROR,
            Self::Timeout(_) => EXIT_TIMEOUT,
            Self::VcpuStopped(_) => EXIT_VCPU_STOPPED,
            Self::Stopped => EXIT_STOPPED,
        }
    }
}

fn rip_text(rip: &Option<u64>) -> String {
    rip.map_or_else(String::new, |r| format!(" at RIP {r:#x}"))
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GuestReset => write!(f, "the guest reset the machine"),
            Self::GuestPowerOff => write!(f, "the guest powered the machine off"),
            Self::DebugExit(n) => write!(f, "the guest wrote {n} to the debug-exit port"),
            Self::TripleFault { rip } => {
                write!(f, "the guest triple-faulted{}", rip_text(rip))
            }
            Self::InternalError { error, rip } => write!(f, "{error}{}", rip_text(rip)),
            Self::Timeout(d) => write!(f, "timeout: the guest was still running after {d:?}"),
            Self::VcpuStopped(why) => write!(f, "{why}"),
            Self::Stopped => write!(f, "stopped on the host's request"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let outcomes = [
            Outcome::GuestReset,
            Outcome::TripleFault { rip: None },
            Outcome::InternalError {
                error: InternalError::from_parts(1, vec![]),
                rip: Some(0x1000),
            },
            Outcome::Timeout(Duration::from_secs(1)),
            Outcome::VcpuStopped("x".into()),
            Outcome::Stopped,
            Outcome::DebugExit(1),
        ];
        let codes: Vec<i32> = outcomes.iter().map(Outcome::exit_code).collect();
        assert_eq!(codes, vec![0, 3, 4, 5, 6, 7, 101]);
        assert_eq!(Outcome::GuestPowerOff.exit_code(), 0);
        assert_eq!(Outcome::DebugExit(0).exit_code(), 0);
        assert_eq!(Outcome::DebugExit(155).exit_code(), 255);
        assert_eq!(Outcome::DebugExit(200).exit_code(), 255);
    }

    #[test]
    fn descriptions() {
        let t = Outcome::TripleFault { rip: Some(0xdead) }.to_string();
        assert_eq!(t, "the guest triple-faulted at RIP 0xdead");
        let e = Outcome::InternalError {
            error: InternalError::from_parts(1, vec![1, 0x90_01]),
            rip: Some(0x10),
        };
        assert!(
            e.to_string().ends_with("instruction bytes: 90 at RIP 0x10"),
            "{e}"
        );
    }
}
