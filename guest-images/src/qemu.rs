//! Booting a guest under QEMU with software emulation (TCG) and its own
//! virtio-net-pci: the independent reference the lab compares its VMM with.
//! The serial console is captured and parsed as an agent [`Transcript`].

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::{AgentConfig, Transcript};
use crate::exec::{self, QEMU};
use crate::Result;

/// One QEMU boot.
#[derive(Debug, Clone)]
pub struct QemuBoot {
    /// The kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// What the guest agent should do.
    pub agent: AgentConfig,
    /// QEMU's `virtio-net-pci` `status=` property: offer VIRTIO_NET_F_STATUS.
    pub status_feature: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Host-side deadline; QEMU is killed after it.
    pub timeout: Duration,
    /// Extra kernel parameters.
    pub extra_cmdline: String,
    /// `-accel` value (`tcg`, or `kvm` on machines with hardware virtualization).
    pub accel: String,
}

impl QemuBoot {
    /// A TCG boot of `kernel` + `initrd` running `agent`.
    pub fn new(kernel: PathBuf, initrd: PathBuf, agent: AgentConfig, status_feature: bool) -> Self {
        let timeout = Duration::from_secs(u64::from(agent.timeout_secs) + 60);
        Self {
            kernel,
            initrd,
            agent,
            status_feature,
            memory_mib: 256,
            timeout,
            extra_cmdline: String::new(),
            accel: "tcg".into(),
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        let mut s = format!("console=ttyS0 panic=-1 quiet {}", self.agent.cmdline());
        if !self.extra_cmdline.is_empty() {
            s.push(' ');
            s.push_str(&self.extra_cmdline);
        }
        s
    }

    /// The QEMU arguments.
    pub fn args(&self) -> Vec<String> {
        let status = if self.status_feature { "on" } else { "off" };
        [
            "-accel",
            &self.accel,
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            "1",
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            &self.kernel.to_string_lossy(),
            "-initrd",
            &self.initrd.to_string_lossy(),
            "-append",
            &self.cmdline(),
            "-netdev",
            "user,id=n0",
            "-device",
            &format!("virtio-net-pci,netdev=n0,status={status}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Boots, waits for QEMU to exit (or kills it at the deadline) and parses
    /// the console.
    pub fn run(&self) -> Result<QemuOutcome> {
        let program = exec::find_tool(QEMU)?;
        let started = Instant::now();
        let mut child = Command::new(&program)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| exec::ExecError::Spawn {
                program: QEMU.program.into(),
                source,
            })?;
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_end(&mut buf);
            }
            buf
        });
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(err) = stderr.as_mut() {
                let _ = err.read_to_end(&mut buf);
            }
            buf
        });
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > self.timeout => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    log::warn!("waiting for QEMU failed: {e}");
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        let transcript = Transcript::parse(&console);
        Ok(QemuOutcome {
            console,
            stderr,
            transcript,
            elapsed: started.elapsed(),
            exit_code: status.and_then(|s| s.code()),
            timed_out,
        })
    }
}

/// What a QEMU boot produced.
#[derive(Debug, Clone)]
pub struct QemuOutcome {
    /// The serial console.
    pub console: String,
    /// QEMU's own stderr.
    pub stderr: String,
    /// The agent's transcript.
    pub transcript: Transcript,
    /// Wall time.
    pub elapsed: Duration,
    /// QEMU's exit code.
    pub exit_code: Option<i32>,
    /// QEMU was killed at the host deadline.
    pub timed_out: bool,
}

impl QemuOutcome {
    /// The last `n` console lines, for failure reports.
    pub fn console_tail(&self, n: usize) -> String {
        exec::tail(&self.console, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_carry_status_and_agent_cmdline() {
        let b = QemuBoot::new(
            "k".into(),
            "i".into(),
            AgentConfig::with_steps(["ip link show eth0"]),
            false,
        );
        let args = b.args();
        assert!(args.contains(&"virtio-net-pci,netdev=n0,status=off".to_string()));
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert!(
            append
                .starts_with("console=ttyS0 panic=-1 quiet vnetlab.steps=ip%20link%20show%20eth0"),
            "{append}"
        );
        assert_eq!(b.timeout, Duration::from_secs(180));
    }
}
