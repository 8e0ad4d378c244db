//! The JSON report: everything the table shows plus the parsed link views,
//! the raw output, the engine's error and each kernel call trace in full,
//! for tools (`harness compare --from` reads the traces back).

use serde::Serialize;

use super::iso8601;
use crate::check::ShowCheck;
use crate::engine::ShowObservation;
use crate::outcome::{RunReport, ScenarioResult, Summary, Verdict};
use crate::scenario::{Device, Guest, Location, Step};
use crate::trace::KernelTrace;

#[derive(Serialize)]
struct Report<'a> {
    engine: &'a str,
    started: String,
    duration_s: f64,
    timeout_s: f64,
    summary: Summary,
    exit_code: u8,
    scenarios: Vec<Case<'a>>,
}

#[derive(Serialize)]
struct Case<'a> {
    name: &'a str,
    description: Option<&'a str>,
    location: &'a Location,
    guest: &'a Guest,
    device: &'a Device,
    steps: &'a [Step],
    verdict: Verdict,
    reason: Option<&'a str>,
    duration_s: f64,
    checks: &'a [ShowCheck],
    shows: &'a [ShowObservation],
    error: Option<ErrorJson>,
    serial_tail: &'a [String],
    work_dir: Option<String>,
    /// The kernel functions the scenario asked to trace.
    trace_request: Option<&'a [String]>,
    /// The trace, with its calls per function.
    trace: Option<TraceJson<'a>>,
}

#[derive(Serialize)]
struct TraceJson<'a> {
    #[serde(flatten)]
    trace: &'a KernelTrace,
    counts: Vec<CountJson>,
}

#[derive(Serialize)]
struct CountJson {
    function: String,
    calls: usize,
    traced: bool,
}

#[derive(Serialize)]
struct ErrorJson {
    kind: String,
    message: String,
    /// For an emulator stop: the instruction bytes, hex, space separated.
    instruction: Option<String>,
    rip: Option<String>,
    symbol: Option<String>,
}

fn error_json(r: &ScenarioResult) -> Option<ErrorJson> {
    if r.verdict != Verdict::Error {
        return None;
    }
    let mut e = ErrorJson {
        kind: r.error_kind.clone().unwrap_or_else(|| "error".into()),
        message: r.reason.clone().unwrap_or_default(),
        instruction: None,
        rip: None,
        symbol: None,
    };
    if let Some(crate::engine::EngineError::EmulatorStop {
        instruction,
        rip,
        symbol,
        ..
    }) = &r.error
    {
        e.instruction = Some(
            instruction
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        e.rip = rip.map(|r| format!("{r:#x}"));
        e.symbol = symbol.clone();
    }
    Some(e)
}

/// Renders the report as pretty-printed JSON. `skip_is_failure` is the same
/// choice the exit code was computed with.
pub fn json(report: &RunReport, skip_is_failure: bool) -> String {
    let doc = Report {
        engine: &report.engine,
        started: format!("{}Z", iso8601(report.started)),
        duration_s: report.elapsed.as_secs_f64(),
        timeout_s: report.timeout.as_secs_f64(),
        summary: report.summary(),
        exit_code: report.exit_code(skip_is_failure),
        scenarios: report
            .results
            .iter()
            .map(|r| Case {
                name: &r.scenario.name,
                description: r.scenario.description.as_deref(),
                location: &r.scenario.location,
                guest: &r.scenario.guest,
                device: &r.scenario.device,
                steps: &r.scenario.steps,
                verdict: r.verdict,
                reason: r.reason.as_deref(),
                duration_s: r.elapsed.as_secs_f64(),
                checks: &r.checks,
                shows: r.observation.as_ref().map_or(&[], |o| &o.shows),
                error: error_json(r),
                serial_tail: &r.serial_tail,
                work_dir: r.work_dir.as_ref().map(|d| d.display().to_string()),
                trace_request: r.scenario.trace.as_ref().map(|t| t.functions.as_slice()),
                trace: r
                    .observation
                    .as_ref()
                    .and_then(|o| o.trace.as_ref())
                    .map(|t| TraceJson {
                        trace: t,
                        counts: t
                            .counts()
                            .into_iter()
                            .map(|(function, calls)| CountJson {
                                traced: t.traced(&function) || calls > 0,
                                function,
                                calls,
                            })
                            .collect(),
                    }),
            })
            .collect(),
    };
    // Every field is a plain string, number, list or map: serialization
    // cannot fail; fall back to an error object rather than panic.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the report cannot be serialized: {e}") }).to_string()
    }) + "\n"
}
