//! The guest's serial console as the harness keeps it: the last lines, in a
//! buffer an engine fills while the guest runs and the runner can read even
//! when the engine hangs; and recognising a kernel panic in them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many lines a [`SerialTail`] keeps by default.
pub const DEFAULT_LINES: usize = 40;

/// The last lines of a serial console, shared between an engine and the
/// runner (cloning shares the buffer).
#[derive(Debug, Clone)]
pub struct SerialTail {
    inner: Arc<Mutex<Tail>>,
}

#[derive(Debug)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
    /// The start of a UTF-8 character whose other bytes have not come yet.
    pending: Vec<u8>,
    capacity: usize,
}

impl Default for SerialTail {
    fn default() -> Self {
        Self::new(DEFAULT_LINES)
    }
}

impl SerialTail {
    /// A buffer that keeps the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Tail {
                lines: VecDeque::new(),
                partial: String::new(),
                pending: Vec::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tail) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-push; the
        // lines are still worth reading.
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Appends raw console output; splits it into lines at `\n` and drops
    /// `\r`. An unfinished last line is kept apart until its end arrives.
    /// A character split between two calls is put back together.
    pub fn push_bytes(&self, bytes: &[u8]) {
        self.with(|t| {
            let mut buf = std::mem::take(&mut t.pending);
            buf.extend_from_slice(bytes);
            let keep = incomplete_tail(&buf);
            t.pending = buf.split_off(buf.len() - keep);
            let text = String::from_utf8_lossy(&buf);
            for c in text.chars() {
                match c {
                    '\n' => {
                        let line = std::mem::take(&mut t.partial);
                        t.push(line);
                    }
                    '\r' => {}
                    c => t.partial.push(c),
                }
            }
        });
    }

    /// Appends one complete line (after an unfinished one, if any).
    pub fn push_line(&self, line: &str) {
        self.with(|t| {
            if !t.partial.is_empty() {
                let partial = std::mem::take(&mut t.partial);
                t.push(partial);
            }
            t.push(line.trim_end_matches(['\r', '\n']).to_string());
        });
    }

    /// The last `n` lines (at most the capacity), oldest first, including
    /// an unfinished one.
    pub fn last(&self, n: usize) -> Vec<String> {
        self.with(|t| {
            let mut all: Vec<String> = t.lines.iter().cloned().collect();
            if !t.partial.is_empty() {
                all.push(t.partial.clone());
            }
            let skip = all.len().saturating_sub(n.min(t.capacity));
            all.split_off(skip)
        })
    }

    /// Every line kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.last(usize::MAX)
    }
}

impl Tail {
    fn push(&mut self, line: String) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// The kernel's panic line (`Kernel panic - not syncing: ...`), if any of
/// `lines` has one.
pub fn kernel_panic(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        l.find("Kernel panic - not syncing")
            .map(|i| l[i..].to_string())
    })
}

/// How many bytes at the end of `b` start a UTF-8 character that is not
/// complete yet (0 to 3).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let byte = b[b.len() - back];
        if byte & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_reads_is_whole() {
        let t = SerialTail::new(4);
        let text = "état: ✓ 🦀\n".as_bytes();
        for b in text {
            t.push_bytes(std::slice::from_ref(b));
        }
        // Invalid bytes are still replaced, and do not hold text back.
        t.push_bytes(b"a\xffb\n");
        assert_eq!(t.lines(), ["état: ✓ 🦀", "a\u{fffd}b"]);
        assert_eq!(incomplete_tail(b"ok"), 0);
        assert_eq!(incomplete_tail("✓".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"✓".as_bytes()[..2]), 2);
    }

    #[test]
    fn keeps_the_last_lines_across_chunks() {
        let t = SerialTail::new(3);
        t.push_bytes(b"one\r\ntw");
        assert_eq!(t.lines(), ["one", "tw"]);
        t.push_bytes(b"o\nthree\nfour\nfi");
        assert_eq!(t.lines(), ["three", "four", "fi"]);
        assert_eq!(t.last(1), ["fi"]);
        let shared = t.clone();
        shared.push_line("five\r\n");
        assert_eq!(t.lines(), ["four", "fi", "five"]);
    }

    #[test]
    fn invalid_utf8_does_not_panic() {
        let t = SerialTail::default();
        t.push_bytes(&[0xff, 0xfe, b'\n']);
        assert_eq!(t.lines().len(), 1);
    }

    #[test]
    fn finds_a_panic() {
        let lines = vec![
            "[    1.0] ok".to_string(),
            "[    2.0] Kernel panic - not syncing: VFS: Unable to mount root fs".to_string(),
        ];
        assert_eq!(
            kernel_panic(&lines).as_deref(),
            Some("Kernel panic - not syncing: VFS: Unable to mount root fs")
        );
        assert_eq!(kernel_panic(&lines[..1]), None);
    }
}
