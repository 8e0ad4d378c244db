//! The minimal test kernel (linux-source-6.1 + kconfig/test-kernel-6.1.config,
//! everything built in, no ACPI) under QEMU TCG with virtio-net-pci: the
//! stock build shows `state UP` with and without STATUS, the pre-fix build
//! `state UNKNOWN` without STATUS. Ignored by default because the first run
//! builds a kernel (about 6 minutes on 2 cores); run with
//! `cargo test -p guest-images --test test_kernel -- --ignored`.
//! Without qemu it prints SKIPPED (a failure with VNETLAB_REQUIRE_QEMU=1).

use guest_images::qemu::QemuBoot;
use guest_images::{
    AgentConfig, BuildContext, Cache, DriverVariant, InitramfsCompression, PowerOff,
};

#[test]
#[ignore = "builds Linux from source the first time (about 6 minutes on 2 cores); run with --ignored"]
fn test_kernel_reproduces_the_operstate_matrix() {
    if let Err(e) = guest_images::exec::find_tool(guest_images::exec::QEMU) {
        let msg = format!("SKIPPED: {e}");
        if std::env::var_os("VNETLAB_REQUIRE_QEMU").is_some_and(|v| v == "1") {
            panic!("{msg} (VNETLAB_REQUIRE_QEMU=1 makes this a failure)");
        }
        eprintln!("{msg}");
        return;
    }
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
}
