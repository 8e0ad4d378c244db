//! Reports of a run: a readable table, JUnit XML for CI and JSON. Each names
//! the engine that ran.

mod json;
mod junit;
mod table;
mod traces;

pub use json::json;
pub use junit::junit;
pub use table::table;
pub use traces::traces;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::outcome::ScenarioResult;
use crate::scenario::Scenario;

/// How many serial lines the reports show for a scenario that did not pass.
pub const SERIAL_LINES: usize = 20;

/// One row of expected-versus-observed: a checked show step, or the whole
/// scenario when nothing could be checked.
pub(crate) struct Row {
    /// `scenario` or `scenario @ label`.
    pub what: String,
    pub expected: String,
    pub observed: String,
}

/// The expected/observed rows of a result. A mismatching observed item is
/// marked with a leading `!`.
pub(crate) fn rows(r: &ScenarioResult) -> Vec<Row> {
    let name = &r.scenario.name;
    let labelled = |label: &str| {
        if r.scenario.expectations.len() > 1 {
            format!("{name} @ {label}")
        } else {
            name.clone()
        }
    };
    if !r.checks.is_empty() {
        return r
            .checks
            .iter()
            .map(|c| Row {
                what: labelled(&c.label),
                expected: c
                    .items
                    .iter()
                    .map(|i| i.expected.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                observed: c
                    .items
                    .iter()
                    .map(|i| match i.ok {
                        Some(false) => format!("!{}", i.observed),
                        _ => i.observed.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
    }
    r.scenario
        .expectations
        .iter()
        .map(|e| Row {
            what: labelled(&e.label),
            expected: expected_text(&r.scenario, e.show),
            observed: "-".into(),
        })
        .collect()
}

/// The expectation of show number `show` in words.
fn expected_text(s: &Scenario, show: usize) -> String {
    let Some(e) = s.expectations.iter().find(|e| e.show == show) else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(o) = e.operstate {
        parts.push(format!("state {o}"));
    }
    parts.extend(e.flags.iter().map(|f| format!("has {f}")));
    parts.extend(e.no_flags.iter().map(|f| format!("lacks {f}")));
    match e.carrier_changes {
        Some(crate::scenario::CarrierChanges::Exactly(n)) => {
            parts.push(format!("carrier_changes {n}"))
        }
        Some(crate::scenario::CarrierChanges::AtLeast(n)) => {
            parts.push(format!("carrier_changes >= {n}"))
        }
        None => {}
    }
    parts.extend(e.features.iter().map(|f| format!("feature {} on", f.name)));
    parts.extend(
        e.no_features
            .iter()
            .map(|f| format!("feature {} off", f.name)),
    );
    if let Some(m) = e.mtu {
        parts.push(format!("mtu {m}"));
    }
    parts.join(", ")
}

/// Seconds with one decimal, e.g. `12.3s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `t` as ISO 8601 UTC without fractions (`2026-01-31T12:00:00`), as JUnit's
/// `timestamp` wants it.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01"
        );
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(1_767_225_599)),
            "2025-12-31T23:59:59"
        );
    }
}
