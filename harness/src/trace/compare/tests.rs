//! Tests of the comparison: made-up traces of the reproduction, and the real
//! traces of both routes (`tests/fixtures/agent/trace-*.txt`,
//! guest-images' `kernel-only/testdata/trace-*.serial`).

use super::*;
use crate::trace::{FunctionStatus, KernelTrace, TraceEvent, LINK_STATE_FUNCTIONS};

/// A trace of `calls` (`function<-caller`), all traced functions requested.
fn trace(calls: &[(&str, &str, usize)]) -> KernelTrace {
    let requested: Vec<String> = LINK_STATE_FUNCTIONS
        .iter()
        .map(|f| (*f).to_string())
        .collect();
    KernelTrace {
        source: "test".into(),
        functions: requested
            .iter()
            .map(|f| FunctionStatus {
                name: f.clone(),
                traceable: f != "default_operstate",
                reason: (f == "default_operstate").then(|| "inlined".to_string()),
            })
            .collect(),
        requested,
        events: calls
            .iter()
            .enumerate()
            .map(|(i, (f, c, step))| TraceEvent {
                seq: i + 1,
                function: (*f).into(),
                caller: (*c).into(),
                timestamp_ns: i as u64 * 1000,
                cpu: 0,
                step: Some(*step),
                task: None,
            })
            .collect(),
        complete: true,
        ..KernelTrace::default()
    }
}

fn steps() -> Vec<String> {
    ["boot", "link-up", "wait 1.5s", "show"]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// The pre-fix driver, device with STATUS (normal), as the kernel-only
/// kernel records it.
fn normal() -> KernelTrace {
    trace(&[
        ("virtnet_probe", "virtio_dev_probe", 0),
        ("linkwatch_init_dev", "register_netdevice", 0),
        ("netif_carrier_off", "virtnet_probe", 0),
        ("linkwatch_fire_event", "netif_carrier_off", 0),
        ("virtnet_config_changed_work", "process_one_work", 0),
        ("netif_carrier_on", "virtnet_config_changed_work", 0),
        ("linkwatch_fire_event", "netif_carrier_on", 0),
        ("linkwatch_event", "process_one_work", 0),
        ("__linkwatch_run_queue", "linkwatch_event", 0),
        ("linkwatch_do_dev", "__linkwatch_run_queue", 0),
        ("rfc2863_policy", "linkwatch_do_dev", 0),
        ("virtnet_open", "__dev_open", 1),
        ("dev_activate", "__dev_open", 1),
    ])
}

/// The same driver, device without STATUS (abnormal).
fn abnormal() -> KernelTrace {
    trace(&[
        ("virtnet_probe", "virtio_dev_probe", 0),
        ("linkwatch_init_dev", "register_netdevice", 0),
        ("netif_carrier_on", "virtnet_probe", 0),
        ("virtnet_open", "__dev_open", 1),
        ("dev_activate", "__dev_open", 1),
    ])
}

fn side<'a>(name: &'a str, steps: &'a [String], t: &'a KernelTrace) -> Side<'a> {
    Side {
        name,
        scenario: name,
        engine: "test",
        steps,
        trace: t,
    }
}

#[test]
fn the_reproduction_diverges_at_the_missing_carrier_off() {
    let (n, ab, s) = (normal(), abnormal(), steps());
    let c = compare(
        &side("the normal run", &s, &n),
        &side("the abnormal run", &s, &ab),
    );
    assert!(!c.same);
    let d = c.first_divergence.as_ref().unwrap();
    assert_eq!(d.common_before, 2);
    assert_eq!(d.only_a[0].call, "netif_carrier_off <- virtnet_probe");
    assert_eq!(d.only_a[0].step.as_deref(), Some("boot"));
    assert_eq!(d.only_b.len(), 1);
    assert_eq!(d.only_b[0].call, "netif_carrier_on <- virtnet_probe");
    assert_eq!(
        c.chains,
        [ChainFinding {
            chain: "link watch".into(),
            functions: LINK_WATCH_CHAIN.iter().map(|f| (*f).to_string()).collect(),
            never_in: "B".into(),
            calls_elsewhere: 6,
        }]
    );
    let never: Vec<&str> = c.never_ran.iter().map(|n| n.function.as_str()).collect();
    assert_eq!(
        never,
        [
            "virtnet_config_changed_work",
            "netif_carrier_off",
            "linkwatch_fire_event",
            "linkwatch_event",
            "__linkwatch_run_queue",
            "linkwatch_do_dev",
            "rfc2863_policy"
        ]
    );
    assert!(c.calls.contains(&CallCount {
        call: "netif_carrier_off <- virtnet_probe".into(),
        a: 1,
        b: 0
    }));
    assert_eq!(c.not_compared.len(), 1);
    assert_eq!(c.not_compared[0].function, "default_operstate");
    // The last two calls line up again.
    assert!(c.rows.last().unwrap().same());
    assert_eq!(c.rows.iter().filter(|r| r.same()).count(), 4);

    let text = crate::trace::render(&c);
    assert!(
        text.contains(
            "first divergence: after 2 calls in common, the normal run calls \
             `netif_carrier_off <- virtnet_probe` (call 3, boot): it is missing in the abnormal \
             run, which calls `netif_carrier_on <- virtnet_probe` (call 3, boot) instead"
        ),
        "{text}"
    );
    assert!(
        text.contains("the link watch chain never ran in the abnormal run"),
        "{text}"
    );
    assert!(
        text.contains("not compared: default_operstate (both: inlined)"),
        "{text}"
    );
    assert!(
        text.contains("<    3 boot     netif_carrier_off <- virtnet_probe"),
        "{text}"
    );
}

#[test]
fn identical_and_one_sided_traces() {
    let (n, s) = (normal(), steps());
    let c = compare(&side("A", &s, &n), &side("B", &s, &n));
    assert!(c.same && c.first_divergence.is_none() && c.calls.is_empty());
    assert!(crate::trace::render(&c).contains("the traces agree: the same 13 calls"));

    // B has an extra call at the end only.
    let mut more = normal();
    more.events.push(TraceEvent {
        seq: 14,
        function: "netif_carrier_off".into(),
        caller: "virtnet_close".into(),
        timestamp_ns: 0,
        cpu: 1,
        step: Some(9),
        task: None,
    });
    let c = compare(&side("A", &s, &n), &side("B", &s, &more));
    let d = c.first_divergence.unwrap();
    assert_eq!(d.common_before, 13);
    assert!(d.only_a.is_empty());
    assert_eq!(d.only_b[0].step.as_deref(), Some("step 9"));
    let text = crate::trace::render(&compare(&side("A", &s, &n), &side("B", &s, &more)));
    assert!(
        text.contains("B calls `netif_carrier_off <- virtnet_close`"),
        "{text}"
    );

    // The chain is reversed: A never ran it.
    let c = compare(&side("A", &s, &abnormal()), &side("B", &s, &n));
    assert_eq!(c.chains[0].never_in, "A");
}

#[test]
fn empty_untraced_and_huge_traces() {
    let s = steps();
    let empty = trace(&[]);
    let c = compare(&side("A", &s, &empty), &side("B", &s, &empty));
    assert!(c.same && c.rows.is_empty() && c.chains.is_empty());

    // A function B could not trace is not reported as "never ran".
    let mut blind = abnormal();
    for f in &mut blind.functions {
        if f.name.starts_with("linkwatch") || f.name.contains("linkwatch") {
            f.traceable = false;
            f.reason = Some("no tracefs".into());
        }
    }
    let c = compare(&side("A", &s, &normal()), &side("B", &s, &blind));
    assert!(!c.never_ran.iter().any(|n| n.function.contains("linkwatch")));
    assert!(c
        .not_compared
        .iter()
        .any(|n| n.function == "linkwatch_event"
            && n.b.as_deref() == Some("no tracefs")
            && n.a.is_none()));
    // The chain is judged on what both traced: rfc2863_policy alone here.
    assert_eq!(c.chains[0].functions, ["rfc2863_policy"]);

    // Too long to line up call by call: still no panic, and said so.
    let long_a: Vec<(&str, &str, usize)> = (0..MAX_ALIGNED + 5)
        .map(|i| {
            if i % 2 == 0 {
                ("netif_carrier_on", "x", 0)
            } else {
                ("netif_carrier_off", "y", 0)
            }
        })
        .collect();
    let long_b: Vec<(&str, &str, usize)> = (0..MAX_ALIGNED + 5)
        .map(|_| ("dev_activate", "z", 0))
        .collect();
    let (ta, tb) = (trace(&long_a), trace(&long_b));
    let c = compare(&side("A", &s, &ta), &side("B", &s, &tb));
    assert!(c.truncated && !c.same);
    assert_eq!(c.rows.len(), 2 * (MAX_ALIGNED + 5));
}

/// The agent route on real transcripts (Debian 6.1, pre-fix driver, under
/// QEMU TCG) and the kernel-only route on real serial output (the lab's
/// test kernel on our VMM under the emulated KVM): STATUS on (A) against
/// STATUS off (B).
mod real {
    use super::*;
    use crate::trace::{agent, probe, TraceRequest};
    use guest_images::kernel_only::probe::parse_output;
    use guest_images::Transcript;

    const STEPS_6_1: &[&str] = &["boot", "link-up", "wait 1500ms", "show"];

    fn agent_trace(console: &str) -> KernelTrace {
        let t = Transcript::parse(console);
        // Agent step n is scenario step n (boot is step 0).
        agent::from_agent(&TraceRequest::link_state(), t.trace.as_ref(), &|n| {
            Some(n as usize)
        })
    }

    fn probe_trace(serial: &str) -> KernelTrace {
        let r = parse_output(serial);
        // The probe ran show, up, sleep, show, rebind, up, sleep, show.
        probe::from_probe(&TraceRequest::link_state(), r.trace.as_ref(), &|n| {
            Some(n as usize)
        })
    }

    fn check(normal: &KernelTrace, abnormal: &KernelTrace, steps: &[String]) -> TraceComparison {
        for t in [normal, abnormal] {
            assert!(t.complete && t.problems.is_empty(), "{:?}", t.problems);
            let un: Vec<&str> = t.untraceable().map(|f| f.name.as_str()).collect();
            assert_eq!(un, ["default_operstate"]);
        }
        let c = compare(
            &side("the normal run", steps, normal),
            &side("the abnormal run", steps, abnormal),
        );
        let d = c.first_divergence.as_ref().expect("the traces differ");
        assert_eq!(d.only_a[0].call, "netif_carrier_off <- virtnet_probe");
        assert_eq!(d.only_a[0].step.as_deref(), Some("boot"));
        assert_eq!(d.only_b[0].call, "netif_carrier_on <- virtnet_probe");
        assert_eq!(c.chains.len(), 1);
        assert_eq!(c.chains[0].never_in, "B");
        assert_eq!(c.chains[0].functions, LINK_WATCH_CHAIN);
        let text = crate::trace::render(&c);
        let said = format!(
            "the normal run calls `netif_carrier_off <- virtnet_probe` (call {}, boot): it is \
             missing in the abnormal run, which calls `netif_carrier_on <- virtnet_probe`",
            d.only_a[0].seq
        );
        assert!(text.contains(&said), "{text}");
        assert!(
            text.contains("the link watch chain never ran in the abnormal run"),
            "{text}"
        );
        c
    }

    #[test]
    fn agent_transcripts_of_the_pre_fix_driver() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agent/");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
        let normal = agent_trace(&read("trace-operstate-6.1-prefix-status.txt"));
        let abnormal = agent_trace(&read("trace-operstate-6.1-prefix-no-status.txt"));
        assert_eq!(
            normal.events[0]
                .task
                .as_deref()
                .map(|t| t.starts_with("insmod-")),
            Some(true)
        );
        let steps: Vec<String> = STEPS_6_1.iter().map(|s| (*s).to_string()).collect();
        let c = check(&normal, &abnormal, &steps);
        assert_eq!(c.first_divergence.unwrap().common_before, 2);
        // The link-up's calls line up again in both.
        assert!(c.rows.iter().any(|r| r.same()
            && r.a.as_ref().unwrap().call == "dev_activate <- __dev_open"
            && r.a.as_ref().unwrap().step.as_deref() == Some("link-up")));
    }

    #[test]
    fn kernel_only_serial_of_the_pre_fix_driver() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guest-images/kernel-only/testdata/"
        );
        let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
        let normal = probe_trace(&read("trace-prefix-status-mmio.serial"));
        let abnormal = probe_trace(&read("trace-prefix-nostatus-mmio.serial"));
        let steps: Vec<String> = [
            "boot", "show", "up", "sleep", "show", "rebind", "up", "sleep", "show",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        let c = check(&normal, &abnormal, &steps);
        // The reload (rebind) runs the same probe path again: the same
        // divergence shows up a second time.
        assert!(c.calls.contains(&CallCount {
            call: "netif_carrier_off <- virtnet_probe".into(),
            a: 2,
            b: 0
        }));
        assert!(c.calls.contains(&CallCount {
            call: "netif_carrier_on <- virtnet_probe".into(),
            a: 0,
            b: 2
        }));
    }

    #[test]
    fn a_kernel_without_a_tracer_says_so_for_every_function() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agent/");
        let t = agent_trace(
            &std::fs::read_to_string(format!(
                "{dir}trace-operstate-test-prefix-no-status-no-tracer.txt"
            ))
            .unwrap(),
        );
        assert!(t.events.is_empty());
        assert_eq!(t.untraceable().count(), t.requested.len());
        assert!(t.problems[0].contains("no function tracer"));
        let lines = crate::trace::summary_lines(&t);
        assert_eq!(lines.len(), 3, "one line per reason: {lines:?}");
        assert!(lines[1].starts_with("untraceable: virtnet_probe, virtnet_open,"));
        // Compared with a real trace: nothing is "never ran", all is "not compared".
        let other = agent_trace(
            &std::fs::read_to_string(format!("{dir}trace-operstate-6.12-stock-status.txt"))
                .unwrap(),
        );
        assert!(other.traced("virtnet_probe") && other.complete);
        let s: Vec<String> = STEPS_6_1.iter().map(|s| (*s).to_string()).collect();
        let c = compare(&side("A", &s, &other), &side("B", &s, &t));
        assert!(c.never_ran.is_empty() && c.chains.is_empty());
        assert_eq!(c.not_compared.len(), t.requested.len());
    }
}
