//! Traces read back from a JSON report (`harness run --json`), so that
//! `harness compare --from` can line up runs made earlier, elsewhere or on
//! different engines.

use serde_json::Value;

use super::KernelTrace;

/// A scenario's trace as a report stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTrace {
    /// The engine the report names.
    pub engine: String,
    /// The scenario's steps, as words.
    pub steps: Vec<String>,
    /// The trace.
    pub trace: KernelTrace,
}

/// Why a trace cannot be taken from a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedTraceError {
    /// Not JSON, or not a report.
    #[error("{0} is not a harness JSON report: {1}")]
    NotAReport(String, String),
    /// No scenario of that name.
    #[error("{file} has no scenario `{name}` (it has: {known})")]
    NoScenario {
        /// The report.
        file: String,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
    /// The scenario has no trace.
    #[error("scenario `{name}` in {file} has no kernel call trace ({why})")]
    NoTrace {
        /// The report.
        file: String,
        /// The scenario.
        name: String,
        /// Why, as far as the report tells.
        why: String,
    },
}

/// A step as the report wrote it (`"link-up"`, `{"wait": "1500ms"}`) in
/// the words the table uses (`link-up`, `wait 1500ms`).
fn step_word(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The trace of scenario `name` in the report `text` (read from `file`).
pub fn load(text: &str, file: &str, name: &str) -> Result<SavedTrace, SavedTraceError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| SavedTraceError::NotAReport(file.to_string(), e.to_string()))?;
    let scenarios = doc["scenarios"].as_array().ok_or_else(|| {
        SavedTraceError::NotAReport(file.to_string(), "it has no `scenarios` list".into())
    })?;
    let entry = scenarios
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .ok_or_else(|| SavedTraceError::NoScenario {
            file: file.to_string(),
            name: name.to_string(),
            known: scenarios
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let no_trace = |why: String| SavedTraceError::NoTrace {
        file: file.to_string(),
        name: name.to_string(),
        why,
    };
    let trace_value = &entry["trace"];
    if trace_value.is_null() {
        let why = if entry["trace_request"].is_null() {
            "it did not ask for one".to_string()
        } else {
            format!(
                "its verdict is {}: {}",
                entry["verdict"].as_str().unwrap_or("unknown"),
                entry["reason"].as_str().unwrap_or("no reason given")
            )
        };
        return Err(no_trace(why));
    }
    let trace: KernelTrace = serde_json::from_value(trace_value.clone())
        .map_err(|e| no_trace(format!("its trace does not read back: {e}")))?;
    Ok(SavedTrace {
        engine: doc["engine"]
            .as_str()
            .unwrap_or("unknown engine")
            .to_string(),
        steps: entry["steps"]
            .as_array()
            .map(|s| s.iter().map(step_word).collect())
            .unwrap_or_default(),
        trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_come_back_and_missing_ones_say_why() {
        let doc = serde_json::json!({
            "engine": "fake",
            "scenarios": [
                {
                    "name": "a", "steps": ["boot", {"wait": "1500ms"}, {"show": "up"}],
                    "verdict": "pass", "trace_request": ["f"],
                    "trace": {
                        "source": "s", "requested": ["f"],
                        "functions": [{"name": "f", "traceable": true, "reason": null}],
                        "events": [{"seq": 1, "function": "f", "caller": "g", "timestamp_ns": 5,
                                    "cpu": 0, "step": 0, "task": null}],
                        "lost": 0, "complete": true, "problems": [],
                        "counts": [{"function": "f", "calls": 1, "traced": true}]
                    }
                },
                {"name": "b", "verdict": "error", "reason": "timed out", "trace_request": ["f"], "trace": null},
                {"name": "c", "verdict": "pass", "trace_request": null, "trace": null},
                {"name": "d", "verdict": "pass", "trace_request": ["f"], "trace": {"events": 3}}
            ]
        })
        .to_string();
        let a = load(&doc, "r.json", "a").unwrap();
        assert_eq!(a.engine, "fake");
        assert_eq!(a.steps, ["boot", "wait 1500ms", "show up"]);
        assert_eq!(a.trace.events[0].call(), "f <- g");
        let e = load(&doc, "r.json", "b").unwrap_err().to_string();
        assert!(e.contains("its verdict is error: timed out"), "{e}");
        let e = load(&doc, "r.json", "c").unwrap_err().to_string();
        assert!(e.contains("did not ask for one"), "{e}");
        let e = load(&doc, "r.json", "d").unwrap_err().to_string();
        assert!(e.contains("does not read back"), "{e}");
        let e = load(&doc, "r.json", "zz").unwrap_err().to_string();
        assert!(e.contains("(it has: a, b, c, d)"), "{e}");
        assert!(matches!(
            load("not json", "x", "a"),
            Err(SavedTraceError::NotAReport(..))
        ));
        assert!(matches!(
            load("{}", "x", "a"),
            Err(SavedTraceError::NotAReport(..))
        ));
    }
}
