//! The interface between the harness and what runs a scenario's guest: an
//! [`Engine`] boots a fresh VM per scenario, carries out the steps and
//! returns an [`Observation`] per `show` step, or says precisely why it
//! could not.

pub mod agent;
pub mod fake;
pub mod guest;
pub mod kernel_only;
pub mod model;
pub mod qemu;
mod registry;
pub mod vmm_guest;

pub use registry::{EngineInfo, Registry, ENGINE_ENV};

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::link::LinkView;
use crate::scenario::Scenario;
use crate::serial::SerialTail;
use crate::trace::KernelTrace;

/// Something that can run scenarios: our VMM, QEMU, or a test double.
pub trait Engine: Send + Sync + 'static {
    /// What ran, as printed at the top of every report, e.g.
    /// `vmm (kernel-only, emulated KVM)` or `qemu (tcg)`.
    fn name(&self) -> String;

    /// `Ok` if this engine can run `scenario`; otherwise why not (the
    /// scenario is then reported as skipped with this reason).
    fn supports(&self, scenario: &Scenario) -> Result<(), String>;

    /// Runs `scenario` in a fresh VM. Must stop (kill the VM) by
    /// `ctx.deadline` or when `ctx` is cancelled, and should feed the
    /// guest's console into `ctx.serial` as it arrives.
    fn run(&self, scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError>;

    /// Gets ready for `scenarios` (the ones it supports) before any
    /// scenario's deadline starts: builds or fetches guest images, which can
    /// take minutes the first time. An error fails every one of them.
    fn prepare(&self, _scenarios: &[&Scenario]) -> Result<(), EngineError> {
        Ok(())
    }
}

/// A flag the runner sets to tell an engine to stop; clones share it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the runner gives an engine for one scenario.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// When the scenario started.
    pub started: Instant,
    /// When the engine must have stopped the VM.
    pub deadline: Instant,
    /// A fresh directory for this scenario's files (sockets, logs, images).
    pub work_dir: PathBuf,
    /// Set when the runner gives up on the scenario.
    pub cancel: CancelToken,
    /// The guest console's last lines; the runner reads it on a timeout.
    pub serial: SerialTail,
}

impl RunContext {
    /// A context whose deadline is `timeout` from now.
    pub fn new(timeout: Duration, work_dir: PathBuf) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + timeout,
            work_dir,
            cancel: CancelToken::new(),
            serial: SerialTail::default(),
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the engine should stop now: deadline passed or cancelled.
    pub fn should_stop(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.deadline
    }

    /// The error for a scenario stopped at its deadline, with the serial
    /// tail collected so far.
    pub fn timed_out(&self) -> EngineError {
        EngineError::TimedOut {
            after: self.started.elapsed(),
            serial_tail: self.serial.lines(),
        }
    }

    /// Sleeps for `d`, waking early to return [`Self::timed_out`] when the
    /// deadline passes or the run is cancelled.
    pub fn sleep(&self, d: Duration) -> Result<(), EngineError> {
        let until = Instant::now() + d;
        loop {
            if self.should_stop() {
                return Err(self.timed_out());
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }
}

/// What one `show` step observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShowObservation {
    /// The step's index in the scenario's `steps`.
    pub step: usize,
    /// The parsed view.
    pub link: LinkView,
    /// The raw text it was parsed from (`ip link show`, sysfs values).
    pub raw: String,
    /// When it was taken, from the start of the run.
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
}

/// How long things took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// From start to the guest being ready, when the engine knows.
    #[serde(serialize_with = "opt_seconds")]
    pub boot: Option<Duration>,
    /// The whole run, as the engine measured it.
    #[serde(serialize_with = "seconds")]
    pub total: Duration,
}

/// Everything an engine observed in one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    /// One per `show` step, in step order.
    pub shows: Vec<ShowObservation>,
    /// The last lines of the guest's serial console.
    pub serial_tail: Vec<String>,
    /// Timing.
    pub timing: Timing,
    /// The kernel call trace, when the scenario asked for one.
    pub trace: Option<KernelTrace>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Why an engine could not produce an observation. Every kind is reported
/// as an error, never as a pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The deadline passed; the VM was killed.
    #[error("the scenario timed out after {:.1} s", after.as_secs_f64())]
    TimedOut {
        /// How long it ran.
        after: Duration,
        /// The console's last lines.
        serial_tail: Vec<String>,
    },
    /// The VMM (or QEMU) died or failed on the host side.
    #[error("the VMM crashed: {detail}")]
    VmmCrash {
        /// What happened (exit status, signal, last stderr line).
        detail: String,
        /// The console's last lines.
        serial_tail: Vec<String>,
    },
    /// The guest kernel panicked.
    #[error("the guest kernel panicked: {message}")]
    GuestPanic {
        /// The panic line.
        message: String,
        /// The console's last lines.
        serial_tail: Vec<String>,
    },
    /// KVM's instruction emulator met an instruction it cannot run.
    #[error("the emulator stopped at an instruction it cannot run: {}", EmulatorStopText(instruction, *rip, symbol.as_deref()))]
    EmulatorStop {
        /// The instruction bytes KVM reported.
        instruction: Vec<u8>,
        /// The guest RIP, when known.
        rip: Option<u64>,
        /// The kernel symbol at RIP (from System.map), when known.
        symbol: Option<String>,
        /// The console's last lines.
        serial_tail: Vec<String>,
    },
    /// The guest could not carry out a step (e.g. `modprobe` failed, the
    /// output of `ip link` could not be parsed).
    #[error("step {step} ({what}) failed in the guest: {detail}")]
    StepFailed {
        /// The step's index in the scenario's `steps`.
        step: usize,
        /// The step, as written.
        what: String,
        /// What went wrong.
        detail: String,
        /// The console's last lines.
        serial_tail: Vec<String>,
    },
    /// Something around the guest failed: a missing image, a tool that
    /// cannot be started, a full disk.
    #[error("infrastructure error: {detail}")]
    Infrastructure {
        /// What failed.
        detail: String,
    },
}

struct EmulatorStopText<'a>(&'a [u8], Option<u64>, Option<&'a str>);

impl fmt::Display for EmulatorStopText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "bytes {}",
            if bytes.is_empty() {
                "unknown".into()
            } else {
                bytes.join(" ")
            }
        )?;
        if let Some(rip) = self.1 {
            write!(f, " at RIP {rip:#x}")?;
        }
        if let Some(sym) = self.2 {
            write!(f, " in {sym}")?;
        }
        Ok(())
    }
}

impl EngineError {
    /// A short machine-readable kind: `timed-out`, `vmm-crash`,
    /// `guest-panic`, `emulator-stop`, `step-failed`, `infrastructure`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TimedOut { .. } => "timed-out",
            Self::VmmCrash { .. } => "vmm-crash",
            Self::GuestPanic { .. } => "guest-panic",
            Self::EmulatorStop { .. } => "emulator-stop",
            Self::StepFailed { .. } => "step-failed",
            Self::Infrastructure { .. } => "infrastructure",
        }
    }

    /// The console's last lines, when the error carries them.
    pub fn serial_tail(&self) -> &[String] {
        match self {
            Self::TimedOut { serial_tail, .. }
            | Self::VmmCrash { serial_tail, .. }
            | Self::GuestPanic { serial_tail, .. }
            | Self::EmulatorStop { serial_tail, .. }
            | Self::StepFailed { serial_tail, .. } => serial_tail,
            Self::Infrastructure { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sentences_with_the_facts() {
        let e = EngineError::EmulatorStop {
            instruction: vec![0xf0, 0x48, 0x0f, 0xc7],
            rip: Some(0xffff_ffff_8131_4b60),
            symbol: Some("cmpxchg_double+0x10".into()),
            serial_tail: vec![],
        };
        assert_eq!(
            e.to_string(),
            "the emulator stopped at an instruction it cannot run: bytes f0 48 0f c7 \
             at RIP 0xffffffff81314b60 in cmpxchg_double+0x10"
        );
        assert_eq!(e.kind(), "emulator-stop");
        let t = EngineError::TimedOut {
            after: Duration::from_millis(1500),
            serial_tail: vec!["last".into()],
        };
        assert_eq!(t.to_string(), "the scenario timed out after 1.5 s");
        assert_eq!(t.serial_tail(), ["last"]);
    }

    #[test]
    fn context_sleep_stops_at_the_deadline_and_on_cancel() {
        let ctx = RunContext::new(Duration::from_millis(50), std::env::temp_dir());
        ctx.serial.push_line("booting");
        let t = Instant::now();
        let e = ctx.sleep(Duration::from_secs(10)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(e, EngineError::TimedOut { ref serial_tail, .. } if serial_tail == &["booting"])
        );

        let ctx = RunContext::new(Duration::from_secs(60), std::env::temp_dir());
        assert!(ctx.sleep(Duration::from_millis(5)).is_ok());
        let c = ctx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            c.cancel.cancel();
        });
        assert!(ctx.sleep(Duration::from_secs(10)).is_err());
        assert!(ctx.should_stop());
    }
}
