//! The kernel-only kernel's boot-time call trace (`probe/vnetlab_trace.c`):
//! function names resolved to addresses through the kernel's `System.map`,
//! the `vnetlab.trace=` argument that carries them, and the parser for the
//! `TRACE` lines the probe prints at its end.
//!
//! The kernel gets addresses rather than names because matching a name in
//! the kernel costs a kallsyms lookup for every traceable function, per
//! name: minutes under this project's instruction emulator. The kernel
//! checks each address against its name before tracing it.
//!
//! Output (after the probe's steps, before its `END`):
//!
//! ```text
//! vnetlab: TRACE BEGIN protocol=1 requested=<n> traced=<n> events=<n> lost=<n>
//! vnetlab: TRACE FUNC <name> traceable addr=<hex>
//! vnetlab: TRACE FUNC <name> untraceable: <reason> (<errno>)
//! vnetlab: TRACE FAIL <reason> (<errno>)
//! vnetlab: TRACE EVENT <n> t=<s.ns> cpu=<c> step=<s> func=<name> caller=<name+off/size>
//! vnetlab: TRACE END events=<n>
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the `TRACE` lines (`TRACE BEGIN protocol=`).
pub const PROTOCOL: u32 = 1;
/// Most `NAME[@ADDRESS]` entries the kernel takes.
pub const MAX_FUNCTIONS: usize = 32;
/// Most events the kernel records; later calls are counted as lost.
pub const MAX_EVENTS: usize = 2048;
/// Longest function name the kernel takes.
pub const MAX_NAME_LEN: usize = 127;

/// Why a trace request cannot be passed to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceRequestError {
    /// A name that is not a C function name.
    #[error("`{0}` is not a kernel function name (letters, digits, `_` and `.`, at most 127).")]
    BadName(String),
    /// More entries than the kernel takes.
    #[error(
        "The trace needs {0} entries (a static function can have several copies), and the \
         kernel-only kernel takes at most 32."
    )]
    TooMany(usize),
}

/// Whether `name` can be a kernel function's name (GCC's `.isra.0`-style
/// suffixes included).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '.')
}

/// A requested function and the addresses of its text symbols in the
/// kernel (none: not in `System.map`; several: static copies of one name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceTarget {
    /// The function's name.
    pub name: String,
    /// Its text symbols' addresses.
    pub addresses: Vec<u64>,
}

/// Looks `functions` up among the text symbols (`t`, `T`, `w`, `W`) of a
/// `System.map`. A name that is not there (inlined, not built in) gets no
/// address; the kernel then reports it as untraceable.
pub fn resolve(
    system_map: &str,
    functions: &[String],
) -> Result<Vec<TraceTarget>, TraceRequestError> {
    if let Some(bad) = functions.iter().find(|f| !valid_name(f)) {
        return Err(TraceRequestError::BadName(bad.clone()));
    }
    let mut found: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for line in system_map.lines() {
        let mut words = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") || !functions.iter().any(|f| f == name) {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(addr, 16) {
            found.entry(name).or_default().push(a);
        }
    }
    let mut targets: Vec<TraceTarget> = Vec::new();
    for f in functions {
        if targets.iter().any(|t| &t.name == f) {
            continue;
        }
        targets.push(TraceTarget {
            name: f.clone(),
            addresses: found.get(f.as_str()).cloned().unwrap_or_default(),
        });
    }
    let entries: usize = targets.iter().map(|t| t.addresses.len().max(1)).sum();
    if entries > MAX_FUNCTIONS {
        return Err(TraceRequestError::TooMany(entries));
    }
    Ok(targets)
}

/// `vnetlab.trace=NAME@ADDR,...` for `targets` (a name without an address
/// is passed bare, so that the kernel reports it); empty for no targets.
pub fn trace_arg(targets: &[TraceTarget]) -> String {
    let items: Vec<String> = targets
        .iter()
        .flat_map(|t| {
            if t.addresses.is_empty() {
                vec![t.name.clone()]
            } else {
                t.addresses
                    .iter()
                    .map(|a| format!("{}@{a:x}", t.name))
                    .collect()
            }
        })
        .collect();
    if items.is_empty() {
        String::new()
    } else {
        format!("vnetlab.trace={}", items.join(","))
    }
}

/// What the kernel said about one requested function (one entry: a static
/// function with several copies has one per copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionReport {
    /// The name as requested.
    pub name: String,
    /// Whether it went into the filter.
    pub traceable: bool,
    /// Its address, when traceable.
    pub address: Option<u64>,
    /// Why not, when untraceable (the kernel's words and errno).
    pub reason: Option<String>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeEvent {
    /// 1-based position in the record (the order of the calls).
    pub seq: u32,
    /// `local_clock()` at the call, nanoseconds (printk's clock).
    pub t_ns: u64,
    /// The CPU.
    pub cpu: u32,
    /// The probe step that was running (0: the boot, before the first step).
    pub step: u32,
    /// The traced function.
    pub function: String,
    /// The function the call came from.
    pub caller: String,
    /// The return address as `name+offset/size`.
    pub caller_at: String,
}

/// The `TRACE` section of one boot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProbeTrace {
    /// Protocol version from `TRACE BEGIN`.
    pub protocol: Option<u32>,
    /// Entries requested (`requested=`).
    pub requested: u32,
    /// Entries in the filter (`traced=`).
    pub traced: u32,
    /// Calls recorded (`events=`).
    pub recorded: u32,
    /// Calls past the end of the record (`lost=`).
    pub lost: u64,
    /// One per requested entry, in order.
    pub functions: Vec<FunctionReport>,
    /// `TRACE FAIL` lines: why tracing did not start, entries dropped.
    pub failures: Vec<String>,
    /// The calls, in order.
    pub events: Vec<ProbeEvent>,
    /// `TRACE END` was seen (the record is whole).
    pub complete: bool,
    /// `TRACE` lines that did not parse.
    pub unparsed: Vec<String>,
}

fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// `3.123456789` seconds as nanoseconds.
fn parse_seconds_ns(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// The function part of `name+0x1a/0x40` (or of `name`).
pub fn function_of(symbol: &str) -> &str {
    symbol.split(['+', ' ']).next().unwrap_or(symbol)
}

fn parse_event(rest: &str) -> Option<ProbeEvent> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let seq = words.first()?.parse().ok()?;
    let caller_at = field(&words, "caller")?.to_string();
    Some(ProbeEvent {
        seq,
        t_ns: parse_seconds_ns(field(&words, "t")?)?,
        cpu: field(&words, "cpu")?.parse().ok()?,
        step: field(&words, "step")?.parse().ok()?,
        function: field(&words, "func")?.to_string(),
        caller: function_of(&caller_at).to_string(),
        caller_at,
    })
}

fn parse_function(rest: &str) -> Option<FunctionReport> {
    let (name, status) = rest.split_once(' ')?;
    if let Some(addr) = status.strip_prefix("traceable") {
        let words: Vec<&str> = addr.split_whitespace().collect();
        return Some(FunctionReport {
            name: name.to_string(),
            traceable: true,
            address: field(&words, "addr").and_then(|a| u64::from_str_radix(a, 16).ok()),
            reason: None,
        });
    }
    let reason = status.strip_prefix("untraceable:")?.trim();
    Some(FunctionReport {
        name: name.to_string(),
        traceable: false,
        address: None,
        reason: Some(reason.to_string()),
    })
}

impl ProbeTrace {
    /// Takes one probe line's text after `TRACE ` (e.g. `EVENT 1 t=...`);
    /// a line that does not parse is kept in `unparsed`.
    pub fn parse_line(&mut self, rest: &str) {
        let (tag, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let ok = match tag {
            "BEGIN" => {
                let words: Vec<&str> = body.split_whitespace().collect();
                let num = |k: &str| field(&words, k).and_then(|v| v.parse::<u64>().ok());
                self.protocol = num("protocol").and_then(|v| u32::try_from(v).ok());
                self.requested = num("requested")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0);
                self.traced = num("traced")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0);
                self.recorded = num("events")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0);
                self.lost = num("lost").unwrap_or(0);
                self.protocol.is_some()
            }
            "FUNC" => parse_function(body)
                .map(|f| self.functions.push(f))
                .is_some(),
            "FAIL" => {
                self.failures.push(body.to_string());
                true
            }
            "EVENT" => parse_event(body).map(|e| self.events.push(e)).is_some(),
            "END" => {
                self.complete = true;
                true
            }
            _ => false,
        };
        if !ok {
            self.unparsed.push(rest.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
ffffffff81103a60 t virtnet_probe
ffffffff811069b4 t netif_carrier_ok
ffffffff8111a45b t netif_carrier_ok
ffffffff81140635 T netif_carrier_on
ffffffff8197fd00 b linkwatch_flags
ffffffff818c62c0 d linkwatch_work
garbage
";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn names_resolve_to_text_symbols_only() {
        let t = resolve(
            MAP,
            &names(&[
                "netif_carrier_on",
                "netif_carrier_ok",
                "default_operstate",
                "linkwatch_work",
                "netif_carrier_on",
            ]),
        )
        .unwrap();
        assert_eq!(t.len(), 4, "duplicates are dropped");
        assert_eq!(t[0].addresses, [0xffff_ffff_8114_0635]);
        assert_eq!(t[1].addresses.len(), 2, "two static copies");
        assert!(t[2].addresses.is_empty(), "inlined: not in the map");
        assert!(t[3].addresses.is_empty(), "data, not text");
        assert_eq!(
            trace_arg(&t),
            "vnetlab.trace=netif_carrier_on@ffffffff81140635,\
             netif_carrier_ok@ffffffff811069b4,netif_carrier_ok@ffffffff8111a45b,\
             default_operstate,linkwatch_work"
        );
        assert_eq!(trace_arg(&[]), "");
    }

    #[test]
    fn bad_requests_are_refused() {
        for bad in ["", "a b", "x,y", "1abc", "a@b", &"x".repeat(128)] {
            assert!(matches!(
                resolve(MAP, &names(&[bad])),
                Err(TraceRequestError::BadName(_))
            ));
        }
        assert!(valid_name("foo.isra.0") && valid_name("__linkwatch_run_queue"));
        let many: Vec<String> = (0..33).map(|i| format!("f{i}")).collect();
        let e = resolve(MAP, &many).unwrap_err();
        assert_eq!(e, TraceRequestError::TooMany(33));
        assert!(e.to_string().ends_with("at most 32."));
    }

    #[test]
    fn trace_lines_parse() {
        let mut t = ProbeTrace::default();
        for line in [
            "BEGIN protocol=1 requested=3 traced=2 events=2 lost=5",
            "FUNC netif_carrier_off traceable addr=ffffffff8114066b",
            "FUNC default_operstate untraceable: not a function of this kernel's System.map (inlined, or not built in) (-2)",
            "EVENT 1 t=3.000123456 cpu=0 step=0 func=netif_carrier_off caller=virtnet_probe+0x5b0/0x9a0",
            "EVENT 2 t=12.5 cpu=1 step=2 func=linkwatch_fire_event caller=netif_carrier_on+0x30/0x36",
            "EVENT x",
            "FAIL none of the requested functions can be traced; ftrace was not started (-2)",
            "END events=2",
        ] {
            t.parse_line(line);
        }
        assert_eq!(
            (t.protocol, t.requested, t.traced, t.lost),
            (Some(1), 3, 2, 5)
        );
        assert!(t.complete);
        assert_eq!(t.functions.len(), 2);
        assert_eq!(t.functions[0].address, Some(0xffff_ffff_8114_066b));
        assert!(!t.functions[1].traceable);
        assert!(t.functions[1]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("not a function"));
        assert_eq!(t.events.len(), 2);
        assert_eq!(t.events[0].t_ns, 3_000_123_456);
        assert_eq!(t.events[0].caller, "virtnet_probe");
        assert_eq!(t.events[1].t_ns, 12_500_000_000);
        assert_eq!((t.events[1].cpu, t.events[1].step), (1, 2));
        assert_eq!(t.unparsed, ["EVENT x"]);
        assert_eq!(t.failures.len(), 1);
    }

    /// Real transcripts: the pre-fix kernel on virtio-mmio, the operstate
    /// sequence, the default link-state set traced, device without and
    /// with STATUS (`vmm` under the emulated KVM).
    #[test]
    fn real_traces_show_the_missing_carrier_off() {
        let calls = |serial: &str| -> Vec<String> {
            let r = crate::kernel_only::probe::parse_output(serial);
            assert!(r.passed(), "{r:?}");
            let t = r.trace.expect("a TRACE section");
            assert!(t.complete && t.unparsed.is_empty() && t.lost == 0, "{t:?}");
            assert_eq!((t.requested, t.traced), (13, 12));
            let untraceable: Vec<&str> = t
                .functions
                .iter()
                .filter(|f| !f.traceable)
                .map(|f| f.name.as_str())
                .collect();
            assert_eq!(untraceable, ["default_operstate"]);
            assert!(t.events.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
            t.events
                .iter()
                .filter(|e| e.step == 0)
                .map(|e| format!("{} <- {}", e.function, e.caller))
                .collect()
        };
        let abnormal = calls(include_str!(
            "../../kernel-only/testdata/trace-prefix-nostatus-mmio.serial"
        ));
        let normal = calls(include_str!(
            "../../kernel-only/testdata/trace-prefix-status-mmio.serial"
        ));
        let probe = |c: &[String]| {
            c.iter()
                .position(|x| x == "virtnet_probe <- virtio_dev_probe")
        };
        let (a, b) = (probe(&normal).unwrap(), probe(&abnormal).unwrap());
        assert_eq!(normal[a + 2], "netif_carrier_off <- virtnet_probe");
        assert_eq!(abnormal[b + 2], "netif_carrier_on <- virtnet_probe");
        assert!(!abnormal.iter().any(|c| c.starts_with("netif_carrier_off")));
        assert!(!abnormal
            .iter()
            .any(|c| c.starts_with("linkwatch_fire_event")));
        assert!(normal
            .iter()
            .any(|c| c == "rfc2863_policy <- linkwatch_do_dev"));
    }

    #[test]
    fn odd_numbers_do_not_panic() {
        for t in [
            "",
            ".",
            "1.0000000001",
            "x.1",
            "99999999999999999999.1",
            "1.-5",
        ] {
            assert_eq!(parse_seconds_ns(t), None, "{t}");
        }
        assert_eq!(parse_seconds_ns("2"), Some(2_000_000_000));
        assert_eq!(function_of("virtnet_probe+0x5b0/0x9a0"), "virtnet_probe");
        assert_eq!(function_of("process_one_work"), "process_one_work");
    }
}
