//! The QEMU engine end to end (TCG, so it runs on any machine with QEMU):
//! the shipped operstate cells of Debian 6.1, stock and pre-fix, with and
//! without STATUS, through the harness's runner. The known matrix: only
//! the pre-fix driver without STATUS shows `state UNKNOWN`.
//!
//! Needs `qemu` (qemu-system-x86_64), `apt` (to build the guests the first
//! time) and `tap` (QEMU offers the default set's offloads only over TAP):
//! without them the test is reported as ignored, or fails when
//! `VNETLAB_REQUIRE` names the need (or says `all`). About 30 s once the
//! images are cached.

mod common;

use std::sync::Arc;

use harness::engine::qemu::{Accel, QemuEngine};
use harness::engine::Engine;
use testkit::suite::{Failed, Suite};

fn debian_6_1_operstate_matrix_on_qemu_tcg() -> Result<(), Failed> {
    let engine = QemuEngine::new(Accel::Tcg)?;
    eprintln!("engine: {}", engine.name());
    common::run_matrix(Arc::new(engine))
}

fn main() {
    let mut suite = Suite::new();
    suite.test(
        "debian_6_1_operstate_matrix_on_qemu_tcg",
        &[common::qemu(), common::apt(), common::tap()],
        debian_6_1_operstate_matrix_on_qemu_tcg,
    );
    suite.run()
}
