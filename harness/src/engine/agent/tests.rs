//! Tests of the step translation, the session loop and the reading of real
//! agent transcripts (`tests/fixtures/agent/`).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::link::Operstate;
use crate::scenario::{load_file, load_str};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn fixture(name: &str) -> String {
    let path = Path::new(MANIFEST).join("tests/fixtures/agent").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A shipped scenario, by name.
fn shipped(file: &str, name: &str) -> Scenario {
    let path = Path::new(MANIFEST).join("../scenarios").join(file);
    load_file(&path)
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name} in {file}"))
}

/// A scenario on Debian 6.1 with `features` and `steps` (TOML array body).
fn scenario(features: &str, steps: &str) -> Scenario {
    let text = format!(
        "name = \"t\"\nguest = {{ kernel = \"debian-6.1\" }}\n\
         device = {{ features = \"{features}\" }}\nsteps = [{steps}]\n\
         [[expect]]\noperstate = \"UP\"\n"
    );
    load_str(&text, Path::new("t.toml")).unwrap().remove(0)
}

fn plan_of(s: &Scenario) -> AgentPlan {
    AgentPlan::new(s, net_config(s).unwrap().features).unwrap()
}

fn session(console: &str, end: End) -> Session {
    Session {
        console: console.to_string(),
        boot: Some(Duration::from_secs(2)),
        step_ends: HashMap::new(),
        end,
    }
}

fn ctx() -> RunContext {
    RunContext::new(Duration::from_secs(60), std::env::temp_dir())
}

/// Observes `console` (a whole fixture) for `s`, after checking that the
/// fixture's agent ran exactly the commands this translation gives.
fn observe_fixture(s: &Scenario, name: &str) -> Result<Observation, EngineError> {
    let console = fixture(name);
    let plan = plan_of(s);
    let ran: Vec<String> = Transcript::parse(&console)
        .steps
        .into_iter()
        .map(|r| r.command)
        .collect();
    let planned: Vec<String> = plan.steps.iter().map(|p| p.command.clone()).collect();
    assert_eq!(
        ran[..],
        planned[..ran.len().min(planned.len())],
        "{name} ran other commands"
    );
    observe(&plan, s, &session(&console, End::Exited(Ok(()))), &ctx())
}

#[test]
fn every_step_translates_as_documented() {
    let t = |s: Step| translate(&s);
    assert_eq!(t(Step::Boot), None);
    assert_eq!(
        t(Step::LinkUp),
        Some(("ip link set eth0 up".into(), Action::Guest))
    );
    assert_eq!(
        t(Step::Show { label: None }),
        Some(("show_link eth0".into(), Action::Show))
    );
    assert_eq!(
        t(Step::Wait(Duration::from_millis(1500))),
        Some(("usleep 1500000".into(), Action::Guest))
    );
    assert_eq!(
        t(Step::ReloadDriver),
        Some(("reload_virtio_net eth0".into(), Action::Guest))
    );
    assert_eq!(
        t(Step::DeviceLink(LinkState::Down)),
        Some((
            "wait_carrier eth0 0 30".into(),
            Action::DeviceLink { up: false }
        ))
    );
    assert_eq!(
        t(Step::DeviceLink(LinkState::Up)),
        Some((
            "wait_carrier eth0 1 30".into(),
            Action::DeviceLink { up: true }
        ))
    );
}

#[test]
fn plans_number_agent_steps_from_one_without_boot() {
    let s = shipped("link-flap.toml", "flap/6.1-stock/status");
    let plan = plan_of(&s);
    assert_eq!(plan.steps.len(), s.steps.len() - 1);
    assert_eq!(plan.step(0), None);
    assert_eq!(plan.step(1).unwrap().scenario_step, 1);
    // With boot first, agent step n carries out scenario step n.
    assert_eq!(
        plan.step(4).unwrap().action,
        Action::DeviceLink { up: false }
    );
    assert_eq!(plan.step(4).unwrap().scenario_step, 4);
    assert_eq!(
        plan.step(7).unwrap().action,
        Action::DeviceLink { up: true }
    );
    assert_eq!(plan.step(10), None);
    assert_eq!(plan.step_timeout, Duration::from_secs(60));
    let config = plan.agent_config(Duration::from_secs(290), PowerOff::Poweroff, true);
    assert_eq!(config.timeout_secs, 290);
    assert_eq!(config.steps[0], "ip link set eth0 up");
    assert!(config.cmdline().len() < 400, "{}", config.cmdline());
    // A long wait raises the step deadline past it.
    let long = scenario("+status", "\"boot\", { wait = \"2m\" }, \"show\"");
    assert_eq!(plan_of(&long).step_timeout, Duration::from_secs(150));
}

#[test]
fn a_link_change_needs_status_in_the_offer() {
    let s = scenario(
        "-status",
        "\"boot\", \"link-up\", { device-link = \"down\" }, \"show\"",
    );
    let e = AgentPlan::new(&s, net_config(&s).unwrap().features).unwrap_err();
    match e {
        EngineError::StepFailed {
            step, what, detail, ..
        } => {
            assert_eq!((step, what.as_str()), (2, "device-link down"));
            assert!(detail.contains("VIRTIO_NET_F_STATUS"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_offer_follows_the_vmm_net_option() {
    let s = scenario("-mrg_rxbuf", "\"boot\", \"show\"");
    let net = net_config(&s).unwrap();
    assert!(!has(net.features, 15) && has(net.features, 16));
    let mut s = scenario("+status", "\"boot\", \"show\"");
    s.device.mtu = Some(9000);
    let net = net_config(&s).unwrap();
    assert!(has(net.features, 3), "an mtu offers VIRTIO_NET_F_MTU");
    assert_eq!(net.mtu, Some(9000));
    s.device.features = "+stattus".into();
    assert!(net_config(&s).unwrap_err().contains("unknown feature"));
}

#[test]
fn overlong_command_lines_are_refused() {
    assert!(check_cmdline(&"x".repeat(2047)).is_ok());
    let e = check_cmdline(&"x".repeat(2048)).unwrap_err();
    assert!(e.to_string().contains("2048 bytes"), "{e}");
}

#[test]
fn show_output_splits_into_ip_link_and_sysfs() {
    let lines: Vec<String> = [
        "2: eth0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc fq_codel state DOWN mode DEFAULT group default qlen 1000",
        "    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff",
        "sysfs:operstate=down",
        "sysfs:carrier=",
        "sysfs:carrier_changes=3",
        "sysfs:features=",
        "sysfs:other=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = show_capture(&lines);
    assert_eq!(c.ip_link.lines().count(), 2);
    assert_eq!(c.operstate.as_deref(), Some("down"));
    assert_eq!((&c.carrier, &c.features), (&None, &None));
    assert_eq!(c.carrier_changes.as_deref(), Some("3"));
    let v = c.view(IFACE).unwrap();
    assert_eq!(v.state, Some(Operstate::Down));
    assert_eq!(v.carrier, Some(false), "NO-CARRIER decides without sysfs");
}

#[test]
fn the_bug_transcript_reads_as_unknown() {
    let s = shipped("operstate.toml", "operstate/6.1-prefix/no-status");
    let o = observe_fixture(&s, "ok-operstate-6.1-prefix-no-status.txt").unwrap();
    assert_eq!(o.shows.len(), 1);
    let show = &o.shows[0];
    assert_eq!(show.step, 3);
    let l = &show.link;
    assert_eq!(l.state, Some(Operstate::Unknown));
    assert_eq!((l.carrier, l.carrier_changes), (Some(true), Some(0)));
    assert_eq!(l.flags, ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]);
    assert_eq!(l.mac.as_deref(), Some("52:54:00:12:34:56"));
    let f = l.features.unwrap();
    assert!(has(f, 32) && has(f, 5) && !has(f, 16), "{f:#x}");
    assert!(show.raw.contains("sysfs:operstate=unknown"));
}

#[test]
fn the_flap_transcript_reads_as_up_down_up() {
    let s = shipped("link-flap.toml", "flap/6.1-stock/status");
    let o = observe_fixture(&s, "ok-flap-6.1-stock-status.txt").unwrap();
    let seen: Vec<_> = o
        .shows
        .iter()
        .map(|s| {
            (
                s.link.state,
                s.link.has_flag("NO-CARRIER"),
                s.link.carrier_changes,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some(Operstate::Up), false, Some(2)),
            (Some(Operstate::Down), true, Some(3)),
            (Some(Operstate::Up), false, Some(4)),
        ]
    );
    assert_eq!(
        o.shows.iter().map(|s| s.step).collect::<Vec<_>>(),
        [3, 6, 9]
    );
}

#[test]
fn the_reload_transcript_shows_a_new_interface() {
    let s = shipped("reload.toml", "reload/6.1-prefix/no-status");
    let o = observe_fixture(&s, "ok-reload-6.1-prefix-no-status.txt").unwrap();
    let views: Vec<_> = o
        .shows
        .iter()
        .map(|s| (s.link.ifindex, s.link.state, s.link.carrier_changes))
        .collect();
    assert_eq!(
        views,
        [
            (2, Some(Operstate::Unknown), Some(0)),
            (3, Some(Operstate::Unknown), Some(0)),
        ]
    );
}

#[test]
fn the_features_transcript_lacks_mrg_rxbuf() {
    let s = shipped("features.toml", "features/6.1-stock/no-mrg-rxbuf");
    let o = observe_fixture(&s, "ok-features-6.1-stock-no-mrg-rxbuf.txt").unwrap();
    let f = o.shows[0].link.features.unwrap();
    assert!(!has(f, 15) && has(f, 16) && has(f, 32), "{f:#x}");
}

fn step_failed(e: EngineError) -> (usize, String, String) {
    match e {
        EngineError::StepFailed {
            step, what, detail, ..
        } => (step, what, detail),
        other => panic!("not a step failure: {other:?}"),
    }
}

#[test]
fn a_failing_step_is_reported_with_its_output() {
    let s = scenario("+status", "\"boot\", \"link-up\", \"show\"");
    let (step, what, detail) = step_failed(observe_fixture(&s, "fail-no-eth0.txt").unwrap_err());
    assert_eq!((step, what.as_str()), (1, "link-up"));
    assert!(detail.contains("exited with status 1"), "{detail}");
    assert!(detail.contains("Cannot find device \"eth0\""), "{detail}");

    let s = scenario(
        "+status",
        "\"boot\", \"link-up\", { device-link = \"down\" }, \"show\"",
    );
    let (step, what, detail) =
        step_failed(observe_fixture(&s, "fail-wait-carrier.txt").unwrap_err());
    assert_eq!((step, what.as_str()), (2, "device-link down"));
    assert!(detail.contains("is 1, not 0"), "{detail}");
}

#[test]
fn a_step_past_the_agent_deadline_is_a_step_failure() {
    let s = scenario(
        "+status",
        "\"boot\", \"link-up\", { wait = \"10s\" }, \"show\"",
    );
    let (step, what, detail) =
        step_failed(observe_fixture(&s, "fail-step-timeout.txt").unwrap_err());
    assert_eq!((step, what.as_str()), (2, "wait 10s"));
    assert!(
        detail.starts_with("killed at the agent's step deadline"),
        "{detail}"
    );
}

#[test]
fn the_watchdog_is_a_timeout() {
    let s = scenario(
        "+status",
        "\"boot\", \"link-up\", { wait = \"30s\" }, \"show\"",
    );
    let e = observe_fixture(&s, "fail-watchdog.txt").unwrap_err();
    assert_eq!(e.kind(), "timed-out", "{e}");
}

#[test]
fn a_panic_wins_over_everything() {
    let s = scenario("+status", "\"boot\", \"link-up\", \"show\"");
    let console = fixture("fail-panic.txt");
    let plan = plan_of(&s);
    for end in [End::Exited(Ok(())), End::Stopped] {
        match observe(&plan, &s, &session(&console, end), &ctx()).unwrap_err() {
            EngineError::GuestPanic { message, .. } => {
                assert_eq!(message, "Kernel panic - not syncing: sysrq triggered crash")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn host_side_endings_come_before_the_transcript() {
    let s = shipped("link-flap.toml", "flap/6.1-stock/status");
    let plan = plan_of(&s);
    let console = fixture("ok-flap-6.1-stock-status.txt");
    let failed = End::LinkFailed {
        n: 4,
        detail: "setting the link down failed: gone".into(),
    };
    let (step, what, _) =
        step_failed(observe(&plan, &s, &session(&console, failed), &ctx()).unwrap_err());
    assert_eq!((step, what.as_str()), (4, "device-link down"));
    let e = observe(&plan, &s, &session(&console, End::Stopped), &ctx()).unwrap_err();
    assert_eq!(e.kind(), "timed-out");
    let crash = EngineError::VmmCrash {
        detail: "QEMU exited with exit status: 1".into(),
        serial_tail: vec![],
    };
    let e = observe(
        &plan,
        &s,
        &session(&console, End::Exited(Err(crash.clone()))),
        &ctx(),
    )
    .unwrap_err();
    assert_eq!(e, crash);
}

#[test]
fn a_console_without_the_agent_says_so() {
    let s = scenario("+status", "\"boot\", \"show\"");
    let plan = plan_of(&s);
    let e = observe(
        &plan,
        &s,
        &session("[ 0.0] Linux version 6.1\n", End::Exited(Ok(()))),
        &ctx(),
    )
    .unwrap_err();
    let (step, what, detail) = step_failed(e);
    assert_eq!((step, what.as_str()), (0, "boot"));
    assert!(detail.contains("never started"), "{detail}");
    // A guest that ended in the middle of a step, without the watchdog.
    let cut =
        "@@VNETLAB@@ AGENT START version=1\n@@VNETLAB@@ STEP 1 BEGIN t=1 cmd=show_link%20eth0\n";
    let (step, _, detail) =
        step_failed(observe(&plan, &s, &session(cut, End::Exited(Ok(()))), &ctx()).unwrap_err());
    assert_eq!(step, 1);
    assert!(detail.contains("never finished"), "{detail}");
}

/// A machine the session loop drives in tests.
#[derive(Default)]
struct FakeMachine {
    links: Vec<bool>,
    refuse: bool,
    ended: bool,
    killed: bool,
}

impl Machine for FakeMachine {
    fn set_link(&mut self, up: bool) -> Result<(), String> {
        self.links.push(up);
        if self.refuse {
            Err("no such device".into())
        } else {
            Ok(())
        }
    }
    fn poll_end(&mut self) -> Option<Result<(), EngineError>> {
        self.ended.then_some(Ok(()))
    }
    fn kill(&mut self) {
        self.killed = true;
    }
}

#[test]
fn the_session_sets_the_link_when_the_step_begins() {
    let s = shipped("link-flap.toml", "flap/6.1-stock/status");
    let plan = plan_of(&s);
    let console = fixture("ok-flap-6.1-stock-status.txt");
    let (tx, rx) = mpsc::channel();
    // Odd-sized chunks: lines arrive split.
    for chunk in console.as_bytes().chunks(7) {
        tx.send(chunk.to_vec()).unwrap();
    }
    drop(tx);
    let mut m = FakeMachine {
        ended: true,
        ..FakeMachine::default()
    };
    // The machine has ended from the start: the loop still reads the
    // whole console before it stops.
    let ctx = ctx();
    let out = drive(&plan, &ctx, &rx, &mut m);
    assert!(matches!(out.end, End::Exited(Ok(()))));
    assert_eq!(out.console, console);
    assert!(out.boot.is_some());
    assert_eq!(out.step_ends.len(), 9);
    assert!(ctx.serial.lines().last().unwrap().contains("Power down"));
    // Links are only set while the machine runs: replay with one that runs.
    let (tx, rx) = mpsc::channel();
    tx.send(console.into_bytes()).unwrap();
    let mut m = FakeMachine::default();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(tx);
    });
    let ctx2 = RunContext::new(Duration::from_secs(1), std::env::temp_dir());
    let out = drive(&plan, &ctx2, &rx, &mut m);
    handle.join().unwrap();
    assert_eq!(m.links, [false, true]);
    assert!(matches!(out.end, End::Stopped), "{:?}", out.end);
    assert!(m.killed);
}

#[test]
fn a_refused_link_change_ends_the_session() {
    let s = shipped("link-flap.toml", "flap/6.1-stock/status");
    let plan = plan_of(&s);
    let (tx, rx) = mpsc::channel();
    tx.send(fixture("ok-flap-6.1-stock-status.txt").into_bytes())
        .unwrap();
    let mut m = FakeMachine {
        refuse: true,
        ..FakeMachine::default()
    };
    let out = drive(&plan, &ctx(), &rx, &mut m);
    drop(tx);
    match out.end {
        End::LinkFailed { n, detail } => {
            assert_eq!(n, 4);
            assert_eq!(detail, "setting the link down failed: no such device");
        }
        other => panic!("{other:?}"),
    }
    assert!(m.killed);
    assert_eq!(m.links, [false]);
}
