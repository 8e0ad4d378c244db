//! The kernel call traces of a run in full: for each traced scenario every
//! recorded call, in order, with its step, time, CPU and caller.

use std::fmt::Write as _;

use crate::outcome::RunReport;

/// Every traced scenario's calls, one per line; empty when nothing was
/// traced.
pub fn traces(report: &RunReport) -> String {
    let mut out = String::new();
    for r in &report.results {
        let Some(t) = r.observation.as_ref().and_then(|o| o.trace.as_ref()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "\nkernel call trace of {} ({} calls; step, seconds since boot, CPU, call):",
            r.scenario.name,
            t.events.len()
        );
        for line in crate::trace::event_lines(t, &r.scenario.step_words()) {
            let _ = writeln!(out, "  {line}");
        }
        if t.events.is_empty() {
            let _ = writeln!(out, "  (no call of a traced function was recorded)");
        }
    }
    out
}
