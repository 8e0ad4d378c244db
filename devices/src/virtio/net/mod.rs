//! The virtio-net device (virtio 1.2 section 5.1): feature bits chosen bit by
//! bit, configuration space, queue processing and runtime link control.

pub mod features;
