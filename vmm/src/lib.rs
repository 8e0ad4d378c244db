//! A minimal KVM virtual machine monitor for the virtio-net lab: boots a
//! Linux kernel (ELF vmlinux or bzImage) with a serial console, the legacy
//! devices Linux expects, and the lab's virtio-net devices.

pub mod config;
pub mod control;
pub mod exit;
pub mod layout;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod netdev;
pub mod outcome;
pub mod profile;
mod run;
pub mod symbols;
pub mod vcpu;
pub mod vm;
pub mod x86_64;

pub use config::{SerialTarget, VmConfig};
pub use machine::{Stopper, Vmm};
pub use outcome::Outcome;
