//! The virtio-net header (`struct virtio_net_hdr_v1`, virtio 1.2 section
//! 5.1.6) as plain data, and the guest receive offloads it may use.

use serde::{Serialize, Serializer};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
};

/// The header size when neither VERSION_1 nor MRG_RXBUF is negotiated
/// (no `num_buffers`).
pub const LEGACY_HDR_LEN: usize = 10;
/// The header size with VERSION_1 or MRG_RXBUF.
pub const HDR_LEN: usize = 12;

/// The offload fields of a virtio-net header, in host byte order.
/// `num_buffers` is not here: the device fills it on receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment.
    pub hdr_len: u16,
    /// Maximum segment size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where, after `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl NetHdr {
    /// Parses the first 10 bytes of `bytes` (little endian, as virtio 1.x
    /// and x86 legacy devices use); `None` if there are fewer.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..LEGACY_HDR_LEN)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// The 12-byte wire form with `num_buffers`; callers use the first 10
    /// bytes for the legacy header.
    pub fn to_bytes(&self, num_buffers: u16) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&num_buffers.to_le_bytes());
        b
    }
}

/// The offloads a guest can receive: a subset of the GUEST_CSUM,
/// GUEST_TSO4, GUEST_TSO6, GUEST_ECN and GUEST_UFO feature bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestOffloads(u64);

impl GuestOffloads {
    /// Every guest offload feature bit.
    pub const MASK: u64 = 1u64 << VIRTIO_NET_F_GUEST_CSUM
        | 1u64 << VIRTIO_NET_F_GUEST_TSO4
        | 1u64 << VIRTIO_NET_F_GUEST_TSO6
        | 1u64 << VIRTIO_NET_F_GUEST_ECN
        | 1u64 << VIRTIO_NET_F_GUEST_UFO;

    /// The guest offloads among `features` (negotiated features or the
    /// argument of VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET).
    pub const fn from_features(features: u64) -> Self {
        Self(features & Self::MASK)
    }

    /// The feature bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether feature `bit` is among them.
    pub const fn has(self, bit: u32) -> bool {
        self.0 & (1u64 << bit) != 0
    }

    /// The `TUN_F_*` flags for `TUNSETOFFLOAD`. TSO and UFO are only
    /// passed with checksum offload, as the kernel requires.
    pub fn tun_flags(self) -> u32 {
        if !self.has(VIRTIO_NET_F_GUEST_CSUM) {
            return 0;
        }
        let mut flags = libc::TUN_F_CSUM;
        if self.has(VIRTIO_NET_F_GUEST_TSO4) {
            flags |= libc::TUN_F_TSO4;
        }
        if self.has(VIRTIO_NET_F_GUEST_TSO6) {
            flags |= libc::TUN_F_TSO6;
        }
        if self.has(VIRTIO_NET_F_GUEST_ECN)
            && (self.has(VIRTIO_NET_F_GUEST_TSO4) || self.has(VIRTIO_NET_F_GUEST_TSO6))
        {
            flags |= libc::TUN_F_TSO_ECN;
        }
        if self.has(VIRTIO_NET_F_GUEST_UFO) {
            flags |= libc::TUN_F_UFO;
        }
        flags
    }
}

impl Serialize for GuestOffloads {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::virtio::net::features::names(self.0).serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let hdr = NetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 0x1234,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let bytes = hdr.to_bytes(3);
        assert_eq!(&bytes[10..], &[3, 0]);
        assert_eq!(&bytes[2..4], &[0x34, 0x12]);
        assert_eq!(NetHdr::parse(&bytes), Some(hdr));
        assert_eq!(NetHdr::parse(&bytes[..LEGACY_HDR_LEN]), Some(hdr));
        assert_eq!(NetHdr::parse(&bytes[..9]), None);
    }

    #[test]
    fn tun_flags_follow_the_guest_features() {
        let f =
            |bits: &[u32]| GuestOffloads::from_features(bits.iter().fold(0, |m, b| m | 1u64 << b));
        assert_eq!(f(&[]).tun_flags(), 0);
        // TSO without checksum offload cannot be passed to TAP.
        assert_eq!(f(&[VIRTIO_NET_F_GUEST_TSO4]).tun_flags(), 0);
        assert_eq!(f(&[VIRTIO_NET_F_GUEST_CSUM]).tun_flags(), libc::TUN_F_CSUM);
        assert_eq!(
            f(&[
                VIRTIO_NET_F_GUEST_CSUM,
                VIRTIO_NET_F_GUEST_TSO4,
                VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_GUEST_ECN,
                VIRTIO_NET_F_GUEST_UFO
            ])
            .tun_flags(),
            libc::TUN_F_CSUM
                | libc::TUN_F_TSO4
                | libc::TUN_F_TSO6
                | libc::TUN_F_TSO_ECN
                | libc::TUN_F_UFO
        );
        // Bits that are not guest offloads are ignored.
        assert_eq!(GuestOffloads::from_features(1 << 16 | 1 << 32).bits(), 0);
    }
}
