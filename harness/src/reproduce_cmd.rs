//! The `reproduce` subcommand's command line and output.

use anyhow::Context;
use clap::Args;
use harness::engine::{Registry, ENGINE_ENV};
use harness::host::KvmKind;
use harness::report;
use harness::reproduce;
use harness::trace;

/// `harness reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Use this engine instead of the best one for this host (see
    /// `harness list`).
    #[arg(long, env = ENGINE_ENV, value_name = "NAME")]
    engine: Option<String>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "PATH")]
    junit: Option<std::path::PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    json: Option<std::path::PathBuf>,
}

pub fn reproduce(args: ReproduceArgs) -> anyhow::Result<i32> {
    crate::cli::check_outputs(&[&args.junit, &args.json])?;
    let kvm = KvmKind::detect();
    let registry = Registry::builtin();
    let (engine, why) = reproduce::choose_engine(&registry, &kvm, args.engine.as_deref())
        .map_err(anyhow::Error::msg)?;
    println!("host:   {kvm}");
    println!("engine: {}", engine.name());
    println!("        because {why}");
    let mut scenarios = reproduce::select(crate::cli::default_scenarios()?, engine.as_ref());
    let pair = reproduce::trace_pair(&scenarios);
    if let Some(p) = &pair {
        reproduce::enable_traces(&mut scenarios, p);
    }
    if scenarios.is_empty() {
        anyhow::bail!(
            "the engine {} can run none of the operstate and reload scenarios",
            engine.name()
        );
    }
    println!(
        "running {} scenarios (the first run builds the guest images it needs; the lab's test kernel takes about 6 minutes on 2 cores)\n",
        scenarios.len()
    );
    let work = tempfile::Builder::new()
        .prefix("vnetlab-reproduce-")
        .tempdir()
        .context("cannot create a temporary work directory")?;
    let report = reproduce::run(engine, scenarios, work.path().to_path_buf());
    println!();
    print!("{}", report::table(&report));
    println!();
    for line in reproduce::verdict_lines(&report) {
        println!("{line}");
    }
    let evidence = pair
        .as_ref()
        .map(|p| (p, reproduce::trace_evidence(&report, p)));
    let mut contradicted = false;
    match &evidence {
        None => println!(
            "\n(no pre-fix operstate cell pair runs on this engine, so no kernel call trace is compared)"
        ),
        Some(((normal, abnormal), e)) => {
            println!(
                "\nWhat the kernel did: the link-state functions traced in the two pre-fix cells, \
                 A = {normal} (the normal run, device with STATUS) and B = {abnormal} (the \
                 abnormal run, without):\n"
            );
            match e {
                reproduce::TraceEvidence::Confirms(c) => print!("{}", trace::render(c)),
                reproduce::TraceEvidence::Contradicts(c, why) => {
                    print!("{}", trace::render(c));
                    println!("\nTHE TRACES DO NOT SHOW THE CAUSE ABOVE: {why}");
                    contradicted = true;
                }
                reproduce::TraceEvidence::Unavailable(why) => {
                    println!("no traces to compare: {why}");
                }
            }
        }
    }
    let confirmed = matches!(&evidence, Some((_, reproduce::TraceEvidence::Confirms(_))));
    println!("\n{}", reproduce::explanation(confirmed));
    if let Some(p) = &args.junit {
        std::fs::write(p, report::junit(&report))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, report::json(&report, true))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let code = if contradicted {
        harness::outcome::EXIT_FAILED
    } else {
        report.exit_code(true)
    };
    if code == 0 {
        println!(
            "\nreproduced: every cell matched (engine: {})",
            report.engine
        );
    } else {
        let kept = work.keep();
        println!(
            "\nNOT reproduced as expected (engine: {}); scenario files kept in {}",
            report.engine,
            kept.display()
        );
    }
    Ok(i32::from(code))
}
