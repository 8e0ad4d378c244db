//! Network backends: where the frames of a virtio-net device go to and come
//! from. The device hands a backend whole Ethernet frames with their
//! offload metadata ([`NetHdr`]); the backend knows nothing about virtqueues.
//!
//! * [`none::NoneBackend`]: the link is present, transmitted frames are
//!   dropped and counted, nothing is ever received.
//! * [`memory::MemoryBackend`]: bounded in-memory queues shared with a
//!   [`memory::MemoryPeer`] that injects frames to the guest and collects
//!   the guest's frames (tests, benchmarks), or a loopback that hands every
//!   transmitted frame back to the guest.
//! * [`tap::Tap`]: a Linux TAP interface with `IFF_VNET_HDR`, so the
//!   offload metadata travels with each frame.

pub mod hdr;
pub mod memory;
pub mod none;
pub mod tap;

use std::os::unix::io::RawFd;

use serde::Serialize;

pub use hdr::{GuestOffloads, NetHdr};

/// The largest Ethernet frame (without virtio-net header) any backend moves:
/// a 64 KiB GSO frame plus its Ethernet and VLAN headers.
pub const MAX_FRAME_LEN: usize = 65536 + 14 + 4;

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend specification could not be parsed.
    #[error("unknown backend `{0}`; valid backends are none, memory, loopback, tap and tap:NAME")]
    UnknownKind(String),
    /// A TAP interface name that Linux cannot accept.
    #[error("TAP interface name `{0}` is empty, too long (15 bytes at most) or contains '/', ':', whitespace or NUL")]
    BadTapName(String),
    /// Opening a device file failed.
    #[error("cannot open {path}")]
    Open {
        /// The file.
        path: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl on the backend failed.
    #[error("{what} failed")]
    Ioctl {
        /// The ioctl and its purpose.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sending a frame failed.
    #[error("cannot send a frame")]
    Send(#[source] std::io::Error),
    /// Receiving a frame failed.
    #[error("cannot receive a frame")]
    Recv(#[source] std::io::Error),
    /// A frame received from the host side is malformed.
    #[error("received a malformed frame: {0}")]
    BadFrame(String),
}

/// A `Result` with a [`BackendError`].
pub type Result<T> = std::result::Result<T, BackendError>;

/// What happened to a frame handed to [`Backend::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// The frame left through the backend.
    Sent,
    /// The backend dropped the frame (no peer, queue full, would block).
    Dropped,
}

/// A place frames go to and come from.
pub trait Backend: Send {
    /// A short description (`tap:vnet0`, `memory`, ...).
    fn describe(&self) -> String;

    /// Transmits one Ethernet frame. `hdr` carries the offload requests
    /// (checksum, GSO) that the device accepted from the driver.
    fn send(&mut self, hdr: &NetHdr, frame: &[u8]) -> Result<SendOutcome>;

    /// Receives one frame into `buf` (at least [`MAX_FRAME_LEN`] bytes);
    /// `Ok(None)` when nothing is pending.
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(NetHdr, usize)>>;

    /// A file descriptor that becomes readable when frames arrive; the event
    /// loop watches it edge-triggered, so the device drains `recv` until it
    /// returns `Ok(None)` (or runs out of guest buffers).
    fn rx_fd(&self) -> Option<RawFd> {
        None
    }

    /// The event loop saw `rx_fd` readable; consume the wake-up if the fd
    /// needs that (an eventfd does, a TAP does not).
    fn rx_event_consumed(&mut self) {}

    /// The offloads the guest can receive changed (feature negotiation or
    /// VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET): never hand it frames that need
    /// more than these.
    fn set_guest_offloads(&mut self, _offloads: GuestOffloads) -> Result<()> {
        Ok(())
    }

    /// Backend-specific figures for the status report.
    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: self.describe(),
            ..BackendStatus::default()
        }
    }
}

/// Backend figures for the status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    /// The backend's description.
    pub backend: String,
    /// Frames waiting to be received by the guest, where known.
    pub queued_to_guest: Option<usize>,
    /// Frames sent by the guest and not collected yet, where known.
    pub queued_from_guest: Option<usize>,
    /// Frames the backend dropped itself (queue full, no peer).
    pub dropped: u64,
    /// The offloads the guest can receive, as told to the backend.
    pub guest_offloads: GuestOffloads,
}

/// Which backend a device uses, as written in `--net backend=...`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendKind {
    /// No backend: frames from the guest are dropped and counted.
    #[default]
    None,
    /// In-memory queues with a peer handle.
    Memory,
    /// In-memory loopback: the guest receives what it sends.
    Loopback,
    /// A TAP interface; `None` lets the kernel pick a `tapN` name.
    Tap {
        /// The interface name.
        name: Option<String>,
    },
}

impl std::str::FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "memory" => Ok(Self::Memory),
            "loopback" => Ok(Self::Loopback),
            "tap" => Ok(Self::Tap { name: None }),
            _ => match s.strip_prefix("tap:") {
                Some(name) => {
                    tap::check_name(name)?;
                    Ok(Self::Tap {
                        name: Some(name.to_string()),
                    })
                }
                None => Err(BackendError::UnknownKind(s.to_string())),
            },
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Memory => f.write_str("memory"),
            Self::Loopback => f.write_str("loopback"),
            Self::Tap { name: None } => f.write_str("tap"),
            Self::Tap { name: Some(n) } => write!(f, "tap:{n}"),
        }
    }
}

/// A backend opened from a [`BackendKind`], with the peer handle of an
/// in-memory backend (which the VMM may keep for tests, or drop).
pub struct OpenedBackend {
    /// The backend, ready for a device.
    pub backend: Box<dyn Backend>,
    /// The test side of a `memory` backend.
    pub peer: Option<memory::MemoryPeer>,
}

impl std::fmt::Debug for OpenedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedBackend")
            .field("backend", &self.backend.describe())
            .finish_non_exhaustive()
    }
}

impl BackendKind {
    /// Opens the backend. TAP needs `CAP_NET_ADMIN` (or a persistent
    /// interface owned by the caller).
    pub fn open(&self) -> Result<OpenedBackend> {
        Ok(match self {
            Self::None => OpenedBackend {
                backend: Box::new(none::NoneBackend::default()),
                peer: None,
            },
            Self::Memory => {
                let (backend, peer) = memory::MemoryBackend::pair(memory::DEFAULT_CAPACITY)
                    .map_err(|source| BackendError::Open {
                        path: "an eventfd",
                        source,
                    })?;
                OpenedBackend {
                    backend: Box::new(backend),
                    peer: Some(peer),
                }
            }
            Self::Loopback => OpenedBackend {
                backend: Box::new(
                    memory::MemoryBackend::loopback(memory::DEFAULT_CAPACITY).map_err(
                        |source| BackendError::Open {
                            path: "an eventfd",
                            source,
                        },
                    )?,
                ),
                peer: None,
            },
            Self::Tap { name } => OpenedBackend {
                backend: Box::new(tap::Tap::open(name.as_deref())?),
                peer: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_kinds_parse_and_print() {
        for s in ["none", "memory", "loopback", "tap", "tap:vnet0"] {
            let kind: BackendKind = s.parse().unwrap();
            assert_eq!(kind.to_string(), s);
        }
        assert_eq!(
            "tap:vnet0".parse::<BackendKind>().unwrap(),
            BackendKind::Tap {
                name: Some("vnet0".into())
            }
        );
        let err = "udp".parse::<BackendKind>().unwrap_err().to_string();
        assert!(err.contains("valid backends are none, memory"), "{err}");
        assert!(matches!(
            "tap:this-name-is-too-long".parse::<BackendKind>(),
            Err(BackendError::BadTapName(_))
        ));
        assert!("tap:".parse::<BackendKind>().is_err());
    }

    #[test]
    fn open_none_and_memory() {
        let none = BackendKind::None.open().unwrap();
        assert_eq!(none.backend.describe(), "none");
        assert!(none.peer.is_none());
        let mem = BackendKind::Memory.open().unwrap();
        assert!(mem.peer.is_some());
        assert!(mem.backend.rx_fd().is_some());
    }
}
