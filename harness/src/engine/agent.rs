//! What the engines that run a real guest with user space share: a
//! scenario's steps translated into the guest agent's steps (guest-images'
//! agent protocol), the loop that follows the console while the guest runs
//! and makes the host-side link changes at the right moment, and the
//! reading of the agent's transcript into an [`Observation`] or an
//! [`EngineError`].
//!
//! # Step translation
//!
//! Every scenario step but `boot` becomes one agent step, in order (agent
//! step `n`, counted from 1, is the `n`-th non-boot step). The helpers are
//! those of the agent's `lib.sh`.
//!
//! | scenario step | agent step (guest) | host |
//! |---|---|---|
//! | `boot` | none: the boot itself, ready at `AGENT START` | starts the VM |
//! | `link-up` | `ip link set eth0 up` | |
//! | `show` | `show_link eth0`: `ip link show eth0`, then `sysfs:operstate=`, `sysfs:carrier=`, `sysfs:carrier_changes=`, `sysfs:features=` lines | parses them |
//! | `wait` | `usleep MICROSECONDS` | |
//! | `reload-driver` | `reload_virtio_net eth0`: `rmmod virtio_net; modprobe virtio_net` when virtio_net is a module (Debian 6.1 and 6.12), else unbind and bind the virtio device in sysfs (the test kernel, where it is built in); then waits for eth0 | |
//! | `device-link = down\|up` | `wait_carrier eth0 0\|1 30`: waits for the carrier to follow | at the step's `BEGIN` line: sets the device's link (QMP `set_link`, `NetControl::set_link`) |
//!
//! `sysfs:features` is `/sys/class/net/eth0/device/features`, the virtio
//! device's negotiated feature bits as Linux prints them: one `0`/`1`
//! character per bit, bit 0 first, 64 characters (so bit 32, VERSION_1, is
//! the 33rd character).
//!
//! A `device-link` step needs VIRTIO_NET_F_STATUS in the device's offer:
//! without it the device has no link status the guest could see, and our
//! device refuses the change, so the scenario fails at that step before
//! any VM starts.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use devices::virtio::net::features::has;
use guest_images::agent::{line_event, LineEvent, StepResult};
use guest_images::{AgentConfig, PowerOff, Transcript};
use virtio_bindings::virtio_net::VIRTIO_NET_F_STATUS;

use super::{EngineError, Observation, RunContext, ShowObservation, Timing};
use crate::link::ShowCapture;
use crate::scenario::{LinkState, Scenario, Step};
use crate::serial::kernel_panic;
use crate::trace::{self, TraceRequest};

/// The guest's interface (the initramfs has no udev: the first NIC is eth0).
pub const IFACE: &str = "eth0";

/// Linux's x86 `COMMAND_LINE_SIZE`, terminating NUL included.
pub const CMDLINE_MAX: usize = 2048;

/// How long a `device-link` step waits in the guest for the carrier.
const LINK_WAIT_SECS: u32 = 30;

/// The agent's default per-step deadline; a longer `wait` raises it.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The prefix of the sysfs lines `show_link` prints.
const SYSFS: &str = "sysfs:";

/// What the host does with an agent step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the step is the guest's alone.
    Guest,
    /// Its output is a `show`: parse it into a link view.
    Show,
    /// Set the device's link when the step begins; the guest waits for
    /// the carrier to follow.
    DeviceLink {
        /// Up (true) or down.
        up: bool,
    },
}

/// One agent step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStep {
    /// The scenario step it carries out (an index into `scenario.steps`).
    pub scenario_step: usize,
    /// The shell command the agent runs.
    pub command: String,
    /// What the host does with it.
    pub action: Action,
}

/// The agent command for one scenario step, and what the host does with
/// it; `None` for `boot`.
pub fn translate(step: &Step) -> Option<(String, Action)> {
    Some(match step {
        Step::Boot => return None,
        Step::LinkUp => (format!("ip link set {IFACE} up"), Action::Guest),
        Step::Show { .. } => (format!("show_link {IFACE}"), Action::Show),
        Step::Wait(d) => (format!("usleep {}", d.as_micros()), Action::Guest),
        Step::ReloadDriver => (format!("reload_virtio_net {IFACE}"), Action::Guest),
        Step::DeviceLink(state) => {
            let up = *state == LinkState::Up;
            (
                format!("wait_carrier {IFACE} {} {LINK_WAIT_SECS}", u8::from(up)),
                Action::DeviceLink { up },
            )
        }
    })
}

/// A scenario translated for the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlan {
    /// Agent step `n` (from 1) is `steps[n - 1]`.
    pub steps: Vec<AgentStep>,
    /// The agent's per-step deadline: a minute, or longer than the longest
    /// wait.
    pub step_timeout: Duration,
    /// The kernel call trace the scenario asks for.
    pub trace: Option<TraceRequest>,
}

impl AgentPlan {
    /// Translates `scenario` for a device that offers the feature bits
    /// `offered`. A `device-link` step on a device without STATUS fails
    /// here, at that step.
    pub fn new(scenario: &Scenario, offered: u64) -> Result<Self, EngineError> {
        let mut steps = Vec::new();
        let mut step_timeout = STEP_TIMEOUT;
        for (i, step) in scenario.steps.iter().enumerate() {
            if let Step::DeviceLink(_) = step {
                if !has(offered, VIRTIO_NET_F_STATUS) {
                    return Err(EngineError::StepFailed {
                        step: i,
                        what: step.to_string(),
                        detail: "the device does not offer VIRTIO_NET_F_STATUS, so it has no \
                                 link status the guest could see (and the lab's device refuses \
                                 the change); offer +status to flap the link"
                            .into(),
                        serial_tail: Vec::new(),
                    });
                }
            }
            if let Step::Wait(d) = step {
                step_timeout = step_timeout.max(*d + Duration::from_secs(30));
            }
            if let Some((command, action)) = translate(step) {
                steps.push(AgentStep {
                    scenario_step: i,
                    command,
                    action,
                });
            }
        }
        Ok(Self {
            steps,
            step_timeout,
            trace: scenario.trace.clone(),
        })
    }

    /// Agent step `n` (from 1).
    pub fn step(&self, n: u32) -> Option<&AgentStep> {
        let i = usize::try_from(n).ok()?.checked_sub(1)?;
        self.steps.get(i)
    }

    /// The agent's configuration: these steps, a watchdog of `watchdog`
    /// (so that the guest ends itself before the host kills it), and how
    /// to end the machine.
    pub fn agent_config(
        &self,
        watchdog: Duration,
        poweroff: PowerOff,
        load_modules: bool,
    ) -> AgentConfig {
        AgentConfig {
            steps: self.steps.iter().map(|s| s.command.clone()).collect(),
            timeout_secs: secs(watchdog).max(10),
            step_timeout_secs: secs(self.step_timeout),
            poweroff,
            load_modules,
            trace: self
                .trace
                .as_ref()
                .map(|t| t.functions.clone())
                .unwrap_or_default(),
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The agent watchdog for a run whose host deadline is `remaining` away:
/// ten seconds earlier, so that the guest reports and powers off first.
pub fn watchdog_for(remaining: Duration) -> Duration {
    remaining.saturating_sub(Duration::from_secs(10))
}

/// Refuses a kernel command line Linux would truncate.
pub fn check_cmdline(cmdline: &str) -> Result<(), EngineError> {
    if cmdline.len() < CMDLINE_MAX {
        return Ok(());
    }
    Err(EngineError::Infrastructure {
        detail: format!(
            "the kernel command line would be {} bytes, and Linux keeps only {}: the scenario \
             has too many steps to pass them in vnetlab.steps=",
            cmdline.len(),
            CMDLINE_MAX - 1
        ),
    })
}

/// The offered feature bits of the scenario's device: its `features` list
/// applied the way the VMM's `--net` option applies it (an `mtu` adds
/// VIRTIO_NET_F_MTU to the starting set).
pub fn net_config(scenario: &Scenario) -> Result<devices::virtio::net::NetConfig, String> {
    let d = &scenario.device;
    let mut parts = vec![format!("transport={}", d.transport.as_str())];
    if let Some(mac) = &d.mac {
        parts.push(format!("mac={mac}"));
    }
    if let Some(mtu) = d.mtu {
        parts.push(format!("mtu={mtu}"));
    }
    if let Some(backend) = &d.backend {
        parts.push(format!("backend={backend}"));
    }
    // Last: every item after `features=` belongs to it.
    if !d.features.trim().is_empty() {
        parts.push(format!("features={}", d.features.trim()));
    }
    devices::virtio::net::NetConfig::parse(&parts.join(","))
        .map_err(|e| format!("the device of this scenario is not valid: {e}"))
}

/// What a running VM lets the session loop do.
pub trait Machine {
    /// Sets the device's link from the host side.
    fn set_link(&mut self, up: bool) -> Result<(), String>;
    /// `Some` once the VM has ended: `Ok` when the guest ended it (power-off,
    /// reset), or the host-side failure.
    fn poll_end(&mut self) -> Option<Result<(), EngineError>>;
    /// Stops the VM now and reaps it; may be called more than once.
    fn kill(&mut self);
}

/// How a session ended.
#[derive(Debug)]
pub enum End {
    /// The VM ended by itself.
    Exited(Result<(), EngineError>),
    /// The deadline passed or the run was cancelled; the VM was killed.
    Stopped,
    /// The host could not set the link at agent step `n`; the VM was killed.
    LinkFailed {
        /// The agent step.
        n: u32,
        /// What went wrong.
        detail: String,
    },
}

/// What the host saw while the guest ran.
#[derive(Debug)]
pub struct Session {
    /// The whole console.
    pub console: String,
    /// When the agent started (from the start of the run).
    pub boot: Option<Duration>,
    /// When each agent step's `END` line arrived (from the start of the run).
    pub step_ends: HashMap<u32, Duration>,
    /// How it ended.
    pub end: End,
}

/// How long the console may still deliver output after the VM ended.
const DRAIN: Duration = Duration::from_secs(2);

/// Follows the console of a running VM until it ends, the deadline passes
/// or the run is cancelled: every chunk goes to `ctx.serial`; at the
/// `BEGIN` of a `device-link` step the link is set through `machine`.
pub fn drive(
    plan: &AgentPlan,
    ctx: &RunContext,
    console: &Receiver<Vec<u8>>,
    machine: &mut dyn Machine,
) -> Session {
    let mut follower = Follower {
        plan,
        ctx,
        all: Vec::new(),
        line: Vec::new(),
        boot: None,
        step_ends: HashMap::new(),
        link_failed: None,
    };
    let mut closed = false;
    let end = loop {
        if ctx.should_stop() {
            machine.kill();
            break End::Stopped;
        }
        match console.recv_timeout(Duration::from_millis(50)) {
            Ok(chunk) => follower.feed(&chunk, machine),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if !closed {
                    log::debug!("the console closed; waiting for the VM to end");
                }
                closed = true;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some((n, detail)) = follower.link_failed.take() {
            machine.kill();
            break End::LinkFailed { n, detail };
        }
        if let Some(result) = machine.poll_end() {
            let until = Instant::now() + DRAIN;
            while !closed && Instant::now() < until {
                match console.recv_timeout(Duration::from_millis(20)) {
                    Ok(chunk) => follower.feed(&chunk, &mut NoMachine),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => closed = true,
                }
            }
            break End::Exited(result);
        }
    };
    follower.flush();
    Session {
        console: String::from_utf8_lossy(&follower.all).into_owned(),
        boot: follower.boot,
        step_ends: follower.step_ends,
        end,
    }
}

/// Stands in for the machine once it has ended.
struct NoMachine;

impl Machine for NoMachine {
    fn set_link(&mut self, _up: bool) -> Result<(), String> {
        Err("the VM has already ended".into())
    }
    fn poll_end(&mut self) -> Option<Result<(), EngineError>> {
        Some(Ok(()))
    }
    fn kill(&mut self) {}
}

struct Follower<'a> {
    plan: &'a AgentPlan,
    ctx: &'a RunContext,
    all: Vec<u8>,
    line: Vec<u8>,
    boot: Option<Duration>,
    step_ends: HashMap<u32, Duration>,
    link_failed: Option<(u32, String)>,
}

impl Follower<'_> {
    fn feed(&mut self, chunk: &[u8], machine: &mut dyn Machine) {
        self.ctx.serial.push_bytes(chunk);
        self.all.extend_from_slice(chunk);
        for &b in chunk {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.on_line(line.trim_end_matches('\r'), machine);
            } else {
                self.line.push(b);
            }
        }
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            self.on_line(&line, &mut NoMachine);
        }
    }

    fn on_line(&mut self, line: &str, machine: &mut dyn Machine) {
        let at = self.ctx.started.elapsed();
        match line_event(line) {
            Some(LineEvent::Start) => {
                log::debug!("guest agent started after {:.1} s", at.as_secs_f64());
                self.boot.get_or_insert(at);
            }
            Some(LineEvent::StepEnd(n)) => {
                self.step_ends.insert(n, at);
            }
            // After a failed link change the session ends: no more changes.
            Some(LineEvent::StepBegin(_)) if self.link_failed.is_some() => {}
            Some(LineEvent::StepBegin(n)) => {
                if let Some(AgentStep {
                    action: Action::DeviceLink { up },
                    ..
                }) = self.plan.step(n)
                {
                    let word = if *up { "up" } else { "down" };
                    log::info!("agent step {n} began: setting the device's link {word}");
                    if let Err(e) = machine.set_link(*up) {
                        self.link_failed
                            .get_or_insert((n, format!("setting the link {word} failed: {e}")));
                    }
                }
            }
            Some(LineEvent::Watchdog) => log::warn!("the guest agent's watchdog expired"),
            _ => {}
        }
    }
}

/// Reads a finished session into the scenario's observation, or the error
/// that explains why there is none. In this order: a kernel panic on the
/// console; a link change the host could not make; the deadline; a
/// host-side failure of the VM; then the agent's own record (it never
/// started, a module did not load, a step failed, was cut short, or never
/// ran).
pub fn observe(
    plan: &AgentPlan,
    scenario: &Scenario,
    session: &Session,
    ctx: &RunContext,
) -> Result<Observation, EngineError> {
    let tail = || ctx.serial.lines();
    let console_lines: Vec<String> = session
        .console
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if let Some(message) = kernel_panic(&console_lines) {
        return Err(EngineError::GuestPanic {
            message,
            serial_tail: tail(),
        });
    }
    let failed = |n: u32, detail: String| {
        let (step, what) = plan
            .step(n)
            .map(|s| (s.scenario_step, scenario.steps[s.scenario_step].to_string()))
            .unwrap_or((0, "boot".into()));
        EngineError::StepFailed {
            step,
            what,
            detail,
            serial_tail: tail(),
        }
    };
    match &session.end {
        End::LinkFailed { n, detail } => return Err(failed(*n, detail.clone())),
        End::Stopped => return Err(ctx.timed_out()),
        End::Exited(Err(e)) => return Err(e.clone()),
        End::Exited(Ok(())) => {}
    }
    let transcript = Transcript::parse(&session.console);
    if !transcript.started {
        return Err(failed(
            0,
            "the guest agent never started (no AGENT START line on the console); the \
             console's last lines say how far the guest got"
                .into(),
        ));
    }
    if let Some(m) = transcript.modules.iter().find(|m| m.rc != 0) {
        return Err(failed(
            0,
            format!(
                "loading the module {} failed (insmod exit status {}): {}",
                m.name,
                m.rc,
                m.output.join(" / ")
            ),
        ));
    }
    let mut shows = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let result = transcript.steps.iter().rev().find(|s| s.index == n);
        let cut_short = |what: &str| {
            if transcript.watchdog {
                EngineError::TimedOut {
                    after: ctx.started.elapsed(),
                    serial_tail: tail(),
                }
            } else {
                failed(n, what.to_string())
            }
        };
        let Some(result) = result else {
            return Err(cut_short(
                "the agent never ran this step: the guest ended before it",
            ));
        };
        match result.rc {
            None => {
                return Err(cut_short(
                    "the step never finished: the guest ended during it",
                ))
            }
            Some(143) => {
                return Err(failed(
                    n,
                    format!(
                        "killed at the agent's step deadline of {} s; its output: {}",
                        plan.step_timeout.as_secs(),
                        output_text(result)
                    ),
                ))
            }
            Some(0) => {}
            Some(rc) => {
                return Err(failed(
                    n,
                    format!(
                        "`{}` exited with status {rc}: {}",
                        result.command,
                        output_text(result)
                    ),
                ))
            }
        }
        if step.action == Action::Show {
            let capture = show_capture(&result.output);
            let link = capture.view(IFACE).map_err(|e| {
                failed(
                    n,
                    format!(
                        "cannot read what the guest showed ({e}): {}",
                        output_text(result)
                    ),
                )
            })?;
            shows.push(ShowObservation {
                step: step.scenario_step,
                link,
                raw: result.output.join("\n"),
                at: session
                    .step_ends
                    .get(&n)
                    .copied()
                    .unwrap_or_else(|| ctx.started.elapsed()),
            });
        }
    }
    let trace = plan.trace.as_ref().map(|request| {
        trace::agent::from_agent(request, transcript.trace.as_ref(), &|n| {
            plan.step(n).map(|s| s.scenario_step)
        })
    });
    Ok(Observation {
        shows,
        serial_tail: tail(),
        timing: Timing {
            boot: session.boot,
            total: ctx.started.elapsed(),
        },
        trace,
    })
}

fn output_text(result: &StepResult) -> String {
    if result.output.is_empty() {
        "(no output)".into()
    } else {
        result.output.join(" / ")
    }
}

/// Splits a `show_link` step's output into `ip link` text and the sysfs
/// values (empty values, unreadable attributes, stay unset).
pub fn show_capture(output: &[String]) -> ShowCapture {
    let mut capture = ShowCapture::default();
    let mut ip_link = Vec::new();
    for line in output {
        let Some((key, value)) = line.strip_prefix(SYSFS).and_then(|kv| kv.split_once('=')) else {
            ip_link.push(line.as_str());
            continue;
        };
        let value = value.trim().to_string();
        let slot = match key {
            "operstate" => &mut capture.operstate,
            "carrier" => &mut capture.carrier,
            "carrier_changes" => &mut capture.carrier_changes,
            "features" => &mut capture.features,
            _ => {
                log::debug!("ignoring the unknown sysfs value {key}");
                continue;
            }
        };
        if !value.is_empty() {
            *slot = Some(value);
        }
    }
    capture.ip_link = ip_link.join("\n");
    capture
}

#[cfg(test)]
mod tests;
