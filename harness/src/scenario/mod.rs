//! Scenarios: which guest, which device, which steps, and what the guest
//! must show; loaded from TOML files.
//!
//! # The file format
//!
//! A file holds one scenario (its keys at the top level) or several
//! (`[[scenario]]` tables). Every key below is checked: an unknown key, an
//! unknown step or value, or an expectation that refers to no `show` step is
//! an error that names the file, line and column.
//!
//! ```toml
//! [[scenario]]
//! name = "operstate/prefix-6.1/no-status"      # unique; letters, digits, . _ - /
//! description = "The bug: no STATUS, pre-fix driver, state UNKNOWN."  # optional
//! guest = { kernel = "debian-6.1", driver = "prefix" }
//! #  kernel: "debian-6.1" | "debian-6.12" | "test"; driver: "stock" (default) | "prefix"
//! device = { transport = "pci", features = "-status" }
//! #  transport: "pci" (default) | "mmio"; features: the VMM's --net feature
//! #  list, passed through as written (checked against the device's feature
//! #  names); mac = "52:54:00:12:34:56", mtu = 1500, backend = "none" |
//! #  "memory" | "loopback" | "tap" | "tap:NAME" are optional (engine default)
//! steps = ["boot", "link-up", { wait = "500ms" }, { show = "up" }]
//! #  "boot"           start the VM (first step, exactly once)
//! #  "link-up"        in the guest: ip link set eth0 up
//! #  "show"           observe: ip link show eth0, operstate, carrier_changes;
//! #  { show = "L" }   the same, labelled L for expectations
//! #  "reload-driver"  rmmod virtio_net; modprobe virtio_net (or unbind/rebind)
//! #  { device-link = "down" | "up" }   from the device side
//! #  { wait = "500ms" }                ms, s or m
//!
//! [[scenario.expect]]          # one per checked show step
//! show = "up"                  # the show step's label; omitted: the last show step
//! operstate = "UNKNOWN"        # UP, DOWN, UNKNOWN, LOWERLAYERDOWN, ...
//! flags = ["UP", "LOWER_UP"]   # must all be among the flags
//! no-flags = ["NO-CARRIER"]    # must all be absent
//! carrier-changes = 0          # exactly; or min-carrier-changes = N
//! features = ["version_1"]     # negotiated (the guest's view), by the VMM's names or bitN
//! no-features = ["status"]     # not negotiated
//! mtu = 1500
//! ```
//!
//! A scenario can ask for a kernel call trace, recorded while it runs and
//! stored with its results:
//!
//! ```toml
//! trace = true                                     # the default link-state set
//! trace = ["netif_carrier_on", "rfc2863_policy"]   # these functions (at most 32)
//! ```
//!
//! In a single-scenario file the same keys stand at the top level and the
//! expectations are `[[expect]]` tables.

mod duration;
mod load;
mod raw;
mod step;

pub use duration::{format_duration, parse_duration};
pub use load::{load_file, load_paths, load_str, LoadError, LoadErrors};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::link::Operstate;
use crate::trace::TraceRequest;

/// Where something was written: file, line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One scenario: a guest, a device, steps and expectations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scenario {
    /// The unique name (`operstate/prefix-6.1/no-status`).
    pub name: String,
    /// What it checks and why, for reports.
    pub description: Option<String>,
    /// Where the scenario starts in its file.
    pub location: Location,
    /// The guest kernel and driver.
    pub guest: Guest,
    /// The virtio-net device.
    pub device: Device,
    /// The steps, in order; the first is [`Step::Boot`].
    pub steps: Vec<Step>,
    /// What the guest must show, at most one per show step.
    pub expectations: Vec<Expectation>,
    /// The kernel functions to record while it runs, if any.
    pub trace: Option<TraceRequest>,
}

impl Scenario {
    /// The steps as words (`boot`, `link-up`, `show up`, ...), to name the
    /// step of a traced call.
    pub fn step_words(&self) -> Vec<String> {
        self.steps.iter().map(ToString::to_string).collect()
    }

    /// The show steps as (index into `steps`, label), in order.
    pub fn shows(&self) -> Vec<(usize, String)> {
        let mut n = 0;
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Show { label } => {
                    n += 1;
                    Some((i, label.clone().unwrap_or_else(|| format!("show {n}"))))
                }
                _ => None,
            })
            .collect()
    }
}

/// The guest kernel series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kernel {
    /// Debian's 6.1 cloud kernel.
    #[serde(rename = "debian-6.1")]
    Debian61,
    /// Debian's 6.12 cloud kernel.
    #[serde(rename = "debian-6.12")]
    Debian612,
    /// The lab's minimal test kernel (built from linux-source-6.1).
    #[serde(rename = "test")]
    Test,
}

impl Kernel {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debian61 => "debian-6.1",
            Self::Debian612 => "debian-6.12",
            Self::Test => "test",
        }
    }
}

/// Which virtio_net driver the guest loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The kernel's own driver (has the bda7fab54828 fix).
    Stock,
    /// The driver with bda7fab54828 reverted.
    Prefix,
}

impl Driver {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::Prefix => "prefix",
        }
    }
}

/// The guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Guest {
    /// The kernel.
    pub kernel: Kernel,
    /// The virtio_net driver.
    pub driver: Driver,
}

/// The virtio transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// virtio-pci.
    Pci,
    /// virtio-mmio.
    Mmio,
}

impl Transport {
    /// The name used in scenario files and by `vmm --net`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pci => "pci",
            Self::Mmio => "mmio",
        }
    }
}

/// The virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The transport.
    pub transport: Transport,
    /// The feature list in the VMM's `--net features=` syntax, as written
    /// (empty: the device's default set).
    pub features: String,
    /// The MAC address, `None` for the engine's default.
    pub mac: Option<String>,
    /// The MTU the device reports, `None` for none.
    pub mtu: Option<u16>,
    /// The backend (`none`, `memory`, `loopback`, `tap`, `tap:NAME`), `None`
    /// for the engine's default.
    pub backend: Option<String>,
}

impl Device {
    /// Whether the device offers the feature `bit` (the default set with
    /// this scenario's `features` applied; the loader checked the spec).
    pub fn offers(&self, bit: u32) -> bool {
        use devices::virtio::net::features::{default_mask, parse_spec};
        let offered = if self.features.is_empty() {
            default_mask()
        } else {
            parse_spec(&self.features, default_mask()).unwrap_or_else(|_| default_mask())
        };
        offered & (1u64 << bit) != 0
    }

    /// Whether the device offers VIRTIO_NET_F_STATUS.
    pub fn offers_status(&self) -> bool {
        self.offers(virtio_bindings::virtio_net::VIRTIO_NET_F_STATUS)
    }
}

/// The device's link state, as set from the device side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Link up (`VIRTIO_NET_S_LINK_UP` set).
    Up,
    /// Link down.
    Down,
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start the VM and wait for the guest to be ready.
    Boot,
    /// In the guest: `ip link set eth0 up`.
    LinkUp,
    /// Observe: `ip link show eth0`, operstate, carrier_changes.
    Show {
        /// The label expectations use; `None` when unlabelled.
        label: Option<String>,
    },
    /// In the guest: `rmmod virtio_net; modprobe virtio_net` (unbind and
    /// rebind on the kernel-only route).
    ReloadDriver,
    /// From the device side: set the link down or up (control socket,
    /// QEMU `set_link`).
    DeviceLink(LinkState),
    /// Wait.
    Wait(Duration),
}

impl Serialize for Step {
    /// As the scenario file writes it: `"link-up"`, `{"wait": "500ms"}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (key, value) = match self {
            Self::Boot => return s.serialize_str("boot"),
            Self::LinkUp => return s.serialize_str("link-up"),
            Self::Show { label: None } => return s.serialize_str("show"),
            Self::ReloadDriver => return s.serialize_str("reload-driver"),
            Self::Show { label: Some(l) } => ("show", l.clone()),
            Self::DeviceLink(LinkState::Up) => ("device-link", "up".to_string()),
            Self::DeviceLink(LinkState::Down) => ("device-link", "down".to_string()),
            Self::Wait(d) => ("wait", format_duration(*d)),
        };
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, &value)?;
        m.end()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boot => f.write_str("boot"),
            Self::LinkUp => f.write_str("link-up"),
            Self::Show { label: None } => f.write_str("show"),
            Self::Show { label: Some(l) } => write!(f, "show {l}"),
            Self::ReloadDriver => f.write_str("reload-driver"),
            Self::DeviceLink(LinkState::Up) => f.write_str("device-link up"),
            Self::DeviceLink(LinkState::Down) => f.write_str("device-link down"),
            Self::Wait(d) => write!(f, "wait {}", format_duration(*d)),
        }
    }
}

/// A virtio feature named in an expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureRef {
    /// The name as written.
    pub name: String,
    /// Its bit number.
    pub bit: u32,
}

/// How many carrier transitions are expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CarrierChanges {
    /// Exactly this many.
    Exactly(u64),
    /// At least this many.
    AtLeast(u64),
}

/// What one show step must observe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Which show step: its position among the show steps, from 0.
    pub show: usize,
    /// The show step's label (its own, or `show N`).
    pub label: String,
    /// Where the expectation is written.
    pub location: Location,
    /// The operstate.
    pub operstate: Option<Operstate>,
    /// Flags that must be present.
    pub flags: Vec<String>,
    /// Flags that must be absent.
    pub no_flags: Vec<String>,
    /// carrier_changes.
    pub carrier_changes: Option<CarrierChanges>,
    /// Features that must have been negotiated.
    pub features: Vec<FeatureRef>,
    /// Features that must not have been negotiated.
    pub no_features: Vec<FeatureRef>,
    /// The MTU.
    pub mtu: Option<u32>,
}
