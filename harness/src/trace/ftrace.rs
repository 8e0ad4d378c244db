//! A parser for the text of tracefs's `trace` file with the function
//! tracer (Linux 6.1 and 6.12, default options):
//!
//! ```text
//! # entries-in-buffer/entries-written: 3/3   #P:1
//!           insmod-68      [000] .....     1.880575: netif_carrier_off <-virtnet_probe
//!               sh-91      [000] .....     5.000123: tracing_mark_write: vnetlab-step 1
//! CPU:0 [LOST 12 EVENTS]
//! ```
//!
//! Each line is the task (`comm-pid`; a comm may hold spaces and dashes),
//! the CPU in brackets, the optional irq-info flags, the timestamp in
//! seconds with a colon, then `function <-caller` or, for what was written
//! to `trace_marker`, `tracing_mark_write: TEXT`. Guest output is input: a
//! line that does not fit is an error the caller keeps, never a panic.

/// One line of the `trace` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A traced call.
    Call {
        /// `comm-pid`.
        task: String,
        /// The CPU.
        cpu: u32,
        /// The timestamp, nanoseconds.
        timestamp_ns: u64,
        /// The function called.
        function: String,
        /// The caller (`<-caller`).
        caller: String,
    },
    /// Text written to `trace_marker`.
    Marker {
        /// The CPU.
        cpu: u32,
        /// The timestamp, nanoseconds.
        timestamp_ns: u64,
        /// The text.
        text: String,
    },
    /// `CPU:N [LOST M EVENTS]`: the buffer overran.
    Lost(u64),
    /// `# entries-in-buffer/entries-written: IN/WRITTEN`.
    Entries {
        /// Entries still in the buffer.
        in_buffer: u64,
        /// Entries ever written.
        written: u64,
    },
    /// Any other comment line, or an empty one.
    Comment,
}

/// A line that is not what the function tracer prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the trace line `{line}` does not parse: {why}")]
pub struct LineError {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Seconds with up to nine decimals (`1.880575`) as nanoseconds.
pub fn seconds_to_ns(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty()
        || frac.len() > 9
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = secs.parse().ok()?;
    let part: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    whole.checked_mul(1_000_000_000)?.checked_add(part)
}

/// The `[NNN]` CPU field: its position and value.
fn cpu_field(line: &str) -> Option<(usize, usize, u32)> {
    let mut from = 0;
    while let Some(open) = line[from..].find('[').map(|i| from + i) {
        if let Some(close) = line[open..].find(']').map(|i| open + i) {
            let inside = &line[open + 1..close];
            if !inside.is_empty() && inside.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(cpu) = inside.parse() {
                    return Some((open, close, cpu));
                }
            }
        }
        from = open + 1;
    }
    None
}

fn header(line: &str) -> Line {
    let Some(rest) = line
        .trim_start_matches('#')
        .trim()
        .strip_prefix("entries-in-buffer/entries-written:")
    else {
        return Line::Comment;
    };
    let numbers = rest.split_whitespace().next().unwrap_or("");
    match numbers.split_once('/').map(|(a, b)| (a.parse(), b.parse())) {
        Some((Ok(in_buffer), Ok(written))) => Line::Entries { in_buffer, written },
        _ => Line::Comment,
    }
}

/// Parses one line of the `trace` file.
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let err = |why| LineError {
        line: line.to_string(),
        why,
    };
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Line::Comment);
    }
    if trimmed.starts_with('#') {
        return Ok(header(trimmed));
    }
    if let Some(rest) = trimmed.strip_prefix("CPU:") {
        let lost = rest
            .split_once("[LOST ")
            .and_then(|(_, r)| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err("a CPU line that is not `CPU:N [LOST M EVENTS]`"))?;
        return Ok(Line::Lost(lost));
    }
    let (open, close, cpu) = cpu_field(line).ok_or_else(|| err("no [CPU] field"))?;
    let task = line[..open].trim().to_string();
    let after = &line[close + 1..];
    // Optional irq-info flags, then `SECONDS:`.
    let (colon, timestamp_ns) = after
        .match_indices(':')
        .find_map(|(i, _)| {
            let word = after[..i].split_whitespace().last()?;
            seconds_to_ns(word).map(|ns| (i, ns))
        })
        .ok_or_else(|| err("no timestamp"))?;
    let body = after[colon + 1..].trim();
    if let Some(text) = body.strip_prefix("tracing_mark_write:") {
        return Ok(Line::Marker {
            cpu,
            timestamp_ns,
            text: text.trim().to_string(),
        });
    }
    let (function, caller) = body
        .split_once(" <-")
        .ok_or_else(|| err("no `function <-caller`"))?;
    let (function, caller) = (function.trim(), caller.trim());
    if function.is_empty() || function.contains(' ') || caller.is_empty() {
        return Err(err("no `function <-caller`"));
    }
    Ok(Line::Call {
        task,
        cpu,
        timestamp_ns,
        function: function.to_string(),
        caller: caller.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_markers_and_headers() {
        assert_eq!(
            parse_line("          insmod-68      [000] .....     1.880575: netif_carrier_off <-virtnet_probe"),
            Ok(Line::Call {
                task: "insmod-68".into(),
                cpu: 0,
                timestamp_ns: 1_880_575_000,
                function: "netif_carrier_off".into(),
                caller: "virtnet_probe".into(),
            })
        );
        // A comm with a space and a dash, another CPU, no irq-info column.
        assert_eq!(
            parse_line(
                " kworker/0:1 my-task-20 [012]    12.000000001: linkwatch_event <-process_one_work"
            ),
            Ok(Line::Call {
                task: "kworker/0:1 my-task-20".into(),
                cpu: 12,
                timestamp_ns: 12_000_000_001,
                function: "linkwatch_event".into(),
                caller: "process_one_work".into(),
            })
        );
        assert_eq!(
            parse_line("              sh-91      [000] .....     5.000123: tracing_mark_write: vnetlab-step 1"),
            Ok(Line::Marker {
                cpu: 0,
                timestamp_ns: 5_000_123_000,
                text: "vnetlab-step 1".into()
            })
        );
        assert_eq!(
            parse_line("# entries-in-buffer/entries-written: 3/5   #P:1"),
            Ok(Line::Entries {
                in_buffer: 3,
                written: 5
            })
        );
        assert_eq!(parse_line("# tracer: function"), Ok(Line::Comment));
        assert_eq!(parse_line(""), Ok(Line::Comment));
        assert_eq!(parse_line("CPU:0 [LOST 12 EVENTS]"), Ok(Line::Lost(12)));
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for bad in [
            "hello",
            "x [000] no time",
            "x [000] ..... 1.5: only_a_function",
            "x [000] ..... 1.5: <-caller",
            "x [000] ..... 1.5: f <-",
            "x [abc] ..... 1.5: f <-g",
            "CPU:0 something",
            "[",
            "]]][[[",
            "x [000] ..... 1.5555555555: f <-g",
        ] {
            let e = parse_line(bad).unwrap_err();
            assert!(e.to_string().contains("does not parse"), "{bad}: {e}");
        }
        assert_eq!(seconds_to_ns("1"), Some(1_000_000_000));
        assert_eq!(seconds_to_ns("-1.0"), None);
        assert_eq!(seconds_to_ns("99999999999999999999.0"), None);
    }
}
