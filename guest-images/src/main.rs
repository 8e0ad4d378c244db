//! `guest-images`: builds the lab's guest kernels, modules and initramfs from
//! Debian packages into a content-addressed cache.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use guest_images::{BuildContext, Cache, Manifest, Progress, Series, VersionPolicy};

#[derive(Parser, Debug)]
#[command(
    name = "guest-images",
    version,
    about = "Guest kernels and initramfs for the virtio-net lab, from Debian packages"
)]
struct Cli {
    /// Cache directory (default: $VNETLAB_CACHE, else $XDG_CACHE_HOME/virtio-net-lab, else ~/.cache/virtio-net-lab).
    #[arg(long, global = true, env = "VNETLAB_CACHE")]
    cache_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build (or verify and reuse) the images and write the manifest.
    Build {
        /// Kernel series to build (repeatable; default: all).
        #[arg(long = "series", value_parser = parse_series)]
        series: Vec<Series>,
        /// Which kernel versions to use.
        #[arg(long, value_enum, default_value_t = Policy::PinnedOrLatest)]
        versions: Policy,
        /// Plain progress lines even on a terminal.
        #[arg(long)]
        plain: bool,
        /// Re-hash every cached object instead of trusting verification stamps.
        #[arg(long)]
        verify_all: bool,
    },
    /// Build the kernel-only test kernel (linux-source-6.1, tinyconfig, virtio_net
    /// and the vnetlab probe built in) and print its paths and command lines.
    KernelOnly {
        /// Which virtio_net: stock, prefix (bda7fab54828 reverted) or both.
        #[arg(long, value_enum, default_value_t = KernelOnlyVariant::Both)]
        variant: KernelOnlyVariant,
        /// Plain progress lines even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Check every artifact of the last manifest against its SHA-256.
    Verify,
    /// Print the last manifest (JSON).
    Manifest,
    /// Print the path of one artifact of the last manifest, e.g. `6.1/stock/vmlinux`.
    Path {
        /// Artifact id.
        id: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    /// Pinned versions; the newest one if a pin left the archive.
    PinnedOrLatest,
    /// Only the pinned versions.
    Pinned,
    /// The newest versions apt offers.
    Latest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KernelOnlyVariant {
    /// virtio_net as Debian ships it.
    Stock,
    /// bda7fab54828 reverted.
    Prefix,
    /// Both.
    Both,
}

fn parse_series(s: &str) -> Result<Series, String> {
    s.parse().map_err(|e: guest_images::Error| e.to_string())
}

fn main() {
    let cli = Cli::parse();
    let plain_progress = match &cli.command {
        Command::Build { plain, .. } | Command::KernelOnly { plain, .. } => {
            *plain || !std::io::IsTerminal::is_terminal(&std::io::stderr())
        }
        _ => false,
    };
    let default_level = match (cli.verbose, plain_progress) {
        (0, false) => "warn",
        // Plain progress lines come through the logger at info level.
        (0, true) => "warn,guest_images=info",
        (1, _) => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp(None)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cache = Cache::open_default(cli.cache_dir.clone()).context("opening the cache")?;
    match cli.command {
        Command::Build {
            series,
            versions,
            plain,
            verify_all,
        } => {
            let cache = cache.with_full_verify(verify_all);
            let progress = if plain || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                Progress::log()
            } else {
                Progress::bars()
            };
            let ctx = BuildContext::new(cache.clone()).with_progress(progress.clone());
            let series = if series.is_empty() {
                Series::ALL.to_vec()
            } else {
                series
            };
            let policy = match versions {
                Policy::PinnedOrLatest => VersionPolicy::PinnedOrLatest,
                Policy::Pinned => VersionPolicy::Pinned,
                Policy::Latest => VersionPolicy::Latest,
            };
            let started = Instant::now();
            let mut manifest = Manifest::read(&cache.root().join("manifest.json"))
                .unwrap_or_else(|_| Manifest::new(&cache));
            manifest.cache_root = cache.root().to_path_buf();
            for s in series {
                let k = guest_images::kernel::debian_kernel_with(&ctx, s, policy)
                    .with_context(|| format!("building the {s} kernel"))?;
                manifest.add_kernel(&cache, &k);
                println!(
                    "{s}: {} ({} {})",
                    k.release, k.package.name, k.package.version
                );
                println!("  vmlinuz    {}", k.vmlinuz.display());
                println!("  vmlinux    {}", k.vmlinux.display());
                match &k.system_map {
                    Some(p) => println!("  System.map {}", p.display()),
                    None => println!("  System.map (none: the package has a placeholder)"),
                }
                for m in &k.modules {
                    println!("  module     {} {}", m.name, m.path.display());
                }
                if !k.builtin_modules.is_empty() {
                    println!("  built in   {}", k.builtin_modules.join(", "));
                }
            }
            progress.finish();
            let path = manifest.write(&cache)?;
            manifest.link_out(&cache)?;
            println!("latest     {}", cache.root().join("out").display());
            println!("manifest   {}", path.display());
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
        }
        Command::KernelOnly { variant, plain } => kernel_only(&cache, variant, plain)?,
        Command::Verify => {
            let manifest = Manifest::read(&cache.root().join("manifest.json"))?;
            let bad = manifest.verify();
            for id in &bad {
                println!("CORRUPT {id}");
            }
            if !bad.is_empty() {
                bail!("{} artifact(s) no longer match their sha256; run `guest-images build` to rebuild them", bad.len());
            }
            println!("{} artifacts verified", manifest.artifacts.len());
        }
        Command::Manifest => {
            let path = cache.root().join("manifest.json");
            print!(
                "{}",
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            );
        }
        Command::Path { id } => {
            let manifest = Manifest::read(&cache.root().join("manifest.json"))?;
            let a = manifest
                .get(&id)
                .with_context(|| format!("no artifact `{id}` in the manifest"))?;
            println!("{}", a.path.display());
        }
    }
    Ok(())
}

fn kernel_only(cache: &Cache, variant: KernelOnlyVariant, plain: bool) -> anyhow::Result<()> {
    use guest_images::kernel_only::{self, Variant};
    let progress = if plain || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Progress::log()
    } else {
        Progress::bars()
    };
    let ctx = BuildContext::new(cache.clone()).with_progress(progress.clone());
    let variants = match variant {
        KernelOnlyVariant::Stock => vec![Variant::Stock],
        KernelOnlyVariant::Prefix => vec![Variant::PreFix],
        KernelOnlyVariant::Both => Variant::ALL.to_vec(),
    };
    let started = Instant::now();
    let mut manifest = Manifest::read(&cache.root().join("manifest.json"))
        .unwrap_or_else(|_| Manifest::new(cache));
    manifest.cache_root = cache.root().to_path_buf();
    for v in variants {
        let k = kernel_only::build(&ctx, v)
            .with_context(|| format!("building the kernel-only {v} kernel"))?;
        k.add_to_manifest(&ctx, &mut manifest);
        println!(
            "kernel-only {v}: {} from {} (built in {:.1} s, {} objects compiled)",
            k.version, k.source, k.build_seconds, k.compiled_objects
        );
        println!("  vmlinux    {}", k.vmlinux.display());
        println!("  System.map {}", k.system_map.display());
        println!("  config     {}", k.config.display());
    }
    progress.finish();
    let path = manifest.write(cache)?;
    manifest.link_out(cache)?;
    println!("emulator   {}", kernel_only::EMULATOR_CMDLINE);
    println!("base       {}", kernel_only::BASE_CMDLINE);
    println!(
        "probe      {}",
        kernel_only::probe::probe_args(&kernel_only::probe::operstate_steps(), None)
    );
    println!("manifest   {}", path.display());
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
