//! Virtio-net feature bits: their spec names, the set a modern VMM offers by
//! default, the `features=` spec language users choose them with, and the
//! dependency rules of virtio 1.2 section 5.1.3.1.
//!
//! # The `features=` language
//!
//! A spec is a list of items separated by `,`, `;`, whitespace, or simply
//! written one after the other when each starts with `+` or `-`
//! (`-status+mrg_rxbuf` is `-status,+mrg_rxbuf`). An item is
//!
//! * `+NAME` adds the feature, `-NAME` removes it;
//! * `NAME` without a sign: if it is the first item, the list is absolute
//!   and starts from nothing (`version_1,mac,status` offers exactly those
//!   three bits); later unsigned items add;
//! * `default`, `all` (every implemented bit) or `none` as the first item
//!   chooses the starting set explicitly (`none+version_1+mac`).
//!
//! When the first item is signed the starting set is the default set.
//! `NAME` is a spec name in lower or upper case, with or without its
//! `VIRTIO_NET_F_` / `VIRTIO_F_` / `VIRTIO_RING_F_` prefix (`status`,
//! `VIRTIO_NET_F_STATUS`, `ring_event_idx`), `bitN` for bit number N, or a
//! hexadecimal mask such as `0x10000`. A bare decimal number is refused
//! because it could mean either a bit number or a mask.
//!
//! Parsing accepts any bit; [`check`] then refuses bits the device does not
//! implement ([`check_implemented`]) and combinations the spec forbids,
//! naming the rule ([`check_rules`]). The two are separate choices of the
//! user: `allow-invalid` skips the spec's rules (a broken device is a test
//! case), `offer-unimplemented` offers bits the device does not implement
//! (it then claims a feature it will not honour: a driver that acks
//! `ring_packed` still gets split rings).

use std::fmt::Write as _;

use serde::Serialize;
use virtio_bindings::virtio_config::{
    VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_ORDER_PLATFORM, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
    VIRTIO_F_SR_IOV, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Errors from parsing or checking a feature set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// A name that is not a known feature.
    #[error("unknown feature `{name}`; valid names are: {valid}; or bitN for a bit number, 0xMASK for a mask")]
    UnknownName {
        /// The name as written.
        name: String,
        /// The implemented feature names, comma separated.
        valid: String,
    },
    /// A number that is not a valid bit number or mask.
    #[error("`{token}` is not a feature: write bitN for bit number N (0 to 63) or 0xMASK for a hexadecimal mask")]
    BadNumber {
        /// The token as written.
        token: String,
    },
    /// A keyword that only makes sense as the first item.
    #[error("`{token}` can only be the first item of a feature list")]
    MisplacedKeyword {
        /// The keyword.
        token: String,
    },
    /// An item with a sign but no name.
    #[error("a `+` or `-` without a feature name in `{spec}`")]
    EmptyItem {
        /// The whole spec.
        spec: String,
    },
    /// A bit the device has no implementation for.
    #[error("bit {bit} ({name}) is not implemented by this device; pass offer-unimplemented to offer it anyway (the device will not honour it)")]
    NotImplemented {
        /// The bit number.
        bit: u32,
        /// Its name, or `bitN`.
        name: String,
    },
    /// A dependency rule of the spec is broken.
    #[error("{feature} requires {requires} ({reference}); add +{first_required}, remove {feature}, or pass allow-invalid")]
    RuleViolated {
        /// The feature that has a requirement.
        feature: &'static str,
        /// The requirement, e.g. `guest_tso4 or guest_tso6`.
        requires: String,
        /// The first feature that would satisfy it.
        first_required: &'static str,
        /// Where the rule comes from.
        reference: &'static str,
    },
}

/// A `Result` with a [`FeatureError`].
pub type Result<T> = std::result::Result<T, FeatureError>;

/// One feature bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The bit number.
    pub bit: u32,
    /// The lower-case spec name without prefix (`status`).
    pub name: &'static str,
    /// The spec's constant name (`VIRTIO_NET_F_STATUS`).
    pub spec_name: &'static str,
    /// Whether the device implements the behaviour the bit promises.
    pub implemented: bool,
    /// Whether the device offers it when the user does not say otherwise.
    pub default: bool,
    /// What the bit means, in a few words.
    pub summary: &'static str,
}

const fn f(
    bit: u32,
    name: &'static str,
    spec_name: &'static str,
    implemented: bool,
    default: bool,
    summary: &'static str,
) -> Feature {
    Feature {
        bit,
        name,
        spec_name,
        implemented,
        default,
        summary,
    }
}

/// Every feature bit this module knows, implemented or not, by bit number.
///
/// The defaults follow what QEMU's virtio-net offers (the most complete
/// widely used implementation), minus UFO (dropped by Linux 4.14, refused by
/// some TAP drivers) and minus MQ, MTU and SPEED_DUPLEX, which the
/// configuration adds when it sets more than one queue pair or an MTU.
/// Firecracker offers a subset (offloads, MRG_RXBUF, EVENT_IDX, MAC; no
/// STATUS and no control queue); check a VMM's source before comparing.
#[rustfmt::skip]
pub const FEATURES: &[Feature] = &[
    f(VIRTIO_NET_F_CSUM, "csum", "VIRTIO_NET_F_CSUM", true, true, "device handles frames with partial checksum"),
    f(VIRTIO_NET_F_GUEST_CSUM, "guest_csum", "VIRTIO_NET_F_GUEST_CSUM", true, true, "driver handles frames with partial checksum"),
    f(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, "ctrl_guest_offloads", "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS", true, true, "driver can change guest offloads through the control queue"),
    f(VIRTIO_NET_F_MTU, "mtu", "VIRTIO_NET_F_MTU", true, false, "device reports its maximum MTU in config space"),
    f(VIRTIO_NET_F_MAC, "mac", "VIRTIO_NET_F_MAC", true, true, "device has a MAC address in config space"),
    f(VIRTIO_NET_F_GSO, "gso", "VIRTIO_NET_F_GSO", false, false, "legacy: device handles any GSO type"),
    f(VIRTIO_NET_F_GUEST_TSO4, "guest_tso4", "VIRTIO_NET_F_GUEST_TSO4", true, true, "driver can receive TSOv4"),
    f(VIRTIO_NET_F_GUEST_TSO6, "guest_tso6", "VIRTIO_NET_F_GUEST_TSO6", true, true, "driver can receive TSOv6"),
    f(VIRTIO_NET_F_GUEST_ECN, "guest_ecn", "VIRTIO_NET_F_GUEST_ECN", true, true, "driver can receive TSO with ECN"),
    f(VIRTIO_NET_F_GUEST_UFO, "guest_ufo", "VIRTIO_NET_F_GUEST_UFO", true, false, "driver can receive UFO"),
    f(VIRTIO_NET_F_HOST_TSO4, "host_tso4", "VIRTIO_NET_F_HOST_TSO4", true, true, "device can receive TSOv4 from the driver"),
    f(VIRTIO_NET_F_HOST_TSO6, "host_tso6", "VIRTIO_NET_F_HOST_TSO6", true, true, "device can receive TSOv6 from the driver"),
    f(VIRTIO_NET_F_HOST_ECN, "host_ecn", "VIRTIO_NET_F_HOST_ECN", true, true, "device can receive TSO with ECN"),
    f(VIRTIO_NET_F_HOST_UFO, "host_ufo", "VIRTIO_NET_F_HOST_UFO", true, false, "device can receive UFO"),
    f(VIRTIO_NET_F_MRG_RXBUF, "mrg_rxbuf", "VIRTIO_NET_F_MRG_RXBUF", true, true, "driver can merge receive buffers"),
    f(VIRTIO_NET_F_STATUS, "status", "VIRTIO_NET_F_STATUS", true, true, "config status field (link up, announce) is available"),
    f(VIRTIO_NET_F_CTRL_VQ, "ctrl_vq", "VIRTIO_NET_F_CTRL_VQ", true, true, "control channel is available"),
    f(VIRTIO_NET_F_CTRL_RX, "ctrl_rx", "VIRTIO_NET_F_CTRL_RX", true, true, "control channel RX mode support"),
    f(VIRTIO_NET_F_CTRL_VLAN, "ctrl_vlan", "VIRTIO_NET_F_CTRL_VLAN", true, true, "control channel VLAN filtering"),
    f(VIRTIO_NET_F_CTRL_RX_EXTRA, "ctrl_rx_extra", "VIRTIO_NET_F_CTRL_RX_EXTRA", true, true, "extra RX mode control (all-unicast, no-multicast, ...)"),
    f(VIRTIO_NET_F_GUEST_ANNOUNCE, "guest_announce", "VIRTIO_NET_F_GUEST_ANNOUNCE", true, true, "driver can send gratuitous packets when asked"),
    f(VIRTIO_NET_F_MQ, "mq", "VIRTIO_NET_F_MQ", true, false, "device supports multiqueue with automatic receive steering"),
    f(VIRTIO_NET_F_CTRL_MAC_ADDR, "ctrl_mac_addr", "VIRTIO_NET_F_CTRL_MAC_ADDR", true, true, "MAC address can be set through the control channel"),
    f(VIRTIO_F_NOTIFY_ON_EMPTY, "notify_on_empty", "VIRTIO_F_NOTIFY_ON_EMPTY", true, false, "legacy: interrupt when a queue runs empty, even if suppressed"),
    f(VIRTIO_F_ANY_LAYOUT, "any_layout", "VIRTIO_F_ANY_LAYOUT", true, false, "legacy: any descriptor layout (always true for virtio 1.x)"),
    f(VIRTIO_RING_F_INDIRECT_DESC, "indirect_desc", "VIRTIO_RING_F_INDIRECT_DESC", true, true, "indirect descriptor tables"),
    f(VIRTIO_RING_F_EVENT_IDX, "event_idx", "VIRTIO_RING_F_EVENT_IDX", true, true, "used_event / avail_event notification suppression"),
    f(VIRTIO_F_VERSION_1, "version_1", "VIRTIO_F_VERSION_1", true, true, "virtio 1.x device"),
    f(VIRTIO_F_ACCESS_PLATFORM, "access_platform", "VIRTIO_F_ACCESS_PLATFORM", false, false, "device is behind an IOMMU"),
    f(VIRTIO_F_RING_PACKED, "ring_packed", "VIRTIO_F_RING_PACKED", false, false, "packed virtqueues"),
    f(VIRTIO_F_IN_ORDER, "in_order", "VIRTIO_F_IN_ORDER", false, false, "buffers are used in order"),
    f(VIRTIO_F_ORDER_PLATFORM, "order_platform", "VIRTIO_F_ORDER_PLATFORM", false, false, "platform memory ordering"),
    f(VIRTIO_F_SR_IOV, "sr_iov", "VIRTIO_F_SR_IOV", false, false, "single root I/O virtualization"),
    f(VIRTIO_F_NOTIFICATION_DATA, "notification_data", "VIRTIO_F_NOTIFICATION_DATA", false, false, "driver passes extra data in notifications"),
    f(VIRTIO_F_RING_RESET, "ring_reset", "VIRTIO_F_RING_RESET", false, false, "individual queue reset"),
    f(VIRTIO_NET_F_DEVICE_STATS, "device_stats", "VIRTIO_NET_F_DEVICE_STATS", false, false, "device statistics through the control queue"),
    f(VIRTIO_NET_F_VQ_NOTF_COAL, "vq_notf_coal", "VIRTIO_NET_F_VQ_NOTF_COAL", false, false, "per-queue notification coalescing"),
    f(VIRTIO_NET_F_NOTF_COAL, "notf_coal", "VIRTIO_NET_F_NOTF_COAL", false, false, "notification coalescing"),
    f(VIRTIO_NET_F_GUEST_USO4, "guest_uso4", "VIRTIO_NET_F_GUEST_USO4", false, false, "driver can receive USOv4"),
    f(VIRTIO_NET_F_GUEST_USO6, "guest_uso6", "VIRTIO_NET_F_GUEST_USO6", false, false, "driver can receive USOv6"),
    f(VIRTIO_NET_F_HOST_USO, "host_uso", "VIRTIO_NET_F_HOST_USO", false, false, "device can receive USO"),
    f(VIRTIO_NET_F_HASH_REPORT, "hash_report", "VIRTIO_NET_F_HASH_REPORT", false, false, "device reports a hash per frame"),
    f(VIRTIO_NET_F_GUEST_HDRLEN, "guest_hdrlen", "VIRTIO_NET_F_GUEST_HDRLEN", false, false, "driver fills hdr_len exactly"),
    f(VIRTIO_NET_F_RSS, "rss", "VIRTIO_NET_F_RSS", false, false, "receive side scaling"),
    f(VIRTIO_NET_F_RSC_EXT, "rsc_ext", "VIRTIO_NET_F_RSC_EXT", false, false, "extended receive segment coalescing info"),
    f(VIRTIO_NET_F_STANDBY, "standby", "VIRTIO_NET_F_STANDBY", false, false, "failover standby for a passthrough device"),
    f(VIRTIO_NET_F_SPEED_DUPLEX, "speed_duplex", "VIRTIO_NET_F_SPEED_DUPLEX", true, false, "config space reports speed and duplex"),
];

/// Alternative spellings accepted by the parser.
const ALIASES: &[(&str, u32)] = &[
    ("ring_event_idx", VIRTIO_RING_F_EVENT_IDX),
    ("ring_indirect_desc", VIRTIO_RING_F_INDIRECT_DESC),
    ("indirect", VIRTIO_RING_F_INDIRECT_DESC),
    ("version1", VIRTIO_F_VERSION_1),
    ("iommu_platform", VIRTIO_F_ACCESS_PLATFORM),
];

/// The mask of one bit.
pub const fn mask(bit: u32) -> u64 {
    1u64 << bit
}

/// Whether `bits` has feature `bit`.
pub const fn has(bits: u64, bit: u32) -> bool {
    bits & mask(bit) != 0
}

/// The feature with this bit number, if known.
pub fn by_bit(bit: u32) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.bit == bit)
}

/// The feature with this name (any accepted spelling), if known.
pub fn by_name(name: &str) -> Option<&'static Feature> {
    let lower = name.to_ascii_lowercase();
    let bare = ["virtio_net_f_", "virtio_ring_f_", "virtio_f_"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
        .unwrap_or(&lower);
    FEATURES.iter().find(|f| f.name == bare).or_else(|| {
        ALIASES
            .iter()
            .find(|(a, _)| *a == bare)
            .and_then(|(_, bit)| by_bit(*bit))
    })
}

/// The name of a bit: its spec name if known, `bitN` otherwise.
pub fn name_of(bit: u32) -> String {
    by_bit(bit).map_or_else(|| format!("bit{bit}"), |f| f.name.to_string())
}

/// The names of every bit set in `bits`, lowest bit first.
pub fn names(bits: u64) -> Vec<String> {
    (0..64).filter(|b| has(bits, *b)).map(name_of).collect()
}

/// The bits the device implements.
pub fn implemented_mask() -> u64 {
    FEATURES
        .iter()
        .filter(|f| f.implemented)
        .fold(0, |m, f| m | mask(f.bit))
}

/// The bits offered when the user does not choose.
pub fn default_mask() -> u64 {
    FEATURES
        .iter()
        .filter(|f| f.default)
        .fold(0, |m, f| m | mask(f.bit))
}

/// The implemented feature names, comma separated (for error messages).
pub fn implemented_names() -> String {
    FEATURES
        .iter()
        .filter(|f| f.implemented)
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A feature set shown both ways, as the status report and event log do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureSet {
    /// The bits as a hexadecimal string (`0x...`).
    pub bits: String,
    /// The bits as a number.
    pub value: u64,
    /// The names of the bits.
    pub names: Vec<String>,
}

impl FeatureSet {
    /// Describes `bits`.
    pub fn new(bits: u64) -> Self {
        Self {
            bits: format!("{bits:#x}"),
            value: bits,
            names: names(bits),
        }
    }
}

/// Splits a spec into items: on `,`, `;` and whitespace, and before every
/// `+` or `-` that follows other characters.
fn items(spec: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for piece in spec.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
        let mut start = 0;
        for (i, c) in piece.char_indices() {
            if (c == '+' || c == '-') && i > start {
                out.push(&piece[start..i]);
                start = i;
            }
        }
        if start < piece.len() {
            out.push(&piece[start..]);
        }
    }
    out
}

/// The bits an item's name stands for.
fn resolve(token: &str) -> Result<u64> {
    let lower = token.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).map_err(|_| FeatureError::BadNumber {
            token: token.to_string(),
        });
    }
    if let Some(num) = lower.strip_prefix("bit") {
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            return match num.parse::<u32>() {
                Ok(bit) if bit < 64 => Ok(mask(bit)),
                _ => Err(FeatureError::BadNumber {
                    token: token.to_string(),
                }),
            };
        }
    }
    if lower.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FeatureError::BadNumber {
            token: token.to_string(),
        });
    }
    by_name(&lower)
        .map(|f| mask(f.bit))
        .ok_or_else(|| FeatureError::UnknownName {
            name: token.to_string(),
            valid: implemented_names(),
        })
}

/// Applies a feature spec (see the module docs) to `base`, the set a signed
/// list starts from.
pub fn parse_spec(spec: &str, base: u64) -> Result<u64> {
    let mut bits = base;
    for (i, item) in items(spec).into_iter().enumerate() {
        let (sign, name) = match item.as_bytes()[0] {
            b'+' => (Some(true), &item[1..]),
            b'-' => (Some(false), &item[1..]),
            _ => (None, item),
        };
        if name.is_empty() {
            return Err(FeatureError::EmptyItem {
                spec: spec.to_string(),
            });
        }
        let keyword = match name.to_ascii_lowercase().as_str() {
            "default" | "defaults" => Some(default_mask()),
            "all" => Some(implemented_mask()),
            "none" => Some(0),
            _ => None,
        };
        if let Some(start) = keyword {
            if i != 0 || sign.is_some() {
                return Err(FeatureError::MisplacedKeyword {
                    token: item.to_string(),
                });
            }
            bits = start;
            continue;
        }
        let m = resolve(name)?;
        match sign {
            Some(false) => bits &= !m,
            Some(true) => bits |= m,
            None if i == 0 => bits = m,
            None => bits |= m,
        }
    }
    Ok(bits)
}

/// A dependency rule: `feature` needs at least one of `requires_any`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The feature with the requirement.
    pub feature: u32,
    /// Any one of these satisfies it.
    pub requires_any: &'static [u32],
    /// Where the rule comes from.
    pub source: &'static str,
}

const SPEC: &str = "virtio 1.2 section 5.1.3.1";

/// The dependency rules checked by [`check`]: those of the spec's feature
/// bit requirements, plus two that follow from where the commands live
/// (the control queue). VERSION_1 is checked separately.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    Rule { feature: VIRTIO_NET_F_GUEST_TSO4, requires_any: &[VIRTIO_NET_F_GUEST_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_TSO6, requires_any: &[VIRTIO_NET_F_GUEST_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_ECN, requires_any: &[VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_UFO, requires_any: &[VIRTIO_NET_F_GUEST_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_USO4, requires_any: &[VIRTIO_NET_F_GUEST_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_USO6, requires_any: &[VIRTIO_NET_F_GUEST_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_HOST_TSO4, requires_any: &[VIRTIO_NET_F_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_HOST_TSO6, requires_any: &[VIRTIO_NET_F_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_HOST_ECN, requires_any: &[VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6], source: SPEC },
    Rule { feature: VIRTIO_NET_F_HOST_UFO, requires_any: &[VIRTIO_NET_F_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_HOST_USO, requires_any: &[VIRTIO_NET_F_CSUM], source: SPEC },
    Rule { feature: VIRTIO_NET_F_CTRL_RX, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_CTRL_VLAN, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_GUEST_ANNOUNCE, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_MQ, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_CTRL_MAC_ADDR, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_NOTF_COAL, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_VQ_NOTF_COAL, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule { feature: VIRTIO_NET_F_RSC_EXT, requires_any: &[VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6], source: SPEC },
    Rule { feature: VIRTIO_NET_F_RSS, requires_any: &[VIRTIO_NET_F_CTRL_VQ], source: SPEC },
    Rule {
        feature: VIRTIO_NET_F_CTRL_RX_EXTRA,
        requires_any: &[VIRTIO_NET_F_CTRL_RX],
        source: "virtio 1.2 section 5.1.6.5.1: its commands are RX-mode commands",
    },
    Rule {
        feature: VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        requires_any: &[VIRTIO_NET_F_CTRL_VQ],
        source: "virtio 1.2 section 5.1.6.5.6: the command travels on the control queue",
    },
];

/// Checks `bits` against the implemented set and every rule; the error
/// names the first problem.
pub fn check(bits: u64) -> Result<()> {
    check_implemented(bits)?;
    check_rules(bits)
}

/// Checks that the device implements every bit of `bits`; the error names
/// the lowest bit it does not.
pub fn check_implemented(bits: u64) -> Result<()> {
    let unimplemented = bits & !implemented_mask();
    if unimplemented != 0 {
        let bit = unimplemented.trailing_zeros();
        return Err(FeatureError::NotImplemented {
            bit,
            name: name_of(bit),
        });
    }
    Ok(())
}

/// Checks `bits` against the spec's dependency rules ([`RULES`]); the
/// error names the first broken one. VERSION_1 is required because this is
/// a virtio 1.x device (virtio 1.2 section 6.1: a device MUST offer it).
pub fn check_rules(bits: u64) -> Result<()> {
    if !has(bits, VIRTIO_F_VERSION_1) {
        return Err(FeatureError::RuleViolated {
            feature: "this device",
            requires: "version_1".to_string(),
            first_required: "version_1",
            reference: "virtio 1.2 section 6.1: a modern device must offer VIRTIO_F_VERSION_1",
        });
    }
    for rule in RULES {
        if has(bits, rule.feature) && !rule.requires_any.iter().any(|r| has(bits, *r)) {
            let requires = rule
                .requires_any
                .iter()
                .map(|b| name_of(*b))
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(FeatureError::RuleViolated {
                feature: by_bit(rule.feature).map_or("?", |f| f.name),
                requires,
                first_required: by_bit(rule.requires_any[0]).map_or("?", |f| f.name),
                reference: rule.source,
            });
        }
    }
    Ok(())
}

/// A table of every feature for `--help` texts.
pub fn help_table() -> String {
    let mut out = String::from(
        "Bits marked [not implemented] are refused unless offer-unimplemented is given,\n\
         and even then the device does not honour them. allow-invalid only lifts the\n\
         spec's dependency rules between bits.\n\n",
    );
    for feat in FEATURES {
        let _ = writeln!(
            out,
            "{:>2}  {:<20} {}{}{}",
            feat.bit,
            feat.name,
            feat.summary,
            if feat.default { " [default]" } else { "" },
            if feat.implemented {
                ""
            } else {
                " [not implemented]"
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(names: &[&str]) -> u64 {
        names
            .iter()
            .map(|n| mask(by_name(n).unwrap().bit))
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn table_matches_bindings_and_has_no_duplicates() {
        assert_eq!(by_name("status").unwrap().bit, VIRTIO_NET_F_STATUS);
        assert_eq!(by_name("VIRTIO_NET_F_MRG_RXBUF").unwrap().bit, 15);
        assert_eq!(by_name("ring_event_idx").unwrap().bit, 29);
        assert_eq!(by_name("Indirect_Desc").unwrap().bit, 28);
        assert_eq!(by_name("version_1").unwrap().bit, 32);
        for (i, a) in FEATURES.iter().enumerate() {
            for b in &FEATURES[i + 1..] {
                assert_ne!(a.bit, b.bit, "{} and {}", a.name, b.name);
                assert_ne!(a.name, b.name);
            }
            assert_eq!(
                a.spec_name.to_ascii_lowercase().rsplit("_f_").next(),
                Some(a.name)
            );
        }
    }

    #[test]
    fn defaults_are_a_modern_valid_set() {
        let d = default_mask();
        check(d).unwrap();
        for name in [
            "version_1",
            "mac",
            "status",
            "mrg_rxbuf",
            "csum",
            "guest_csum",
            "host_tso4",
            "guest_tso6",
            "ctrl_vq",
            "ctrl_rx",
            "guest_announce",
            "event_idx",
            "indirect_desc",
        ] {
            assert!(d & bits(&[name]) != 0, "{name} is a default");
        }
        for name in [
            "mq",
            "mtu",
            "guest_ufo",
            "host_ufo",
            "notify_on_empty",
            "rss",
        ] {
            assert!(d & bits(&[name]) == 0, "{name} is not a default");
        }
    }

    #[test]
    fn signed_specs_edit_the_base() {
        let d = default_mask();
        let status = mask(VIRTIO_NET_F_STATUS);
        let mrg = mask(VIRTIO_NET_F_MRG_RXBUF);
        assert_eq!(parse_spec("-status", d).unwrap(), d & !status);
        assert_eq!(parse_spec("+status,-mrg_rxbuf", d).unwrap(), d & !mrg);
        assert_eq!(
            parse_spec("-status+mrg_rxbuf", d & !mrg).unwrap(),
            (d | mrg) & !status
        );
        assert_eq!(
            parse_spec("-status;-mrg_rxbuf", d).unwrap(),
            d & !status & !mrg
        );
        assert_eq!(parse_spec("-bit16", d).unwrap(), d & !status);
        assert_eq!(parse_spec("-0x10000", d).unwrap(), d & !status);
        assert_eq!(parse_spec("-0x18000", d).unwrap(), d & !status & !mrg);
        assert_eq!(parse_spec("", d).unwrap(), d);
        assert_eq!(parse_spec("-VIRTIO_NET_F_STATUS", d).unwrap(), d & !status);
    }

    #[test]
    fn unsigned_first_item_makes_an_absolute_list() {
        assert_eq!(
            parse_spec("status,mac,version_1", default_mask()).unwrap(),
            bits(&["status", "mac", "version_1"])
        );
        assert_eq!(
            parse_spec("none+version_1+mac", default_mask()).unwrap(),
            bits(&["version_1", "mac"])
        );
        assert_eq!(parse_spec("all", 0).unwrap(), implemented_mask());
        assert_eq!(
            parse_spec("default-status", 0).unwrap(),
            default_mask() & !mask(16)
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = parse_spec("-stauts", 0).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown feature `stauts`"), "{msg}");
        assert!(msg.contains("status") && msg.contains("mrg_rxbuf"), "{msg}");
        assert!(matches!(
            parse_spec("16", 0),
            Err(FeatureError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_spec("bit64", 0),
            Err(FeatureError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_spec("0xzz", 0),
            Err(FeatureError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_spec("+", 0),
            Err(FeatureError::EmptyItem { .. })
        ));
        assert!(matches!(
            parse_spec("mac,none", 0),
            Err(FeatureError::MisplacedKeyword { .. })
        ));
    }

    #[test]
    fn rules_are_named_when_broken() {
        let d = default_mask();
        let cases = [
            ("-guest_csum", "guest_tso4 requires guest_csum"),
            ("-csum", "host_tso4 requires csum"),
            ("-ctrl_vq", "ctrl_rx requires ctrl_vq"),
            (
                "-host_tso4-host_tso6",
                "host_ecn requires host_tso4 or host_tso6",
            ),
            ("-ctrl_rx", "ctrl_rx_extra requires ctrl_rx"),
            (
                "none+version_1+guest_announce",
                "guest_announce requires ctrl_vq",
            ),
            ("none+version_1+mq", "mq requires ctrl_vq"),
            (
                "none+version_1+ctrl_mac_addr",
                "ctrl_mac_addr requires ctrl_vq",
            ),
            ("none+version_1+ctrl_vlan", "ctrl_vlan requires ctrl_vq"),
            ("none+version_1+guest_ufo", "guest_ufo requires guest_csum"),
            ("-version_1", "this device requires version_1"),
        ];
        for (spec, want) in cases {
            let err = check(parse_spec(spec, d).unwrap()).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
            assert!(err.contains("allow-invalid"), "{spec}: {err}");
        }
        let err = check(parse_spec("+rss", d).unwrap()).unwrap_err();
        assert_eq!(
            err,
            FeatureError::NotImplemented {
                bit: 60,
                name: "rss".into()
            }
        );
        assert!(err.to_string().contains("offer-unimplemented"), "{err}");
        // The two checks are independent: rss breaks no rule here, and a
        // broken rule is not an implementation question.
        check_rules(parse_spec("+rss", d).unwrap()).unwrap();
        check_implemented(parse_spec("-guest_csum", d).unwrap()).unwrap();
        check(parse_spec("-status-mrg_rxbuf-ctrl_vq-ctrl_rx-ctrl_rx_extra-ctrl_vlan-guest_announce-ctrl_mac_addr-ctrl_guest_offloads", d).unwrap()).unwrap();
    }

    #[test]
    fn names_cover_unknown_bits() {
        assert_eq!(names(mask(16) | mask(4)), vec!["bit4", "status"]);
        let set = FeatureSet::new(mask(5) | mask(32));
        assert_eq!(set.bits, "0x100000020");
        assert_eq!(set.names, vec!["mac", "version_1"]);
        let help = help_table();
        assert!(help.contains("status"));
        assert!(help.contains("ring_packed") && help.contains("[not implemented]"));
        assert!(help.contains("offer-unimplemented"), "{help}");
    }
}
