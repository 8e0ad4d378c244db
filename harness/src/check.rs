//! Comparing a scenario's expectations with what an engine observed, item
//! by item, so that reports can put expected next to observed.

use serde::Serialize;

use crate::engine::Observation;
use crate::link::LinkView;
use crate::scenario::{CarrierChanges, Expectation, Scenario};

/// One checked item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    /// What was expected, e.g. `state UP`, `has LOWER_UP`,
    /// `carrier_changes >= 1`, `feature mrg_rxbuf off`.
    pub expected: String,
    /// What was observed, in the same words.
    pub observed: String,
    /// `Some(true)` matched, `Some(false)` differed, `None` the engine did
    /// not report the value.
    pub ok: Option<bool>,
}

/// The items of one show step's expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShowCheck {
    /// The show step's label.
    pub label: String,
    /// The show step's index in the scenario's steps.
    pub step: usize,
    /// The items, in the order the expectation lists them.
    pub items: Vec<CheckItem>,
}

impl ShowCheck {
    /// `Some(false)` when any item differs, `None` when none differs but
    /// one could not be observed, `Some(true)` when all match.
    pub fn ok(&self) -> Option<bool> {
        if self.items.iter().any(|i| i.ok == Some(false)) {
            Some(false)
        } else if self.items.iter().any(|i| i.ok.is_none()) {
            None
        } else {
            Some(true)
        }
    }
}

/// Why an observation cannot be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The engine returned a different number of show observations.
    #[error("the engine returned {got} show observations for {want} show steps")]
    ShowCount {
        /// How many the engine returned.
        got: usize,
        /// How many show steps the scenario has.
        want: usize,
    },
    /// An observation claims to come from another step.
    #[error(
        "show observation {index} says it comes from step {got}, but that show step is step {want}"
    )]
    ShowStep {
        /// Its position among the observations.
        index: usize,
        /// The step it names.
        got: usize,
        /// The step it should name.
        want: usize,
    },
}

/// Checks every expectation of `scenario` against `observation`.
pub fn evaluate(
    scenario: &Scenario,
    observation: &Observation,
) -> Result<Vec<ShowCheck>, CheckError> {
    let shows = scenario.shows();
    if observation.shows.len() != shows.len() {
        return Err(CheckError::ShowCount {
            got: observation.shows.len(),
            want: shows.len(),
        });
    }
    for (index, (o, (step, _))) in observation.shows.iter().zip(&shows).enumerate() {
        if o.step != *step {
            return Err(CheckError::ShowStep {
                index,
                got: o.step,
                want: *step,
            });
        }
    }
    Ok(scenario
        .expectations
        .iter()
        .map(|e| ShowCheck {
            label: e.label.clone(),
            step: shows[e.show].0,
            items: check_one(e, &observation.shows[e.show].link),
        })
        .collect())
}

fn item(expected: String, observed: Option<String>, ok: bool) -> CheckItem {
    match observed {
        Some(observed) => CheckItem {
            expected,
            observed,
            ok: Some(ok),
        },
        None => CheckItem {
            observed: format!("{} not reported", expected.split(' ').next().unwrap_or("")),
            expected,
            ok: None,
        },
    }
}

fn check_one(e: &Expectation, v: &LinkView) -> Vec<CheckItem> {
    let mut items = Vec::new();
    if let Some(want) = e.operstate {
        items.push(item(
            format!("state {want}"),
            v.state.map(|s| format!("state {s}")),
            v.state == Some(want),
        ));
    }
    let has = |f: &str| {
        if v.has_flag(f) {
            format!("has {f}")
        } else {
            format!("lacks {f}")
        }
    };
    for f in &e.flags {
        items.push(item(format!("has {f}"), Some(has(f)), v.has_flag(f)));
    }
    for f in &e.no_flags {
        items.push(item(format!("lacks {f}"), Some(has(f)), !v.has_flag(f)));
    }
    if let Some(want) = e.carrier_changes {
        let (text, ok) = match (want, v.carrier_changes) {
            (CarrierChanges::Exactly(n), got) => (format!("carrier_changes {n}"), got == Some(n)),
            (CarrierChanges::AtLeast(n), got) => (
                format!("carrier_changes >= {n}"),
                got.is_some_and(|g| g >= n),
            ),
        };
        items.push(item(
            text,
            v.carrier_changes.map(|n| format!("carrier_changes {n}")),
            ok,
        ));
    }
    let feature = |name: &str, bit: u32, on: bool| {
        let onoff = if on { "on" } else { "off" };
        let observed = v.features.map(|f| {
            let got = f & (1u64 << bit) != 0;
            format!("feature {name} {}", if got { "on" } else { "off" })
        });
        let ok = v.features.is_some_and(|f| (f & (1u64 << bit) != 0) == on);
        item(format!("feature {name} {onoff}"), observed, ok)
    };
    for f in &e.features {
        items.push(feature(&f.name, f.bit, true));
    }
    for f in &e.no_features {
        items.push(feature(&f.name, f.bit, false));
    }
    if let Some(want) = e.mtu {
        items.push(item(
            format!("mtu {want}"),
            v.mtu.map(|m| format!("mtu {m}")),
            v.mtu == Some(want),
        ));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ShowObservation, Timing};
    use crate::link::Operstate;
    use crate::scenario::load_str;
    use std::time::Duration;

    const TEXT: &str = r#"
name = "c"
guest = { kernel = "debian-6.1" }
steps = ["boot", { show = "before" }, "link-up", "show"]
[[expect]]
show = "before"
operstate = "DOWN"
[[expect]]
operstate = "UP"
flags = ["LOWER_UP"]
no-flags = ["NO-CARRIER"]
min-carrier-changes = 1
no-features = ["mrg_rxbuf"]
mtu = 1500
"#;

    fn view(
        state: Option<Operstate>,
        flags: &[&str],
        changes: Option<u64>,
        features: Option<u64>,
    ) -> LinkView {
        LinkView {
            ifindex: 2,
            name: "eth0".into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            mtu: Some(1500),
            state,
            carrier: None,
            carrier_changes: changes,
            mac: None,
            features,
        }
    }

    fn observation(views: Vec<(usize, LinkView)>) -> Observation {
        Observation {
            shows: views
                .into_iter()
                .map(|(step, link)| ShowObservation {
                    step,
                    link,
                    raw: String::new(),
                    at: Duration::ZERO,
                })
                .collect(),
            serial_tail: vec![],
            timing: Timing::default(),
            trace: None,
        }
    }

    #[test]
    fn items_match_differ_or_are_unobservable() {
        let s = &load_str(TEXT, std::path::Path::new("c.toml")).unwrap()[0];
        let up = view(
            Some(Operstate::Up),
            &["UP", "LOWER_UP"],
            Some(2),
            Some(1 << 32),
        );
        let down = view(Some(Operstate::Down), &[], Some(2), None);
        let checks = evaluate(s, &observation(vec![(1, down.clone()), (3, up)])).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!((checks[0].label.as_str(), checks[0].step), ("before", 1));
        assert_eq!((checks[1].label.as_str(), checks[1].step), ("show 2", 3));
        assert!(checks.iter().all(|c| c.ok() == Some(true)), "{checks:#?}");
        let expected: Vec<&str> = checks[1]
            .items
            .iter()
            .map(|i| i.expected.as_str())
            .collect();
        assert_eq!(
            expected,
            [
                "state UP",
                "has LOWER_UP",
                "lacks NO-CARRIER",
                "carrier_changes >= 1",
                "feature mrg_rxbuf off",
                "mtu 1500"
            ]
        );

        // busybox without sysfs: state not reported, so not a pass
        let bb = view(None, &["UP", "LOWER_UP"], Some(2), Some(0));
        let checks = evaluate(s, &observation(vec![(1, down.clone()), (3, bb)])).unwrap();
        assert_eq!(checks[1].ok(), None);
        assert_eq!(checks[1].items[0].observed, "state not reported");

        // the bug: UNKNOWN, no transitions, mrg_rxbuf negotiated anyway
        let bad = view(
            Some(Operstate::Unknown),
            &["UP", "LOWER_UP"],
            Some(0),
            Some(1 << 15),
        );
        let checks = evaluate(s, &observation(vec![(1, down.clone()), (3, bad)])).unwrap();
        assert_eq!(checks[1].ok(), Some(false));
        let wrong: Vec<&str> = checks[1]
            .items
            .iter()
            .filter(|i| i.ok == Some(false))
            .map(|i| i.observed.as_str())
            .collect();
        assert_eq!(
            wrong,
            ["state UNKNOWN", "carrier_changes 0", "feature mrg_rxbuf on"]
        );
    }

    #[test]
    fn mismatched_observations_are_errors() {
        let s = &load_str(TEXT, std::path::Path::new("c.toml")).unwrap()[0];
        let v = view(Some(Operstate::Up), &[], None, None);
        assert_eq!(
            evaluate(s, &observation(vec![(1, v.clone())])),
            Err(CheckError::ShowCount { got: 1, want: 2 })
        );
        assert_eq!(
            evaluate(s, &observation(vec![(1, v.clone()), (2, v)])),
            Err(CheckError::ShowStep {
                index: 1,
                got: 2,
                want: 3
            })
        );
    }
}
