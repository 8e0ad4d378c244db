//! The minimal test kernel (linux-source-6.1 + kconfig/test-kernel-6.1.config,
//! everything built in, no ACPI) under QEMU TCG with virtio-net-pci: the
//! stock build shows `state UP` with and without STATUS, the pre-fix build
//! `state UNKNOWN` without STATUS.
//!
//! Off by default because the first run builds a kernel (about 6 minutes on
//! 2 cores): it is reported as ignored unless opted in to with
//! `VNETLAB_REQUIRE=kernel-build` (or `all`, as CI does), or with
//! `cargo test -p guest-images --test test_kernel -- --ignored`. It needs
//! qemu-system-x86_64 (the need `qemu`): without it the test is ignored, or
//! fails when `VNETLAB_REQUIRE` names `qemu` (or says `all`).

mod common;

use guest_images::exec::QEMU;
use guest_images::qemu::QemuBoot;
use guest_images::{
    AgentConfig, BuildContext, Cache, DriverVariant, InitramfsCompression, PowerOff,
};
use testkit::suite::{Failed, Need, Suite};

fn test_kernel_reproduces_the_operstate_matrix() -> Result<(), Failed> {
    let _ = env_logger::builder().is_test(true).try_init();
    let ctx = BuildContext::new(Cache::open_default(None).expect("cache"));
    for (variant, expected) in [
        (DriverVariant::Stock, ["UP", "UP"]),
        (DriverVariant::Prefix, ["UNKNOWN", "UP"]),
    ] {
        let started = std::time::Instant::now();
        let guest = guest_images::test_guest(&ctx, variant, InitramfsCompression::None)
            .expect("test kernel builds");
        eprintln!(
            "test kernel {variant}: ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for (status, want) in [(false, expected[0]), (true, expected[1])] {
            let agent = AgentConfig {
                steps: vec![
                    "ip link set eth0 up".into(),
                    "sleep 2".into(),
                    "ip link show eth0".into(),
                    "link_facts eth0".into(),
                ],
                timeout_secs: 90,
                poweroff: PowerOff::Reboot,
                load_modules: false,
                ..AgentConfig::default()
            };
            let boot = QemuBoot::new(
                guest.kernel.bzimage.clone(),
                guest.initramfs.path.clone(),
                agent,
                status,
            );
            let out = boot.run().expect("qemu runs");
            eprintln!(
                "test kernel {variant} status={status}: {:.1} s",
                out.elapsed.as_secs_f64()
            );
            let t = &out.transcript;
            assert!(
                t.done && !t.watchdog && !out.timed_out,
                "agent did not finish:\n{}",
                out.console_tail(40)
            );
            let show = t.step("ip link show eth0").expect("show ran");
            let first = show.output.first().cloned().unwrap_or_default();
            eprintln!("  {first}");
            let state = first
                .split_whitespace()
                .skip_while(|w| *w != "state")
                .nth(1)
                .unwrap_or("(none)");
            assert_eq!(
                state,
                want,
                "test kernel {variant} status={status}:\n{}",
                out.console_tail(40)
            );
        }
    }
    Ok(())
}

fn main() {
    let kernel_build = Need::OptIn {
        name: "kernel-build",
        cost: "builds Linux from source the first time (about 6 minutes on 2 cores)",
    };
    let mut suite = Suite::new();
    suite.test(
        "test_kernel_reproduces_the_operstate_matrix",
        &[kernel_build, common::tool("qemu", QEMU)],
        test_kernel_reproduces_the_operstate_matrix,
    );
    suite.run()
}
