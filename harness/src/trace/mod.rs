//! Kernel call traces: which kernel functions a scenario asks the guest to
//! record ([`TraceRequest`]), what an engine brings back ([`KernelTrace`]:
//! the requested functions the kernel could or could not trace, and the
//! calls in the order they happened), and how two traces line up
//! ([`compare`]).
//!
//! Two routes record them. Guests with user space (the Debian kernels
//! under QEMU or `vmm-guest`) run the guest agent, which sets up the
//! tracefs function tracer and dumps its buffer ([`ftrace`], [`agent`]);
//! the kernel-only test kernel records the calls itself from early boot and
//! its probe prints them ([`probe`]).

pub mod agent;
pub mod compare;
pub mod ftrace;
pub mod probe;
pub mod saved;
mod text;

pub use text::{event_lines, render, summary_lines};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default set: the functions of link-state handling, from the driver
/// to link watch, as the original investigation probed them.
/// `default_operstate` is inlined into `rfc2863_policy` in Debian's 6.1 and
/// the lab's test kernel, so it is reported as untraceable there: it is in
/// the set to show that a function the kernel cannot trace is named, not
/// dropped.
pub const LINK_STATE_FUNCTIONS: &[&str] = &[
    "virtnet_probe",
    "virtnet_open",
    "virtnet_config_changed_work",
    "netif_carrier_on",
    "netif_carrier_off",
    "linkwatch_init_dev",
    "linkwatch_fire_event",
    "linkwatch_event",
    "__linkwatch_run_queue",
    "linkwatch_do_dev",
    "rfc2863_policy",
    "default_operstate",
    "dev_activate",
];

/// Most functions one request may name (the kernel-only kernel takes 32
/// entries; the agent's command line has room for about as many).
pub const MAX_FUNCTIONS: usize = 32;

/// A scenario's request for a kernel call trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// The functions to record, in the order given, without duplicates.
    pub functions: Vec<String>,
}

/// Why a trace request is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceRequestError {
    /// The list is empty.
    #[error("the trace names no function; give at least one, or `true` for the default set")]
    Empty,
    /// A name that cannot be a kernel function's.
    #[error(
        "`{0}` is not a kernel function name (letters, digits, `_` and `.`, not starting with a \
         digit, at most 127 characters)"
    )]
    BadName(String),
    /// Too many names.
    #[error("the trace names {0} functions; at most 32 can be traced at once")]
    TooMany(usize),
}

impl Default for TraceRequest {
    fn default() -> Self {
        Self::link_state()
    }
}

impl TraceRequest {
    /// The default set, [`LINK_STATE_FUNCTIONS`].
    pub fn link_state() -> Self {
        Self {
            functions: LINK_STATE_FUNCTIONS
                .iter()
                .map(|f| (*f).to_string())
                .collect(),
        }
    }

    /// A request for `functions` (duplicates dropped), checked.
    pub fn new<I, S>(functions: I) -> Result<Self, TraceRequestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for f in functions {
            let f = f.into();
            if !guest_images::kernel_only::trace::valid_name(&f) {
                return Err(TraceRequestError::BadName(f));
            }
            if !list.contains(&f) {
                list.push(f);
            }
        }
        if list.is_empty() {
            return Err(TraceRequestError::Empty);
        }
        if list.len() > MAX_FUNCTIONS {
            return Err(TraceRequestError::TooMany(list.len()));
        }
        Ok(Self { functions: list })
    }

    /// Parses the command line's `--trace` value: `default` (or
    /// `link-state`) for the default set, else a comma-separated list in
    /// which `default` adds the default set.
    pub fn parse_list(text: &str) -> Result<Self, TraceRequestError> {
        let mut names: Vec<String> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "default" | "link-state" => {
                    names.extend(LINK_STATE_FUNCTIONS.iter().map(|f| (*f).to_string()))
                }
                _ => names.push(item.to_string()),
            }
        }
        Self::new(names)
    }
}

/// What became of one requested function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionStatus {
    /// The function.
    pub name: String,
    /// Whether the kernel traced it.
    pub traceable: bool,
    /// Why not, in the guest's words, when it did not.
    pub reason: Option<String>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// 1-based position in the trace.
    pub seq: usize,
    /// The function that was called.
    pub function: String,
    /// The function it was called from (ftrace's `<-parent`).
    pub caller: String,
    /// The kernel's clock at the call, nanoseconds since boot (the clock of
    /// printk's timestamps).
    pub timestamp_ns: u64,
    /// The CPU it ran on.
    pub cpu: u32,
    /// The scenario step that was running (an index into its `steps`; 0,
    /// `boot`, until the first step after it began), when known.
    pub step: Option<usize>,
    /// The task that made the call (`comm-pid`), when the route records it.
    pub task: Option<String>,
}

impl TraceEvent {
    /// `function <- caller`, as ftrace prints a call.
    pub fn call(&self) -> String {
        format!("{} <- {}", self.function, self.caller)
    }
}

/// A scenario's kernel call trace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KernelTrace {
    /// How it was recorded (e.g. `tracefs function tracer, set up by the
    /// guest agent`).
    pub source: String,
    /// The functions asked for, in order.
    pub requested: Vec<String>,
    /// What became of each of them, in the same order.
    pub functions: Vec<FunctionStatus>,
    /// The calls, in the order they happened.
    pub events: Vec<TraceEvent>,
    /// Calls the guest could not keep (buffer full).
    pub lost: u64,
    /// Whether the guest delivered the whole record.
    pub complete: bool,
    /// Anything that makes the trace less than whole: tracing could not be
    /// set up, lines that did not parse, a record cut short.
    pub problems: Vec<String>,
}

/// The trace a scenario's result holds, or why it holds none.
pub fn of_result(r: &crate::outcome::ScenarioResult) -> Result<&KernelTrace, String> {
    if let Some(t) = r.observation.as_ref().and_then(|o| o.trace.as_ref()) {
        return Ok(t);
    }
    Err(if r.scenario.trace.is_none() {
        format!("{} did not ask for a kernel call trace", r.scenario.name)
    } else {
        format!(
            "{} brought no trace back: it is {}{}",
            r.scenario.name,
            r.verdict.as_str(),
            r.reason
                .as_deref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        )
    })
}

impl KernelTrace {
    /// An empty trace of `request` that says why there are no events.
    pub fn unavailable(source: &str, request: &TraceRequest, why: &str) -> Self {
        Self {
            source: source.to_string(),
            requested: request.functions.clone(),
            functions: request
                .functions
                .iter()
                .map(|f| FunctionStatus {
                    name: f.clone(),
                    traceable: false,
                    reason: Some(why.to_string()),
                })
                .collect(),
            events: Vec::new(),
            lost: 0,
            complete: false,
            problems: vec![why.to_string()],
        }
    }

    /// Calls per requested function (0 for one that never ran), in the
    /// order requested, then any other function the trace holds.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &self.events {
            *counts.entry(e.function.as_str()).or_default() += 1;
        }
        let mut out: Vec<(String, usize)> = self
            .requested
            .iter()
            .map(|f| (f.clone(), counts.remove(f.as_str()).unwrap_or(0)))
            .collect();
        out.extend(counts.into_iter().map(|(f, n)| (f.to_string(), n)));
        out
    }

    /// The requested functions the kernel could not trace.
    pub fn untraceable(&self) -> impl Iterator<Item = &FunctionStatus> {
        self.functions.iter().filter(|f| !f.traceable)
    }

    /// Whether `function` was traced (so that "never called" means it).
    pub fn traced(&self, function: &str) -> bool {
        self.functions
            .iter()
            .any(|f| f.name == function && f.traceable)
    }

    /// Merges per-entry statuses into one per requested name, in request
    /// order: traceable when any entry was; a name the guest never
    /// mentioned is untraceable with that said.
    pub fn set_statuses(&mut self, entries: &[FunctionStatus]) {
        self.functions = self
            .requested
            .iter()
            .map(|name| {
                let mine: Vec<&FunctionStatus> =
                    entries.iter().filter(|e| &e.name == name).collect();
                if mine.iter().any(|e| e.traceable) {
                    FunctionStatus {
                        name: name.clone(),
                        traceable: true,
                        reason: None,
                    }
                } else {
                    let reasons: Vec<&str> =
                        mine.iter().filter_map(|e| e.reason.as_deref()).collect();
                    FunctionStatus {
                        name: name.clone(),
                        traceable: false,
                        reason: Some(if reasons.is_empty() {
                            "the guest did not report on it".to_string()
                        } else {
                            reasons.join("; ")
                        }),
                    }
                }
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: usize, function: &str, caller: &str) -> TraceEvent {
        TraceEvent {
            seq,
            function: function.into(),
            caller: caller.into(),
            timestamp_ns: seq as u64,
            cpu: 0,
            step: Some(0),
            task: None,
        }
    }

    #[test]
    fn requests_are_checked() {
        let d = TraceRequest::default();
        assert_eq!(d.functions.len(), LINK_STATE_FUNCTIONS.len());
        assert!(d.functions.contains(&"linkwatch_init_dev".to_string()));
        assert_eq!(
            TraceRequest::new(["a", "b", "a"]).unwrap().functions,
            ["a", "b"]
        );
        assert_eq!(
            TraceRequest::new(Vec::<String>::new()),
            Err(TraceRequestError::Empty)
        );
        assert!(matches!(
            TraceRequest::new(["ok", "not ok"]),
            Err(TraceRequestError::BadName(n)) if n == "not ok"
        ));
        let many: Vec<String> = (0..33).map(|i| format!("f{i}")).collect();
        assert_eq!(TraceRequest::new(many), Err(TraceRequestError::TooMany(33)));
        let p = TraceRequest::parse_list("netif_carrier_on, default,rfc2863_policy").unwrap();
        assert_eq!(p.functions[0], "netif_carrier_on");
        assert_eq!(p.functions.len(), LINK_STATE_FUNCTIONS.len());
        assert_eq!(TraceRequest::parse_list("default").unwrap(), d);
        assert!(TraceRequest::parse_list(",").is_err());
    }

    #[test]
    fn counts_and_statuses() {
        let mut t = KernelTrace {
            requested: vec!["a".into(), "b".into(), "c".into()],
            events: vec![event(1, "a", "x"), event(2, "z", "a"), event(3, "a", "y")],
            ..KernelTrace::default()
        };
        assert_eq!(
            t.counts(),
            [
                ("a".to_string(), 2),
                ("b".to_string(), 0),
                ("c".to_string(), 0),
                ("z".to_string(), 1)
            ]
        );
        let entry = |name: &str, ok: bool, why: Option<&str>| FunctionStatus {
            name: name.into(),
            traceable: ok,
            reason: why.map(Into::into),
        };
        t.set_statuses(&[
            entry("a", false, Some("copy 1 is notrace")),
            entry("a", true, None),
            entry("b", false, Some("inlined")),
        ]);
        assert!(t.traced("a") && !t.traced("b"));
        let un: Vec<&str> = t.untraceable().map(|f| f.name.as_str()).collect();
        assert_eq!(un, ["b", "c"]);
        assert_eq!(
            t.functions[2].reason.as_deref(),
            Some("the guest did not report on it")
        );
        assert_eq!(event(1, "f", "g").call(), "f <- g");
        let u = KernelTrace::unavailable("s", &TraceRequest::new(["a"]).unwrap(), "no tracefs");
        assert_eq!(u.problems, ["no tracefs"]);
        assert!(!u.functions[0].traceable);
    }
}
