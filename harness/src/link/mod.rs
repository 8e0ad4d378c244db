//! What a guest shows about its network interface: the parsed link view and
//! the parsers that build it from `ip link show` (iproute2 or busybox) and
//! from the interface's sysfs attributes.
//!
//! Engines collect the raw text in a [`ShowCapture`] and call
//! [`ShowCapture::view`]; the harness never guesses a value a source did not
//! report: busybox's `ip` prints no operstate, so without
//! `/sys/class/net/IFACE/operstate` the view's `state` is `None`.

mod iplink;
mod operstate;
mod sysfs;

pub use iplink::{parse_ip_link, IpLinkEntry};
pub use operstate::Operstate;
pub use sysfs::{parse_carrier, parse_counter, parse_operstate, parse_virtio_features};

use serde::Serialize;

/// Errors from parsing what a guest printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No `N: NAME: <FLAGS> ...` header line was found.
    #[error("no interface header line (`N: NAME: <FLAGS> ...`) in the `ip link` output")]
    NoInterface,
    /// The interface asked for is not in the output.
    #[error("interface {name} is not in the `ip link` output (it lists {found})")]
    MissingInterface {
        /// The interface asked for.
        name: String,
        /// The interfaces the output lists, comma separated.
        found: String,
    },
    /// A header line that starts like one but cannot be read.
    #[error("malformed `ip link` header line: {line}")]
    BadHeader {
        /// The line.
        line: String,
    },
    /// A sysfs attribute with an unexpected value.
    #[error("{attribute} has an unexpected value `{value}`")]
    BadAttribute {
        /// The attribute's name (e.g. `operstate`).
        attribute: &'static str,
        /// The value as read.
        value: String,
    },
}

/// The view of one network interface at one `show` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    /// The interface index (`2` in `2: eth0: ...`).
    pub ifindex: u32,
    /// The interface name, without iproute2's `@peer` suffix.
    pub name: String,
    /// The flags between `<` and `>`, in the order printed.
    pub flags: Vec<String>,
    /// The MTU, when printed (`ip` always prints it).
    pub mtu: Option<u32>,
    /// The operstate, or `None` when no source reported it (busybox `ip`
    /// without sysfs). Never guessed from the flags.
    pub state: Option<Operstate>,
    /// Whether the carrier is on: from sysfs `carrier` when read, else
    /// from the flags (`NO-CARRIER` means off, `LOWER_UP` on); `None` when
    /// neither tells (an interface that is administratively down).
    pub carrier: Option<bool>,
    /// Carrier transitions since the interface was created: sysfs
    /// `carrier_changes`, iproute2's `transns` statistic, or a
    /// `carrier_changes N` pair on the header line.
    pub carrier_changes: Option<u64>,
    /// The MAC address from the `link/ether` line, when printed.
    pub mac: Option<String>,
    /// The virtio features the guest's driver negotiated, when the engine
    /// knows them (bit N set = feature bit N). JSON shows them as
    /// `{"bits": "0x...", "value": N, "names": [...]}`.
    #[serde(serialize_with = "feature_set")]
    pub features: Option<u64>,
}

fn feature_set<S: serde::Serializer>(f: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match f {
        Some(bits) => s.serialize_some(&devices::virtio::net::features::FeatureSet::new(*bits)),
        None => s.serialize_none(),
    }
}

impl LinkView {
    /// Whether `flag` (e.g. `LOWER_UP`, `NO-CARRIER`) is among the flags.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The flags as iproute2 prints them: `<A,B,C>`.
    pub fn flags_text(&self) -> String {
        format!("<{}>", self.flags.join(","))
    }
}

/// The raw text an engine collected at one `show` step, before parsing.
///
/// `ip_link` is required; every other field is the content of the sysfs
/// attribute of the same name under `/sys/class/net/IFACE/` (for
/// `features`, `/sys/class/net/IFACE/device/features`), when the engine read
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShowCapture {
    /// Output of `ip link show IFACE` (iproute2 or busybox).
    pub ip_link: String,
    /// Content of `operstate`.
    pub operstate: Option<String>,
    /// Content of `carrier` (empty or absent when the read failed).
    pub carrier: Option<String>,
    /// Content of `carrier_changes`.
    pub carrier_changes: Option<String>,
    /// Content of `device/features` (a string of `0`/`1`, bit 0 first).
    pub features: Option<String>,
}

impl ShowCapture {
    /// Parses everything into the view of interface `ifname`.
    pub fn view(&self, ifname: &str) -> Result<LinkView, ParseError> {
        let entries = parse_ip_link(&self.ip_link)?;
        let entry = entries.iter().find(|e| e.name == ifname).ok_or_else(|| {
            ParseError::MissingInterface {
                name: ifname.to_string(),
                found: entries
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?;
        let mut view = entry.view();
        if let Some(text) = &self.operstate {
            let sysfs = parse_operstate(text)?;
            match view.state {
                Some(ip) if ip != sysfs => log::warn!(
                    "{ifname}: ip link says state {ip}, sysfs operstate says {sysfs} \
                     (read at different moments); keeping ip's"
                ),
                Some(_) => {}
                None => view.state = Some(sysfs),
            }
        }
        if let Some(text) = &self.carrier {
            if let Some(on) = parse_carrier(text)? {
                view.carrier = Some(on);
            }
        }
        if let Some(text) = &self.carrier_changes {
            view.carrier_changes = Some(parse_counter("carrier_changes", text)?);
        }
        if let Some(text) = &self.features {
            view.features = Some(parse_virtio_features(text)?);
        }
        Ok(view)
    }
}
