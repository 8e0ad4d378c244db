//! Runs one child process under a deadline and measures it: the time from
//! just before the spawn to the first byte on its standard output and to
//! its end, and its CPU time and peak RSS from `wait4`. A child still
//! running at the deadline is killed and reported as timed out.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a killed child gets to disappear before it is given up on.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A program to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// How long it may run before it is killed.
    pub deadline: Duration,
}

impl Spec {
    /// The command line, for the report.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it (not ours).
    Signalled(i32),
    /// It was still running at the deadline and was killed.
    TimedOut(Duration),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// From just before the spawn to the first byte on its stdout.
    pub first_byte: Option<Duration>,
    /// From just before the spawn to its end (or to the kill).
    pub wall: Duration,
    /// User plus system CPU time of the child.
    pub cpu: Duration,
    /// Peak resident set size of the child, in KiB.
    pub max_rss_kib: u64,
    /// How it ended.
    pub ending: Ending,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Runs `spec` once with stdin from /dev/null and stdout and stderr
/// captured. `Err` means the run could not be measured at all.
pub fn run(spec: &Spec) -> Result<Measurement, String> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // With a `pre_exec` hook std forks instead of using posix_spawn's
    // vfork. That matters for the peak RSS: at exec the kernel carries the
    // old address space's high-water mark into the child's ru_maxrss, and
    // after a vfork that is this harness's whole RSS (file pages included),
    // after a fork only the anonymous memory it copied.
    // SAFETY: the hook does nothing, so it is trivially async-signal-safe
    // and cannot touch state the fork left inconsistent.
    unsafe {
        command.pre_exec(|| Ok(()));
    }
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
    let pidfd = match pidfd_open(&child) {
        Ok(fd) => fd,
        Err(e) => {
            // Without a pidfd there is no deadline: do not let it run.
            let _ = child.kill();
            let give_up = Instant::now() + KILL_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Err(format!(
                "pidfd_open failed (Linux 5.3 or later needed): {e}"
            ));
        }
    };
    let deadline = start + spec.deadline;
    let mut io = Io::new(&mut child);
    let ended = match io.pump(start, deadline, &pidfd) {
        Ok(ended) => ended,
        Err(e) => {
            kill_and_reap(&mut child, &pidfd);
            return Err(e);
        }
    };
    let ending_at = match ended {
        Some(at) => at,
        None => {
            // Deadline: the child has not been reaped yet, so its pid is
            // still its own and the kill cannot hit another process.
            child
                .kill()
                .map_err(|e| format!("cannot kill the timed-out child: {e}"))?;
            if !wait_readable(&pidfd, KILL_GRACE)? {
                return Err(format!(
                    "the child (pid {}) did not die within {KILL_GRACE:?} of SIGKILL; left behind",
                    child.id()
                ));
            }
            deadline
        }
    };
    let (status, usage) = reap(&child)?;
    let ending = if ended.is_none() {
        Ending::TimedOut(spec.deadline)
    } else if libc::WIFEXITED(status) {
        Ending::Exited(libc::WEXITSTATUS(status))
    } else {
        Ending::Signalled(libc::WTERMSIG(status))
    };
    Ok(Measurement {
        first_byte: io.first_byte,
        wall: ending_at - start,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        ending,
        stdout: io.out,
        stderr: io.err,
    })
}

/// The child's output pipes, read as data arrives.
struct Io {
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    out: Vec<u8>,
    err: Vec<u8>,
    first_byte: Option<Duration>,
}

impl Io {
    /// Takes the child's pipes (both are always there: `run` asks for
    /// them; a missing one would simply be treated as closed).
    fn new(child: &mut Child) -> Self {
        Self {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            out: Vec::new(),
            err: Vec::new(),
            first_byte: None,
        }
    }

    /// Reads both pipes until the process has ended and closed them, or
    /// until `deadline`. Returns when the process ended, `None` if it was
    /// still running at the deadline.
    fn pump(
        &mut self,
        start: Instant,
        deadline: Instant,
        pidfd: &OwnedFd,
    ) -> Result<Option<Instant>, String> {
        const OUT: usize = 0;
        const ERR: usize = 1;
        const PID: usize = 2;
        let mut ended = None;
        let mut buf = [0u8; 4096];
        while ended.is_none() || self.stdout.is_some() || self.stderr.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A negative fd is one poll skips: a closed pipe, or the pidfd
            // once the end is known.
            let mut fds = [
                pollfd(self.stdout.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
                pollfd(self.stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
                pollfd(if ended.is_none() {
                    pidfd.as_raw_fd()
                } else {
                    -1
                }),
            ];
            // Round up so that a poll never returns just before the deadline.
            let timeout_ms = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
            // SAFETY: `fds` is an array of initialised pollfd structures
            // whose length is passed with it, and it outlives the call;
            // negative fds are ignored by poll.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            let now = Instant::now();
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll on the child's pipes failed: {e}"));
            }
            if fds[OUT].revents != 0 {
                if let Some(pipe) = self.stdout.as_mut() {
                    match read_some(pipe, &mut buf) {
                        Some(0) | None => self.stdout = None,
                        Some(n) => {
                            self.first_byte.get_or_insert(now - start);
                            self.out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
            if fds[ERR].revents != 0 {
                if let Some(pipe) = self.stderr.as_mut() {
                    match read_some(pipe, &mut buf) {
                        Some(0) | None => self.stderr = None,
                        Some(n) => self.err.extend_from_slice(&buf[..n]),
                    }
                }
            }
            if fds[PID].revents != 0 && ended.is_none() {
                ended = Some(now);
            }
        }
        Ok(ended)
    }
}

/// One read from a pipe that poll said is ready: `Some(0)` at its end,
/// `None` on an error (the pipe is then given up on).
fn read_some(pipe: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    loop {
        match pipe.read(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// A pidfd for the child: readable once it has ended, whoever reaps it.
fn pidfd_open(child: &Child) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // file descriptor or -1; no memory is shared with the kernel. The child
    // is not reaped yet, so `pid` is still the child's.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned `fd` to us; nothing else owns or
    // closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `limit` for the pidfd to say the process ended.
fn wait_readable(pidfd: &OwnedFd, limit: Duration) -> Result<bool, String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [pollfd(pidfd.as_raw_fd())];
        let timeout_ms = i32::try_from(left.as_millis() + 1).unwrap_or(i32::MAX);
        // SAFETY: one initialised pollfd, its length passed with it, alive
        // for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) };
        match n {
            1.. => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll on the child's pidfd failed: {e}"));
                }
            }
        }
    }
}

/// Best effort after a failure: kills the child and reaps it if it dies
/// within the grace period, so that no VMM is left running behind the
/// bench.
fn kill_and_reap(child: &mut Child, pidfd: &OwnedFd) {
    let _ = child.kill();
    if wait_readable(pidfd, KILL_GRACE) == Ok(true) {
        let _ = reap(child);
    }
}

/// Reaps the child, which has ended, with its resource usage.
fn reap(child: &Child) -> Result<(libc::c_int, libc::rusage), String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, writable and outlive the
        // call. The pidfd said the child ended, so this does not block, and
        // `child` has not been waited for before, so `pid` is still ours.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(format!("wait4 on the child failed: {e}"));
        }
    }
}

fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}
