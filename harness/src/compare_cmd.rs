//! The `compare` subcommand: the kernel call traces of two scenarios, run
//! now on one engine or read back from JSON reports, lined up with their
//! first divergence.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use harness::engine::{Registry, ENGINE_ENV};
use harness::runner::RunOptions;
use harness::scenario::load_paths;
use harness::trace::compare::{compare, Side, TraceComparison};
use harness::trace::{self, saved, TraceRequest};

use crate::cli;

/// Exit code: the traces agree.
pub const EXIT_SAME: u8 = 0;
/// Exit code: the traces differ.
pub const EXIT_DIFFERENT: u8 = 1;
/// Exit code: a side has no trace to compare.
pub const EXIT_NO_TRACE: u8 = 3;

/// `harness compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Scenario A, the reference (e.g. the normal run).
    #[arg(value_name = "A")]
    a: String,
    /// Scenario B (e.g. the abnormal run).
    #[arg(value_name = "B")]
    b: String,
    /// Read the traces from JSON reports (`harness run --json`) instead of
    /// running: once for both scenarios, or twice (A's report, then B's).
    #[arg(long, value_name = "REPORT.json")]
    from: Vec<PathBuf>,
    /// Scenario files or directories to find A and B in (default: the
    /// repository's scenarios/).
    #[arg(long = "scenarios", value_name = "PATH")]
    scenarios: Vec<PathBuf>,
    /// The engine both run on (see `harness list`); default: the first real
    /// engine that can run here.
    #[arg(long, env = ENGINE_ENV, value_name = "NAME")]
    engine: Option<String>,
    /// The functions to trace: `--trace=F1,F2,...` (`default` adds the
    /// link-state set). Default: each scenario's own `trace`, else the
    /// link-state set.
    #[arg(long, value_name = "FUNCS", num_args = 0..=1, require_equals = true,
          default_missing_value = "default")]
    trace: Option<String>,
    /// Each scenario's deadline in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Write the comparison as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep each scenario's files here (default: a temporary directory,
    /// removed when both ran).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

/// One side, owned: what `Side` borrows.
struct Owned {
    scenario: String,
    engine: String,
    steps: Vec<String>,
    trace: trace::KernelTrace,
}

fn from_reports(args: &CompareArgs) -> anyhow::Result<Result<[Owned; 2], String>> {
    let files = match args.from.as_slice() {
        [one] => [one, one],
        [a, b] => [a, b],
        _ => bail!("--from takes one report (both scenarios) or two (A's, then B's)"),
    };
    let mut sides = Vec::new();
    for (file, name) in files.iter().zip([&args.a, &args.b]) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        match saved::load(&text, &file.display().to_string(), name) {
            Ok(s) => sides.push(Owned {
                scenario: name.clone(),
                engine: s.engine,
                steps: s.steps,
                trace: s.trace,
            }),
            Err(e @ saved::SavedTraceError::NoTrace { .. }) => return Ok(Err(e.to_string())),
            Err(e) => bail!("{e}"),
        }
    }
    let [a, b]: [Owned; 2] = sides
        .try_into()
        .map_err(|_| anyhow::anyhow!("two sides expected"))?;
    Ok(Ok([a, b]))
}

fn by_running(args: &CompareArgs) -> anyhow::Result<Result<[Owned; 2], String>> {
    let paths = if args.scenarios.is_empty() {
        cli::default_paths()?
    } else {
        args.scenarios.clone()
    };
    let all = load_paths(&paths).map_err(|e| anyhow::anyhow!("invalid scenarios:\n{e}"))?;
    let forced: Option<TraceRequest> = args.trace.as_deref().map(cli::trace_request).transpose()?;
    // A scenario against itself runs twice (two VMs), so that the result
    // says whether its trace is repeatable.
    let b_run = if args.a == args.b {
        format!("{}#2", args.b)
    } else {
        args.b.clone()
    };
    let mut chosen = Vec::new();
    for (name, run_as) in [(&args.a, &args.a), (&args.b, &b_run)] {
        let mut s = all
            .iter()
            .find(|s| &s.name == name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no scenario is named `{name}` (see `harness list`)"))?;
        s.trace = forced
            .clone()
            .or(s.trace.take())
            .or_else(|| Some(TraceRequest::link_state()));
        s.name = run_as.clone();
        chosen.push(s);
    }
    let engine = Registry::builtin()
        .create(args.engine.as_deref())
        .map_err(anyhow::Error::msg)?;
    eprintln!("harness: engine: {}", engine.name());
    let (work_dir, temp) = cli::work_dir(&args.work_dir)?;
    let options = RunOptions {
        jobs: 2,
        timeout: Duration::from_secs(args.timeout),
        grace: Duration::from_secs(10),
        work_dir,
    };
    let report = cli::run_all(engine, chosen, &options, "");
    let mut sides = Vec::new();
    for (name, run_as) in [(&args.a, &args.a), (&args.b, &b_run)] {
        let Some(r) = report.results.iter().find(|r| &r.scenario.name == run_as) else {
            return Ok(Err(format!("{name} did not run")));
        };
        match trace::of_result(r) {
            Ok(t) => sides.push(Owned {
                scenario: name.clone(),
                engine: report.engine.clone(),
                steps: r.scenario.step_words(),
                trace: t.clone(),
            }),
            Err(why) => {
                if let Some(t) = temp {
                    eprintln!("harness: scenario files kept in {}", t.keep().display());
                }
                return Ok(Err(why));
            }
        }
    }
    drop(temp);
    let [a, b]: [Owned; 2] = sides
        .try_into()
        .map_err(|_| anyhow::anyhow!("two sides expected"))?;
    Ok(Ok([a, b]))
}

impl Owned {
    fn side<'a>(&'a self, name: &'a str) -> Side<'a> {
        Side {
            name,
            scenario: &self.scenario,
            engine: &self.engine,
            steps: &self.steps,
            trace: &self.trace,
        }
    }
}

/// Lines up two owned sides as A and B.
fn lined_up(a: &Owned, b: &Owned) -> TraceComparison {
    compare(&a.side("A"), &b.side("B"))
}

pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    cli::check_outputs(&[&args.json])?;
    let sides = if args.from.is_empty() {
        by_running(&args)?
    } else {
        // `--engine` also comes from VNETLAB_ENGINE, which is no mistake here.
        let engine_given = args.engine.is_some()
            && args.engine.as_deref() != std::env::var(ENGINE_ENV).ok().as_deref();
        if engine_given || args.trace.is_some() || !args.scenarios.is_empty() {
            bail!("--from reads finished runs: --engine, --trace and --scenarios do not apply");
        }
        from_reports(&args)?
    };
    let [a, b] = match sides {
        Ok(s) => s,
        Err(why) => {
            eprintln!("harness: nothing to compare: {why}");
            return Ok(i32::from(EXIT_NO_TRACE));
        }
    };
    let comparison = lined_up(&a, &b);
    print!("{}", trace::render(&comparison));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&comparison).context("cannot write JSON")?;
        cli::write(p, &text)?;
    }
    if comparison.compared == 0 {
        eprintln!("harness: nothing to compare: no function was traced on both sides");
        return Ok(i32::from(EXIT_NO_TRACE));
    }
    Ok(i32::from(if comparison.same {
        EXIT_SAME
    } else {
        EXIT_DIFFERENT
    }))
}
