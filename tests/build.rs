//! Compiles the bare-metal C test guests in `guests/` into ELF files the VMM
//! boots. Without a C compiler the tests that need them report themselves
//! as skipped, with the compiler's error as the reason.

use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &["virtio_net_probe"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    println!("cargo:rerun-if-changed=guests");
    println!("cargo:rerun-if-env-changed=CC");
    for name in GUESTS {
        let elf = out.join(format!("{name}.elf"));
        let result = Command::new(&cc)
            .args([
                "-O2",
                "-ffreestanding",
                "-fno-pic",
                "-fno-pie",
                "-no-pie",
                "-nostdlib",
                "-static",
                "-mno-red-zone",
                // The emulated KVM of some CI hosts stops at SSE instructions.
                "-mgeneral-regs-only",
                "-fno-stack-protector",
                "-fno-asynchronous-unwind-tables",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wl,-T,guests/guest.ld",
                "-Wl,--build-id=none",
                "-o",
            ])
            .arg(&elf)
            .arg("guests/start.S")
            .arg(format!("guests/{name}.c"))
            .output();
        let key = name.to_uppercase();
        match result {
            Ok(o) if o.status.success() => {
                println!("cargo:rustc-env=GUEST_ELF_{key}={}", elf.display());
            }
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr).replace('\n', " ");
                println!("cargo:warning=cannot build the {name} test guest: {why}");
                println!("cargo:rustc-env=GUEST_ERROR_{key}={cc} failed: {why}");
            }
            Err(e) => {
                println!("cargo:warning=cannot run the C compiler `{cc}`: {e}");
                println!("cargo:rustc-env=GUEST_ERROR_{key}=no C compiler `{cc}`: {e}");
            }
        }
    }
}
