//! The virtio-net lab's harness: boots guests and checks what their
//! virtio_net driver does, scenario by scenario, on an engine (our VMM,
//! QEMU, or a test double) and reports the results.

pub mod check;
pub mod diff;
pub mod engine;
pub mod host;
pub mod link;
pub mod outcome;
pub mod report;
pub mod reproduce;
pub mod runner;
pub mod scenario;
pub mod select;
pub mod serial;
pub mod trace;
