//! The i8042 keyboard controller, reduced to what a Linux guest uses: the
//! reset line (command 0xFE on port 0x64), which stops the VM. Linux reboots
//! through it with `reboot=k`, and falls back to it without ACPI.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use super::{StopReason, StopRequest};
use crate::bus::BusDevice;

/// vm-superio's trigger, wired to the VM's stop request.
#[derive(Debug)]
struct ResetTrigger(Arc<StopRequest>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        log::info!("guest reset the i8042 controller");
        self.0.request(StopReason::Reset);
        Ok(())
    }
}

/// The i8042 controller at ports 0x60-0x64 (registered at 0x60, length 5).
pub struct I8042 {
    inner: I8042Device<ResetTrigger>,
}

impl std::fmt::Debug for I8042 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("I8042")
    }
}

impl I8042 {
    /// A controller whose reset line fires `stop`.
    pub fn new(stop: Arc<StopRequest>) -> Self {
        Self {
            inner: I8042Device::new(ResetTrigger(stop)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0, |o| self.inner.read(o));
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) {
            // The only error is the trigger's, which cannot fail.
            let _ = self.inner.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_stop() {
        let stop = Arc::new(StopRequest::new().unwrap());
        let mut dev = I8042::new(stop.clone());
        // A harmless command first.
        dev.write(0x60, 4, &[0x20]);
        assert_eq!(stop.reason(), None);
        dev.write(0x60, 4, &[0xfe]);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
    }
}
