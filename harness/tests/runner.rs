//! The runner on the fake engine: verdicts, deadlines it enforces itself,
//! crashes and panics that are errors, skips that are not passes, and
//! parallel workers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::engine::fake::{Behaviour, FakeEngine};
use harness::engine::{Engine, EngineError, Observation, ShowObservation, Timing};
use harness::link::{LinkView, Operstate};
use harness::outcome::{RunReport, Verdict, EXIT_FAILED, EXIT_NOTHING_RAN, EXIT_OK};
use harness::runner::{run, RunOptions};
use harness::scenario::{load_str, Scenario};

/// `n` copies of a scenario that expects the bug (prefix driver, no
/// STATUS: UNKNOWN, carrier_changes 0), named s0, s1, ...
fn scenarios(n: usize, wait_ms: u64) -> Vec<Scenario> {
    (0..n)
        .map(|i| {
            let text = format!(
                "name = \"s{i}\"\nguest = {{ kernel = \"debian-6.1\", driver = \"prefix\" }}\n\
                 device = {{ features = \"-status\" }}\n\
                 steps = [\"boot\", \"link-up\", {{ wait = \"{wait_ms}ms\" }}, \"show\"]\n\
                 [[expect]]\noperstate = \"UNKNOWN\"\ncarrier-changes = 0\n"
            );
            load_str(&text, Path::new("t.toml")).unwrap().remove(0)
        })
        .collect()
}

fn options(dir: &Path, jobs: usize, timeout_ms: u64) -> RunOptions {
    RunOptions {
        jobs,
        timeout: Duration::from_millis(timeout_ms),
        grace: Duration::from_millis(200),
        work_dir: dir.to_path_buf(),
    }
}

fn go(engine: FakeEngine, s: Vec<Scenario>, jobs: usize, timeout_ms: u64) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let seen = Mutex::new(Vec::new());
    let report = run(
        Arc::new(engine),
        s,
        &options(dir.path(), jobs, timeout_ms),
        &|r| seen.lock().unwrap().push(r.scenario.name.clone()),
    );
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    let mut names: Vec<String> = report
        .results
        .iter()
        .map(|r| r.scenario.name.clone())
        .collect();
    names.sort();
    assert_eq!(seen, names, "progress is called once per scenario");
    report
}

#[test]
fn simulated_guests_pass_and_wrong_expectations_fail() {
    let r = go(FakeEngine::new(), scenarios(2, 0), 1, 10_000);
    assert!(r.engine.contains("test double"));
    assert!(
        r.results.iter().all(|x| x.verdict == Verdict::Pass),
        "{:#?}",
        r.results
    );
    assert_eq!(r.exit_code(false), EXIT_OK);
    let work = r.results[0].work_dir.as_ref().unwrap();
    assert!(work
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("000-s0"));

    // the same scenario on a fixed driver: it does not show the bug
    let mut s = scenarios(1, 0);
    s[0].guest.driver = harness::scenario::Driver::Stock;
    let r = go(FakeEngine::new(), s, 1, 10_000);
    let x = &r.results[0];
    assert_eq!(x.verdict, Verdict::Fail);
    assert_eq!(
        x.reason.as_deref(),
        Some("at show 1: expected state UNKNOWN, observed state UP; at show 1: expected carrier_changes 0, observed carrier_changes 2")
    );
    assert_eq!(r.exit_code(false), EXIT_FAILED);
    assert!(x.observation.as_ref().unwrap().shows[0]
        .raw
        .contains("state UP"));
}

#[test]
fn an_engine_that_ignores_the_deadline_is_reported_as_timed_out() {
    let engine = FakeEngine::new().with("s0", Behaviour::Hang);
    let t = Instant::now();
    let r = go(engine, scenarios(2, 0), 1, 300);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the runner gave up at deadline + grace"
    );
    let x = &r.results[0];
    assert_eq!(x.verdict, Verdict::Error);
    assert_eq!(x.error_kind.as_deref(), Some("timed-out"));
    assert!(
        x.reason
            .as_ref()
            .unwrap()
            .contains("did not stop at the deadline"),
        "{:?}",
        x.reason
    );
    assert_eq!(
        x.serial_tail,
        ["[fake] hanging, deaf to the deadline"],
        "the tail the engine had pushed"
    );
    assert!(x.elapsed >= Duration::from_millis(500));
    assert_eq!(
        r.results[1].verdict,
        Verdict::Pass,
        "the next scenario still runs"
    );
    assert_eq!(r.exit_code(false), EXIT_FAILED);
}

#[test]
fn an_engine_that_honours_the_deadline_times_out_by_itself() {
    let engine = FakeEngine::new().with("s0", Behaviour::Slow(Duration::from_secs(60)));
    let r = go(engine, scenarios(1, 0), 1, 200);
    let x = &r.results[0];
    assert_eq!(x.error_kind.as_deref(), Some("timed-out"));
    assert!(matches!(x.error, Some(EngineError::TimedOut { .. })));
    assert!(!x.reason.as_ref().unwrap().contains("abandoned"));
    assert_eq!(x.serial_tail, ["[fake] slow engine sleeping"]);
}

#[test]
fn crashes_panics_and_emulator_stops_are_errors() {
    for (kind, expected) in [
        ("vmm-crash", "the VMM crashed: the fake VMM was killed by SIGSEGV"),
        ("guest-panic", "the guest kernel panicked: Kernel panic - not syncing: fake"),
        ("emulator-stop", "the emulator stopped at an instruction it cannot run: bytes f0 48 0f c7 4d 20 at RIP 0xffffffff81314b60 in fake_symbol+0x20"),
        ("step-failed", "step 1 (link-up) failed in the guest: the fake guest refused"),
        ("infrastructure", "infrastructure error: the fake has no disk"),
        ("timed-out", "the scenario timed out after 1.0 s"),
    ] {
        let engine = FakeEngine::new().with("*", Behaviour::from_kind(kind).unwrap());
        let r = go(engine, scenarios(1, 0), 1, 10_000);
        let x = &r.results[0];
        assert_eq!(x.verdict, Verdict::Error, "{kind}");
        assert_eq!(x.error_kind.as_deref(), Some(kind));
        assert_eq!(x.reason.as_deref(), Some(expected));
        assert_eq!(r.exit_code(false), EXIT_FAILED);
    }

    let r = go(
        FakeEngine::new().with("s0", Behaviour::Panic),
        scenarios(1, 0),
        1,
        10_000,
    );
    let x = &r.results[0];
    assert_eq!(x.verdict, Verdict::Error);
    assert_eq!(x.error_kind.as_deref(), Some("engine-panic"));
    assert_eq!(
        x.reason.as_deref(),
        Some("the engine panicked: the fake engine was told to panic")
    );
}

fn view(state: Option<Operstate>, changes: u64) -> LinkView {
    LinkView {
        ifindex: 2,
        name: "eth0".into(),
        flags: vec![
            "BROADCAST".into(),
            "MULTICAST".into(),
            "UP".into(),
            "LOWER_UP".into(),
        ],
        mtu: Some(1500),
        state,
        carrier: Some(true),
        carrier_changes: Some(changes),
        mac: None,
        features: None,
    }
}

fn observed(link: LinkView, serial: &[&str]) -> Observation {
    Observation {
        shows: vec![ShowObservation {
            step: 3,
            link,
            raw: "2: eth0: ...".into(),
            at: Duration::from_millis(1),
        }],
        serial_tail: serial.iter().map(|s| s.to_string()).collect(),
        timing: Timing::default(),
        trace: None,
    }
}

#[test]
fn a_panic_in_the_console_is_never_a_pass() {
    let o = observed(
        view(Some(Operstate::Unknown), 0),
        &[
            "[    3.1] Kernel panic - not syncing: Attempted to kill init!",
            "[    3.2] ---[ end ]---",
        ],
    );
    let r = go(
        FakeEngine::new().with("*", Behaviour::Observe(o)),
        scenarios(1, 0),
        1,
        10_000,
    );
    let x = &r.results[0];
    assert_eq!(
        x.verdict,
        Verdict::Error,
        "the expectations matched, but the guest panicked"
    );
    assert_eq!(x.error_kind.as_deref(), Some("guest-panic"));
    assert!(x
        .reason
        .as_ref()
        .unwrap()
        .contains("Attempted to kill init"));
}

#[test]
fn an_unreported_state_is_an_error_not_a_pass() {
    let o = observed(view(None, 0), &[]);
    let r = go(
        FakeEngine::new().with("*", Behaviour::Observe(o)),
        scenarios(1, 0),
        1,
        10_000,
    );
    let x = &r.results[0];
    assert_eq!(x.verdict, Verdict::Error);
    assert_eq!(x.error_kind.as_deref(), Some("unobservable"));
    assert_eq!(
        x.reason.as_deref(),
        Some("at show 1: expected state UNKNOWN, but state not reported")
    );
}

#[test]
fn observations_that_do_not_fit_the_steps_are_errors() {
    let mut o = observed(view(Some(Operstate::Unknown), 0), &[]);
    o.shows.push(o.shows[0].clone());
    let r = go(
        FakeEngine::new().with("*", Behaviour::Observe(o)),
        scenarios(1, 0),
        1,
        10_000,
    );
    assert_eq!(r.results[0].error_kind.as_deref(), Some("bad-observation"));
    assert_eq!(
        r.results[0].reason.as_deref(),
        Some("the engine returned 2 show observations for 1 show steps")
    );
}

#[test]
fn skipped_scenarios_are_not_passes() {
    let engine = FakeEngine::new().with("s1", Behaviour::Unsupported("needs hardware KVM".into()));
    let r = go(engine, scenarios(2, 0), 1, 10_000);
    assert_eq!(r.results[1].verdict, Verdict::Skipped);
    assert_eq!(r.results[1].reason.as_deref(), Some("needs hardware KVM"));
    assert_eq!(r.summary().passed, 1);
    assert_eq!(r.summary().skipped, 1);
    assert_eq!(r.exit_code(false), EXIT_OK);
    assert_eq!(r.exit_code(true), EXIT_FAILED, "--fail-on-skip");

    let all = FakeEngine::new().with("*", Behaviour::Unsupported("no".into()));
    let r = go(all, scenarios(2, 0), 1, 10_000);
    assert_eq!(
        r.exit_code(false),
        EXIT_NOTHING_RAN,
        "nothing checked is not success"
    );
}

#[test]
fn workers_run_in_parallel_and_results_keep_their_order() {
    let s = scenarios(4, 400);
    let t = Instant::now();
    let r = go(FakeEngine::new(), s.clone(), 4, 10_000);
    let parallel = t.elapsed();
    assert!(
        parallel < Duration::from_millis(1200),
        "4 x 400 ms on 4 workers took {parallel:?}"
    );
    let names: Vec<&str> = r.results.iter().map(|x| x.scenario.name.as_str()).collect();
    assert_eq!(names, ["s0", "s1", "s2", "s3"]);
    assert!(r.results.iter().all(|x| x.verdict == Verdict::Pass));

    let t = Instant::now();
    go(FakeEngine::new(), s, 1, 10_000);
    assert!(
        t.elapsed() >= Duration::from_millis(1600),
        "one worker runs them one by one"
    );
}

#[test]
fn the_engine_trait_is_object_safe_and_named_in_reports() {
    let e: Arc<dyn Engine> = Arc::new(FakeEngine::new());
    let dir = tempfile::tempdir().unwrap();
    let r = run(e, Vec::new(), &options(dir.path(), 2, 1000), &|_| {});
    assert!(r.results.is_empty());
    assert_eq!(
        r.exit_code(false),
        EXIT_OK,
        "an empty shard is not a failure"
    );
    assert!(harness::report::table(&r).starts_with("engine: fake (test double"));
}
