//! What the engines' end-to-end tests share: the test needs, the shipped
//! operstate matrix cells of Debian 6.1, and the run that checks them.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_images::exec::{find_tool, APT_GET, QEMU};
use guest_images::{BuildContext, Cache, DriverVariant, InitramfsCompression, Series};
use harness::engine::Engine;
use harness::link::Operstate;
use harness::outcome::Verdict;
use harness::runner::{self, RunOptions};
use harness::scenario::{load_file, Scenario};
use testkit::suite::{ensure, Failed, Need};

/// A host tool, as the need `name` (`qemu`, `apt`).
pub fn tool(name: &'static str, tool: guest_images::exec::Tool) -> Need {
    Need::Custom {
        name,
        check: Arc::new(move || find_tool(tool).map(drop).map_err(|e| e.to_string())),
    }
}

/// `qemu`: qemu-system-x86_64.
pub fn qemu() -> Need {
    tool("qemu", QEMU)
}

/// `apt`: apt-get, to fetch the Debian packages the guests are built from.
pub fn apt() -> Need {
    tool("apt", APT_GET)
}

/// `tap`: /dev/net/tun and CAP_NET_ADMIN (QEMU offers the offloads of the
/// lab's default feature set only over a TAP backend).
pub fn tap() -> Need {
    Need::Custom {
        name: "tap",
        check: Arc::new(harness::engine::qemu::tap_available),
    }
}

/// `hardware-kvm`: KVM backed by the CPU's virtualization extensions.
pub fn hardware_kvm() -> Need {
    Need::Custom {
        name: "hardware-kvm",
        check: Arc::new(|| match harness::host::KvmKind::detect() {
            harness::host::KvmKind::Hardware => Ok(()),
            other => Err(format!(
                "this host has {other}, under which no guest user space runs"
            )),
        }),
    }
}

/// The shipped operstate cells of Debian 6.1, stock and pre-fix, with and
/// without STATUS.
pub fn debian_6_1_matrix() -> Vec<Scenario> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/operstate.toml");
    let all = load_file(&path).expect("the shipped operstate.toml loads");
    let cells: Vec<Scenario> = all
        .into_iter()
        .filter(|s| s.name.starts_with("operstate/6.1-"))
        .collect();
    assert_eq!(cells.len(), 4, "four 6.1 cells in operstate.toml");
    cells
}

/// Builds the 6.1 guests before any deadline runs (the first time this
/// downloads Debian packages and builds the pre-fix driver).
pub fn prepare_images() -> Result<(), Failed> {
    let _ = env_logger::builder().is_test(true).try_init();
    let started = Instant::now();
    let ctx = BuildContext::new(Cache::open_default(None)?);
    for variant in [DriverVariant::Stock, DriverVariant::Prefix] {
        for compression in [InitramfsCompression::Gzip, InitramfsCompression::None] {
            guest_images::guest(&ctx, Series::V6_1, variant, compression)?;
        }
    }
    eprintln!(
        "Debian 6.1 guests ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the 6.1 matrix on `engine` and checks the verdicts and the known
/// matrix: pre-fix without STATUS is `state UNKNOWN` with no carrier
/// transition, every other cell `state UP` with two.
pub fn run_matrix(engine: Arc<dyn Engine>) -> Result<(), Failed> {
    prepare_images()?;
    let work = tempfile::tempdir()?;
    let options = RunOptions {
        jobs: 1,
        timeout: Duration::from_secs(300),
        grace: Duration::from_secs(10),
        work_dir: work.path().to_path_buf(),
    };
    let report = runner::run(engine, debian_6_1_matrix(), &options, &|r| {
        eprintln!(
            "{} {} in {:.1} s",
            r.verdict.as_str(),
            r.scenario.name,
            r.elapsed.as_secs_f64()
        )
    });
    let table = harness::report::table(&report);
    eprintln!("{table}");
    for r in &report.results {
        ensure(r.verdict == Verdict::Pass, || {
            format!("{} is {}:\n{table}", r.scenario.name, r.verdict.as_str())
        })?;
        let show = r
            .observation
            .as_ref()
            .and_then(|o| o.shows.last())
            .ok_or_else(|| format!("{} has no show", r.scenario.name))?;
        let bug = r.scenario.name == "operstate/6.1-prefix/no-status";
        let (state, changes) = if bug {
            (Operstate::Unknown, 0)
        } else {
            (Operstate::Up, 2)
        };
        ensure(
            show.link.state == Some(state) && show.link.carrier_changes == Some(changes),
            || {
                format!(
                    "{}: observed {:?} with carrier_changes {:?}, the matrix says {state} and {changes}",
                    r.scenario.name, show.link.state, show.link.carrier_changes
                )
            },
        )?;
    }
    Ok(())
}

/// Runs the four operstate cells of `kernel` (`6.1` or `test`: stock and
/// pre-fix, with and without STATUS) on `engine` with the default
/// link-state trace, and checks what the traces say: only the pre-fix
/// driver without STATUS lacks `netif_carrier_off <- virtnet_probe` and
/// never runs the link-watch chain, and the comparison of the pre-fix pair
/// says so. Returns the comparison's text.
pub fn run_traced_matrix(engine: Arc<dyn Engine>, kernel: &str) -> Result<String, Failed> {
    use harness::trace::compare::{compare, Side};
    use harness::trace::{self, TraceRequest};

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/operstate.toml");
    let cells: Vec<Scenario> = load_file(&path)?
        .into_iter()
        .filter(|s| s.name.starts_with(&format!("operstate/{kernel}-")))
        .map(|mut s| {
            s.trace = Some(TraceRequest::link_state());
            s
        })
        .collect();
    ensure(cells.len() == 4, || {
        format!("four {kernel} cells, not {}", cells.len())
    })?;
    let work = tempfile::tempdir()?;
    let options = RunOptions {
        jobs: 2,
        timeout: Duration::from_secs(300),
        grace: Duration::from_secs(10),
        work_dir: work.path().to_path_buf(),
    };
    let report = runner::run(engine, cells, &options, &|r| {
        eprintln!(
            "{} {} in {:.1} s",
            r.verdict.as_str(),
            r.scenario.name,
            r.elapsed.as_secs_f64()
        )
    });
    let table = harness::report::table(&report);
    eprintln!("{table}{}", harness::report::traces(&report));
    const CAUSE: &str = "netif_carrier_off <- virtnet_probe";
    for r in &report.results {
        ensure(r.verdict == Verdict::Pass, || {
            format!("{} is {}:\n{table}", r.scenario.name, r.verdict.as_str())
        })?;
        let t = trace::of_result(r)?;
        ensure(t.complete && t.problems.is_empty() && t.lost == 0, || {
            format!(
                "{}: the trace is not whole: {:?}",
                r.scenario.name, t.problems
            )
        })?;
        let untraceable: Vec<&str> = t.untraceable().map(|f| f.name.as_str()).collect();
        ensure(untraceable == ["default_operstate"], || {
            format!("{}: untraceable {untraceable:?}", r.scenario.name)
        })?;
        let bug = r.scenario.name.ends_with("prefix/no-status");
        let has_cause = t
            .events
            .iter()
            .any(|e| e.call() == CAUSE && e.step == Some(0));
        let chain = t.events.iter().any(|e| e.function == "rfc2863_policy");
        ensure(has_cause != bug && chain != bug, || {
            format!(
                "{}: `{CAUSE}` at boot {has_cause}, link watch ran {chain}; the bug cell is {bug}",
                r.scenario.name
            )
        })?;
    }
    let find = |suffix: &str| {
        report
            .results
            .iter()
            .find(|r| r.scenario.name == format!("operstate/{kernel}-prefix/{suffix}"))
            .ok_or_else(|| format!("no prefix/{suffix} cell"))
    };
    let (normal, abnormal) = (find("status")?, find("no-status")?);
    let (sa, sb) = (normal.scenario.step_words(), abnormal.scenario.step_words());
    let side = |name, r: &'_ harness::outcome::ScenarioResult, steps| -> Result<_, String> {
        Ok((
            name,
            r.scenario.name.clone(),
            trace::of_result(r)?.clone(),
            steps,
        ))
    };
    let (a, b) = (
        side("the normal run", normal, &sa)?,
        side("the abnormal run", abnormal, &sb)?,
    );
    let c = compare(
        &Side {
            name: a.0,
            scenario: &a.1,
            engine: &report.engine,
            steps: a.3,
            trace: &a.2,
        },
        &Side {
            name: b.0,
            scenario: &b.1,
            engine: &report.engine,
            steps: b.3,
            trace: &b.2,
        },
    );
    let text = trace::render(&c);
    let d = c
        .first_divergence
        .as_ref()
        .ok_or("the pre-fix traces do not differ")?;
    ensure(
        d.only_a.first().map(|x| x.call.as_str()) == Some(CAUSE)
            && d.only_b.first().map(|x| x.call.as_str())
                == Some("netif_carrier_on <- virtnet_probe"),
        || format!("the first divergence is not the missing carrier off:\n{text}"),
    )?;
    ensure(
        text.contains(&format!("calls `{CAUSE}`"))
            && text.contains("it is missing in the abnormal run")
            && text.contains("the link watch chain never ran in the abnormal run"),
        || format!("the comparison does not say it:\n{text}"),
    )?;
    Ok(text)
}
