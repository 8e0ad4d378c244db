//! The test kit shared by the lab's integration tests: tiny bare-metal
//! guest programs assembled in the test, and a test runner that reports a
//! test whose requirements (KVM, a kernel image, QEMU, ...) are missing as
//! skipped with the reason, never as passed.

pub mod guest;
pub mod suite;
