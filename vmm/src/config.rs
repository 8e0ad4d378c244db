//! What a VM is made of, as the user asked for it: kernel, initramfs,
//! command line, memory, vCPUs, serial console, time limit, firmware
//! tables.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The command line used when the user gives none: the serial console, the
/// i8042 reboot (which ends the VMM), and an immediate reboot on panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";
/// Default guest memory, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 256;

/// Where the guest's serial output goes.
pub enum SerialTarget {
    /// The VMM's standard output.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// Any writer (tests use this).
    Writer(Box<dyn std::io::Write + Send>),
    /// Nowhere.
    Null,
}

impl std::fmt::Debug for SerialTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Writer(_) => f.write_str("writer"),
            Self::Null => f.write_str("null"),
        }
    }
}

impl FromStr for SerialTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Self::Stdout),
            "null" | "none" => Ok(Self::Null),
            _ => match s.strip_prefix("file:") {
                Some("") => Err("`file:` needs a path, e.g. file:serial.log".into()),
                Some(path) => Ok(Self::File(PathBuf::from(path))),
                None => Err(format!(
                    "unknown serial target `{s}`: use stdout, file:PATH or null"
                )),
            },
        }
    }
}

/// Everything needed to build and run a VM.
#[derive(Debug)]
pub struct VmConfig {
    /// An ELF vmlinux or a bzImage.
    pub kernel: PathBuf,
    /// An optional initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (the VMM appends what its devices need).
    pub cmdline: String,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Where serial output goes.
    pub serial: SerialTarget,
    /// Feed the VMM's standard input to the serial port.
    pub stdin: bool,
    /// Stop the VM after this long.
    pub timeout: Option<Duration>,
    /// Sample each vCPU's instruction pointer at this interval.
    pub profile_interval: Option<Duration>,
    /// The virtio-net devices.
    pub nets: Vec<devices::virtio::net::NetConfig>,
    /// Where the devices' event log (JSON lines) goes.
    pub event_log: Option<PathBuf>,
    /// Where the control socket listens.
    pub control_socket: Option<PathBuf>,
    /// Give the guest the in-kernel i8254 PIT (Linux calibrates against
    /// it; bare-metal guests start and stop faster without it).
    pub pit: bool,
    /// Give the guest ACPI tables (RSDP, XSDT, FADT, MADT, DSDT) and the
    /// ACPI power-off and reset registers. Kernels without MP-table support
    /// need them to see more than one vCPU and the IO-APIC, and to power
    /// the machine off.
    pub acpi: bool,
}

impl VmConfig {
    /// A configuration with defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_owned(),
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            serial: SerialTarget::Stdout,
            stdin: false,
            timeout: None,
            profile_interval: None,
            pit: true,
            acpi: true,
            nets: Vec::new(),
            event_log: None,
            control_socket: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_targets_parse() {
        assert!(matches!("stdout".parse(), Ok(SerialTarget::Stdout)));
        assert!(matches!("null".parse(), Ok(SerialTarget::Null)));
        match "file:/tmp/x.log".parse() {
            Ok(SerialTarget::File(p)) => assert_eq!(p, PathBuf::from("/tmp/x.log")),
            other => panic!("{other:?}"),
        }
        assert!("file:"
            .parse::<SerialTarget>()
            .unwrap_err()
            .contains("needs a path"));
        assert!("tty"
            .parse::<SerialTarget>()
            .unwrap_err()
            .contains("unknown serial target"));
    }
}
