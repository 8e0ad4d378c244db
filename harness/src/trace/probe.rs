//! The kernel-only kernel's trace (its own ftrace_ops, recording from an
//! early initcall, printed by the probe) as a [`KernelTrace`]: the
//! kernel's word on each requested function, and the recorded calls
//! tagged with the scenario step that was running.

use guest_images::kernel_only::trace::ProbeTrace;

use super::{FunctionStatus, KernelTrace, TraceEvent, TraceRequest};

/// How this route records.
pub const SOURCE: &str =
    "ftrace_ops of the kernel-only kernel (address filter from System.map), from early boot";

/// Builds the trace of `request` from the probe's `TRACE` section;
/// `step_of` maps probe step `n` (from 1; 0 is the boot) to the scenario
/// step it carries out.
pub fn from_probe(
    request: &TraceRequest,
    probe: Option<&ProbeTrace>,
    step_of: &dyn Fn(u32) -> Option<usize>,
) -> KernelTrace {
    let Some(probe) = probe else {
        return KernelTrace::unavailable(
            SOURCE,
            request,
            "the probe printed no TRACE lines (it never reached its end, or the kernel has no \
             tracing)",
        );
    };
    let mut trace = KernelTrace {
        source: SOURCE.to_string(),
        requested: request.functions.clone(),
        lost: probe.lost,
        complete: probe.complete,
        problems: probe.failures.clone(),
        ..KernelTrace::default()
    };
    let statuses: Vec<FunctionStatus> = probe
        .functions
        .iter()
        .map(|f| FunctionStatus {
            name: f.name.clone(),
            traceable: f.traceable,
            reason: f.reason.clone(),
        })
        .collect();
    trace.set_statuses(&statuses);
    trace.events = probe
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| TraceEvent {
            seq: i + 1,
            function: e.function.clone(),
            caller: e.caller.clone(),
            timestamp_ns: e.t_ns,
            cpu: e.cpu,
            step: if e.step == 0 {
                Some(0)
            } else {
                step_of(e.step)
            },
            task: None,
        })
        .collect();
    if !probe.complete {
        trace
            .problems
            .push("the probe's trace was cut short (no TRACE END)".to_string());
    }
    if probe.lost > 0 {
        trace.problems.push(format!(
            "the kernel's record was full: {} calls were not kept",
            probe.lost
        ));
    }
    let unparsed = probe.unparsed.len();
    if unparsed > 0 {
        trace.problems.push(format!(
            "{unparsed} TRACE lines did not parse, e.g. `{}`",
            probe.unparsed[0]
        ));
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_steps_become_scenario_steps() {
        let mut p = ProbeTrace::default();
        for line in [
            "BEGIN protocol=1 requested=2 traced=1 events=2 lost=0",
            "FUNC netif_carrier_off traceable addr=ffffffff8114066b",
            "FUNC default_operstate untraceable: not a function of this kernel's System.map (inlined, or not built in) (-2)",
            "EVENT 1 t=3.5 cpu=0 step=0 func=netif_carrier_off caller=virtnet_probe+0x5b0/0x9a0",
            "EVENT 2 t=9.25 cpu=0 step=3 func=netif_carrier_off caller=virtnet_remove+0x10/0x40",
            "bogus",
            "END events=2",
        ] {
            p.parse_line(line);
        }
        let request = TraceRequest::new(["netif_carrier_off", "default_operstate"]).unwrap();
        let t = from_probe(&request, Some(&p), &|n| Some(n as usize + 10));
        assert_eq!(t.events[0].step, Some(0));
        assert_eq!(t.events[1].step, Some(13));
        assert_eq!(t.events[0].timestamp_ns, 3_500_000_000);
        assert_eq!(t.events[0].call(), "netif_carrier_off <- virtnet_probe");
        assert!(t.traced("netif_carrier_off") && !t.traced("default_operstate"));
        assert!(t.complete);
        assert_eq!(t.problems.len(), 1);
        assert!(t.problems[0].contains("bogus"));
        let none = from_probe(&request, None, &|_| None);
        assert!(!none.complete && none.events.is_empty());
    }
}
