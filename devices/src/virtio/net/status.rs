//! The device's counters and its status report: what the control socket's
//! `status` command returns, serializable as JSON.

use serde::Serialize;

use super::config::{MacAddr, Transport};
use super::features::FeatureSet;
use super::rx_filter::RxFilter;
use crate::net::BackendStatus;

/// Counters since the device was created (they survive resets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames the guest sent that left through the backend.
    pub tx_frames: u64,
    /// Their bytes (without virtio-net header).
    pub tx_bytes: u64,
    /// Frames the backend dropped (`none`, full queues).
    pub tx_dropped: u64,
    /// Frames the backend failed to send.
    pub tx_errors: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Their bytes (without virtio-net header).
    pub rx_bytes: u64,
    /// Frames not delivered: buffers too small, offloads the guest cannot
    /// take, runts, or the device not running.
    pub rx_dropped: u64,
    /// Frames the receive filter (RX mode, MAC and VLAN tables) refused.
    pub rx_filtered: u64,
    /// Frames without GSO longer than the negotiated MTU (plus the
    /// Ethernet header); also counted in `rx_dropped`.
    pub rx_over_mtu: u64,
    /// Backend receive errors.
    pub rx_errors: u64,
    /// Control commands answered.
    pub ctrl_commands: u64,
    /// Control commands answered VIRTIO_NET_ERR.
    pub ctrl_errors: u64,
    /// Queue notifications from the driver.
    pub queue_notifications: u64,
    /// Used-buffer interrupts raised.
    pub queue_interrupts: u64,
    /// Configuration-change interrupts raised.
    pub config_interrupts: u64,
    /// Malformed requests the device survived (see `GuestFault`).
    pub guest_faults: u64,
    /// Times the device entered DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
    /// Guest-triggered event-log entries left out by the rate limit
    /// (control commands, MAC writes, refused FEATURES_OK).
    pub events_suppressed: u64,
}

/// Per-queue activity since the last activation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue index.
    pub index: u16,
    /// `rx0`, `tx0`, ..., `ctrl`.
    pub role: String,
    /// Notifications from the driver.
    pub notifications: u64,
    /// Chains used.
    pub chains: u64,
    /// Interrupts raised.
    pub interrupts: u64,
}

/// A snapshot of the device for the control socket and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetStatus {
    /// The device name.
    pub id: String,
    /// Its transport.
    pub transport: Transport,
    /// Offered features.
    pub offered: FeatureSet,
    /// Acked features (empty before FEATURES_OK).
    pub acked: FeatureSet,
    /// The device status byte, as the transport last reported it.
    pub device_status: u8,
    /// Its bits by name (`ACKNOWLEDGE`, `DRIVER`, ...; see
    /// [`crate::virtio::transport::status::bit_names`]).
    pub device_status_names: Vec<&'static str>,
    /// The driver set DRIVER_OK and the queues run.
    pub active: bool,
    /// The device is in DEVICE_NEEDS_RESET.
    pub needs_reset: bool,
    /// The link state (the user's cable).
    pub link_up: bool,
    /// Whether a guest can learn link changes: VIRTIO_NET_F_STATUS offered.
    pub status_offered: bool,
    /// VIRTIO_NET_F_STATUS negotiated.
    pub status_negotiated: bool,
    /// The ANNOUNCE bit is set, waiting for the driver's ack.
    pub announce_pending: bool,
    /// The config `status` field as the driver reads it.
    pub config_status: u16,
    /// The configuration generation.
    pub config_generation: u32,
    /// The MAC address in config space.
    pub mac: MacAddr,
    /// The MTU in config space, when offered.
    pub mtu: Option<u16>,
    /// Queue pairs configured.
    pub max_queue_pairs: u16,
    /// Queue pairs the driver uses.
    pub queue_pairs: u16,
    /// The receive filter.
    pub rx_filter: RxFilter,
    /// Counters.
    pub counters: Counters,
    /// Per-queue activity.
    pub queues: Vec<QueueStats>,
    /// The backend.
    pub backend: BackendStatus,
}
