//! The `harness` command: `run`, `list`, `diff` and `compare` scenarios,
//! `reproduce` the bug, build the guest `images`, `boot` a stock kernel.

mod cli;
mod compare_cmd;
mod reproduce_cmd;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use guest_images::{Cache, Series};
use harness::host::KvmKind;
use vmm::{SerialTarget, VmConfig, Vmm};

/// The virtio-net lab: boot guests on the lab's VMM and check what their
/// virtio_net driver does.
#[derive(Debug, Parser)]
#[command(name = "harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenarios on an engine and report expected next to observed.
    ///
    /// Exit code: 0 everything that ran passed; 1 a scenario failed or
    /// errored; 2 bad usage, invalid scenario files, no engine, or a filter
    /// that matched nothing; 3 every selected scenario was skipped.
    Run(cli::RunArgs),
    /// List the scenarios (after --filter and --shard) and the engines.
    List(cli::ListArgs),
    /// Reproduce the original bug in one command: build what is missing,
    /// run the operstate matrix and the driver-reload sequence on the best
    /// engine for this host (ours wherever KVM exists), and explain the
    /// cause and the fix. Exit code 0 when every cell matched.
    Reproduce(reproduce_cmd::ReproduceArgs),
    /// Run the same scenarios on two engines and list every guest-visible
    /// difference (operstate, flags, carrier, carrier_changes, negotiated
    /// features, MTU, MAC, failures).
    ///
    /// Exit code: 0 the engines agree; 1 something differs; 2 bad usage,
    /// invalid scenario files, an engine that cannot run; 3 nothing could
    /// be compared (skipped on an engine).
    Diff(cli::DiffArgs),
    /// Line up the kernel call traces of two scenarios and point at their
    /// first divergence: A and B run now on one engine with a trace (their
    /// own `trace`, `--trace`, else the link-state set), or are read back
    /// from JSON reports with `--from`.
    ///
    /// Exit code: 0 the traces agree; 1 they differ; 2 bad usage, unknown
    /// scenarios, unreadable reports; 3 a side has no trace (it failed, was
    /// skipped, or asked for none).
    Compare(compare_cmd::CompareArgs),
    /// Build and inspect the guest images (kernels, initramfs, the pre-fix
    /// driver, the test kernels): the `guest-images` command, e.g.
    /// `harness images build`.
    Images(guest_images::cli::ImagesArgs),
    /// Fetch a stock Debian cloud kernel (into the guest-images cache) and
    /// boot it on the lab's VMM with its serial console on stdout.
    Boot {
        /// Kernel series: 6.1 or 6.12.
        #[arg(long, default_value = "6.1", value_parser = parse_series)]
        series: Series,
        /// Extra kernel command-line arguments.
        #[arg(long, value_name = "ARGS", default_value = "")]
        append: String,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 512)]
        memory: u64,
        /// Stop the VM after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Cache directory for guest images (default: $VNETLAB_CACHE, else
        /// ~/.cache/virtio-net-lab).
        #[arg(long, env = "VNETLAB_CACHE")]
        cache_dir: Option<std::path::PathBuf>,
    },
}

fn parse_series(s: &str) -> Result<Series, String> {
    s.parse().map_err(|e: guest_images::Error| e.to_string())
}

fn boot(
    series: Series,
    append: &str,
    memory: u64,
    timeout: u64,
    cache_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<i32> {
    let kvm = KvmKind::detect();
    eprintln!("harness: host has {kvm}");
    if let KvmKind::Absent(why) = &kvm {
        anyhow::bail!("cannot boot a guest: {why}");
    }
    let cache = Cache::open_default(cache_dir).context("cannot open the guest-images cache")?;
    eprintln!("harness: fetching the Debian {series} cloud kernel (cached after the first run)");
    let kernel = guest_images::debian_kernel(series, &cache)
        .with_context(|| format!("cannot get the Debian {series} kernel"))?;
    if let KvmKind::Emulated(_) = kvm {
        eprintln!(
            "harness: on emulated KVM a stock kernel stops early, at the first instruction \
             the emulator lacks (lock cmpxchg16b for Debian 6.1); the VMM then reports it"
        );
    }
    let mut config = VmConfig::new(&kernel.vmlinux);
    config.cmdline = format!("console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 {append}")
        .trim()
        .to_owned();
    config.memory_mib = memory;
    config.serial = SerialTarget::Stdout;
    config.timeout = Some(Duration::from_secs(timeout));
    eprintln!(
        "harness: booting {} ({}) with `{}`",
        kernel.release,
        kernel.vmlinux.display(),
        config.cmdline
    );
    let outcome = Vmm::new(config)?.run()?;
    eprintln!("harness: {outcome}");
    Ok(outcome.exit_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Guest-image builds report their progress at info level.
    let log_filter = match &cli.command {
        Command::Images(args) => args.log_filter(),
        _ => "warn,guest_images=info",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(log_filter))
        .format_timestamp(None)
        .init();
    // `run` and `list` keep exit code 1 for "a scenario failed": their own
    // errors (bad files, no engine, bad usage) exit with 2.
    let (result, error_code) = match cli.command {
        Command::Run(args) => (cli::run(args), cli::EXIT_USAGE),
        Command::List(args) => (cli::list(args), cli::EXIT_USAGE),
        Command::Reproduce(args) => (reproduce_cmd::reproduce(args), cli::EXIT_USAGE),
        Command::Diff(args) => (cli::diff(args), cli::EXIT_USAGE),
        Command::Compare(args) => (compare_cmd::run(args), cli::EXIT_USAGE),
        Command::Images(args) => (guest_images::cli::run(args).map(|()| 0), 1),
        Command::Boot {
            series,
            append,
            memory,
            timeout,
            cache_dir,
        } => (boot(series, &append, memory, timeout, cache_dir), 1),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            ExitCode::from(error_code)
        }
    }
}
