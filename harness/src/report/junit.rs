//! JUnit XML for CI: one `testsuite` per run (named after the engine), one
//! `testcase` per scenario with `failure`, `error` or `skipped` as its
//! verdict says, expected-versus-observed and the raw output in
//! `system-out`, and, for what did not pass, the serial tail in `system-err`.

use std::fmt::Write as _;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::{iso8601, rows, SERIAL_LINES};
use crate::outcome::{RunReport, ScenarioResult, Verdict};

/// Characters XML 1.0 cannot carry (most C0 controls, e.g. the ESC of a
/// serial console's colour codes) become `\xNN` text.
fn xml_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The `classname`: the scenario file's stem, so CI groups cases by file.
fn classname(r: &ScenarioResult) -> String {
    r.scenario
        .location
        .file
        .file_stem()
        .map_or_else(|| "scenarios".into(), |s| s.to_string_lossy().into_owned())
}

fn system_out(r: &ScenarioResult) -> String {
    let mut out = String::new();
    if let Some(d) = &r.scenario.description {
        let _ = writeln!(out, "{d}");
    }
    let _ = writeln!(out, "scenario: {}", r.scenario.location);
    for row in rows(r) {
        let _ = writeln!(
            out,
            "{}: expected {}; observed {}",
            row.what, row.expected, row.observed
        );
    }
    if let Some(o) = &r.observation {
        for (s, (_, label)) in o.shows.iter().zip(r.scenario.shows()) {
            let _ = writeln!(out, "--- {label} (step {})", s.step);
            out.push_str(&s.raw);
            if !s.raw.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Renders the report as JUnit XML.
pub fn junit(report: &RunReport) -> String {
    let s = report.summary();
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let attrs = |e: &mut BytesStart, pairs: &[(&str, String)]| {
        for (k, v) in pairs {
            e.push_attribute((*k, xml_safe(v).as_str()));
        }
    };
    let counts = [
        ("tests", s.total().to_string()),
        ("failures", s.failed.to_string()),
        ("errors", s.errors.to_string()),
        ("skipped", s.skipped.to_string()),
        ("time", secs(report.elapsed)),
        ("timestamp", iso8601(report.started)),
    ];
    // Writing into a Vec cannot fail; the results are ignored on purpose.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut suites = BytesStart::new("testsuites");
    attrs(&mut suites, &[("name", "virtio-net lab harness".into())]);
    attrs(&mut suites, &counts);
    let _ = w.write_event(Event::Start(suites));
    let mut suite = BytesStart::new("testsuite");
    attrs(
        &mut suite,
        &[("name", format!("harness on {}", report.engine))],
    );
    attrs(&mut suite, &counts);
    let _ = w.write_event(Event::Start(suite));
    let _ = w.write_event(Event::Start(BytesStart::new("properties")));
    let mut p = BytesStart::new("property");
    attrs(
        &mut p,
        &[("name", "engine".into()), ("value", report.engine.clone())],
    );
    let _ = w.write_event(Event::Empty(p));
    let mut p = BytesStart::new("property");
    attrs(
        &mut p,
        &[("name", "timeout".into()), ("value", secs(report.timeout))],
    );
    let _ = w.write_event(Event::Empty(p));
    let _ = w.write_event(Event::End(BytesEnd::new("properties")));
    for r in &report.results {
        let mut case = BytesStart::new("testcase");
        attrs(
            &mut case,
            &[
                ("name", r.scenario.name.clone()),
                ("classname", classname(r)),
                ("time", secs(r.elapsed)),
                ("file", r.scenario.location.file.display().to_string()),
                ("line", r.scenario.location.line.to_string()),
            ],
        );
        let _ = w.write_event(Event::Start(case));
        let reason = r.reason.clone().unwrap_or_default();
        let tail_start = r.serial_tail.len().saturating_sub(SERIAL_LINES);
        let tail = r.serial_tail[tail_start..].join("\n");
        let element = match r.verdict {
            Verdict::Pass => None,
            Verdict::Fail => Some(("failure", "mismatch".to_string())),
            Verdict::Error => Some((
                "error",
                r.error_kind.clone().unwrap_or_else(|| "error".into()),
            )),
            Verdict::Skipped => None,
        };
        if let Some((tag, kind)) = element {
            let mut e = BytesStart::new(tag);
            attrs(&mut e, &[("message", reason.clone()), ("type", kind)]);
            let _ = w.write_event(Event::Start(e));
            let body = if tail.is_empty() {
                reason.clone()
            } else {
                format!("{reason}\n\nserial console, last lines:\n{tail}")
            };
            let _ = w.write_event(Event::Text(BytesText::new(&xml_safe(&body))));
            let _ = w.write_event(Event::End(BytesEnd::new(tag)));
        }
        if r.verdict == Verdict::Skipped {
            let mut e = BytesStart::new("skipped");
            attrs(&mut e, &[("message", reason)]);
            let _ = w.write_event(Event::Empty(e));
        }
        let _ = w.write_event(Event::Start(BytesStart::new("system-out")));
        let _ = w.write_event(Event::Text(BytesText::new(&xml_safe(&system_out(r)))));
        let _ = w.write_event(Event::End(BytesEnd::new("system-out")));
        if !tail.is_empty() && r.verdict != Verdict::Pass {
            let _ = w.write_event(Event::Start(BytesStart::new("system-err")));
            let _ = w.write_event(Event::Text(BytesText::new(&xml_safe(&tail))));
            let _ = w.write_event(Event::End(BytesEnd::new("system-err")));
        }
        let _ = w.write_event(Event::End(BytesEnd::new("testcase")));
    }
    let _ = w.write_event(Event::End(BytesEnd::new("testsuite")));
    let _ = w.write_event(Event::End(BytesEnd::new("testsuites")));
    let mut xml = String::from_utf8_lossy(&w.into_inner()).into_owned();
    xml.push('\n');
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_made_visible() {
        assert_eq!(xml_safe("a\u{1b}[0mb\u{0}\tc\n"), "a\\x1b[0mb\\x00\tc\n");
    }
}
