//! The TAP backend against the host kernel: frames with virtio-net headers
//! both ways, offloads, a down interface, names, and a virtio-net device on
//! a TAP following the guest offloads the driver acked.
//!
//! These need /dev/net/tun and CAP_NET_ADMIN (the need `tap`): without them
//! the tests are reported as ignored, or fail when `VNETLAB_REQUIRE` names
//! `tap` (or says `all`).

use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::event_log::EventLog;
use devices::net::hdr::HDR_LEN;
use devices::net::tap::Tap;
use devices::net::{Backend, BackendError, GuestOffloads, NetHdr, SendOutcome};
use devices::virtio::net::features::{default_mask, mask};
use devices::virtio::net::{NetConfig, NetDevice};
use devices::virtio::VirtioDevice;
use testkit::suite::{Failed, Need, Suite};
use virtio_bindings::virtio_net::*;

const TUN_PATH: &str = "/dev/net/tun";
const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

/// A TAP can be created here: /dev/net/tun opens and TUNSETIFF is allowed.
fn tap_need() -> Need {
    Need::Custom {
        name: "tap",
        check: Arc::new(|| match Tap::open(None) {
            Ok(_) => Ok(()),
            Err(BackendError::Open { source, .. }) => {
                Err(format!("cannot open {TUN_PATH} ({source})"))
            }
            Err(BackendError::Ioctl { what, source })
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                Err(format!("{what} is not permitted (needs CAP_NET_ADMIN)"))
            }
            // Anything else is the backend's fault, not the machine's: the
            // test opens the TAP itself and fails with it.
            Err(_) => Ok(()),
        }),
    }
}

/// Opens a TAP; the `tap` need is met, so a failure is a real one.
fn open(name: Option<&str>) -> Tap {
    Tap::open(name)
        .unwrap_or_else(|e| panic!("TAP creation failed although {TUN_PATH} opened: {e:?}"))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6]; // broadcast
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(60.max(f.len()), 0);
    f
}

/// A raw packet socket bound to the interface: what the host sees.
fn packet_socket(ifname: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            proto.into(),
        )
    };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a new socket that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let cname = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: `cname` is a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert!(index > 0, "no index for {ifname}");
    // SAFETY: all-zero sockaddr_ll is valid; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index as i32;
    // SAFETY: bind reads a sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    sock
}

/// Polls `read` for up to two seconds until it yields a frame of ours.
fn wait_for(mut read: impl FnMut(&mut [u8]) -> Option<usize>, payload: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match read(&mut buf) {
            Some(n)
                if n >= 14 + payload.len()
                    && buf[12..14] == ETHERTYPE.to_be_bytes()
                    && &buf[14..14 + payload.len()] == payload =>
            {
                return buf[..n].to_vec();
            }
            Some(_) => {} // other traffic (IPv6 router solicitations, ...)
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("frame with payload {payload:?} never arrived");
}

fn tap_moves_frames_with_vnet_headers_and_offloads() -> Result<(), Failed> {
    let mut tap = open(None);
    assert!(tap.name().starts_with("tap"), "{}", tap.name());
    let flags = tap.tun_flags().unwrap();
    for f in [libc::IFF_TAP, libc::IFF_NO_PI, libc::IFF_VNET_HDR] {
        assert_ne!(flags & f, 0, "flag {f:#x} in {flags:#x}");
    }
    assert_eq!(tap.vnet_hdr_len().unwrap(), HDR_LEN);
    let csum_tso = GuestOffloads::from_features(1 << 1 | 1 << 7 | 1 << 8);
    tap.set_guest_offloads(csum_tso).unwrap();
    assert_eq!(tap.status().guest_offloads, csum_tso);
    tap.set_up(true).unwrap();
    let sock = packet_socket(tap.name());

    // Guest to host.
    let out = frame(b"from the guest");
    assert_eq!(
        tap.send(&NetHdr::default(), &out).unwrap(),
        SendOutcome::Sent
    );
    let seen = wait_for(
        |buf| {
            // SAFETY: recv writes at most buf.len() bytes into buf.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            (n > 0).then_some(n as usize)
        },
        b"from the guest",
    );
    assert_eq!(seen, out);

    // Host to guest.
    let inbound = frame(b"from the host");
    // SAFETY: send reads inbound.len() bytes from inbound.
    let n = unsafe { libc::send(sock.as_raw_fd(), inbound.as_ptr().cast(), inbound.len(), 0) };
    assert_eq!(
        n as usize,
        inbound.len(),
        "{}",
        std::io::Error::last_os_error()
    );
    let got = wait_for(
        |buf| {
            tap.recv(buf).unwrap().map(|(hdr, n)| {
                assert_eq!(hdr.gso_type, 0);
                n
            })
        },
        b"from the host",
    );
    assert_eq!(got, inbound);
    // Nothing pending is Ok(None), not an error (the fd is non-blocking).
    while tap.recv(&mut vec![0u8; 65536]).unwrap().is_some() {}
    assert_eq!(tap.rx_fd(), Some(tap.as_raw_fd()));
    Ok(())
}

fn a_down_interface_drops_frames_without_error() -> Result<(), Failed> {
    let mut tap = open(None);
    let out = frame(b"nobody listens");
    assert_eq!(
        tap.send(&NetHdr::default(), &out).unwrap(),
        SendOutcome::Dropped
    );
    assert_eq!(tap.status().dropped, 1);
    Ok(())
}

fn named_tap_keeps_its_name() -> Result<(), Failed> {
    // Unique per process, so parallel test runs do not collide.
    let name = format!("vnlab{}", std::process::id());
    let tap = open(Some(&name));
    assert_eq!(tap.name(), name);
    assert_eq!(tap.describe(), format!("tap:{name}"));
    // A bad name is refused before /dev/net/tun is opened: a unit test in
    // src/net/tap.rs checks that, on any machine.
    Ok(())
}

fn without(bits: &[u32]) -> u64 {
    bits.iter().fold(default_mask(), |m, b| m & !mask(*b))
}

fn tap_backend_gets_the_acked_guest_offloads() -> Result<(), Failed> {
    let tap = open(None);
    let cfg = NetConfig::parse("backend=tap").unwrap();
    let mut dev = NetDevice::new(cfg, Box::new(tap), EventLog::disabled()).unwrap();
    // Offered: the default set, with TSO4/TSO6/ECN. Acked: CSUM + TSO6 only.
    let acked = without(&[VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_ECN]);
    dev.set_acked_features(acked);
    let st = dev.status();
    assert!(
        st.backend.backend.starts_with("tap:tap"),
        "{}",
        st.backend.backend
    );
    assert_eq!(
        st.backend.guest_offloads.bits(),
        mask(VIRTIO_NET_F_GUEST_CSUM) | mask(VIRTIO_NET_F_GUEST_TSO6),
        "the TAP follows what was acked, not what was offered"
    );
    dev.reset();
    assert_eq!(
        dev.status().backend.guest_offloads.bits(),
        0,
        "reset clears them"
    );
    Ok(())
}

fn main() {
    let tap = [tap_need()];
    let mut suite = Suite::new();
    suite
        .test(
            "tap_moves_frames_with_vnet_headers_and_offloads",
            &tap,
            tap_moves_frames_with_vnet_headers_and_offloads,
        )
        .test(
            "a_down_interface_drops_frames_without_error",
            &tap,
            a_down_interface_drops_frames_without_error,
        )
        .test("named_tap_keeps_its_name", &tap, named_tap_keeps_its_name)
        .test(
            "tap_backend_gets_the_acked_guest_offloads",
            &tap,
            tap_backend_gets_the_acked_guest_offloads,
        );
    suite.run()
}
