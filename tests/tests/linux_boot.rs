//! Our VMM boots real Debian cloud kernels (6.1 and 6.12, the extracted
//! ELF vmlinux, fetched into the guest-images cache) on two vCPUs: the
//! serial console shows the kernel's banner, the command line the VMM gave
//! it, and the kernel taking its CPUs and IO-APIC from the ACPI tables
//! (these kernels lack `CONFIG_X86_MPPARSE`, so without ACPI they would say
//! "Boot CPU (id 0) not listed by BIOS" and run on one CPU).
//!
//! On this project's emulated KVM a stock kernel stops early (it reaches
//! `lock cmpxchg16b`, see environment.md), so the test stops the VM as soon
//! as every line has appeared (the ACPI ones come about 8 s after the
//! banner here, still before that instruction); on hardware virtualization
//! the same test passes the same way, long before the kernel would finish
//! booting.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use guest_images::{Cache, KernelArtifacts, Series};
use testkit::suite::{ensure, Failed, Need, Suite};
use vmm::{Outcome, SerialTarget, Stopper, VmConfig, Vmm};

/// Upper bound for one boot; the test normally ends within seconds.
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Serial output collector that stops the VM once every needle appeared.
struct Watch {
    seen: Arc<Mutex<Vec<u8>>>,
    needles: Vec<String>,
    stopper: Arc<OnceLock<Stopper>>,
}

impl Write for Watch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend_from_slice(buf);
        if buf.contains(&b'\n') {
            let text = String::from_utf8_lossy(&seen);
            if self.needles.iter().all(|n| text.contains(n.as_str())) {
                if let Some(s) = self.stopper.get() {
                    s.stop();
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn kernel(series: Series) -> Result<KernelArtifacts, String> {
    let cache = Cache::open_default(None).map_err(|e| e.to_string())?;
    guest_images::debian_kernel(series, &cache)
        .map_err(|e| format!("the Debian {series} kernel cannot be fetched: {e}"))
}

/// vCPUs the test VM gets.
const VCPUS: u8 = 2;

/// What the kernel prints when it found its CPUs and the IO-APIC in the
/// MADT (checked in real boot logs of both series on our VMM).
fn acpi_lines(series: Series) -> Vec<String> {
    let cpus = match series {
        Series::V6_1 => format!("smpboot: Allowing {VCPUS} CPUs, 0 hotplug CPUs"),
        Series::V6_12 => format!("CPU topo: Allowing {VCPUS} present CPUs plus 0 hotplug CPUs"),
    };
    vec![
        "ACPI: RSDP 0x00000000000E0000".into(),
        // The IO-APIC's ID follows the vCPUs' APIC IDs.
        format!("IOAPIC[0]: apic_id {VCPUS}, version 17, address 0xfec00000, GSI 0-23"),
        "ACPI: Using ACPI (MADT) for SMP configuration information".into(),
        cpus,
    ]
}

fn boot(series: Series) -> Result<(), Failed> {
    let k = kernel(series)?;
    let cmdline = format!(
        "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 nokaslr vnetlab.boot_test={series}"
    );
    let banner = format!("Linux version {}", k.release);
    let command_line = format!("Command line: {cmdline}");
    let acpi = acpi_lines(series);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stopper = Arc::new(OnceLock::new());
    let mut config = VmConfig::new(&k.vmlinux);
    config.cmdline = cmdline;
    config.memory_mib = 512;
    config.vcpus = VCPUS;
    config.timeout = Some(BOOT_LIMIT);
    config.serial = SerialTarget::Writer(Box::new(Watch {
        seen: seen.clone(),
        needles: [banner.clone(), command_line.clone()]
            .into_iter()
            .chain(acpi.iter().cloned())
            .collect(),
        stopper: stopper.clone(),
    }));
    let vm = Vmm::new(config)?;
    let _ = stopper.set(vm.stopper());
    let outcome = vm.run()?;
    let text = String::from_utf8_lossy(&seen.lock().map_err(|_| "poisoned")?).into_owned();
    let tail: String = text.lines().rev().take(15).collect::<Vec<_>>().join("\n");
    ensure(text.contains(&banner), || {
        format!("no `{banner}` on the console ({outcome}); last lines, newest first:\n{tail}")
    })?;
    ensure(text.contains(&command_line), || {
        format!("no `{command_line}` on the console ({outcome}); last lines:\n{tail}")
    })?;
    for line in &acpi {
        ensure(text.contains(line.as_str()), || {
            format!("no `{line}` on the console ({outcome}): the kernel did not use the ACPI tables; last lines:\n{tail}")
        })?;
    }
    ensure(!text.contains("not listed by BIOS"), || {
        format!("the kernel did not find its boot CPU in the tables:\n{tail}")
    })?;
    ensure(outcome == Outcome::Stopped, || {
        format!("the VM ended on its own before the test stopped it: {outcome}")
    })
}

fn main() {
    let mut suite = Suite::new();
    for series in Series::ALL {
        let fetch = Need::Custom {
            name: "debian-kernel",
            check: Arc::new(move || kernel(series).map(drop)),
        };
        suite.test(
            &format!("boots_debian_{}_vmlinux", series.as_str().replace('.', "_")),
            &[Need::Kvm, fetch],
            move || boot(series),
        );
    }
    suite.run()
}
