//! A simulated guest for the fake engine: the carrier and operstate logic of
//! Linux's virtio_net driver and link watch, reduced to the facts the lab
//! measured (../shared/docs/environment.md) and read in Debian's 6.1 and
//! 6.12 sources. It is a test double: it lets the harness be tested end to
//! end without a VM, and it is never a substitute for running a guest.
//!
//! The facts it encodes:
//! - A new net_device starts with the carrier on, operstate UNKNOWN and no
//!   carrier transitions; reloading the driver makes a new one (next
//!   ifindex, counters from zero).
//! - `virtnet_probe` (fixed driver) calls `netif_carrier_off()`, then either
//!   reads the link from the config space (STATUS) or calls
//!   `netif_carrier_on()` (no STATUS): two transitions, link watch sets
//!   operstate UP. The pre-fix driver calls `netif_carrier_off()` only with
//!   STATUS; without it, `netif_carrier_on()` changes nothing, no link-watch
//!   event runs, and operstate stays UNKNOWN.
//! - A device-side link change with STATUS reaches the driver through the
//!   config interrupt: carrier off (NO-CARRIER, state DOWN) or on.
//! - `ip link` prints state DOWN for an interface that is administratively
//!   down, whatever its operstate.
//!
//! It also keeps the calls of the link-state functions a kernel call trace
//! would show, in the order Linux 6.1 makes them (see the lab's real traces
//! in `harness/tests/fixtures/agent/trace-*.txt`): a carrier change fires a
//! link-watch event, and the link-watch work runs `rfc2863_policy()`.

use devices::virtio::net::features as vfeatures;

use crate::link::{Operstate, ShowCapture};
use crate::scenario::{Driver, Scenario};

/// The MAC the model uses when the scenario sets none (QEMU's default).
pub const DEFAULT_MAC: &str = "52:54:00:12:34:56";

/// The simulated guest's view of its one virtio-net interface.
#[derive(Debug, Clone)]
pub struct GuestModel {
    driver: Driver,
    status: bool,
    negotiated: u64,
    device_link_up: bool,
    mtu: u32,
    mac: String,
    ifindex: u32,
    admin_up: bool,
    carrier: bool,
    operstate: Operstate,
    carrier_changes: u64,
    calls: Vec<(&'static str, &'static str)>,
    linkwatch_pending: bool,
}

/// The functions whose calls the model keeps (`default_operstate` is
/// inlined into `rfc2863_policy`, as in Debian's 6.1).
pub const MODELLED_FUNCTIONS: &[&str] = &[
    "virtnet_probe",
    "virtnet_open",
    "virtnet_config_changed_work",
    "netif_carrier_on",
    "netif_carrier_off",
    "linkwatch_init_dev",
    "linkwatch_fire_event",
    "linkwatch_event",
    "__linkwatch_run_queue",
    "linkwatch_do_dev",
    "rfc2863_policy",
    "dev_activate",
];

impl GuestModel {
    /// Boots: the driver probes the device the scenario describes.
    pub fn boot(scenario: &Scenario) -> Result<Self, String> {
        let offered = vfeatures::parse_spec(&scenario.device.features, vfeatures::default_mask())
            .map_err(|e| e.to_string())?;
        let mut offered = offered;
        if scenario.device.mtu.is_some() {
            offered |= vfeatures::mask(virtio_bit("mtu"));
        }
        let mut m = Self {
            driver: scenario.guest.driver,
            status: vfeatures::has(offered, virtio_bit("status")),
            // The model's driver acks everything offered.
            negotiated: offered,
            device_link_up: true,
            mtu: scenario.device.mtu.map_or(1500, u32::from),
            mac: scenario
                .device
                .mac
                .clone()
                .unwrap_or_else(|| DEFAULT_MAC.to_string()),
            ifindex: 1, // lo
            admin_up: false,
            carrier: true,
            operstate: Operstate::Unknown,
            carrier_changes: 0,
            calls: Vec::new(),
            linkwatch_pending: false,
        };
        m.probe();
        Ok(m)
    }

    fn call(&mut self, function: &'static str, caller: &'static str) {
        self.calls.push((function, caller));
    }

    fn probe(&mut self) {
        self.call("virtnet_probe", "virtio_dev_probe");
        self.ifindex += 1;
        self.admin_up = false;
        self.carrier = true;
        self.operstate = Operstate::Unknown;
        self.carrier_changes = 0;
        self.call("linkwatch_init_dev", "register_netdevice");
        if self.driver == Driver::Stock || self.status {
            self.carrier_off("virtnet_probe");
        }
        if !self.status {
            self.carrier_on("virtnet_probe");
        } else if self.device_link_up {
            self.call("virtnet_config_changed_work", "process_one_work");
            self.carrier_on("virtnet_config_changed_work");
        }
        self.run_linkwatch();
    }

    fn carrier_on(&mut self, caller: &'static str) {
        self.call("netif_carrier_on", caller);
        if !self.carrier {
            self.carrier = true;
            self.carrier_changes += 1;
            self.operstate = Operstate::Up;
            self.call("linkwatch_fire_event", "netif_carrier_on");
            self.linkwatch_pending = true;
        }
    }

    fn carrier_off(&mut self, caller: &'static str) {
        self.call("netif_carrier_off", caller);
        if self.carrier {
            self.carrier = false;
            self.carrier_changes += 1;
            self.operstate = Operstate::Down;
            self.call("linkwatch_fire_event", "netif_carrier_off");
            self.linkwatch_pending = true;
        }
    }

    /// The link-watch work, when an event is pending.
    fn run_linkwatch(&mut self) {
        if !std::mem::take(&mut self.linkwatch_pending) {
            return;
        }
        self.call("linkwatch_event", "process_one_work");
        self.call("__linkwatch_run_queue", "linkwatch_event");
        self.call("linkwatch_do_dev", "__linkwatch_run_queue");
        self.call("rfc2863_policy", "linkwatch_do_dev");
        if self.admin_up {
            self.call("dev_activate", "linkwatch_do_dev");
        }
    }

    /// The link-state calls made since the last time this was asked, as
    /// (function, caller).
    pub fn take_calls(&mut self) -> Vec<(&'static str, &'static str)> {
        std::mem::take(&mut self.calls)
    }

    /// `ip link set eth0 up`.
    pub fn link_up(&mut self) {
        if !self.admin_up {
            self.call("virtnet_open", "__dev_open");
            self.call("dev_activate", "__dev_open");
        }
        self.admin_up = true;
    }

    /// `rmmod virtio_net; modprobe virtio_net`.
    pub fn reload_driver(&mut self) {
        self.probe();
    }

    /// A link change from the device side.
    pub fn device_link(&mut self, up: bool) -> Result<(), String> {
        if !self.status {
            return Err(
                "the device does not offer STATUS, so it cannot tell the guest about its link"
                    .into(),
            );
        }
        self.device_link_up = up;
        self.call("virtnet_config_changed_work", "process_one_work");
        if up {
            self.carrier_on("virtnet_config_changed_work");
        } else {
            self.carrier_off("virtnet_config_changed_work");
        }
        self.run_linkwatch();
        Ok(())
    }

    /// What `ip link show eth0` and sysfs would print now.
    pub fn show(&self) -> ShowCapture {
        let mut flags = Vec::new();
        if self.admin_up && !self.carrier {
            flags.push("NO-CARRIER");
        }
        flags.extend(["BROADCAST", "MULTICAST"]);
        if self.admin_up {
            flags.push("UP");
            if self.carrier {
                flags.push("LOWER_UP");
            }
        }
        let state = if self.admin_up {
            self.operstate
        } else {
            Operstate::Down
        };
        let qdisc = if self.admin_up { "pfifo_fast" } else { "noop" };
        let ip_link = format!(
            "{}: eth0: <{}> mtu {} qdisc {qdisc} state {state} mode DEFAULT group default qlen 1000\n    link/ether {} brd ff:ff:ff:ff:ff:ff\n",
            self.ifindex,
            flags.join(","),
            self.mtu,
            self.mac,
        );
        let features: String = (0..64)
            .map(|b| {
                if vfeatures::has(self.negotiated, b) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        ShowCapture {
            ip_link,
            operstate: Some(format!("{}\n", state.as_str().to_ascii_lowercase())),
            carrier: Some(if !self.admin_up {
                String::new()
            } else if self.carrier {
                "1\n".into()
            } else {
                "0\n".into()
            }),
            carrier_changes: Some(format!("{}\n", self.carrier_changes)),
            features: Some(format!("{features}\n")),
        }
    }
}

fn virtio_bit(name: &str) -> u32 {
    vfeatures::by_name(name).map_or(0, |f| f.bit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn model(driver: &str, features: &str) -> GuestModel {
        let text = format!(
            "name = \"m\"\nguest = {{ kernel = \"debian-6.1\", driver = \"{driver}\" }}\n\
             device = {{ features = \"{features}\" }}\nsteps = [\"boot\", \"show\"]\n\
             [[expect]]\noperstate = \"UP\"\n"
        );
        let s = &load_str(&text, std::path::Path::new("m.toml")).unwrap()[0];
        GuestModel::boot(s).unwrap()
    }

    fn view(m: &GuestModel) -> crate::link::LinkView {
        m.show().view("eth0").unwrap()
    }

    #[test]
    fn the_environment_table() {
        // (driver, features) -> (state after link-up, carrier_changes)
        for (driver, features, state, changes) in [
            ("stock", "", Operstate::Up, 2),
            ("stock", "-status", Operstate::Up, 2),
            ("prefix", "", Operstate::Up, 2),
            ("prefix", "-status", Operstate::Unknown, 0),
        ] {
            let mut m = model(driver, features);
            let before = view(&m);
            assert_eq!(before.state, Some(Operstate::Down), "admin down at first");
            assert!(!before.has_flag("UP"));
            m.link_up();
            let v = view(&m);
            assert_eq!(v.state, Some(state), "{driver} {features}");
            assert_eq!(v.carrier_changes, Some(changes), "{driver} {features}");
            assert!(v.has_flag("LOWER_UP") && !v.has_flag("NO-CARRIER"));
            assert_eq!(v.ifindex, 2);
        }
    }

    #[test]
    fn flap_and_reload() {
        let mut m = model("stock", "");
        m.link_up();
        m.device_link(false).unwrap();
        let v = view(&m);
        assert_eq!(v.state, Some(Operstate::Down));
        assert!(v.has_flag("NO-CARRIER") && !v.has_flag("LOWER_UP"));
        assert_eq!(v.carrier, Some(false));
        assert_eq!(v.carrier_changes, Some(3));
        m.device_link(true).unwrap();
        assert_eq!(view(&m).state, Some(Operstate::Up));
        assert_eq!(view(&m).carrier_changes, Some(4));
        m.reload_driver();
        m.link_up();
        let v = view(&m);
        assert_eq!((v.ifindex, v.carrier_changes), (3, Some(2)));

        let mut p = model("prefix", "-status");
        assert!(p.device_link(false).is_err());
        p.reload_driver();
        p.link_up();
        assert_eq!(view(&p).state, Some(Operstate::Unknown));
    }

    #[test]
    fn calls_follow_the_kernel() {
        let mut normal = model("prefix", "");
        let mut abnormal = model("prefix", "-status");
        let calls = |m: &mut GuestModel| -> Vec<String> {
            m.take_calls()
                .iter()
                .map(|(f, c)| format!("{f} <- {c}"))
                .collect()
        };
        let n = calls(&mut normal);
        assert_eq!(n[2], "netif_carrier_off <- virtnet_probe");
        assert!(n.contains(&"rfc2863_policy <- linkwatch_do_dev".to_string()));
        let a = calls(&mut abnormal);
        assert_eq!(
            a,
            [
                "virtnet_probe <- virtio_dev_probe",
                "linkwatch_init_dev <- register_netdevice",
                "netif_carrier_on <- virtnet_probe"
            ]
        );
        abnormal.link_up();
        assert_eq!(
            calls(&mut abnormal),
            ["virtnet_open <- __dev_open", "dev_activate <- __dev_open"]
        );
        assert!(calls(&mut abnormal).is_empty());
    }

    #[test]
    fn features_are_the_guest_view() {
        let m = model("stock", "-mrg_rxbuf");
        let f = view(&m).features.unwrap();
        assert!(!vfeatures::has(f, virtio_bit("mrg_rxbuf")));
        assert!(vfeatures::has(f, virtio_bit("version_1")));
    }
}
