//! The report formats: JUnit XML read back with an XML parser and checked
//! for the structure CI consumers rely on, JSON read back with serde_json,
//! and the table's content.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::engine::fake::{Behaviour, FakeEngine};
use harness::engine::{EngineError, Observation};
use harness::outcome::RunReport;
use harness::report::{json, junit, table};
use harness::runner::{run, RunOptions};
use harness::scenario::load_str;

const SCENARIOS: &str = r#"
[[scenario]]
name = "a/pass"
description = "The bug & its <fix>."
guest = { kernel = "debian-6.1", driver = "prefix" }
device = { features = "-status" }
steps = ["boot", "link-up", "show"]
[[scenario.expect]]
operstate = "UNKNOWN"
carrier-changes = 0

[[scenario]]
name = "b/fail"
guest = { kernel = "debian-6.1" }
device = { features = "-status" }
steps = ["boot", "link-up", { show = "up" }, "reload-driver", "link-up", { show = "again" }]
[[scenario.expect]]
show = "up"
operstate = "UP"
[[scenario.expect]]
show = "again"
operstate = "UNKNOWN"
no-flags = ["LOWER_UP"]

[[scenario]]
name = "c/error"
guest = { kernel = "test" }
steps = ["boot", "show"]
[[scenario.expect]]
operstate = "UP"

[[scenario]]
name = "d/skip"
guest = { kernel = "test" }
steps = ["boot", "show"]
[[scenario.expect]]
operstate = "UP"
"#;

/// A run with one scenario of each verdict; the error's serial tail holds
/// text that is hostile to XML.
fn report() -> RunReport {
    let scenarios = load_str(SCENARIOS, Path::new("scenarios/mixed.toml")).unwrap();
    let stop = EngineError::EmulatorStop {
        instruction: vec![0xf3, 0x0f, 0xb8],
        rip: Some(0xffff_ffff_8100_0000),
        symbol: Some("__sw_hweight64+0x4".into()),
        serial_tail: vec![
            "[   40.1] \u{1b}[1mcolour\u{1b}[0m & <tags> ]]> \"quotes\"".into(),
            "last line".into(),
        ],
    };
    let engine = FakeEngine::new()
        .with("c/error", Behaviour::Fail(stop))
        .with(
            "d/skip",
            Behaviour::Unsupported("needs a guest agent".into()),
        );
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        jobs: 2,
        timeout: Duration::from_secs(30),
        grace: Duration::from_secs(1),
        work_dir: dir.path().to_path_buf(),
    };
    run(Arc::new(engine), scenarios, &options, &|_| {})
}

fn child<'a, 'i>(c: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    c.children().find(|n| n.has_tag_name(tag))
}

fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> has no {name}", n.tag_name().name()))
}

#[test]
fn junit_has_the_structure_ci_reads() {
    let r = report();
    let xml = junit(&r);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    for (k, v) in [
        ("tests", "4"),
        ("failures", "1"),
        ("errors", "1"),
        ("skipped", "1"),
    ] {
        assert_eq!(attr(root, k), v, "testsuites {k}");
    }
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert!(
        attr(suite, "name").contains("fake (test double"),
        "the engine names the suite"
    );
    assert_eq!(attr(suite, "tests"), "4");
    assert!(attr(suite, "time").parse::<f64>().is_ok());
    assert_eq!(attr(suite, "timestamp").len(), "2026-01-01T00:00:00".len());
    let engine_prop = suite
        .descendants()
        .find(|n| n.has_tag_name("property") && n.attribute("name") == Some("engine"))
        .unwrap();
    assert_eq!(attr(engine_prop, "value"), r.engine);

    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| attr(*c, "name")).collect();
    assert_eq!(names, ["a/pass", "b/fail", "c/error", "d/skip"]);
    for c in &cases {
        assert_eq!(attr(*c, "classname"), "mixed");
        assert!(attr(*c, "time").parse::<f64>().is_ok());
        assert_eq!(attr(*c, "file"), "scenarios/mixed.toml");
    }
    let elements = |c: roxmltree::Node| -> Vec<String> {
        c.children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name().to_string())
            .collect()
    };

    // pass: only system-out, with the description (escaped and back) and raw output
    assert_eq!(elements(cases[0]), ["system-out"]);
    let out = child(cases[0], "system-out").unwrap().text().unwrap();
    assert!(out.contains("The bug & its <fix>."), "{out}");
    assert!(out.contains("state UNKNOWN mode DEFAULT"), "{out}");

    // fail: <failure> with the mismatch as message
    assert_eq!(elements(cases[1]), ["failure", "system-out", "system-err"]);
    let f = child(cases[1], "failure").unwrap();
    assert_eq!(attr(f, "type"), "mismatch");
    assert_eq!(
        attr(f, "message"),
        "at again: expected state UNKNOWN, observed state UP; at again: expected lacks LOWER_UP, observed has LOWER_UP"
    );
    let out = child(cases[1], "system-out").unwrap().text().unwrap();
    assert!(
        out.contains("b/fail @ up: expected state UP; observed state UP"),
        "{out}"
    );
    assert!(
        out.contains("--- again (step 5)\n3: eth0:"),
        "the reloaded interface: {out}"
    );

    // error: <error> with the kind, the serial tail made XML-safe
    assert_eq!(elements(cases[2]), ["error", "system-out", "system-err"]);
    let e = child(cases[2], "error").unwrap();
    assert_eq!(attr(e, "type"), "emulator-stop");
    assert!(attr(e, "message")
        .contains("bytes f3 0f b8 at RIP 0xffffffff81000000 in __sw_hweight64+0x4"));
    let err = child(cases[2], "system-err").unwrap().text().unwrap();
    assert_eq!(
        err,
        "[   40.1] \\x1b[1mcolour\\x1b[0m & <tags> ]]> \"quotes\"\nlast line"
    );

    // skipped: <skipped message=reason>, no failure, no error
    assert_eq!(elements(cases[3]), ["skipped", "system-out"]);
    assert_eq!(
        attr(child(cases[3], "skipped").unwrap(), "message"),
        "needs a guest agent"
    );
}

#[test]
fn json_carries_verdicts_views_and_errors() {
    let r = report();
    let v: serde_json::Value = serde_json::from_str(&json(&r, false)).unwrap();
    assert_eq!(v["engine"], r.engine.as_str());
    assert_eq!(
        v["summary"],
        serde_json::json!({"passed": 1, "failed": 1, "errors": 1, "skipped": 1})
    );
    assert_eq!(v["exit_code"], 1);
    assert!(v["started"].as_str().unwrap().ends_with('Z'));
    let cases = v["scenarios"].as_array().unwrap();
    let verdicts: Vec<&str> = cases
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["pass", "fail", "error", "skipped"]);

    let pass = &cases[0];
    assert_eq!(
        pass["guest"],
        serde_json::json!({"kernel": "debian-6.1", "driver": "prefix"})
    );
    assert_eq!(pass["device"]["features"], "-status");
    assert_eq!(
        pass["steps"],
        serde_json::json!(["boot", "link-up", "show"])
    );
    let link = &pass["shows"][0]["link"];
    assert_eq!(link["state"], "UNKNOWN");
    assert_eq!(link["carrier_changes"], 0);
    assert_eq!(link["ifindex"], 2);
    assert_eq!(
        link["flags"],
        serde_json::json!(["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])
    );
    let names = link["features"]["names"].as_array().unwrap();
    assert!(names.contains(&"version_1".into()) && !names.contains(&"status".into()));
    assert!(link["features"]["bits"].as_str().unwrap().starts_with("0x"));
    assert_eq!(
        pass["checks"][0]["items"][0],
        serde_json::json!({"expected": "state UNKNOWN", "observed": "state UNKNOWN", "ok": true})
    );

    let fail = &cases[1];
    assert_eq!(
        fail["steps"][2],
        serde_json::json!({"show": "up"}),
        "steps as the scenario file writes them"
    );
    assert_eq!(fail["checks"][1]["items"][1]["ok"], false);
    assert_eq!(fail["location"]["line"], 12);

    let error = &cases[2];
    assert_eq!(error["error"]["kind"], "emulator-stop");
    assert_eq!(error["error"]["instruction"], "f3 0f b8");
    assert_eq!(error["error"]["rip"], "0xffffffff81000000");
    assert_eq!(error["error"]["symbol"], "__sw_hweight64+0x4");
    assert_eq!(error["serial_tail"][1], "last line");
    assert!(error["shows"].as_array().unwrap().is_empty());

    assert_eq!(cases[3]["reason"], "needs a guest agent");
    assert!(cases[3]["error"].is_null());
}

#[test]
fn the_table_names_the_engine_and_shows_expected_next_to_observed() {
    let r = report();
    let t = table(&r);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], format!("engine: {}", r.engine));
    let header = lines
        .iter()
        .position(|l| l.starts_with("SCENARIO"))
        .unwrap();
    for col in ["EXPECTED", "OBSERVED", "VERDICT", "TIME"] {
        assert!(lines[header].contains(col));
    }
    let row = |prefix: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}\n{t}"))
    };
    let pass = row("a/pass ");
    assert!(
        pass.contains("state UNKNOWN, carrier_changes 0") && pass.contains("PASS"),
        "{pass}"
    );
    let up = row("b/fail @ up ");
    assert!(
        up.contains("PASS"),
        "each checked show step has its own verdict: {up}"
    );
    let again = row("b/fail @ again ");
    assert!(
        again.contains("!state UP") && again.contains("!has LOWER_UP") && again.contains("FAIL"),
        "{again}"
    );
    let err = row("c/error ");
    assert!(
        err.contains("state UP") && err.contains(" - ") && err.contains("ERROR"),
        "{err}"
    );
    assert!(row("d/skip ").contains("SKIPPED"));
    assert!(t.contains("\nERROR c/error (scenarios/mixed.toml:"));
    assert!(t.contains("  serial console, last 2 lines:\n    [   40.1]"));
    assert!(t.contains("\nSKIPPED d/skip (scenarios/mixed.toml:"));
    assert!(t.contains("  needs a guest agent"));
    assert!(t.contains("  observed at again:\n    3: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP>"));
    assert!(
        t.ends_with("result: 1 passed, 2 failed, 1 skipped\n"),
        "{t}"
    );
}

#[test]
fn an_empty_observation_list_reports_cleanly() {
    let o = Observation {
        shows: vec![],
        serial_tail: vec![],
        timing: Default::default(),
        trace: None,
    };
    let s = load_str(SCENARIOS, Path::new("m.toml")).unwrap();
    let r = harness::runner::judge(&s[0], o);
    assert_eq!(r.error_kind.as_deref(), Some("bad-observation"));
}
