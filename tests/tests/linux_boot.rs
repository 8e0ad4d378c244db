//! Our VMM boots real Debian cloud kernels (6.1 and 6.12, the extracted
//! ELF vmlinux, fetched into the guest-images cache): the serial console
//! shows the kernel's banner and the command line the VMM gave it.
//!
//! On this project's emulated KVM a stock kernel stops early (it reaches
//! `lock cmpxchg16b`, see environment.md), so the test stops the VM as soon
//! as both lines have appeared; on hardware virtualization the same test
//! passes the same way, long before the kernel would finish booting.

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

fn boot(series: Series) -> Result<(), Failed> {
    let k = kernel(series)?;
    let cmdline = format!(
        "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 nokaslr vnetlab.boot_test={series}"
    );
    let banner = format!("Linux version {}", k.release);
    let command_line = format!("Command line: {cmdline}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stopper = Arc::new(OnceLock::new());
    let mut config = VmConfig::new(&k.vmlinux);
    config.cmdline = cmdline;
    config.memory_mib = 512;
    config.timeout = Some(BOOT_LIMIT);
    config.serial = SerialTarget::Writer(Box::new(Watch {
        seen: seen.clone(),
        needles: vec![banner.clone(), command_line.clone()],
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
