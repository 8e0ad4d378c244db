//! Two kernel call traces lined up: the calls (`function <- caller`) of A
//! and B matched in order by a longest common subsequence (timestamps and
//! CPUs are not compared), the first place where they part, the calls whose
//! counts differ, the functions that ran on one side only, and whether the
//! link-watch chain ran at all. [`render`] writes it for people; the
//! structure is serialisable for tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{KernelTrace, TraceEvent};

/// The functions through which a carrier change becomes an operstate:
/// `netif_carrier_on/off()` fire a link-watch event, the link-watch work
/// runs the queue, and `rfc2863_policy()` (which holds the inlined
/// `default_operstate()`) sets `dev->operstate`.
pub const LINK_WATCH_CHAIN: &[&str] = &[
    "linkwatch_fire_event",
    "linkwatch_event",
    "__linkwatch_run_queue",
    "linkwatch_do_dev",
    "rfc2863_policy",
];

/// Beyond this many differing calls in the middle, the traces are not
/// lined up call by call (the table would be quadratic in size).
pub const MAX_ALIGNED: usize = 2000;

/// One side of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// How sentences name it: `A`, or e.g. `the abnormal run`.
    pub name: &'a str,
    /// The scenario it comes from.
    pub scenario: &'a str,
    /// The engine that ran it.
    pub engine: &'a str,
    /// The scenario's steps, as words (`boot`, `link-up`, ...), to name the
    /// step of each call.
    pub steps: &'a [String],
    /// The trace.
    pub trace: &'a KernelTrace,
}

/// What the comparison says about one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideInfo {
    /// How sentences name it.
    pub name: String,
    /// The scenario.
    pub scenario: String,
    /// The engine.
    pub engine: String,
    /// How the trace was recorded.
    pub source: String,
    /// Calls recorded.
    pub events: usize,
    /// Whatever makes the trace less than whole.
    pub problems: Vec<String>,
}

/// A call as the comparison shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRef {
    /// Its 1-based position in its trace.
    pub seq: usize,
    /// `function <- caller`.
    pub call: String,
    /// The scenario step that was running, as a word.
    pub step: Option<String>,
}

/// One line of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// A's call on this line, if any.
    pub a: Option<CallRef>,
    /// B's call on this line, if any.
    pub b: Option<CallRef>,
}

impl Row {
    /// Both sides have the same call here.
    pub fn same(&self) -> bool {
        matches!((&self.a, &self.b), (Some(a), Some(b)) if a.call == b.call)
    }
}

/// Where the traces first part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Calls in common before it.
    pub common_before: usize,
    /// A's calls there that B lacks (up to the next call in common).
    pub only_a: Vec<CallRef>,
    /// B's calls there that A lacks.
    pub only_b: Vec<CallRef>,
}

/// A call (`function <- caller`) made a different number of times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    /// `function <- caller`.
    pub call: String,
    /// Times in A.
    pub a: usize,
    /// Times in B.
    pub b: usize,
}

/// A traced function that ran on one side and never on the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeverRan {
    /// The function.
    pub function: String,
    /// The side it never ran on: `A` or `B`.
    pub never_in: String,
    /// How often it ran on the other side.
    pub calls_elsewhere: usize,
}

/// A chain of functions that ran on one side and not at all on the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFinding {
    /// The chain's name (`link watch`).
    pub chain: String,
    /// Its functions that were traced on both sides.
    pub functions: Vec<String>,
    /// The side it never ran on: `A` or `B`.
    pub never_in: String,
    /// Its calls on the other side.
    pub calls_elsewhere: usize,
}

/// A requested function one side could not trace: its counts are not
/// compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCompared {
    /// The function.
    pub function: String,
    /// A's reason, when A could not trace it.
    pub a: Option<String>,
    /// B's reason, when B could not trace it.
    pub b: Option<String>,
}

/// Two traces lined up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceComparison {
    /// The first trace.
    pub a: SideInfo,
    /// The second trace.
    pub b: SideInfo,
    /// Whether the calls are the same, in the same order (never when no
    /// function was traced on both sides).
    pub same: bool,
    /// How many functions were traced on both sides and compared.
    pub compared: usize,
    /// The side-by-side table.
    pub rows: Vec<Row>,
    /// Where they first part.
    pub first_divergence: Option<Divergence>,
    /// Calls made a different number of times, in order of first appearance.
    pub calls: Vec<CallCount>,
    /// Traced functions that ran on one side only.
    pub never_ran: Vec<NeverRan>,
    /// Chains that ran on one side only.
    pub chains: Vec<ChainFinding>,
    /// Functions not traced on one side or both.
    pub not_compared: Vec<NotCompared>,
    /// Whether the middle was too long to line up call by call.
    pub truncated: bool,
}

fn call_ref(side: &Side<'_>, e: &TraceEvent) -> CallRef {
    CallRef {
        seq: e.seq,
        call: e.call(),
        step: e.step.map(|s| {
            side.steps
                .get(s)
                .cloned()
                .unwrap_or_else(|| format!("step {s}"))
        }),
    }
}

/// Index pairs of a longest common subsequence of `a` and `b`, or `None`
/// when the table would be larger than [`MAX_ALIGNED`] squared.
fn lcs(a: &[String], b: &[String]) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (a.len(), b.len());
    if n > MAX_ALIGNED || m > MAX_ALIGNED {
        return None;
    }
    let width = m + 1;
    let mut table = vec![0u16; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i] == b[j] {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut pairs = Vec::new();
    while i < n && j < m {
        if a[i] == b[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    Some(pairs)
}

/// The matched index pairs of the two call lists: common prefix and suffix
/// first, the middle by LCS (or left unmatched when too long).
fn align(a: &[String], b: &[String]) -> (Vec<(usize, usize)>, bool) {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut pairs: Vec<(usize, usize)> = (0..prefix).map(|i| (i, i)).collect();
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let middle = lcs(a_mid, b_mid);
    let truncated = middle.is_none();
    pairs.extend(
        middle
            .unwrap_or_default()
            .into_iter()
            .map(|(i, j)| (i + prefix, j + prefix)),
    );
    pairs.extend((0..suffix).map(|k| (a.len() - suffix + k, b.len() - suffix + k)));
    (pairs, truncated)
}

fn side_info(side: &Side<'_>) -> SideInfo {
    SideInfo {
        name: side.name.to_string(),
        scenario: side.scenario.to_string(),
        engine: side.engine.to_string(),
        source: side.trace.source.clone(),
        events: side.trace.events.len(),
        problems: side.trace.problems.clone(),
    }
}

fn count_by<'e, F: Fn(&TraceEvent) -> String>(
    events: impl Iterator<Item = &'e TraceEvent>,
    key: F,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(key(e)).or_default() += 1;
    }
    out
}

/// Lines up the traces of `a` and `b`: only the calls of functions traced
/// on both sides take part (a function one side did not trace says nothing
/// about the other; such functions are listed as not compared).
pub fn compare(a: &Side<'_>, b: &Side<'_>) -> TraceComparison {
    let (ta, tb) = (a.trace, b.trace);
    let fa = count_by(ta.events.iter(), |e| e.function.clone());
    let fb = count_by(tb.events.iter(), |e| e.function.clone());
    // A function seen in events was traced even when the request did not
    // name it (a trace from elsewhere); one named but untraceable was not.
    let traced = |t: &KernelTrace, counts: &BTreeMap<String, usize>, f: &str| {
        t.traced(f) || counts.contains_key(f)
    };
    let both = |f: &str| traced(ta, &fa, f) && traced(tb, &fb, f);
    let ea: Vec<&TraceEvent> = ta.events.iter().filter(|e| both(&e.function)).collect();
    let eb: Vec<&TraceEvent> = tb.events.iter().filter(|e| both(&e.function)).collect();
    let calls_a: Vec<String> = ea.iter().map(|e| e.call()).collect();
    let calls_b: Vec<String> = eb.iter().map(|e| e.call()).collect();
    let (pairs, truncated) = align(&calls_a, &calls_b);

    let mut rows = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut first_divergence = None;
    let mut common = 0;
    for &(pi, pj) in pairs
        .iter()
        .chain(std::iter::once(&(calls_a.len(), calls_b.len())))
    {
        let only_a: Vec<CallRef> = ea[i..pi].iter().map(|e| call_ref(a, e)).collect();
        let only_b: Vec<CallRef> = eb[j..pj].iter().map(|e| call_ref(b, e)).collect();
        if first_divergence.is_none() && (!only_a.is_empty() || !only_b.is_empty()) {
            first_divergence = Some(Divergence {
                common_before: common,
                only_a: only_a.clone(),
                only_b: only_b.clone(),
            });
        }
        rows.extend(only_a.into_iter().map(|r| Row {
            a: Some(r),
            b: None,
        }));
        rows.extend(only_b.into_iter().map(|r| Row {
            a: None,
            b: Some(r),
        }));
        if pi < calls_a.len() && pj < calls_b.len() {
            rows.push(Row {
                a: Some(call_ref(a, ea[pi])),
                b: Some(call_ref(b, eb[pj])),
            });
            common += 1;
        }
        i = pi + 1;
        j = pj + 1;
    }

    let (ca, cb) = (
        count_by(ea.iter().copied(), TraceEvent::call),
        count_by(eb.iter().copied(), TraceEvent::call),
    );
    let mut calls = Vec::new();
    for call in calls_a.iter().chain(&calls_b) {
        let (x, y) = (
            ca.get(call).copied().unwrap_or(0),
            cb.get(call).copied().unwrap_or(0),
        );
        if x != y && !calls.iter().any(|c: &CallCount| &c.call == call) {
            calls.push(CallCount {
                call: call.clone(),
                a: x,
                b: y,
            });
        }
    }

    let mut functions: Vec<String> = ta.requested.clone();
    for f in tb.requested.iter().chain(fa.keys()).chain(fb.keys()) {
        if !functions.contains(f) {
            functions.push(f.clone());
        }
    }
    let mut compared = 0;
    let mut never_ran = Vec::new();
    let mut not_compared = Vec::new();
    for f in &functions {
        let (in_a, in_b) = (traced(ta, &fa, f), traced(tb, &fb, f));
        if !in_a || !in_b {
            let why = |t: &KernelTrace| {
                t.functions
                    .iter()
                    .find(|s| &s.name == f)
                    .and_then(|s| s.reason.clone())
                    .unwrap_or_else(|| "not requested".to_string())
            };
            not_compared.push(NotCompared {
                function: f.clone(),
                a: (!in_a).then(|| why(ta)),
                b: (!in_b).then(|| why(tb)),
            });
            continue;
        }
        compared += 1;
        let (x, y) = (
            fa.get(f).copied().unwrap_or(0),
            fb.get(f).copied().unwrap_or(0),
        );
        if x > 0 && y == 0 {
            never_ran.push(NeverRan {
                function: f.clone(),
                never_in: "B".into(),
                calls_elsewhere: x,
            });
        } else if y > 0 && x == 0 {
            never_ran.push(NeverRan {
                function: f.clone(),
                never_in: "A".into(),
                calls_elsewhere: y,
            });
        }
    }

    let chain: Vec<String> = LINK_WATCH_CHAIN
        .iter()
        .map(|f| (*f).to_string())
        .filter(|f| traced(ta, &fa, f) && traced(tb, &fb, f))
        .collect();
    let total = |counts: &BTreeMap<String, usize>| -> usize {
        chain
            .iter()
            .map(|f| counts.get(f).copied().unwrap_or(0))
            .sum()
    };
    let (chain_a, chain_b) = (total(&fa), total(&fb));
    let mut chains = Vec::new();
    if !chain.is_empty() && (chain_a == 0) != (chain_b == 0) {
        chains.push(ChainFinding {
            chain: "link watch".into(),
            functions: chain.clone(),
            never_in: if chain_b == 0 { "B" } else { "A" }.into(),
            calls_elsewhere: chain_a.max(chain_b),
        });
    }

    TraceComparison {
        a: side_info(a),
        b: side_info(b),
        same: compared > 0 && first_divergence.is_none() && !truncated,
        compared,
        rows,
        first_divergence,
        calls,
        never_ran,
        chains,
        not_compared,
        truncated,
    }
}

#[cfg(test)]
mod tests;
