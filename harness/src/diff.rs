//! `harness diff`: the same scenarios on two engines, and every difference
//! the guest could see between them — per show step the operstate, flags,
//! carrier, carrier_changes, negotiated features, MTU, MAC and ifindex; per
//! scenario the verdict and any failure (an error on one engine only, or
//! errors of different kinds). A value only one engine reports is listed
//! as not compared, not as a difference. Timings are not compared.

use std::fmt::Write as _;

use devices::virtio::net::features::names;
use serde::Serialize;

use crate::link::LinkView;
use crate::outcome::{RunReport, ScenarioResult, Verdict};

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The scenario.
    pub scenario: String,
    /// The show step's label, or `None` for the scenario as a whole.
    pub show: Option<String>,
    /// What differs: `outcome`, `verdict`, `operstate`, `flags`, `carrier`,
    /// `carrier_changes`, `features`, `mtu`, `mac`, `ifindex`, `show`.
    pub what: &'static str,
    /// The first engine's value.
    pub a: String,
    /// The second engine's value.
    pub b: String,
}

/// Scenarios that could not be compared (skipped on one or both engines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCompared {
    /// The scenario.
    pub scenario: String,
    /// Why.
    pub reason: String,
}

/// A value only one engine reported (the other cannot observe it: busybox
/// `ip` has no operstate, the kernel-only probe prints no MAC): not a
/// difference the guest shows, so it is listed apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreported {
    /// The scenario.
    pub scenario: String,
    /// The show step's label.
    pub show: String,
    /// Which value (`operstate`, `mac`, ...).
    pub what: &'static str,
    /// The engine that did not report it: `A` or `B`.
    pub missing_on: &'static str,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffReport {
    /// The first engine's name.
    pub a: String,
    /// The second engine's name.
    pub b: String,
    /// Scenarios compared.
    pub compared: usize,
    /// Every difference, in scenario order.
    pub differences: Vec<Difference>,
    /// Scenarios not compared.
    pub not_compared: Vec<NotCompared>,
    /// Values one engine did not report, so not compared.
    pub unreported: Vec<Unreported>,
}

/// Exit code: nothing differs.
pub const EXIT_SAME: u8 = 0;
/// Exit code: something differs.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code: nothing could be compared.
pub const EXIT_NOTHING_COMPARED: u8 = 3;

impl DiffReport {
    /// How many scenarios differ.
    pub fn differing(&self) -> usize {
        let mut names: Vec<&str> = self
            .differences
            .iter()
            .map(|d| d.scenario.as_str())
            .collect();
        names.dedup();
        names.len()
    }

    /// 1 when anything differs, 3 when nothing was compared, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.differences.is_empty() {
            EXIT_DIFFERENT
        } else if self.compared == 0 {
            EXIT_NOTHING_COMPARED
        } else {
            EXIT_SAME
        }
    }
}

/// How one engine's result ended, in words, when it has no observation to
/// compare: an error or a skip.
fn outcome(r: &ScenarioResult) -> String {
    let reason = r.reason.clone().unwrap_or_default();
    match (r.verdict, &r.error_kind) {
        (Verdict::Skipped, _) => format!("skipped: {reason}"),
        (Verdict::Error, Some(kind)) => format!("error ({kind}): {reason}"),
        (v, _) => format!("{}: {reason}", v.as_str().to_lowercase()),
    }
}

/// Compares two runs of the same scenarios (matched by name).
pub fn compare(a: &RunReport, b: &RunReport) -> DiffReport {
    let mut report = DiffReport {
        a: a.engine.clone(),
        b: b.engine.clone(),
        compared: 0,
        differences: Vec::new(),
        not_compared: Vec::new(),
        unreported: Vec::new(),
    };
    for ra in &a.results {
        let name = &ra.scenario.name;
        let Some(rb) = b.results.iter().find(|r| &r.scenario.name == name) else {
            report.not_compared.push(NotCompared {
                scenario: name.clone(),
                reason: "the second engine did not run it".into(),
            });
            continue;
        };
        if ra.verdict == Verdict::Skipped || rb.verdict == Verdict::Skipped {
            let side = |r: &ScenarioResult, engine: &str| {
                (r.verdict == Verdict::Skipped).then(|| format!("{engine}: {}", outcome(r)))
            };
            report.not_compared.push(NotCompared {
                scenario: name.clone(),
                reason: [side(ra, "first"), side(rb, "second")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
            });
            continue;
        }
        if ra.observation.is_none() && rb.observation.is_none() {
            // Both failed before observing anything: nothing guest-visible
            // to compare, and no sign that the engines agree.
            report.not_compared.push(NotCompared {
                scenario: name.clone(),
                reason: format!("first: {}; second: {}", outcome(ra), outcome(rb)),
            });
            continue;
        }
        report.compared += 1;
        let mut out = Vec::new();
        compare_results(ra, rb, &mut out);
        for (show, what, a, b) in out {
            match (a, b) {
                (Some(a), Some(b)) => report.differences.push(Difference {
                    scenario: name.clone(),
                    show,
                    what,
                    a,
                    b,
                }),
                (a, _) => report.unreported.push(Unreported {
                    scenario: name.clone(),
                    show: show.unwrap_or_default(),
                    what,
                    missing_on: if a.is_none() { "A" } else { "B" },
                }),
            }
        }
    }
    // Stable: a scenario's differences keep their step order.
    report
        .differences
        .sort_by(|x, y| x.scenario.cmp(&y.scenario));
    report
        .not_compared
        .sort_by(|x, y| x.scenario.cmp(&y.scenario));
    report
}

/// A difference (show label, what, A, B); a `None` value stands for "not
/// reported" and makes it an [`Unreported`] instead.
type Found = (Option<String>, &'static str, Option<String>, Option<String>);

fn compare_results(ra: &ScenarioResult, rb: &ScenarioResult, out: &mut Vec<Found>) {
    let (oa, ob) = match (&ra.observation, &rb.observation) {
        (Some(oa), Some(ob)) => (oa, ob),
        _ => {
            let say = |r: &ScenarioResult| match &r.observation {
                Some(_) => format!("observed ({})", r.verdict.as_str()),
                None => outcome(r),
            };
            out.push((None, "outcome", Some(say(ra)), Some(say(rb))));
            return;
        }
    };
    if ra.verdict != rb.verdict {
        out.push((
            None,
            "verdict",
            Some(ra.verdict.as_str().into()),
            Some(rb.verdict.as_str().into()),
        ));
    }
    let labels = ra.scenario.shows();
    let label = |step: usize| {
        labels
            .iter()
            .find(|(i, _)| *i == step)
            .map_or_else(|| format!("step {step}"), |(_, l)| l.clone())
    };
    for sa in &oa.shows {
        match ob.shows.iter().find(|s| s.step == sa.step) {
            Some(sb) => compare_views(&sa.link, &sb.link, &label(sa.step), out),
            None => out.push((
                Some(label(sa.step)),
                "show",
                Some("observed".into()),
                Some("missing".into()),
            )),
        }
    }
    for sb in ob
        .shows
        .iter()
        .filter(|s| !oa.shows.iter().any(|x| x.step == s.step))
    {
        out.push((
            Some(label(sb.step)),
            "show",
            Some("missing".into()),
            Some("observed".into()),
        ));
    }
}

/// `text`, followed by ` (only here: A,B)` when `only` is not empty.
fn with_only(text: String, only: &[String]) -> String {
    if only.is_empty() {
        text
    } else {
        format!("{text} (only here: {})", only.join(","))
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(ToString::to_string)
}

fn compare_views(a: &LinkView, b: &LinkView, label: &str, out: &mut Vec<Found>) {
    let mut found: Vec<(&'static str, Option<String>, Option<String>)> = vec![
        ("operstate", opt(&a.state), opt(&b.state)),
        ("carrier", opt(&a.carrier), opt(&b.carrier)),
        (
            "carrier_changes",
            opt(&a.carrier_changes),
            opt(&b.carrier_changes),
        ),
    ];
    let only = |x: &LinkView, y: &LinkView| {
        x.flags
            .iter()
            .filter(|f| !y.has_flag(f))
            .cloned()
            .collect::<Vec<_>>()
    };
    let (fa, fb) = (only(a, b), only(b, a));
    if !fa.is_empty() || !fb.is_empty() {
        found.insert(
            1,
            (
                "flags",
                Some(with_only(a.flags_text(), &fa)),
                Some(with_only(b.flags_text(), &fb)),
            ),
        );
    }
    found.push(match (a.features, b.features) {
        (Some(x), Some(y)) if x != y => (
            "features",
            Some(with_only(format!("{x:#x}"), &names(x & !y))),
            Some(with_only(format!("{y:#x}"), &names(y & !x))),
        ),
        (x, y) => (
            "features",
            x.map(|v| format!("{v:#x}")),
            y.map(|v| format!("{v:#x}")),
        ),
    });
    found.push(("mtu", opt(&a.mtu), opt(&b.mtu)));
    found.push(("mac", opt(&a.mac), opt(&b.mac)));
    found.push(("ifindex", opt(&Some(a.ifindex)), opt(&Some(b.ifindex))));
    out.extend(
        found
            .into_iter()
            .filter(|(_, x, y)| x != y)
            .map(|(what, x, y)| (Some(label.to_string()), what, x, y)),
    );
}

/// The report as text: both engines, each difference, the count.
pub fn text(report: &DiffReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "engine A: {}", report.a);
    let _ = writeln!(s, "engine B: {}", report.b);
    let _ = writeln!(
        s,
        "{} scenarios compared, {} differ, {} not compared\n",
        report.compared,
        report.differing(),
        report.not_compared.len()
    );
    if report.differences.is_empty() {
        let _ = writeln!(s, "no guest-visible differences");
    } else {
        let rows: Vec<[String; 4]> = report
            .differences
            .iter()
            .map(|d| {
                [
                    match &d.show {
                        Some(l) => format!("{} @ {l}", d.scenario),
                        None => d.scenario.clone(),
                    },
                    d.what.to_string(),
                    d.a.clone(),
                    d.b.clone(),
                ]
            })
            .collect();
        let header = [
            "SCENARIO".to_string(),
            "WHAT".into(),
            "A".into(),
            "B".into(),
        ];
        let width = |i: usize| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        for r in std::iter::once(&header).chain(&rows) {
            let _ = writeln!(s, "{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
        }
    }
    for n in &report.not_compared {
        let _ = writeln!(s, "not compared: {}: {}", n.scenario, n.reason);
    }
    let mut unreported: Vec<(&str, &str, usize)> = Vec::new();
    for u in &report.unreported {
        match unreported
            .iter_mut()
            .find(|(w, m, _)| *w == u.what && *m == u.missing_on)
        {
            Some(entry) => entry.2 += 1,
            None => unreported.push((u.what, u.missing_on, 1)),
        }
    }
    for (what, side, n) in unreported {
        let _ = writeln!(
            s,
            "not compared: {what}, which engine {side} does not report ({n} show steps)"
        );
    }
    let _ = writeln!(
        s,
        "\nresult: {}",
        match report.exit_code() {
            EXIT_DIFFERENT => format!("{} scenarios differ", report.differing()),
            EXIT_NOTHING_COMPARED => "nothing compared".to_string(),
            _ => "the engines agree".to_string(),
        }
    );
    s
}

#[cfg(test)]
mod tests;
