//! The QEMU engine end to end (TCG, so it runs on any machine with QEMU):
//! the shipped operstate cells of Debian 6.1, stock and pre-fix, with and
//! without STATUS, through the harness's runner. The known matrix: only
//! the pre-fix driver without STATUS shows `state UNKNOWN`. The same cells
//! traced through the guest agent (issue 7): only that cell lacks
//! `netif_carrier_off <- virtnet_probe` and never runs link watch, and the
//! comparison says so. And a run the runner gives up on mid-scenario: a
//! timeout with the console so far, and no QEMU left behind.
//!
//! Needs `qemu` (qemu-system-x86_64), `apt` (to build the guests the first
//! time) and `tap` (QEMU offers the default set's offloads only over TAP):
//! without them the test is reported as ignored, or fails when
//! `VNETLAB_REQUIRE` names the need (or says `all`). About 45 s once the
//! images are cached.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::engine::qemu::{args_file, Accel, QemuEngine};
use harness::engine::{Engine, RunContext};
use testkit::suite::{ensure, Failed, Suite};

fn debian_6_1_operstate_matrix_on_qemu_tcg() -> Result<(), Failed> {
    let engine = QemuEngine::new(Accel::Tcg)?;
    eprintln!("engine: {}", engine.name());
    common::run_matrix(Arc::new(engine))
}

/// Whether a process whose command line contains `needle` is running.
fn running_with(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// The runner gives up in the middle of the flap (after the guest agent has
/// started): the engine returns a timeout with the console so far within
/// moments, and QEMU is gone.
fn a_cancelled_run_kills_qemu() -> Result<(), Failed> {
    common::prepare_images()?;
    let engine = QemuEngine::new(Accel::Tcg)?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/link-flap.toml");
    let flap = harness::scenario::load_file(&path)?
        .into_iter()
        .find(|s| s.name == "flap/6.1-stock/status")
        .ok_or("no flap scenario")?;
    let work = tempfile::tempdir()?;
    let ctx = RunContext::new(Duration::from_secs(120), work.path().to_path_buf());
    let watcher = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(100);
            while Instant::now() < until
                && !ctx.serial.lines().iter().any(|l| l.contains("STEP 1 END"))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            ctx.cancel.cancel();
            Instant::now()
        })
    };
    let result = engine.run(&flap, &ctx);
    let returned = Instant::now();
    let cancelled = watcher.join().map_err(|_| "the watcher panicked")?;
    let e = result
        .err()
        .ok_or("the flap finished before it was cancelled")?;
    ensure(e.kind() == "timed-out", || format!("not a timeout: {e}"))?;
    let took = returned.saturating_duration_since(cancelled);
    ensure(took < Duration::from_secs(3), || {
        format!("returned {took:?} after the cancel")
    })?;
    ensure(
        e.serial_tail().iter().any(|l| l.contains("AGENT START")),
        || {
            format!(
                "the serial tail lacks the agent's start: {:?}",
                e.serial_tail()
            )
        },
    )?;
    let args = std::fs::read_to_string(args_file(work.path()))?;
    let socket = args
        .lines()
        .find(|l| l.starts_with("unix:"))
        .ok_or("no QMP socket in the arguments")?;
    ensure(!running_with(socket), || {
        format!("QEMU ({socket}) still runs")
    })
}

/// The Debian 6.1 cells traced through the guest agent (tracefs function
/// tracer) under QEMU TCG: the same divergence as on our engine.
fn debian_6_1_traced_matrix_on_qemu_tcg() -> Result<(), Failed> {
    common::prepare_images()?;
    let engine = QemuEngine::new(Accel::Tcg)?;
    let text = common::run_traced_matrix(Arc::new(engine), "6.1")?;
    eprintln!("{text}");
    Ok(())
}

fn main() {
    let mut suite = Suite::new();
    suite.test(
        "debian_6_1_operstate_matrix_on_qemu_tcg",
        &[common::qemu(), common::apt(), common::tap()],
        debian_6_1_operstate_matrix_on_qemu_tcg,
    );
    suite.test(
        "debian_6_1_traced_matrix_on_qemu_tcg",
        &[common::qemu(), common::apt(), common::tap()],
        debian_6_1_traced_matrix_on_qemu_tcg,
    );
    suite.test(
        "a_cancelled_run_kills_qemu",
        &[common::qemu(), common::apt(), common::tap()],
        a_cancelled_run_kills_qemu,
    );
    suite.run()
}
