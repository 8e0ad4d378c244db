//! The device configuration space, `struct virtio_net_config` (virtio 1.2
//! section 5.1.4), rendered from the device state and the offered features.
//!
//! Layout: `mac[6]` at 0, `status` at 6, `max_virtqueue_pairs` at 8, `mtu`
//! at 10, `speed` at 12, `duplex` at 16, all little endian. A field is only
//! filled when its feature is offered (the spec says it "exists" then): the
//! status reads 0 without STATUS, and so on. `mac` always exists but is only
//! meaningful with MAC, so it reads as zeroes until the driver writes one.
//! The space is as long as its last existing field; reads past it return
//! zeroes and writes past it are ignored, so no access can fail.

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU, VIRTIO_NET_F_SPEED_DUPLEX, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_S_ANNOUNCE, VIRTIO_NET_S_LINK_UP,
};

use super::features::has;

/// Offset of `mac`.
pub const MAC_OFFSET: usize = 0;
/// Offset of `status`.
pub const STATUS_OFFSET: usize = 6;
/// Offset of `max_virtqueue_pairs`.
pub const MAX_PAIRS_OFFSET: usize = 8;
/// Offset of `mtu`.
pub const MTU_OFFSET: usize = 10;
/// Offset of `speed`.
pub const SPEED_OFFSET: usize = 12;
/// Offset of `duplex`.
pub const DUPLEX_OFFSET: usize = 16;
/// The size of every field this device knows.
pub const MAX_LEN: usize = 17;

/// `speed` when unknown (virtio 1.2 section 5.1.4).
pub const SPEED_UNKNOWN: u32 = u32::MAX;
/// `duplex` when unknown.
pub const DUPLEX_UNKNOWN: u8 = 0xff;

/// The values behind the configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigFields {
    /// The MAC address.
    pub mac: [u8; 6],
    /// The link is up.
    pub link_up: bool,
    /// The device asks the driver to announce itself.
    pub announce: bool,
    /// `max_virtqueue_pairs`.
    pub max_pairs: u16,
    /// `mtu`.
    pub mtu: u16,
}

/// The length of the configuration space for `offered` features.
pub fn len(offered: u64) -> usize {
    if has(offered, VIRTIO_NET_F_SPEED_DUPLEX) {
        MAX_LEN
    } else if has(offered, VIRTIO_NET_F_MTU) {
        MTU_OFFSET + 2
    } else if has(offered, VIRTIO_NET_F_MQ) {
        MAX_PAIRS_OFFSET + 2
    } else if has(offered, VIRTIO_NET_F_STATUS) {
        STATUS_OFFSET + 2
    } else {
        MAC_OFFSET + 6
    }
}

/// The `status` field value.
pub fn status_word(fields: &ConfigFields) -> u16 {
    let mut status = 0;
    if fields.link_up {
        status |= VIRTIO_NET_S_LINK_UP as u16;
    }
    if fields.announce {
        status |= VIRTIO_NET_S_ANNOUNCE as u16;
    }
    status
}

/// The bytes of the configuration space (its first `len(offered)` bytes
/// are meaningful, the rest is zero).
pub fn render(fields: &ConfigFields, offered: u64) -> [u8; MAX_LEN] {
    let mut b = [0u8; MAX_LEN];
    b[MAC_OFFSET..MAC_OFFSET + 6].copy_from_slice(&fields.mac);
    if has(offered, VIRTIO_NET_F_STATUS) {
        b[STATUS_OFFSET..STATUS_OFFSET + 2].copy_from_slice(&status_word(fields).to_le_bytes());
    }
    if has(offered, VIRTIO_NET_F_MQ) {
        b[MAX_PAIRS_OFFSET..MAX_PAIRS_OFFSET + 2].copy_from_slice(&fields.max_pairs.to_le_bytes());
    }
    if has(offered, VIRTIO_NET_F_MTU) {
        b[MTU_OFFSET..MTU_OFFSET + 2].copy_from_slice(&fields.mtu.to_le_bytes());
    }
    if has(offered, VIRTIO_NET_F_SPEED_DUPLEX) {
        b[SPEED_OFFSET..SPEED_OFFSET + 4].copy_from_slice(&SPEED_UNKNOWN.to_le_bytes());
        b[DUPLEX_OFFSET] = DUPLEX_UNKNOWN;
    }
    b
}

/// Fills `data` from the configuration space at `offset`; bytes outside
/// the space read as zero.
pub fn read(fields: &ConfigFields, offered: u64, offset: u64, data: &mut [u8]) {
    let bytes = render(fields, offered);
    let end = len(offered);
    for (i, out) in data.iter_mut().enumerate() {
        *out = offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|o| *o < end)
            .map_or(0, |o| bytes[o]);
    }
}

/// What a driver write to the configuration space did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write changed the MAC address (legacy drivers do this).
    MacChanged,
    /// The write was entirely inside `mac` and changed nothing.
    Unchanged,
    /// The write touched read-only fields or lay outside the space; the
    /// read-only part was ignored.
    ReadOnly,
}

/// Applies a driver write: only the `mac` bytes are writable.
pub fn write(fields: &mut ConfigFields, offset: u64, data: &[u8]) -> WriteOutcome {
    let old = fields.mac;
    let mut read_only = data.is_empty();
    for (i, byte) in data.iter().enumerate() {
        match offset
            .checked_add(i as u64)
            .and_then(|o| usize::try_from(o).ok())
        {
            Some(o) if o < MAC_OFFSET + 6 => fields.mac[o - MAC_OFFSET] = *byte,
            _ => read_only = true,
        }
    }
    if read_only {
        WriteOutcome::ReadOnly
    } else if fields.mac != old {
        WriteOutcome::MacChanged
    } else {
        WriteOutcome::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;

    use super::*;
    use crate::virtio::net::features::mask;

    fn fields() -> ConfigFields {
        ConfigFields {
            mac: [0x52, 0x54, 0, 1, 2, 3],
            link_up: true,
            announce: false,
            max_pairs: 4,
            mtu: 1400,
        }
    }

    fn read_all(f: &ConfigFields, offered: u64) -> Vec<u8> {
        let mut out = vec![0xaa; 24];
        read(f, offered, 0, &mut out);
        out
    }

    #[test]
    fn fields_exist_exactly_with_their_features() {
        let f = fields();
        let mac = mask(VIRTIO_NET_F_MAC);
        let status = mask(VIRTIO_NET_F_STATUS);
        let mq = mask(VIRTIO_NET_F_MQ);
        let mtu = mask(VIRTIO_NET_F_MTU);

        let only_mac = read_all(&f, mac);
        assert_eq!(&only_mac[..6], &f.mac);
        assert!(only_mac[6..].iter().all(|b| *b == 0), "{only_mac:?}");
        assert_eq!(len(mac), 6);

        let with_status = read_all(&f, mac | status);
        assert_eq!(&with_status[6..8], &[1, 0], "LINK_UP");
        assert_eq!(len(mac | status), 8);

        let all = read_all(&f, mac | status | mq | mtu);
        assert_eq!(&all[8..10], &[4, 0]);
        assert_eq!(&all[10..12], &1400u16.to_le_bytes());
        assert!(all[12..].iter().all(|b| *b == 0));
        assert_eq!(len(mac | status | mq | mtu), 12);

        // MTU without STATUS: status reads 0 even though it lies inside.
        let mtu_only = read_all(&f, mtu);
        assert_eq!(&mtu_only[6..8], &[0, 0]);
        assert_eq!(&mtu_only[10..12], &1400u16.to_le_bytes());

        let speed = read_all(&f, mask(VIRTIO_NET_F_SPEED_DUPLEX));
        assert_eq!(&speed[12..17], &[0xff; 5]);
        assert_eq!(len(mask(VIRTIO_NET_F_SPEED_DUPLEX)), 17);
    }

    #[test]
    fn status_shows_link_and_announce() {
        let mut f = fields();
        let offered = mask(VIRTIO_NET_F_STATUS);
        f.link_up = false;
        f.announce = true;
        let mut s = [0u8; 2];
        read(&f, offered, STATUS_OFFSET as u64, &mut s);
        assert_eq!(u16::from_le_bytes(s), VIRTIO_NET_S_ANNOUNCE as u16);
    }

    #[test]
    fn reads_out_of_range_are_zero_and_never_panic() {
        let f = fields();
        let mut b = [0xaa; 4];
        read(&f, u64::MAX, u64::MAX - 1, &mut b);
        assert_eq!(b, [0; 4]);
        read(&f, mask(VIRTIO_NET_F_STATUS), 7, &mut b);
        assert_eq!(b, [0; 4], "byte 7 is the high status byte, 8.. is outside");
        let mut b = [0xaa; 1];
        read(&f, 0, 5, &mut b);
        assert_eq!(b, [3]);
    }

    #[test]
    fn only_mac_is_writable() {
        let mut f = fields();
        assert_eq!(write(&mut f, 5, &[9]), WriteOutcome::MacChanged);
        assert_eq!(f.mac[5], 9);
        assert_eq!(write(&mut f, 5, &[9]), WriteOutcome::Unchanged);
        assert_eq!(write(&mut f, 6, &[0, 0]), WriteOutcome::ReadOnly);
        assert!(f.link_up);
        assert_eq!(write(&mut f, u64::MAX, &[1, 2]), WriteOutcome::ReadOnly);
        assert_eq!(write(&mut f, 4, &[7, 7, 7]), WriteOutcome::ReadOnly);
        assert_eq!(
            f.mac[4..],
            [7, 7],
            "the mac part of a straddling write applies"
        );
    }
}
