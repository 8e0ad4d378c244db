//! A machine-readable event log: one JSON object per line, stamped with the
//! microseconds since the log was opened (a monotonic clock), written to a
//! file or any writer and mirrored to the `log` crate.
//!
//! Every line has `t_us`, `source` (the device, e.g. `net0`) and `event`
//! (e.g. `link_change`), plus the event's own fields. The first line is a
//! `log_started` event with the wall-clock time, so a reader can relate the
//! two clocks. The log is for events a person or harness wants to see
//! (feature negotiation, status changes, interrupts, errors), not for
//! per-frame traffic.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::sync::lock;

struct Inner {
    start: Instant,
    out: Mutex<Box<dyn Write + Send>>,
}

/// A handle on an event log; clones write to the same log. The default
/// handle writes nowhere but still mirrors events to `log`.
#[derive(Clone, Default)]
pub struct EventLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl EventLog {
    /// A log that only mirrors to `log`.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A log written to `out`, one line per event.
    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        let log = Self {
            inner: Some(Arc::new(Inner {
                start: Instant::now(),
                out: Mutex::new(Box::new(out)),
            })),
        };
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        log.record(
            log::Level::Debug,
            "event_log",
            "log_started",
            serde_json::json!({ "unix_ms": unix_ms, "pid": std::process::id() }),
        );
        log
    }

    /// A log written to a new (or truncated) file at `path`.
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self::to_writer(File::create(path)?))
    }

    /// A log kept in memory, with a reader for tests.
    pub fn in_memory() -> (Self, EventBuffer) {
        let buf = EventBuffer::default();
        (Self::to_writer(buf.clone()), buf)
    }

    /// Whether events go anywhere but `log`.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Records `event` from `source` with `fields` (an object whose members
    /// join the line; any other value goes under `data`), and logs it at
    /// `level`.
    pub fn record(&self, level: log::Level, source: &str, event: &str, fields: Value) {
        log::log!(level, "{source}: {event} {fields}");
        let Some(inner) = &self.inner else {
            return;
        };
        let mut line = Map::new();
        line.insert(
            "t_us".into(),
            Value::from(inner.start.elapsed().as_micros() as u64),
        );
        line.insert("source".into(), Value::from(source));
        line.insert("event".into(), Value::from(event));
        match fields {
            Value::Object(map) => line.extend(map),
            Value::Null => {}
            other => {
                line.insert("data".into(), other);
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let mut out = lock(&inner.out);
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            log::warn!("cannot write to the event log: {e}");
        }
    }
}

/// An in-memory event log's contents.
#[derive(Clone, Default, Debug)]
pub struct EventBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for EventBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl EventBuffer {
    /// Every event so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        let bytes = lock(&self.0).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The events named `event`.
    pub fn named(&self, event: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_monotonic_stamps() {
        let (log, buf) = EventLog::in_memory();
        log.record(
            log::Level::Info,
            "net0",
            "link_change",
            serde_json::json!({"up": false}),
        );
        log.clone()
            .record(log::Level::Info, "net0", "other", serde_json::json!(7));
        let events = buf.events();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["event"], "log_started");
        assert!(events[0]["unix_ms"].as_u64().unwrap() > 0);
        assert_eq!(events[1]["source"], "net0");
        assert_eq!(events[1]["up"], false);
        assert_eq!(events[2]["data"], 7);
        let t: Vec<u64> = events.iter().map(|e| e["t_us"].as_u64().unwrap()).collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
        assert_eq!(buf.named("link_change").len(), 1);
    }

    #[test]
    fn file_log_and_disabled_log() {
        let path = std::env::temp_dir().join(format!("event-log-test-{}", std::process::id()));
        let log = EventLog::to_file(&path).unwrap();
        log.record(log::Level::Info, "net0", "x", Value::Null);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().contains("\"event\":\"x\""));

        let off = EventLog::disabled();
        assert!(!off.is_enabled());
        off.record(log::Level::Info, "net0", "x", Value::Null);
    }
}
