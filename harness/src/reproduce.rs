//! `harness reproduce`: the original story in one command. It picks the
//! engine this host can run (ours wherever KVM exists), runs the operstate
//! matrix and the driver-reload sequence, prints expected next to observed,
//! and explains the cause (the carrier transition that never happened) and
//! the fix, with the evidence the original investigation had: the kernel
//! call traces of the two pre-fix cells (device with and without STATUS)
//! lined up, where `netif_carrier_off <- virtnet_probe` and the link-watch
//! chain are missing in the abnormal run.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, Registry};
use crate::host::KvmKind;
use crate::outcome::{RunReport, ScenarioResult, Verdict};
use crate::runner::{self, RunOptions};
use crate::scenario::{Driver, Kernel, Scenario};
use crate::trace::compare::{compare, Side, TraceComparison};
use crate::trace::{self, TraceRequest};

/// The scenario families `reproduce` runs.
pub const FAMILIES: [&str; 2] = ["operstate/", "reload/"];

/// The engine to use on this host, and why, in the order of preference.
pub fn engine_choice(kvm: &KvmKind) -> Vec<(&'static str, String)> {
    match kvm {
        KvmKind::Hardware => vec![
            (
                "vmm-guest",
                "KVM is hardware-backed: our VMM and device run the stock Debian guests with \
                 user space"
                    .into(),
            ),
            (
                "vmm-kernel-only",
                "KVM is hardware-backed: our VMM and device with the lab's test kernel".into(),
            ),
        ],
        KvmKind::Emulated(why) => vec![(
            "vmm-kernel-only",
            format!(
                "this host's KVM is an instruction emulator ({why}): no guest user space can run, \
                 so our VMM and device run the lab's test kernel, whose built-in probe does what \
                 `ip link` would"
            ),
        )],
        KvmKind::Absent(why) => vec![
            (
                "qemu-tcg",
                format!(
                    "there is no KVM ({why}): QEMU's own virtio-net under software emulation, not \
                     the lab's device"
                ),
            ),
            (
                "qemu",
                format!("there is no KVM ({why}): QEMU's own virtio-net, not the lab's device"),
            ),
        ],
    }
}

/// Creates the preferred engine that exists and can run here.
pub fn choose_engine(
    registry: &Registry,
    kvm: &KvmKind,
    forced: Option<&str>,
) -> Result<(Arc<dyn Engine>, String), String> {
    if let Some(name) = forced {
        return registry
            .create(Some(name))
            .map(|e| (e, format!("chosen with --engine {name}")));
    }
    let mut reasons = Vec::new();
    for (name, why) in engine_choice(kvm) {
        if !registry.engines().iter().any(|e| e.name == name) {
            continue;
        }
        match registry.create(Some(name)) {
            Ok(engine) => return Ok((engine, why)),
            Err(e) => reasons.push(e),
        }
    }
    Err(if reasons.is_empty() {
        format!("no engine for this host ({kvm}) is built into this harness")
    } else {
        reasons.join("; ")
    })
}

/// The matrix and reload scenarios `engine` can run.
pub fn select(all: Vec<Scenario>, engine: &dyn Engine) -> Vec<Scenario> {
    all.into_iter()
        .filter(|s| FAMILIES.iter().any(|f| s.name.starts_with(f)))
        .filter(|s| engine.supports(s).is_ok())
        .collect()
}

/// The pre-fix operstate cells whose traces `reproduce` lines up: (the
/// normal run, device with STATUS; the abnormal run, without), for the
/// first kernel that has both among `scenarios` (Debian 6.1, then the test
/// kernel, then Debian 6.12).
pub fn trace_pair(scenarios: &[Scenario]) -> Option<(String, String)> {
    let cell = |kernel: Kernel, without_status: bool| {
        scenarios.iter().find(|s| {
            s.name.starts_with("operstate/")
                && s.guest.kernel == kernel
                && s.guest.driver == Driver::Prefix
                && s.device.offers_status() != without_status
        })
    };
    [Kernel::Debian61, Kernel::Test, Kernel::Debian612]
        .into_iter()
        .find_map(|k| Some((cell(k, false)?.name.clone(), cell(k, true)?.name.clone())))
}

/// Asks the pair's scenarios for the link-state trace.
pub fn enable_traces(scenarios: &mut [Scenario], pair: &(String, String)) {
    for s in scenarios.iter_mut() {
        if s.name == pair.0 || s.name == pair.1 {
            s.trace = Some(TraceRequest::link_state());
        }
    }
}

/// What the traces of the pair say.
#[derive(Debug)]
pub enum TraceEvidence {
    /// They show the cause: the comparison, to print.
    Confirms(TraceComparison),
    /// They show something else: the comparison and what is off.
    Contradicts(TraceComparison, String),
    /// There are none to compare, and why.
    Unavailable(String),
}

/// Lines up the pair's traces in `report` and checks them against the
/// cause: in the abnormal run `netif_carrier_off <- virtnet_probe` is
/// missing and the link-watch chain never ran.
pub fn trace_evidence(report: &RunReport, pair: &(String, String)) -> TraceEvidence {
    let find = |name: &str| report.results.iter().find(|r| r.scenario.name == name);
    let (Some(normal), Some(abnormal)) = (find(&pair.0), find(&pair.1)) else {
        return TraceEvidence::Unavailable("the pre-fix cells did not run".into());
    };
    let (ta, tb) = match (trace::of_result(normal), trace::of_result(abnormal)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return TraceEvidence::Unavailable(e),
    };
    let (steps_a, steps_b) = (normal.scenario.step_words(), abnormal.scenario.step_words());
    let c = compare(
        &Side {
            name: "the normal run",
            scenario: &pair.0,
            engine: &report.engine,
            steps: &steps_a,
            trace: ta,
        },
        &Side {
            name: "the abnormal run",
            scenario: &pair.1,
            engine: &report.engine,
            steps: &steps_b,
            trace: tb,
        },
    );
    const CAUSE: &str = "netif_carrier_off <- virtnet_probe";
    let missing = c
        .calls
        .iter()
        .any(|x| x.call == CAUSE && x.a > 0 && x.b == 0);
    let chain = c.chains.iter().any(|ch| ch.never_in == "B");
    match (missing, chain) {
        (true, true) => TraceEvidence::Confirms(c),
        _ => {
            let mut off = Vec::new();
            if !missing {
                off.push(format!(
                    "`{CAUSE}` is not missing in the abnormal run ({} calls against {})",
                    tb.events.iter().filter(|e| e.call() == CAUSE).count(),
                    ta.events.iter().filter(|e| e.call() == CAUSE).count()
                ));
            }
            if !chain {
                off.push(
                    "the link-watch chain did not stay silent in the abnormal run only".into(),
                );
            }
            TraceEvidence::Contradicts(c, off.join("; "))
        }
    }
}

/// What the bug is and why it happens.
const CAUSE: &str = "\
Why: before Linux commit bda7fab54828 (\"virtio-net: Fix operstate for virtio when no
VIRTIO_NET_F_STATUS\", v4.17), virtnet_probe() called netif_carrier_off() only when the
device offered VIRTIO_NET_F_STATUS. Without STATUS it called netif_carrier_on() on a
carrier that was already on: no carrier transition, so no link-watch event, so
dev->operstate stayed IF_OPER_UNKNOWN and `ip link` shows `state UNKNOWN` with
carrier_changes 0 (the interface works; only its state is wrong). Reloading the driver
runs the same probe path, so `rmmod virtio_net; modprobe virtio_net` does not help, and a
device that offers STATUS (QEMU's default; the original cloud case had status=off) hides
the bug.";

/// What the traces show, said only when they do.
const TRACES_SHOW: &str = "\
The traces above show it call by call: without STATUS, virtnet_probe() calls
netif_carrier_on() with no netif_carrier_off() before it, and linkwatch_fire_event(),
the link-watch work and rfc2863_policy() (which holds default_operstate()) never run.";

/// How it was fixed.
const FIX: &str = "\
Fix: the driver calls netif_carrier_off() in both cases, so the netif_carrier_on() that
follows is a real transition (carrier_changes 2) and link watch sets the operstate to UP.";

/// What the bug is, why it happens and how it was fixed; the sentence on
/// the traces only when `traces_confirm` (the comparison showed it).
pub fn explanation(traces_confirm: bool) -> String {
    if traces_confirm {
        format!("{CAUSE}\n{TRACES_SHOW}\n{FIX}")
    } else {
        format!("{CAUSE}\n{FIX}")
    }
}

/// One line per scenario: what the cell shows and whether it matched.
pub fn verdict_lines(report: &RunReport) -> Vec<String> {
    report.results.iter().map(verdict_line).collect()
}

fn verdict_line(r: &ScenarioResult) -> String {
    let s = &r.scenario;
    let cell = format!(
        "{} virtio_net ({}), {}, {}",
        match s.guest.driver {
            Driver::Stock => "fixed",
            Driver::Prefix => "pre-fix",
        },
        s.guest.kernel.as_str(),
        s.device.transport.as_str(),
        if !s.device.offers_status() {
            "device without STATUS"
        } else {
            "device with STATUS"
        }
    );
    let labels = s.shows();
    let observed: Vec<String> = r
        .observation
        .iter()
        .flat_map(|o| &o.shows)
        .map(|show| {
            let label = labels
                .iter()
                .find(|(i, _)| *i == show.step)
                .map_or("show", |(_, l)| l.as_str());
            let state = show.link.state.map_or("?".to_owned(), |st| st.to_string());
            let changes = show
                .link
                .carrier_changes
                .map_or("?".to_owned(), |n| n.to_string());
            format!("{label}: state {state}, carrier_changes {changes}")
        })
        .collect();
    let mark = match r.verdict {
        Verdict::Pass => "as expected",
        Verdict::Fail => "NOT as expected",
        Verdict::Error => "ERROR",
        Verdict::Skipped => "skipped",
    };
    let detail = if observed.is_empty() {
        r.reason.clone().unwrap_or_default()
    } else {
        observed.join("; ")
    };
    format!("{:<16} {:<60} {detail}", mark, cell)
}

/// Runs the selection with options suited to the two-core machines the
/// lab runs on.
pub fn run(
    engine: Arc<dyn Engine>,
    scenarios: Vec<Scenario>,
    work_dir: std::path::PathBuf,
) -> RunReport {
    let options = RunOptions {
        jobs: 2,
        timeout: Duration::from_secs(300),
        grace: Duration::from_secs(10),
        work_dir,
    };
    runner::run(engine, scenarios, &options, &|r: &ScenarioResult| {
        eprintln!(
            "harness: {:<7} {} ({:.1}s)",
            r.verdict.as_str(),
            r.scenario.name,
            r.elapsed.as_secs_f64()
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;
    use crate::engine::EngineInfo;

    #[test]
    fn status_is_read_from_the_feature_set_not_the_spelling() {
        use crate::scenario::{Device, Transport};
        let device = |features: &str| Device {
            transport: Transport::Pci,
            features: features.into(),
            mac: None,
            mtu: None,
            backend: None,
        };
        assert!(device("").offers_status());
        assert!(device("+status").offers_status());
        assert!(!device("-status").offers_status());
        assert!(!device("-status,+mrg_rxbuf").offers_status());
        // A bit mask with only VERSION_1 (bit 32): no STATUS, no `-status`.
        assert!(!device("0x100000000").offers_status());
    }

    #[test]
    fn the_traces_are_cited_only_when_they_confirm() {
        let with = explanation(true);
        let without = explanation(false);
        assert!(with.contains("The traces above show it call by call"));
        assert!(!without.contains("traces"), "{without}");
        for text in [&with, &without] {
            assert!(text.starts_with("Why: before Linux commit bda7fab54828"));
            assert!(text.contains("Fix: the driver calls netif_carrier_off() in both cases"));
        }
    }

    #[test]
    fn each_host_gets_an_engine_and_a_reason() {
        let emulated = KvmKind::Emulated("the kvm_pvm module is loaded".into());
        let choice = engine_choice(&emulated);
        assert_eq!(choice[0].0, "vmm-kernel-only");
        assert!(choice[0]
            .1
            .contains("instruction emulator (the kvm_pvm module is loaded)"));
        assert_eq!(engine_choice(&KvmKind::Hardware)[0].0, "vmm-guest");
        let none = engine_choice(&KvmKind::Absent("no /dev/kvm".into()));
        assert!(none
            .iter()
            .all(|(n, why)| n.starts_with("qemu") && why.contains("not the lab's device")));
    }

    #[test]
    fn the_pre_fix_cells_are_traced_and_show_the_cause() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all = crate::scenario::load_paths(&[dir]).unwrap();
        let engine = FakeEngine::new();
        let mut chosen = select(all, &engine);
        let pair = trace_pair(&chosen).unwrap();
        assert_eq!(
            pair,
            (
                "operstate/6.1-prefix/status".to_string(),
                "operstate/6.1-prefix/no-status".to_string()
            )
        );
        enable_traces(&mut chosen, &pair);
        let traced: Vec<&str> = chosen
            .iter()
            .filter(|s| s.trace.is_some())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(traced.len(), 2, "{traced:?}");
        let cells: Vec<Scenario> = chosen
            .into_iter()
            .filter(|s| s.name == pair.0 || s.name == pair.1)
            .collect();
        let work = tempfile::tempdir().unwrap();
        let report = run(Arc::new(engine), cells, work.path().to_path_buf());
        match trace_evidence(&report, &pair) {
            TraceEvidence::Confirms(c) => {
                let text = crate::trace::render(&c);
                assert!(text.contains(
                    "the normal run calls `netif_carrier_off <- virtnet_probe` (call 3, boot): it \
                     is missing in the abnormal run"
                ), "{text}");
            }
            other => panic!("{other:?}"),
        }
        // Only the test kernel's pair runs on the kernel-only route.
        let test_only: Vec<Scenario> =
            crate::scenario::load_paths(&[
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
            ])
            .unwrap()
            .into_iter()
            .filter(|s| s.guest.kernel == Kernel::Test)
            .collect();
        assert_eq!(
            trace_pair(&test_only).unwrap().1,
            "operstate/test-prefix/no-status"
        );
        assert!(matches!(
            trace_evidence(&report, &("x".into(), "y".into())),
            TraceEvidence::Unavailable(_)
        ));
    }

    #[test]
    fn engines_missing_from_the_registry_are_passed_over() {
        let registry = Registry::new(vec![EngineInfo {
            name: "vmm-kernel-only",
            summary: "",
            test_double: false,
            make: || Ok(Arc::new(FakeEngine::new())),
        }]);
        // vmm-guest is preferred on hardware but absent: the next one.
        let (_, why) = choose_engine(&registry, &KvmKind::Hardware, None).unwrap();
        assert!(why.contains("test kernel"), "{why}");
        let e = choose_engine(&registry, &KvmKind::Absent("x".into()), None)
            .err()
            .unwrap();
        assert!(e.contains("no engine for this host"), "{e}");
    }
}
