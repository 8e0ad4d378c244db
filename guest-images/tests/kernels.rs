//! Fetches both stock Debian cloud kernels through the public API and checks
//! what the VMM and the harness rely on: an x86-64 ELF `vmlinux`, a bzImage,
//! and virtio networking modules whose vermagic names the kernel release.
//! Needs apt-get with access to the Debian archive (the need `apt`): without
//! it the tests are reported as ignored, or fail when `VNETLAB_REQUIRE`
//! names `apt` (or says `all`).

mod common;

use guest_images::exec::APT_GET;
use guest_images::{Cache, Series};
use testkit::suite::{Failed, Suite};

fn stock_kernels_have_vmlinux_and_network_modules() -> Result<(), Failed> {
    let _ = env_logger::builder().is_test(true).try_init();
    let cache = Cache::open_default(None).expect("cache");
    for series in Series::ALL {
        let started = std::time::Instant::now();
        let k = guest_images::debian_kernel(series, &cache).expect("debian_kernel");
        eprintln!(
            "{series}: {} in {:.1} s",
            k.release,
            started.elapsed().as_secs_f64()
        );
        assert!(k.release.starts_with(series.as_str()), "{}", k.release);
        let vmlinux = std::fs::read(&k.vmlinux).unwrap();
        guest_images::bzimage::check_kernel_elf(&vmlinux).expect("vmlinux is an x86-64 ELF");
        let vmlinuz = std::fs::read(&k.vmlinuz).unwrap();
        assert_eq!(&vmlinuz[0x202..0x206], b"HdrS");
        assert!(k.config.exists());
        let net = k.module("virtio_net").expect("virtio_net is a module");
        assert!(
            net.vermagic.starts_with(&format!("{} ", k.release)),
            "{}",
            net.vermagic
        );
        assert_eq!(
            k.modules.last().map(|m| m.name.as_str()),
            Some("virtio_net"),
            "loaded last"
        );
        for m in &k.modules {
            assert!(m.path.exists(), "{}", m.path.display());
            assert!(m.install_path.ends_with(".ko"), "{}", m.install_path);
        }
        let all: Vec<&str> = k
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .chain(k.builtin_modules.iter().map(String::as_str))
            .collect();
        for wanted in guest_images::kmod::NETWORK_MODULES {
            assert!(all.contains(wanted), "{series} lacks {wanted}: {all:?}");
        }
    }
    Ok(())
}

fn a_missing_package_is_named_in_the_error() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let pkg = guest_images::PackageRef::new("linux-image-0.0.0-0-cloud-amd64-unsigned", "0.0-0");
    let err = guest_images::apt::download(&pkg, dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux-image-0.0.0-0-cloud-amd64-unsigned=0.0-0"),
        "{msg}"
    );
    assert!(msg.contains("could not be downloaded"), "{msg}");
    Ok(())
}

fn main() {
    let apt = [common::tool("apt", APT_GET)];
    let mut suite = Suite::new();
    suite
        .test(
            "stock_kernels_have_vmlinux_and_network_modules",
            &apt,
            stock_kernels_have_vmlinux_and_network_modules,
        )
        .test(
            "a_missing_package_is_named_in_the_error",
            &apt,
            a_missing_package_is_named_in_the_error,
        );
    suite.run()
}
