//! The in-memory backend: two bounded frame queues shared between the device
//! side ([`MemoryBackend`]) and a test side ([`MemoryPeer`]) that injects
//! frames for the guest and collects what the guest sent; or a loopback
//! where every frame the guest sends comes back to it.
//!
//! An eventfd wakes the device's event loop when frames are injected. Each
//! queue is bounded both in frames and in bytes ([`Limits`]); a full queue
//! drops (and counts) new frames, so a peer that never collects, or a guest
//! that loops back 64 KiB frames, cannot exhaust host memory.

use std::collections::VecDeque;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Backend, BackendStatus, GuestOffloads, NetHdr, Result, SendOutcome, MAX_FRAME_LEN};

/// Frames each queue holds before it drops new ones.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Frame bytes each queue holds before it drops new ones: 4096 frames of
/// up to 64 KiB would otherwise be about 268 MB per direction.
pub const DEFAULT_BYTE_CAPACITY: usize = 4 << 20;

/// How much each of the two queues may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Frames.
    pub frames: usize,
    /// Bytes of frame data.
    pub bytes: usize,
}

impl Limits {
    /// `frames` frames, and at most [`DEFAULT_BYTE_CAPACITY`] bytes.
    pub fn frames(frames: usize) -> Self {
        Self {
            frames,
            bytes: DEFAULT_BYTE_CAPACITY,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::frames(DEFAULT_CAPACITY)
    }
}

/// A frame with its offload metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Offload metadata.
    pub hdr: NetHdr,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// A bounded queue of frames.
#[derive(Debug, Default)]
struct FrameQueue {
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl FrameQueue {
    /// Appends a copy of the frame if it fits in `limits`; false if it
    /// does not (nothing is copied then).
    fn push(&mut self, hdr: NetHdr, data: &[u8], limits: Limits) -> bool {
        if self.frames.len() >= limits.frames || self.bytes + data.len() > limits.bytes {
            return false;
        }
        self.bytes += data.len();
        self.frames.push_back(Frame {
            hdr,
            data: data.to_vec(),
        });
        true
    }

    fn pop(&mut self) -> Option<Frame> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.data.len();
        Some(f)
    }

    fn take(&mut self) -> VecDeque<Frame> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[derive(Debug, Default)]
struct Queues {
    to_guest: FrameQueue,
    from_guest: FrameQueue,
    limits: Limits,
    dropped: u64,
    offloads: GuestOffloads,
    loopback: bool,
}

#[derive(Debug)]
struct Shared {
    queues: Mutex<Queues>,
    rx_evt: EventFd,
}

impl Shared {
    fn new(limits: Limits, loopback: bool) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            queues: Mutex::new(Queues {
                limits: Limits {
                    frames: limits.frames.max(1),
                    bytes: limits.bytes.max(MAX_FRAME_LEN),
                },
                loopback,
                ..Queues::default()
            }),
            rx_evt: EventFd::new(EFD_NONBLOCK)?,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        crate::sync::lock(&self.queues)
    }

    /// Queues a frame for the guest; false if the queue is full.
    fn push_to_guest(&self, q: &mut Queues, hdr: NetHdr, data: &[u8]) -> bool {
        let was_empty = q.to_guest.is_empty();
        let limits = q.limits;
        if !q.to_guest.push(hdr, data, limits) {
            q.dropped += 1;
            return false;
        }
        if was_empty {
            if let Err(e) = self.rx_evt.write(1) {
                log::warn!("memory backend: cannot wake the device: {e}");
            }
        }
        true
    }
}

/// The device side of an in-memory pair or loopback.
#[derive(Debug)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

/// The test side of an in-memory pair; cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryPeer {
    shared: Arc<Shared>,
}

impl MemoryBackend {
    /// A backend and its peer, each queue holding `capacity` frames (and
    /// at most [`DEFAULT_BYTE_CAPACITY`] bytes).
    pub fn pair(capacity: usize) -> std::io::Result<(Self, MemoryPeer)> {
        Self::pair_with_limits(Limits::frames(capacity))
    }

    /// A backend and its peer, each queue bounded by `limits` (a byte
    /// limit below [`MAX_FRAME_LEN`] is raised to it).
    pub fn pair_with_limits(limits: Limits) -> std::io::Result<(Self, MemoryPeer)> {
        let shared = Shared::new(limits, false)?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            MemoryPeer { shared },
        ))
    }

    /// A loopback: the guest receives every frame it sends, up to
    /// `capacity` frames (and [`DEFAULT_BYTE_CAPACITY`] bytes) queued.
    pub fn loopback(capacity: usize) -> std::io::Result<Self> {
        Self::loopback_with_limits(Limits::frames(capacity))
    }

    /// A loopback whose queue toward the guest is bounded by `limits`.
    pub fn loopback_with_limits(limits: Limits) -> std::io::Result<Self> {
        Ok(Self {
            shared: Shared::new(limits, true)?,
        })
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        if self.shared.lock().loopback {
            "loopback".to_string()
        } else {
            "memory".to_string()
        }
    }

    fn send(&mut self, hdr: &NetHdr, frame: &[u8]) -> Result<SendOutcome> {
        let mut q = self.shared.lock();
        if q.loopback {
            let ok = self.shared.push_to_guest(&mut q, *hdr, frame);
            return Ok(if ok {
                SendOutcome::Sent
            } else {
                SendOutcome::Dropped
            });
        }
        let limits = q.limits;
        if !q.from_guest.push(*hdr, frame, limits) {
            q.dropped += 1;
            return Ok(SendOutcome::Dropped);
        }
        Ok(SendOutcome::Sent)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(NetHdr, usize)>> {
        let mut q = self.shared.lock();
        while let Some(frame) = q.to_guest.pop() {
            let len = frame.data.len();
            match buf.get_mut(..len) {
                Some(dst) => {
                    dst.copy_from_slice(&frame.data);
                    return Ok(Some((frame.hdr, len)));
                }
                None => {
                    // Cannot happen for frames the peer injected (it refuses
                    // oversized ones); drop rather than truncate.
                    q.dropped += 1;
                }
            }
        }
        Ok(None)
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.shared.rx_evt.as_raw_fd())
    }

    fn rx_event_consumed(&mut self) {
        // EAGAIN just means the counter was already zero.
        let _ = self.shared.rx_evt.read();
    }

    fn set_guest_offloads(&mut self, offloads: GuestOffloads) -> Result<()> {
        self.shared.lock().offloads = offloads;
        Ok(())
    }

    fn status(&self) -> BackendStatus {
        let q = self.shared.lock();
        BackendStatus {
            backend: if q.loopback { "loopback" } else { "memory" }.to_string(),
            queued_to_guest: Some(q.to_guest.len()),
            queued_from_guest: Some(q.from_guest.len()),
            dropped: q.dropped,
            guest_offloads: q.offloads,
        }
    }
}

impl MemoryPeer {
    /// Queues a frame for the guest with an empty header; false if the frame
    /// was dropped (queue full, or longer than [`MAX_FRAME_LEN`]).
    pub fn inject(&self, frame: &[u8]) -> bool {
        self.inject_with_hdr(NetHdr::default(), frame)
    }

    /// Queues a frame with offload metadata for the guest.
    pub fn inject_with_hdr(&self, hdr: NetHdr, frame: &[u8]) -> bool {
        let mut q = self.shared.lock();
        if frame.len() > MAX_FRAME_LEN {
            q.dropped += 1;
            return false;
        }
        self.shared.push_to_guest(&mut q, hdr, frame)
    }

    /// Takes every frame the guest sent so far, oldest first.
    pub fn take_sent(&self) -> Vec<Frame> {
        self.shared.lock().from_guest.take().into()
    }

    /// Discards the frames the guest sent; returns how many there were.
    pub fn discard_sent(&self) -> usize {
        self.shared.lock().from_guest.take().len()
    }

    /// Frames injected and not yet received by the guest.
    pub fn queued_to_guest(&self) -> usize {
        self.shared.lock().to_guest.len()
    }

    /// Bytes of the frames injected and not yet received by the guest.
    pub fn queued_to_guest_bytes(&self) -> usize {
        self.shared.lock().to_guest.bytes
    }

    /// Frames dropped because a queue was full (in frames or bytes) or a
    /// frame too long.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// The guest offloads the device last told the backend about.
    pub fn guest_offloads(&self) -> GuestOffloads {
        self.shared.lock().offloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_moves_frames_both_ways_and_bounds_queues() {
        let (mut b, peer) = MemoryBackend::pair(2).unwrap();
        let hdr = NetHdr {
            flags: 1,
            ..NetHdr::default()
        };
        assert_eq!(b.send(&hdr, b"one").unwrap(), SendOutcome::Sent);
        assert_eq!(b.send(&hdr, b"two").unwrap(), SendOutcome::Sent);
        assert_eq!(b.send(&hdr, b"three").unwrap(), SendOutcome::Dropped);
        let sent = peer.take_sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].data, b"one");
        assert_eq!(sent[1].hdr, hdr);

        let mut buf = vec![0u8; MAX_FRAME_LEN];
        assert!(b.recv(&mut buf).unwrap().is_none());
        assert!(peer.inject(b"in1"));
        assert!(peer.inject(b"in2"));
        assert!(!peer.inject(b"in3"));
        assert!(!peer.inject(&vec![0; MAX_FRAME_LEN + 1]));
        assert_eq!(peer.dropped(), 3);
        // The eventfd was written for the first injected frame.
        assert_eq!(b.shared.rx_evt.read().unwrap(), 1);
        let (h, n) = b.recv(&mut buf).unwrap().unwrap();
        assert_eq!((h, &buf[..n]), (NetHdr::default(), &b"in1"[..]));
        assert_eq!(peer.queued_to_guest(), 1);
        assert_eq!(b.status().queued_to_guest, Some(1));
    }

    #[test]
    fn queues_are_bounded_in_bytes_too() {
        let limits = Limits {
            frames: 100,
            bytes: MAX_FRAME_LEN * 2,
        };
        let (mut b, peer) = MemoryBackend::pair_with_limits(limits).unwrap();
        let big = vec![0u8; MAX_FRAME_LEN];
        // Toward the guest: two full-size frames fit, the third is dropped
        // although only 2 of 100 frame slots are used.
        assert!(peer.inject(&big));
        assert!(peer.inject(&big));
        assert!(!peer.inject(&big));
        assert!(!peer.inject(b"x"), "not a byte left");
        assert_eq!(peer.queued_to_guest_bytes(), 2 * MAX_FRAME_LEN);
        // Receiving frees the bytes.
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        b.recv(&mut buf).unwrap().unwrap();
        assert!(peer.inject(b"small"));
        assert_eq!(peer.queued_to_guest_bytes(), MAX_FRAME_LEN + 5);
        // From the guest, the same bound.
        let hdr = NetHdr::default();
        assert_eq!(b.send(&hdr, &big).unwrap(), SendOutcome::Sent);
        assert_eq!(b.send(&hdr, &big).unwrap(), SendOutcome::Sent);
        assert_eq!(b.send(&hdr, &big).unwrap(), SendOutcome::Dropped);
        assert_eq!(peer.dropped(), 3);
        assert_eq!(peer.take_sent().len(), 2);
        assert_eq!(b.send(&hdr, &big).unwrap(), SendOutcome::Sent);

        // The defaults: 4 MiB per direction, about 64 full-size frames.
        let mut lo = MemoryBackend::loopback(DEFAULT_CAPACITY).unwrap();
        let sent = (0..DEFAULT_CAPACITY)
            .filter(|_| lo.send(&hdr, &big).unwrap() == SendOutcome::Sent)
            .count();
        assert_eq!(sent, DEFAULT_BYTE_CAPACITY / MAX_FRAME_LEN);
        assert_eq!(
            lo.status().dropped,
            (DEFAULT_CAPACITY - sent) as u64,
            "every frame beyond the bound is counted"
        );
    }

    #[test]
    fn loopback_returns_sent_frames() {
        let mut b = MemoryBackend::loopback(8).unwrap();
        assert_eq!(b.describe(), "loopback");
        b.send(&NetHdr::default(), b"echo").unwrap();
        let mut buf = vec![0u8; 64];
        let (_, n) = b.recv(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], b"echo");
    }

    #[test]
    fn offloads_are_visible_to_the_peer() {
        let (mut b, peer) = MemoryBackend::pair(1).unwrap();
        let o = GuestOffloads::from_features(1 << 1);
        b.set_guest_offloads(o).unwrap();
        assert_eq!(peer.guest_offloads(), o);
    }
}
