//! The guest agent: the `/init` script of the initramfs, how steps are
//! passed to it on the kernel command line, and the parser for the marker
//! lines it prints on the serial console.
//!
//! # Protocol (version 1)
//!
//! Kernel command line (all optional):
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `vnetlab.steps=S1,S2,...` | steps, each [percent-encoded](encode_step) | `/vnetlab/steps` in the initramfs |
//! | `vnetlab.timeout=SECS` | watchdog for the whole run | 120 |
//! | `vnetlab.step_timeout=SECS` | deadline of one step | 60 |
//! | `vnetlab.poweroff=poweroff\|reboot` | `poweroff -f` (ACPI, QEMU) or `reboot -f` (use with `reboot=k` where there is no ACPI) | `poweroff` |
//! | `vnetlab.modules=auto\|none` | load the initramfs's modules at start | `auto` |
//! | `vnetlab.trace=F1,F2,...` | kernel functions to record (tracefs function tracer) | none |
//!
//! Each step is a shell command run by busybox `sh` with stdin from
//! `/dev/null`, stdout and stderr captured together, and the helpers of
//! `lib.sh` (`wait_iface`, `wait_operstate`, `link_facts`) defined.
//!
//! Console output: every agent line starts with [`MARKER`] (`@@VNETLAB@@`)
//! followed by a space; the parser also accepts a marker in the middle of a
//! line (kernel output can precede it on the same line). Lines:
//!
//! ```text
//! @@VNETLAB@@ AGENT START version=1 kernel=<uname -r> timeout=<s> step_timeout=<s> poweroff=<m> modules=<m> t=<uptime>
//! @@VNETLAB@@ MODULE <name> rc=<insmod exit status>
//! @@VNETLAB@@ MODULE <name> OUT <insmod output line>        (only when rc != 0)
//! @@VNETLAB@@ STEP <n> BEGIN t=<uptime> cmd=<percent-encoded command>
//! @@VNETLAB@@ STEP <n> OUT <output line, verbatim>
//! @@VNETLAB@@ STEP <n> END rc=<exit status> t=<uptime>
//! @@VNETLAB@@ TRACE SETUP requested=<n> tracefs=<path>   (these only with vnetlab.trace=)
//! @@VNETLAB@@ TRACE ERROR <why tracing is not (fully) possible>
//! @@VNETLAB@@ TRACE FUNC <name> traceable
//! @@VNETLAB@@ TRACE FUNC <name> untraceable: <why>
//! @@VNETLAB@@ TRACE BEGIN
//! @@VNETLAB@@ TRACE LINE <a line of tracefs's trace file, verbatim>
//! @@VNETLAB@@ TRACE END lines=<count>
//! @@VNETLAB@@ DONE steps=<count> failed=<count> t=<uptime>
//! @@VNETLAB@@ WATCHDOG expired after <s>s; powering off
//! @@VNETLAB@@ POWEROFF method=<poweroff|reboot> t=<uptime>
//! ```
//!
//! Steps are numbered from 1. `t=` is seconds since boot (`/proc/uptime`).
//! With a trace, the agent sets up the function tracer before the modules
//! load (a function not in the kernel proper goes into `set_ftrace_filter`
//! as `NAME:mod:MODULE` for each module whose file names it), reports every
//! requested function after they loaded, writes `vnetlab-step <n>` to
//! `trace_marker` before step `n`, and dumps the trace after the last step.
//! A step killed by its deadline ends with rc=143. A run is complete when
//! `DONE` was printed; a `WATCHDOG` line means the deadline cut it short.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The marker that starts every agent line.
pub const MARKER: &str = "@@VNETLAB@@";
/// Protocol version printed in `AGENT START`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The `/init` script.
pub const INIT_SCRIPT: &str = include_str!("agent/init.sh");
/// Helpers sourced before each step (`/vnetlab/lib.sh`).
pub const LIB_SCRIPT: &str = include_str!("agent/lib.sh");

/// Errors in agent input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgentError {
    /// An encoded step is malformed.
    #[error("The encoded step `{0}` has a `%` not followed by two hex digits.")]
    BadEncoding(String),
    /// A decoded step is not UTF-8.
    #[error("The encoded step `{0}` does not decode to UTF-8.")]
    NotUtf8(String),
}

/// How the guest ends its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerOff {
    /// `poweroff -f`: needs ACPI (QEMU's pc machine has it).
    #[default]
    Poweroff,
    /// `reboot -f`: with `reboot=k` on the command line and a VMM that
    /// treats the reset as the end (no ACPI needed).
    Reboot,
}

/// What the agent should do in one boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// Shell commands, run in order.
    pub steps: Vec<String>,
    /// Watchdog deadline for the whole run, in seconds.
    pub timeout_secs: u32,
    /// Deadline of one step, in seconds.
    pub step_timeout_secs: u32,
    /// How to end.
    pub poweroff: PowerOff,
    /// Load the initramfs's modules before the steps.
    pub load_modules: bool,
    /// Kernel functions to record with the function tracer (none: no trace).
    #[serde(default)]
    pub trace: Vec<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            steps: Vec::new(),
            timeout_secs: 120,
            step_timeout_secs: 60,
            poweroff: PowerOff::Poweroff,
            load_modules: true,
            trace: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// A config running `steps` with the defaults.
    pub fn with_steps<I, S>(steps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            steps: steps.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The `vnetlab.*` kernel command line parameters (no console or other
    /// kernel parameters; with `Reboot` this adds `reboot=k`).
    pub fn cmdline(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(|s| encode_step(s)).collect();
        let mut out = String::new();
        if !steps.is_empty() {
            let _ = write!(out, "vnetlab.steps={} ", steps.join(","));
        }
        let _ = write!(
            out,
            "vnetlab.timeout={} vnetlab.step_timeout={}",
            self.timeout_secs, self.step_timeout_secs
        );
        match self.poweroff {
            PowerOff::Poweroff => out.push_str(" vnetlab.poweroff=poweroff"),
            PowerOff::Reboot => out.push_str(" vnetlab.poweroff=reboot reboot=k"),
        }
        if !self.load_modules {
            out.push_str(" vnetlab.modules=none");
        }
        if !self.trace.is_empty() {
            let names: Vec<String> = self.trace.iter().map(|f| encode_step(f)).collect();
            let _ = write!(out, " vnetlab.trace={}", names.join(","));
        }
        out
    }
}

/// Percent-encodes a step: ASCII letters, digits and `-._~/:=@+` stay,
/// every other byte becomes `%HH` (so the result has no spaces, commas,
/// quotes, glob or shell characters).
pub fn encode_step(step: &str) -> String {
    let mut out = String::with_capacity(step.len());
    for b in step.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:=@+".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a percent-encoded step.
pub fn decode_step(encoded: &str) -> Result<String, AgentError> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AgentError::BadEncoding(encoded.to_string()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AgentError::NotUtf8(encoded.to_string()))
}

/// An agent line a host reacts to while the guest runs (the full record is
/// [`Transcript::parse`]'s job, once the run is over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEvent {
    /// `AGENT START`: the agent runs.
    Start,
    /// `STEP <n> BEGIN`: step `n` (from 1) starts.
    StepBegin(u32),
    /// `STEP <n> END`: step `n` ended.
    StepEnd(u32),
    /// `DONE`: every step ran.
    Done,
    /// `WATCHDOG`: the agent's deadline passed.
    Watchdog,
    /// `POWEROFF`: the machine is being ended.
    PowerOff,
}

/// The event on one console line, if it is one of the agent's (the marker
/// may follow other text on the line).
pub fn line_event(line: &str) -> Option<LineEvent> {
    let rest = &line[line.find(MARKER)? + MARKER.len()..];
    let mut words = rest.strip_prefix(' ')?.split(' ');
    match words.next()? {
        "AGENT" => Some(LineEvent::Start),
        "STEP" => {
            let n = words.next()?.parse().ok()?;
            match words.next()? {
                "BEGIN" => Some(LineEvent::StepBegin(n)),
                "END" => Some(LineEvent::StepEnd(n)),
                _ => None,
            }
        }
        "DONE" => Some(LineEvent::Done),
        "WATCHDOG" => Some(LineEvent::Watchdog),
        "POWEROFF" => Some(LineEvent::PowerOff),
        _ => None,
    }
}

/// One step as the agent reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Step number, from 1.
    pub index: u32,
    /// The command (decoded).
    pub command: String,
    /// Output lines, in order.
    pub output: Vec<String>,
    /// Exit status; `None` when the step never ended (watchdog, crash).
    pub rc: Option<i32>,
    /// Uptime at BEGIN and END, seconds.
    pub started: Option<f64>,
    /// Uptime at END.
    pub ended: Option<f64>,
}

impl StepResult {
    /// The output as one string with newlines.
    pub fn text(&self) -> String {
        self.output.join("\n")
    }
}

/// A module load as the agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleLoad {
    /// Module name.
    pub name: String,
    /// insmod exit status.
    pub rc: i32,
    /// insmod output when it failed.
    pub output: Vec<String>,
}

/// What the agent said about one requested function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedFunction {
    /// The function.
    pub name: String,
    /// Whether it is in the tracer's filter.
    pub traceable: bool,
    /// Why not, when it is not.
    pub reason: Option<String>,
}

/// The `TRACE` lines of one boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTrace {
    /// `TRACE SETUP` was seen.
    pub set_up: bool,
    /// One per requested function, in order.
    pub functions: Vec<TracedFunction>,
    /// `TRACE ERROR` lines.
    pub errors: Vec<String>,
    /// `TRACE BEGIN` was seen.
    pub began: bool,
    /// The trace file's lines, verbatim.
    pub lines: Vec<String>,
    /// `TRACE END` was seen: the dump is whole.
    pub complete: bool,
}

impl AgentTrace {
    fn parse_line(&mut self, rest: &str) -> bool {
        let (tag, body) = rest.split_once(' ').unwrap_or((rest, ""));
        match tag {
            "SETUP" => self.set_up = true,
            "ERROR" => self.errors.push(body.to_string()),
            "BEGIN" => self.began = true,
            "LINE" => self.lines.push(body.to_string()),
            "END" => self.complete = true,
            "FUNC" => {
                let Some((name, status)) = body.split_once(' ') else {
                    return false;
                };
                let (traceable, reason) = match status.strip_prefix("untraceable:") {
                    Some(why) => (false, Some(why.trim().to_string())),
                    None if status == "traceable" => (true, None),
                    None => return false,
                };
                self.functions.push(TracedFunction {
                    name: name.to_string(),
                    traceable,
                    reason,
                });
            }
            _ => return false,
        }
        true
    }
}

/// Everything the agent said in one boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The `AGENT START` line was seen.
    pub started: bool,
    /// Kernel release reported at start.
    pub kernel: Option<String>,
    /// Module loads.
    pub modules: Vec<ModuleLoad>,
    /// Steps in order.
    pub steps: Vec<StepResult>,
    /// The `DONE` line was seen.
    pub done: bool,
    /// The watchdog fired.
    pub watchdog: bool,
    /// The `POWEROFF` line was seen.
    pub powered_off: bool,
    /// The call trace, when `vnetlab.trace=` asked for one.
    pub trace: Option<AgentTrace>,
    /// Marker lines that did not parse (kept for diagnosis).
    pub unparsed: Vec<String>,
}

fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl Transcript {
    /// Parses console output (any mix of kernel and agent lines, `\r\n` or `\n`).
    pub fn parse(console: &str) -> Self {
        let mut t = Transcript::default();
        for raw in console.lines() {
            let line = raw.trim_end_matches('\r');
            let Some(pos) = line.find(MARKER) else {
                continue;
            };
            let rest = &line[pos + MARKER.len()..];
            let Some(rest) = rest.strip_prefix(' ') else {
                t.unparsed.push(line.to_string());
                continue;
            };
            if !t.parse_line(rest) {
                t.unparsed.push(line.to_string());
            }
        }
        t
    }

    fn parse_line(&mut self, rest: &str) -> bool {
        let words: Vec<&str> = rest.split(' ').collect();
        match words.first().copied() {
            Some("AGENT") => {
                self.started = true;
                self.kernel = field(&words, "kernel").map(str::to_string);
                true
            }
            Some("MODULE") => {
                let Some(name) = words.get(1) else {
                    return false;
                };
                if words.get(2) == Some(&"OUT") {
                    let text = rest.splitn(4, ' ').nth(3).unwrap_or("").to_string();
                    match self.modules.iter_mut().rev().find(|m| m.name == *name) {
                        Some(m) => m.output.push(text),
                        None => return false,
                    }
                    return true;
                }
                let Some(rc) = field(&words, "rc").and_then(|r| r.parse().ok()) else {
                    return false;
                };
                self.modules.push(ModuleLoad {
                    name: name.to_string(),
                    rc,
                    output: Vec::new(),
                });
                true
            }
            Some("STEP") => {
                let Some(index) = words.get(1).and_then(|n| n.parse::<u32>().ok()) else {
                    return false;
                };
                match words.get(2).copied() {
                    Some("BEGIN") => {
                        let command = field(&words, "cmd")
                            .map(|c| decode_step(c).unwrap_or_else(|_| c.to_string()))
                            .unwrap_or_default();
                        self.steps.push(StepResult {
                            index,
                            command,
                            output: Vec::new(),
                            rc: None,
                            started: field(&words, "t").and_then(|t| t.parse().ok()),
                            ended: None,
                        });
                        true
                    }
                    Some("OUT") => {
                        // Everything after "STEP <n> OUT " verbatim.
                        let text = rest.splitn(4, ' ').nth(3).unwrap_or("").to_string();
                        match self.steps.iter_mut().rev().find(|s| s.index == index) {
                            Some(s) => {
                                s.output.push(text);
                                true
                            }
                            None => false,
                        }
                    }
                    Some("END") => match self.steps.iter_mut().rev().find(|s| s.index == index) {
                        Some(s) => {
                            s.rc = field(&words, "rc").and_then(|r| r.parse().ok());
                            s.ended = field(&words, "t").and_then(|t| t.parse().ok());
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            Some("DONE") => {
                self.done = true;
                true
            }
            Some("WATCHDOG") => {
                self.watchdog = true;
                true
            }
            Some("POWEROFF") => {
                self.powered_off = true;
                true
            }
            Some("STUCK") => true,
            Some("TRACE") => {
                // Everything after "TRACE " verbatim (a LINE keeps its spaces).
                let body = rest.strip_prefix("TRACE").unwrap_or("");
                self.trace
                    .get_or_insert_with(AgentTrace::default)
                    .parse_line(body.strip_prefix(' ').unwrap_or(body))
            }
            _ => false,
        }
    }

    /// The first step whose command equals `command`.
    pub fn step(&self, command: &str) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.command == command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_the_encoding() {
        for s in [
            "ip link set eth0 up",
            "echo 'a,b' \"c\" $X *; ls\n100%",
            "rmmod virtio_net; modprobe virtio_net",
            "-n",
            "é",
        ] {
            let e = encode_step(s);
            assert!(
                !e.contains([' ', ',', '\'', '"', '*', ';', '\n', '$']),
                "{e}"
            );
            assert_eq!(decode_step(&e).unwrap(), s);
        }
        assert_eq!(encode_step("ip link show eth0"), "ip%20link%20show%20eth0");
        assert!(matches!(
            decode_step("a%zz"),
            Err(AgentError::BadEncoding(_))
        ));
        assert!(matches!(
            decode_step("a%f"),
            Err(AgentError::BadEncoding(_))
        ));
        assert!(matches!(decode_step("%ff"), Err(AgentError::NotUtf8(_))));
    }

    #[test]
    fn cmdline_has_the_parameters() {
        let mut c = AgentConfig::with_steps(["ip link set eth0 up", "ip link show eth0"]);
        assert_eq!(
            c.cmdline(),
            "vnetlab.steps=ip%20link%20set%20eth0%20up,ip%20link%20show%20eth0 vnetlab.timeout=120 vnetlab.step_timeout=60 vnetlab.poweroff=poweroff"
        );
        c.poweroff = PowerOff::Reboot;
        c.load_modules = false;
        c.steps.clear();
        assert_eq!(c.cmdline(), "vnetlab.timeout=120 vnetlab.step_timeout=60 vnetlab.poweroff=reboot reboot=k vnetlab.modules=none");
    }

    #[test]
    fn transcript_is_parsed_among_kernel_lines() {
        let console = "\
[    0.000000] Linux version 6.1.0\r
@@VNETLAB@@ AGENT START version=1 kernel=6.1.0-50-cloud-amd64 timeout=120 step_timeout=60 poweroff=poweroff modules=auto t=1.02\r
@@VNETLAB@@ MODULE virtio rc=0\r
@@VNETLAB@@ MODULE virtio_net rc=1\r
@@VNETLAB@@ MODULE virtio_net OUT insmod: can't insert 'x': File exists\r
@@VNETLAB@@ STEP 1 BEGIN t=1.50 cmd=ip%20link%20set%20eth0%20up\r
@@VNETLAB@@ STEP 1 END rc=0 t=1.52\r
[    1.6] random kernel line @@VNETLAB@@ STEP 2 BEGIN t=1.53 cmd=ip%20link%20show%20eth0\r
@@VNETLAB@@ STEP 2 OUT 2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT group default qlen 1000\r
@@VNETLAB@@ STEP 2 OUT     link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\r
@@VNETLAB@@ STEP 2 END rc=0 t=1.55\r
@@VNETLAB@@ DONE steps=2 failed=0 t=1.56\r
@@VNETLAB@@ POWEROFF method=poweroff t=1.56\r
@@VNETLAB@@garbage\r
";
        let t = Transcript::parse(console);
        assert!(t.started && t.done && t.powered_off && !t.watchdog);
        assert_eq!(t.kernel.as_deref(), Some("6.1.0-50-cloud-amd64"));
        assert_eq!(t.modules.len(), 2);
        assert_eq!(
            t.modules[1].output,
            ["insmod: can't insert 'x': File exists"]
        );
        assert_eq!(t.steps.len(), 2);
        let show = t.step("ip link show eth0").unwrap();
        assert_eq!(show.rc, Some(0));
        assert_eq!(show.output.len(), 2);
        assert!(show.output[0].contains("state UP"));
        assert_eq!(
            show.output[1],
            "    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff"
        );
        assert_eq!(show.started, Some(1.53));
        assert_eq!(t.unparsed, ["@@VNETLAB@@garbage"]);
    }

    #[test]
    fn line_events_are_recognised_among_kernel_text() {
        assert_eq!(
            line_event("@@VNETLAB@@ STEP 12 BEGIN t=1.5 cmd=x\r"),
            Some(LineEvent::StepBegin(12))
        );
        assert_eq!(
            line_event("[ 1.6] text @@VNETLAB@@ STEP 3 END rc=0 t=2"),
            Some(LineEvent::StepEnd(3))
        );
        assert_eq!(
            line_event("@@VNETLAB@@ AGENT START version=1"),
            Some(LineEvent::Start)
        );
        assert_eq!(
            line_event("@@VNETLAB@@ DONE steps=1"),
            Some(LineEvent::Done)
        );
        assert_eq!(
            line_event("@@VNETLAB@@ WATCHDOG expired"),
            Some(LineEvent::Watchdog)
        );
        assert_eq!(
            line_event("@@VNETLAB@@ POWEROFF method=reboot"),
            Some(LineEvent::PowerOff)
        );
        for other in [
            "@@VNETLAB@@ STEP 1 OUT STEP 2 BEGIN",
            "@@VNETLAB@@ STEP x BEGIN",
            "@@VNETLAB@@STEP 1 BEGIN",
            "@@VNETLAB@@ MODULE virtio rc=0",
            "STEP 1 BEGIN",
            "",
        ] {
            assert_eq!(line_event(other), None, "{other}");
        }
    }

    #[test]
    fn trace_lines_are_parsed_verbatim() {
        let console = "\
@@VNETLAB@@ TRACE SETUP requested=3 tracefs=/sys/kernel/tracing\r
@@VNETLAB@@ TRACE FUNC netif_carrier_off traceable\r
@@VNETLAB@@ TRACE FUNC default_operstate untraceable: not in available_filter_functions (inlined)\r
@@VNETLAB@@ TRACE FUNC odd whatever\r
@@VNETLAB@@ TRACE ERROR something went half wrong\r
@@VNETLAB@@ TRACE BEGIN\r
@@VNETLAB@@ TRACE LINE # tracer: function\r
@@VNETLAB@@ TRACE LINE           insmod-68      [000] .....     1.880575: netif_carrier_off <-virtnet_probe\r
@@VNETLAB@@ TRACE LINE \r
@@VNETLAB@@ TRACE END lines=3\r
";
        let t = Transcript::parse(console);
        let tr = t.trace.unwrap();
        assert!(tr.set_up && tr.began && tr.complete);
        assert_eq!(tr.functions.len(), 2);
        assert!(tr.functions[0].traceable);
        assert_eq!(
            tr.functions[1].reason.as_deref(),
            Some("not in available_filter_functions (inlined)")
        );
        assert_eq!(tr.errors, ["something went half wrong"]);
        assert_eq!(
            tr.lines,
            [
                "# tracer: function",
                "          insmod-68      [000] .....     1.880575: netif_carrier_off <-virtnet_probe",
                ""
            ]
        );
        assert_eq!(t.unparsed, ["@@VNETLAB@@ TRACE FUNC odd whatever"]);
        let mut c = AgentConfig::with_steps(["true"]);
        c.trace = vec!["netif_carrier_on".into(), "__linkwatch_run_queue".into()];
        assert!(c
            .cmdline()
            .ends_with(" vnetlab.trace=netif_carrier_on,__linkwatch_run_queue"));
        assert!(Transcript::parse("").trace.is_none());
    }

    #[test]
    fn unfinished_runs_show_it() {
        let t = Transcript::parse("@@VNETLAB@@ STEP 1 BEGIN t=1 cmd=sleep%20999\n@@VNETLAB@@ WATCHDOG expired after 5s; powering off\n");
        assert!(t.watchdog && !t.done);
        assert_eq!(t.steps[0].rc, None);
        assert_eq!(Transcript::parse(""), Transcript::default());
    }
}
