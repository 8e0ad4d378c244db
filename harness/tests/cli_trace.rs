//! The binary's kernel call traces end to end on the fake engine (whose
//! traces are simulated from its guest model): `run --trace` in the table
//! and the JSON report, `compare` of two scenarios run now or read back
//! from a report, its exit codes and its usage errors.

mod cli_support;

use std::path::Path;

use cli_support::{harness, out, scenarios_dir};

const NORMAL: &str = "operstate/6.1-prefix/status";
const ABNORMAL: &str = "operstate/6.1-prefix/no-status";

#[test]
fn run_with_a_trace_reports_it_in_the_table_and_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--trace",
            "--filter",
            "operstate/6.1-prefix/*",
        ])
        .arg(scenarios_dir())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("kernel call traces (calls per requested function"),
        "{text}"
    );
    assert!(
        text.contains("untraceable: default_operstate (inlined into rfc2863_policy"),
        "{text}"
    );
    assert!(
        text.contains(&format!("kernel call trace of {ABNORMAL} (5 calls")),
        "{text}"
    );
    assert!(text.contains("netif_carrier_on <- virtnet_probe"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let abnormal = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == ABNORMAL)
        .unwrap();
    assert_eq!(abnormal["trace_request"].as_array().map(Vec::len), Some(13));
    let events = abnormal["trace"]["events"].as_array().unwrap();
    assert_eq!(events[2]["function"], "netif_carrier_on");
    assert_eq!(events[2]["caller"], "virtnet_probe");
    assert_eq!(events[2]["step"], 0);
    assert!(abnormal["trace"]["source"]
        .as_str()
        .unwrap()
        .contains("simulated"));
    let counts = abnormal["trace"]["counts"].as_array().unwrap();
    let rfc = counts
        .iter()
        .find(|c| c["function"] == "rfc2863_policy")
        .unwrap();
    assert_eq!(
        (rfc["calls"].as_u64(), rfc["traced"].as_bool()),
        (Some(0), Some(true))
    );

    // The same, compared from the report, with no run (VNETLAB_ENGINE,
    // set in many CI jobs, is no `--engine` given by mistake).
    let o = harness()
        .args(["compare", NORMAL, ABNORMAL, "--from"])
        .arg(&json)
        .env("VNETLAB_ENGINE", "fake")
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "first divergence: after 2 calls in common, A calls `netif_carrier_off <- \
             virtnet_probe` (call 3, boot): it is missing in B"
        ),
        "{text}"
    );

    // A scenario of the report without a trace: nothing to compare.
    let plain = dir.path().join("plain.json");
    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--filter",
            "operstate/6.1-stock/status",
        ])
        .arg("--json")
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = harness()
        .args(["compare", NORMAL, "operstate/6.1-stock/status", "--from"])
        .arg(&json)
        .arg("--from")
        .arg(&plain)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("did not ask for one"), "{text}");
}

#[test]
fn compare_runs_both_scenarios_and_points_at_the_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    let o = harness()
        .args(["compare", NORMAL, ABNORMAL, "--engine", "fake", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the link watch chain never ran in B"),
        "{text}"
    );
    assert!(text.contains("not compared: default_operstate"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["same"], false);
    assert_eq!(
        v["first_divergence"]["only_a"][0]["call"],
        "netif_carrier_off <- virtnet_probe"
    );

    // A scenario against itself (run twice) agrees; a narrower trace names
    // its functions.
    let o = harness()
        .args([
            "compare",
            NORMAL,
            NORMAL,
            "--engine",
            "fake",
            "--trace=netif_carrier_on,netif_carrier_off",
        ])
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("the traces agree: the same 2 calls"),
        "{text}"
    );
}

/// Only functions traced on both sides are compared: a wider trace on one
/// side is no divergence, and no function in common is nothing to compare.
#[test]
fn compare_only_what_both_sides_traced() {
    let dir = tempfile::tempdir().unwrap();
    let run = |trace: &str, file: &str| {
        let path = dir.path().join(file);
        let o = harness()
            .args(["run", "--engine", "fake", "--filter", NORMAL])
            .arg(trace)
            .arg("--json")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        path
    };
    let narrow = run("--trace=netif_carrier_on", "narrow.json");
    let wide = run("--trace", "wide.json");
    let other = run("--trace=linkwatch_fire_event", "other.json");
    let compare = |a: &Path, b: &Path| {
        harness()
            .args(["compare", NORMAL, NORMAL, "--from"])
            .arg(a)
            .arg("--from")
            .arg(b)
            .output()
            .unwrap()
    };
    let o = compare(&narrow, &wide);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("the traces agree"), "{text}");
    assert!(text.contains("not compared: "), "{text}");
    let o = compare(&narrow, &other);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("no function was traced on both sides"),
        "{text}"
    );
}

#[test]
fn compare_and_trace_usage_errors() {
    for args in [
        vec!["compare", NORMAL, "no/such/scenario", "--engine", "fake"],
        vec![
            "compare",
            NORMAL,
            ABNORMAL,
            "--engine",
            "fake",
            "--trace=not a name",
        ],
        vec![
            "compare",
            NORMAL,
            ABNORMAL,
            "--from",
            "/no/such/report.json",
        ],
        vec!["compare", NORMAL],
        vec!["run", "--engine", "fake", "--trace=a,,b c"],
    ] {
        let o = harness().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
    }
    // A failed run brings no trace back: exit 3, with the reason.
    let o = harness()
        .args(["compare", NORMAL, ABNORMAL, "--engine", "fake"])
        .env("VNETLAB_FAKE_FAULTS", "*no-status=guest-panic")
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("brought no trace back: it is ERROR"),
        "{text}"
    );
}
