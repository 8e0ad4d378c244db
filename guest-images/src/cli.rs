//! The guest-images command line (`build`, `kernel-only`, `verify`,
//! `manifest`, `path`), run by the `guest-images` binary and by
//! `harness images`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use crate::{
    BuildContext, Cache, DriverVariant, InitramfsCompression, Manifest, Progress, Series,
    VersionPolicy,
};

/// Guest kernels and initramfs for the virtio-net lab, from Debian packages.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Cache directory (default: $VNETLAB_CACHE, else $XDG_CACHE_HOME/virtio-net-lab, else ~/.cache/virtio-net-lab).
    #[arg(long, global = true, env = "VNETLAB_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: ImagesCommand,
}

impl ImagesArgs {
    /// The default log filter for this command: build progress comes as
    /// info-level log lines when it is not drawn as bars.
    pub fn log_filter(&self) -> &'static str {
        let plain_progress = match &self.command {
            ImagesCommand::Build { plain, .. } | ImagesCommand::KernelOnly { plain, .. } => {
                *plain || !std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
            _ => false,
        };
        match (self.verbose, plain_progress) {
            (0, false) => "warn",
            (0, true) => "warn,guest_images=info",
            (1, _) => "info",
            _ => "debug",
        }
    }
}

/// The `guest-images` commands.
#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
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
        /// Initramfs compression(s) to build (repeatable; default: none and gzip).
        #[arg(long = "initramfs", value_enum)]
        initramfs: Vec<Compression>,
        /// Only the kernels, no initramfs.
        #[arg(long)]
        kernels_only: bool,
        /// Also build the minimal test kernel from linux-source-6.1 (about 6 minutes on 2 cores the first time).
        #[arg(long)]
        test_kernel: bool,
        /// Driver variants to build initramfs for (repeatable; default: stock and prefix).
        #[arg(long = "variant", value_parser = parse_variant)]
        variants: Vec<DriverVariant>,
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

/// `build --initramfs`: how the initramfs is compressed.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Compression {
    /// Plain newc cpio.
    None,
    /// gzip-compressed cpio.
    Gzip,
}

/// `build --versions`: which Debian kernel versions to use.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Policy {
    /// Pinned versions; the newest one if a pin left the archive.
    PinnedOrLatest,
    /// Only the pinned versions.
    Pinned,
    /// The newest versions apt offers.
    Latest,
}

/// `kernel-only --variant`: which virtio_net to build in.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KernelOnlyVariant {
    /// virtio_net as Debian ships it.
    Stock,
    /// bda7fab54828 reverted.
    Prefix,
    /// Both.
    Both,
}

fn parse_variant(s: &str) -> Result<DriverVariant, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

fn parse_series(s: &str) -> Result<Series, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

/// Runs one `guest-images` command.
pub fn run(cli: ImagesArgs) -> anyhow::Result<()> {
    let cache = Cache::open_default(cli.cache_dir.clone()).context("opening the cache")?;
    match cli.command {
        ImagesCommand::Build {
            series,
            versions,
            plain,
            verify_all,
            initramfs,
            kernels_only,
            variants,
            test_kernel,
        } => {
            let variants = if variants.is_empty() {
                vec![DriverVariant::Stock, DriverVariant::Prefix]
            } else {
                variants
            };
            let compressions: Vec<InitramfsCompression> = if kernels_only {
                Vec::new()
            } else if initramfs.is_empty() {
                vec![InitramfsCompression::None, InitramfsCompression::Gzip]
            } else {
                initramfs
                    .iter()
                    .map(|c| match c {
                        Compression::None => InitramfsCompression::None,
                        Compression::Gzip => InitramfsCompression::Gzip,
                    })
                    .collect()
            };
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
                let k = crate::kernel::debian_kernel_with(&ctx, s, policy)
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
                for &variant in &variants {
                    if variant == DriverVariant::Prefix && !compressions.is_empty() {
                        let d = crate::driver::prefix_driver(&ctx, &k)
                            .with_context(|| format!("building the {s} pre-fix driver"))?;
                        manifest.add(
                            &cache,
                            s,
                            "prefix",
                            "module:virtio_net",
                            &d.object,
                            d.packages.clone(),
                        );
                        println!("  pre-fix    {}", d.module.path.display());
                    }
                    for &c in &compressions {
                        let g = crate::guest_for_kernel(&ctx, k.clone(), variant, c)
                            .with_context(|| format!("building the {s} {variant} initramfs"))?;
                        let role = format!("initramfs.{}", c.suffix());
                        manifest.add(
                            &cache,
                            s,
                            variant.as_str(),
                            &role,
                            &g.initramfs.object,
                            g.initramfs.packages.clone(),
                        );
                        println!("  initramfs  {} ({variant})", g.initramfs.path.display());
                    }
                }
            }
            if test_kernel {
                for &variant in &variants {
                    let c = compressions
                        .first()
                        .copied()
                        .unwrap_or(InitramfsCompression::None);
                    let t =
                        crate::test_guest(&ctx, variant, c).context("building the test kernel")?;
                    let profile = format!("test-{variant}");
                    for (role, obj) in &t.kernel.objects {
                        let role = role.rsplit(':').next().unwrap_or(role);
                        manifest.add(
                            &cache,
                            Series::V6_1,
                            &profile,
                            role,
                            obj,
                            vec![t.kernel.package.clone()],
                        );
                    }
                    let role = format!("initramfs.{}", c.suffix());
                    manifest.add(
                        &cache,
                        Series::V6_1,
                        &profile,
                        &role,
                        &t.initramfs.object,
                        t.initramfs.packages.clone(),
                    );
                    println!("test kernel ({variant})");
                    println!("  vmlinux    {}", t.kernel.vmlinux.display());
                    println!("  bzImage    {}", t.kernel.bzimage.display());
                    println!("  System.map {}", t.kernel.system_map.display());
                    println!("  initramfs  {}", t.initramfs.path.display());
                }
            }
            progress.finish();
            let path = manifest.write(&cache)?;
            manifest.link_out(&cache)?;
            println!("latest     {}", cache.root().join("out").display());
            println!("manifest   {}", path.display());
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
        }
        ImagesCommand::KernelOnly { variant, plain } => kernel_only(&cache, variant, plain)?,
        ImagesCommand::Verify => {
            let manifest = read_manifest(&cache)?;
            let bad = manifest.verify();
            for id in &bad {
                println!("CORRUPT {id}");
            }
            if !bad.is_empty() {
                bail!("{} artifact(s) no longer match their sha256; run `guest-images build` to rebuild them", bad.len());
            }
            println!("{} artifacts verified", manifest.artifacts.len());
        }
        ImagesCommand::Manifest => {
            let path = cache.root().join("manifest.json");
            print!(
                "{}",
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            );
        }
        ImagesCommand::Path { id } => {
            let manifest = read_manifest(&cache)?;
            let a = manifest
                .get(&id)
                .with_context(|| format!("no artifact `{id}` in the manifest"))?;
            println!("{}", a.path.display());
        }
    }
    Ok(())
}

fn kernel_only(cache: &Cache, variant: KernelOnlyVariant, plain: bool) -> anyhow::Result<()> {
    use crate::kernel_only::{self, Variant};
    let progress = if plain || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Progress::log()
    } else {
        Progress::bars()
    };
    let ctx = BuildContext::new(cache.clone()).with_progress(progress.clone());
    let variants = match variant {
        KernelOnlyVariant::Stock => vec![Variant::Stock],
        KernelOnlyVariant::Prefix => vec![Variant::Prefix],
        KernelOnlyVariant::Both => kernel_only::VARIANTS.to_vec(),
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

/// The manifest of the last build, or an error that says how to make one.
fn read_manifest(cache: &Cache) -> anyhow::Result<Manifest> {
    let path = cache.root().join("manifest.json");
    if !path.exists() {
        bail!(
            "no manifest in {}: nothing was built into this cache yet (run `guest-images build`, or `harness images build`)",
            cache.root().display()
        );
    }
    Ok(Manifest::read(&path)?)
}
