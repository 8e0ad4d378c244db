//! The virtio-net device (virtio 1.2 section 5.1): feature bits chosen bit by
//! bit, configuration space, queue processing and runtime link control.

pub mod chain;
pub mod config;
pub mod config_space;
pub mod ctrl;
pub mod ctrl_queue;
pub mod features;
pub mod pass;
pub mod rx;
pub mod rx_filter;
pub mod status;
pub mod tx;
