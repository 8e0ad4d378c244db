//! Tests of the comparison, on runs of the fake engine.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::engine::fake::{Behaviour, FakeEngine};
use crate::engine::EngineError;
use crate::link::Operstate;
use crate::runner::{run, RunOptions};
use crate::scenario::{load_file, Scenario};

fn scenarios(file: &str) -> Vec<Scenario> {
    load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(file),
    )
    .unwrap()
}

fn run_on(engine: FakeEngine, s: Vec<Scenario>) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        jobs: 16,
        timeout: Duration::from_secs(30),
        grace: Duration::from_secs(1),
        work_dir: dir.path().to_path_buf(),
    };
    run(Arc::new(engine), s, &options, &|_| {})
}

fn result<'a>(r: &'a mut RunReport, name: &str) -> &'a mut ScenarioResult {
    r.results
        .iter_mut()
        .find(|x| x.scenario.name == name)
        .unwrap()
}

#[test]
fn identical_runs_agree() {
    let a = run_on(FakeEngine::new(), scenarios("operstate.toml"));
    let b = run_on(FakeEngine::new(), scenarios("operstate.toml"));
    let d = compare(&a, &b);
    assert_eq!(d.compared, 10);
    assert!(d.differences.is_empty(), "{:?}", d.differences);
    assert_eq!(d.exit_code(), EXIT_SAME);
    assert!(text(&d).contains("no guest-visible differences"));
}

#[test]
fn every_guest_visible_value_is_compared() {
    let a = run_on(FakeEngine::new(), scenarios("link-flap.toml"));
    let mut b = a.clone();
    b.engine = "other".into();
    let r = result(&mut b, "flap/6.1-stock/status");
    let o = r.observation.as_mut().unwrap();
    let down = &mut o.shows[1].link;
    down.state = Some(Operstate::LowerLayerDown);
    down.flags.push("LOWER_UP".into());
    down.carrier_changes = Some(5);
    down.features = down.features.map(|f| f & !(1 << 15));
    down.mtu = Some(9000);
    down.mac = None;
    let d = compare(&a, &b);
    assert_eq!(
        d.unreported,
        [Unreported {
            scenario: "flap/6.1-stock/status".into(),
            show: "down".into(),
            what: "mac",
            missing_on: "B",
        }]
    );
    let found: Vec<(&str, Option<&str>)> = d
        .differences
        .iter()
        .map(|x| (x.what, x.show.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            ("operstate", Some("down")),
            ("flags", Some("down")),
            ("carrier_changes", Some("down")),
            ("features", Some("down")),
            ("mtu", Some("down")),
        ]
    );
    assert_eq!(d.differences[0].a, "DOWN");
    assert_eq!(d.differences[0].b, "LOWERLAYERDOWN");
    assert!(
        d.differences[1].b.ends_with("(only here: LOWER_UP)"),
        "{:?}",
        d.differences[1]
    );
    assert!(
        d.differences[3].a.contains("only here: mrg_rxbuf"),
        "{:?}",
        d.differences[3]
    );
    assert_eq!(d.differing(), 1);
    assert_eq!(d.exit_code(), EXIT_DIFFERENT);
    let t = text(&d);
    assert!(t.contains("flap/6.1-stock/status @ down  operstate"), "{t}");
    assert!(t.contains("result: 1 scenarios differ"), "{t}");
    assert!(
        t.contains("not compared: mac, which engine B does not report (1 show steps)"),
        "{t}"
    );
}

#[test]
fn failures_and_skips_are_reported() {
    let s = scenarios("operstate.toml");
    let a = run_on(
        FakeEngine::new().with("operstate/test-*", Behaviour::Unsupported("no mmio".into())),
        s.clone(),
    );
    let b = run_on(
        FakeEngine::new()
            .with(
                "operstate/6.1-prefix/no-status",
                Behaviour::Fail(EngineError::GuestPanic {
                    message: "Kernel panic - not syncing: x".into(),
                    serial_tail: vec![],
                }),
            )
            .with(
                "operstate/6.1-stock/status",
                Behaviour::Fail(EngineError::Infrastructure {
                    detail: "no disk".into(),
                }),
            ),
        s,
    );
    let d = compare(&a, &b);
    assert_eq!(d.compared, 6);
    assert_eq!(d.not_compared.len(), 4);
    assert!(d.not_compared[0]
        .reason
        .starts_with("first: skipped: no mmio"));
    let outcomes: Vec<(&str, &str)> = d
        .differences
        .iter()
        .map(|x| (x.scenario.as_str(), x.what))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("operstate/6.1-prefix/no-status", "outcome"),
            ("operstate/6.1-stock/status", "outcome"),
        ]
    );
    assert!(
        d.differences[0].b.starts_with("error (guest-panic)"),
        "{:?}",
        d.differences[0]
    );
    assert_eq!(d.differences[0].a, "observed (PASS)");

    // The same failure on both sides is no difference, and no agreement
    // either: nothing was compared (exit 3).
    let fail = || {
        FakeEngine::new().with(
            "*",
            Behaviour::Fail(EngineError::Infrastructure { detail: "x".into() }),
        )
    };
    let one = scenarios("features.toml");
    let d = compare(&run_on(fail(), one.clone()), &run_on(fail(), one.clone()));
    assert!(d.differences.is_empty());
    assert_eq!((d.compared, d.exit_code()), (0, EXIT_NOTHING_COMPARED));
    assert!(
        d.not_compared[0]
            .reason
            .starts_with("first: error (infrastructure)"),
        "{:?}",
        d.not_compared
    );
    let skip = || FakeEngine::new().with("*", Behaviour::Unsupported("no".into()));
    let d = compare(&run_on(skip(), one.clone()), &run_on(skip(), one));
    assert_eq!((d.compared, d.exit_code()), (0, EXIT_NOTHING_COMPARED));
}
