//! Traces and comparisons in words: a trace's summary (calls per function,
//! what could not be traced, what is missing), its calls one per line, and
//! a comparison side by side with its findings.

use std::fmt::Write as _;

use super::compare::{CallRef, TraceComparison};
use super::KernelTrace;

/// A trace in a few lines: the calls per requested function, the functions
/// the kernel could not trace (with why), and any problem.
pub fn summary_lines(trace: &KernelTrace) -> Vec<String> {
    let counts: Vec<String> = trace
        .counts()
        .iter()
        .map(|(f, n)| {
            if trace.traced(f) || *n > 0 {
                format!("{f} {n}")
            } else {
                format!("{f} -")
            }
        })
        .collect();
    let mut out = vec![format!(
        "{} calls recorded ({}): {}",
        trace.events.len(),
        trace.source,
        counts.join(", ")
    )];
    // One line per reason: a kernel without a tracer says the same of all.
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for f in trace.untraceable() {
        let why = f.reason.as_deref().unwrap_or("no reason given");
        match by_reason.iter_mut().find(|(r, _)| *r == why) {
            Some((_, names)) => names.push(&f.name),
            None => by_reason.push((why, vec![&f.name])),
        }
    }
    for (why, names) in by_reason {
        out.push(format!("untraceable: {} ({why})", names.join(", ")));
    }
    for p in &trace.problems {
        out.push(format!("problem: {p}"));
    }
    out
}

fn step_word(steps: &[String], step: Option<usize>) -> String {
    match step {
        Some(s) => steps.get(s).cloned().unwrap_or_else(|| format!("step {s}")),
        None => "?".into(),
    }
}

/// The calls of a trace, one per line: number, scenario step, time since
/// boot, CPU, `function <- caller`, and the task when known.
pub fn event_lines(trace: &KernelTrace, steps: &[String]) -> Vec<String> {
    let width = trace
        .events
        .iter()
        .map(|e| step_word(steps, e.step).chars().count())
        .max()
        .unwrap_or(0);
    trace
        .events
        .iter()
        .map(|e| {
            let mut line = format!(
                "{:>4}  {:<width$}  {:>6}.{:06}  cpu{}  {}",
                e.seq,
                step_word(steps, e.step),
                e.timestamp_ns / 1_000_000_000,
                e.timestamp_ns % 1_000_000_000 / 1000,
                e.cpu,
                e.call()
            );
            if let Some(t) = &e.task {
                let _ = write!(line, "  [{t}]");
            }
            line
        })
        .collect()
}

fn cell(r: &Option<CallRef>, step_width: usize) -> (String, String) {
    match r {
        Some(c) => (
            format!(
                "{:>3} {:<step_width$}",
                c.seq,
                c.step.as_deref().unwrap_or("?")
            ),
            c.call.clone(),
        ),
        None => (" ".repeat(step_width + 4), String::new()),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn call_list(calls: &[CallRef]) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = calls
        .iter()
        .take(SHOWN)
        .map(|c| {
            format!(
                "`{}` (call {}, {})",
                c.call,
                c.seq,
                c.step.as_deref().unwrap_or("step unknown")
            )
        })
        .collect();
    if calls.len() > SHOWN {
        parts.push(format!("and {} more", calls.len() - SHOWN));
    }
    parts.join(", ")
}

fn who(name: &str, scenario: &str) -> String {
    if name == "A" || name == "B" || name == scenario {
        scenario.to_string()
    } else {
        format!("{scenario} ({name})")
    }
}

/// The comparison for people: who is who, the side-by-side table (`<` only
/// in A, `>` only in B), then the first divergence, the calls that differ,
/// what never ran where, and what could not be compared.
pub fn render(c: &TraceComparison) -> String {
    let mut out = String::new();
    let (a, b) = (&c.a, &c.b);
    for (letter, side) in [("A", a), ("B", b)] {
        let _ = writeln!(
            out,
            "{letter}: {}, {}, on {}",
            who(&side.name, &side.scenario),
            plural(side.events, "call"),
            side.engine
        );
    }
    let _ = writeln!(
        out,
        "lined up by call (function <- caller); timestamps and CPUs are not compared\n"
    );
    let step_width = c
        .rows
        .iter()
        .flat_map(|r| [&r.a, &r.b])
        .flatten()
        .map(|x| x.step.as_deref().unwrap_or("?").chars().count())
        .max()
        .unwrap_or(0);
    let cells: Vec<((String, String), (String, String))> = c
        .rows
        .iter()
        .map(|r| (cell(&r.a, step_width), cell(&r.b, step_width)))
        .collect();
    let w_where = cells
        .iter()
        .map(|((w, _), _)| w.chars().count())
        .max()
        .unwrap_or(0);
    let w_call = cells
        .iter()
        .map(|((_, call), _)| call.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = writeln!(out, "   {:<w$}B", "A", w = w_where + w_call + 5);
    for (row, ((wa, ca), (wb, cb))) in c.rows.iter().zip(&cells) {
        let mark = if row.same() {
            ' '
        } else if row.b.is_none() {
            '<'
        } else if row.a.is_none() {
            '>'
        } else {
            '!'
        };
        let line = format!("{mark}  {wa:<w_where$}  {ca:<w_call$}   {wb}  {cb}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out);
    match &c.first_divergence {
        None if c.compared == 0 => {
            let _ = writeln!(
                out,
                "nothing to compare: no function was traced on both sides"
            );
        }
        None if c.same => {
            let _ = writeln!(
                out,
                "the traces agree: the same {} calls in the same order",
                c.rows.len()
            );
        }
        None => {}
        Some(d) => {
            let mut s = format!(
                "first divergence: after {} in common, ",
                plural(d.common_before, "call")
            );
            match (d.only_a.first(), d.only_b.is_empty()) {
                (Some(first), _) => {
                    let _ = write!(
                        s,
                        "{} calls `{}` (call {}, {}): it is missing in {}",
                        a.name,
                        first.call,
                        first.seq,
                        first.step.as_deref().unwrap_or("step unknown"),
                        b.name
                    );
                    if d.only_b.is_empty() {
                        let _ = write!(s, ", which has nothing in its place");
                    } else {
                        let _ = write!(s, ", which calls {} instead", call_list(&d.only_b));
                    }
                    if d.only_a.len() > 1 {
                        let _ = write!(
                            s,
                            "; {} goes on with {} before the traces meet again: {}",
                            a.name,
                            plural(d.only_a.len() - 1, "more call"),
                            call_list(&d.only_a[1..])
                        );
                    }
                }
                (None, false) => {
                    let _ = write!(
                        s,
                        "{} calls {}, which {} does not",
                        b.name,
                        call_list(&d.only_b),
                        a.name
                    );
                }
                (None, true) => {}
            }
            let _ = writeln!(out, "{s}");
        }
    }
    if c.truncated {
        let _ = writeln!(
            out,
            "(the traces differ in more than {} calls in the middle: those were not lined up one by one)",
            super::compare::MAX_ALIGNED
        );
    }
    for ch in &c.chains {
        let (never, other) = if ch.never_in == "B" {
            (&b.name, &a.name)
        } else {
            (&a.name, &b.name)
        };
        let policy = if ch.functions.iter().any(|f| f == "rfc2863_policy") {
            " (rfc2863_policy, which holds default_operstate, never ran)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "the {} chain never ran in {never}: {} made {} in {other} and none in {never}, \
             so no carrier change reached link watch there and nothing set the operstate{policy}",
            ch.chain,
            ch.functions.join(" -> "),
            plural(ch.calls_elsewhere, "call")
        );
    }
    for side in ["B", "A"] {
        let list: Vec<String> = c
            .never_ran
            .iter()
            .filter(|n| n.never_in == side)
            .map(|n| format!("{} ({})", n.function, plural(n.calls_elsewhere, "call")))
            .collect();
        if !list.is_empty() {
            let (never, other) = if side == "B" {
                (&b.name, &a.name)
            } else {
                (&a.name, &b.name)
            };
            let _ = writeln!(
                out,
                "never ran in {never}, ran in {other}: {}",
                list.join(", ")
            );
        }
    }
    if !c.calls.is_empty() {
        let w = c.calls.iter().map(|x| x.call.len()).max().unwrap_or(0);
        let _ = writeln!(out, "calls made a different number of times:");
        let _ = writeln!(out, "  {:<w$}  {:>4}  {:>4}", "", "A", "B");
        for x in &c.calls {
            let _ = writeln!(out, "  {:<w$}  {:>4}  {:>4}", x.call, x.a, x.b);
        }
    }
    // Functions a side could not trace, one line per pair of reasons.
    let mut groups: Vec<((String, String), Vec<&str>)> = Vec::new();
    for n in &c.not_compared {
        let side = |r: &Option<String>| r.clone().unwrap_or_else(|| "traced".into());
        let key = (side(&n.a), side(&n.b));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(&n.function),
            None => groups.push((key, vec![&n.function])),
        }
    }
    for ((why_a, why_b), names) in groups {
        let why = if why_a == why_b {
            format!("both: {why_a}")
        } else {
            format!("A: {why_a}; B: {why_b}")
        };
        let _ = writeln!(out, "not compared: {} ({why})", names.join(", "));
    }
    for (name, info) in [("A", a), ("B", b)] {
        for p in &info.problems {
            let _ = writeln!(out, "problem in {name}'s trace: {p}");
        }
    }
    out
}
