//! The `vmm` binary and library against tiny bare-metal guests on KVM:
//! serial output and input, every documented way for a run to end (the
//! ACPI power-off and reset a guest finds through the tables too), guest
//! accesses to a test MMIO device and a test port, and bad input from the
//! user. Tests that need /dev/kvm are reported as skipped without it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use devices::BusDevice;
use iced_x86::code_asm::*;
use testkit::guest::Program;
use testkit::suite::{ensure, Failed, Need, Suite};
use vmm::{Outcome, SerialTarget, VmConfig, Vmm};

const VMM: &str = env!("CARGO_BIN_EXE_vmm");

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn run_vmm(args: &[&str], stdin: &[u8]) -> Result<Output, Failed> {
    let mut child = Command::new(VMM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The VMM may end before reading its input: a broken pipe is fine.
    let _ = child.stdin.take().ok_or("no stdin pipe")?.write_all(stdin);
    Ok(child.wait_with_output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `vmm --kernel guest ...` and checks its exit code and the reason on
/// standard error; returns the output.
fn expect_exit(guest: &Path, extra: &[&str], code: i32, reason: &str) -> Result<Output, Failed> {
    let mut args = vec!["--kernel", guest.to_str().ok_or("path")?, "--memory", "32"];
    args.extend_from_slice(extra);
    let out = run_vmm(&args, b"")?;
    let stderr = text(&out.stderr);
    ensure(out.status.code() == Some(code), || {
        format!(
            "exit code {:?}, wanted {code}; stderr: {stderr}",
            out.status.code()
        )
    })?;
    ensure(stderr.contains(reason), || {
        format!("stderr lacks `{reason}`: {stderr}")
    })?;
    ensure(!stderr.contains("panicked"), || {
        format!("the VMM panicked: {stderr}")
    })?;
    Ok(out)
}

fn hello_then_reset() -> Result<(), Failed> {
    let dir = tmp();
    let guest = Program::new()
        .print("hello from the guest\n")?
        .reset()?
        .write_elf(dir.path(), "hello.elf")?;
    let out = expect_exit(
        &guest,
        &["--timeout", "30"],
        0,
        "the guest reset the machine",
    )?;
    let stdout = text(&out.stdout);
    ensure(stdout == "hello from the guest\n", || {
        format!("serial output was {stdout:?}")
    })
}

fn serial_to_file() -> Result<(), Failed> {
    let dir = tmp();
    let guest = Program::new()
        .print("to a file")?
        .debug_exit(0)?
        .write_elf(dir.path(), "file.elf")?;
    let log = dir.path().join("serial.log");
    let target = format!("file:{}", log.display());
    let out = expect_exit(
        &guest,
        &["--serial", &target],
        0,
        "wrote 0 to the debug-exit port",
    )?;
    ensure(out.stdout.is_empty(), || "nothing goes to stdout".into())?;
    let written = std::fs::read_to_string(&log)?;
    ensure(written == "to a file", || {
        format!("the file holds {written:?}")
    })
}

fn debug_exit_code() -> Result<(), Failed> {
    let dir = tmp();
    let guest = Program::new()
        .debug_exit(42)?
        .write_elf(dir.path(), "exit42.elf")?;
    expect_exit(
        &guest,
        &[],
        142,
        "the guest wrote 42 to the debug-exit port",
    )
    .map(drop)
}

/// Loads an IDT of limit 0 so that the next exception cannot be delivered.
fn with_null_idt(p: &mut Program) -> Result<(), Failed> {
    p.asm.push(0)?;
    p.asm.push(0)?;
    p.asm.lidt(ptr(rsp))?;
    Ok(())
}

fn triple_fault() -> Result<(), Failed> {
    let dir = tmp();
    let mut p = Program::new();
    with_null_idt(&mut p)?;
    p.asm.ud2()?;
    let guest = p.write_elf(dir.path(), "triple.elf")?;
    expect_exit(&guest, &[], 3, "the guest triple-faulted at RIP 0x2").map(drop)
}

fn profile_and_symbols() -> Result<(), Failed> {
    // A guest that spins at its first instruction: every sample lands
    // there, and the System.map names it.
    let dir = tmp();
    let guest = Program::new().hang()?.write_elf(dir.path(), "spin.elf")?;
    let map = dir.path().join("System.map");
    std::fs::write(&map, "0000000000200000 T spin_here\n")?;
    let report = dir.path().join("profile.txt");
    expect_exit(
        &guest,
        &[
            "--timeout",
            "1",
            "--profile",
            report.to_str().ok_or("path")?,
            "--system-map",
            map.to_str().ok_or("path")?,
        ],
        5,
        "timeout",
    )?;
    let text = std::fs::read_to_string(&report)?;
    let mut lines = text.lines();
    let total: u64 = lines
        .next()
        .and_then(|l| l.strip_suffix(" samples"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no sample count in {text:?}"))?;
    ensure(total > 0, || format!("no samples: {text:?}"))?;
    ensure(
        lines
            .next()
            .is_some_and(|l| l.starts_with("100.00%") && l.ends_with(" spin_here")),
        || format!("every sample is in spin_here: {text:?}"),
    )?;

    // The same map names the function of a triple fault.
    let mut p = Program::new();
    with_null_idt(&mut p)?;
    p.asm.ud2()?;
    let guest = p.write_elf(dir.path(), "triple.elf")?;
    expect_exit(
        &guest,
        &["--system-map", map.to_str().ok_or("path")?],
        3,
        "triple-faulted at RIP 0x200008 (spin_here+0x8)",
    )
    .map(drop)
}

fn timeout() -> Result<(), Failed> {
    let dir = tmp();
    let guest = Program::new()
        .print("spinning")?
        .hang()?
        .write_elf(dir.path(), "spin.elf")?;
    let out = expect_exit(&guest, &["--timeout", "0.5"], 5, "timeout")?;
    ensure(text(&out.stdout) == "spinning", || {
        "output before the timeout is kept".into()
    })
}

fn internal_error() -> Result<(), Failed> {
    // Executing from the MMIO hole, where no memory backs the fetch, is
    // something no KVM can do.
    let dir = tmp();
    let mut p = Program::new();
    p.asm.mov(eax, 0xd000_0000u32)?;
    p.asm.jmp(rax)?;
    let guest = p.write_elf(dir.path(), "mmio-exec.elf")?;
    expect_exit(&guest, &[], 4, "KVM internal error, suberror").map(drop)
}

fn serial_input() -> Result<(), Failed> {
    // Poll the line status register until a byte arrives, then exit with it.
    let dir = tmp();
    let mut p = Program::new();
    let mut wait = p.asm.create_label();
    p.asm.mov(dx, 0x3fdu32)?;
    p.asm.set_label(&mut wait)?;
    p.asm.in_(al, dx)?;
    p.asm.test(al, 1)?;
    p.asm.jz(wait)?;
    p.asm.mov(dx, 0x3f8u32)?;
    p.asm.in_(al, dx)?;
    p.debug_exit_al()?;
    let guest = p.write_elf(dir.path(), "echo.elf")?;
    let out = run_vmm(
        &[
            "--kernel",
            guest.to_str().ok_or("path")?,
            "--memory",
            "32",
            "--timeout",
            "30",
        ],
        b"Z",
    )?;
    ensure(out.status.code() == Some(100 + i32::from(b'Z')), || {
        format!("exit {:?}: {}", out.status.code(), text(&out.stderr))
    })
}

/// The second vCPU waits for the boot vCPU's INIT and start-up IPIs, as on
/// a PC, then runs a real-mode trampoline that prints and raises a flag.
fn two_vcpus() -> Result<(), Failed> {
    const TRAMPOLINE: u64 = 0x1_0000; // start-up vector 0x10
    const FLAG: u64 = 0x1000;
    const LAPIC: u64 = 0xfee0_0000;
    let dir = tmp();

    // The AP's code, 16-bit real mode at 0x1000:0000.
    let mut ap = iced_x86::code_asm::CodeAssembler::new(16)?;
    ap.mov(dx, 0x3f8u32)?;
    ap.mov(al, u32::from(b'A'))?;
    ap.out(dx, al)?;
    ap.mov(byte_ptr(FLAG), 1u32)?;
    let mut park = ap.create_label();
    ap.set_label(&mut park)?;
    ap.cli()?;
    ap.hlt()?;
    ap.jmp(park)?;
    let ap_code = ap.assemble(TRAMPOLINE)?;

    let mut p = Program::new();
    // Copy the trampoline below 1 MiB, byte by byte.
    for (i, b) in ap_code.iter().enumerate() {
        p.asm.mov(byte_ptr(TRAMPOLINE + i as u64), u32::from(*b))?;
    }
    p.asm.mov(rbx, LAPIC)?;
    // Enable the local APIC, then INIT and START-UP to APIC ID 1.
    p.asm.mov(dword_ptr(rbx + 0xf0), 0x1ffu32)?;
    p.asm.mov(dword_ptr(rbx + 0x310), 1u32 << 24)?;
    p.asm.mov(dword_ptr(rbx + 0x300), 0x4500u32)?;
    p.asm.mov(dword_ptr(rbx + 0x310), 1u32 << 24)?;
    p.asm.mov(
        dword_ptr(rbx + 0x300),
        0x4600u32 | (TRAMPOLINE >> 12) as u32,
    )?;
    // Wait for the flag, a bounded number of times.
    let mut wait = p.asm.create_label();
    let mut failed = p.asm.create_label();
    p.asm.mov(ecx, 5_000_000u32)?;
    p.asm.set_label(&mut wait)?;
    p.asm.cmp(byte_ptr(FLAG), 1)?;
    let mut seen = p.asm.create_label();
    p.asm.je(seen)?;
    p.asm.dec(ecx)?;
    p.asm.jz(failed)?;
    p.asm.jmp(wait)?;
    p.asm.set_label(&mut seen)?;
    p.print(" ap ran")?;
    p.debug_exit(0)?;
    p.asm.set_label(&mut failed)?;
    p.debug_exit(1)?;
    let guest = p.write_elf(dir.path(), "smp.elf")?;
    let out = expect_exit(
        &guest,
        &["--vcpus", "2", "--timeout", "60"],
        0,
        "debug-exit",
    )?;
    let stdout = text(&out.stdout);
    ensure(stdout == "A ap ran", || {
        format!("serial output: {stdout:?}")
    })?;
    ensure(!text(&out.stderr).contains("did not stop"), || {
        format!("a vCPU was left behind: {}", text(&out.stderr))
    })
}

/// Debug-exit codes of the ACPI guests when they cannot go on.
const NO_RSDP: u8 = 1;
const NO_FADT: u8 = 2;
const NO_S5: u8 = 3;
const NOT_IO_PORT: u8 = 4;

/// FADT offsets (ACPI 6.5 table 5.9) the ACPI guests read.
const FADT_RESET_REG: i32 = 116;
const FADT_RESET_VALUE: i32 = 128;
const FADT_X_DSDT: i32 = 140;
const FADT_SLEEP_CONTROL: i32 = 244;

/// Finds the FADT as Linux does without a boot loader's hint: scans
/// 0xe0000-0xfffff on 16-byte boundaries for "RSD PTR " with a valid
/// checksum over its first 20 bytes, then walks the XSDT's entries for the
/// "FACP" signature. Leaves the FADT's address in r8; exits with `NO_RSDP`
/// or `NO_FADT` when there is none.
fn find_fadt(p: &mut Program) -> Result<(), Failed> {
    let a = &mut p.asm;
    let mut scan = a.create_label();
    let mut next = a.create_label();
    let mut checksum = a.create_label();
    let mut no_rsdp = a.create_label();
    let mut entries = a.create_label();
    let mut no_fadt = a.create_label();
    let mut found = a.create_label();
    a.mov(rsi, 0xe_0000u64)?;
    a.mov(rax, u64::from_le_bytes(*b"RSD PTR "))?;
    a.set_label(&mut scan)?;
    a.cmp(qword_ptr(rsi), rax)?;
    a.jne(next)?;
    a.xor(ecx, ecx)?;
    a.xor(edx, edx)?;
    a.set_label(&mut checksum)?;
    a.add(dl, byte_ptr(rsi + rcx))?;
    a.inc(ecx)?;
    a.cmp(ecx, 20)?;
    a.jb(checksum)?;
    a.test(dl, dl)?;
    a.jz(found)?;
    a.set_label(&mut next)?;
    a.add(rsi, 16)?;
    a.cmp(rsi, 0x10_0000)?;
    a.jb(scan)?;
    a.jmp(no_rsdp)?;
    a.set_label(&mut found)?;
    // XSDT: its length at +4, 8-byte table addresses from +36.
    a.mov(rbx, qword_ptr(rsi + 24))?;
    a.mov(ecx, dword_ptr(rbx + 4))?;
    a.add(rcx, rbx)?;
    a.lea(rdi, ptr(rbx + 36))?;
    a.set_label(&mut entries)?;
    a.cmp(rdi, rcx)?;
    a.jae(no_fadt)?;
    a.mov(r8, qword_ptr(rdi))?;
    a.add(rdi, 8)?;
    a.cmp(dword_ptr(r8), i32::from_le_bytes(*b"FACP"))?;
    a.jne(entries)?;
    let mut done = a.create_label();
    a.jmp(done)?;
    a.set_label(&mut no_rsdp)?;
    p.debug_exit(NO_RSDP)?;
    p.asm.set_label(&mut no_fadt)?;
    p.debug_exit(NO_FADT)?;
    p.asm.set_label(&mut done)?;
    Ok(())
}

/// Checks that the generic address structure at `r8 + offset` is in I/O
/// space, and loads its port into rdx.
fn io_register(p: &mut Program, offset: i32) -> Result<(), Failed> {
    let mut io = p.asm.create_label();
    p.asm.cmp(byte_ptr(r8 + offset), 1)?;
    p.asm.je(io)?;
    p.debug_exit(NOT_IO_PORT)?;
    p.asm.set_label(&mut io)?;
    p.asm.mov(rdx, qword_ptr(r8 + offset + 4))?;
    Ok(())
}

/// A guest that powers off as Linux's `acpi_enter_sleep_state(5)` does on
/// a hardware-reduced machine: finds the FADT and the DSDT, reads SLP_TYP
/// from the DSDT's `\_S5` package, and writes SLP_TYP << 2 | SLP_EN to the
/// sleep control register.
fn acpi_power_off_guest(dir: &Path) -> Result<std::path::PathBuf, Failed> {
    let mut p = Program::new();
    p.print("looking for ACPI\n")?;
    find_fadt(&mut p)?;
    let a = &mut p.asm;
    let mut scan = a.create_label();
    let mut no_s5 = a.create_label();
    let mut found = a.create_label();
    let mut byte_prefix = a.create_label();
    let mut have_type = a.create_label();
    // Scan the DSDT's AML for "_S5_", then decode the package's first
    // element: PackageOp, a one-byte PkgLength, NumElements, then ZeroOp,
    // OneOp or BytePrefix and a byte.
    a.mov(rbx, qword_ptr(r8 + FADT_X_DSDT))?;
    a.mov(ecx, dword_ptr(rbx + 4))?;
    a.add(rcx, rbx)?;
    a.sub(rcx, 9)?;
    a.lea(rdi, ptr(rbx + 36))?;
    a.set_label(&mut scan)?;
    a.cmp(rdi, rcx)?;
    a.jae(no_s5)?;
    a.cmp(dword_ptr(rdi), i32::from_le_bytes(*b"_S5_"))?;
    a.je(found)?;
    a.inc(rdi)?;
    a.jmp(scan)?;
    a.set_label(&mut found)?;
    a.cmp(byte_ptr(rdi + 4), 0x12)?;
    a.jne(no_s5)?;
    a.movzx(ebx, byte_ptr(rdi + 7))?;
    a.cmp(bl, 0x0a)?;
    a.je(byte_prefix)?;
    a.cmp(bl, 1)?;
    a.jbe(have_type)?;
    a.jmp(no_s5)?;
    a.set_label(&mut byte_prefix)?;
    a.movzx(ebx, byte_ptr(rdi + 8))?;
    a.set_label(&mut have_type)?;
    io_register(&mut p, FADT_SLEEP_CONTROL)?;
    p.asm.shl(bl, 2)?;
    p.asm.or(bl, 0x20)?;
    p.asm.mov(al, bl)?;
    p.asm.out(dx, al)?;
    // What Linux does next: wait for WAK_STS, which never comes.
    p.hang()?;
    p.asm.set_label(&mut no_s5)?;
    p.debug_exit(NO_S5)?;
    Ok(p.write_elf(dir, "acpi-poweroff.elf")?)
}

fn acpi_power_off() -> Result<(), Failed> {
    let dir = tmp();
    let guest = acpi_power_off_guest(dir.path())?;
    let out = expect_exit(
        &guest,
        &["--timeout", "60"],
        0,
        "the guest powered the machine off",
    )?;
    ensure(text(&out.stdout) == "looking for ACPI\n", || {
        format!("serial output: {:?}", text(&out.stdout))
    })
}

/// The same guest finds no RSDP when the VM has no ACPI tables.
fn no_acpi_hides_the_tables() -> Result<(), Failed> {
    let dir = tmp();
    let guest = acpi_power_off_guest(dir.path())?;
    expect_exit(
        &guest,
        &["--no-acpi", "--timeout", "60"],
        100 + i32::from(NO_RSDP),
        "the guest wrote 1 to the debug-exit port",
    )
    .map(drop)
}

/// A guest that resets as Linux's `acpi_reboot()` does: writes the FADT's
/// reset value to its reset register.
fn acpi_reset() -> Result<(), Failed> {
    let dir = tmp();
    let mut p = Program::new();
    find_fadt(&mut p)?;
    io_register(&mut p, FADT_RESET_REG)?;
    p.asm.mov(al, byte_ptr(r8 + FADT_RESET_VALUE))?;
    p.asm.out(dx, al)?;
    p.hang()?;
    let guest = p.write_elf(dir.path(), "acpi-reset.elf")?;
    expect_exit(
        &guest,
        &["--vcpus", "2", "--timeout", "60"],
        0,
        "the guest reset the machine",
    )
    .map(drop)
}

/// A device that records writes and answers reads with a pattern derived
/// from the offset.
#[derive(Default)]
struct TestDevice {
    writes: Vec<(u64, Vec<u8>)>,
}

impl BusDevice for TestDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = 0xa0 + offset as u8 + i as u8;
        }
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.writes.push((offset, data.to_vec()));
    }
}

fn mmio_and_port_device() -> Result<(), Failed> {
    const MMIO_BASE: u64 = 0xd100_0000;
    const PORT: u16 = 0x3000;
    let dir = tmp();
    let mut p = Program::new();
    // MMIO: store a dword, load a dword and pass it on to the port device.
    p.asm.mov(rbx, MMIO_BASE)?;
    p.asm.mov(dword_ptr(rbx + 0x10), 0xdead_beefu32)?;
    p.asm.mov(eax, dword_ptr(rbx + 0x20))?;
    p.asm.mov(dx, u32::from(PORT))?;
    p.asm.out(dx, eax)?;
    // Port: read one byte at PORT + 1 and exit with it.
    p.asm.mov(dx, u32::from(PORT) + 1)?;
    p.asm.in_(al, dx)?;
    p.debug_exit_al()?;
    let guest = p.write_elf(dir.path(), "devices.elf")?;

    let mmio_dev = Arc::new(Mutex::new(TestDevice::default()));
    let port_dev = Arc::new(Mutex::new(TestDevice::default()));
    let mut config = VmConfig::new(&guest);
    config.memory_mib = 32;
    config.serial = SerialTarget::Null;
    config.timeout = Some(std::time::Duration::from_secs(30));
    let mut vm = Vmm::new(config)?;
    vm.mmio_bus_mut()
        .insert(mmio_dev.clone(), MMIO_BASE, 0x1000)?;
    vm.pio_bus_mut()
        .insert(port_dev.clone(), u64::from(PORT), 8)?;
    let outcome = vm.run()?;

    ensure(outcome == Outcome::DebugExit(0xa1), || {
        format!("the guest read {outcome:?} from the port, wanted 0xa1")
    })?;
    let mmio_writes = mmio_dev.lock().map_err(|_| "poisoned")?.writes.clone();
    ensure(
        mmio_writes == vec![(0x10, 0xdead_beefu32.to_le_bytes().to_vec())],
        || format!("MMIO writes: {mmio_writes:x?}"),
    )?;
    let port_writes = port_dev.lock().map_err(|_| "poisoned")?.writes.clone();
    ensure(
        port_writes == vec![(0, vec![0xc0, 0xc1, 0xc2, 0xc3])],
        || format!("port writes: {port_writes:x?} (the MMIO read must come back)"),
    )
}

/// A device that panics on any access.
struct PanickingDevice;

impl BusDevice for PanickingDevice {
    fn read(&mut self, _base: u64, _offset: u64, _data: &mut [u8]) {
        panic!("test device bug on read");
    }
    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {
        panic!("test device bug on write");
    }
}

/// A device bug met on a vCPU ends the run with a report, not a hang.
fn panicking_vcpu_device_ends_the_run() -> Result<(), Failed> {
    const BASE: u64 = 0xd200_0000;
    let dir = tmp();
    let mut p = Program::new();
    p.asm.mov(rbx, BASE)?;
    p.asm.mov(eax, dword_ptr(rbx))?;
    p.debug_exit(0)?;
    let guest = p.write_elf(dir.path(), "panic.elf")?;
    let mut config = VmConfig::new(&guest);
    config.memory_mib = 32;
    config.serial = SerialTarget::Null;
    config.timeout = Some(std::time::Duration::from_secs(120));
    let mut vm = Vmm::new(config)?;
    vm.mmio_bus_mut()
        .insert(Arc::new(Mutex::new(PanickingDevice)), BASE, 0x1000)?;
    let outcome = vm.run()?;
    ensure(
        matches!(&outcome, Outcome::VcpuStopped(why) if why.contains("vCPU 0: the vCPU thread panicked: test device bug on read")),
        || format!("outcome: {outcome:?}"),
    )
}

/// An event-loop subscriber that panics as soon as it is registered.
struct PanickingSubscriber(vmm_sys_util::eventfd::EventFd);

impl event_manager::MutEventSubscriber for PanickingSubscriber {
    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        panic!("test subscriber bug");
    }
    fn init(&mut self, ops: &mut event_manager::EventOps) {
        ops.add(event_manager::Events::new(
            &self.0,
            vmm_sys_util::epoll::EventSet::IN,
        ))
        .expect("watch the test eventfd");
    }
}

/// A device bug in the event loop ends the run with a report.
fn panicking_event_loop_device_ends_the_run() -> Result<(), Failed> {
    let dir = tmp();
    let guest = Program::new().hang()?.write_elf(dir.path(), "spin.elf")?;
    let mut config = VmConfig::new(&guest);
    config.memory_mib = 32;
    config.serial = SerialTarget::Null;
    config.timeout = Some(std::time::Duration::from_secs(120));
    let mut vm = Vmm::new(config)?;
    let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK)?;
    evt.write(1)?;
    vm.add_subscriber(Arc::new(Mutex::new(PanickingSubscriber(evt))));
    let outcome = vm.run()?;
    ensure(
        matches!(&outcome, Outcome::VcpuStopped(why) if why.contains("a device panicked: test subscriber bug")),
        || format!("outcome: {outcome:?}"),
    )
}

/// Bad input from the user: a clear error, exit code 1 (or clap's 2),
/// never a panic. None of these needs KVM.
fn bad_input() -> Result<(), Failed> {
    let dir = tmp();
    let not_kernel = dir.path().join("notes.txt");
    std::fs::write(&not_kernel, "not a kernel at all")?;
    let tiny = Program::new()
        .debug_exit(0)?
        .write_elf(dir.path(), "tiny.elf")?;
    let big_initrd = dir.path().join("big.cpio");
    std::fs::File::create(&big_initrd)?.set_len(40 << 20)?;
    let tiny_s = tiny.to_str().ok_or("path")?;
    let long_cmdline = "x".repeat(4096);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--kernel", "/nonexistent/vmlinux"],
            1,
            "cannot read /nonexistent/vmlinux",
        ),
        (
            vec!["--kernel", not_kernel.to_str().ok_or("path")?],
            1,
            "neither an ELF vmlinux nor a bzImage",
        ),
        (
            vec!["--kernel", tiny_s, "--memory", "4"],
            1,
            "guest memory of 4 MiB is out of range",
        ),
        (
            vec![
                "--kernel",
                tiny_s,
                "--memory",
                "32",
                "--initrd",
                big_initrd.to_str().ok_or("p")?,
            ],
            1,
            "the initramfs (40 MiB) does not fit",
        ),
        (
            vec!["--kernel", tiny_s, "--initrd", "/nonexistent/initrd"],
            1,
            "cannot read /nonexistent/initrd",
        ),
        (
            vec!["--kernel", tiny_s, "--cmdline", ""],
            1,
            "the kernel command line is empty",
        ),
        (
            vec!["--kernel", tiny_s, "--cmdline", &long_cmdline],
            1,
            "the kernel command line is 4096 bytes long; the limit is 2047",
        ),
        (
            vec!["--kernel", tiny_s, "--serial", "tty"],
            2,
            "unknown serial target",
        ),
        (
            vec!["--kernel", tiny_s, "--timeout=-3"],
            2,
            "positive number of seconds",
        ),
        (
            vec!["--kernel", tiny_s, "--vcpus", "0"],
            1,
            "1 to 254 vCPUs, not 0",
        ),
        (vec![], 2, "--kernel <PATH>"),
        (
            vec!["--kernel", tiny_s, "--net", "features=-guest_csum"],
            2,
            "guest_tso4 requires guest_csum (virtio 1.2 section 5.1.3.1)",
        ),
        (
            vec!["--kernel", tiny_s, "--net", "colour=blue"],
            2,
            "unknown --net key `colour`",
        ),
        (
            vec!["--kernel", tiny_s, "--net", "backend=memory"],
            2,
            "backend=memory is for tests and benchmarks",
        ),
        (
            vec!["--kernel", tiny_s, "--net", "id=a", "--net", "id=a"],
            1,
            "two network devices are named `a`",
        ),
    ];
    for (args, code, message) in cases {
        let out = run_vmm(&args, b"")?;
        let stderr = text(&out.stderr);
        ensure(out.status.code() == Some(code), || {
            format!(
                "{args:?}: exit {:?}, wanted {code}: {stderr}",
                out.status.code()
            )
        })?;
        ensure(stderr.contains(message), || {
            format!("{args:?}: stderr lacks `{message}`: {stderr}")
        })?;
        ensure(!stderr.contains("panicked"), || {
            format!("{args:?} panicked: {stderr}")
        })?;
    }
    Ok(())
}

fn main() {
    let kvm = [Need::Kvm];
    let mut suite = Suite::new();
    suite
        .test("bad_input", &[], bad_input)
        .test("hello_then_reset", &kvm, hello_then_reset)
        .test("serial_to_file", &kvm, serial_to_file)
        .test("debug_exit_code", &kvm, debug_exit_code)
        .test("triple_fault", &kvm, triple_fault)
        .test("timeout", &kvm, timeout)
        .test("profile_and_symbols", &kvm, profile_and_symbols)
        .test("internal_error", &kvm, internal_error)
        .test("serial_input", &kvm, serial_input)
        .test("two_vcpus", &kvm, two_vcpus)
        .test("acpi_power_off", &kvm, acpi_power_off)
        .test("acpi_reset", &kvm, acpi_reset)
        .test("no_acpi_hides_the_tables", &kvm, no_acpi_hides_the_tables)
        .test("mmio_and_port_device", &kvm, mmio_and_port_device)
        .test(
            "panicking_vcpu_device_ends_the_run",
            &kvm,
            panicking_vcpu_device_ends_the_run,
        )
        .test(
            "panicking_event_loop_device_ends_the_run",
            &kvm,
            panicking_event_loop_device_ends_the_run,
        );
    suite.run()
}
