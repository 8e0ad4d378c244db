//! Runs scenarios on an engine: each in its own work directory and VM (the
//! engine's job), `jobs` at a time, each with a deadline the runner enforces
//! itself when an engine overruns it, and turns what came back into
//! verdicts. A VMM crash, guest panic or engine panic is an error, never a
//! pass.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::check::{evaluate, ShowCheck};
use crate::engine::{Engine, EngineError, Observation, RunContext};
use crate::outcome::{RunReport, ScenarioResult, Verdict};
use crate::scenario::Scenario;
use crate::serial::kernel_panic;

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenarios run at the same time (at least 1).
    pub jobs: usize,
    /// Each scenario's deadline, passed to the engine.
    pub timeout: Duration,
    /// How long past the deadline the runner waits for an engine before it
    /// reports a timeout itself and tells the engine to stop.
    pub grace: Duration,
    /// Where each scenario's work directory is made.
    pub work_dir: PathBuf,
}

/// Runs `scenarios` on `engine`; calls `progress` as each one finishes.
/// The results come back in the order of `scenarios`.
pub fn run(
    engine: Arc<dyn Engine>,
    scenarios: Vec<Scenario>,
    options: &RunOptions,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) -> RunReport {
    let started = SystemTime::now();
    let clock = Instant::now();
    let name = engine.name();
    log::info!(
        "running {} scenarios on {name}, {} at a time",
        scenarios.len(),
        options.jobs.max(1)
    );
    let supported: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| engine.supports(s).is_ok())
        .collect();
    let prepared = if supported.is_empty() {
        Ok(())
    } else {
        engine.prepare(&supported)
    };
    let slots: Vec<Mutex<Option<ScenarioResult>>> =
        scenarios.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = options.jobs.max(1).min(scenarios.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(scenario) = scenarios.get(i) else {
                    break;
                };
                let result = match &prepared {
                    Err(e) if engine.supports(scenario).is_ok() => {
                        engine_error(scenario, e.clone(), Vec::new())
                    }
                    _ => run_one(&engine, scenario, i, options),
                };
                progress(&result);
                *slots[i]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
            });
        }
    });
    let results = slots
        .into_iter()
        .zip(scenarios)
        .map(|(slot, s)| {
            slot.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .unwrap_or_else(|| {
                    ScenarioResult::bare(s, Verdict::Error, "the runner lost this result".into())
                })
        })
        .collect();
    RunReport {
        engine: name,
        started,
        elapsed: clock.elapsed(),
        timeout: options.timeout,
        results,
    }
}

/// A directory name for scenario number `index` called `name`: no `/`, no
/// way to climb out of the work directory.
fn dir_name(index: usize, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index:03}-{safe}")
}

/// What came back from the engine's thread.
enum Returned {
    Done(Result<Observation, EngineError>),
    Panicked(String),
    Overran,
}

fn call_engine(
    engine: &Arc<dyn Engine>,
    scenario: &Scenario,
    ctx: &RunContext,
    wait: Duration,
) -> Returned {
    let (tx, rx) = mpsc::channel();
    let (engine, scenario, thread_ctx) = (Arc::clone(engine), scenario.clone(), ctx.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("engine {}", scenario.name))
        .spawn(move || {
            let r =
                std::panic::catch_unwind(AssertUnwindSafe(|| engine.run(&scenario, &thread_ctx)));
            // The runner may have given up and dropped the receiver.
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Returned::Done(Err(EngineError::Infrastructure {
            detail: format!("cannot start a thread for the engine: {e}"),
        }));
    }
    match rx.recv_timeout(wait) {
        Ok(Ok(r)) => Returned::Done(r),
        Ok(Err(panic)) => Returned::Panicked(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into()),
        ),
        Err(mpsc::RecvTimeoutError::Timeout) => Returned::Overran,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Returned::Panicked("the engine thread vanished".into())
        }
    }
}

fn run_one(
    engine: &Arc<dyn Engine>,
    scenario: &Scenario,
    index: usize,
    o: &RunOptions,
) -> ScenarioResult {
    if let Err(why) = engine.supports(scenario) {
        log::info!("{}: skipped: {why}", scenario.name);
        return ScenarioResult::bare(scenario.clone(), Verdict::Skipped, why);
    }
    let clock = Instant::now();
    let dir = o.work_dir.join(dir_name(index, &scenario.name));
    let mut result = match std::fs::create_dir_all(&dir) {
        Ok(()) => run_in(engine, scenario, &dir, o),
        Err(e) => engine_error(
            scenario,
            EngineError::Infrastructure {
                detail: format!("cannot create the work directory {}: {e}", dir.display()),
            },
            Vec::new(),
        ),
    };
    result.elapsed = clock.elapsed();
    result.work_dir = Some(dir);
    log::info!("{}: {}", scenario.name, result.verdict.as_str());
    result
}

fn run_in(
    engine: &Arc<dyn Engine>,
    scenario: &Scenario,
    dir: &Path,
    o: &RunOptions,
) -> ScenarioResult {
    let ctx = RunContext::new(o.timeout, dir.to_path_buf());
    match call_engine(engine, scenario, &ctx, o.timeout + o.grace) {
        Returned::Done(Ok(observation)) => judge(scenario, observation),
        Returned::Done(Err(e)) => {
            let tail = ctx.serial.lines();
            engine_error(scenario, e, tail)
        }
        Returned::Panicked(message) => {
            let mut r = ScenarioResult::bare(
                scenario.clone(),
                Verdict::Error,
                format!("the engine panicked: {message}"),
            );
            r.error_kind = Some("engine-panic".into());
            r.serial_tail = ctx.serial.lines();
            r
        }
        Returned::Overran => {
            ctx.cancel.cancel();
            log::warn!(
                "{}: the engine overran its deadline by more than {:?}; told it to stop",
                scenario.name,
                o.grace
            );
            let e = ctx.timed_out();
            let mut r = engine_error(scenario, e, Vec::new());
            r.reason = Some(format!(
                "{} (the engine did not stop at the deadline and was abandoned {:.1} s later)",
                r.reason.unwrap_or_default(),
                o.grace.as_secs_f64()
            ));
            r
        }
    }
}

fn engine_error(scenario: &Scenario, e: EngineError, fallback_tail: Vec<String>) -> ScenarioResult {
    let mut r = ScenarioResult::bare(scenario.clone(), Verdict::Error, e.to_string());
    r.error_kind = Some(e.kind().into());
    r.serial_tail = if e.serial_tail().is_empty() {
        fallback_tail
    } else {
        e.serial_tail().to_vec()
    };
    r.error = Some(e);
    r
}

/// Turns an observation into a verdict.
pub fn judge(scenario: &Scenario, observation: Observation) -> ScenarioResult {
    if let Some(message) = kernel_panic(&observation.serial_tail) {
        let e = EngineError::GuestPanic {
            message,
            serial_tail: observation.serial_tail.clone(),
        };
        let mut r = engine_error(scenario, e, Vec::new());
        r.observation = Some(observation);
        return r;
    }
    let mut r = ScenarioResult::bare(scenario.clone(), Verdict::Pass, String::new());
    r.reason = None;
    r.serial_tail = observation.serial_tail.clone();
    match evaluate(scenario, &observation) {
        Err(e) => {
            r.verdict = Verdict::Error;
            r.error_kind = Some("bad-observation".into());
            r.reason = Some(e.to_string());
        }
        Ok(checks) => {
            let (verdict, reason) = verdict_of(&checks);
            r.verdict = verdict;
            r.reason = reason;
            if verdict == Verdict::Error {
                r.error_kind = Some("unobservable".into());
            }
            r.checks = checks;
        }
    }
    r.observation = Some(observation);
    r
}

fn verdict_of(checks: &[ShowCheck]) -> (Verdict, Option<String>) {
    let describe = |want: Option<bool>, verb: &str| {
        checks
            .iter()
            .flat_map(|c| c.items.iter().map(move |i| (c, i)))
            .filter(|(_, i)| i.ok == want)
            .map(|(c, i)| {
                format!(
                    "at {}: expected {}, {verb} {}",
                    c.label, i.expected, i.observed
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if checks.iter().any(|c| c.ok() == Some(false)) {
        (Verdict::Fail, Some(describe(Some(false), "observed")))
    } else if checks.iter().any(|c| c.ok().is_none()) {
        (Verdict::Error, Some(describe(None, "but")))
    } else {
        (Verdict::Pass, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_directory_names_stay_inside() {
        assert_eq!(dir_name(3, "a/../b"), "003-a_.._b");
        assert_eq!(
            dir_name(12, "operstate/stock-6.1/status"),
            "012-operstate_stock-6.1_status"
        );
    }
}
