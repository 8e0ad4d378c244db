//! vCPUs: creation and boot state, and the run loop each vCPU thread
//! executes until the VM stops.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use devices::legacy::StopRequest;
use devices::Bus;
use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::exit::{handle_exit, InternalError, VcpuAction, VcpuStop};
use crate::profile::RipProfile;
use crate::x86_64::{cpuid, interrupts, msr, regs};

/// Errors from creating or starting a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// KVM refused to create it.
    #[error("cannot create vCPU {0}")]
    Create(u8, #[source] kvm_ioctls::Error),
    /// Setting its CPUID failed.
    #[error("cannot set the CPUID of vCPU {0}")]
    Cpuid(u8, #[source] kvm_ioctls::Error),
    /// Setting its MSRs failed.
    #[error("cannot set the MSRs of vCPU {0}")]
    Msrs(u8, #[source] msr::Error),
    /// Setting its registers failed.
    #[error("cannot set the registers of vCPU {0}")]
    Regs(u8, #[source] regs::Error),
    /// Setting its local APIC failed.
    #[error("cannot set the local APIC of vCPU {0}")]
    Lapic(u8, #[source] interrupts::Error),
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    Signal(#[source] vmm_sys_util::errno::Error),
    /// The thread could not be started.
    #[error("cannot start the thread of vCPU {0}")]
    Thread(u8, #[source] std::io::Error),
}

/// Where the boot vCPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// The 64-bit entry point.
    pub entry: u64,
    /// The page table root.
    pub cr3: u64,
}

/// Creates vCPU `id` of `count` and sets its CPUID, MSRs and local APIC;
/// the boot vCPU (`boot` given) also gets its entry registers. The others
/// wait for the boot vCPU's INIT/SIPI, as on a PC.
pub fn create_vcpu(
    vm: &VmFd,
    id: u8,
    count: u8,
    base_cpuid: &CpuId,
    boot: Option<BootEntry>,
) -> Result<VcpuFd, Error> {
    let vcpu = vm
        .create_vcpu(u64::from(id))
        .map_err(|e| Error::Create(id, e))?;
    let mut cpuid = base_cpuid.clone();
    cpuid::patch_cpuid(&mut cpuid, id, count);
    vcpu.set_cpuid2(&cpuid).map_err(|e| Error::Cpuid(id, e))?;
    msr::setup_msrs(&vcpu).map_err(|e| Error::Msrs(id, e))?;
    if let Some(b) = boot {
        regs::write_boot_state(&vcpu, b.entry, b.cr3).map_err(|e| Error::Regs(id, e))?;
    } else {
        regs::setup_fpu(&vcpu).map_err(|e| Error::Regs(id, e))?;
    }
    interrupts::set_lint(&vcpu).map_err(|e| Error::Lapic(id, e))?;
    Ok(vcpu)
}

/// How a vCPU thread ended.
#[derive(Debug, Clone)]
pub struct VcpuReport {
    /// Which vCPU.
    pub id: u8,
    /// Why it stopped.
    pub stop: VcpuStop,
    /// Its instruction pointer then, if it could be read.
    pub rip: Option<u64>,
    /// The details of an internal error.
    pub internal: Option<InternalError>,
}

extern "C" fn kick_handler(
    _num: libc::c_int,
    _info: *mut libc::siginfo_t,
    _unused: *mut libc::c_void,
) {
    // Nothing to do: the signal's only job is to make KVM_RUN return EINTR.
}

/// The signal used to kick a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

fn install_kick_handler() -> Result<(), Error> {
    // Installed once per process; a failure is remembered, because kicking
    // a thread without the handler would end the process.
    static INSTALLED: OnceLock<Result<(), vmm_sys_util::errno::Error>> = OnceLock::new();
    (*INSTALLED.get_or_init(|| register_signal_handler(kick_signal(), kick_handler)))
        .map_err(Error::Signal)
}

/// A running vCPU thread.
#[derive(Debug)]
pub struct VcpuThread {
    /// Which vCPU.
    pub id: u8,
    handle: JoinHandle<()>,
}

impl VcpuThread {
    /// Interrupts KVM_RUN so that the thread sees the stop flag.
    pub fn kick(&self) {
        if let Err(e) = self.handle.kill(kick_signal()) {
            log::debug!("cannot kick vCPU {}: {e}", self.id);
        }
    }

    /// Waits for the thread (which must have ended or been told to).
    pub fn join(self) {
        if self.handle.join().is_err() {
            log::error!("the thread of vCPU {} panicked", self.id);
        }
    }
}

/// What a vCPU thread shares with the rest of the VMM.
#[derive(Clone)]
pub struct VcpuShared {
    /// The port-I/O bus.
    pub pio: Arc<Bus>,
    /// The MMIO bus.
    pub mmio: Arc<Bus>,
    /// Set when the VM is stopping: the thread leaves its loop.
    pub stopping: Arc<AtomicBool>,
    /// A device or the host asked the VM to stop: the thread leaves its
    /// loop without waiting to be kicked.
    pub stop_request: Arc<StopRequest>,
    /// Each thread sends its vCPU id here when it ends.
    pub exited: Sender<u8>,
    /// Where the thread reports why it stopped the VM.
    pub reports: Sender<VcpuReport>,
    /// Written after a report, to wake the event loop.
    pub wake: Arc<EventFd>,
    /// Where a kicked vCPU records its instruction pointer, when profiling.
    pub profile: Option<RipProfile>,
}

/// Starts the run loop of `vcpu` on its own thread.
pub fn spawn_vcpu(id: u8, vcpu: VcpuFd, shared: VcpuShared) -> Result<VcpuThread, Error> {
    install_kick_handler()?;
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            let _notice = ExitNotice(id, shared.exited.clone());
            let reports = shared.reports.clone();
            let wake = shared.wake.clone();
            // A panic (a device bug met on this vCPU) ends the VM with a
            // report instead of leaving it waiting for a vCPU that is gone.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run_loop(id, vcpu, shared))) {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                let report = VcpuReport {
                    id,
                    stop: VcpuStop::Unexpected(format!("the vCPU thread panicked: {why}")),
                    rip: None,
                    internal: None,
                };
                if reports.send(report).is_ok() {
                    let _ = wake.write(1);
                }
            }
        })
        .map_err(|e| Error::Thread(id, e))?;
    Ok(VcpuThread { id, handle })
}

/// Tells the VMM that a vCPU thread ended, however it ends.
struct ExitNotice(u8, Sender<u8>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

fn run_loop(id: u8, mut vcpu: VcpuFd, shared: VcpuShared) {
    let stop = loop {
        if shared.stopping.load(Ordering::Acquire) || shared.stop_request.is_requested() {
            return;
        }
        match vcpu.run() {
            Ok(exit) => match handle_exit(exit, &shared.pio, &shared.mmio) {
                VcpuAction::Continue => {}
                VcpuAction::Stop(stop) => break stop,
            },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: to sample the instruction pointer, or to stop
                // (the loop head checks).
                if let Some(profile) = &shared.profile {
                    if let Ok(regs) = vcpu.get_regs() {
                        profile.record(regs.rip);
                    }
                }
            }
            Err(e) => break VcpuStop::Unexpected(format!("KVM_RUN failed: {e}")),
        }
    };
    let internal =
        (stop == VcpuStop::InternalError).then(|| InternalError::from_run(vcpu.get_kvm_run()));
    let rip = vcpu.get_regs().ok().map(|r| r.rip);
    let report = VcpuReport {
        id,
        stop,
        rip,
        internal,
    };
    if shared.reports.send(report).is_ok() {
        if let Err(e) = shared.wake.write(1) {
            log::error!("vCPU {id} cannot wake the event loop: {e}");
        }
    }
}
