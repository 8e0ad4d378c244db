//! The vmm-guest engine end to end: the same Debian 6.1 operstate cells as
//! the QEMU engine's test, on the lab's own VMM and virtio-net device with
//! the full guest and its agent.
//!
//! It needs hardware-backed KVM (the need `hardware-kvm`): under an emulated
//! KVM such as this project's development and CI machines' no guest user
//! space runs, so there the test is reported as ignored with the reason
//! (CI sets `VNETLAB_REQUIRE=all,-hardware-kvm`). It also needs `apt` to
//! build the guests the first time.

mod common;

use std::sync::Arc;

use harness::engine::vmm_guest::VmmGuestEngine;
use harness::engine::Engine;
use testkit::suite::{Failed, Suite};

fn debian_6_1_operstate_matrix_on_our_vmm() -> Result<(), Failed> {
    let engine = VmmGuestEngine::make()?;
    eprintln!("engine: {}", engine.name());
    common::run_matrix(Arc::new(engine))
}

fn main() {
    let mut suite = Suite::new();
    suite.test(
        "debian_6_1_operstate_matrix_on_our_vmm",
        &[common::hardware_kvm(), common::apt()],
        debian_6_1_operstate_matrix_on_our_vmm,
    );
    suite.run()
}
