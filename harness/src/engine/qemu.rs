//! The QEMU engine: each scenario's guest (Debian kernel + the agent's
//! initramfs, or the lab's test kernel) boots under `qemu-system-x86_64`
//! with QEMU's own virtio-net, an implementation independent of ours:
//! virtio-net-pci on the `pc` machine, or for virtio-mmio scenarios a
//! modern virtio-net-device on the `microvm` machine. The scenario's
//! feature list becomes QEMU device properties; what QEMU then offers is
//! read back over QMP (`x-query-virtio-status`) and must equal the
//! scenario's offer. Link changes go through QMP `set_link`. `-accel kvm`
//! only where KVM is hardware-backed, TCG otherwise; the name says which.
//!
//! # Feature bits and QEMU properties
//!
//! | bits | QEMU |
//! |---|---|
//! | csum, guest_csum, guest_tso4/6, guest_ecn, guest_ufo, host_tso4/6, host_ecn, host_ufo | the property of the same name; QEMU offers them only with a backend that carries the virtio-net header, so a device offering any of them gets a TAP backend (`vnet_hdr=on`; needs CAP_NET_ADMIN), else the user backend |
//! | ctrl_guest_offloads, mrg_rxbuf, status, ctrl_vq, ctrl_rx, ctrl_vlan, ctrl_rx_extra, guest_announce, mq, ctrl_mac_addr, notify_on_empty, any_layout, indirect_desc, event_idx | the property of the same name |
//! | gso, access_platform, ring_packed, ring_reset, rsc_ext, rss, hash_report | `gso`, `iommu_platform`, `packed`, `queue_reset`, `guest_rsc_ext`, `rss`, `hash` (our device implements none, so always off) |
//! | mtu | `host_mtu=N` (the scenario's MTU, 1500 when only the bit is given) |
//! | speed_duplex | `speed=10000,duplex=full`: QEMU cannot offer the bit with unknown values, which our device reports |
//! | mac, version_1 | always offered by QEMU (`mac=` sets the address): a device without them is not supported |
//! | in_order, order_platform, sr_iov, notification_data, device_stats, vq_notf_coal, notf_coal, guest_uso4/6, host_uso, guest_hdrlen, standby | no QEMU 7.2 property: not supported |

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devices::virtio::net::features::{by_name, has, mask, names};
use devices::virtio::net::NetConfig;
use guest_images::exec::{find_tool, QEMU};
use guest_images::qemu::{QemuBoot, QemuProcess, Qmp, NETDEV_ID};
use guest_images::{InitramfsCompression, PowerOff};
use serde_json::{json, Value};
use virtio_bindings::virtio_config::{
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_RING_PACKED,
    VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

use super::agent::{self, AgentPlan, Machine};
use super::guest::Guests;
use super::{Engine, EngineError, Observation, RunContext};
use crate::host::KvmKind;
use crate::scenario::{Scenario, Transport};

/// Feature bits that are on/off properties of QEMU's virtio-net (pci and device).
#[rustfmt::skip]
pub const PROPERTIES: &[(u32, &str)] = &[
    (VIRTIO_NET_F_CSUM, "csum"),
    (VIRTIO_NET_F_GUEST_CSUM, "guest_csum"),
    (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, "ctrl_guest_offloads"),
    (VIRTIO_NET_F_GSO, "gso"),
    (VIRTIO_NET_F_GUEST_TSO4, "guest_tso4"),
    (VIRTIO_NET_F_GUEST_TSO6, "guest_tso6"),
    (VIRTIO_NET_F_GUEST_ECN, "guest_ecn"),
    (VIRTIO_NET_F_GUEST_UFO, "guest_ufo"),
    (VIRTIO_NET_F_HOST_TSO4, "host_tso4"),
    (VIRTIO_NET_F_HOST_TSO6, "host_tso6"),
    (VIRTIO_NET_F_HOST_ECN, "host_ecn"),
    (VIRTIO_NET_F_HOST_UFO, "host_ufo"),
    (VIRTIO_NET_F_MRG_RXBUF, "mrg_rxbuf"),
    (VIRTIO_NET_F_STATUS, "status"),
    (VIRTIO_NET_F_CTRL_VQ, "ctrl_vq"),
    (VIRTIO_NET_F_CTRL_RX, "ctrl_rx"),
    (VIRTIO_NET_F_CTRL_VLAN, "ctrl_vlan"),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, "ctrl_rx_extra"),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, "guest_announce"),
    (VIRTIO_NET_F_MQ, "mq"),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, "ctrl_mac_addr"),
    (VIRTIO_F_NOTIFY_ON_EMPTY, "notify_on_empty"),
    (VIRTIO_F_ANY_LAYOUT, "any_layout"),
    (VIRTIO_RING_F_INDIRECT_DESC, "indirect_desc"),
    (VIRTIO_RING_F_EVENT_IDX, "event_idx"),
    (VIRTIO_F_ACCESS_PLATFORM, "iommu_platform"),
    (VIRTIO_F_RING_PACKED, "packed"),
    (VIRTIO_F_RING_RESET, "queue_reset"),
    (VIRTIO_NET_F_RSC_EXT, "guest_rsc_ext"),
    (VIRTIO_NET_F_RSS, "rss"),
    (VIRTIO_NET_F_HASH_REPORT, "hash"),
];

/// Bits QEMU offers whatever the properties say.
pub const ALWAYS_OFFERED: &[u32] = &[VIRTIO_NET_F_MAC, VIRTIO_F_VERSION_1];

/// Offloads QEMU offers only when the backend carries the virtio-net
/// header (TAP with `vnet_hdr=on`).
pub const NEED_VNET_HDR: &[u32] = &[
    VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_UFO,
    VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_ECN,
    VIRTIO_NET_F_HOST_UFO,
];

/// Bits in QEMU's host features that a modern (virtio 1.x) driver never
/// sees: GSO and bit 30 (`VHOST_USER_F_PROTOCOL_FEATURES`, the legacy
/// "bad feature"). They are left out when the offer is compared.
pub const LEGACY_ONLY: u64 = mask(VIRTIO_NET_F_GSO) | mask(30);

/// The `id` of the NIC.
const NIC_ID: &str = "vnet0";

/// Where the NIC sits: QEMU's pc machine with virtio-net-pci, or its
/// microvm machine with a virtio-mmio virtio-net-device (QEMU then adds the
/// `virtio_mmio.device=` parameter to the kernel command line itself; the
/// device must be told to be modern, as the lab's device is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// `pc` + `virtio-net-pci`.
    Pc,
    /// `microvm,acpi=off` + `virtio-net-device` (virtio-mmio, version 2).
    Microvm,
}

impl Board {
    /// For the scenario's transport.
    pub fn for_transport(t: Transport) -> Self {
        match t {
            Transport::Pci => Self::Pc,
            Transport::Mmio => Self::Microvm,
        }
    }

    /// The QEMU device model of the NIC.
    pub fn device(self) -> &'static str {
        match self {
            Self::Pc => "virtio-net-pci",
            Self::Microvm => "virtio-net-device",
        }
    }

    /// The QOM path of the NIC's virtio device.
    pub fn qom_path(self) -> String {
        match self {
            Self::Pc => format!("/machine/peripheral/{NIC_ID}/virtio-backend"),
            Self::Microvm => format!("/machine/peripheral/{NIC_ID}"),
        }
    }

    /// `-M` and other arguments, and what the kernel command line needs.
    fn configure(self, boot: &mut QemuBoot) {
        if self == Self::Microvm {
            boot.machine = Some("microvm,acpi=off".into());
            boot.extra_args = vec!["-global".into(), "virtio-mmio.force-legacy=false".into()];
            // microvm has no keyboard controller to reset through: a triple
            // fault resets it (the later reboot= wins over the agent's).
            boot.extra_cmdline = "reboot=t".into();
        }
    }
}

/// The virtio-net properties for a device offering `offered`, or why
/// QEMU cannot offer exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicProperties {
    /// `name=value` items for `-device virtio-net-pci,...` (or `virtio-net-device`).
    pub properties: Vec<String>,
    /// Whether the backend must carry the virtio-net header.
    pub needs_vnet_hdr: bool,
}

/// Maps a device description to QEMU properties.
pub fn nic_properties(net: &NetConfig) -> Result<NicProperties, String> {
    let offered = net.features;
    let mut properties = Vec::new();
    let mut handled = 0u64;
    for &(bit, name) in PROPERTIES {
        properties.push(format!(
            "{name}={}",
            if has(offered, bit) { "on" } else { "off" }
        ));
        handled |= mask(bit);
    }
    let missing: Vec<&str> = ALWAYS_OFFERED
        .iter()
        .filter(|b| !has(offered, **b))
        .filter_map(|b| by_bit_name(*b))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "QEMU's virtio-net always offers {}, which this device does not",
            missing.join(" and ")
        ));
    }
    handled |= ALWAYS_OFFERED.iter().fold(0, |m, b| m | mask(*b));
    properties.push(format!("mac={}", net.mac));
    if has(offered, VIRTIO_NET_F_MTU) {
        properties.push(format!(
            "host_mtu={}",
            net.mtu.unwrap_or(devices::virtio::net::config::DEFAULT_MTU)
        ));
    }
    handled |= mask(VIRTIO_NET_F_MTU);
    if has(offered, VIRTIO_NET_F_SPEED_DUPLEX) {
        properties.push("speed=10000".into());
        properties.push("duplex=full".into());
    }
    handled |= mask(VIRTIO_NET_F_SPEED_DUPLEX);
    let unsupported = offered & !handled;
    if unsupported != 0 {
        return Err(format!(
            "QEMU 7.2's virtio-net has no property for {}",
            names(unsupported).join(", ")
        ));
    }
    Ok(NicProperties {
        properties,
        needs_vnet_hdr: NEED_VNET_HDR.iter().any(|b| has(offered, *b)),
    })
}

fn by_bit_name(bit: u32) -> Option<&'static str> {
    devices::virtio::net::features::by_bit(bit).map(|f| f.name)
}

/// QEMU's network backend for a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `-netdev user,restrict=on`: no virtio-net header, no offloads.
    User,
    /// `-netdev tap,vnet_hdr=on`: the offloads can be offered; `None` lets
    /// the kernel name it.
    Tap(Option<String>),
}

impl Backend {
    /// The `-netdev` value.
    pub fn netdev(&self) -> String {
        match self {
            Self::User => format!("user,id={NETDEV_ID},restrict=on"),
            Self::Tap(name) => {
                let mut s = format!("tap,id={NETDEV_ID},script=no,downscript=no,vnet_hdr=on");
                if let Some(n) = name {
                    s.push_str(",ifname=");
                    s.push_str(n);
                }
                s
            }
        }
    }
}

/// Chooses the backend: the scenario's TAP if it names one; otherwise TAP
/// only when the offer has offloads (they need the virtio-net header),
/// else the user backend. `tap` says whether TAP devices can be made here.
pub fn backend(
    net: &NetConfig,
    needs_vnet_hdr: bool,
    tap: &Result<(), String>,
) -> Result<Backend, String> {
    use devices::net::BackendKind;
    let chosen = match &net.backend {
        BackendKind::Memory | BackendKind::Loopback => {
            return Err(format!(
                "the backend `{}` is a test backend of the lab's VMM; QEMU has none like it",
                if net.backend == BackendKind::Memory {
                    "memory"
                } else {
                    "loopback"
                }
            ))
        }
        BackendKind::Tap { name } => Backend::Tap(name.clone()),
        BackendKind::None if needs_vnet_hdr => Backend::Tap(None),
        BackendKind::None => Backend::User,
    };
    if let (Backend::Tap(_), Err(why)) = (&chosen, tap) {
        let reason = if needs_vnet_hdr {
            "the device offers checksum/segmentation offloads, which QEMU offers only over a TAP \
             backend"
        } else {
            "the scenario asks for a TAP backend"
        };
        return Err(format!("{reason}, and {why}"));
    }
    Ok(chosen)
}

/// Whether this process can create TAP devices: `/dev/net/tun` exists and
/// it has CAP_NET_ADMIN.
pub fn tap_available() -> Result<(), String> {
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun does not exist".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u32 = 12;
    if has(cap_eff, CAP_NET_ADMIN) {
        Ok(())
    } else {
        Err("this process lacks CAP_NET_ADMIN to create a TAP device (run as root)".into())
    }
}

/// The feature bits in the `host-features` of QMP's
/// `x-query-virtio-status`: decoded names (`VIRTIO_NET_F_CSUM: ...`) and
/// `unknown-*` masks. Names it does not know are returned apart.
pub fn decode_host_features(features: &Value) -> (u64, Vec<String>) {
    let mut bits = 0u64;
    let mut unknown = Vec::new();
    let Some(map) = features.as_object() else {
        return (0, vec![format!("not an object: {features}")]);
    };
    for (key, value) in map {
        if let Some(n) = value.as_u64() {
            if key.starts_with("unknown") {
                bits |= n;
            }
            continue;
        }
        for item in value.as_array().into_iter().flatten() {
            let text = item.as_str().unwrap_or_default();
            let name = text.split(':').next().unwrap_or_default().trim();
            match name {
                "VHOST_USER_F_PROTOCOL_FEATURES" | "VIRTIO_F_BAD_FEATURE" => bits |= mask(30),
                _ => match by_name(name) {
                    Some(f) => bits |= mask(f.bit),
                    None => unknown.push(name.to_string()),
                },
            }
        }
    }
    (bits, unknown)
}

/// How QEMU accelerates the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation (works everywhere).
    Tcg,
    /// KVM (only where it is hardware-backed).
    Kvm,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

/// The QEMU engine.
#[derive(Debug)]
pub struct QemuEngine {
    accel: Accel,
    version: String,
    why: Option<String>,
    tap: Result<(), String>,
    guests: Guests,
}

impl QemuEngine {
    /// QEMU with `accel`; KVM only where KVM is hardware-backed.
    pub fn new(accel: Accel) -> Result<Self, String> {
        if accel == Accel::Kvm {
            match KvmKind::detect() {
                KvmKind::Hardware => {}
                other => return Err(format!("QEMU cannot use KVM here: this host has {other}")),
            }
        }
        let version = qemu_version()?;
        Ok(Self {
            accel,
            version,
            why: None,
            tap: tap_available(),
            guests: Guests::new(InitramfsCompression::Gzip),
        })
    }

    /// KVM where it is hardware-backed, else TCG; the name says why.
    pub fn auto() -> Result<Self, String> {
        let kvm = KvmKind::detect();
        let (accel, why) = match &kvm {
            KvmKind::Hardware => (Accel::Kvm, "hardware-backed KVM".to_string()),
            other => (Accel::Tcg, format!("not KVM: this host has {other}")),
        };
        let mut engine = Self::new(accel)?;
        engine.why = Some(why);
        Ok(engine)
    }

    /// The accelerator.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// What QEMU would be given for `scenario`: the device description,
    /// properties and backend, or why it cannot run it.
    fn nic(&self, scenario: &Scenario) -> Result<(NetConfig, NicProperties, Backend), String> {
        let net = agent::net_config(scenario)?;
        let props = nic_properties(&net)?;
        let backend = backend(&net, props.needs_vnet_hdr, &self.tap)?;
        Ok((net, props, backend))
    }
}

/// `qemu-system-x86_64 --version`, e.g. `7.2`, with a deadline.
fn qemu_version() -> Result<String, String> {
    let program = find_tool(QEMU).map_err(|e| e.to_string())?;
    let mut child = Command::new(&program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} --version did not answer", program.display()));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot read {} --version: {e}", program.display()))?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// `7.2` out of `QEMU emulator version 7.2.22 (Debian ...)`.
pub fn parse_version(text: &str) -> Result<String, String> {
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .ok_or_else(|| format!("no version in `{}`", text.trim()))?;
    Ok(version.split('.').take(2).collect::<Vec<_>>().join("."))
}

/// A running QEMU as the session loop sees it.
struct QemuMachine {
    process: Option<QemuProcess>,
    qmp: Qmp,
    stderr: String,
}

impl QemuMachine {
    fn collect(&mut self) -> Option<std::process::ExitStatus> {
        let finished = self.process.take()?.finish();
        self.stderr = finished.stderr;
        finished.status
    }
}

impl Machine for QemuMachine {
    fn set_link(&mut self, up: bool) -> Result<(), String> {
        self.qmp
            .set_link(NETDEV_ID, up)
            .map_err(|e| format!("QMP set_link {NETDEV_ID} up={up}: {e}"))
    }

    fn poll_end(&mut self) -> Option<Result<(), EngineError>> {
        let status = self.process.as_mut()?.try_wait()?;
        self.collect();
        Some(if status.success() {
            Ok(())
        } else {
            Err(EngineError::VmmCrash {
                detail: format!("QEMU exited with {status}: {}", last_line(&self.stderr)),
                serial_tail: Vec::new(),
            })
        })
    }

    fn kill(&mut self) {
        self.collect();
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(nothing on its standard error)")
}

impl Engine for QemuEngine {
    fn name(&self) -> String {
        match &self.why {
            Some(why) => format!("qemu {} ({}, {why})", self.version, self.accel.as_str()),
            None => format!("qemu {} ({})", self.version, self.accel.as_str()),
        }
    }

    fn supports(&self, scenario: &Scenario) -> Result<(), String> {
        self.nic(scenario).map(drop)
    }

    fn prepare(&self, scenarios: &[&Scenario]) -> Result<(), EngineError> {
        self.guests.prepare(scenarios)
    }

    fn run(&self, scenario: &Scenario, ctx: &RunContext) -> Result<Observation, EngineError> {
        let (net, props, backend) = self
            .nic(scenario)
            .map_err(|detail| EngineError::Infrastructure { detail })?;
        let plan = AgentPlan::new(scenario, net.features)?;
        let files = self.guests.get(scenario)?;
        if ctx.should_stop() {
            return Err(ctx.timed_out());
        }
        log::info!(
            "{}: {} under QEMU ({}), netdev {}",
            scenario.name,
            files.label,
            self.accel.as_str(),
            backend.netdev()
        );
        let poweroff = if files.acpi {
            PowerOff::Poweroff
        } else {
            PowerOff::Reboot
        };
        let config = plan.agent_config(
            agent::watchdog_for(ctx.remaining()),
            poweroff,
            files.load_modules,
        );
        // A short path: a socket path has at most 107 bytes.
        let sockets = tempfile::Builder::new()
            .prefix("vnetlab-qmp-")
            .tempdir()
            .map_err(|e| EngineError::Infrastructure {
                detail: format!("cannot create a directory for the QMP socket: {e}"),
            })?;
        let board = Board::for_transport(scenario.device.transport);
        let mut boot = QemuBoot::new(files.bzimage, files.initramfs, config, true);
        boot.accel = self.accel.as_str().into();
        boot.timeout = ctx.remaining();
        boot.netdev = backend.netdev();
        boot.net_device = Some(format!(
            "{},netdev={NETDEV_ID},id={NIC_ID},{}",
            board.device(),
            props.properties.join(",")
        ));
        board.configure(&mut boot);
        boot.qmp_socket = Some(sockets.path().join("qmp.sock"));
        agent::check_cmdline(&boot.cmdline())?;
        let _ = std::fs::write(args_file(&ctx.work_dir), boot.args().join("\n"));
        let mut process = boot.spawn().map_err(|e| EngineError::Infrastructure {
            detail: format!("cannot start QEMU: {e}"),
        })?;
        let console = process.take_console();
        let qmp = match process.qmp(Duration::from_secs(10).min(ctx.remaining())) {
            Ok(q) => q,
            Err(e) => {
                let finished = process.finish();
                return Err(EngineError::VmmCrash {
                    detail: format!(
                        "QEMU did not answer on its QMP socket ({e}); it {}: {}",
                        finished
                            .status
                            .map_or("was killed".into(), |s| format!("exited with {s}")),
                        last_line(&finished.stderr)
                    ),
                    serial_tail: ctx.serial.lines(),
                });
            }
        };
        let mut machine = QemuMachine {
            process: Some(process),
            qmp,
            stderr: String::new(),
        };
        if let Err(e) = verify_offer(&mut machine.qmp, &board.qom_path(), net.features) {
            machine.kill();
            return Err(e);
        }
        let session = agent::drive(&plan, ctx, &console, &mut machine);
        machine.kill();
        if !machine.stderr.trim().is_empty() {
            log::info!(
                "{}: QEMU's stderr: {}",
                scenario.name,
                machine.stderr.trim()
            );
        }
        let _ = std::fs::write(ctx.work_dir.join("console.log"), &session.console);
        agent::observe(&plan, scenario, &session, ctx)
    }
}

/// Checks over QMP that QEMU offers exactly `offered` (bits a modern
/// driver never sees aside). A QEMU without `x-query-virtio-status` is
/// trusted, with a warning.
fn verify_offer(qmp: &mut Qmp, qom_path: &str, offered: u64) -> Result<(), EngineError> {
    let status = match qmp.execute("x-query-virtio-status", json!({ "path": qom_path })) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot read QEMU's offered features back ({e}); trusting the properties");
            return Ok(());
        }
    };
    let (bits, unknown) = decode_host_features(&status["host-features"]);
    if !unknown.is_empty() {
        log::warn!("QEMU offers features this harness cannot name: {unknown:?}");
    }
    let actual = bits & !LEGACY_ONLY;
    let wanted = offered & !LEGACY_ONLY;
    if actual == wanted {
        return Ok(());
    }
    let extra = names(actual & !wanted);
    let lacking = names(wanted & !actual);
    Err(EngineError::Infrastructure {
        detail: format!(
            "QEMU does not offer the scenario's features: it adds [{}] and lacks [{}] \
             (offered {:#x}, wanted {:#x})",
            extra.join(", "),
            lacking.join(", "),
            actual,
            wanted
        ),
    })
}

/// The file in a scenario's work directory that QEMU's arguments are
/// written to (one per line), for reproducing a run by hand.
pub fn args_file(work_dir: &std::path::Path) -> PathBuf {
    work_dir.join("qemu.args")
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::net::BackendKind;
    use devices::virtio::net::features::default_mask;

    fn net(spec: &str) -> NetConfig {
        NetConfig::parse(spec).unwrap()
    }

    fn props(n: &NetConfig) -> Vec<String> {
        nic_properties(n).unwrap().properties
    }

    #[test]
    fn every_property_is_set_explicitly() {
        let p = props(&net("features=-status"));
        assert_eq!(p.len(), PROPERTIES.len() + 1, "{p:?}");
        for want in [
            "csum=on",
            "status=off",
            "mrg_rxbuf=on",
            "queue_reset=off",
            "notify_on_empty=off",
            "any_layout=off",
            "gso=off",
            "guest_ufo=off",
            "mq=off",
            "event_idx=on",
            "mac=52:54:00:12:34:56",
        ] {
            assert!(p.contains(&want.to_string()), "{want} not in {p:?}");
        }
        assert!(!p.iter().any(|x| x.starts_with("host_mtu")));
        assert!(
            nic_properties(&net("features=-status"))
                .unwrap()
                .needs_vnet_hdr
        );
    }

    #[test]
    fn mtu_mac_and_speed_have_their_own_properties() {
        let p = props(&net(
            "mtu=9000,mac=52:54:00:aa:bb:cc,features=+speed_duplex",
        ));
        for want in [
            "host_mtu=9000",
            "mac=52:54:00:aa:bb:cc",
            "speed=10000",
            "duplex=full",
        ] {
            assert!(p.contains(&want.to_string()), "{want} not in {p:?}");
        }
        assert!(props(&net("features=+mtu")).contains(&"host_mtu=1500".to_string()));
    }

    #[test]
    fn a_device_without_offloads_needs_no_tap() {
        let n = net("features=none+version_1+mac+status+mrg_rxbuf");
        let p = nic_properties(&n).unwrap();
        assert!(!p.needs_vnet_hdr);
        assert!(p.properties.contains(&"csum=off".to_string()));
        assert_eq!(backend(&n, false, &Err("no tap".into())), Ok(Backend::User));
    }

    #[test]
    fn what_qemu_cannot_offer_is_refused() {
        let e = nic_properties(&net("features=none+version_1")).unwrap_err();
        assert_eq!(
            e,
            "QEMU's virtio-net always offers mac, which this device does not"
        );
        let mut n = net("features=none+version_1+mac");
        n.allow_invalid = true;
        n.features |= mask(VIRTIO_NET_F_NOTF_COAL) | mask(VIRTIO_F_VERSION_1);
        let e = nic_properties(&n).unwrap_err();
        assert_eq!(e, "QEMU 7.2's virtio-net has no property for notf_coal");
    }

    #[test]
    fn backends_follow_the_offer_and_the_scenario() {
        let default = net("features=default");
        let ok = Ok(());
        let no_tap: Result<(), String> = Err("this process lacks CAP_NET_ADMIN".into());
        assert_eq!(backend(&default, true, &ok), Ok(Backend::Tap(None)));
        let e = backend(&default, true, &no_tap).unwrap_err();
        assert!(e.contains("offloads") && e.contains("CAP_NET_ADMIN"), "{e}");
        let mut named = net("features=none+version_1+mac");
        named.backend = BackendKind::Tap {
            name: Some("vnl0".into()),
        };
        assert_eq!(
            backend(&named, false, &ok),
            Ok(Backend::Tap(Some("vnl0".into())))
        );
        assert_eq!(
            Backend::Tap(Some("vnl0".into())).netdev(),
            "tap,id=n0,script=no,downscript=no,vnet_hdr=on,ifname=vnl0"
        );
        assert_eq!(Backend::User.netdev(), "user,id=n0,restrict=on");
        named.backend = BackendKind::Loopback;
        let e = backend(&named, false, &ok).unwrap_err();
        assert!(e.contains("`loopback`"), "{e}");
    }

    #[test]
    fn qemus_own_answer_decodes_to_the_offer() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qemu/x-query-virtio-status-default-no-status.json"
        ));
        let status: Value = serde_json::from_str(text).unwrap();
        let (bits, unknown) = decode_host_features(&status["host-features"]);
        assert!(unknown.is_empty(), "{unknown:?}");
        let wanted = default_mask() & !mask(VIRTIO_NET_F_STATUS);
        assert_eq!(bits & !LEGACY_ONLY, wanted, "{:?}", names(bits ^ wanted));
        assert!(has(bits, 30), "QEMU lists the legacy bit 30");
    }

    #[test]
    fn odd_answers_do_not_panic() {
        assert_eq!(decode_host_features(&json!(null)).0, 0);
        let (bits, unknown) = decode_host_features(&json!({
            "dev-features": ["VIRTIO_NET_F_STATUS: x", "VIRTIO_NET_F_FUTURE: y", 3],
            "unknown-dev-features": 1099511627776u64,
        }));
        assert_eq!(bits, mask(16) | mask(40));
        assert_eq!(unknown, ["VIRTIO_NET_F_FUTURE", ""]);
    }

    #[test]
    fn versions_are_major_minor() {
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"),
            Ok("7.2".into())
        );
        assert!(parse_version("no version here").is_err());
        assert!(parse_version("version").is_err());
    }

    #[test]
    fn tap_check_answers_without_panicking() {
        match tap_available() {
            Ok(()) => assert!(std::path::Path::new("/dev/net/tun").exists()),
            Err(why) => assert!(
                why.contains("tun") || why.contains("CAP_NET_ADMIN"),
                "{why}"
            ),
        }
    }
}

#[cfg(test)]
mod board_tests {
    use super::*;

    #[test]
    fn mmio_scenarios_get_a_modern_device_on_microvm() {
        let mut boot = QemuBoot::new("k".into(), "i".into(), Default::default(), true);
        Board::Pc.configure(&mut boot);
        assert_eq!((boot.machine.as_deref(), boot.extra_args.len()), (None, 0));
        let mmio = Board::for_transport(Transport::Mmio);
        mmio.configure(&mut boot);
        assert_eq!(mmio.device(), "virtio-net-device");
        assert_eq!(mmio.qom_path(), "/machine/peripheral/vnet0");
        assert_eq!(
            Board::Pc.qom_path(),
            "/machine/peripheral/vnet0/virtio-backend"
        );
        let args = boot.args();
        assert!(args.contains(&"microvm,acpi=off".to_string()));
        assert!(args.contains(&"virtio-mmio.force-legacy=false".to_string()));
        assert!(boot.cmdline().ends_with(" reboot=t"), "{}", boot.cmdline());
    }
}
