//! The scenario file as TOML gives it (with the spans of its values), and
//! the checks that turn it into a [`Scenario`].

use std::ops::Range;

use devices::virtio::net::features as vfeatures;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::step::parse_step;
use super::{
    CarrierChanges, Device, Driver, Expectation, FeatureRef, Guest, Kernel, Location, Scenario,
    Step, Transport,
};
use crate::link::Operstate;
use crate::trace::TraceRequest;

/// A problem in a file: where (byte range) and why.
pub(super) type Problem = (Range<usize>, String);

/// The flags iproute2 and busybox print (`ip link`'s flag names).
pub const KNOWN_FLAGS: &[&str] = &[
    "UP",
    "BROADCAST",
    "DEBUG",
    "LOOPBACK",
    "POINTOPOINT",
    "NOTRAILERS",
    "RUNNING",
    "NOARP",
    "PROMISC",
    "ALLMULTI",
    "MASTER",
    "SLAVE",
    "MULTICAST",
    "PORTSEL",
    "AUTOMEDIA",
    "DYNAMIC",
    "LOWER_UP",
    "DORMANT",
    "ECHO",
    "NO-CARRIER",
    "M-DOWN",
];

/// A file of several scenarios.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMulti {
    pub scenario: Vec<Spanned<RawScenario>>,
}

/// One scenario as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    guest: RawGuest,
    #[serde(default)]
    device: Option<RawDevice>,
    steps: Spanned<Vec<Spanned<toml::Value>>>,
    #[serde(default)]
    expect: ExpectList,
    #[serde(default)]
    trace: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuest {
    kernel: Kernel,
    #[serde(default)]
    driver: Option<Driver>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    #[serde(default)]
    transport: Option<Spanned<Transport>>,
    #[serde(default)]
    features: Option<Spanned<String>>,
    #[serde(default)]
    mac: Option<Spanned<String>>,
    #[serde(default)]
    mtu: Option<Spanned<i64>>,
    #[serde(default)]
    backend: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawExpect {
    #[serde(default)]
    show: Option<Spanned<String>>,
    #[serde(default)]
    operstate: Option<Spanned<String>>,
    #[serde(default)]
    flags: Vec<Spanned<String>>,
    #[serde(default)]
    no_flags: Vec<Spanned<String>>,
    #[serde(default)]
    carrier_changes: Option<Spanned<i64>>,
    #[serde(default)]
    min_carrier_changes: Option<Spanned<i64>>,
    #[serde(default)]
    features: Vec<Spanned<String>>,
    #[serde(default)]
    no_features: Vec<Spanned<String>>,
    #[serde(default)]
    mtu: Option<Spanned<i64>>,
}

/// `[[expect]]`: a list of tables. A single `[expect]` table is refused
/// with a message that says how to write it.
#[derive(Debug, Default)]
struct ExpectList(Vec<Spanned<RawExpect>>);

impl<'de> Deserialize<'de> for ExpectList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExpectList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of [[expect]] tables")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExpectList, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = seq.next_element()? {
                    out.push(e);
                }
                Ok(ExpectList(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<ExpectList, A::Error> {
                Err(de::Error::custom(
                    "`expect` is a list of tables: write [[expect]] (or [[scenario.expect]]) \
                     with double brackets, one per checked show step",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a name or label: non-empty, at most 200 characters of letters,
/// digits and `. _ - /`.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    if name.is_empty() || name.len() > 200 || !name.chars().all(ok_char) {
        return Err(format!(
            "{what} `{name}` must be 1 to 200 letters, digits, `.`, `_`, `-` or `/`"
        ));
    }
    Ok(())
}

fn at<T>(s: &Spanned<T>, reason: impl Into<String>) -> Problem {
    (s.span(), reason.into())
}

impl RawScenario {
    /// Checks everything and builds the scenario. `locate` turns a byte
    /// offset into a location; `whole` is the span of the scenario's table.
    pub(super) fn into_scenario(
        self,
        whole: Range<usize>,
        locate: &dyn Fn(usize) -> Location,
    ) -> Result<Scenario, Problem> {
        check_name("scenario name", self.name.get_ref()).map_err(|r| at(&self.name, r))?;
        let guest = Guest {
            kernel: self.guest.kernel,
            driver: self.guest.driver.unwrap_or(Driver::Stock),
        };
        let device = convert_device(self.device, guest.kernel)?;
        let steps = convert_steps(&self.steps)?;
        let shows = show_labels(&steps);
        if self.expect.0.is_empty() {
            return Err((
                whole,
                format!(
                    "scenario `{}` expects nothing: add an [[expect]] table for a show step",
                    self.name.get_ref()
                ),
            ));
        }
        let mut expectations: Vec<Expectation> = Vec::new();
        for raw in self.expect.0 {
            let span = raw.span();
            let e = convert_expect(raw.into_inner(), span.clone(), &shows, locate)?;
            if expectations.iter().any(|x| x.show == e.show) {
                return Err((
                    span,
                    format!(
                        "show step `{}` already has an [[expect]] table; merge the two",
                        e.label
                    ),
                ));
            }
            expectations.push(e);
        }
        expectations.sort_by_key(|e| e.show);
        let trace = match &self.trace {
            Some(t) => convert_trace(t)?,
            None => None,
        };
        Ok(Scenario {
            name: self.name.into_inner(),
            description: self.description,
            location: locate(whole.start),
            guest,
            device,
            steps,
            expectations,
            trace,
        })
    }
}

/// `trace = true | false | ["function", ...]`.
fn convert_trace(raw: &Spanned<toml::Value>) -> Result<Option<TraceRequest>, Problem> {
    match raw.get_ref() {
        toml::Value::Boolean(true) => Ok(Some(TraceRequest::link_state())),
        toml::Value::Boolean(false) => Ok(None),
        toml::Value::Array(items) => {
            let names: Vec<String> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| at(raw, "trace lists function names, as strings"))?;
            TraceRequest::new(names)
                .map(Some)
                .map_err(|e| at(raw, format!("trace: {e}")))
        }
        _ => Err(at(
            raw,
            "trace is true (the default link-state set), false, or a list of kernel function names",
        )),
    }
}

fn convert_device(raw: Option<RawDevice>, kernel: Kernel) -> Result<Device, Problem> {
    let Some(raw) = raw else {
        return Ok(Device {
            transport: Transport::Pci,
            features: String::new(),
            mac: None,
            mtu: None,
            backend: None,
        });
    };
    let transport = match &raw.transport {
        Some(t) if *t.get_ref() == Transport::Mmio && kernel != Kernel::Test => {
            return Err(at(
                t,
                format!(
                    "kernel {} cannot find a virtio-mmio device (Debian builds it without \
                     CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES); use transport = \"pci\" or kernel = \"test\"",
                    kernel.as_str()
                ),
            ));
        }
        Some(t) => *t.get_ref(),
        None => Transport::Pci,
    };
    if let Some(f) = &raw.features {
        vfeatures::parse_spec(f.get_ref(), vfeatures::default_mask())
            .and_then(vfeatures::check)
            .map_err(|e| at(f, format!("features: {e}")))?;
    }
    if let Some(mac) = &raw.mac {
        let parts: Vec<&str> = mac.get_ref().split(':').collect();
        let valid = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid {
            return Err(at(
                mac,
                format!(
                    "mac `{}` is not six hex pairs such as 52:54:00:12:34:56",
                    mac.get_ref()
                ),
            ));
        }
    }
    let mtu = match &raw.mtu {
        Some(m) => Some(
            u16::try_from(*m.get_ref())
                .ok()
                .filter(|v| *v >= 68)
                .ok_or_else(|| at(m, format!("mtu {} is outside 68..=65535", m.get_ref())))?,
        ),
        None => None,
    };
    if let Some(b) = &raw.backend {
        let v = b.get_ref();
        let ok = matches!(v.as_str(), "none" | "memory" | "loopback" | "tap")
            || v.strip_prefix("tap:").is_some_and(|n| !n.is_empty());
        if !ok {
            return Err(at(
                b,
                format!("backend `{v}` is not none, memory, loopback, tap or tap:NAME"),
            ));
        }
    }
    Ok(Device {
        transport,
        features: raw.features.map(Spanned::into_inner).unwrap_or_default(),
        mac: raw.mac.map(Spanned::into_inner),
        mtu,
        backend: raw.backend.map(Spanned::into_inner),
    })
}

fn convert_steps(raw: &Spanned<Vec<Spanned<toml::Value>>>) -> Result<Vec<Step>, Problem> {
    if raw.get_ref().is_empty() {
        return Err(at(raw, "steps is empty; a scenario starts with \"boot\""));
    }
    let mut steps = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (i, v) in raw.get_ref().iter().enumerate() {
        let step = parse_step(v.get_ref()).map_err(|r| at(v, r))?;
        match &step {
            Step::Boot if i != 0 => {
                return Err(at(v, "\"boot\" is the first step and comes only once"));
            }
            Step::Boot => {}
            Step::Show { label: Some(l) } if labels.contains(l) => {
                return Err(at(v, format!("two show steps are labelled `{l}`")));
            }
            Step::Show { label: Some(l) } => labels.push(l.clone()),
            _ if i == 0 => return Err(at(v, "the first step must be \"boot\"")),
            _ => {}
        }
        steps.push(step);
    }
    Ok(steps)
}

/// The labels of the show steps, in order (unlabelled ones as `None`).
fn show_labels(steps: &[Step]) -> Vec<Option<String>> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Show { label } => Some(label.clone()),
            _ => None,
        })
        .collect()
}

fn convert_expect(
    raw: RawExpect,
    span: Range<usize>,
    shows: &[Option<String>],
    locate: &dyn Fn(usize) -> Location,
) -> Result<Expectation, Problem> {
    let show = match &raw.show {
        _ if shows.is_empty() => {
            return Err((
                span,
                "this expectation refers to no show step: the steps have none; add \"show\"".into(),
            ))
        }
        None => shows.len() - 1,
        Some(label) => {
            shows
                .iter()
                .position(|l| l.as_deref() == Some(label.get_ref().as_str()))
                .ok_or_else(|| {
                    let known: Vec<&str> = shows.iter().flatten().map(String::as_str).collect();
                    at(
                        label,
                        format!(
                        "this expectation refers to no show step: no show step is labelled `{}` \
                         (labelled ones: {})",
                        label.get_ref(),
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                    )
                })?
        }
    };
    let label = shows[show]
        .clone()
        .unwrap_or_else(|| format!("show {}", show + 1));
    let operstate = match &raw.operstate {
        Some(s) => Some(
            s.get_ref()
                .parse::<Operstate>()
                .map_err(|e| at(s, e.to_string()))?,
        ),
        None => None,
    };
    let flags = check_flags(&raw.flags)?;
    let no_flags = check_flags(&raw.no_flags)?;
    if let Some(f) = raw.no_flags.iter().find(|f| flags.contains(f.get_ref())) {
        return Err(at(
            f,
            format!("flag {} is both required and forbidden", f.get_ref()),
        ));
    }
    let carrier_changes = match (&raw.carrier_changes, &raw.min_carrier_changes) {
        (Some(_), Some(m)) => {
            return Err(at(
                m,
                "give carrier-changes or min-carrier-changes, not both",
            ));
        }
        (Some(n), None) => Some(CarrierChanges::Exactly(non_negative(n)?)),
        (None, Some(n)) => Some(CarrierChanges::AtLeast(non_negative(n)?)),
        (None, None) => None,
    };
    let features = check_features(&raw.features)?;
    let no_features = check_features(&raw.no_features)?;
    if let Some(f) = no_features
        .iter()
        .find(|f| features.iter().any(|g| g.bit == f.bit))
    {
        let s = raw
            .no_features
            .iter()
            .find(|s| *s.get_ref() == f.name)
            .map_or(span.clone(), Spanned::span);
        return Err((
            s,
            format!("feature {} is both required and forbidden", f.name),
        ));
    }
    let mtu = match &raw.mtu {
        Some(m) => {
            // What virtio_net can show: 68 (ETH_MIN_MTU) to 65535 (its MAX_MTU).
            Some(
                u32::try_from(*m.get_ref())
                    .ok()
                    .filter(|v| (68..=65535).contains(v))
                    .ok_or_else(|| {
                        at(
                            m,
                            format!("expected mtu {} is outside 68..=65535", m.get_ref()),
                        )
                    })?,
            )
        }
        None => None,
    };
    let e = Expectation {
        show,
        label,
        location: locate(span.start),
        operstate,
        flags,
        no_flags,
        carrier_changes,
        features,
        no_features,
        mtu,
    };
    let checks_something = e.operstate.is_some()
        || !e.flags.is_empty()
        || !e.no_flags.is_empty()
        || e.carrier_changes.is_some()
        || !e.features.is_empty()
        || !e.no_features.is_empty()
        || e.mtu.is_some();
    if !checks_something {
        return Err((
            span,
            "this expectation checks nothing: give operstate, flags, no-flags, carrier-changes, \
             min-carrier-changes, features, no-features or mtu"
                .into(),
        ));
    }
    Ok(e)
}

fn non_negative(n: &Spanned<i64>) -> Result<u64, Problem> {
    u64::try_from(*n.get_ref()).map_err(|_| at(n, "a count cannot be negative"))
}

fn check_flags(raw: &[Spanned<String>]) -> Result<Vec<String>, Problem> {
    raw.iter()
        .map(|f| {
            if KNOWN_FLAGS.contains(&f.get_ref().as_str()) {
                Ok(f.get_ref().clone())
            } else {
                Err(at(
                    f,
                    format!(
                        "`{}` is not a flag ip link prints; known flags: {}",
                        f.get_ref(),
                        KNOWN_FLAGS.join(", ")
                    ),
                ))
            }
        })
        .collect()
}

fn check_features(raw: &[Spanned<String>]) -> Result<Vec<FeatureRef>, Problem> {
    raw.iter()
        .map(|f| {
            let name = f.get_ref();
            let bit = name
                .strip_prefix("bit")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|b| *b < 64)
                .or_else(|| vfeatures::by_name(name).map(|x| x.bit))
                .ok_or_else(|| {
                    at(
                        f,
                        format!(
                            "unknown feature `{name}`; use bitN or one of: {}",
                            vfeatures::FEATURES
                                .iter()
                                .map(|x| x.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            Ok(FeatureRef {
                name: name.clone(),
                bit,
            })
        })
        .collect()
}
