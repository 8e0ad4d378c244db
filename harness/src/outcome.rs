//! The result of running scenarios: a verdict per scenario with what was
//! expected and observed, and the run's summary and exit code.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::check::ShowCheck;
use crate::engine::{EngineError, Observation};
use crate::scenario::Scenario;

/// A scenario's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation matched.
    Pass,
    /// An expectation did not match.
    Fail,
    /// No trustworthy observation: the engine failed (timeout, VMM crash,
    /// guest panic, emulator stop, ...), or a value could not be observed.
    Error,
    /// The engine cannot run this scenario; not a pass.
    Skipped,
}

impl Verdict {
    /// Upper-case name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error => "ERROR",
            Self::Skipped => "SKIPPED",
        }
    }
}

/// What happened to one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// The scenario.
    pub scenario: Scenario,
    /// The verdict.
    pub verdict: Verdict,
    /// Why it failed, errored or was skipped, as one sentence.
    pub reason: Option<String>,
    /// The error's kind (`timed-out`, `guest-panic`, `engine-panic`,
    /// `unobservable`, `bad-observation`, ...) when the verdict is Error.
    pub error_kind: Option<String>,
    /// The engine's error, when it returned one.
    pub error: Option<EngineError>,
    /// Expected next to observed, per checked show step.
    pub checks: Vec<ShowCheck>,
    /// The engine's observation, when it returned one.
    pub observation: Option<Observation>,
    /// The guest console's last lines.
    pub serial_tail: Vec<String>,
    /// Wall time, as the runner measured it.
    pub elapsed: Duration,
    /// The scenario's work directory, when one was made.
    pub work_dir: Option<PathBuf>,
}

impl ScenarioResult {
    /// A result with only a verdict and a reason (skips, early errors).
    pub fn bare(scenario: Scenario, verdict: Verdict, reason: String) -> Self {
        Self {
            scenario,
            verdict,
            reason: Some(reason),
            error_kind: None,
            error: None,
            checks: Vec::new(),
            observation: None,
            serial_tail: Vec::new(),
            elapsed: Duration::ZERO,
            work_dir: None,
        }
    }
}

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios whose expectations did not match.
    pub failed: usize,
    /// Scenarios that could not be observed.
    pub errors: usize,
    /// Scenarios the engine cannot run.
    pub skipped: usize,
}

impl Summary {
    /// All scenarios.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.errors + self.skipped
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The engine's name, as it describes itself.
    pub engine: String,
    /// When the run started.
    pub started: SystemTime,
    /// How long it took.
    pub elapsed: Duration,
    /// The per-scenario deadline.
    pub timeout: Duration,
    /// One per scenario, sorted by name.
    pub results: Vec<ScenarioResult>,
}

/// The exit code when every scenario that ran passed and at least one ran.
pub const EXIT_OK: u8 = 0;
/// The exit code when any scenario failed or errored.
pub const EXIT_FAILED: u8 = 1;
/// The exit code when nothing was checked (everything skipped).
pub const EXIT_NOTHING_RAN: u8 = 3;

impl RunReport {
    /// Counts per verdict.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.results {
            match r.verdict {
                Verdict::Pass => s.passed += 1,
                Verdict::Fail => s.failed += 1,
                Verdict::Error => s.errors += 1,
                Verdict::Skipped => s.skipped += 1,
            }
        }
        s
    }

    /// 1 when anything failed or errored; 3 when scenarios were selected
    /// but every one was skipped; 0 otherwise (including an empty run, e.g.
    /// an empty CI shard). Skips never count as passes: with
    /// `skip_is_failure` a skip makes the run fail too.
    pub fn exit_code(&self, skip_is_failure: bool) -> u8 {
        let s = self.summary();
        if s.failed > 0 || s.errors > 0 || (skip_is_failure && s.skipped > 0) {
            EXIT_FAILED
        } else if s.skipped > 0 && s.passed == 0 {
            EXIT_NOTHING_RAN
        } else {
            EXIT_OK
        }
    }
}
