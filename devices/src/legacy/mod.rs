//! Legacy PC devices a Linux guest expects: the 16550 serial port, the i8042
//! controller (whose reset line ends the VM), the ACPI power-off and reset
//! registers, and a debug-exit port through which test guests finish with
//! an exit code.

mod acpi_pm;
mod debug_exit;
mod i8042;
mod serial;

pub use acpi_pm::{
    AcpiPm, ACPI_PM_SIZE, RESET_OFFSET, RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL_OFFSET,
    SLEEP_STATUS_OFFSET, SLP_EN, SLP_TYP_MASK, SLP_TYP_SHIFT,
};
pub use debug_exit::{DebugExit, DEBUG_EXIT_PORT};
pub use i8042::I8042;
pub use serial::{EventFdTrigger, Serial, SerialOutput};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the VM was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The guest reset the machine: through the i8042 controller (Linux's
    /// reboot with `reboot=k`) or the ACPI reset register.
    Reset,
    /// The guest powered the machine off (ACPI S5 through the sleep control
    /// register).
    PowerOff,
    /// The guest wrote a value to the debug-exit port.
    DebugExit(u8),
    /// The host asked (a test, the harness, the control socket).
    Host,
}

/// A stop request from a device or the host, read by the VMM's event
/// loop.
#[derive(Debug)]
pub struct StopRequest {
    evt: EventFd,
    reason: Mutex<Option<StopReason>>,
    requested: AtomicBool,
}

impl StopRequest {
    /// A request that has not fired yet.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            evt: EventFd::new(EFD_NONBLOCK)?,
            reason: Mutex::new(None),
            requested: AtomicBool::new(false),
        })
    }

    /// Records `why` (the first request wins) and wakes the event loop.
    pub fn request(&self, why: StopReason) {
        let mut reason = crate::sync::lock(&self.reason);
        if reason.is_none() {
            *reason = Some(why);
        }
        self.requested.store(true, Ordering::Release);
        if let Err(e) = self.evt.write(1) {
            log::error!("cannot signal the guest's stop request: {e}");
        }
    }

    /// Whether a stop was requested (cheap enough for a vCPU to check
    /// after every exit).
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The event written when a stop is requested.
    pub fn event(&self) -> &EventFd {
        &self.evt
    }

    /// The first stop requested, if any.
    pub fn reason(&self) -> Option<StopReason> {
        *crate::sync::lock(&self.reason)
    }
}
