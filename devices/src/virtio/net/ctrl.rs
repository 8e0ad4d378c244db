//! Control queue commands (virtio 1.2 section 5.1.6.5): decoding a command
//! and applying it to the device state. Every command gets an answer:
//! VIRTIO_NET_OK when it was applied, VIRTIO_NET_ERR with a reason
//! otherwise (unknown class or command, feature not negotiated, malformed
//! data), so a driver waiting for the ack never hangs.

use virtio_bindings::virtio_net::*;

use super::config::MacAddr;
use super::config_space::ConfigFields;
use super::features::has;
use super::rx_filter::RxFilter;
use crate::net::GuestOffloads;

/// Why a command was answered VIRTIO_NET_ERR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    /// The command has no class and command bytes.
    #[error("command of {0} bytes has no class and command")]
    TooShort(usize),
    /// The command is longer than the device accepts.
    #[error("command of {0} bytes is too long")]
    TooLong(u64),
    /// The command could not be read from guest memory.
    #[error("command could not be read from guest memory")]
    Unreadable,
    /// An unknown class.
    #[error("unknown class {0}")]
    UnknownClass(u8),
    /// An unknown command in a known class.
    #[error("unknown command {cmd} in class {class}")]
    UnknownCommand {
        /// The class name.
        class: &'static str,
        /// The command.
        cmd: u8,
    },
    /// The command needs a feature the driver did not negotiate.
    #[error("{what} needs {feature}, which was not negotiated")]
    NotNegotiated {
        /// The command.
        what: &'static str,
        /// The feature's name.
        feature: &'static str,
    },
    /// The command data has the wrong size.
    #[error("{what} carries {got} bytes of data, expected {expected}")]
    BadLength {
        /// The command.
        what: &'static str,
        /// Bytes expected.
        expected: String,
        /// Bytes received.
        got: usize,
    },
    /// The command data has a value out of range.
    #[error("{what}: {why}")]
    BadValue {
        /// The command.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// What an applied command changed, for the device to act on and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtrlEffect {
    /// An RX mode flag changed.
    RxMode {
        /// The mode's name.
        mode: &'static str,
        /// On or off.
        on: bool,
    },
    /// A MAC table was replaced.
    MacTable {
        /// Unicast entries.
        unicast: usize,
        /// Multicast entries.
        multicast: usize,
    },
    /// The MAC address changed (config space changed).
    MacAddr(MacAddr),
    /// A VLAN was added or removed.
    Vlan {
        /// The VLAN ID.
        vid: u16,
        /// Added or removed.
        add: bool,
    },
    /// The driver acknowledged an announce (config space changed).
    AnnounceAcked,
    /// The number of queue pairs in use changed.
    QueuePairs(u16),
    /// The guest offloads changed; the backend must follow.
    GuestOffloads(GuestOffloads),
}

/// The state commands act on.
#[derive(Debug)]
pub struct CtrlContext<'a> {
    /// The negotiated features.
    pub acked: u64,
    /// The configured queue pairs (`max_virtqueue_pairs`).
    pub max_pairs: u16,
    /// The receive filter.
    pub filter: &'a mut RxFilter,
    /// MAC address and status.
    pub fields: &'a mut ConfigFields,
    /// Queue pairs in use.
    pub vq_pairs: &'a mut u16,
    /// Guest offloads in use.
    pub guest_offloads: &'a mut GuestOffloads,
}

/// The names of a class and command, for logs.
pub fn describe(class: u8, cmd: u8) -> String {
    let c = u32::from(cmd);
    let name = match u32::from(class) {
        VIRTIO_NET_CTRL_RX => match c {
            VIRTIO_NET_CTRL_RX_PROMISC => "rx.promisc",
            VIRTIO_NET_CTRL_RX_ALLMULTI => "rx.allmulti",
            VIRTIO_NET_CTRL_RX_ALLUNI => "rx.alluni",
            VIRTIO_NET_CTRL_RX_NOMULTI => "rx.nomulti",
            VIRTIO_NET_CTRL_RX_NOUNI => "rx.nouni",
            VIRTIO_NET_CTRL_RX_NOBCAST => "rx.nobcast",
            _ => "rx.?",
        },
        VIRTIO_NET_CTRL_MAC => match c {
            VIRTIO_NET_CTRL_MAC_TABLE_SET => "mac.table_set",
            VIRTIO_NET_CTRL_MAC_ADDR_SET => "mac.addr_set",
            _ => "mac.?",
        },
        VIRTIO_NET_CTRL_VLAN => match c {
            VIRTIO_NET_CTRL_VLAN_ADD => "vlan.add",
            VIRTIO_NET_CTRL_VLAN_DEL => "vlan.del",
            _ => "vlan.?",
        },
        VIRTIO_NET_CTRL_ANNOUNCE => match c {
            VIRTIO_NET_CTRL_ANNOUNCE_ACK => "announce.ack",
            _ => "announce.?",
        },
        VIRTIO_NET_CTRL_MQ => match c {
            VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET => "mq.vq_pairs_set",
            VIRTIO_NET_CTRL_MQ_RSS_CONFIG => "mq.rss_config",
            VIRTIO_NET_CTRL_MQ_HASH_CONFIG => "mq.hash_config",
            _ => "mq.?",
        },
        VIRTIO_NET_CTRL_GUEST_OFFLOADS => match c {
            VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET => "guest_offloads.set",
            _ => "guest_offloads.?",
        },
        _ => "?",
    };
    format!("{name} ({class}/{cmd})")
}

fn need(acked: u64, bit: u32, what: &'static str, feature: &'static str) -> Result<(), CtrlError> {
    if has(acked, bit) {
        Ok(())
    } else {
        Err(CtrlError::NotNegotiated { what, feature })
    }
}

fn exact(data: &[u8], len: usize, what: &'static str) -> Result<(), CtrlError> {
    if data.len() == len {
        Ok(())
    } else {
        Err(CtrlError::BadLength {
            what,
            expected: len.to_string(),
            got: data.len(),
        })
    }
}

/// Decodes `command` (class, command, data) and applies it.
pub fn handle(command: &[u8], ctx: &mut CtrlContext<'_>) -> Result<CtrlEffect, CtrlError> {
    let [class, cmd, data @ ..] = command else {
        return Err(CtrlError::TooShort(command.len()));
    };
    let (class, cmd) = (*class, *cmd);
    match u32::from(class) {
        VIRTIO_NET_CTRL_RX => rx_mode(cmd, data, ctx),
        VIRTIO_NET_CTRL_MAC => mac(cmd, data, ctx),
        VIRTIO_NET_CTRL_VLAN => vlan(cmd, data, ctx),
        VIRTIO_NET_CTRL_ANNOUNCE => {
            if u32::from(cmd) != VIRTIO_NET_CTRL_ANNOUNCE_ACK {
                return Err(CtrlError::UnknownCommand {
                    class: "announce",
                    cmd,
                });
            }
            need(
                ctx.acked,
                VIRTIO_NET_F_GUEST_ANNOUNCE,
                "announce.ack",
                "guest_announce",
            )?;
            exact(data, 0, "announce.ack")?;
            ctx.fields.announce = false;
            Ok(CtrlEffect::AnnounceAcked)
        }
        VIRTIO_NET_CTRL_MQ => mq(cmd, data, ctx),
        VIRTIO_NET_CTRL_GUEST_OFFLOADS => guest_offloads(cmd, data, ctx),
        _ => Err(CtrlError::UnknownClass(class)),
    }
}

fn rx_mode(cmd: u8, data: &[u8], ctx: &mut CtrlContext<'_>) -> Result<CtrlEffect, CtrlError> {
    let f = &mut *ctx.filter;
    let (mode, flag, extra) = match u32::from(cmd) {
        VIRTIO_NET_CTRL_RX_PROMISC => ("promisc", &mut f.promisc, false),
        VIRTIO_NET_CTRL_RX_ALLMULTI => ("allmulti", &mut f.allmulti, false),
        VIRTIO_NET_CTRL_RX_ALLUNI => ("alluni", &mut f.alluni, true),
        VIRTIO_NET_CTRL_RX_NOMULTI => ("nomulti", &mut f.nomulti, true),
        VIRTIO_NET_CTRL_RX_NOUNI => ("nouni", &mut f.nouni, true),
        VIRTIO_NET_CTRL_RX_NOBCAST => ("nobcast", &mut f.nobcast, true),
        _ => return Err(CtrlError::UnknownCommand { class: "rx", cmd }),
    };
    if extra {
        need(ctx.acked, VIRTIO_NET_F_CTRL_RX_EXTRA, mode, "ctrl_rx_extra")?;
    } else {
        need(ctx.acked, VIRTIO_NET_F_CTRL_RX, mode, "ctrl_rx")?;
    }
    exact(data, 1, mode)?;
    let on = data[0] != 0;
    *flag = on;
    Ok(CtrlEffect::RxMode { mode, on })
}

/// Reads a `virtio_net_ctrl_mac` table (le32 count, count MACs) at the
/// start of `data`; returns the entries and the rest.
fn mac_table(data: &[u8]) -> Option<(Vec<MacAddr>, &[u8])> {
    let (count, rest) = data.split_first_chunk::<4>()?;
    let count = usize::try_from(u32::from_le_bytes(*count)).ok()?;
    let bytes = count.checked_mul(6)?;
    if rest.len() < bytes {
        return None;
    }
    let (table, rest) = rest.split_at(bytes);
    let entries = table
        .chunks_exact(6)
        .map(|c| MacAddr([c[0], c[1], c[2], c[3], c[4], c[5]]))
        .collect();
    Some((entries, rest))
}

fn mac(cmd: u8, data: &[u8], ctx: &mut CtrlContext<'_>) -> Result<CtrlEffect, CtrlError> {
    match u32::from(cmd) {
        VIRTIO_NET_CTRL_MAC_TABLE_SET => {
            need(ctx.acked, VIRTIO_NET_F_CTRL_RX, "mac.table_set", "ctrl_rx")?;
            let bad = || CtrlError::BadLength {
                what: "mac.table_set",
                expected: "two tables of a 4-byte count and count * 6 bytes".into(),
                got: data.len(),
            };
            let (unicast, rest) = mac_table(data).ok_or_else(bad)?;
            let (multicast, rest) = mac_table(rest).ok_or_else(bad)?;
            if !rest.is_empty() {
                return Err(bad());
            }
            let counts = (unicast.len(), multicast.len());
            ctx.filter.set_table(false, unicast);
            ctx.filter.set_table(true, multicast);
            Ok(CtrlEffect::MacTable {
                unicast: counts.0,
                multicast: counts.1,
            })
        }
        VIRTIO_NET_CTRL_MAC_ADDR_SET => {
            need(
                ctx.acked,
                VIRTIO_NET_F_CTRL_MAC_ADDR,
                "mac.addr_set",
                "ctrl_mac_addr",
            )?;
            exact(data, 6, "mac.addr_set")?;
            let mut mac = [0u8; 6];
            mac.copy_from_slice(data);
            ctx.fields.mac = mac;
            Ok(CtrlEffect::MacAddr(MacAddr(mac)))
        }
        _ => Err(CtrlError::UnknownCommand { class: "mac", cmd }),
    }
}

fn vlan(cmd: u8, data: &[u8], ctx: &mut CtrlContext<'_>) -> Result<CtrlEffect, CtrlError> {
    let add = match u32::from(cmd) {
        VIRTIO_NET_CTRL_VLAN_ADD => true,
        VIRTIO_NET_CTRL_VLAN_DEL => false,
        _ => return Err(CtrlError::UnknownCommand { class: "vlan", cmd }),
    };
    need(ctx.acked, VIRTIO_NET_F_CTRL_VLAN, "vlan", "ctrl_vlan")?;
    exact(data, 2, "vlan")?;
    let vid = u16::from_le_bytes([data[0], data[1]]);
    if !ctx.filter.set_vlan(vid, add) {
        return Err(CtrlError::BadValue {
            what: "vlan",
            why: format!("{vid} is not a VLAN ID (0 to 4095)"),
        });
    }
    Ok(CtrlEffect::Vlan { vid, add })
}

fn mq(cmd: u8, data: &[u8], ctx: &mut CtrlContext<'_>) -> Result<CtrlEffect, CtrlError> {
    match u32::from(cmd) {
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET => {
            need(ctx.acked, VIRTIO_NET_F_MQ, "mq.vq_pairs_set", "mq")?;
            exact(data, 2, "mq.vq_pairs_set")?;
            let pairs = u16::from_le_bytes([data[0], data[1]]);
            if pairs == 0 || pairs > ctx.max_pairs {
                return Err(CtrlError::BadValue {
                    what: "mq.vq_pairs_set",
                    why: format!("{pairs} pairs is not between 1 and {}", ctx.max_pairs),
                });
            }
            *ctx.vq_pairs = pairs;
            Ok(CtrlEffect::QueuePairs(pairs))
        }
        VIRTIO_NET_CTRL_MQ_RSS_CONFIG => Err(CtrlError::NotNegotiated {
            what: "mq.rss_config",
            feature: "rss",
        }),
        VIRTIO_NET_CTRL_MQ_HASH_CONFIG => Err(CtrlError::NotNegotiated {
            what: "mq.hash_config",
            feature: "hash_report",
        }),
        _ => Err(CtrlError::UnknownCommand { class: "mq", cmd }),
    }
}

fn guest_offloads(
    cmd: u8,
    data: &[u8],
    ctx: &mut CtrlContext<'_>,
) -> Result<CtrlEffect, CtrlError> {
    if u32::from(cmd) != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET {
        return Err(CtrlError::UnknownCommand {
            class: "guest_offloads",
            cmd,
        });
    }
    need(
        ctx.acked,
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        "guest_offloads.set",
        "ctrl_guest_offloads",
    )?;
    exact(data, 8, "guest_offloads.set")?;
    let mut b = [0u8; 8];
    b.copy_from_slice(data);
    let wanted = u64::from_le_bytes(b);
    let allowed = GuestOffloads::from_features(ctx.acked).bits();
    if wanted & !allowed != 0 {
        return Err(CtrlError::BadValue {
            what: "guest_offloads.set",
            why: format!(
                "{wanted:#x} includes offloads that are not negotiated guest offloads ({allowed:#x})"
            ),
        });
    }
    let offloads = GuestOffloads::from_features(wanted);
    *ctx.guest_offloads = offloads;
    Ok(CtrlEffect::GuestOffloads(offloads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::net::features::{default_mask, mask};

    struct State {
        filter: RxFilter,
        fields: ConfigFields,
        pairs: u16,
        offloads: GuestOffloads,
    }

    impl State {
        fn new() -> Self {
            Self {
                filter: RxFilter::default(),
                fields: ConfigFields {
                    mac: [0x52, 0x54, 0, 0, 0, 1],
                    link_up: true,
                    announce: true,
                    max_pairs: 4,
                    mtu: 1500,
                },
                pairs: 1,
                offloads: GuestOffloads::from_features(default_mask()),
            }
        }

        fn run(&mut self, acked: u64, cmd: &[u8]) -> Result<CtrlEffect, CtrlError> {
            handle(
                cmd,
                &mut CtrlContext {
                    acked,
                    max_pairs: 4,
                    filter: &mut self.filter,
                    fields: &mut self.fields,
                    vq_pairs: &mut self.pairs,
                    guest_offloads: &mut self.offloads,
                },
            )
        }
    }

    const ALL: u64 = u64::MAX;

    #[test]
    fn rx_modes() {
        let mut s = State::new();
        assert_eq!(
            s.run(ALL, &[0, 0, 0]),
            Ok(CtrlEffect::RxMode {
                mode: "promisc",
                on: false
            })
        );
        assert!(!s.filter.promisc);
        s.run(ALL, &[0, 1, 1]).unwrap();
        assert!(s.filter.allmulti);
        s.run(ALL, &[0, 5, 1]).unwrap();
        assert!(s.filter.nobcast);
        let no_extra = ALL & !mask(VIRTIO_NET_F_CTRL_RX_EXTRA);
        assert!(matches!(
            s.run(no_extra, &[0, 2, 1]),
            Err(CtrlError::NotNegotiated {
                feature: "ctrl_rx_extra",
                ..
            })
        ));
        assert!(matches!(
            s.run(0, &[0, 0, 1]),
            Err(CtrlError::NotNegotiated {
                feature: "ctrl_rx",
                ..
            })
        ));
        assert!(matches!(
            s.run(ALL, &[0, 0]),
            Err(CtrlError::BadLength { .. })
        ));
        assert!(matches!(
            s.run(ALL, &[0, 9, 1]),
            Err(CtrlError::UnknownCommand { .. })
        ));
    }

    #[test]
    fn mac_table_and_address() {
        let mut s = State::new();
        let mut cmd = vec![1, 0];
        cmd.extend_from_slice(&1u32.to_le_bytes());
        cmd.extend_from_slice(&[2, 0, 0, 0, 0, 7]);
        cmd.extend_from_slice(&2u32.to_le_bytes());
        cmd.extend_from_slice(&[1, 0, 0x5e, 0, 0, 1, 1, 0, 0x5e, 0, 0, 2]);
        assert_eq!(
            s.run(ALL, &cmd),
            Ok(CtrlEffect::MacTable {
                unicast: 1,
                multicast: 2
            })
        );
        assert_eq!(s.filter.multicast[1], MacAddr([1, 0, 0x5e, 0, 0, 2]));
        // A count that promises more than is there, and trailing bytes.
        let mut short = vec![1, 0];
        short.extend_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            s.run(ALL, &short),
            Err(CtrlError::BadLength { .. })
        ));
        let mut long = cmd.clone();
        long.push(0);
        assert!(matches!(
            s.run(ALL, &long),
            Err(CtrlError::BadLength { .. })
        ));
        // A count of 2^32 - 1 must not overflow or allocate.
        let mut huge = vec![1, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(s.run(ALL, &huge).is_err());

        assert_eq!(
            s.run(ALL, &[1, 1, 2, 0, 0, 0, 0, 9]),
            Ok(CtrlEffect::MacAddr(MacAddr([2, 0, 0, 0, 0, 9])))
        );
        assert_eq!(s.fields.mac, [2, 0, 0, 0, 0, 9]);
        assert!(s
            .run(
                ALL & !mask(VIRTIO_NET_F_CTRL_MAC_ADDR),
                &[1, 1, 2, 0, 0, 0, 0, 8]
            )
            .is_err());
        assert_eq!(
            s.fields.mac,
            [2, 0, 0, 0, 0, 9],
            "refused commands change nothing"
        );
    }

    #[test]
    fn vlan_announce_mq_offloads() {
        let mut s = State::new();
        assert_eq!(
            s.run(ALL, &[2, 0, 5, 0]),
            Ok(CtrlEffect::Vlan { vid: 5, add: true })
        );
        assert!(matches!(
            s.run(ALL, &[2, 0, 0, 0x10]),
            Err(CtrlError::BadValue { .. })
        ));

        assert_eq!(s.run(ALL, &[3, 0]), Ok(CtrlEffect::AnnounceAcked));
        assert!(!s.fields.announce);
        assert!(s
            .run(ALL & !mask(VIRTIO_NET_F_GUEST_ANNOUNCE), &[3, 0])
            .is_err());

        assert_eq!(s.run(ALL, &[4, 0, 3, 0]), Ok(CtrlEffect::QueuePairs(3)));
        assert_eq!(s.pairs, 3);
        assert!(s.run(ALL, &[4, 0, 5, 0]).is_err(), "more than max pairs");
        assert!(s.run(ALL, &[4, 0, 0, 0]).is_err(), "zero pairs");
        assert!(matches!(
            s.run(ALL, &[4, 1]),
            Err(CtrlError::NotNegotiated { feature: "rss", .. })
        ));

        let csum = mask(VIRTIO_NET_F_GUEST_CSUM);
        let mut cmd = vec![5, 0];
        cmd.extend_from_slice(&csum.to_le_bytes());
        assert_eq!(
            s.run(ALL, &cmd),
            Ok(CtrlEffect::GuestOffloads(GuestOffloads::from_features(
                csum
            )))
        );
        let acked_no_tso = mask(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) | csum;
        let mut tso = vec![5, 0];
        tso.extend_from_slice(&(csum | mask(VIRTIO_NET_F_GUEST_TSO4)).to_le_bytes());
        assert!(matches!(
            s.run(acked_no_tso, &tso),
            Err(CtrlError::BadValue { .. })
        ));
    }

    #[test]
    fn unknown_and_short_commands_are_errors() {
        let mut s = State::new();
        assert_eq!(s.run(ALL, &[]), Err(CtrlError::TooShort(0)));
        assert_eq!(s.run(ALL, &[9]), Err(CtrlError::TooShort(1)));
        assert_eq!(s.run(ALL, &[0x7f, 0]), Err(CtrlError::UnknownClass(0x7f)));
        assert!(matches!(
            s.run(ALL, &[3, 1]),
            Err(CtrlError::UnknownCommand { .. })
        ));
        assert!(describe(0, 0).starts_with("rx.promisc"));
        assert!(describe(200, 1).starts_with('?'));
    }
}
