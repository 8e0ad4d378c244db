//! The device status byte: its bits as `u8` (virtio-bindings defines them
//! as `u32`) and their names, for the event log and for log lines.
//!
//! The names are the spec's (virtio 1.2 section 2.1): `ACKNOWLEDGE`,
//! `DRIVER`, `FEATURES_OK`, `DRIVER_OK`, `DEVICE_NEEDS_RESET`, `FAILED`.
//! The event log's `device_status` entries carry them as lists, so a
//! reader can match `"set":["DRIVER_OK"]`.

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

const NAMES: [(u8, &str); 6] = [
    (ACKNOWLEDGE, "ACKNOWLEDGE"),
    (DRIVER, "DRIVER"),
    (FEATURES_OK, "FEATURES_OK"),
    (DRIVER_OK, "DRIVER_OK"),
    (NEEDS_RESET, "DEVICE_NEEDS_RESET"),
    (FAILED, "FAILED"),
];

/// The names of the defined bits set in `status`, lowest bit first
/// (bits the spec does not define are left out).
pub fn bit_names(status: u8) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| status & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The status byte spelled out for a log line, e.g. `ACKNOWLEDGE|DRIVER`,
/// `RESET` for 0, undefined bits in hexadecimal.
pub fn names(status: u8) -> String {
    let mut out: Vec<String> = bit_names(status).into_iter().map(String::from).collect();
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
            "FEATURES_OK|DRIVER_OK|DEVICE_NEEDS_RESET|0x10"
        );
        assert_eq!(bit_names(0), Vec::<&str>::new());
        assert_eq!(
            bit_names(0x0f),
            vec!["ACKNOWLEDGE", "DRIVER", "FEATURES_OK", "DRIVER_OK"]
        );
        assert_eq!(bit_names(0xd0), vec!["DEVICE_NEEDS_RESET", "FAILED"]);
    }
}
