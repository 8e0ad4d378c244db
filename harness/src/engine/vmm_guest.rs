//! The vmm-guest engine: the lab's own VMM (in this process, as a library)
//! boots the same guests as the QEMU engine — a Debian kernel's ELF
//! `vmlinux` with the agent's initramfs, or the test kernel — with the
//! lab's virtio-net device offering the scenario's features. The agent ends
//! the machine with `reboot -f` and `reboot=k` (the VMM has no ACPI; the
//! i8042 reset ends the run); link changes go through the device's
//! `NetControl::set_link`. Everything about steps and transcripts is
//! shared with the QEMU engine (`agent.rs`).
//!
//! It needs hardware-backed KVM: under an emulated KVM such as this lab's
//! development machines' no guest user space runs, so the agent cannot
//! either, and the engine says so instead of trying.

use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::virtio::net::NetControl;
use guest_images::{InitramfsCompression, PowerOff};
use vmm::{Outcome, SerialTarget, Stopper, VmConfig, Vmm};

use super::agent::{self, AgentPlan, Machine};
use super::guest::Guests;
use super::{Engine, EngineError, Observation, RunContext};
use crate::host::KvmKind;
use crate::scenario::Scenario;

/// The id our VMM gives the scenario's device.
const NET_ID: &str = "net0";

/// How long a VM may take to stop after being asked.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Why this engine cannot run on a host with `kvm`, if it cannot.
pub fn kvm_refusal(kvm: &KvmKind) -> Option<String> {
    match kvm {
        KvmKind::Hardware => None,
        KvmKind::Emulated(why) => Some(format!(
            "KVM on this machine is an instruction emulator ({why}): no guest user space runs \
             under it, so the guest agent cannot run and this engine cannot either; the \
             kernel-only engine runs these scenarios here (or QEMU with TCG)"
        )),
        KvmKind::Absent(why) => Some(format!("this engine needs KVM, and {why}")),
    }
}

/// The engine.
#[derive(Debug)]
pub struct VmmGuestEngine {
    kvm: KvmKind,
    guests: Guests,
}

impl Default for VmmGuestEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl VmmGuestEngine {
    /// The engine for this host (whose KVM it looks at once).
    pub fn new() -> Self {
        Self::for_kvm(KvmKind::detect())
    }

    /// The engine as if the host had `kvm` (for tests).
    pub fn for_kvm(kvm: KvmKind) -> Self {
        Self {
            kvm,
            guests: Guests::new(InitramfsCompression::None),
        }
    }

    /// The engine, or why it cannot run here.
    pub fn make() -> Result<Self, String> {
        let engine = Self::new();
        match kvm_refusal(&engine.kvm) {
            Some(why) => Err(why),
            None => Ok(engine),
        }
    }
}

/// The serial console, as chunks for the session loop.
struct ConsoleWriter(mpsc::Sender<Vec<u8>>);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Nobody listening any more is not the guest's problem.
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type VmResult = Result<Outcome, String>;

/// Our VMM, running on its own thread.
struct VmmMachine {
    thread: Option<JoinHandle<VmResult>>,
    control: NetControl,
    stopper: Stopper,
    ctx: RunContext,
}

impl VmmMachine {
    fn join(&mut self) -> Option<Result<(), EngineError>> {
        let handle = self.thread.take()?;
        let tail = self.ctx.serial.lines();
        let crash = |detail: String| EngineError::VmmCrash {
            detail,
            serial_tail: tail.clone(),
        };
        Some(match handle.join() {
            Err(panic) => Err(crash(format!(
                "the VMM thread panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into())
            ))),
            Ok(Err(e)) => Err(crash(e)),
            Ok(Ok(outcome)) => match outcome {
                Outcome::GuestReset | Outcome::GuestPowerOff | Outcome::DebugExit(_) => Ok(()),
                Outcome::InternalError { error, rip } => Err(EngineError::EmulatorStop {
                    instruction: error.insn_bytes.unwrap_or_default(),
                    rip,
                    symbol: None,
                    serial_tail: tail,
                }),
                Outcome::Timeout(after) => Err(EngineError::TimedOut {
                    after,
                    serial_tail: tail,
                }),
                other => Err(crash(other.to_string())),
            },
        })
    }
}

impl Machine for VmmMachine {
    fn set_link(&mut self, up: bool) -> Result<(), String> {
        self.control
            .set_link(up)
            .map(|change| log::info!("{NET_ID}: link {change:?}"))
            .map_err(|e| e.to_string())
    }

    fn poll_end(&mut self) -> Option<Result<(), EngineError>> {
        if self.thread.as_ref()?.is_finished() {
            self.join()
        } else {
            None
        }
    }

    fn kill(&mut self) {
        let Some(handle) = &self.thread else { return };
        self.stopper.stop();
        let until = Instant::now() + STOP_WAIT;
        while !handle.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = self.join();
        } else {
            log::error!("the VMM did not stop within {STOP_WAIT:?}; leaving its thread behind");
            self.thread = None;
        }
    }
}

impl Drop for VmmMachine {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Engine for VmmGuestEngine {
    fn name(&self) -> String {
        "vmm-guest (the lab's VMM and virtio-net device, Debian guest with the agent, KVM)".into()
    }

    fn supports(&self, scenario: &Scenario) -> Result<(), String> {
        if let Some(why) = kvm_refusal(&self.kvm) {
            return Err(why);
        }
        agent::net_config(scenario).map(drop)
    }

    fn prepare(&self, scenarios: &[&Scenario]) -> Result<(), EngineError> {
        self.guests.prepare(scenarios)
    }

    fn run(&self, scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError> {
        if let Some(detail) = kvm_refusal(&self.kvm) {
            return Err(EngineError::Infrastructure { detail });
        }
        let mut net =
            agent::net_config(scenario).map_err(|detail| EngineError::Infrastructure { detail })?;
        net.id = Some(NET_ID.into());
        let plan = AgentPlan::new(scenario, net.features)?;
        let files = self.guests.get(scenario)?;
        if ctx.should_stop() {
            return Err(ctx.timed_out());
        }
        log::info!("{}: {} on the lab's VMM", scenario.name, files.label);
        let agent_config = plan.agent_config(
            agent::watchdog_for(ctx.remaining()),
            PowerOff::Reboot,
            files.load_modules,
        );
        let (tx, console) = mpsc::channel();
        let mut config = VmConfig::new(&files.vmlinux);
        config.initrd = Some(files.initramfs);
        config.cmdline = format!("console=ttyS0 panic=-1 quiet {}", agent_config.cmdline());
        config.memory_mib = 256;
        config.serial = SerialTarget::Writer(Box::new(ConsoleWriter(tx)));
        // A backstop: the session loop stops the VM at the deadline.
        config.timeout = Some(ctx.remaining() + Duration::from_secs(5));
        config.nets = vec![net];
        // The VMM appends a virtio_mmio.device= parameter for an mmio device.
        agent::check_cmdline(&format!(
            "{} virtio_mmio.device=4K@0xd0000000:5",
            config.cmdline
        ))?;
        let (ready_tx, ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("vmm {}", scenario.name))
            .spawn(move || -> VmResult {
                let vmm = match Vmm::new(config) {
                    Ok(v) => v,
                    Err(e) => {
                        let text = format!("cannot build the VM: {e}");
                        let _ = ready_tx.send(Err(text.clone()));
                        return Err(text);
                    }
                };
                let Some(control) = vmm.net_controls().first().cloned() else {
                    let text = "the VM has no network device".to_string();
                    let _ = ready_tx.send(Err(text.clone()));
                    return Err(text);
                };
                let _ = ready_tx.send(Ok((control, vmm.stopper())));
                vmm.run().map_err(|e| e.to_string())
            })
            .map_err(|e| EngineError::Infrastructure {
                detail: format!("cannot start a thread for the VMM: {e}"),
            })?;
        let (control, stopper) = match ready.recv_timeout(ctx.remaining()) {
            Ok(Ok(handles)) => handles,
            Ok(Err(detail)) => {
                let _ = thread.join();
                return Err(EngineError::VmmCrash {
                    detail,
                    serial_tail: Vec::new(),
                });
            }
            Err(_) => {
                return Err(EngineError::VmmCrash {
                    detail: "the VMM never became ready to run".into(),
                    serial_tail: Vec::new(),
                })
            }
        };
        let mut machine = VmmMachine {
            thread: Some(thread),
            control,
            stopper,
            ctx: ctx.clone(),
        };
        let session = agent::drive(&plan, ctx, &console, &mut machine);
        machine.kill();
        let _ = std::fs::write(ctx.work_dir.join("console.log"), &session.console);
        agent::observe(&plan, scenario, &session, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_kvm_is_refused_plainly() {
        let e = VmmGuestEngine::for_kvm(KvmKind::Emulated("the kvm_pvm module is loaded".into()));
        let s = crate::scenario::load_str(
            "name = \"x\"\nguest = { kernel = \"debian-6.1\" }\nsteps = [\"boot\", \"show\"]\n\
             [[expect]]\noperstate = \"UP\"\n",
            std::path::Path::new("x.toml"),
        )
        .unwrap()
        .remove(0);
        let why = e.supports(&s).unwrap_err();
        assert!(
            why.starts_with("KVM on this machine is an instruction emulator (the kvm_pvm"),
            "{why}"
        );
        assert!(why.contains("no guest user space runs"), "{why}");
        let ctx = RunContext::new(Duration::from_secs(5), std::env::temp_dir());
        assert_eq!(e.run(&s, &ctx).unwrap_err().kind(), "infrastructure");
        assert!(kvm_refusal(&KvmKind::Hardware).is_none());
        assert!(kvm_refusal(&KvmKind::Absent("/dev/kvm is missing".into()))
            .unwrap()
            .contains("/dev/kvm is missing"));
        assert!(VmmGuestEngine::for_kvm(KvmKind::Hardware)
            .supports(&s)
            .is_ok());
    }
}
