//! The user's description of a virtio-net device, and the parser for the
//! VMM's `--net` option value.
//!
//! # `--net` syntax
//!
//! `key=value` pairs separated by commas, in any order:
//!
//! | key | value | default |
//! |---|---|---|
//! | `id` | a name for logs and the control socket | `net0`, `net1`, ... (set by the VMM) |
//! | `transport` | `pci` or `mmio` | `pci` |
//! | `backend` | `none`, `memory`, `loopback`, `tap`, `tap:NAME` | `none` |
//! | `features` | a feature spec, see [`super::features`] | the default set |
//! | `mac` | `52:54:00:12:34:56` | `52:54:00:12:34:56` |
//! | `mtu` | 68 to 65535; also offers VIRTIO_NET_F_MTU | not offered |
//! | `queue-pairs` | 1 to 32768; more than one also offers MQ | 1 |
//! | `queue-size` | a power of two, 1 to 32768 | 256 |
//! | `link` | `up` or `down`: the link state at start | `up` |
//! | `allow-invalid` | a bare flag (or `=on`/`=off`): accept what the spec forbids (feature dependency rules, an MTU below 68, a multicast MAC, more queue pairs than `mq` allows) | off |
//! | `offer-unimplemented` | a bare flag (or `=on`/`=off`): offer feature bits this device does not implement; **the device will not honour them** (a driver that acks `ring_packed` still gets split rings) | off |
//!
//! The `features` value may itself contain commas: every comma-separated
//! item without `=` that follows `features=` belongs to it, so
//! `features=+status,-mrg_rxbuf,mac=52:54:00:00:00:01` works, as do
//! `features=-status+mrg_rxbuf` and `features=-status;-mrg_rxbuf`.
//! `_` and `-` are interchangeable in key names.
//!
//! `allow-invalid` and `offer-unimplemented` are separate on purpose: the
//! first makes a device that breaks the spec's rules (to test a driver
//! against it), the second a device that lies about what it does.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU};

use super::features::{self, has, mask, FeatureError};
use crate::net::BackendKind;

/// The smallest MTU a device may report (virtio 1.2 section 5.1.4.1).
pub const MIN_MTU: u16 = 68;
/// The MTU reported when `mtu` is offered without a value.
pub const DEFAULT_MTU: u16 = 1500;
/// The default queue size.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// The largest queue size (virtio 1.2 section 2.7).
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// The largest number of queue pairs (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX).
pub const MAX_QUEUE_PAIRS: u16 = 0x8000;

/// Errors in a net device description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key this parser does not know.
    #[error("unknown --net key `{0}`; valid keys are id, transport, backend, features, mac, mtu, queue-pairs, queue-size, link, allow-invalid, offer-unimplemented")]
    UnknownKey(String),
    /// A key given twice.
    #[error("--net key `{0}` is given twice")]
    DuplicateKey(String),
    /// An item that is neither `key=value` nor a known flag.
    #[error("`{0}` in --net is not key=value (feature items belong right after features=)")]
    NotKeyValue(String),
    /// A value that does not parse.
    #[error("bad value `{value}` for --net key `{key}`: {why}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What was expected.
        why: String,
    },
    /// The feature spec is wrong or breaks a rule.
    #[error("features: {0}")]
    Feature(#[from] FeatureError),
    /// A setting that cannot work at all.
    #[error("{0}")]
    Impossible(String),
    /// A setting the spec forbids; `allow-invalid` accepts it.
    #[error("{0}; pass allow-invalid to use it anyway")]
    Invalid(String),
}

/// A `Result` with a [`ConfigError`].
pub type Result<T> = std::result::Result<T, ConfigError>;

/// The transport a device sits on; the VMM acts on it, the device does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Modern virtio-pci.
    #[default]
    Pci,
    /// virtio-mmio.
    Mmio,
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pci" => Ok(Self::Pci),
            "mmio" => Ok(Self::Mmio),
            _ => Err("expected pci or mmio".into()),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pci => "pci",
            Self::Mmio => "mmio",
        })
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether the group (multicast) bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let mut mac = [0u8; 6];
        if parts.len() != 6 {
            return Err("expected six hexadecimal bytes such as 52:54:00:12:34:56".into());
        }
        for (byte, part) in mac.iter_mut().zip(&parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(format!("`{part}` is not a byte"));
            }
            *byte =
                u8::from_str_radix(part, 16).map_err(|_| format!("`{part}` is not hexadecimal"))?;
        }
        Ok(Self(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything that describes one virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetConfig {
    /// The name in logs and on the control socket; the VMM fills it in.
    pub id: Option<String>,
    /// The transport (for the VMM).
    pub transport: Transport,
    /// The backend.
    pub backend: BackendKind,
    /// The feature bits offered to the driver.
    pub features: u64,
    /// The MAC address in config space (when MAC is offered).
    pub mac: MacAddr,
    /// The MTU in config space (when MTU is offered).
    pub mtu: Option<u16>,
    /// Accept feature sets and values the spec forbids.
    pub allow_invalid: bool,
    /// Offer feature bits the device does not implement (it will not
    /// honour them).
    pub offer_unimplemented: bool,
    /// Receive/transmit queue pairs.
    pub queue_pairs: u16,
    /// The maximum size of every queue.
    pub queue_size: u16,
    /// The link state when the device is created.
    pub link_up: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            id: None,
            transport: Transport::Pci,
            backend: BackendKind::None,
            features: features::default_mask(),
            mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            mtu: None,
            allow_invalid: false,
            offer_unimplemented: false,
            queue_pairs: 1,
            queue_size: DEFAULT_QUEUE_SIZE,
            link_up: true,
        }
    }
}

fn parse_num<T: FromStr>(key: &'static str, value: &str) -> Result<T> {
    value.parse().map_err(|_| ConfigError::BadValue {
        key,
        value: value.to_string(),
        why: "expected a decimal number".into(),
    })
}

fn parse_flag(key: &'static str, value: &str) -> Result<bool> {
    match value {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key,
            value: value.to_string(),
            why: "expected on or off".into(),
        }),
    }
}

impl NetConfig {
    /// Parses a `--net` value (see the module docs) and validates it.
    pub fn parse(s: &str) -> Result<Self> {
        let mut cfg = Self::default();
        let mut seen: Vec<String> = Vec::new();
        let mut spec: Option<String> = None;
        let mut in_features = false;
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                let flag = item.to_ascii_lowercase().replace('_', "-");
                if flag == "allow-invalid" {
                    cfg.allow_invalid = true;
                    in_features = false;
                } else if flag == "offer-unimplemented" {
                    cfg.offer_unimplemented = true;
                    in_features = false;
                } else if let (true, Some(spec)) = (in_features, spec.as_mut()) {
                    spec.push(',');
                    spec.push_str(item);
                } else {
                    return Err(ConfigError::NotKeyValue(item.to_string()));
                }
                continue;
            };
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            let value = value.trim();
            if seen.contains(&key) {
                return Err(ConfigError::DuplicateKey(key));
            }
            seen.push(key.clone());
            in_features = false;
            let bad = |k: &'static str, why: String| ConfigError::BadValue {
                key: k,
                value: value.to_string(),
                why,
            };
            match key.as_str() {
                "id" => cfg.id = Some(value.to_string()),
                "transport" => cfg.transport = value.parse().map_err(|w| bad("transport", w))?,
                "backend" => {
                    cfg.backend = value.parse().map_err(|e| bad("backend", format!("{e}")))?
                }
                "features" => {
                    spec = Some(value.to_string());
                    in_features = true;
                }
                "mac" => cfg.mac = value.parse().map_err(|w| bad("mac", w))?,
                "mtu" => cfg.mtu = Some(parse_num("mtu", value)?),
                "queue-pairs" => cfg.queue_pairs = parse_num("queue-pairs", value)?,
                "queue-size" => cfg.queue_size = parse_num("queue-size", value)?,
                "link" => {
                    cfg.link_up = match value {
                        "up" => true,
                        "down" => false,
                        _ => return Err(bad("link", "expected up or down".into())),
                    }
                }
                "allow-invalid" => cfg.allow_invalid = parse_flag("allow-invalid", value)?,
                "offer-unimplemented" => {
                    cfg.offer_unimplemented = parse_flag("offer-unimplemented", value)?
                }
                _ => return Err(ConfigError::UnknownKey(key)),
            }
        }
        let mut base = features::default_mask();
        if cfg.mtu.is_some() {
            base |= mask(VIRTIO_NET_F_MTU);
        }
        if cfg.queue_pairs > 1 {
            base |= mask(VIRTIO_NET_F_MQ);
        }
        cfg.features = match &spec {
            Some(spec) => features::parse_spec(spec, base)?,
            None => base,
        };
        if has(cfg.features, VIRTIO_NET_F_MTU) && cfg.mtu.is_none() {
            cfg.mtu = Some(DEFAULT_MTU);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the description: sizes that cannot work are always refused;
    /// bits the device does not implement unless `offer_unimplemented` is
    /// set; what the spec forbids unless `allow_invalid` is set.
    pub fn validate(&self) -> Result<()> {
        if !self.queue_size.is_power_of_two() || self.queue_size > MAX_QUEUE_SIZE {
            return Err(ConfigError::Impossible(format!(
                "queue-size {} is not a power of two between 1 and {MAX_QUEUE_SIZE}",
                self.queue_size
            )));
        }
        if self.queue_pairs == 0 || self.queue_pairs > MAX_QUEUE_PAIRS {
            return Err(ConfigError::Impossible(format!(
                "queue-pairs {} is not between 1 and {MAX_QUEUE_PAIRS}",
                self.queue_pairs
            )));
        }
        if !self.offer_unimplemented {
            features::check_implemented(self.features)?;
        }
        if self.allow_invalid {
            return Ok(());
        }
        features::check_rules(self.features)?;
        if let (true, Some(mtu)) = (has(self.features, VIRTIO_NET_F_MTU), self.mtu) {
            if mtu < MIN_MTU {
                return Err(ConfigError::Invalid(format!(
                    "mtu {mtu} is below {MIN_MTU} (virtio 1.2 section 5.1.4.1)"
                )));
            }
        }
        if self.queue_pairs > 1 && !has(self.features, VIRTIO_NET_F_MQ) {
            return Err(ConfigError::Invalid(format!(
                "queue-pairs {} needs the mq feature, without which the driver uses one pair",
                self.queue_pairs
            )));
        }
        if has(self.features, VIRTIO_NET_F_MAC) && self.mac.is_multicast() {
            return Err(ConfigError::Invalid(format!(
                "mac {} is a multicast address, which no NIC may use as its own",
                self.mac
            )));
        }
        Ok(())
    }

    /// The name for logs: `id`, or `net`.
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or("net")
    }
}

impl FromStr for NetConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_net::{VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS};

    use super::*;

    #[test]
    fn full_option_parses() {
        let cfg = NetConfig::parse(
            "transport=mmio,backend=tap:vnet0,features=-status,mac=02:00:00:00:00:01,mtu=1400,queue-size=128,link=down,id=net7",
        )
        .unwrap();
        assert_eq!(cfg.transport, Transport::Mmio);
        assert_eq!(
            cfg.backend,
            BackendKind::Tap {
                name: Some("vnet0".into())
            }
        );
        assert!(!has(cfg.features, VIRTIO_NET_F_STATUS));
        assert!(has(cfg.features, VIRTIO_NET_F_MTU), "mtu= offers MTU");
        assert_eq!(cfg.mac.to_string(), "02:00:00:00:00:01");
        assert_eq!(cfg.mtu, Some(1400));
        assert_eq!(cfg.queue_size, 128);
        assert!(!cfg.link_up);
        assert_eq!(cfg.name(), "net7");
    }

    #[test]
    fn defaults() {
        let cfg = NetConfig::parse("").unwrap();
        assert_eq!(cfg, NetConfig::default());
        assert_eq!(cfg.features, features::default_mask());
        assert_eq!(cfg.backend, BackendKind::None);
        assert_eq!(cfg.mtu, None);
    }

    #[test]
    fn feature_lists_may_contain_commas() {
        let d = features::default_mask();
        let status = mask(VIRTIO_NET_F_STATUS);
        let mrg = mask(VIRTIO_NET_F_MRG_RXBUF);
        for s in [
            "features=-status,-mrg_rxbuf,backend=memory",
            "backend=memory,features=-status-mrg_rxbuf",
            "features=-status;-mrg_rxbuf,backend=memory",
        ] {
            let cfg = NetConfig::parse(s).unwrap();
            assert_eq!(cfg.features, d & !status & !mrg, "{s}");
            assert_eq!(cfg.backend, BackendKind::Memory, "{s}");
        }
        let cfg = NetConfig::parse("features=version_1,mac,status").unwrap();
        assert_eq!(cfg.features, mask(32) | mask(5) | status);
        // allow-invalid after the features is a flag, not a feature.
        let cfg = NetConfig::parse("features=+status,-guest_csum,allow-invalid").unwrap();
        assert!(cfg.allow_invalid);
        assert!(has(cfg.features, VIRTIO_NET_F_STATUS));
    }

    #[test]
    fn rules_and_values_are_enforced() {
        let err = NetConfig::parse("features=-guest_csum")
            .unwrap_err()
            .to_string();
        assert!(err.contains("guest_tso4 requires guest_csum"), "{err}");
        NetConfig::parse("features=-guest_csum,allow-invalid").unwrap();
        NetConfig::parse("features=-guest_csum,allow-invalid=on").unwrap();
        assert!(NetConfig::parse("mtu=60")
            .unwrap_err()
            .to_string()
            .contains("below 68"));
        NetConfig::parse("mtu=60,allow-invalid").unwrap();
        assert!(NetConfig::parse("mac=01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
        let err = NetConfig::parse("queue-size=100,allow-invalid").unwrap_err();
        assert!(matches!(err, ConfigError::Impossible(_)), "{err}");
        assert!(NetConfig::parse("queue-pairs=0").is_err());
        let cfg = NetConfig::parse("queue-pairs=2").unwrap();
        assert!(has(cfg.features, VIRTIO_NET_F_MQ));
        assert!(NetConfig::parse("queue-pairs=2,features=-mq")
            .unwrap_err()
            .to_string()
            .contains("needs the mq feature"));
        let cfg = NetConfig::parse("features=+mtu").unwrap();
        assert_eq!(cfg.mtu, Some(DEFAULT_MTU));
    }

    #[test]
    fn unimplemented_bits_need_their_own_flag() {
        // allow-invalid lifts the spec's rules, not the device's limits.
        for spec in [
            "features=+ring_packed",
            "features=+hash_report,allow-invalid",
            // A bit with no meaning in virtio-net. (bit63 is
            // speed_duplex, which the device implements.)
            "features=+bit40,allow-invalid",
        ] {
            let err = NetConfig::parse(spec).unwrap_err().to_string();
            assert!(
                err.contains("not implemented") && err.contains("offer-unimplemented"),
                "{spec}: {err}"
            );
        }
        let cfg = NetConfig::parse("features=+ring_packed+hash_report+bit40,offer-unimplemented")
            .unwrap();
        assert!(cfg.offer_unimplemented && !cfg.allow_invalid);
        assert!(has(cfg.features, 34) && has(cfg.features, 57) && has(cfg.features, 40));
        NetConfig::parse("features=+ring_packed,offer_unimplemented=on").unwrap();
        // ... and offer-unimplemented does not lift the rules.
        let err = NetConfig::parse("features=-guest_csum,offer-unimplemented")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow-invalid"), "{err}");
        NetConfig::parse("features=-guest_csum+rss,offer-unimplemented,allow-invalid").unwrap();
    }

    #[test]
    fn syntax_errors_are_specific() {
        assert!(
            matches!(NetConfig::parse("colour=red"), Err(ConfigError::UnknownKey(k)) if k == "colour")
        );
        assert!(matches!(
            NetConfig::parse("mtu=1,mtu=2"),
            Err(ConfigError::DuplicateKey(_))
        ));
        assert!(matches!(
            NetConfig::parse("status"),
            Err(ConfigError::NotKeyValue(_))
        ));
        assert!(matches!(
            NetConfig::parse("mac=1:2:3"),
            Err(ConfigError::BadValue { key: "mac", .. })
        ));
        assert!(matches!(
            NetConfig::parse("mac=zz:00:00:00:00:00"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            NetConfig::parse("transport=isa"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            NetConfig::parse("backend=udp"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            NetConfig::parse("link=sideways"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            NetConfig::parse("features=-nosuch"),
            Err(ConfigError::Feature(_))
        ));
        assert!(
            NetConfig::parse("queue_size=64").is_ok(),
            "_ and - are the same in keys"
        );
    }
}
