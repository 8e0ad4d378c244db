//! The power-management registers of a hardware-reduced ACPI machine: the
//! sleep control and sleep status registers and the reset register that
//! the FADT points at. Entering S5 (power-off) through the sleep control
//! register, or writing the reset value to the reset register, stops the
//! VM, as Cloud Hypervisor's `AcpiShutdownDevice` does.
//!
//! Register layout (one byte each, from the device's base port):
//!
//! | offset | register | guest writes | effect |
//! |--------|----------|--------------|--------|
//! | 0 | sleep control | `SLP_TYP << 2 \| SLP_EN` | with `SLP_TYP` = [`S5_SLEEP_TYPE`]: power-off |
//! | 1 | sleep status | `WAK_STS` (write 1 to clear) | none; it always reads 0 |
//! | 2 | reset | [`RESET_VALUE`] | reset |

use std::sync::Arc;

use super::{StopReason, StopRequest};
use crate::bus::BusDevice;

/// Offset of the sleep control register (FADT `SLEEP_CONTROL_REG`).
pub const SLEEP_CONTROL_OFFSET: u64 = 0;
/// Offset of the sleep status register (FADT `SLEEP_STATUS_REG`).
pub const SLEEP_STATUS_OFFSET: u64 = 1;
/// Offset of the reset register (FADT `RESET_REG`).
pub const RESET_OFFSET: u64 = 2;
/// How many ports the device takes.
pub const ACPI_PM_SIZE: u64 = 3;

/// The sleep type the DSDT's `\_S5` object declares: what the guest puts
/// in `SLP_TYP` to power off.
pub const S5_SLEEP_TYPE: u8 = 5;
/// The value the FADT tells the guest to write to the reset register.
pub const RESET_VALUE: u8 = 1;

/// Sleep control register: the sleep-enable bit (ACPI 6.5 section 4.8.3.7).
pub const SLP_EN: u8 = 1 << 5;
/// Sleep control register: where the sleep type starts.
pub const SLP_TYP_SHIFT: u8 = 2;
/// Sleep control register: the sleep type's bits.
pub const SLP_TYP_MASK: u8 = 0b111 << SLP_TYP_SHIFT;

/// The power-off and reset registers, reporting through a stop request.
#[derive(Debug)]
pub struct AcpiPm {
    stop: Arc<StopRequest>,
}

impl AcpiPm {
    /// A device that reports power-off and reset through `stop`.
    pub fn new(stop: Arc<StopRequest>) -> Self {
        Self { stop }
    }

    fn sleep_control(&self, value: u8) {
        if value & SLP_EN == 0 {
            return;
        }
        let sleep_type = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
        if sleep_type == S5_SLEEP_TYPE {
            log::info!("guest entered ACPI S5 through the sleep control register");
            self.stop.request(StopReason::PowerOff);
        } else {
            // Only \_S5 is declared, so a guest has no reason to ask for
            // another state; a bare-metal guest might. Nothing happens, as
            // on hardware without that state.
            log::debug!("guest asked for sleep type {sleep_type}, which this machine lacks");
        }
    }

    fn reset(&self, value: u8) {
        if value == RESET_VALUE {
            log::info!("guest wrote the reset value to the ACPI reset register");
            self.stop.request(StopReason::Reset);
        } else {
            log::debug!("guest wrote {value:#x} to the ACPI reset register; ignored");
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        // Sleep status never shows WAK_STS: the machine does not wake up.
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            SLEEP_CONTROL_OFFSET => self.sleep_control(value),
            RESET_OFFSET => self.reset(value),
            // Sleep status: clearing WAK_STS, which is never set.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (AcpiPm, Arc<StopRequest>) {
        let stop = Arc::new(StopRequest::new().unwrap());
        (AcpiPm::new(stop.clone()), stop)
    }

    #[test]
    fn s5_powers_off() {
        let (mut dev, stop) = device();
        // What Linux's acpi_hw_extended_sleep() does: clear WAK_STS, then
        // write SLP_TYP | SLP_EN.
        dev.write(0x600, SLEEP_STATUS_OFFSET, &[0x80]);
        assert_eq!(stop.reason(), None);
        dev.write(0x600, SLEEP_CONTROL_OFFSET, &[(5 << 2) | (1 << 5)]);
        assert_eq!(stop.reason(), Some(StopReason::PowerOff));
        let mut status = [0xffu8];
        dev.read(0x600, SLEEP_STATUS_OFFSET, &mut status);
        assert_eq!(status, [0], "WAK_STS stays clear");
    }

    #[test]
    fn other_sleep_writes_are_ignored() {
        let (mut dev, stop) = device();
        // S5 without SLP_EN, another sleep type with it, a wide access
        // with nothing in it, an empty one.
        dev.write(0x600, SLEEP_CONTROL_OFFSET, &[5 << 2]);
        dev.write(0x600, SLEEP_CONTROL_OFFSET, &[(3 << 2) | SLP_EN]);
        dev.write(0x600, SLEEP_CONTROL_OFFSET, &[0, 0, 0, 0]);
        dev.write(0x600, SLEEP_CONTROL_OFFSET, &[]);
        dev.write(0x600, 7, &[0x34]);
        assert_eq!(stop.reason(), None);
    }

    #[test]
    fn reset_value_resets() {
        let (mut dev, stop) = device();
        dev.write(0x600, RESET_OFFSET, &[0x06]);
        assert_eq!(stop.reason(), None, "only the declared value resets");
        dev.write(0x600, RESET_OFFSET, &[RESET_VALUE]);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
    }

    #[test]
    fn reads_are_zero() {
        let (mut dev, _) = device();
        let mut data = [0xaau8; 4];
        dev.read(0x600, 0, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
