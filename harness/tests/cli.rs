//! The `harness` binary end to end: `run` on the shipped scenarios with the
//! engine that runs on any machine (the fake; the real engines have their
//! own tests, `qemu_engine.rs` and `vmm_guest_engine.rs`), exit codes,
//! `--filter`, `--shard`, report files, `list`, and `diff`'s usage and exit
//! codes, `images` (the guest-images command) on an empty cache. The
//! existing `boot` subcommand is checked for its usage only (it
//! needs a kernel and KVM).

mod cli_support;

use cli_support::{harness, out, scenarios_dir};

/// The end-to-end run of every shipped scenario on the fake engine.
#[test]
fn every_shipped_scenario_passes_on_the_fake_engine() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("report.json");
    let o = harness()
        .args(["run", "--engine", "fake", "-j", "2", "--timeout", "60"])
        .arg(scenarios_dir())
        .arg("--junit")
        .arg(&junit)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .starts_with("engine: fake (test double: a simulated virtio_net guest, no VM runs)\n"),
        "{text}"
    );
    assert!(
        stdout.contains("result: 20 passed, 0 failed, 0 skipped"),
        "{text}"
    );
    let bug = stdout
        .lines()
        .find(|l| l.starts_with("operstate/6.1-prefix/no-status "))
        .unwrap();
    assert!(
        bug.contains("state UNKNOWN") && bug.contains("carrier_changes 0") && bug.contains("PASS"),
        "{bug}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("harness: [20/20]"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("tests"), Some("20"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["summary"]["passed"], 20);
}

#[test]
fn a_mismatch_exits_1_and_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        "name = \"wrong\"\nguest = { kernel = \"debian-6.1\" }\ndevice = { features = \"-status\" }\n\
         steps = [\"boot\", \"link-up\", \"show\"]\n[[expect]]\noperstate = \"UNKNOWN\"\n",
    )
    .unwrap();
    let o = harness()
        .args(["run", "--engine", "fake"])
        .arg(&file)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL wrong ("), "{text}");
    assert!(
        text.contains("at show 1: expected state UNKNOWN, observed state UP"),
        "{text}"
    );
    assert!(
        text.contains("result: 0 passed, 1 failed, 0 skipped"),
        "{text}"
    );
    assert!(text.contains("scenario files kept in"), "{text}");
}

#[test]
fn engine_errors_exit_1_and_skips_alone_exit_3() {
    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--filter",
            "operstate/6.1-stock/*",
        ])
        .env("VNETLAB_FAKE_FAULTS", "*/no-status=guest-panic")
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ERROR operstate/6.1-stock/no-status"),
        "{text}"
    );
    assert!(text.contains("the guest kernel panicked"), "{text}");

    let o = harness()
        .args(["run", "--filter", "operstate/6.1-stock/*"])
        .env("VNETLAB_ENGINE", "fake")
        .env("VNETLAB_FAKE_FAULTS", "*=unsupported")
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("result: 0 passed, 0 failed, 2 skipped"),
        "{text}"
    );

    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--fail-on-skip",
            "--filter",
            "operstate/6.1-stock/*",
        ])
        .env("VNETLAB_FAKE_FAULTS", "*/status=unsupported")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}

#[test]
fn usage_errors_exit_2() {
    // an unknown engine is named with the known ones
    let o = harness()
        .args(["run", "--engine", "nonesuch"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        out(&o).contains(
            "no engine is called `nonesuch`; known engines: vmm-guest, vmm-kernel-only, qemu"
        ),
        "{}",
        out(&o)
    );

    let o = harness()
        .args(["run", "--engine", "fake", "--filter", "nothing-like-this"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("no scenario matches --filter nothing-like-this (there are 20)"));

    // A report path that cannot be written is found before anything runs.
    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--filter",
            "operstate/6.1-stock/*",
        ])
        .args(["--junit", "/nonexistent-dir/report.xml"])
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("cannot write the report file /nonexistent-dir/report.xml"),
        "{text}"
    );
    assert!(!text.contains("PASS"), "nothing ran: {text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nguest = { kernel = \"debian-6.1\" }\nsteps = [\"boot\", \"reboot\"]\n",
    )
    .unwrap();
    let o = harness()
        .args(["run", "--engine", "fake"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!("{}:3:18: unknown step `reboot`", bad.display())),
        "{text}"
    );

    let o = harness()
        .args(["run", "--engine", "fake", "--shard", "3/2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("is not a shard"));
    let o = harness()
        .args(["run", "--engine", "fake", "-j", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

fn listed(args: &[&str]) -> Vec<String> {
    let o = harness().arg("list").args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .take_while(|l| !l.is_empty() && !l.contains("scenarios selected"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn list_filters_and_shards_deterministically() {
    let all = listed(&[]);
    assert_eq!(all.len(), 20);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(listed(&["--filter", "prefix"]).len(), 6);
    assert_eq!(
        listed(&["--filter", "operstate/*/no-status", "--filter", "reload"]),
        [
            "operstate/6.1-prefix/no-status",
            "operstate/6.1-stock/no-status",
            "operstate/6.12-stock/no-status",
            "operstate/test-prefix/no-status",
            "operstate/test-stock/no-status",
            "reload/6.1-prefix/no-status",
            "reload/6.1-stock/no-status",
            "reload/test-prefix/no-status",
            "reload/test-stock/no-status",
        ]
    );
    let mut union = Vec::new();
    for i in 1..=3 {
        let part = listed(&["--shard", &format!("{i}/3")]);
        assert_eq!(
            part,
            listed(&["--shard", &format!("{i}/3")]),
            "same shard twice"
        );
        assert!(part.len() == 6 || part.len() == 7);
        union.extend(part);
    }
    union.sort();
    assert_eq!(union, all, "the shards partition the scenarios");

    let o = harness().arg("list").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let engines = stdout.split("engines:\n").nth(1).unwrap_or_default();
    let has_engine = |name: &str, text: &str| {
        engines.lines().any(|l| {
            l.split_whitespace().next() == Some(name) && l.contains(text) && l.starts_with("  ")
        })
    };
    assert!(has_engine("fake", "TEST DOUBLE"), "{stdout}");
    assert!(has_engine("qemu", "virtio-net-pci"), "{stdout}");
    assert!(has_engine("vmm-kernel-only", "test kernel"), "{stdout}");
}

#[test]
fn an_empty_shard_is_not_a_failure() {
    let o = harness()
        .args([
            "run",
            "--engine",
            "fake",
            "--filter",
            "features/6.1-stock/default",
            "--shard",
            "2/2",
        ])
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("this shard holds no scenario"), "{text}");
}

#[test]
fn boot_is_still_there() {
    let o = harness().args(["boot", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--series"));
}

/// `harness images` is the `guest-images` command: the same subcommands,
/// and the same clear error on a cache nothing was built into.
#[test]
fn images_is_the_guest_images_command() {
    let o = harness().args(["images", "--help"]).output().unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for sub in ["build", "kernel-only", "verify", "manifest", "path"] {
        assert!(text.contains(&format!("  {sub} ")), "{sub}: {text}");
    }
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["images", "verify"][..],
        &["images", "path", "6.1/stock/vmlinux"],
    ] {
        let o = harness()
            .args(args)
            .arg("--cache-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let text = out(&o);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(
            text.contains("nothing was built into this cache yet (run `guest-images build`"),
            "{text}"
        );
    }
}

#[test]
fn diff_compares_two_engines() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("diff.json");
    let o = harness()
        .args([
            "diff",
            "--engines",
            "fake,fake",
            "--filter",
            "features/6.1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("2 scenarios compared, 0 differ"), "{text}");
    assert!(text.contains("no guest-visible differences"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["compared"], 2);
    assert_eq!(v["differences"].as_array().map(Vec::len), Some(0));

    // Everything skipped on one side: nothing compared.
    let o = harness()
        .args(["diff", "--engines", "fake,fake", "--filter", "features/6.1"])
        .env("VNETLAB_FAKE_FAULTS", "*=unsupported")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));

    for bad in [["--engines", "fake"], ["--engines", "fake,bochs"]] {
        let o = harness().arg("diff").args(bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    }
}
