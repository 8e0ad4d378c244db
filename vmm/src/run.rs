//! Running a built VM: the vCPU threads, the device event loop on its own
//! thread, the wait for the end (a guest or host stop request, a vCPU that
//! cannot go on, the deadline), profiling kicks, and stopping everything.
//!
//! The waiting thread does no device work, so a device busy with a guest's
//! queue can never keep the VM from ending on time.

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::legacy::{Serial, StopReason, StopRequest};
use devices::Bus;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::exit::{InternalError, VcpuStop};
use crate::machine::{Error, Subscriber};
use crate::outcome::Outcome;
use crate::profile::RipProfile;
use crate::vcpu::{self, VcpuReport, VcpuShared, VcpuThread};

/// How long stopping waits for a thread before leaving it behind.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `run` takes over from the built VM.
pub(crate) struct RunParts {
    pub vcpus: Vec<VcpuFd>,
    pub pio: Bus,
    pub mmio: Bus,
    pub stop: Arc<StopRequest>,
    pub devices: EventManager<Subscriber>,
    pub serial: Arc<Mutex<Serial>>,
    pub timeout: Option<Duration>,
    pub stdin: bool,
    pub profile: Option<(RipProfile, Duration)>,
}

/// A non-blocking eventfd, with the VMM's error.
pub(crate) fn eventfd() -> Result<EventFd, Error> {
    EventFd::new(EFD_NONBLOCK)
        .map_err(|e| Error::EventLoop(format!("cannot create an eventfd: {e}")))
}

fn clone_evt(evt: &EventFd) -> Result<EventFd, Error> {
    evt.try_clone()
        .map_err(|e| Error::EventLoop(format!("cannot duplicate an eventfd: {e}")))
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs the VM to its end.
pub(crate) fn run(parts: RunParts) -> Result<Outcome, Error> {
    let RunParts {
        vcpus,
        pio,
        mmio,
        stop,
        devices,
        serial,
        timeout,
        stdin,
        profile,
    } = parts;
    let stopping = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(eventfd()?);
    let (reports_tx, reports) = channel();
    let (exited_tx, exited) = channel();

    // The waiting thread's own loop: woken by a stop request or a report.
    let mut waiter: EventManager<Subscriber> =
        EventManager::new().map_err(|e| Error::EventLoop(format!("{e:?}")))?;
    waiter.add_subscriber(Arc::new(Mutex::new(Waker(vec![
        clone_evt(stop.event())?,
        clone_evt(&wake)?,
    ]))));

    let device_thread = DeviceThread::spawn(devices, stopping.clone(), reports_tx.clone(), &wake)?;
    let shared = VcpuShared {
        pio: Arc::new(pio),
        mmio: Arc::new(mmio),
        stopping: stopping.clone(),
        stop_request: stop.clone(),
        exited: exited_tx,
        reports: reports_tx,
        wake,
        profile: profile.as_ref().map(|(p, _)| p.clone()),
    };
    let start = Instant::now();
    let mut threads = Vec::new();
    for (id, fd) in vcpus.into_iter().enumerate() {
        match vcpu::spawn_vcpu(id as u8, fd, shared.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop_vcpus(&stopping, threads, &exited);
                device_thread.stop();
                return Err(e.into());
            }
        }
    }
    if stdin {
        spawn_console_input(serial.clone(), stopping.clone());
    }
    let waiting = Waiting {
        stop: &stop,
        reports: &reports,
        // A timeout too far away to be an instant is no deadline.
        deadline: timeout.and_then(|t| start.checked_add(t).map(|d| (d, t))),
        sampling: profile.map(|(_, every)| every),
    };
    let outcome = waiting.wait(&mut waiter, &threads, start);
    stop_vcpus(&stopping, threads, &exited);
    device_thread.stop();
    // Not `lock()`: a vCPU thread left behind may hold the serial port
    // while blocked writing to an output nobody reads. Each guest write is
    // flushed already; this last flush waits a little for a holder that is
    // only busy (the console input thread), then gives up.
    let mut flushed = false;
    for _ in 0..50 {
        match serial.try_lock() {
            Ok(mut s) => flush_serial(&mut s),
            Err(TryLockError::Poisoned(p)) => flush_serial(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        }
        flushed = true;
        break;
    }
    if !flushed {
        log::warn!("the serial output is blocked (its reader does not drain it); not flushed");
    }
    outcome
}

fn flush_serial(serial: &mut Serial) {
    if let Err(e) = serial.flush() {
        log::warn!("cannot flush the serial output: {e}");
    }
}

/// The wait for the VM's end.
struct Waiting<'a> {
    stop: &'a StopRequest,
    reports: &'a Receiver<VcpuReport>,
    /// When, and the configured limit (for the outcome).
    deadline: Option<(Instant, Duration)>,
    sampling: Option<Duration>,
}

impl Waiting<'_> {
    fn wait(
        &self,
        waiter: &mut EventManager<Subscriber>,
        threads: &[VcpuThread],
        start: Instant,
    ) -> Result<Outcome, Error> {
        let mut next_sample = self.sampling.map(|every| start + every);
        loop {
            if let Some(why) = self.stop.reason() {
                return Ok(match why {
                    StopReason::Reset => Outcome::GuestReset,
                    StopReason::PowerOff => Outcome::GuestPowerOff,
                    StopReason::DebugExit(code) => Outcome::DebugExit(code),
                    StopReason::Host => Outcome::Stopped,
                });
            }
            if let Ok(report) = self.reports.try_recv() {
                return Ok(outcome_of(report));
            }
            let now = Instant::now();
            if let Some((at, limit)) = self.deadline {
                if at <= now {
                    return Ok(Outcome::Timeout(limit));
                }
            }
            if let (Some(at), Some(every)) = (next_sample, self.sampling) {
                if at <= now {
                    threads.iter().for_each(VcpuThread::kick);
                    next_sample = Some(at + every);
                }
            }
            let wake_at = [self.deadline.map(|d| d.0), next_sample]
                .into_iter()
                .flatten()
                .min();
            let wait_ms = wake_at.map_or(-1, |at| {
                let left = at.saturating_duration_since(Instant::now());
                i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
            });
            waiter
                .run_with_timeout(wait_ms)
                .map_err(|e| Error::EventLoop(format!("{e:?}")))?;
        }
    }
}

fn outcome_of(report: VcpuReport) -> Outcome {
    let VcpuReport {
        id,
        stop,
        rip,
        internal,
    } = report;
    match stop {
        VcpuStop::TripleFault => Outcome::TripleFault { rip },
        VcpuStop::PowerOff => Outcome::GuestPowerOff,
        VcpuStop::Reset => Outcome::GuestReset,
        VcpuStop::InternalError => Outcome::InternalError {
            error: internal.unwrap_or_else(|| InternalError::from_parts(0, vec![])),
            rip,
        },
        VcpuStop::Unexpected(why) if id == DEVICE_THREAD_ID => Outcome::VcpuStopped(why),
        VcpuStop::Unexpected(why) => Outcome::VcpuStopped(format!("vCPU {id}: {why}")),
    }
}

/// Reports from the device thread use this id.
const DEVICE_THREAD_ID: u8 = u8::MAX;

/// The device event loop on its own thread.
struct DeviceThread {
    handle: JoinHandle<()>,
    wake: EventFd,
    stopping: Arc<AtomicBool>,
}

impl DeviceThread {
    /// Runs `devices` until `stopping`; a failure or panic there ends the
    /// VM through `reports`.
    fn spawn(
        mut devices: EventManager<Subscriber>,
        stopping: Arc<AtomicBool>,
        reports: Sender<VcpuReport>,
        main_wake: &Arc<EventFd>,
    ) -> Result<Self, Error> {
        let wake = eventfd()?;
        devices.add_subscriber(Arc::new(Mutex::new(Waker(vec![clone_evt(&wake)?]))));
        let main_wake = main_wake.clone();
        let flag = stopping.clone();
        let handle = std::thread::Builder::new()
            .name("devices".into())
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    while !flag.load(Ordering::Acquire) {
                        devices
                            .run()
                            .map_err(|e| format!("the device event loop failed: {e:?}"))?;
                    }
                    Ok::<(), String>(())
                }));
                let failure = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(why)) => why,
                    Err(payload) => format!("a device panicked: {}", panic_text(&*payload)),
                };
                let report = VcpuReport {
                    id: DEVICE_THREAD_ID,
                    stop: VcpuStop::Unexpected(failure),
                    rip: None,
                    internal: None,
                };
                if reports.send(report).is_ok() {
                    let _ = main_wake.write(1);
                }
            })
            .map_err(|e| Error::EventLoop(format!("cannot start the device thread: {e}")))?;
        Ok(Self {
            handle,
            wake,
            stopping,
        })
    }

    /// Stops the loop and joins the thread, leaving it behind (with an
    /// error logged) if a device keeps it busy past the grace period.
    fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        let give_up = Instant::now() + STOP_GRACE;
        loop {
            if self.handle.is_finished() {
                if self.handle.join().is_err() {
                    log::error!("the device thread panicked");
                }
                return;
            }
            if Instant::now() >= give_up {
                log::error!("the device thread did not stop");
                return;
            }
            let _ = self.wake.write(1);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Tells the vCPU threads to stop, kicks them out of KVM_RUN until they
/// do, and joins them. A thread that does not stop within the grace period
/// is left behind with an error logged.
fn stop_vcpus(stopping: &AtomicBool, threads: Vec<VcpuThread>, exited: &Receiver<u8>) {
    stopping.store(true, Ordering::Release);
    let give_up = Instant::now() + STOP_GRACE;
    let mut running = threads;
    while !running.is_empty() && Instant::now() < give_up {
        running.iter().for_each(VcpuThread::kick);
        // A kick can land just before the thread enters KVM_RUN; kick again
        // unless it reports its end soon.
        if let Ok(id) = exited.recv_timeout(Duration::from_millis(2)) {
            if let Some(i) = running.iter().position(|t| t.id == id) {
                // It has left its loop: joining does not block for long.
                running.swap_remove(i).join();
            }
        }
    }
    for t in running {
        log::error!("vCPU {} did not stop", t.id);
    }
}

/// Reads the VMM's standard input into the serial port's receive FIFO.
fn spawn_console_input(serial: Arc<Mutex<Serial>>, stopping: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            while !stopping.load(Ordering::Acquire) {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut pending = &buf[..n];
                while !pending.is_empty() && !stopping.load(Ordering::Acquire) {
                    let taken = serial
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .enqueue_input(pending)
                        .unwrap_or(0);
                    pending = &pending[taken..];
                    if !pending.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("no console input: cannot start its thread: {e}");
    }
}

/// Consumes wake-up eventfds so that an event loop returns and its owner
/// can look at what happened.
struct Waker(Vec<EventFd>);

impl MutEventSubscriber for Waker {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if let Some(evt) = self.0.iter().find(|e| {
            use std::os::fd::AsRawFd;
            e.as_raw_fd() == events.fd()
        }) {
            // Reading resets the counter; a failure (EAGAIN) is harmless.
            let _ = evt.read();
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.0 {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                log::error!("cannot watch a VMM event: {e:?}");
            }
        }
    }
}
