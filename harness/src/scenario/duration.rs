//! Durations as scenario files write them: `500ms`, `2s`, `1.5s`, `1m`.

use std::time::Duration;

/// The longest wait a scenario may ask for.
const MAX: Duration = Duration::from_secs(3600);

/// Parses `N` followed by `ms`, `s` or `m`; `N` may have a fraction.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "" => return Err(format!("`{text}` has no unit; write e.g. 500ms, 2s or 1m")),
        _ => return Err(format!("`{text}` has an unknown unit; use ms, s or m")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 2s or 1m"))?;
    let secs = value * scale;
    if !(0.0..=MAX.as_secs_f64()).contains(&secs) {
        return Err(format!(
            "`{text}` is longer than the {} a step may wait",
            format_duration(MAX)
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "5", "5h", "ms", "1.2.3s", "-1s", "2 s", "61m", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_back() {
        for text in ["500ms", "2s", "1m", "1500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
