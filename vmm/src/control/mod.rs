//! The control interface: a Unix socket that drives devices from outside
//! the VMM process (link down/up, guest announce, status), and the
//! `vmm ctl` client.
//!
//! Protocol: the client sends one request per line; the VMM answers each
//! with one line of JSON, `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! | request | effect |
//! |---------|--------|
//! | `status [DEV]` | `{"ok":true,"devices":[...]}`: offered/acked features, device status byte, link, counters of each device (or of DEV) |
//! | `link up [DEV]` / `link down [DEV]` | sets the link; the guest is told through a configuration interrupt |
//! | `announce [DEV]` | asks the guest driver to announce itself (VIRTIO_NET_F_GUEST_ANNOUNCE) |
//! | `quit` | stops the VM (exit code 7) |
//! | `help` | lists the requests |
//!
//! DEV is a device name (`net0`, ...); it may be left out when the VM has
//! exactly one device.

mod client;
mod net;
mod protocol;
mod server;

pub use client::{request, Error as ClientError};
pub use protocol::{handle_line, Controllable};
pub use server::{ControlServer, Error as ServerError};
