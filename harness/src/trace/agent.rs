//! The guest agent's trace (tracefs function tracer) as a [`KernelTrace`]:
//! the agent's word on each requested function, and the dumped `trace`
//! file parsed line by line, each call tagged with the scenario step that
//! was running (the agent writes `vnetlab-step N` to `trace_marker` before
//! its step `N`).

use guest_images::agent::AgentTrace;

use super::ftrace::{parse_line, Line};
use super::{FunctionStatus, KernelTrace, TraceEvent, TraceRequest};

/// How this route records.
pub const SOURCE: &str = "tracefs function tracer (set_ftrace_filter), set up by the guest agent";

/// The marker the agent writes before each step.
pub const STEP_MARKER: &str = "vnetlab-step ";

/// Builds the trace of `request` from what the agent printed; `step_of`
/// maps agent step `n` (from 1) to the scenario step it carries out. With
/// no `TRACE` lines at all the trace says so.
pub fn from_agent(
    request: &TraceRequest,
    agent: Option<&AgentTrace>,
    step_of: &dyn Fn(u32) -> Option<usize>,
) -> KernelTrace {
    let Some(agent) = agent else {
        return KernelTrace::unavailable(
            SOURCE,
            request,
            "the guest agent printed no TRACE lines (the guest never got that far, or its \
             agent has no tracing)",
        );
    };
    let mut trace = KernelTrace {
        source: SOURCE.to_string(),
        requested: request.functions.clone(),
        complete: agent.complete,
        problems: agent.errors.clone(),
        ..KernelTrace::default()
    };
    let statuses: Vec<FunctionStatus> = agent
        .functions
        .iter()
        .map(|f| FunctionStatus {
            name: f.name.clone(),
            traceable: f.traceable,
            reason: f.reason.clone(),
        })
        .collect();
    trace.set_statuses(&statuses);
    if agent.began && !agent.complete {
        trace
            .problems
            .push("the trace dump was cut short (no TRACE END)".to_string());
    }
    let mut step = Some(0);
    // Per-CPU `[LOST N EVENTS]` lines and the header's written-minus-kept
    // count say the same thing; the larger one is taken.
    let (mut lost_lines, mut lost_header) = (0u64, 0u64);
    for raw in &agent.lines {
        match parse_line(raw) {
            Ok(Line::Call {
                task,
                cpu,
                timestamp_ns,
                function,
                caller,
            }) => trace.events.push(TraceEvent {
                seq: trace.events.len() + 1,
                function,
                caller,
                timestamp_ns,
                cpu,
                step,
                task: Some(task),
            }),
            Ok(Line::Marker { text, .. }) => {
                if let Some(n) = text
                    .strip_prefix(STEP_MARKER)
                    .and_then(|n| n.trim().parse::<u32>().ok())
                {
                    step = step_of(n);
                }
            }
            Ok(Line::Lost(n)) => lost_lines = lost_lines.saturating_add(n),
            Ok(Line::Entries { in_buffer, written }) => {
                lost_header = written.saturating_sub(in_buffer);
            }
            Ok(Line::Comment) => {}
            Err(e) => trace.problems.push(e.to_string()),
        }
    }
    trace.lost = lost_lines.max(lost_header);
    if trace.lost > 0 {
        trace.problems.push(format!(
            "the trace buffer lost {} calls; the record is not whole",
            trace.lost
        ));
    }
    trace
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_images::agent::TracedFunction;

    fn agent(lines: &[&str], complete: bool) -> AgentTrace {
        AgentTrace {
            set_up: true,
            functions: vec![
                TracedFunction {
                    name: "netif_carrier_off".into(),
                    traceable: true,
                    reason: None,
                },
                TracedFunction {
                    name: "default_operstate".into(),
                    traceable: false,
                    reason: Some("not in available_filter_functions".into()),
                },
            ],
            errors: vec![],
            began: true,
            lines: lines.iter().map(|l| (*l).to_string()).collect(),
            complete,
        }
    }

    #[test]
    fn markers_tag_the_calls_with_their_step() {
        let request =
            TraceRequest::new(["netif_carrier_off", "default_operstate", "rfc2863_policy"])
                .unwrap();
        let a = agent(
            &[
                "# entries-in-buffer/entries-written: 4/4   #P:1",
                "          insmod-68      [000] .....     1.880575: netif_carrier_off <-virtnet_probe",
                "              sh-91      [000] .....     5.000123: tracing_mark_write: vnetlab-step 2",
                "     kworker/0:1-20      [000] .....     5.100000: netif_carrier_off <-virtnet_close",
                "garbage",
            ],
            true,
        );
        let t = from_agent(&request, Some(&a), &|n| Some(n as usize + 1));
        assert_eq!(t.events.len(), 2);
        assert_eq!(t.events[0].step, Some(0));
        assert_eq!(t.events[0].task.as_deref(), Some("insmod-68"));
        assert_eq!(t.events[1].step, Some(3));
        assert_eq!(t.events[1].seq, 2);
        assert_eq!(t.events[1].call(), "netif_carrier_off <- virtnet_close");
        assert!(t.traced("netif_carrier_off") && !t.traced("default_operstate"));
        assert_eq!(
            t.functions[2].reason.as_deref(),
            Some("the guest did not report on it")
        );
        assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
        assert!(t.problems[0].contains("garbage"));
        assert!(t.complete && t.lost == 0);
    }

    #[test]
    fn losses_and_cut_dumps_are_problems() {
        let request = TraceRequest::new(["netif_carrier_off"]).unwrap();
        let a = agent(
            &[
                "# entries-in-buffer/entries-written: 1/9   #P:1",
                "CPU:0 [LOST 8 EVENTS]",
            ],
            false,
        );
        let t = from_agent(&request, Some(&a), &|_| None);
        assert_eq!(t.lost, 8);
        assert!(!t.complete);
        assert_eq!(t.problems.len(), 2, "{:?}", t.problems);
        let none = from_agent(&request, None, &|_| None);
        assert!(none.events.is_empty() && !none.functions[0].traceable);
        assert!(none.problems[0].contains("no TRACE lines"));
    }
}
