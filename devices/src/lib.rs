//! Devices of the virtio-net lab: the MMIO and port-I/O buses, the legacy PC
//! devices a Linux guest needs, and the virtio-net device with its transports
//! and backends.

pub mod bus;
pub mod error;
pub mod event_log;
pub mod legacy;
pub mod net;
pub mod pci;
pub mod ratelimit;
pub mod sync;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
