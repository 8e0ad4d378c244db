//! The `run`, `list` and `diff` subcommands: load scenarios, select them, choose an
//! engine, run, write the reports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use harness::diff;
use harness::engine::{Engine, Registry, ENGINE_ENV};
use harness::outcome::{RunReport, ScenarioResult};
use harness::report;
use harness::runner::{self, RunOptions};
use harness::scenario::{load_paths, Scenario};
use harness::select::{select, Shard};
use harness::trace::TraceRequest;

/// Exit code for bad usage, invalid scenario files, no engine.
pub const EXIT_USAGE: u8 = 2;

/// Which scenarios: files or directories, a filter and a shard.
#[derive(Debug, Args)]
pub struct Selection {
    /// Scenario files or directories (searched for *.toml); default: the
    /// repository's scenarios/ directory.
    #[arg(value_name = "FILES|DIRS")]
    paths: Vec<PathBuf>,
    /// Only scenarios whose name contains X, or matches X as a glob when X
    /// has * or ?; repeat for several (any may match).
    #[arg(long, value_name = "X")]
    filter: Vec<String>,
    /// Only shard i of n (1-based), dealt round-robin over the sorted names.
    #[arg(long, value_name = "i/n")]
    shard: Option<Shard>,
}

/// `harness list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    selection: Selection,
}

/// `harness run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    selection: Selection,
    /// The engine (see `harness list`). Without it: the first real engine
    /// that can run here. `fake` is a test double and is used only by name.
    #[arg(long, env = ENGINE_ENV, value_name = "NAME")]
    engine: Option<String>,
    /// Scenarios run in parallel, each in its own VM.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Each scenario's deadline in seconds; a VM still running then is
    /// killed and the scenario reported as timed out.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Write JUnit XML here.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep each scenario's files here (default: a temporary directory,
    /// removed when everything passed).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Count skipped scenarios as failures (exit code 1).
    #[arg(long)]
    fail_on_skip: bool,
    /// Record a kernel call trace in every selected scenario: `--trace` for
    /// the default link-state set, `--trace=F1,F2,...` for these functions
    /// (`default` in the list adds the set). Replaces a scenario's own
    /// `trace`.
    #[arg(long, value_name = "FUNCS", num_args = 0..=1, require_equals = true,
          default_missing_value = "default")]
    trace: Option<String>,
}

/// The `--trace` value as a request.
pub fn trace_request(value: &str) -> anyhow::Result<TraceRequest> {
    TraceRequest::parse_list(value).map_err(|e| anyhow::anyhow!("--trace: {e}"))
}

/// `harness diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    selection: Selection,
    /// The two engines to compare, e.g. `qemu,vmm-guest` (see `harness
    /// list`).
    #[arg(long, value_name = "A,B", required = true)]
    engines: String,
    /// Scenarios run in parallel on each engine (one engine after the other).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Each scenario's deadline in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Write the differences as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep each scenario's files here, under A/ and B/ (default: a
    /// temporary directory, removed when the engines agree).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

/// The repository's scenarios/ directory: ./scenarios, else the one next
/// to this crate's sources.
pub fn default_paths() -> anyhow::Result<Vec<PathBuf>> {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        return Ok(vec![here]);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    if repo.is_dir() {
        return Ok(vec![repo]);
    }
    bail!("no scenario files given and no scenarios/ directory here")
}

/// Every scenario of the repository's scenarios/ directory.
pub fn default_scenarios() -> anyhow::Result<Vec<Scenario>> {
    load_paths(&default_paths()?).map_err(|e| anyhow::anyhow!("invalid scenarios:\n{e}"))
}

fn load(selection: &Selection) -> anyhow::Result<(Vec<Scenario>, usize)> {
    let paths = if selection.paths.is_empty() {
        default_paths()?
    } else {
        selection.paths.clone()
    };
    let all = load_paths(&paths).map_err(|e| anyhow::anyhow!("invalid scenarios:\n{e}"))?;
    let total = all.len();
    let filtered = select(all, |s| s.name.as_str(), &selection.filter, None);
    if filtered.is_empty() {
        bail!(
            "no scenario matches --filter {} (there are {total})",
            selection.filter.join(" --filter ")
        );
    }
    let chosen = select(filtered, |s| s.name.as_str(), &[], selection.shard);
    Ok((chosen, total))
}

pub fn list(args: ListArgs) -> anyhow::Result<i32> {
    let (scenarios, total) = load(&args.selection)?;
    let width = scenarios.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &scenarios {
        let features = if s.device.features.is_empty() {
            "default features".to_string()
        } else {
            format!("features {}", s.device.features)
        };
        println!(
            "{:<width$}  {} {}, {} {}, {} steps, {}",
            s.name,
            s.guest.kernel.as_str(),
            s.guest.driver.as_str(),
            s.device.transport.as_str(),
            features,
            s.steps.len(),
            s.location,
        );
    }
    let shard = args
        .selection
        .shard
        .map_or(String::new(), |s| format!(" in shard {s}"));
    println!(
        "{} of {total} scenarios selected{shard}\n\nengines:",
        scenarios.len()
    );
    let registry = Registry::builtin();
    let width = registry
        .engines()
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0);
    for e in registry.engines() {
        println!("  {:<width$} {}", e.name, e.summary);
    }
    Ok(0)
}

/// Checks, before anything runs, that each report file can be written
/// (it is created, empty), so that a typo in a path does not cost a run.
pub fn check_outputs(paths: &[&Option<PathBuf>]) -> anyhow::Result<()> {
    for path in paths.iter().filter_map(|p| p.as_ref()) {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot write the report file {}", path.display()))?;
    }
    Ok(())
}

pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The work directory: `given`, or a temporary one (returned too, so the
/// caller decides whether to keep it).
pub fn work_dir(given: &Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create the work directory {}", d.display()))?;
            Ok((d.clone(), None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("vnetlab-harness-")
                .tempdir()
                .context("cannot create a temporary work directory")?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// Runs `scenarios` on `engine`, printing progress as `[tag i/n]`.
pub fn run_all(
    engine: Arc<dyn Engine>,
    scenarios: Vec<Scenario>,
    options: &RunOptions,
    tag: &str,
) -> RunReport {
    let total = scenarios.len();
    let done = AtomicUsize::new(0);
    let progress = |r: &ScenarioResult| {
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        eprintln!(
            "harness: [{tag}{n}/{total}] {:<7} {} ({:.1}s)",
            r.verdict.as_str(),
            r.scenario.name,
            r.elapsed.as_secs_f64()
        );
    };
    runner::run(engine, scenarios, options, &progress)
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let (mut scenarios, _) = load(&args.selection)?;
    if let Some(value) = &args.trace {
        let request = trace_request(value)?;
        for s in &mut scenarios {
            s.trace = Some(request.clone());
        }
    }
    check_outputs(&[&args.junit, &args.json])?;
    let engine = Registry::builtin()
        .create(args.engine.as_deref())
        .map_err(anyhow::Error::msg)?;
    eprintln!("harness: engine: {}", engine.name());
    if scenarios.is_empty() {
        eprintln!("harness: this shard holds no scenario; nothing to run");
    }
    let (work_dir, temp) = work_dir(&args.work_dir)?;
    let options = RunOptions {
        jobs: usize::from(args.jobs),
        timeout: Duration::from_secs(args.timeout),
        grace: Duration::from_secs(10),
        work_dir,
    };
    let report = run_all(engine, scenarios, &options, "");
    print!("{}", report::table(&report));
    print!("{}", report::traces(&report));
    let code = report.exit_code(args.fail_on_skip);
    if let Some(t) = temp {
        if report.summary().passed == report.results.len() {
            drop(t);
        } else {
            eprintln!("harness: scenario files kept in {}", t.keep().display());
        }
    }
    if let Some(p) = &args.junit {
        write(p, &report::junit(&report))?;
    }
    if let Some(p) = &args.json {
        write(p, &report::json(&report, args.fail_on_skip))?;
    }
    Ok(i32::from(code))
}

pub fn diff(args: DiffArgs) -> anyhow::Result<i32> {
    let names: Vec<&str> = args.engines.split(',').map(str::trim).collect();
    let [a, b] = names[..] else {
        bail!(
            "--engines takes two engine names separated by a comma, e.g. qemu,vmm-guest; got `{}`",
            args.engines
        );
    };
    let (scenarios, _) = load(&args.selection)?;
    check_outputs(&[&args.json])?;
    let registry = Registry::builtin();
    let engine_a = registry.create(Some(a)).map_err(anyhow::Error::msg)?;
    let engine_b = registry.create(Some(b)).map_err(anyhow::Error::msg)?;
    eprintln!("harness: engine A: {}", engine_a.name());
    eprintln!("harness: engine B: {}", engine_b.name());
    let (work_dir, temp) = work_dir(&args.work_dir)?;
    let options = |side: &str| RunOptions {
        jobs: usize::from(args.jobs),
        timeout: Duration::from_secs(args.timeout),
        grace: Duration::from_secs(10),
        work_dir: work_dir.join(side),
    };
    let report_a = run_all(engine_a, scenarios.clone(), &options("A"), "A ");
    let report_b = run_all(engine_b, scenarios, &options("B"), "B ");
    let report = diff::compare(&report_a, &report_b);
    print!("{}", diff::text(&report));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot write JSON")?;
        write(p, &text)?;
    }
    let code = report.exit_code();
    if let Some(t) = temp {
        if code == diff::EXIT_SAME {
            drop(t);
        } else {
            eprintln!("harness: scenario files kept in {}", t.keep().display());
        }
    }
    Ok(i32::from(code))
}
