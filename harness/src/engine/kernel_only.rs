//! The kernel-only engine: the lab's VMM boots the lab's test kernel, whose
//! built-in probe (guest-images' kernel-only profile) carries out the
//! scenario's steps inside the kernel and prints what `ip link show` would.
//!
//! This is how scenarios run on our VMM and device where KVM is emulated
//! and no guest user space can run (environment.md); on hardware KVM it
//! works the same, without the emulator work-arounds. The VMM runs in this
//! process; device-side link changes go straight to the device's control
//! handle at the moment the probe starts waiting for their effect.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::virtio::net::{NetConfig, NetControl};
use guest_images::kernel_only::probe::{self, ProbeReport, ProbeStep};
use guest_images::kernel_only::{self, KernelOnlyArtifacts, Variant};
use guest_images::{BuildContext, Cache, DriverVariant};
use vmm::symbols::SymbolMap;
use vmm::{Outcome, SerialTarget, VmConfig, Vmm};

use super::{Engine, EngineError, Observation, RunContext, ShowObservation, Timing};
use crate::host::KvmKind;
use crate::link::ShowCapture;
use crate::scenario::{Driver, Kernel, LinkState, Scenario, Step};
use crate::trace::{self, TraceRequest};

/// Guest memory for a kernel-only boot (the probe needs little; less memory
/// also boots faster under the emulator).
const MEMORY_MIB: u64 = 128;
/// How long the probe waits for a device-side link change to reach the
/// carrier.
const LINK_WAIT_MS: u32 = 30_000;

/// Runs scenarios on the lab's VMM with the kernel-only test kernel.
pub struct KernelOnlyEngine {
    kvm: KvmKind,
    cache: Cache,
    kernels: Mutex<HashMap<DriverVariant, KernelOnlyArtifacts>>,
}

impl KernelOnlyEngine {
    /// An engine for this host; fails without a usable /dev/kvm.
    pub fn new(cache: Cache) -> Result<Self, String> {
        let kvm = KvmKind::detect();
        if let KvmKind::Absent(why) = &kvm {
            return Err(why.clone());
        }
        Ok(Self {
            kvm,
            cache,
            kernels: Mutex::new(HashMap::new()),
        })
    }

    fn emulated(&self) -> bool {
        matches!(self.kvm, KvmKind::Emulated(_))
    }

    /// The test kernel for `driver`, built into the cache if needed.
    fn kernel(&self, driver: Driver) -> Result<KernelOnlyArtifacts, EngineError> {
        let variant: Variant = match driver {
            Driver::Stock => DriverVariant::Stock,
            Driver::Prefix => DriverVariant::Prefix,
        };
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kernels.get(&variant) {
            return Ok(k.clone());
        }
        let ctx = BuildContext::new(self.cache.clone());
        let built = kernel_only::build(&ctx, variant).map_err(|e| EngineError::Infrastructure {
            detail: format!(
                "cannot build the {} kernel-only test kernel: {e}",
                driver.as_str()
            ),
        })?;
        kernels.insert(variant, built.clone());
        Ok(built)
    }
}

/// A scenario translated for the probe.
#[derive(Debug)]
struct ProbePlan {
    /// The probe's steps.
    steps: Vec<ProbeStep>,
    /// For a probe step (1-based), the device-side link change to make when
    /// the probe starts it.
    actions: HashMap<usize, LinkState>,
    /// Probe step `n` (1-based) carries out scenario step `scenario_steps[n - 1]`.
    scenario_steps: Vec<usize>,
}

/// The probe steps for a scenario.
fn translate(scenario: &Scenario) -> ProbePlan {
    let mut steps = Vec::new();
    let mut actions = HashMap::new();
    let mut scenario_steps = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let before = steps.len();
        match step {
            Step::Boot => {}
            Step::LinkUp => steps.push(ProbeStep::Up),
            Step::Show { .. } => steps.push(ProbeStep::Show),
            Step::Wait(d) => steps.push(ProbeStep::Sleep(
                d.as_millis().min(probe::MAX_WAIT_MS as u128) as u32,
            )),
            Step::ReloadDriver => steps.push(ProbeStep::Rebind),
            Step::DeviceLink(state) => {
                // The probe waits for the carrier to follow; the engine flips
                // the device's link when it sees this step begin.
                steps.push(ProbeStep::WaitCarrier {
                    on: *state == LinkState::Up,
                    ms: LINK_WAIT_MS,
                });
                actions.insert(steps.len(), *state);
            }
        }
        scenario_steps.extend(std::iter::repeat_n(i, steps.len() - before));
    }
    ProbePlan {
        steps,
        actions,
        scenario_steps,
    }
}

/// `vnetlab.trace=` for `request` on `kernel`: the names looked up in its
/// System.map.
fn trace_arg(kernel: &KernelOnlyArtifacts, request: &TraceRequest) -> Result<String, EngineError> {
    let map =
        std::fs::read_to_string(&kernel.system_map).map_err(|e| EngineError::Infrastructure {
            detail: format!(
                "cannot read the test kernel's System.map {}: {e}",
                kernel.system_map.display()
            ),
        })?;
    let targets = kernel_only::trace::resolve(&map, &request.functions).map_err(|e| {
        EngineError::Infrastructure {
            detail: format!("the trace cannot be passed to the test kernel: {e}"),
        }
    })?;
    Ok(kernel_only::trace::trace_arg(&targets))
}

/// The device as the VMM's `--net` describes it.
fn net_config(scenario: &Scenario) -> Result<NetConfig, EngineError> {
    let d = &scenario.device;
    let mut spec = format!("transport={}", d.transport.as_str());
    if let Some(mac) = &d.mac {
        spec.push_str(&format!(",mac={mac}"));
    }
    if let Some(mtu) = d.mtu {
        spec.push_str(&format!(",mtu={mtu}"));
    }
    if let Some(backend) = &d.backend {
        spec.push_str(&format!(",backend={backend}"));
    }
    if !d.features.trim().is_empty() {
        spec.push_str(&format!(",features={}", d.features));
    }
    NetConfig::parse(&spec).map_err(|e| EngineError::Infrastructure {
        detail: format!("the device `{spec}` is not valid for the VMM: {e}"),
    })
}

/// Serial output, shared between the VMM and the engine.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Follows the console: feeds complete lines to the run context's tail and
/// performs the link change a probe step waits for when it begins.
struct Follower {
    seen: usize,
    actions: HashMap<usize, LinkState>,
    total: usize,
    control: Option<NetControl>,
}

impl Follower {
    /// Handles the lines completed since the last call; an error means a
    /// link change the device refused.
    fn follow(&mut self, text: &str, ctx: &RunContext) -> Result<(), EngineError> {
        let Some(end) = text[self.seen..].rfind('\n').map(|i| self.seen + i + 1) else {
            return Ok(());
        };
        for line in text[self.seen..end].lines() {
            ctx.serial.push_line(line);
            let Some((_, rest)) = probe::probe_line(line) else {
                continue;
            };
            let Some(step) = rest
                .strip_prefix("STEP ")
                .and_then(|r| r.split('/').next())
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(state) = self.actions.remove(&step) {
                let up = state == LinkState::Up;
                let control = self
                    .control
                    .as_ref()
                    .ok_or_else(|| EngineError::Infrastructure {
                        detail: "the VM has no network device to change the link of".into(),
                    })?;
                control.set_link(up).map_err(|e| EngineError::StepFailed {
                    step,
                    what: format!("device-link = {}", if up { "up" } else { "down" }),
                    detail: e.to_string(),
                    serial_tail: ctx.serial.lines(),
                })?;
                log::info!(
                    "device link set {} at probe step {step}/{}",
                    if up { "up" } else { "down" },
                    self.total
                );
            }
        }
        self.seen = end;
        Ok(())
    }
}

impl Engine for KernelOnlyEngine {
    fn name(&self) -> String {
        match &self.kvm {
            KvmKind::Emulated(why) => format!(
                "vmm (kernel-only test kernel, emulated KVM: {why}; emulator work-arounds on)"
            ),
            _ => "vmm (kernel-only test kernel, hardware KVM)".into(),
        }
    }

    fn supports(&self, scenario: &Scenario) -> Result<(), String> {
        if scenario.guest.kernel != Kernel::Test {
            return Err(format!(
                "the kernel-only engine boots only the lab's test kernel; `{}` needs guest user \
                 space{}",
                scenario.guest.kernel.as_str(),
                if self.emulated() {
                    ", which this machine's emulated KVM cannot run (the qemu engine can)"
                } else {
                    " (use the vmm-guest engine)"
                }
            ));
        }
        net_config(scenario).map(drop).map_err(|e| e.to_string())
    }

    fn prepare(&self, scenarios: &[&Scenario]) -> Result<(), EngineError> {
        let mut drivers: Vec<Driver> = scenarios.iter().map(|s| s.guest.driver).collect();
        drivers.dedup();
        for driver in [Driver::Stock, Driver::Prefix] {
            if drivers.contains(&driver) {
                self.kernel(driver)?;
            }
        }
        Ok(())
    }

    fn run(&self, scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError> {
        let kernel = self.kernel(scenario.guest.driver)?;
        let plan = translate(scenario);
        let timeout = ctx.remaining();
        let mut config = VmConfig::new(&kernel.vmlinux);
        config.cmdline = kernel_only::command_line(
            self.emulated(),
            &plan.steps,
            Some(timeout.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
        );
        if let Some(request) = &scenario.trace {
            config.cmdline.push(' ');
            config.cmdline.push_str(&trace_arg(&kernel, request)?);
        }
        super::agent::check_cmdline(&config.cmdline)?;
        config.memory_mib = MEMORY_MIB;
        config.timeout = Some(timeout);
        config.nets = vec![net_config(scenario)?];
        config.event_log = Some(ctx.work_dir.join("events.jsonl"));
        let console = Console::default();
        config.serial = SerialTarget::Writer(Box::new(console.clone()));
        let vm = Vmm::new(config).map_err(|e| EngineError::VmmCrash {
            detail: format!("the VMM could not start: {e}"),
            serial_tail: Vec::new(),
        })?;
        let stopper = vm.stopper();
        let mut follower = Follower {
            seen: 0,
            total: plan.steps.len(),
            actions: plan.actions.clone(),
            control: vm.net_controls().first().cloned(),
        };
        let started = Instant::now();
        let runner = std::thread::Builder::new()
            .name("kernel-only-vm".into())
            .spawn(move || vm.run())
            .map_err(|e| EngineError::Infrastructure {
                detail: format!("cannot start the VM thread: {e}"),
            })?;
        let mut failure = None;
        while !runner.is_finished() {
            if failure.is_none() {
                if let Err(e) = follower.follow(&console.text(), ctx) {
                    failure = Some(e);
                    stopper.stop();
                }
            }
            if ctx.should_stop() {
                stopper.stop();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let outcome = runner.join().map_err(|_| EngineError::VmmCrash {
            detail: "the VMM thread panicked".into(),
            serial_tail: ctx.serial.lines(),
        })?;
        let text = console.text();
        let _ = follower.follow(&text, ctx);
        let _ = std::fs::write(ctx.work_dir.join("serial.log"), &text);
        if let Some(e) = failure {
            return Err(e);
        }
        let outcome = outcome.map_err(|e| EngineError::VmmCrash {
            detail: e.to_string(),
            serial_tail: ctx.serial.lines(),
        })?;
        let report = probe::parse_output(&text);
        judge_outcome(&outcome, &report, &text, &kernel, ctx)?;
        let mut observation = observations(scenario, &report, ctx, started.elapsed())?;
        observation.trace = scenario.trace.as_ref().map(|request| {
            trace::probe::from_probe(request, report.trace.as_ref(), &|n| {
                let i = usize::try_from(n).ok()?.checked_sub(1)?;
                plan.scenario_steps.get(i).copied()
            })
        });
        Ok(observation)
    }
}

/// Turns how the VM ended into an error, unless the probe finished.
fn judge_outcome(
    outcome: &Outcome,
    report: &ProbeReport,
    text: &str,
    kernel: &KernelOnlyArtifacts,
    ctx: &RunContext,
) -> Result<(), EngineError> {
    let tail = || ctx.serial.lines();
    if let Some(panic) = text
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
    {
        return Err(EngineError::GuestPanic {
            message: panic.trim().to_owned(),
            serial_tail: tail(),
        });
    }
    match outcome {
        Outcome::DebugExit(0) if report.passed() => Ok(()),
        Outcome::DebugExit(code) => {
            let failed = report.steps.iter().find(|s| !s.ok);
            Err(EngineError::StepFailed {
                step: failed.map_or(usize::from(*code), |s| s.index),
                what: failed.map_or_else(|| "probe".to_owned(), |s| s.step.clone()),
                detail: failed
                    .and_then(|s| s.reason.clone())
                    .or_else(|| report.failures.first().cloned())
                    .unwrap_or_else(|| format!("the probe ended with status {code}")),
                serial_tail: tail(),
            })
        }
        Outcome::InternalError { error, rip } => {
            let symbol = match (rip, SymbolMap::load(&kernel.system_map)) {
                (Some(rip), Ok(map)) => map.lookup(*rip).map(|(n, off)| format!("{n}+{off:#x}")),
                _ => None,
            };
            Err(EngineError::EmulatorStop {
                instruction: error.insn_bytes.clone().unwrap_or_default(),
                rip: *rip,
                symbol,
                serial_tail: tail(),
            })
        }
        Outcome::Timeout(_) | Outcome::Stopped => Err(ctx.timed_out()),
        other => Err(EngineError::VmmCrash {
            detail: format!("the VM ended before the probe did: {other}"),
            serial_tail: tail(),
        }),
    }
}

/// One observation per `show` step of the scenario, in order.
fn observations(
    scenario: &Scenario,
    report: &ProbeReport,
    ctx: &RunContext,
    total: Duration,
) -> Result<Observation, EngineError> {
    let shows = scenario.shows();
    if report.observations.len() != shows.len() {
        return Err(EngineError::StepFailed {
            step: shows.first().map_or(0, |s| s.0),
            what: "show".into(),
            detail: format!(
                "the probe printed {} observations for {} show steps",
                report.observations.len(),
                shows.len()
            ),
            serial_tail: ctx.serial.lines(),
        });
    }
    let mut out = Vec::new();
    for ((step, _label), obs) in shows.iter().zip(&report.observations) {
        let capture = ShowCapture {
            ip_link: obs.header_with_carrier(),
            ..ShowCapture::default()
        };
        let mut link = capture
            .view(&obs.name)
            .map_err(|e| EngineError::StepFailed {
                step: *step,
                what: "show".into(),
                detail: format!(
                    "cannot read the probe's observation `{}`: {e}",
                    obs.ip_link_line
                ),
                serial_tail: ctx.serial.lines(),
            })?;
        link.features = obs.carrier.as_ref().and_then(|c| c.features);
        out.push(ShowObservation {
            step: *step,
            link,
            raw: format!(
                "{}\n{}",
                obs.ip_link_line,
                obs.carrier
                    .as_ref()
                    .map(|c| format!(
                        "carrier {} carrier_changes {} (up {}, down {})",
                        u8::from(c.carrier),
                        c.carrier_changes,
                        c.carrier_up_count,
                        c.carrier_down_count
                    ))
                    .unwrap_or_default()
            ),
            at: total,
        });
    }
    Ok(Observation {
        shows: out,
        serial_tail: ctx.serial.lines(),
        timing: Timing {
            boot: report.begin_time_s.map(Duration::from_secs_f64),
            total,
        },
        trace: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn scenario(text: &str) -> Scenario {
        load_str(text, std::path::Path::new("t.toml"))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn steps_become_probe_steps_and_link_actions() {
        let s = scenario(
            r#"
name = "flap"
guest = { kernel = "test", driver = "stock" }
device = { transport = "mmio", features = "+status" }
steps = ["boot", "link-up", { wait = "1500ms" }, { show = "up" }, { device-link = "down" },
         { show = "down" }, "reload-driver", { device-link = "up" }, "show"]
[[expect]]
show = "down"
operstate = "DOWN"
"#,
        );
        let plan = translate(&s);
        let text: Vec<String> = plan.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "up",
                "sleep:1500",
                "show",
                "wait-carrier:0:30000",
                "show",
                "rebind",
                "wait-carrier:1:30000",
                "show"
            ]
        );
        assert_eq!(plan.actions.len(), 2);
        assert_eq!(plan.actions[&4], LinkState::Down);
        assert_eq!(plan.actions[&7], LinkState::Up);
        // Probe step n carries out scenario step scenario_steps[n - 1].
        assert_eq!(plan.scenario_steps, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn device_becomes_a_net_config() {
        let s = scenario(
            r#"
name = "x"
guest = { kernel = "test", driver = "prefix" }
device = { transport = "mmio", features = "-status", mac = "52:54:00:00:00:09" }
steps = ["boot", "show"]
[[expect]]
operstate = "UNKNOWN"
"#,
        );
        let net = net_config(&s).unwrap();
        assert_eq!(net.transport, devices::virtio::net::Transport::Mmio);
        assert_eq!(net.features & (1 << 16), 0, "status is not offered");
        assert_eq!(net.mac.to_string(), "52:54:00:00:00:09");
    }
}
