//! The TAP backend: a Linux TAP interface opened through `/dev/net/tun` with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, non-blocking. Every frame carries a
//! 12-byte virtio-net header (`TUNSETVNETHDRSZ`), so checksum and
//! segmentation offloads pass between guest and host kernel untouched; the
//! offloads the kernel may hand us (`TUNSETOFFLOAD`) are exactly the guest
//! offloads the driver acked.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};

use super::hdr::HDR_LEN;
use super::{Backend, BackendError, BackendStatus, GuestOffloads, NetHdr, Result, SendOutcome};

const TUN_PATH: &str = "/dev/net/tun";

/// Checks that `name` can be a Linux interface name.
pub fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(BackendError::BadTapName(name.to_string()));
    }
    Ok(())
}

/// An `ifreq` with a name.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of plain
    // data); all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The name in an `ifreq`.
fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn ioctl_error(what: impl Into<String>) -> BackendError {
    BackendError::Ioctl {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    offloads: GuestOffloads,
    dropped: u64,
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Tap {
    /// Opens (or creates) the TAP interface `name`, or a new one named by
    /// the kernel (`tapN`) when `name` is `None`.
    pub fn open(name: Option<&str>) -> Result<Self> {
        if let Some(n) = name {
            check_name(n)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|source| BackendError::Open {
                path: TUN_PATH,
                source,
            })?;

        let mut req = ifreq(name.unwrap_or("tap%d"));
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: `file` is an open tun file; TUNSETIFF reads and writes an
        // ifreq, and `req` is a valid, exclusively borrowed ifreq.
        if unsafe { ioctl_with_mut_ref(&file, libc::TUNSETIFF as _, &mut req) } < 0 {
            return Err(ioctl_error(format!(
                "TUNSETIFF (create TAP `{}`)",
                name.unwrap_or("tap%d")
            )));
        }
        let name = ifreq_name(&req);

        let hdr_len = HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which
        // points at `hdr_len`.
        if unsafe { ioctl_with_ref(&file, libc::TUNSETVNETHDRSZ as _, &hdr_len) } < 0 {
            return Err(ioctl_error("TUNSETVNETHDRSZ (virtio-net header size)"));
        }
        let mut tap = Self {
            file,
            name,
            offloads: GuestOffloads::default(),
            dropped: 0,
        };
        // Until the driver acks guest offloads, it can take none.
        tap.set_guest_offloads(GuestOffloads::default())?;
        log::info!("opened TAP interface {}", tap.name);
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `IFF_*` flags the tun driver reports for this file (TUNGETIFF).
    pub fn tun_flags(&self) -> Result<i32> {
        let mut req = ifreq("");
        // SAFETY: TUNGETIFF writes an ifreq into `req`, a valid ifreq.
        if unsafe { ioctl_with_mut_ref(&self.file, libc::TUNGETIFF as _, &mut req) } < 0 {
            return Err(ioctl_error("TUNGETIFF"));
        }
        // SAFETY: TUNGETIFF filled the flags member of the union.
        Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
    }

    /// The virtio-net header size the kernel uses (TUNGETVNETHDRSZ).
    pub fn vnet_hdr_len(&self) -> Result<usize> {
        let mut len: libc::c_int = 0;
        // SAFETY: TUNGETVNETHDRSZ writes one c_int into `len`.
        if unsafe { ioctl_with_mut_ref(&self.file, libc::TUNGETVNETHDRSZ as _, &mut len) } < 0 {
            return Err(ioctl_error("TUNGETVNETHDRSZ"));
        }
        Ok(usize::try_from(len).unwrap_or(0))
    }

    /// Sets the interface administratively up (or down), as `ip link set`
    /// does; frames written to a down TAP are discarded by the kernel.
    pub fn set_up(&self, up: bool) -> Result<()> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ioctl_error("socket (for SIOCSIFFLAGS)"));
        }
        // SAFETY: `raw` is a new socket that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(&self.name);
        // SAFETY: SIOCGIFFLAGS fills the flags of `req`, a valid ifreq
        // naming an interface.
        if unsafe { ioctl_with_mut_ref(&sock, libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
            return Err(ioctl_error(format!("SIOCGIFFLAGS on {}", self.name)));
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        let mut flags = unsafe { req.ifr_ifru.ifru_flags };
        if up {
            flags |= libc::IFF_UP as i16;
        } else {
            flags &= !(libc::IFF_UP as i16);
        }
        req.ifr_ifru.ifru_flags = flags;
        // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq.
        if unsafe { ioctl_with_ref(&sock, libc::SIOCSIFFLAGS as _, &req) } < 0 {
            return Err(ioctl_error(format!("SIOCSIFFLAGS on {}", self.name)));
        }
        Ok(())
    }
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

impl Backend for Tap {
    fn describe(&self) -> String {
        format!("tap:{}", self.name)
    }

    fn send(&mut self, hdr: &NetHdr, frame: &[u8]) -> Result<SendOutcome> {
        let head = hdr.to_bytes(0);
        // One writev(2): the tun driver takes a frame per write.
        match (&self.file).write_vectored(&[IoSlice::new(&head), IoSlice::new(frame)]) {
            Ok(_) => Ok(SendOutcome::Sent),
            // A full queue (or an interface that is down) drops the frame,
            // as a full NIC queue would.
            Err(e) if would_block(&e) || e.raw_os_error() == Some(libc::EIO) => {
                self.dropped += 1;
                Ok(SendOutcome::Dropped)
            }
            Err(e) => Err(BackendError::Send(e)),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(NetHdr, usize)>> {
        let mut head = [0u8; HDR_LEN];
        // One readv(2): the tun driver hands over a frame per read.
        let n = match (&self.file)
            .read_vectored(&mut [IoSliceMut::new(&mut head), IoSliceMut::new(buf)])
        {
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(None),
            Err(e) => return Err(BackendError::Recv(e)),
        };
        if n < HDR_LEN {
            return Err(BackendError::BadFrame(format!(
                "{n} bytes, shorter than the virtio-net header"
            )));
        }
        let hdr = NetHdr::parse(&head).ok_or_else(|| BackendError::BadFrame("no header".into()))?;
        Ok(Some((hdr, n - HDR_LEN)))
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn set_guest_offloads(&mut self, offloads: GuestOffloads) -> Result<()> {
        let flags = offloads.tun_flags();
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { ioctl_with_val(&self.file, libc::TUNSETOFFLOAD as _, flags.into()) } < 0 {
            return Err(ioctl_error(format!("TUNSETOFFLOAD {flags:#x}")));
        }
        log::debug!(
            "{}: guest offloads {:#x} (TUN flags {flags:#x})",
            self.name,
            offloads.bits()
        );
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

    // The tests that open a TAP (they need /dev/net/tun and CAP_NET_ADMIN)
    // are in tests/tap.rs, where a machine without TAP reports them as
    // ignored rather than passed.

    #[test]
    fn a_bad_name_is_refused_before_tun_is_opened() {
        assert!(matches!(
            Tap::open(Some("bad/name")),
            Err(BackendError::BadTapName(_))
        ));
    }
}
