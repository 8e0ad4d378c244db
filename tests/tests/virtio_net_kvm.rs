//! Our virtio-net device on KVM, driven by a tiny bare-metal driver (the C
//! guest `virtio_net_probe`): it finds the device on PCI (configuration
//! mechanism #1, virtio capabilities) or on virtio-mmio, negotiates
//! features, sets FEATURES_OK and DRIVER_OK, and reads the config `status`
//! field; the tests check what it saw, for STATUS offered and not offered,
//! a refused FEATURES_OK, and a link-down sent through the control socket
//! while the guest polls.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::virtio::net::NetConfig;
use testkit::suite::{ensure, Failed, Need, Suite};
use vmm::{Outcome, SerialTarget, VmConfig, Vmm};

const STATUS_BIT: u64 = 1 << 16;
const MMIO_BASE: u64 = 0xd000_0000;

/// Serial output shared with the test thread.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The `probe: key=value ...` observations, by key.
fn observations(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("probe: "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn hex(obs: &HashMap<String, String>, key: &str) -> Result<u64, Failed> {
    let v = obs
        .get(key)
        .ok_or_else(|| format!("the probe did not report `{key}`: {obs:?}"))?;
    Ok(u64::from_str_radix(v.trim_start_matches("0x"), 16)
        .map_err(|_| format!("`{key}={v}` is not hex"))?)
}

struct Run {
    console: Console,
    outcome: Outcome,
    events: String,
}

fn probe_guest() -> Result<PathBuf, Failed> {
    Ok(testkit::guest::virtio_net_probe()?)
}

fn probe_need() -> Need {
    Need::Custom {
        name: "c-guest",
        check: Arc::new(|| testkit::guest::virtio_net_probe().map(drop)),
    }
}

/// Boots the probe with one device `net` and the probe arguments `args`;
/// `during` runs on the test thread while the VM runs.
fn run_probe(
    net: &str,
    args: &str,
    dir: &Path,
    during: impl FnOnce(&Console, &Path) -> Result<(), Failed>,
) -> Result<Run, Failed> {
    let console = Console::default();
    let events = dir.join("events.jsonl");
    let socket = dir.join("ctl.sock");
    let transport = if net.contains("transport=mmio") {
        "mmio"
    } else {
        "pci"
    };
    let mut config = VmConfig::new(probe_guest()?);
    config.memory_mib = 64;
    config.cmdline = format!("transport={transport} mmio={MMIO_BASE:#x} {args}");
    config.serial = SerialTarget::Writer(Box::new(console.clone()));
    config.timeout = Some(Duration::from_secs(60));
    config.nets = vec![NetConfig::parse(net)?];
    config.event_log = Some(events.clone());
    config.control_socket = Some(socket.clone());
    let vm = Vmm::new(config)?;
    let stopper = vm.stopper();
    let runner = std::thread::spawn(move || vm.run());
    let during_result = during(&console, &socket);
    if during_result.is_err() {
        stopper.stop();
    }
    let outcome = runner.join().map_err(|_| "the VMM thread panicked")??;
    during_result?;
    Ok(Run {
        console,
        outcome,
        events: std::fs::read_to_string(&events)?,
    })
}

fn nothing(_: &Console, _: &Path) -> Result<(), Failed> {
    Ok(())
}

/// Negotiation and config space as the driver sees them.
fn negotiate(transport: &'static str, status: bool) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let sign = if status { '+' } else { '-' };
    let net = format!("transport={transport},features={sign}status");
    let run = run_probe(&net, "", dir.path(), nothing)?;
    let text = run.console.text();
    ensure(run.outcome == Outcome::DebugExit(0), || {
        format!("the probe failed ({}):\n{text}", run.outcome)
    })?;
    let obs = observations(&text);
    let offered = hex(&obs, "offered")?;
    let acked = hex(&obs, "acked")?;
    ensure((offered & STATUS_BIT != 0) == status, || {
        format!(
            "STATUS offered is {}, wanted {status}: {offered:#x}",
            offered & STATUS_BIT != 0
        )
    })?;
    ensure(acked == offered, || {
        format!("acked {acked:#x} != offered {offered:#x}")
    })?;
    ensure(hex(&obs, "features_ok")? == 1, || {
        "FEATURES_OK was refused".into()
    })?;
    ensure(hex(&obs, "device_status")? == 0xf, || {
        format!("device status after DRIVER_OK: {text}")
    })?;
    ensure(
        obs.get("mac").map(String::as_str) == Some("52:54:00:12:34:56"),
        || format!("mac: {obs:?}"),
    )?;
    // With STATUS the field says LINK_UP; without it the field is absent
    // and reads as zero.
    let link = hex(&obs, "link_status")?;
    ensure(link == u64::from(status), || {
        format!("link_status {link:#x}")
    })?;
    if transport == "pci" {
        ensure(text.contains("pci device 1af4:1041 at 00:03.0"), || {
            format!("not at 00:03.0: {text}")
        })?;
    }
    // The event log has the whole status sequence.
    for step in [
        "\"set\":[\"ACKNOWLEDGE\"]",
        "\"set\":[\"FEATURES_OK\"]",
        "\"set\":[\"DRIVER_OK\"]",
    ] {
        ensure(run.events.contains(step), || {
            format!("the event log lacks {step}:\n{}", run.events)
        })?;
    }
    Ok(())
}

/// A driver that acks only a subset: the device runs with exactly that.
fn acks_a_subset(transport: &'static str) -> Result<(), Failed> {
    const MRG_RXBUF: u64 = 1 << 15;
    let dir = tempfile::tempdir()?;
    let want = !MRG_RXBUF;
    let run = run_probe(
        &format!("transport={transport}"),
        &format!("want={want:#x}"),
        dir.path(),
        nothing,
    )?;
    let text = run.console.text();
    let obs = observations(&text);
    let (offered, acked) = (hex(&obs, "offered")?, hex(&obs, "acked")?);
    ensure(offered & MRG_RXBUF != 0 && acked == offered & want, || {
        format!("offered {offered:#x}, acked {acked:#x}")
    })?;
    ensure(hex(&obs, "features_ok")? == 1, || text.clone())?;
    // The device's own record of the negotiation agrees.
    let acked_event = run
        .events
        .lines()
        .find(|l| l.contains("\"event\":\"features_acked\""))
        .ok_or_else(|| format!("no features_acked event:\n{}", run.events))?;
    let event: serde_json::Value = serde_json::from_str(acked_event)?;
    ensure(event["acked"]["value"] == acked, || acked_event.to_owned())?;
    let names = event["acked"]["names"].to_string();
    ensure(
        !names.contains("mrg_rxbuf") && names.contains("status"),
        || names.clone(),
    )
}

/// A driver that acks a bit the device did not offer gets FEATURES_OK
/// refused.
fn features_ok_refused(transport: &'static str) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let net = format!("transport={transport},features=-status");
    let run = run_probe(&net, &format!("extra={STATUS_BIT:#x}"), dir.path(), nothing)?;
    let text = run.console.text();
    let obs = observations(&text);
    ensure(hex(&obs, "acked")? & STATUS_BIT != 0, || {
        "the probe acked STATUS".into()
    })?;
    ensure(hex(&obs, "features_ok")? == 0, || {
        format!("FEATURES_OK accepted an unoffered bit:\n{text}")
    })?;
    ensure(run.outcome == Outcome::DebugExit(2), || {
        format!(
            "the probe should stop with 2 after the refusal: {}",
            run.outcome
        )
    })
}

/// The link goes down through the control socket while the guest polls:
/// the config field changes, a configuration interrupt is raised (ISR bit
/// 1 / InterruptStatus bit 1) and the generation moves.
fn link_down_while_polling(transport: &'static str) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let net = format!("transport={transport}");
    let answer = Arc::new(Mutex::new(None));
    let answer_in = answer.clone();
    let run = run_probe(
        &net,
        "wait-link-down",
        dir.path(),
        move |console, socket| {
            let deadline = Instant::now() + Duration::from_secs(50);
            while !console.text().contains("probe: polling link") {
                ensure(Instant::now() < deadline, || {
                    format!("the guest never started polling:\n{}", console.text())
                })?;
                std::thread::sleep(Duration::from_millis(10));
            }
            *answer_in.lock().map_err(|_| "poisoned")? =
                Some(vmm::control::request(socket, "link down")?);
            Ok(())
        },
    )?;
    let text = run.console.text();
    let answer = answer.lock().map_err(|_| "poisoned")?.clone();
    let answer = answer.ok_or("no answer from the control socket")?;
    ensure(
        answer["ok"] == true && answer["guest_notified"] == true,
        || format!("control answer: {answer}"),
    )?;
    ensure(run.outcome == Outcome::DebugExit(0), || {
        format!("the probe failed ({}):\n{text}", run.outcome)
    })?;
    let down = text
        .lines()
        .find(|l| l.starts_with("probe: link down"))
        .ok_or_else(|| format!("the guest never saw the link go down:\n{text}"))?;
    let obs = observations(down);
    ensure(hex(&obs, "link_status")? == 0, || down.to_owned())?;
    ensure(hex(&obs, "isr")? & 0x2 != 0, || {
        format!("no configuration interrupt pending: {down}")
    })?;
    ensure(hex(&obs, "generation")? == 1, || {
        format!("generation: {down}")
    })?;
    ensure(run.events.contains("\"event\":\"link_change\""), || {
        format!("the event log lacks the link change:\n{}", run.events)
    })
}

/// The configuration interrupt of a link change, taken for real by the
/// guest (IDT, local APIC, IO-APIC or MSI-X): exactly one arrives.
fn link_down_interrupt(transport: &'static str, irq: &'static str) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    // The first device gets interrupt line 5 (see vmm::netdev).
    let args = format!("wait-link-down irq={irq} gsi=5");
    let run = run_probe(
        &format!("transport={transport}"),
        &args,
        dir.path(),
        |console, socket| {
            let deadline = Instant::now() + Duration::from_secs(50);
            while !console.text().contains("probe: polling link") {
                ensure(Instant::now() < deadline, || {
                    format!("the guest never started polling:\n{}", console.text())
                })?;
                std::thread::sleep(Duration::from_millis(10));
            }
            let answer = vmm::control::request(socket, "link down")?;
            ensure(answer["guest_notified"] == true, || answer.to_string())
        },
    )?;
    let text = run.console.text();
    ensure(run.outcome == Outcome::DebugExit(0), || {
        format!("the probe failed ({}):\n{text}", run.outcome)
    })?;
    ensure(text.contains(&format!("probe: interrupts={irq}\n")), || {
        text.clone()
    })?;
    let line = text
        .lines()
        .find(|l| l.starts_with("probe: irqs="))
        .ok_or_else(|| format!("no interrupt report:\n{text}"))?;
    let obs = observations(line);
    ensure(hex(&obs, "irqs")? == 1, || {
        format!("exactly one interrupt: {line}")
    })?;
    ensure(hex(&obs, "other_irqs")? == 0, || {
        format!("no stray vectors: {line}")
    })?;
    // The ISR says "configuration change" when the handler reads it, with
    // MSI-X too: the device sets that bit before any configuration change
    // notification (virtio 1.2 section 4.1.4.5.1); only the queue bit is
    // left out under MSI-X.
    let isr = hex(&obs, "handler_isr")?;
    ensure(isr == 2, || format!("ISR in the handler ({irq}): {line}"))
}

/// Without STATUS the control socket says the guest cannot be told.
fn link_change_without_status() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let answer = Arc::new(Mutex::new(None));
    let answer_in = answer.clone();
    let run = run_probe(
        "transport=pci,features=-status",
        "hold",
        dir.path(),
        move |console, socket| {
            let deadline = Instant::now() + Duration::from_secs(50);
            while !console.text().contains("probe: holding") {
                ensure(Instant::now() < deadline, || {
                    "the guest never got there".into()
                })?;
                std::thread::sleep(Duration::from_millis(10));
            }
            *answer_in.lock().map_err(|_| "poisoned")? =
                Some(vmm::control::request(socket, "link down")?);
            vmm::control::request(socket, "quit")?;
            Ok(())
        },
    )?;
    ensure(run.outcome == Outcome::Stopped, || {
        format!("`quit` should stop the VM: {}", run.outcome)
    })?;
    let answer = answer.lock().map_err(|_| "poisoned")?.clone();
    let answer = answer.ok_or("no answer")?;
    ensure(answer["ok"] == false, || format!("answer: {answer}"))?;
    let error = answer["error"].as_str().unwrap_or_default();
    ensure(
        error.contains("VIRTIO_NET_F_STATUS") && error.contains("cannot be told"),
        || format!("answer: {answer}"),
    )
}

fn main() {
    let needs = [Need::Kvm, probe_need()];
    let mut suite = Suite::new();
    for transport in ["pci", "mmio"] {
        for status in [true, false] {
            let name = format!(
                "{transport}_negotiation_status_{}",
                if status { "offered" } else { "not_offered" }
            );
            suite.test(&name, &needs, move || negotiate(transport, status));
        }
        suite.test(
            &format!("{transport}_features_ok_refused"),
            &needs,
            move || features_ok_refused(transport),
        );
        suite.test(
            &format!("{transport}_link_down_while_polling"),
            &needs,
            move || link_down_while_polling(transport),
        );
        suite.test(&format!("{transport}_acks_a_subset"), &needs, move || {
            acks_a_subset(transport)
        });
    }
    for (transport, irq) in [("pci", "msix"), ("pci", "intx"), ("mmio", "line")] {
        suite.test(
            &format!("{transport}_link_down_interrupt_{irq}"),
            &needs,
            move || link_down_interrupt(transport, irq),
        );
    }
    suite.test(
        "link_change_without_status",
        &needs,
        link_change_without_status,
    );
    suite.run()
}
