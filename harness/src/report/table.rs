//! The readable report: the engine, a table of scenario, expected, observed,
//! verdict and time, a summary of each kernel call trace, then the details
//! of everything that did not pass.

use std::fmt::Write as _;

use super::{rows, secs, SERIAL_LINES};
use crate::outcome::{RunReport, Verdict};

/// Renders the report as text.
pub fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "engine: {}", report.engine);
    let _ = writeln!(
        out,
        "{} scenarios, deadline {} each\n",
        report.results.len(),
        secs(report.timeout)
    );
    let mut lines: Vec<[String; 5]> = vec![[
        "SCENARIO".into(),
        "EXPECTED".into(),
        "OBSERVED".into(),
        "VERDICT".into(),
        "TIME".into(),
    ]];
    for r in &report.results {
        for (i, row) in rows(r).into_iter().enumerate() {
            let verdict = match r.checks.get(i).map(|c| c.ok()) {
                Some(Some(true)) => Verdict::Pass,
                Some(Some(false)) => Verdict::Fail,
                Some(None) => Verdict::Error,
                None => r.verdict,
            };
            let time = if i == 0 {
                secs(r.elapsed)
            } else {
                String::new()
            };
            lines.push([
                row.what,
                row.expected,
                row.observed,
                verdict.as_str().into(),
                time,
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            if c == 4 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if report.results.iter().any(|r| {
        r.checks
            .iter()
            .flat_map(|c| &c.items)
            .any(|i| i.ok == Some(false))
    }) {
        let _ = writeln!(
            out,
            "(! marks an observed value that differs from the expectation)"
        );
    }
    trace_summaries(&mut out, report);
    for r in report.results.iter().filter(|r| r.verdict != Verdict::Pass) {
        let _ = writeln!(
            out,
            "\n{} {} ({})",
            r.verdict.as_str(),
            r.scenario.name,
            r.scenario.location
        );
        if let Some(reason) = &r.reason {
            let _ = writeln!(out, "  {reason}");
        }
        if r.verdict == Verdict::Skipped {
            continue;
        }
        if let Some(o) = &r.observation {
            let shows = r.scenario.shows();
            for (s, (_, label)) in o.shows.iter().zip(shows) {
                let _ = writeln!(out, "  observed at {label}:");
                for l in s.raw.lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
        if !r.serial_tail.is_empty() {
            let skip = r.serial_tail.len().saturating_sub(SERIAL_LINES);
            let _ = writeln!(
                out,
                "  serial console, last {} lines:",
                r.serial_tail.len() - skip
            );
            for l in &r.serial_tail[skip..] {
                let _ = writeln!(out, "    {l}");
            }
        }
        if let Some(dir) = &r.work_dir {
            let _ = writeln!(out, "  work directory: {}", dir.display());
        }
    }
    let s = report.summary();
    let _ = writeln!(
        out,
        "\nengine: {}\n{} passed, {} did not match, {} errors, {} skipped, in {}",
        report.engine,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        secs(report.elapsed)
    );
    let _ = writeln!(
        out,
        "result: {} passed, {} failed, {} skipped",
        s.passed,
        s.failed + s.errors,
        s.skipped
    );
    out
}

/// One entry per scenario that asked for a kernel call trace: its summary,
/// or why there is none.
fn trace_summaries(out: &mut String, report: &RunReport) {
    let asked: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.scenario.trace.is_some() && r.verdict != Verdict::Skipped)
        .collect();
    if asked.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nkernel call traces (calls per requested function; - not traced):"
    );
    for r in asked {
        let _ = writeln!(out, "  {}", r.scenario.name);
        match r.observation.as_ref().and_then(|o| o.trace.as_ref()) {
            Some(t) => {
                for line in crate::trace::summary_lines(t) {
                    let _ = writeln!(out, "    {line}");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "    no trace: the run brought none back ({})",
                    r.reason.as_deref().unwrap_or("the engine records none")
                );
            }
        }
    }
}
