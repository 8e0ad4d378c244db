//! Receive filtering as the driver configures it through the control queue
//! (virtio 1.2 section 5.1.6.5.1-3): RX modes, MAC tables and the VLAN
//! table. Starts promiscuous, as QEMU does, so a driver that never sends an
//! RX-mode command receives everything.

use serde::{Serialize, Serializer};

use super::config::MacAddr;

/// MAC addresses each table holds; longer tables switch that table to
/// "accept all" (as QEMU does).
pub const MAC_TABLE_ENTRIES: usize = 64;
/// VLAN IDs.
const VLAN_IDS: usize = 4096;
const ETH_P_8021Q: u16 = 0x8100;

/// The receive filter state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RxFilter {
    /// Receive every frame.
    pub promisc: bool,
    /// Receive every multicast frame.
    pub allmulti: bool,
    /// Receive every unicast frame.
    pub alluni: bool,
    /// Receive no multicast frame.
    pub nomulti: bool,
    /// Receive no unicast frame.
    pub nouni: bool,
    /// Receive no broadcast frame.
    pub nobcast: bool,
    /// Extra unicast addresses.
    pub unicast: Vec<MacAddr>,
    /// Multicast addresses.
    pub multicast: Vec<MacAddr>,
    /// The driver sent more unicast addresses than fit: accept all.
    pub unicast_overflow: bool,
    /// The driver sent more multicast addresses than fit: accept all.
    pub multicast_overflow: bool,
    /// Drop tagged frames whose VLAN is not in the table (CTRL_VLAN
    /// negotiated).
    pub vlan_filtering: bool,
    /// The VLAN table.
    #[serde(serialize_with = "vlan_list")]
    pub vlans: Box<[u64; VLAN_IDS / 64]>,
}

fn vlan_list<S: Serializer>(t: &[u64; VLAN_IDS / 64], s: S) -> Result<S::Ok, S::Error> {
    (0..VLAN_IDS as u16)
        .filter(|v| t[usize::from(*v) / 64] & (1 << (v % 64)) != 0)
        .collect::<Vec<u16>>()
        .serialize(s)
}

impl Default for RxFilter {
    fn default() -> Self {
        Self {
            promisc: true,
            allmulti: false,
            alluni: false,
            nomulti: false,
            nouni: false,
            nobcast: false,
            unicast: Vec::new(),
            multicast: Vec::new(),
            unicast_overflow: false,
            multicast_overflow: false,
            vlan_filtering: false,
            vlans: Box::new([0; VLAN_IDS / 64]),
        }
    }
}

impl RxFilter {
    /// Adds (`on`) or removes VLAN `vid`; false if `vid` is not a VLAN ID.
    pub fn set_vlan(&mut self, vid: u16, on: bool) -> bool {
        let v = usize::from(vid);
        if v >= VLAN_IDS {
            return false;
        }
        if on {
            self.vlans[v / 64] |= 1 << (v % 64);
        } else {
            self.vlans[v / 64] &= !(1 << (v % 64));
        }
        true
    }

    fn vlan_allowed(&self, vid: u16) -> bool {
        let v = usize::from(vid & 0xfff);
        self.vlans[v / 64] & (1 << (v % 64)) != 0
    }

    /// Replaces a MAC table; too many entries switch it to "accept all".
    pub fn set_table(&mut self, multicast: bool, entries: Vec<MacAddr>) {
        let overflow = entries.len() > MAC_TABLE_ENTRIES;
        let entries = if overflow { Vec::new() } else { entries };
        if multicast {
            self.multicast = entries;
            self.multicast_overflow = overflow;
        } else {
            self.unicast = entries;
            self.unicast_overflow = overflow;
        }
    }

    /// Whether a frame for the guest passes the filter; `own` is the
    /// device's MAC address.
    pub fn accepts(&self, frame: &[u8], own: &[u8; 6]) -> bool {
        if frame.len() < 14 {
            return false;
        }
        if self.vlan_filtering && frame.len() >= 16 && frame[12..14] == ETH_P_8021Q.to_be_bytes() {
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            if !self.vlan_allowed(tci) {
                return false;
            }
        }
        if self.promisc {
            return true;
        }
        let dst: [u8; 6] = [frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]];
        if dst == [0xff; 6] {
            return !self.nobcast;
        }
        if dst[0] & 1 != 0 {
            if self.nomulti {
                return false;
            }
            return self.allmulti
                || self.multicast_overflow
                || self.multicast.contains(&MacAddr(dst));
        }
        if self.nouni {
            return false;
        }
        self.alluni || self.unicast_overflow || dst == *own || self.unicast.contains(&MacAddr(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

    fn frame(dst: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    fn tagged(vid: u16) -> Vec<u8> {
        let mut f = OWN.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(64, 0);
        f
    }

    #[test]
    fn starts_promiscuous() {
        let f = RxFilter::default();
        assert!(f.accepts(&frame([2, 0, 0, 0, 0, 0x77]), &OWN));
        assert!(!f.accepts(&[0; 13], &OWN), "runts never pass");
    }

    #[test]
    fn unicast_multicast_broadcast() {
        let mut f = RxFilter {
            promisc: false,
            ..RxFilter::default()
        };
        let other = [2, 0, 0, 0, 0, 0x77];
        let group = [0x01, 0x00, 0x5e, 0, 0, 1];
        assert!(f.accepts(&frame(OWN), &OWN));
        assert!(!f.accepts(&frame(other), &OWN));
        assert!(f.accepts(&frame([0xff; 6]), &OWN));
        assert!(!f.accepts(&frame(group), &OWN));

        f.set_table(false, vec![MacAddr(other)]);
        f.set_table(true, vec![MacAddr(group)]);
        assert!(f.accepts(&frame(other), &OWN));
        assert!(f.accepts(&frame(group), &OWN));

        f.nobcast = true;
        f.nomulti = true;
        f.nouni = true;
        assert!(!f.accepts(&frame([0xff; 6]), &OWN));
        assert!(!f.accepts(&frame(group), &OWN));
        assert!(!f.accepts(&frame(OWN), &OWN));

        let mut f = RxFilter {
            promisc: false,
            allmulti: true,
            ..RxFilter::default()
        };
        assert!(f.accepts(&frame([0x01, 0, 0, 0, 0, 2]), &OWN));
        f.set_table(false, vec![MacAddr(other); MAC_TABLE_ENTRIES + 1]);
        assert!(f.unicast_overflow && f.unicast.is_empty());
        assert!(f.accepts(&frame([2, 0, 0, 0, 0, 0x55]), &OWN));
    }

    #[test]
    fn vlan_table_filters_tagged_frames() {
        let mut f = RxFilter {
            vlan_filtering: true,
            ..RxFilter::default()
        };
        assert!(!f.accepts(&tagged(5), &OWN));
        assert!(f.set_vlan(5, true));
        assert!(f.accepts(&tagged(5), &OWN));
        assert!(f.accepts(&frame(OWN), &OWN), "untagged frames pass");
        assert!(f.set_vlan(5, false));
        assert!(!f.accepts(&tagged(5), &OWN));
        assert!(!f.set_vlan(4096, true));
        f.set_vlan(7, true);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["vlans"], serde_json::json!([7]));
    }
}
