//! The `none` backend: a cable to nowhere. The link is present, every frame
//! the guest sends is dropped and counted, and nothing ever arrives.

use super::{Backend, BackendStatus, GuestOffloads, NetHdr, Result, SendOutcome};

/// A backend that drops every frame.
#[derive(Debug, Default)]
pub struct NoneBackend {
    dropped: u64,
    offloads: GuestOffloads,
}

impl Backend for NoneBackend {
    fn describe(&self) -> String {
        "none".to_string()
    }

    fn send(&mut self, _hdr: &NetHdr, _frame: &[u8]) -> Result<SendOutcome> {
        self.dropped += 1;
        Ok(SendOutcome::Dropped)
    }

    fn recv(&mut self, _buf: &mut [u8]) -> Result<Option<(NetHdr, usize)>> {
        Ok(None)
    }

    fn set_guest_offloads(&mut self, offloads: GuestOffloads) -> Result<()> {
        self.offloads = offloads;
        Ok(())
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: self.describe(),
            dropped: self.dropped,
            guest_offloads: self.offloads,
            ..BackendStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_counts() {
        let mut b = NoneBackend::default();
        assert_eq!(
            b.send(&NetHdr::default(), &[0; 60]).unwrap(),
            SendOutcome::Dropped
        );
        assert_eq!(
            b.send(&NetHdr::default(), &[0; 60]).unwrap(),
            SendOutcome::Dropped
        );
        let mut buf = [0u8; 64];
        assert!(b.recv(&mut buf).unwrap().is_none());
        assert_eq!(b.status().dropped, 2);
        assert!(b.rx_fd().is_none());
    }
}
