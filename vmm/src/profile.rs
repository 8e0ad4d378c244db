//! A sampling profile of the guest: the VMM interrupts each vCPU at a fixed
//! interval and counts where its instruction pointer was, to show where a
//! slow boot spends its time (by kernel function, given a System.map).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::symbols::SymbolMap;

/// Instruction-pointer samples, shared with the vCPU threads.
#[derive(Debug, Clone, Default)]
pub struct RipProfile {
    samples: Arc<Mutex<HashMap<u64, u64>>>,
}

impl RipProfile {
    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one sample at `rip`.
    pub fn record(&self, rip: u64) {
        *self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(rip)
            .or_default() += 1;
    }

    /// The samples: address and count.
    pub fn samples(&self) -> HashMap<u64, u64> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A report: total samples, then the `top` functions (or addresses,
    /// without a map) by samples, with their share.
    pub fn report(&self, symbols: Option<&SymbolMap>, top: usize) -> String {
        let samples = self.samples();
        let total: u64 = samples.values().sum();
        let mut by_name: HashMap<String, u64> = HashMap::new();
        for (rip, n) in samples {
            let name = match symbols.and_then(|m| m.lookup(rip)) {
                Some((name, _)) => name.to_owned(),
                None => format!("{rip:#x}"),
            };
            *by_name.entry(name).or_default() += n;
        }
        let mut rows: Vec<(String, u64)> = by_name.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut out = format!("{total} samples\n");
        for (name, n) in rows.into_iter().take(top) {
            let share = if total == 0 {
                0.0
            } else {
                100.0 * n as f64 / total as f64
            };
            out.push_str(&format!("{share:6.2}% {n:8} {name}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_groups_by_function() {
        let p = RipProfile::new();
        for rip in [0x1010, 0x1020, 0x1020, 0x2000, 0x9999] {
            p.record(rip);
        }
        let map = SymbolMap::parse("1000 T alpha\n2000 T beta\n");
        let r = p.report(Some(&map), 10);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "5 samples");
        // 0x9999 falls in beta, the last symbol before it.
        assert_eq!(lines[1], " 60.00%        3 alpha");
        assert_eq!(lines[2], " 40.00%        2 beta");
        let bare = p.report(None, 1);
        assert_eq!(bare.lines().count(), 2);
        assert!(bare.contains("0x1020"));
    }
}
