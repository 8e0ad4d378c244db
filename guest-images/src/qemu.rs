//! Booting a guest under QEMU (software emulation, TCG, by default) with its
//! own virtio-net-pci: the independent reference the lab compares its VMM
//! with. [`QemuBoot::run`] boots and waits; [`QemuBoot::spawn`] hands back
//! the running [`QemuProcess`] (console as it arrives, a QMP socket for
//! `set_link`), which is killed when dropped. The serial console is parsed
//! as an agent [`Transcript`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::{AgentConfig, Transcript};
use crate::exec::{self, QEMU};
use crate::Result;

/// The `-netdev` id the default arguments give the backend.
pub const NETDEV_ID: &str = "n0";

/// One QEMU boot.
#[derive(Debug, Clone)]
pub struct QemuBoot {
    /// The kernel (`vmlinuz` or a bzImage).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// What the guest agent should do.
    pub agent: AgentConfig,
    /// QEMU's `virtio-net-pci` `status=` property: offer VIRTIO_NET_F_STATUS
    /// (ignored when `net_device` is set).
    pub status_feature: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Host-side deadline; QEMU is killed after it.
    pub timeout: Duration,
    /// Extra kernel parameters.
    pub extra_cmdline: String,
    /// `-accel` value (`tcg`, or `kvm` on machines with hardware virtualization).
    pub accel: String,
    /// The `-netdev` value; its id must be [`NETDEV_ID`] unless `net_device`
    /// names another.
    pub netdev: String,
    /// The whole `-device` value of the NIC (e.g.
    /// `virtio-net-pci,netdev=n0,id=vnet0,status=off,...`); `None` for
    /// `virtio-net-pci,netdev=n0,status=on|off` from `status_feature`.
    pub net_device: Option<String>,
    /// Where QEMU listens for QMP (`-qmp unix:PATH,server=on,wait=off`).
    pub qmp_socket: Option<PathBuf>,
    /// `-M` value; `None` for QEMU's default (the `pc` machine). E.g.
    /// `microvm,acpi=off` for virtio-mmio devices (QEMU then adds their
    /// `virtio_mmio.device=` to the kernel command line itself).
    pub machine: Option<String>,
    /// More arguments, appended as they are (e.g. `-global`, `VALUE`).
    pub extra_args: Vec<String>,
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
            netdev: format!("user,id={NETDEV_ID}"),
            net_device: None,
            qmp_socket: None,
            machine: None,
            extra_args: Vec::new(),
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

    /// The `-device` value of the NIC.
    pub fn device_arg(&self) -> String {
        match &self.net_device {
            Some(d) => d.clone(),
            None => format!(
                "virtio-net-pci,netdev={NETDEV_ID},status={}",
                if self.status_feature { "on" } else { "off" }
            ),
        }
    }

    /// The QEMU arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
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
            &self.netdev,
            "-device",
            &self.device_arg(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(path) = &self.qmp_socket {
            args.push("-qmp".into());
            args.push(format!("unix:{},server=on,wait=off", path.display()));
        }
        if let Some(machine) = &self.machine {
            args.push("-M".into());
            args.push(machine.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts QEMU. The process is killed when the returned handle is
    /// dropped, so a caller that gives up cannot leak it.
    pub fn spawn(&self) -> Result<QemuProcess> {
        let program = exec::find_tool(QEMU)?;
        if let Some(path) = &self.qmp_socket {
            // A stale socket file from an earlier run would make QEMU fail.
            let _ = std::fs::remove_file(path);
        }
        log::debug!("starting {} {:?}", program.display(), self.args());
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
        let (tx, console) = mpsc::channel();
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let Some(out) = stdout.as_mut() else { return };
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(err) = stderr.as_mut() {
                let _ = err.read_to_end(&mut buf);
            }
            buf
        });
        Ok(QemuProcess {
            child,
            console,
            reader: Some(reader),
            err_reader: Some(err_reader),
            started: Instant::now(),
            qmp_socket: self.qmp_socket.clone(),
            status: None,
        })
    }

    /// Boots, waits for QEMU to exit (or kills it at the deadline) and parses
    /// the console.
    pub fn run(&self) -> Result<QemuOutcome> {
        let process = self.spawn()?;
        let mut console = Vec::new();
        let mut timed_out = false;
        loop {
            match process.console().recv_timeout(Duration::from_millis(50)) {
                Ok(chunk) => console.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if process.elapsed() > self.timeout {
                timed_out = true;
                break;
            }
        }
        let finished = process.finish();
        console.extend_from_slice(&finished.console_rest);
        let console = String::from_utf8_lossy(&console).into_owned();
        let transcript = Transcript::parse(&console);
        Ok(QemuOutcome {
            console,
            stderr: finished.stderr,
            transcript,
            elapsed: finished.elapsed,
            exit_code: finished.status.and_then(|s| s.code()),
            timed_out,
        })
    }
}

/// A running QEMU. Dropping it kills the process.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    console: Receiver<Vec<u8>>,
    reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
    qmp_socket: Option<PathBuf>,
    status: Option<ExitStatus>,
}

/// What is left of a QEMU process after [`QemuProcess::finish`].
#[derive(Debug, Clone)]
pub struct Finished {
    /// The exit status; `None` when it could not be collected.
    pub status: Option<ExitStatus>,
    /// Console output not yet taken from [`QemuProcess::console`].
    pub console_rest: Vec<u8>,
    /// QEMU's standard error.
    pub stderr: String,
    /// Wall time since the start.
    pub elapsed: Duration,
}

impl QemuProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The serial console, in chunks as QEMU writes them; disconnected once
    /// QEMU has closed its output (it exited).
    pub fn console(&self) -> &Receiver<Vec<u8>> {
        &self.console
    }

    /// Takes the console receiver, to follow it while the process is
    /// handled elsewhere; [`finish`](Self::finish) then returns no console
    /// rest (everything arrives on the taken receiver).
    pub fn take_console(&mut self) -> Receiver<Vec<u8>> {
        std::mem::replace(&mut self.console, mpsc::channel().1)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status once QEMU has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => log::warn!("cannot check on QEMU (pid {}): {e}", self.child.id()),
            }
        }
        self.status
    }

    /// Kills QEMU (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        if let Err(e) = self.child.kill() {
            log::warn!("cannot kill QEMU (pid {}): {e}", self.child.id());
        }
        match self.child.wait() {
            Ok(status) => self.status = Some(status),
            Err(e) => log::warn!("cannot reap QEMU (pid {}): {e}", self.child.id()),
        }
    }

    /// Connects to the QMP socket, retrying until QEMU has created it or
    /// `timeout` passed.
    pub fn qmp(&self, timeout: Duration) -> std::result::Result<Qmp, QmpError> {
        let path = self.qmp_socket.as_deref().ok_or(QmpError::NotConfigured)?;
        Qmp::connect(path, timeout)
    }

    /// Kills QEMU if it still runs, and collects what is left: exit status,
    /// unread console output, standard error.
    pub fn finish(mut self) -> Finished {
        if self.reader.as_ref().is_some_and(JoinHandle::is_finished) {
            // QEMU closed its output, so it is exiting: let it finish rather
            // than turn a clean exit into a kill.
            let until = Instant::now() + Duration::from_secs(5);
            while self.try_wait().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
        let mut console_rest = Vec::new();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        while let Ok(chunk) = self.console.try_recv() {
            console_rest.extend_from_slice(&chunk);
        }
        let stderr = self
            .err_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        Finished {
            status: self.status,
            console_rest,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
        if let Some(path) = &self.qmp_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The boot has no QMP socket.
    #[error("This QEMU boot was started without a QMP socket.")]
    NotConfigured,
    /// The socket could not be reached in time.
    #[error("Cannot connect to QEMU's QMP socket {}.", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The last error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed (QEMU exited, or did not answer in time).
    #[error("The QMP connection failed.")]
    Io(#[from] std::io::Error),
    /// QEMU sent something that is not QMP.
    #[error("QEMU sent unexpected QMP data: {0}.")]
    Protocol(String),
    /// A command failed.
    #[error("QMP command `{command}` failed: {class}: {desc}.")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

/// How long one QMP command may take.
const QMP_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Qmp {
    /// Connects to `path` (retrying until `timeout`), reads the greeting and
    /// enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> std::result::Result<Self, QmpError> {
        let until = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(source) if Instant::now() >= until => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        source,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(QMP_REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(QMP_REPLY_TIMEOUT))?;
        let mut qmp = Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("no greeting but {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> std::result::Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed the QMP socket",
            )));
        }
        serde_json::from_str(line.trim()).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    /// Runs `command` with `arguments` and returns its `return` value;
    /// asynchronous events that arrive meanwhile are logged and skipped.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Value,
    ) -> std::result::Result<Value, QmpError> {
        let request = json!({ "execute": command, "arguments": arguments });
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        loop {
            let mut reply = self.read_message()?;
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            if let Some(error) = reply.get("error") {
                let text = |k: &str| {
                    error
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            if reply.get("event").is_some() {
                log::debug!("QMP event: {reply}");
                continue;
            }
            return Err(QmpError::Protocol(format!("unexpected reply {reply}")));
        }
    }

    /// `set_link`: the link of the network client `name` (a netdev id or a
    /// NIC's id) and of its NIC peer goes up or down; the guest sees it
    /// when the device offers VIRTIO_NET_F_STATUS.
    pub fn set_link(&mut self, name: &str, up: bool) -> std::result::Result<(), QmpError> {
        self.execute("set_link", json!({ "name": name, "up": up }))
            .map(drop)
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
        assert!(args.contains(&"user,id=n0".to_string()));
        assert!(!args.contains(&"-qmp".to_string()));
        let append = &args[args.iter().position(|a| a == "-append").unwrap() + 1];
        assert!(
            append
                .starts_with("console=ttyS0 panic=-1 quiet vnetlab.steps=ip%20link%20show%20eth0"),
            "{append}"
        );
        assert_eq!(b.timeout, Duration::from_secs(180));
    }

    #[test]
    fn a_given_device_and_qmp_socket_are_used() {
        let mut b = QemuBoot::new("k".into(), "i".into(), AgentConfig::default(), true);
        b.net_device = Some("virtio-net-pci,netdev=n0,id=vnet0,mrg_rxbuf=off".into());
        b.qmp_socket = Some("/tmp/x/qmp.sock".into());
        let args = b.args();
        assert!(args.contains(&"virtio-net-pci,netdev=n0,id=vnet0,mrg_rxbuf=off".to_string()));
        let qmp = &args[args.iter().position(|a| a == "-qmp").unwrap() + 1];
        assert_eq!(qmp, "unix:/tmp/x/qmp.sock,server=on,wait=off");
        assert!(!args.contains(&"-M".to_string()));
        b.machine = Some("microvm,acpi=off".into());
        b.extra_args = vec!["-global".into(), "virtio-mmio.force-legacy=false".into()];
        let args = b.args();
        assert!(args.ends_with(&[
            "-M".to_string(),
            "microvm,acpi=off".into(),
            "-global".into(),
            "virtio-mmio.force-legacy=false".into()
        ]));
    }

    /// A fake QMP server on a socket pair's far end: greeting, then canned
    /// replies (an event first, to be skipped).
    #[test]
    fn qmp_client_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            w.write_all(b"{\"return\": {}}\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(
                line.contains("\"set_link\"") && line.contains("\"up\":false"),
                "{line}"
            );
            w.write_all(b"{\"event\": \"NIC_RX_FILTER_CHANGED\"}\n{\"return\": {}}\n")
                .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            w.write_all(
                b"{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'x' not found\"}}\n",
            )
            .unwrap();
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.set_link("n0", false).unwrap();
        let e = qmp.set_link("x", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "QMP command `set_link` failed: DeviceNotFound: Device 'x' not found."
        );
        server.join().unwrap();
        let missing = Qmp::connect(&dir.path().join("none"), Duration::from_millis(50));
        assert!(matches!(missing, Err(QmpError::Connect { .. })));
    }
}
