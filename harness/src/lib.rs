//! The virtio-net lab's harness: boots guests on the lab's VMM and checks
//! what their virtio_net driver does.

pub mod host;
