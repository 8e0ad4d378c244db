//! A debug-exit port, like QEMU's isa-debug-exit: a guest writes a byte and
//! the VM stops with that byte as the guest's exit status. Test guests and
//! the kernel-only probe use it to end a run cleanly.

use std::sync::Arc;

use super::{StopReason, StopRequest};
use crate::bus::BusDevice;

/// The port the debug-exit device is registered at (QEMU's default
/// isa-debug-exit I/O base).
pub const DEBUG_EXIT_PORT: u16 = 0x501;

/// Stops the VM with the value the guest writes.
#[derive(Debug)]
pub struct DebugExit {
    stop: Arc<StopRequest>,
}

impl DebugExit {
    /// A device that reports through `stop`.
    pub fn new(stop: Arc<StopRequest>) -> Self {
        Self { stop }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Some(&code) = data.first() {
                log::info!("guest wrote {code} to the debug-exit port");
                self.stop.request(StopReason::DebugExit(code));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_stop_with_code() {
        let stop = Arc::new(StopRequest::new().unwrap());
        let mut dev = DebugExit::new(stop.clone());
        assert_eq!(stop.reason(), None);
        dev.write(0x501, 0, &[7]);
        dev.write(0x501, 0, &[9]);
        assert_eq!(stop.reason(), Some(StopReason::DebugExit(7)));
        assert_eq!(stop.event().read().unwrap(), 2);
    }
}
