//! Ground truth from a reference that is not ours: each guest boots under
//! QEMU with TCG and QEMU's own virtio-net-pci, with VIRTIO_NET_F_STATUS
//! offered (`status=on`) and not (`status=off`); the guest agent runs
//! `ip link set eth0 up; ip link show eth0`.
//!
//! Expected: stock kernels show `state UP` both ways; the pre-fix driver
//! (bda7fab54828 reverted) shows `state UNKNOWN` without STATUS and
//! `state UP` with it.
//!
//! The tests need qemu-system-x86_64 (the need `qemu`) and apt-get (`apt`):
//! without them they are reported as ignored, or fail when `VNETLAB_REQUIRE`
//! names the need (or says `all`).
//! Artifacts are cached in the default cache (VNETLAB_CACHE to move it).

mod common;

use std::time::Instant;

use guest_images::exec::{APT_GET, QEMU};
use guest_images::qemu::QemuBoot;
use guest_images::{AgentConfig, BuildContext, Cache, DriverVariant, InitramfsCompression, Series};
use testkit::suite::{Failed, Suite};

fn context() -> BuildContext {
    let _ = env_logger::builder().is_test(true).try_init();
    BuildContext::new(Cache::open_default(None).expect("cache"))
}

const SHOW: &str = "ip link show eth0";

/// Boots one guest twice (STATUS on and off) and returns the `state` word
/// `ip link show eth0` printed in each case.
fn states(series: Series, variant: DriverVariant) -> [(bool, String); 2] {
    let ctx = context();
    let started = Instant::now();
    let guest = match guest_images::guest(&ctx, series, variant, InitramfsCompression::Gzip) {
        Ok(g) => g,
        Err(e) => {
            // Building needs the Debian archive; anything else is a real failure.
            panic!("building the {series} {variant} guest failed: {e}");
        }
    };
    eprintln!(
        "{series} {variant}: images ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut out = Vec::new();
    for status in [false, true] {
        let agent = AgentConfig {
            steps: vec![
                "ip link set eth0 up".into(),
                "sleep 2".into(),
                SHOW.into(),
                "cat /sys/class/net/eth0/operstate".into(),
                "link_facts eth0".into(),
            ],
            timeout_secs: 90,
            ..AgentConfig::default()
        };
        let boot = QemuBoot::new(
            guest.kernel.vmlinuz.clone(),
            guest.initramfs.path.clone(),
            agent,
            status,
        );
        let outcome = boot.run().expect("qemu runs");
        let t = &outcome.transcript;
        eprintln!(
            "{series} {variant} status={}: QEMU boot + steps took {:.1} s",
            if status { "on" } else { "off" },
            outcome.elapsed.as_secs_f64()
        );
        let context = || {
            format!(
                "console tail:\n{}\nqemu stderr:\n{}",
                outcome.console_tail(40),
                outcome.stderr
            )
        };
        assert!(
            !outcome.timed_out,
            "QEMU hit the host deadline; {}",
            context()
        );
        assert!(
            t.done && !t.watchdog,
            "the agent did not finish; {}",
            context()
        );
        assert!(
            t.modules.iter().all(|m| m.rc == 0),
            "a module failed to load: {:?}; {}",
            t.modules,
            context()
        );
        assert!(
            t.steps.iter().all(|s| s.rc == Some(0)),
            "a step failed: {:?}; {}",
            t.steps,
            context()
        );
        let show = t.step(SHOW).expect("the show step ran");
        let first = show.output.first().cloned().unwrap_or_default();
        let state = first
            .split_whitespace()
            .skip_while(|w| *w != "state")
            .nth(1)
            .unwrap_or("(none)")
            .to_string();
        eprintln!("  {first}");
        if let Some(facts) = t.step("link_facts eth0") {
            eprintln!("  {}", facts.text());
        }
        out.push((status, state));
    }
    [out[0].clone(), out[1].clone()]
}

fn expect(
    series: Series,
    variant: DriverVariant,
    without_status: &str,
    with_status: &str,
) -> Result<(), Failed> {
    let states = states(series, variant);
    assert_eq!(
        states[0],
        (false, without_status.to_string()),
        "{series} {variant} without STATUS"
    );
    assert_eq!(
        states[1],
        (true, with_status.to_string()),
        "{series} {variant} with STATUS"
    );
    Ok(())
}

fn main() {
    let needs = [common::tool("qemu", QEMU), common::tool("apt", APT_GET)];
    let mut suite = Suite::new();
    suite
        .test("stock_6_1_is_up_with_and_without_status", &needs, || {
            expect(Series::V6_1, DriverVariant::Stock, "UP", "UP")
        })
        .test("stock_6_12_is_up_with_and_without_status", &needs, || {
            expect(Series::V6_12, DriverVariant::Stock, "UP", "UP")
        })
        .test(
            "prefix_6_1_is_unknown_without_status_and_up_with_it",
            &needs,
            || expect(Series::V6_1, DriverVariant::Prefix, "UNKNOWN", "UP"),
        )
        .test(
            "prefix_6_12_is_unknown_without_status_and_up_with_it",
            &needs,
            || expect(Series::V6_12, DriverVariant::Prefix, "UNKNOWN", "UP"),
        );
    suite.run()
}
