//! The built-in probe's command-line protocol (`vnetlab.probe=` steps) and a
//! parser for the lines it prints on the serial console, as documented in
//! `guest-images/kernel-only/README.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the line protocol the probe prints in its `BEGIN` line.
pub const PROTOCOL: u32 = 1;
/// What the probe puts before each of its lines (after the printk timestamp).
pub const LINE_MARKER: &str = "vnetlab: ";
/// Longest wait or sleep a step accepts, in milliseconds.
pub const MAX_WAIT_MS: u32 = 600_000;
/// Most steps one run accepts.
pub const MAX_STEPS: usize = 64;
/// Probe exit status when the step list is invalid (nothing ran).
pub const EXIT_BAD_STEPS: u8 = 120;
/// Probe exit status when the watchdog (`vnetlab.timeout`) ended the run.
pub const EXIT_WATCHDOG: u8 = 121;
/// Probe exit status when the probe ran out of memory.
pub const EXIT_NO_MEMORY: u8 = 122;
/// Highest exit status that numbers the first failed step.
pub const EXIT_MAX_STEP: u8 = 99;

/// An interface operational state (`IF_OPER_*`), named as iproute2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OperState {
    /// `IF_OPER_UNKNOWN` (0).
    Unknown,
    /// `IF_OPER_NOTPRESENT` (1).
    NotPresent,
    /// `IF_OPER_DOWN` (2).
    Down,
    /// `IF_OPER_LOWERLAYERDOWN` (3).
    LowerLayerDown,
    /// `IF_OPER_TESTING` (4).
    Testing,
    /// `IF_OPER_DORMANT` (5).
    Dormant,
    /// `IF_OPER_UP` (6).
    Up,
}

impl OperState {
    /// Every state, in `IF_OPER_*` order.
    pub const ALL: [OperState; 7] = [
        OperState::Unknown,
        OperState::NotPresent,
        OperState::Down,
        OperState::LowerLayerDown,
        OperState::Testing,
        OperState::Dormant,
        OperState::Up,
    ];

    /// The name `ip link` prints after `state`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperState::Unknown => "UNKNOWN",
            OperState::NotPresent => "NOTPRESENT",
            OperState::Down => "DOWN",
            OperState::LowerLayerDown => "LOWERLAYERDOWN",
            OperState::Testing => "TESTING",
            OperState::Dormant => "DORMANT",
            OperState::Up => "UP",
        }
    }

    /// The state with kernel number `n`.
    pub fn from_index(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|o| o.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Input(format!("`{s}` is not an operstate name")))
    }
}

/// One step of the probe, as written in `vnetlab.probe=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeStep {
    /// `iface:NAME`: use this interface from now on (default: the first
    /// network device whose parent is a virtio device).
    Iface(String),
    /// `up`: `dev_change_flags(dev, dev->flags | IFF_UP)` under rtnl, as
    /// `ip link set DEV up`.
    Up,
    /// `down`: the same with `IFF_UP` cleared.
    Down,
    /// `show`: print a `LINK` and a `CARRIER` line.
    Show,
    /// `sleep:MS`.
    Sleep(u32),
    /// `linkwatch`: run the pending linkwatch events now (under rtnl).
    Linkwatch,
    /// `unbind`: release the driver from the interface's virtio device
    /// (`rmmod virtio_net`).
    Unbind,
    /// `bind`: probe the released device again (`modprobe virtio_net`).
    Bind,
    /// `rebind`: `unbind` then `bind`.
    Rebind,
    /// `wait-carrier:0|1:MS`: wait until the carrier is off/on.
    WaitCarrier {
        /// The carrier state waited for.
        on: bool,
        /// Deadline in milliseconds.
        ms: u32,
    },
    /// `wait-operstate:STATE:MS`: wait until `ip link` would show this state.
    WaitOperstate {
        /// The state waited for.
        state: OperState,
        /// Deadline in milliseconds.
        ms: u32,
    },
    /// `wait-changes:N:MS`: wait until carrier_changes is at least N.
    WaitChanges {
        /// The count waited for.
        count: u32,
        /// Deadline in milliseconds.
        ms: u32,
    },
    /// `exit`: stop here with status 0.
    Exit,
}

impl fmt::Display for ProbeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeStep::Iface(name) => write!(f, "iface:{name}"),
            ProbeStep::Up => f.write_str("up"),
            ProbeStep::Down => f.write_str("down"),
            ProbeStep::Show => f.write_str("show"),
            ProbeStep::Sleep(ms) => write!(f, "sleep:{ms}"),
            ProbeStep::Linkwatch => f.write_str("linkwatch"),
            ProbeStep::Unbind => f.write_str("unbind"),
            ProbeStep::Bind => f.write_str("bind"),
            ProbeStep::Rebind => f.write_str("rebind"),
            ProbeStep::WaitCarrier { on, ms } => write!(f, "wait-carrier:{}:{ms}", u8::from(*on)),
            ProbeStep::WaitOperstate { state, ms } => write!(f, "wait-operstate:{state}:{ms}"),
            ProbeStep::WaitChanges { count, ms } => write!(f, "wait-changes:{count}:{ms}"),
            ProbeStep::Exit => f.write_str("exit"),
        }
    }
}

fn bad(step: &str, why: &str) -> Error {
    Error::Input(format!("probe step `{step}` {why}"))
}

fn parse_ms(step: &str, s: &str) -> Result<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|ms| *ms <= MAX_WAIT_MS)
        .ok_or_else(|| bad(step, "needs milliseconds up to 600000"))
}

impl FromStr for ProbeStep {
    type Err = Error;
    /// Parses one step with the same rules as the probe's C parser.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let step = match parts.as_slice() {
            ["up"] => ProbeStep::Up,
            ["down"] => ProbeStep::Down,
            ["show"] => ProbeStep::Show,
            ["linkwatch"] => ProbeStep::Linkwatch,
            ["unbind"] => ProbeStep::Unbind,
            ["bind"] => ProbeStep::Bind,
            ["rebind"] => ProbeStep::Rebind,
            ["exit"] => ProbeStep::Exit,
            ["iface", name] => {
                if name.is_empty() || name.len() >= 16 || name.contains([',', ' ']) {
                    return Err(bad(s, "needs an interface name of 1 to 15 characters"));
                }
                ProbeStep::Iface((*name).to_string())
            }
            ["sleep", ms] => ProbeStep::Sleep(parse_ms(s, ms)?),
            ["wait-carrier", state, ms] => ProbeStep::WaitCarrier {
                on: match *state {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad(s, "needs carrier state 0 or 1")),
                },
                ms: parse_ms(s, ms)?,
            },
            ["wait-operstate", state, ms] => ProbeStep::WaitOperstate {
                state: state.parse()?,
                ms: parse_ms(s, ms)?,
            },
            ["wait-changes", count, ms] => ProbeStep::WaitChanges {
                count: count
                    .parse()
                    .ok()
                    .filter(|c| *c <= 1_000_000)
                    .ok_or_else(|| bad(s, "needs a count up to 1000000"))?,
                ms: parse_ms(s, ms)?,
            },
            _ => return Err(bad(s, "is unknown or has the wrong arguments")),
        };
        Ok(step)
    }
}

/// Parses a comma-separated step list (the value of `vnetlab.probe=`).
pub fn parse_steps(list: &str) -> Result<Vec<ProbeStep>> {
    let steps: Vec<ProbeStep> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_>>()?;
    if steps.len() > MAX_STEPS {
        return Err(Error::Input(format!(
            "{} probe steps given; the probe takes at most {MAX_STEPS}",
            steps.len()
        )));
    }
    Ok(steps)
}

/// The kernel command-line arguments that make the probe run `steps`, with
/// an optional watchdog in seconds (`vnetlab.timeout=`, default 240 s). A
/// call trace is asked for apart, with [`super::trace::trace_arg`].
pub fn probe_args(steps: &[ProbeStep], timeout_secs: Option<u32>) -> String {
    let list: Vec<String> = steps.iter().map(ToString::to_string).collect();
    let mut args = format!("vnetlab.probe={}", list.join(","));
    if let Some(t) = timeout_secs {
        args.push_str(&format!(" vnetlab.timeout={t}"));
    }
    args
}

/// The operstate scenario of the original investigation: bring the interface
/// up, let the link watch run, show it; reload the driver (`rmmod virtio_net;
/// modprobe virtio_net`), bring it up again and show it.
pub fn operstate_steps() -> Vec<ProbeStep> {
    vec![
        ProbeStep::Show,
        ProbeStep::Up,
        ProbeStep::Sleep(1500),
        ProbeStep::Show,
        ProbeStep::Rebind,
        ProbeStep::Up,
        ProbeStep::Sleep(1500),
        ProbeStep::Show,
    ]
}

/// A link flap pushed by the device (the VMM's control socket): up, then
/// wait for the carrier to drop and to come back, showing each state.
pub fn link_flap_steps(deadline_ms: u32) -> Vec<ProbeStep> {
    vec![
        ProbeStep::Up,
        ProbeStep::Sleep(1500),
        ProbeStep::Show,
        ProbeStep::WaitCarrier {
            on: false,
            ms: deadline_ms,
        },
        ProbeStep::Sleep(1500),
        ProbeStep::Show,
        ProbeStep::WaitCarrier {
            on: true,
            ms: deadline_ms,
        },
        ProbeStep::Sleep(1500),
        ProbeStep::Show,
    ]
}

/// The carrier counters and virtio facts of one observation (`CARRIER` line).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CarrierInfo {
    /// Interface name.
    pub name: String,
    /// `netif_carrier_ok()`.
    pub carrier: bool,
    /// `carrier_up_count + carrier_down_count` (what `ip -s -d link` and
    /// `/sys/class/net/DEV/carrier_changes` show).
    pub carrier_changes: u32,
    /// `carrier_up_count`.
    pub carrier_up_count: u32,
    /// `carrier_down_count`.
    pub carrier_down_count: u32,
    /// `dev->operstate` as stored (not adjusted for a down interface).
    pub operstate: u8,
    /// The virtio device's negotiated features (`vdev->features`).
    pub features: Option<u64>,
    /// The features the device offers.
    pub device_features: Option<u64>,
    /// The virtio device status byte.
    pub virtio_status: Option<u8>,
}

/// One observation: the `ip link show` line and the carrier line after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The step (1-based) that printed it, when known.
    pub step: Option<usize>,
    /// Exactly the first line `ip link show DEV` would print.
    pub ip_link_line: String,
    /// Interface index.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// The flags between `<` and `>`.
    pub flags: Vec<String>,
    /// The `state` word, e.g. `UP` or `UNKNOWN`.
    pub state: String,
    /// The carrier line, when one followed.
    pub carrier: Option<CarrierInfo>,
}

impl Observation {
    /// The `ip link show` line with the carrier pairs appended
    /// (`... qlen 1000 carrier 1 carrier_changes 2`): one line that a parser
    /// of `ip link` headers which also reads `carrier`/`carrier_changes`
    /// pairs (the harness's) takes whole.
    pub fn header_with_carrier(&self) -> String {
        match &self.carrier {
            Some(c) => format!(
                "{} carrier {} carrier_changes {}",
                self.ip_link_line,
                u8::from(c.carrier),
                c.carrier_changes
            ),
            None => self.ip_link_line.clone(),
        }
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// 1-based step number.
    pub index: usize,
    /// The step as written.
    pub step: String,
    /// True for `OK`, false for `FAIL`.
    pub ok: bool,
    /// Guest milliseconds the step took.
    pub elapsed_ms: Option<u64>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// Everything the probe printed in one boot.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Whether a `BEGIN` line was seen (the probe started).
    pub began: bool,
    /// Protocol version from `BEGIN`.
    pub protocol: Option<u32>,
    /// Guest time (printk seconds) of the `BEGIN` line: the boot time to the probe.
    pub begin_time_s: Option<f64>,
    /// Steps that finished, in order.
    pub steps: Vec<StepResult>,
    /// Every `LINK` observation.
    pub observations: Vec<Observation>,
    /// `FAIL` lines that belong to no step (bad step list, watchdog).
    pub failures: Vec<String>,
    /// `NOTE` lines.
    pub notes: Vec<String>,
    /// Exit status from `END` (also written to port 0x501).
    pub status: Option<u8>,
    /// Guest milliseconds from `BEGIN` to `END`.
    pub elapsed_ms: Option<u64>,
    /// The call trace (`TRACE` lines), when `vnetlab.trace=` asked for one.
    pub trace: Option<super::trace::ProbeTrace>,
}

impl ProbeReport {
    /// True when the probe ended with status 0.
    pub fn passed(&self) -> bool {
        self.status == Some(0)
    }

    /// The last observation of interface `name` (or of any interface).
    pub fn last_observation(&self, name: Option<&str>) -> Option<&Observation> {
        self.observations
            .iter()
            .rev()
            .find(|o| name.is_none_or(|n| o.name == n))
    }
}

/// Splits a console line into its printk time (if any) and the probe text
/// after [`LINE_MARKER`]; `None` for lines that are not the probe's.
pub fn probe_line(line: &str) -> Option<(Option<f64>, &str)> {
    let at = line.find(LINE_MARKER)?;
    let head = line[..at].trim();
    let time = head
        .strip_prefix('[')
        .and_then(|h| h.split(']').next())
        .and_then(|t| t.trim().parse::<f64>().ok());
    Some((
        time,
        line[at + LINE_MARKER.len()..].trim_end_matches(['\r', '\n']),
    ))
}

fn kv<'a>(words: &'a [&'a str], key: &str) -> Option<&'a str> {
    words.windows(2).find(|w| w[0] == key).map(|w| w[1])
}

fn hex_u64(s: &str) -> Option<u64> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(s, 16).ok()
}

fn parse_carrier(rest: &str) -> Option<CarrierInfo> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let name = (*words.first()?).to_string();
    let num = |k: &str| kv(&words, k).and_then(|v| v.parse::<u32>().ok());
    Some(CarrierInfo {
        name,
        carrier: num("carrier")? != 0,
        carrier_changes: num("carrier_changes")?,
        carrier_up_count: num("carrier_up_count")?,
        carrier_down_count: num("carrier_down_count")?,
        operstate: u8::try_from(num("operstate")?).ok()?,
        features: kv(&words, "features").and_then(hex_u64),
        device_features: kv(&words, "device_features").and_then(hex_u64),
        virtio_status: kv(&words, "virtio_status")
            .and_then(hex_u64)
            .and_then(|v| u8::try_from(v).ok()),
    })
}

/// Parses the first line of `ip link show` (`2: eth0: <FLAGS> mtu ... state X ...`).
pub fn parse_ip_link_line(line: &str) -> Option<(u32, String, Vec<String>, String)> {
    let (index, rest) = line.split_once(": ")?;
    let ifindex = index.trim().parse().ok()?;
    let (name, rest) = rest.split_once(": ")?;
    let flags_text = rest.strip_prefix('<')?.split_once('>')?.0;
    let flags = flags_text
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let state = kv(&words, "state")?.to_string();
    Some((ifindex, name.to_string(), flags, state))
}

fn parse_step_end(rest: &str) -> Option<StepResult> {
    // "3/9 sleep:1500 1502 ms" or "3/9 show 0 ms: why (-19)"
    let (head, reason) = match rest.split_once(" ms: ") {
        Some((h, r)) => (h, Some(r.to_string())),
        None => (rest.strip_suffix(" ms").unwrap_or(rest), None),
    };
    let mut words = head.split_whitespace();
    let index = words.next()?.split('/').next()?.parse().ok()?;
    let step = words.next()?.to_string();
    let elapsed_ms = words.next().and_then(|w| w.parse().ok());
    Some(StepResult {
        index,
        step,
        ok: false,
        elapsed_ms,
        reason,
    })
}

/// Parses the probe's lines out of a serial console transcript (any other
/// lines are ignored).
pub fn parse_output(serial: &str) -> ProbeReport {
    let mut report = ProbeReport::default();
    let mut current_step: Option<usize> = None;
    for line in serial.lines() {
        let Some((time, text)) = probe_line(line) else {
            continue;
        };
        let (tag, rest) = text.split_once(' ').unwrap_or((text, ""));
        match tag {
            "BEGIN" => {
                report.began = true;
                report.begin_time_s = time;
                report.protocol = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("protocol="))
                    .and_then(|v| v.parse().ok());
            }
            "STEP" => {
                current_step = rest.split('/').next().and_then(|n| n.trim().parse().ok());
            }
            "OK" | "FAIL" => match parse_step_end(rest) {
                Some(mut r) if tag == "OK" || r.reason.is_some() => {
                    r.ok = tag == "OK";
                    report.steps.push(r);
                }
                _ => report.failures.push(rest.to_string()),
            },
            "LINK" => {
                if let Some((ifindex, name, flags, state)) = parse_ip_link_line(rest) {
                    report.observations.push(Observation {
                        step: current_step,
                        ip_link_line: rest.to_string(),
                        ifindex,
                        name,
                        flags,
                        state,
                        carrier: None,
                    });
                }
            }
            "CARRIER" => {
                if let (Some(info), Some(last)) =
                    (parse_carrier(rest), report.observations.last_mut())
                {
                    if last.carrier.is_none() && last.name == info.name {
                        last.carrier = Some(info);
                    }
                }
            }
            "NOTE" => report.notes.push(rest.to_string()),
            "TRACE" => report
                .trace
                .get_or_insert_with(Default::default)
                .parse_line(rest),
            "END" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let field = |k: &str| {
                    words
                        .iter()
                        .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                };
                report.status = field("status").and_then(|v| v.parse().ok());
                report.elapsed_ms = field("elapsed_ms").and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip() {
        let text = "iface:eth0,show,up,sleep:500,linkwatch,rebind,unbind,bind,down,\
                    wait-carrier:0:30000,wait-carrier:1:30000,wait-operstate:UP:5000,\
                    wait-changes:4:1000,exit";
        let steps = parse_steps(text).unwrap();
        assert_eq!(steps.len(), 14);
        let back: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(back.join(","), text);
        assert_eq!(
            probe_args(&steps[1..3], Some(60)),
            "vnetlab.probe=show,up vnetlab.timeout=60"
        );
    }

    #[test]
    fn bad_steps_are_rejected() {
        for bad in [
            "jump",
            "up:1",
            "sleep",
            "sleep:x",
            "sleep:600001",
            "wait-carrier:2:10",
            "wait-carrier:1",
            "wait-operstate:SIDEWAYS:10",
            "iface:",
            "iface:averyveryverylongname",
        ] {
            assert!(bad.parse::<ProbeStep>().is_err(), "{bad}");
        }
        let many = vec!["show"; MAX_STEPS + 1].join(",");
        assert!(parse_steps(&many).is_err());
    }

    #[test]
    fn output_is_parsed() {
        let serial = "\
[    0.000000] Linux version 6.1.176 ...
[   80.123456] vnetlab: BEGIN protocol=1 steps=up,show,sleep:10,wait-carrier:0:20
[   80.123500] vnetlab: STEP 1/4 up
[   80.130000] vnetlab: OK 1/4 up 6 ms
[   80.130001] vnetlab: STEP 2/4 show
[   80.130002] vnetlab: LINK 2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN mode DEFAULT group default qlen 1000
[   80.130003] vnetlab: CARRIER eth0 carrier 1 carrier_changes 0 carrier_up_count 0 carrier_down_count 0 operstate 0 features 0x100000020 device_features 0x100000020 virtio_status 0xf virtio_device virtio0
[   80.130004] vnetlab: OK 2/4 show 0 ms
[   80.130005] vnetlab: STEP 3/4 sleep:10
[   80.140005] vnetlab: OK 3/4 sleep:10 10 ms
[   80.140006] vnetlab: STEP 4/4 wait-carrier:0:20
[   80.160006] vnetlab: LINK 2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN mode DEFAULT group default qlen 1000
[   80.160007] vnetlab: CARRIER eth0 carrier 1 carrier_changes 0 carrier_up_count 0 carrier_down_count 0 operstate 0
[   80.160008] vnetlab: FAIL 4/4 wait-carrier:0:20 20 ms: deadline passed (-110)
[   80.160009] vnetlab: END status=4 elapsed_ms=37
";
        let r = parse_output(serial);
        assert!(r.began);
        assert_eq!(r.protocol, Some(PROTOCOL));
        assert_eq!(r.begin_time_s, Some(80.123456));
        assert_eq!(r.status, Some(4));
        assert_eq!(r.elapsed_ms, Some(37));
        assert!(!r.passed());
        assert_eq!(r.steps.len(), 4);
        assert!(r.steps[..3].iter().all(|s| s.ok));
        assert_eq!(r.steps[3].step, "wait-carrier:0:20");
        assert_eq!(r.steps[3].reason.as_deref(), Some("deadline passed (-110)"));
        assert_eq!(r.observations.len(), 2);
        let o = &r.observations[0];
        assert_eq!(o.step, Some(2));
        assert_eq!(
            (o.ifindex, o.name.as_str(), o.state.as_str()),
            (2, "eth0", "UNKNOWN")
        );
        assert_eq!(o.flags, ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]);
        assert!(o.ip_link_line.starts_with("2: eth0: <"));
        let c = o.carrier.as_ref().unwrap();
        assert!(c.carrier);
        assert_eq!(c.carrier_changes, 0);
        assert_eq!(c.features, Some(0x1_0000_0020));
        assert_eq!(c.virtio_status, Some(0xf));
        assert_eq!(r.observations[1].carrier.as_ref().unwrap().features, None);
        assert_eq!(r.last_observation(Some("eth0")).unwrap().step, Some(4));
    }

    /// A real transcript: the pre-fix kernel, device without STATUS on
    /// virtio-mmio, the operstate sequence (VMM log lines included).
    #[test]
    fn real_prefix_transcript_shows_unknown() {
        let serial = include_str!("../../kernel-only/testdata/prefix-nostatus-mmio.serial");
        let r = parse_output(serial);
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.steps.len(), operstate_steps().len());
        let states: Vec<&str> = r.observations.iter().map(|o| o.state.as_str()).collect();
        assert_eq!(states, ["DOWN", "UNKNOWN", "UNKNOWN"]);
        let ifindexes: Vec<u32> = r.observations.iter().map(|o| o.ifindex).collect();
        assert_eq!(ifindexes, [2, 2, 3], "the reload made a new interface");
        for o in &r.observations {
            let c = o.carrier.as_ref().unwrap();
            assert_eq!(c.carrier_changes, 0);
            let features = c.features.unwrap();
            assert_eq!(features & (1 << 16), 0, "STATUS not negotiated");
            assert_ne!(features & (1 << 32), 0, "VERSION_1");
        }
        assert!(r.begin_time_s.unwrap() > 1.0);
        assert_eq!(
            r.observations[1].header_with_carrier(),
            "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN \
             mode DEFAULT group default qlen 1000 carrier 1 carrier_changes 0"
        );
    }

    #[test]
    fn unrelated_and_unstamped_lines() {
        assert_eq!(probe_line("hello"), None);
        assert_eq!(
            probe_line("vnetlab: END status=0 elapsed_ms=1"),
            Some((None, "END status=0 elapsed_ms=1"))
        );
        let r = parse_output(
            "vnetlab: FAIL bad step 1 'x': unknown step\nvnetlab: END status=120 elapsed_ms=0\n",
        );
        assert_eq!(r.status, Some(EXIT_BAD_STEPS));
        assert_eq!(r.failures.len(), 1);
    }

    #[test]
    fn operstates_have_iproute2_names() {
        assert_eq!(OperState::from_index(6), Some(OperState::Up));
        assert_eq!(OperState::from_index(7), None);
        assert_eq!("unknown".parse::<OperState>().unwrap(), OperState::Unknown);
        assert_eq!(OperState::LowerLayerDown.to_string(), "LOWERLAYERDOWN");
    }
}
