//! Fetches both stock Debian cloud kernels through the public API and checks
//! what the VMM and the harness rely on: an x86-64 ELF `vmlinux`, a bzImage,
//! and virtio networking modules whose vermagic names the kernel release.
//! Needs apt-get with access to the Debian archive; says SKIPPED otherwise
//! (a failure when VNETLAB_REQUIRE_APT=1).

use guest_images::{Cache, Series};

fn cache_or_skip() -> Option<Cache> {
    if guest_images::exec::find_tool(guest_images::exec::APT_GET).is_err() {
        let msg = "SKIPPED: apt-get is not installed, the Debian kernels cannot be fetched";
        if std::env::var_os("VNETLAB_REQUIRE_APT").is_some_and(|v| v == "1") {
            panic!("{msg} (VNETLAB_REQUIRE_APT=1)");
        }
        eprintln!("{msg}");
        return None;
    }
    Some(Cache::open_default(None).expect("cache"))
}

#[test]
fn stock_kernels_have_vmlinux_and_network_modules() {
    let _ = env_logger::builder().is_test(true).try_init();
    let Some(cache) = cache_or_skip() else { return };
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
}

#[test]
fn a_missing_package_is_named_in_the_error() {
    if cache_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pkg = guest_images::PackageRef::new("linux-image-0.0.0-0-cloud-amd64-unsigned", "0.0-0");
    let err = guest_images::apt::download(&pkg, dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("linux-image-0.0.0-0-cloud-amd64-unsigned=0.0-0"),
        "{msg}"
    );
    assert!(msg.contains("could not be downloaded"), "{msg}");
}
