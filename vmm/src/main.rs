//! The `vmm` command: boot a Linux kernel in a KVM VM with a serial console.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use devices::virtio::net::NetConfig;
use vmm::config::{DEFAULT_CMDLINE, DEFAULT_MEMORY_MIB};
use vmm::outcome::EXIT_HOST_ERROR;
use vmm::symbols::SymbolMap;
use vmm::{SerialTarget, VmConfig, Vmm};

const EXIT_CODES: &str = "\
Exit codes:
  0      the guest ended the VM: ACPI power-off or reset (Linux `poweroff`,
         `reboot`), reset through the i8042 (`reboot=k`), KVM shutdown/reset,
         or 0 written to the debug-exit port 0x501
  1      host-side error (bad input, KVM or I/O failure)
  2      command-line usage error
  3      the guest triple-faulted
  4      KVM internal error (e.g. an instruction the host cannot emulate);
         the suberror and instruction bytes are printed
  5      --timeout reached
  6      the VM stopped for another reason: KVM_RUN failed, KVM entry failure,
         unexpected exit, a device thread failed (the message says which)
  7      stopped on the host's request
  100+N  the guest wrote N (1-155) to the debug-exit port 0x501

The last line on standard error says why the VM ended.";

/// Boot a Linux kernel (ELF vmlinux or bzImage) in a minimal KVM VM.
///
/// The guest gets a 16550 serial console on 0x3f8 (IRQ 4), an i8042 whose
/// reset ends the VM, a debug-exit port at 0x501, an MP table, ACPI tables
/// (hardware-reduced; RSDP at 0xe0000) with power-off and reset registers
/// at ports 0x600-0x602, and identity-mapped long mode at the kernel's
/// 64-bit entry point.
#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Kernel to boot: an uncompressed ELF vmlinux or a bzImage.
    #[arg(long, value_name = "PATH", required = true)]
    kernel: Option<PathBuf>,

    /// Initramfs to load (uncompressed or compressed, as the kernel supports).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    cmdline: String,

    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_MIB)]
    memory: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    vcpus: u8,

    /// Where the guest's serial output goes: stdout, file:PATH or null.
    #[arg(long, value_name = "TARGET", default_value = "stdout", value_parser = parse_serial)]
    serial: String,

    /// Do not forward standard input to the guest's serial port (it is
    /// forwarded by default when the serial output goes to stdout).
    #[arg(long)]
    no_stdin: bool,

    /// Stop the VM after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,

    /// A virtio-net device (repeatable), as comma-separated key=value pairs:
    /// transport=pci|mmio, backend=none|memory|loopback|tap|tap:NAME,
    /// features=SPEC (e.g. -status, or +status,-mrg_rxbuf; `vmm features`
    /// lists the names), mac=52:54:00:12:34:56, mtu=N, queue-pairs=N,
    /// queue-size=N, link=up|down, id=NAME, allow-invalid (offer feature
    /// sets the virtio spec forbids), offer-unimplemented (also offer bits
    /// this device does not implement and will not honour). Without mac=, device N gets
    /// 52:54:00:12:34:56 plus N. PCI devices go to 00:03.0, 00:04.0, ...;
    /// virtio-mmio devices to 0xd0000000, 0xd0001000, ... with the matching
    /// virtio_mmio.device= added to the command line.
    #[arg(long, value_name = "SPEC", value_parser = parse_net)]
    net: Vec<NetConfig>,

    /// Write the devices' event log (JSON lines: features offered and
    /// acked, device status transitions, interrupts, link changes, guest
    /// errors) to PATH.
    #[arg(long, value_name = "PATH")]
    event_log: Option<PathBuf>,

    /// Listen for control requests (`vmm ctl`) on this Unix socket.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,

    /// Leave out the in-kernel i8254 PIT. Linux calibrates its clocks
    /// against it; bare-metal guests start and stop faster without it.
    #[arg(long)]
    no_pit: bool,

    /// Give the guest no ACPI tables (and no ACPI power-off and reset
    /// registers): it then finds its CPUs and IO-APIC through the MP table
    /// only, and a kernel without MP-table support (stock Debian kernels)
    /// runs on one vCPU in virtual-wire mode and cannot power off. For
    /// guests that must not see ACPI.
    #[arg(long)]
    no_acpi: bool,

    /// The guest kernel's System.map: names the function at the
    /// instruction pointer when the VM stops on an error, and in profiles.
    #[arg(long, value_name = "PATH")]
    system_map: Option<PathBuf>,

    /// Sample where each vCPU executes and write a report of the busiest
    /// functions (addresses without --system-map) to PATH at the end.
    #[arg(long, value_name = "PATH")]
    profile: Option<PathBuf>,

    /// Sampling interval for --profile, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    profile_interval: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send a request to a running VMM's control socket and print the
    /// JSON answer: `status [DEV]`, `link up|down [DEV]`, `announce [DEV]`,
    /// `quit`. Exits 0 when the request succeeded, 1 otherwise.
    Ctl {
        /// The control socket (the VMM's `--control-socket`).
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// The request, e.g. `link down`.
        #[arg(required = true, num_args = 1.., value_name = "REQUEST")]
        request: Vec<String>,
    },
    /// List the virtio-net feature bits `--net features=` accepts, with the
    /// default set.
    Features,
}

fn parse_net(s: &str) -> Result<NetConfig, String> {
    let net = NetConfig::parse(s).map_err(|e| e.to_string())?;
    if net.backend == devices::net::BackendKind::Memory {
        // Its other end is a handle in this process, which the command
        // line cannot reach: frames would pile up unseen.
        return Err(
            "backend=memory is for tests and benchmarks that use the VMM as a library; \
             use none, loopback or tap here"
                .into(),
        );
    }
    Ok(net)
}

fn ctl(socket: &std::path::Path, request: &[String]) -> ExitCode {
    match vmm::control::request(socket, &request.join(" ")) {
        Ok(answer) => {
            println!("{answer}");
            if answer["ok"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_HOST_ERROR as u8)
            }
        }
        Err(e) => {
            eprintln!("vmm ctl: error: {}", error_chain(&e));
            ExitCode::from(EXIT_HOST_ERROR as u8)
        }
    }
}

fn parse_serial(s: &str) -> Result<String, String> {
    s.parse::<SerialTarget>().map(|_| s.to_owned())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("the timeout must be a positive number of seconds, not {s}"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Ctl { socket, request }) => return ctl(socket, request),
        Some(Command::Features) => {
            print!("{}", devices::virtio::net::features::help_table());
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let Some(kernel) = cli.kernel else {
        // clap requires --kernel without a subcommand.
        return ExitCode::from(vmm::outcome::EXIT_USAGE as u8);
    };
    // Validated by clap through `parse_serial`.
    let serial: SerialTarget = cli.serial.parse().unwrap_or(SerialTarget::Stdout);
    let stdin = !cli.no_stdin && matches!(serial, SerialTarget::Stdout);
    let config = VmConfig {
        kernel,
        initrd: cli.initrd,
        cmdline: cli.cmdline,
        memory_mib: cli.memory,
        vcpus: cli.vcpus,
        serial,
        stdin,
        timeout: cli.timeout,
        profile_interval: cli
            .profile
            .as_ref()
            .map(|_| Duration::from_millis(cli.profile_interval)),
        pit: !cli.no_pit,
        acpi: !cli.no_acpi,
        nets: cli.net,
        event_log: cli.event_log,
        control_socket: cli.control_socket,
    };
    let symbols = match cli.system_map.as_deref().map(SymbolMap::load).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            return ExitCode::from(EXIT_HOST_ERROR as u8);
        }
    };
    let result = Vmm::new(config).and_then(|vm| {
        let profile = vm.profile();
        vm.run().map(|outcome| (outcome, profile))
    });
    match result {
        Ok((outcome, profile)) => {
            if let (Some(path), Some(profile)) = (&cli.profile, profile) {
                let report = profile.report(symbols.as_ref(), 50);
                if let Err(e) = std::fs::write(path, report) {
                    eprintln!("vmm: cannot write the profile to {}: {e}", path.display());
                }
            }
            match (outcome.rip(), &symbols) {
                (Some(rip), Some(map)) => eprintln!("vmm: {outcome} ({})", map.describe(rip)),
                _ => eprintln!("vmm: {outcome}"),
            }
            ExitCode::from(outcome.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            ExitCode::from(EXIT_HOST_ERROR as u8)
        }
    }
}

/// The error and its sources, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_parsing() {
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").unwrap_err().contains("not a number"));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
