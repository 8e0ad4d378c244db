//! A VM assembled from a `VmConfig` and run to its end: memory, kernel and
//! boot structures, legacy devices on the buses, vCPU threads, and the
//! event loop that waits for the guest (or the clock) to stop it.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::event_log::EventLog;
use devices::legacy::{
    AcpiPm, DebugExit, Serial, StopReason, StopRequest, ACPI_PM_SIZE, DEBUG_EXIT_PORT, I8042,
};
use devices::net::memory::MemoryPeer;
use devices::virtio::net::NetControl;
use devices::Bus;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::config::{SerialTarget, VmConfig};
use crate::control::{ControlServer, Controllable};
use crate::layout::{
    ACPI_PM_PORT, ACPI_START, CMDLINE_START, I8042_PORT, MPTABLE_START, SERIAL_IRQ, SERIAL_PORT,
    ZERO_PAGE_START,
};
use crate::loader::{self, LoadedKernel};
use crate::netdev;
use crate::outcome::Outcome;
use crate::profile::RipProfile;
use crate::vcpu::{self, BootEntry};
use crate::x86_64::{acpi, bootparams, mptable, paging, regs};
use crate::{memory, vm};

/// A subscriber in the VMM's event loop.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Errors from building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad vCPU count.
    #[error("the VM needs 1 to {max} vCPUs, not {asked}")]
    VcpuCount {
        /// What was asked for.
        asked: u8,
        /// The most this host and the MP and ACPI tables allow.
        max: usize,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] memory::Error),
    /// KVM VM set-up.
    #[error(transparent)]
    Vm(#[from] vm::Error),
    /// Kernel, initramfs or command line.
    #[error(transparent)]
    Loader(#[from] loader::Error),
    /// The zero page.
    #[error(transparent)]
    BootParams(#[from] bootparams::Error),
    /// The MP table.
    #[error(transparent)]
    MpTable(#[from] mptable::Error),
    /// The ACPI tables.
    #[error(transparent)]
    Acpi(#[from] acpi::Error),
    /// The page tables.
    #[error(transparent)]
    Paging(#[from] paging::Error),
    /// The GDT.
    #[error(transparent)]
    Regs(#[from] regs::Error),
    /// A vCPU.
    #[error(transparent)]
    Vcpu(#[from] vcpu::Error),
    /// A device could not be registered on a bus.
    #[error("cannot register the {0} on its bus")]
    Bus(&'static str, #[source] devices::BusError),
    /// KVM could not provide the CPUID.
    #[error("cannot read the CPUID KVM supports")]
    Cpuid(#[source] kvm_ioctls::Error),
    /// An interrupt could not be wired.
    #[error("cannot wire the {0} interrupt")]
    Irq(&'static str, #[source] kvm_ioctls::Error),
    /// The serial output file.
    #[error("cannot open the serial output file {}", .0.display())]
    SerialFile(std::path::PathBuf, #[source] std::io::Error),
    /// The network devices.
    #[error(transparent)]
    Net(#[from] netdev::Error),
    /// The event log file.
    #[error("cannot create the event log {}", .0.display())]
    EventLogFile(std::path::PathBuf, #[source] std::io::Error),
    /// The control socket.
    #[error(transparent)]
    Control(#[from] crate::control::ServerError),
    /// An eventfd or the event loop.
    #[error("event loop error: {0}")]
    EventLoop(String),
}

/// Stops a running VM from another thread.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<StopRequest>);

impl Stopper {
    /// A stopper that fires `request`.
    pub fn new(request: Arc<StopRequest>) -> Self {
        Self(request)
    }

    /// Asks the VM to stop; its `run` returns soon after.
    pub fn stop(&self) {
        self.0.request(StopReason::Host);
    }
}

/// A VM ready to run.
pub struct Vmm {
    // Field order is drop order: vCPUs and the VM before the memory.
    vcpus: Vec<VcpuFd>,
    vm: Arc<VmFd>,
    _kvm: Kvm,
    mem: GuestMemoryMmap,
    pio: Bus,
    mmio: Bus,
    serial: Arc<Mutex<Serial>>,
    stop: Arc<StopRequest>,
    event_manager: EventManager<Subscriber>,
    timeout: Option<Duration>,
    stdin: bool,
    kernel: LoadedKernel,
    profile: Option<(RipProfile, Duration)>,
    net_controls: Vec<NetControl>,
    memory_peers: Vec<(String, MemoryPeer)>,
    _control: Option<ControlServer>,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("vcpus", &self.vcpus.len())
            .field("pio", &self.pio)
            .field("mmio", &self.mmio)
            .finish_non_exhaustive()
    }
}

fn serial_output(target: SerialTarget) -> Result<devices::legacy::SerialOutput, Error> {
    Ok(match target {
        SerialTarget::Stdout => Box::new(std::io::stdout()),
        SerialTarget::File(path) => {
            Box::new(File::create(&path).map_err(|e| Error::SerialFile(path, e))?)
        }
        SerialTarget::Writer(w) => w,
        SerialTarget::Null => Box::new(std::io::sink()),
    })
}

impl Vmm {
    /// Builds the VM: checks the input, creates memory and the KVM VM,
    /// loads the kernel, writes the boot structures (zero page, MP table,
    /// ACPI tables, page tables, GDT), adds the legacy devices and creates
    /// the vCPUs.
    pub fn new(config: VmConfig) -> Result<Self, Error> {
        if config.vcpus == 0 || config.vcpus > mptable::MAX_CPUS.min(acpi::MAX_CPUS) {
            return Err(Error::VcpuCount {
                asked: config.vcpus,
                max: usize::from(mptable::MAX_CPUS.min(acpi::MAX_CPUS)),
            });
        }
        let plan = netdev::Plan::new(&config.nets)?;
        let cmdline = with_kernel_args(config.cmdline.trim(), &plan.cmdline());
        let ram = memory::ram_ranges(config.memory_mib)?;
        let mem = memory::create_guest_memory(config.memory_mib)?;
        let kernel = loader::load_kernel(&mem, &config.kernel)?;
        let initrd = config
            .initrd
            .as_deref()
            .map(|p| loader::load_initrd(&mem, p, &kernel))
            .transpose()?;
        // An empty user command line stays an error even when devices add
        // to it.
        if config.cmdline.trim().is_empty() {
            return Err(loader::Error::CmdlineEmpty.into());
        }
        let cmdline_len = loader::load_cmdline(&mem, CMDLINE_START, &cmdline, &kernel)?;
        let pci_irqs = plan.pci_irqs();
        // Both the MP table (kernels with MPPARSE and without ACPI) and the
        // ACPI tables (kernels with ACPI, which then ignore the MP table).
        mptable::setup_mptable(
            &mem,
            MPTABLE_START,
            (ACPI_START - MPTABLE_START) as usize,
            config.vcpus,
            &pci_irqs,
        )?;
        let acpi_rsdp = if config.acpi {
            let machine = acpi::Machine {
                vcpus: config.vcpus,
                pci: plan.has_pci().then_some(&pci_irqs[..]),
            };
            Some(acpi::setup_acpi(&mem, &machine)?)
        } else {
            None
        };
        let boot_info = bootparams::BootInfo {
            setup_header: kernel.setup_header,
            cmdline_addr: CMDLINE_START,
            cmdline_len,
            initrd,
            acpi_rsdp,
        };
        let params = bootparams::build_boot_params(&boot_info, &ram)?;
        bootparams::write_boot_params(&mem, &params, ZERO_PAGE_START)?;
        let cr3 = paging::setup_identity_map(&mem)?;
        regs::write_gdt_idt(&mem)?;

        // KVM comes after everything that only depends on the user's input,
        // so that bad input is reported the same with or without KVM.
        let kvm = vm::open_kvm()?;
        let max_vcpus = kvm.get_max_vcpus().min(usize::from(mptable::MAX_CPUS));
        if config.vcpus == 0 || usize::from(config.vcpus) > max_vcpus {
            return Err(Error::VcpuCount {
                asked: config.vcpus,
                max: max_vcpus,
            });
        }
        // SAFETY: `mem` lives in the returned Vmm next to the VM; the Vmm's
        // field order drops the vCPUs (the only way the guest touches its
        // memory through the slots) and its VM handle first. Clones of the
        // VM handle kept by devices only signal MSIs and move ioeventfds,
        // and the devices hold clones of `mem` as long as they use it.
        let vm = Arc::new(unsafe { vm::create_vm(&kvm, &mem, config.pit) }?);
        let stop = Arc::new(StopRequest::new().map_err(|e| Error::EventLoop(e.to_string()))?);
        let serial_irq = crate::run::eventfd()?;
        vm.register_irqfd(&serial_irq, SERIAL_IRQ)
            .map_err(|e| Error::Irq("serial", e))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            serial_irq,
            serial_output(config.serial)?,
        )));
        let mut pio = Bus::new();
        pio.insert(serial.clone(), u64::from(SERIAL_PORT), 8)
            .map_err(|e| Error::Bus("serial port", e))?;
        pio.insert(
            Arc::new(Mutex::new(I8042::new(stop.clone()))),
            u64::from(I8042_PORT),
            5,
        )
        .map_err(|e| Error::Bus("i8042 controller", e))?;
        pio.insert(
            Arc::new(Mutex::new(DebugExit::new(stop.clone()))),
            u64::from(DEBUG_EXIT_PORT),
            2,
        )
        .map_err(|e| Error::Bus("debug-exit port", e))?;
        if config.acpi {
            pio.insert(
                Arc::new(Mutex::new(AcpiPm::new(stop.clone()))),
                u64::from(ACPI_PM_PORT),
                ACPI_PM_SIZE,
            )
            .map_err(|e| Error::Bus("ACPI power-management device", e))?;
        }

        let base_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::Cpuid)?;
        let boot = BootEntry {
            entry: kernel.entry,
            cr3,
        };
        let vcpus = (0..config.vcpus)
            .map(|id| {
                vcpu::create_vcpu(
                    &vm,
                    id,
                    config.vcpus,
                    &base_cpuid,
                    (id == 0).then_some(boot),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;

        let event_log = match &config.event_log {
            Some(path) => {
                EventLog::to_file(path).map_err(|e| Error::EventLogFile(path.clone(), e))?
            }
            None => EventLog::disabled(),
        };
        let mut mmio = Bus::new();
        let nets = netdev::attach(
            &plan,
            &config.nets,
            &event_log,
            &vm,
            &mem,
            &mut pio,
            &mut mmio,
        )?;
        let mut event_manager =
            EventManager::new().map_err(|e| Error::EventLoop(format!("{e:?}")))?;
        for subscriber in nets.subscribers {
            event_manager.add_subscriber(subscriber);
        }
        let control = match &config.control_socket {
            Some(path) => {
                let devices = nets
                    .controls
                    .iter()
                    .map(|c| Arc::new(c.clone()) as Arc<dyn Controllable>)
                    .collect();
                Some(ControlServer::start(path, devices, Stopper(stop.clone()))?)
            }
            None => None,
        };
        log::info!(
            "VM ready: {} MiB, {} vCPU(s), {:?} kernel entry {:#x}, {}",
            config.memory_mib,
            config.vcpus,
            kernel.format,
            kernel.entry,
            if config.acpi { "ACPI" } else { "no ACPI" }
        );
        Ok(Self {
            vcpus,
            vm,
            _kvm: kvm,
            mem,
            pio,
            mmio,
            serial,
            stop,
            event_manager,
            timeout: config.timeout,
            stdin: config.stdin,
            kernel,
            profile: config
                .profile_interval
                .map(|interval| (RipProfile::new(), interval)),
            net_controls: nets.controls,
            memory_peers: nets.memory_peers,
            _control: control,
        })
    }

    /// The port-I/O bus, to add devices before the VM runs.
    pub fn pio_bus_mut(&mut self) -> &mut Bus {
        &mut self.pio
    }

    /// The MMIO bus, to add devices before the VM runs.
    pub fn mmio_bus_mut(&mut self) -> &mut Bus {
        &mut self.mmio
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The KVM VM, to wire irqfds and ioeventfds for added devices.
    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// The network devices' control handles (link, announce, status), in
    /// configuration order.
    pub fn net_controls(&self) -> &[NetControl] {
        &self.net_controls
    }

    /// Takes the test side of the `backend=memory` device `id`: inject
    /// frames for the guest, collect what it sends.
    pub fn take_memory_peer(&mut self, id: &str) -> Option<MemoryPeer> {
        let i = self.memory_peers.iter().position(|(name, _)| name == id)?;
        Some(self.memory_peers.swap_remove(i).1)
    }

    /// The loaded kernel.
    pub fn kernel(&self) -> &LoadedKernel {
        &self.kernel
    }

    /// The instruction-pointer profile being collected, if the
    /// configuration asked for one; read it after `run`.
    pub fn profile(&self) -> Option<RipProfile> {
        self.profile.as_ref().map(|(p, _)| p.clone())
    }

    /// A handle that stops the VM from another thread (the outcome is then
    /// `Outcome::Stopped`, unless the guest stopped it first).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Adds a subscriber to the event loop (device queues, sockets, ...).
    pub fn add_subscriber(&mut self, subscriber: Subscriber) {
        self.event_manager.add_subscriber(subscriber);
    }

    /// Runs the VM until the guest stops it, a vCPU cannot go on, the host
    /// stops it, or the time limit is reached.
    pub fn run(mut self) -> Result<Outcome, Error> {
        let profile = self.profile.take();
        let parts = crate::run::RunParts {
            vcpus: std::mem::take(&mut self.vcpus),
            pio: std::mem::take(&mut self.pio),
            mmio: std::mem::take(&mut self.mmio),
            stop: self.stop.clone(),
            devices: std::mem::replace(
                &mut self.event_manager,
                EventManager::new().map_err(|e| Error::EventLoop(format!("{e:?}")))?,
            ),
            serial: self.serial.clone(),
            timeout: self.timeout,
            stdin: self.stdin,
            profile,
        };
        crate::run::run(parts)
    }
}

/// `user` with `extra` kernel parameters added: before a ` -- ` word, since
/// Linux hands everything after it to init, else at the end.
fn with_kernel_args(user: &str, extra: &[String]) -> String {
    if extra.is_empty() {
        return user.to_owned();
    }
    let extra = extra.join(" ");
    let words: Vec<&str> = user.split(' ').collect();
    match words.iter().position(|w| *w == "--") {
        Some(i) => {
            let (kernel, init) = words.split_at(i);
            let kernel = kernel.join(" ");
            let init = init.join(" ");
            format!("{} {extra} {init}", kernel.trim_end())
                .trim_start()
                .to_owned()
        }
        None => format!("{user} {extra}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_kernel_args;

    #[test]
    fn device_arguments_go_before_the_init_arguments() {
        let extra = ["virtio_mmio.device=4K@0xd0000000:5".to_string()];
        assert_eq!(
            with_kernel_args("console=ttyS0", &extra),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(
            with_kernel_args("console=ttyS0 -- single", &extra),
            "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 -- single"
        );
        assert_eq!(
            with_kernel_args("-- single", &extra),
            "virtio_mmio.device=4K@0xd0000000:5 -- single"
        );
        // `--x` is a word of its own, not the separator.
        assert_eq!(
            with_kernel_args("a --x", &extra),
            "a --x virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(with_kernel_args("a -- b", &[]), "a -- b");
    }
}
