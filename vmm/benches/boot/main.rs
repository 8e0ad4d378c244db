//! Start-up benchmark of issue 6: our `vmm` against QEMU's microvm, side by
//! side in one run, each booting an equivalent tiny guest that writes a few
//! bytes to the serial port and exits through the debug-exit port.
//!
//! For each program it reports, over several interleaved runs (median,
//! min, max and the run count): the time from just before the spawn to the
//! guest's first serial byte on the child's stdout and to the child's end,
//! the child's CPU time (user + sys) and its peak RSS from `wait4`; then the
//! ratios and issue 6's goals, each marked met or not met. It measures and
//! reports, and asserts nothing. Every child has a deadline and is killed
//! (and reported as such) past it.
//!
//! Run: `cargo bench -p vmm --bench boot`. Environment:
//! `BOOT_BENCH_RUNS` (runs per program, default 30), `BOOT_BENCH_TCG=1`
//! (also report QEMU under TCG when KVM works) and `BOOT_BENCH_VMM=PATH`
//! (measure that `vmm` binary instead of the one cargo built).

mod child;
mod guests;
mod report;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use child::{Ending, Measurement, Spec};
use report::{Role, Sample, Series};
use testkit::suite::{find_program, kvm_usable};

/// Our VMM, built by cargo in the bench profile.
const VMM: &str = env!("CARGO_BIN_EXE_vmm");
/// Guest RAM for both VMMs (QEMU microvm's default).
const GUEST_MEM_MIB: u32 = 128;
/// How long one child may run before it is killed. The tiny guest ends in
/// well under a second under KVM and under TCG alike.
const DEADLINE: Duration = Duration::from_secs(10);
/// Runs per program when `BOOT_BENCH_RUNS` is not set.
const DEFAULT_RUNS: usize = 30;
/// QEMU's isa-debug-exit ends QEMU with (value << 1) | 1.
const QEMU_DEBUG_EXIT_STATUS: i32 = 1;
/// The microvm options that leave out what the tiny guest (and our vmm)
/// does without: option ROMs, PIT, PIC, RTC and ACPI tables.
const QEMU_MINIMAL_MACHINE: &str =
    "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,acpi=off,isa-serial=on";

/// A program to measure and what a good run of it looks like.
struct Subject {
    spec: Spec,
    expect_status: i32,
    expect_stdout: &'static [u8],
    series: Series,
}

impl Subject {
    /// Runs it once; `Ok` with the figures of a good run, `Err` with what
    /// went wrong otherwise.
    fn measure(&self) -> Result<Sample, String> {
        let m = child::run(&self.spec)?;
        self.check(&m)?;
        Ok(Sample {
            first_byte_ms: m.first_byte.map(ms),
            wall_ms: ms(m.wall),
            cpu_ms: ms(m.cpu),
            rss_mib: m.max_rss_kib as f64 / 1024.0,
        })
    }

    fn check(&self, m: &Measurement) -> Result<(), String> {
        let stderr = String::from_utf8_lossy(&m.stderr);
        let last_line = stderr.lines().last().unwrap_or("").trim();
        match m.ending {
            Ending::Exited(s) if s == self.expect_status => {}
            Ending::Exited(s) => {
                return Err(format!(
                    "exit status {s}, expected {}; last stderr line: {last_line:?}",
                    self.expect_status
                ))
            }
            Ending::Signalled(sig) => {
                return Err(format!(
                    "killed by signal {sig}; last stderr line: {last_line:?}"
                ))
            }
            Ending::TimedOut(d) => {
                return Err(format!(
                    "still running after {d:?}: killed (serial output so far {:?})",
                    String::from_utf8_lossy(&m.stdout)
                ))
            }
        }
        if m.stdout != self.expect_stdout {
            return Err(format!(
                "stdout was {:?}, expected {:?}",
                String::from_utf8_lossy(&m.stdout),
                String::from_utf8_lossy(self.expect_stdout)
            ));
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn vmm_subject(guest: &Path) -> Subject {
    let mut args = os(&["--kernel"]);
    args.push(guest.into());
    args.extend(os(&["--memory", &GUEST_MEM_MIB.to_string(), "--no-stdin"]));
    Subject {
        spec: Spec {
            // Another build (e.g. a candidate change) can be measured
            // against the same QEMU runs.
            program: std::env::var_os("BOOT_BENCH_VMM")
                .map_or_else(|| PathBuf::from(VMM), PathBuf::from),
            args,
            deadline: DEADLINE,
        },
        expect_status: 0,
        expect_stdout: guests::MESSAGE,
        series: Series::new("vmm (KVM)", Role::Ours),
    }
}

fn qemu_subject(qemu: &Path, guest: &Path, kvm: bool, minimal: bool) -> Subject {
    let accel = if kvm { "kvm" } else { "tcg" };
    let mut args = if minimal {
        os(&[
            "-M",
            QEMU_MINIMAL_MACHINE,
            "-accel",
            accel,
            // The default model asks for SSE3, which this host's KVM lacks:
            // leave it out rather than have QEMU warn about it on each run.
            "-cpu",
            "qemu64,pni=off",
            "-smp",
            "1",
            "-no-user-config",
            "-no-reboot",
        ])
    } else {
        os(&["-M", "microvm", "-accel", accel])
    };
    args.extend(os(&[
        "-m",
        &format!("{GUEST_MEM_MIB}M"),
        "-nodefaults",
        "-nographic",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0x501,iosize=2",
        "-kernel",
    ]));
    args.push(guest.into());
    let label = format!(
        "qemu microvm {} ({})",
        if minimal { "minimal" } else { "defaults" },
        if kvm {
            "KVM"
        } else {
            "TCG, software emulation"
        }
    );
    Subject {
        spec: Spec {
            program: qemu.to_path_buf(),
            args,
            deadline: DEADLINE,
        },
        expect_status: QEMU_DEBUG_EXIT_STATUS,
        expect_stdout: guests::MESSAGE,
        series: Series::new(label, Role::Qemu { kvm, minimal }),
    }
}

fn floor_subject(program: PathBuf) -> Subject {
    Subject {
        spec: Spec {
            program,
            args: Vec::new(),
            deadline: DEADLINE,
        },
        expect_status: 0,
        expect_stdout: b"",
        series: Series::new("floor: /bin/true (spawn + reap)", Role::Floor),
    }
}

/// One discarded run that also tells whether the program works here at
/// all; a program whose warm-up fails is left out, with the reason.
fn warm_up(subject: &Subject) -> bool {
    match subject.measure() {
        Ok(_) => true,
        Err(why) => {
            println!(
                "LEFT OUT: {}: its warm-up run failed: {why}",
                subject.series.label
            );
            false
        }
    }
}

fn runs_wanted() -> Result<usize, String> {
    match std::env::var("BOOT_BENCH_RUNS") {
        Err(_) => Ok(DEFAULT_RUNS),
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("BOOT_BENCH_RUNS must be a positive number, not {v:?}")),
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn qemu_version(qemu: &Path) -> String {
    std::process::Command::new(qemu)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "version unknown".to_owned())
}

/// Says so when other work competes for the CPUs: the figures are then
/// noisier and slower than on an idle machine.
fn warn_if_busy() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let load: Option<f64> = first_line("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok());
    if let Some(load) = load.filter(|&l| l >= cpus as f64 / 2.0) {
        println!(
            "WARNING: the machine is busy (1-minute load {load:.2} on {cpus} CPUs): \
             expect noisy, slower figures; compare medians across several runs"
        );
    }
}

fn run() -> Result<(), String> {
    let runs = runs_wanted()?;
    let always_tcg = std::env::var_os("BOOT_BENCH_TCG").is_some_and(|v| v == "1");
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary dir: {e}"))?;
    let vmm_guest = guests::write_vmm_guest(dir.path()).map_err(|e| e.to_string())?;
    let pvh_guest = guests::write_pvh_guest(dir.path()).map_err(|e| e.to_string())?;

    println!("boot bench (issue 6): start-up of a tiny guest, our vmm against QEMU microvm");
    println!(
        "guest: writes {:?} to serial port 0x3f8, then 0 to debug-exit port 0x501 \
         (same instructions for both: 64-bit ELF for vmm, 32-bit PVH ELF for QEMU); \
         {GUEST_MEM_MIB} MiB RAM, 1 vCPU",
        String::from_utf8_lossy(guests::MESSAGE)
    );
    println!(
        "host: Linux {}, {} CPUs, load average {}",
        first_line("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, usize::from),
        first_line("/proc/loadavg")
    );

    warn_if_busy();

    let kvm = kvm_usable();
    let mut subjects = Vec::new();
    match &kvm {
        Ok(()) => {
            let s = vmm_subject(&vmm_guest);
            if warm_up(&s) {
                subjects.push(s);
            }
        }
        Err(why) => println!("SKIPPED: vmm: {why}; our vmm needs KVM, so no goal is judged"),
    }
    match find_program("qemu-system-x86_64") {
        None => println!(
            "SKIPPED: QEMU: qemu-system-x86_64 is not installed (Debian package \
             qemu-system-x86), so the goals relative to QEMU are not judged"
        ),
        Some(qemu) => {
            println!("qemu: {}", qemu_version(&qemu));
            let mut qemu_on_kvm = false;
            if let Err(why) = &kvm {
                println!("QEMU with -accel kvm not tried: {why}");
            } else {
                for minimal in [true, false] {
                    let s = qemu_subject(&qemu, &pvh_guest, true, minimal);
                    if warm_up(&s) {
                        qemu_on_kvm = true;
                        subjects.push(s);
                    }
                }
            }
            if !qemu_on_kvm {
                println!(
                    "FALLBACK: QEMU with -accel kvm could not run the tiny guest here \
                     (see above); QEMU is reported with -accel tcg (software emulation) \
                     instead, which is NOT like for like with our vmm on KVM"
                );
            }
            if !qemu_on_kvm || always_tcg {
                for minimal in [true, false] {
                    let s = qemu_subject(&qemu, &pvh_guest, false, minimal);
                    if warm_up(&s) {
                        subjects.push(s);
                    }
                }
            }
        }
    }
    if let Some(t) = find_program("true") {
        subjects.push(floor_subject(t));
    }

    println!("commands:");
    for s in &subjects {
        println!("  {}: {}", s.series.label, s.spec.command_line());
    }
    println!(
        "{runs} runs per program after 1 discarded warm-up run, interleaved \
         (round r starts with program r mod {}); deadline {DEADLINE:?} per run",
        subjects.len()
    );

    let count = subjects.len();
    for round in 0..runs {
        for i in 0..count {
            let subject = &mut subjects[(round + i) % count];
            match subject.measure() {
                Ok(sample) => subject.series.samples.push(sample),
                Err(why) => subject.series.failures.push(why),
            }
        }
    }
    let series: Vec<Series> = subjects.into_iter().map(|s| s.series).collect();
    report::print(&series);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boot bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
