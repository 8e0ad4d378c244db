//! `FakeEngine`: a test double that runs no VM. By default it simulates the
//! guest with [`GuestModel`](super::model::GuestModel); per scenario name
//! (substring or glob) it can instead return a given observation, fail in
//! any of the ways a real engine fails, hang, or refuse the scenario. Its
//! name says it is a fake in every report. A scenario's kernel call trace
//! is simulated too, from the model's calls, and says so in its source.

use std::time::{Duration, Instant};

use super::model::{GuestModel, MODELLED_FUNCTIONS};
use super::{Engine, EngineError, Observation, RunContext, ShowObservation, Timing};
use crate::scenario::{LinkState, Scenario, Step};
use crate::select::matches;
use crate::trace::{FunctionStatus, KernelTrace, TraceEvent, TraceRequest};

/// How the fake's traces are recorded: not at all, they are simulated.
pub const TRACE_SOURCE: &str =
    "simulated by the fake engine's guest model (no kernel ran; a test double)";

/// The trace of `request` from the model's calls, each tagged with its
/// step; times are 1 ms apart, from 1 s.
fn simulated_trace(request: &TraceRequest, calls: &[(usize, &str, &str)]) -> KernelTrace {
    let mut trace = KernelTrace {
        source: TRACE_SOURCE.to_string(),
        requested: request.functions.clone(),
        complete: true,
        ..KernelTrace::default()
    };
    let statuses: Vec<FunctionStatus> = request
        .functions
        .iter()
        .map(|f| {
            let modelled = MODELLED_FUNCTIONS.contains(&f.as_str());
            FunctionStatus {
                name: f.clone(),
                traceable: modelled,
                reason: (!modelled).then(|| {
                    if f == "default_operstate" {
                        "inlined into rfc2863_policy (as in Debian's 6.1; simulated)".to_string()
                    } else {
                        "the fake engine's model does not simulate this function".to_string()
                    }
                }),
            }
        })
        .collect();
    trace.set_statuses(&statuses);
    for (step, function, caller) in calls {
        if !trace.traced(function) {
            continue;
        }
        let seq = trace.events.len() + 1;
        trace.events.push(TraceEvent {
            seq,
            function: (*function).to_string(),
            caller: (*caller).to_string(),
            timestamp_ns: 1_000_000_000 + seq as u64 * 1_000_000,
            cpu: 0,
            step: Some(*step),
            task: None,
        });
    }
    trace
}

/// The environment variable `harness run --engine fake` reads for faults:
/// `PATTERN=KIND[,PATTERN=KIND...]`, KIND one of the
/// [`Behaviour::from_kind`] names.
pub const FAULTS_ENV: &str = "VNETLAB_FAKE_FAULTS";

/// What the fake does for a scenario.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Simulate the guest (the default).
    Simulate,
    /// Simulate, but take this long first (honouring the deadline).
    Slow(Duration),
    /// Return this observation.
    Observe(Observation),
    /// Fail with this error.
    Fail(EngineError),
    /// Ignore the deadline (an engine that never checks it); stop only when
    /// cancelled.
    Hang,
    /// Panic inside `run` (a bug in an engine).
    Panic,
    /// Refuse the scenario with this reason.
    Unsupported(String),
}

impl Behaviour {
    /// The behaviour named `kind`: `simulate`, `slow`, `hang`, `panic`,
    /// `unsupported`, `timed-out`, `vmm-crash`, `guest-panic`,
    /// `emulator-stop`, `step-failed`, `infrastructure`.
    pub fn from_kind(kind: &str) -> Result<Self, String> {
        let tail = vec!["[fake] serial line before the fault".to_string()];
        Ok(match kind {
            "simulate" => Self::Simulate,
            "slow" => Self::Slow(Duration::from_secs(3600)),
            "hang" => Self::Hang,
            "panic" => Self::Panic,
            "unsupported" => Self::Unsupported("the fake was told to refuse it".into()),
            "timed-out" => Self::Fail(EngineError::TimedOut {
                after: Duration::from_secs(1),
                serial_tail: tail,
            }),
            "vmm-crash" => Self::Fail(EngineError::VmmCrash {
                detail: "the fake VMM was killed by SIGSEGV".into(),
                serial_tail: tail,
            }),
            "guest-panic" => Self::Fail(EngineError::GuestPanic {
                message: "Kernel panic - not syncing: fake".into(),
                serial_tail: tail,
            }),
            "emulator-stop" => Self::Fail(EngineError::EmulatorStop {
                instruction: vec![0xf0, 0x48, 0x0f, 0xc7, 0x4d, 0x20],
                rip: Some(0xffff_ffff_8131_4b60),
                symbol: Some("fake_symbol+0x20".into()),
                serial_tail: tail,
            }),
            "step-failed" => Self::Fail(EngineError::StepFailed {
                step: 1,
                what: "link-up".into(),
                detail: "the fake guest refused".into(),
                serial_tail: tail,
            }),
            "infrastructure" => Self::Fail(EngineError::Infrastructure {
                detail: "the fake has no disk".into(),
            }),
            _ => {
                return Err(format!(
                    "unknown fake behaviour `{kind}`; use simulate, slow, hang, panic, \
                     unsupported, timed-out, vmm-crash, guest-panic, emulator-stop, step-failed \
                     or infrastructure"
                ))
            }
        })
    }
}

/// The fake engine.
#[derive(Debug, Clone)]
pub struct FakeEngine {
    rules: Vec<(String, Behaviour)>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEngine {
    /// A fake that simulates every scenario.
    pub fn new() -> Self {
        Self { rules: Vec::new() }
    }

    /// Scenarios whose name matches `pattern` get `behaviour` (the first
    /// matching rule wins).
    pub fn with(mut self, pattern: &str, behaviour: Behaviour) -> Self {
        self.rules.push((pattern.to_string(), behaviour));
        self
    }

    /// A fake configured by a [`FAULTS_ENV`]-style spec.
    pub fn from_spec(spec: &str) -> Result<Self, String> {
        let mut fake = Self::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (pattern, kind) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` in {FAULTS_ENV} is not PATTERN=KIND"))?;
            fake = fake.with(pattern, Behaviour::from_kind(kind)?);
        }
        Ok(fake)
    }

    fn behaviour(&self, name: &str) -> &Behaviour {
        self.rules
            .iter()
            .find(|(p, _)| matches(p, name))
            .map_or(&Behaviour::Simulate, |(_, b)| b)
    }

    fn simulate(scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError> {
        let start = Instant::now();
        let mut guest: Option<GuestModel> = None;
        let mut shows = Vec::new();
        let mut boot = None;
        let mut calls: Vec<(usize, &str, &str)> = Vec::new();
        for (i, step) in scenario.steps.iter().enumerate() {
            if let Some(g) = guest.as_mut() {
                // The calls of the step before, now that it is over.
                calls.extend(g.take_calls().into_iter().map(|(f, c)| (i - 1, f, c)));
            }
            if ctx.should_stop() {
                return Err(ctx.timed_out());
            }
            ctx.serial.push_line(&format!("[fake] step {i}: {step}"));
            let failed = |detail: String| EngineError::StepFailed {
                step: i,
                what: step.to_string(),
                detail,
                serial_tail: ctx.serial.lines(),
            };
            if let Step::Boot = step {
                guest = Some(GuestModel::boot(scenario).map_err(failed)?);
                boot = Some(start.elapsed());
                continue;
            }
            let Some(g) = guest.as_mut() else {
                return Err(failed("the guest has not booted".into()));
            };
            match step {
                Step::Boot => {}
                Step::LinkUp => g.link_up(),
                Step::ReloadDriver => g.reload_driver(),
                Step::DeviceLink(s) => g.device_link(*s == LinkState::Up).map_err(failed)?,
                Step::Wait(d) => ctx.sleep(*d)?,
                Step::Show { .. } => {
                    let capture = g.show();
                    let link = capture
                        .view("eth0")
                        .map_err(|e| failed(format!("cannot parse what the guest showed: {e}")))?;
                    ctx.serial
                        .push_line(capture.ip_link.lines().next().unwrap_or(""));
                    shows.push(ShowObservation {
                        step: i,
                        link,
                        raw: capture.ip_link,
                        at: start.elapsed(),
                    });
                }
            }
        }
        if let Some(g) = guest.as_mut() {
            let last = scenario.steps.len().saturating_sub(1);
            calls.extend(g.take_calls().into_iter().map(|(f, c)| (last, f, c)));
        }
        Ok(Observation {
            shows,
            serial_tail: ctx.serial.lines(),
            timing: Timing {
                boot,
                total: start.elapsed(),
            },
            trace: scenario
                .trace
                .as_ref()
                .map(|request| simulated_trace(request, &calls)),
        })
    }
}

impl Engine for FakeEngine {
    fn name(&self) -> String {
        "fake (test double: a simulated virtio_net guest, no VM runs)".into()
    }

    fn supports(&self, scenario: &Scenario) -> Result<(), String> {
        match self.behaviour(&scenario.name) {
            Behaviour::Unsupported(why) => Err(why.clone()),
            _ => Ok(()),
        }
    }

    fn run(&self, scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError> {
        match self.behaviour(&scenario.name) {
            Behaviour::Simulate => Self::simulate(scenario, ctx),
            Behaviour::Slow(d) => {
                ctx.serial.push_line("[fake] slow engine sleeping");
                ctx.sleep(*d)?;
                Self::simulate(scenario, ctx)
            }
            Behaviour::Observe(o) => Ok(o.clone()),
            Behaviour::Fail(e) => Err(e.clone()),
            Behaviour::Hang => {
                ctx.serial.push_line("[fake] hanging, deaf to the deadline");
                while !ctx.cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(EngineError::Infrastructure {
                    detail: "the hanging fake was cancelled".into(),
                })
            }
            Behaviour::Panic => panic!("the fake engine was told to panic"),
            Behaviour::Unsupported(why) => Err(EngineError::Infrastructure {
                detail: format!("run called on an unsupported scenario: {why}"),
            }),
        }
    }
}
