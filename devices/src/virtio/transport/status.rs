//! The device status byte: its bits as `u8` (virtio-bindings defines them
//! as `u32`) and a readable rendering for logs.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};

/// The guest found the device.
pub const ACKNOWLEDGE: u8 = VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
/// The guest knows how to drive the device.
pub const DRIVER: u8 = VIRTIO_CONFIG_S_DRIVER as u8;
/// The driver finished feature negotiation.
pub const FEATURES_OK: u8 = VIRTIO_CONFIG_S_FEATURES_OK as u8;
/// The driver is set up and ready to drive the device.
pub const DRIVER_OK: u8 = VIRTIO_CONFIG_S_DRIVER_OK as u8;
/// The device met an error it cannot recover from without a reset.
pub const NEEDS_RESET: u8 = VIRTIO_CONFIG_S_NEEDS_RESET as u8;
/// The guest gave up on the device.
pub const FAILED: u8 = VIRTIO_CONFIG_S_FAILED as u8;
/// The bits a driver may set.
pub const DRIVER_BITS: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | FAILED;

/// The status byte spelled out, e.g. `ACKNOWLEDGE|DRIVER`, for logs.
pub fn names(status: u8) -> String {
    const NAMES: [(u8, &str); 6] = [
        (ACKNOWLEDGE, "ACKNOWLEDGE"),
        (DRIVER, "DRIVER"),
        (FEATURES_OK, "FEATURES_OK"),
        (DRIVER_OK, "DRIVER_OK"),
        (NEEDS_RESET, "NEEDS_RESET"),
        (FAILED, "FAILED"),
    ];
    let mut out: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect();
    let unknown = status & !(DRIVER_BITS | NEEDS_RESET);
    if unknown != 0 {
        out.push(format!("{unknown:#04x}"));
    }
    if out.is_empty() {
        "RESET".to_string()
    } else {
        out.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_logs() {
        assert_eq!(names(0), "RESET");
        assert_eq!(names(ACKNOWLEDGE | DRIVER), "ACKNOWLEDGE|DRIVER");
        assert_eq!(
            names(DRIVER_OK | FEATURES_OK | NEEDS_RESET | 0x10),
            "FEATURES_OK|DRIVER_OK|NEEDS_RESET|0x10"
        );
    }
}
