//! Parsing and answering control requests, independent of the socket.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::machine::Stopper;

/// A device the control socket can drive.
pub trait Controllable: Send + Sync {
    /// Its name, as requests address it.
    fn name(&self) -> String;
    /// Sets the link; returns what changed, for the answer.
    fn set_link(&self, up: bool) -> Result<Value, String>;
    /// Asks the guest driver to announce itself.
    fn announce(&self) -> Result<Value, String>;
    /// A status snapshot.
    fn status(&self) -> Value;
}

const HELP: &str = "requests: status [DEV] | link up|down [DEV] | announce [DEV] | quit | help";

fn pick<'a>(
    devices: &'a [Arc<dyn Controllable>],
    name: Option<&str>,
) -> Result<&'a Arc<dyn Controllable>, String> {
    let names = || {
        devices
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => devices
            .iter()
            .find(|d| d.name() == n)
            .ok_or_else(|| format!("no device `{n}`; the devices are: {}", names())),
        None => match devices {
            [] => Err("the VM has no controllable device".into()),
            [one] => Ok(one),
            _ => Err(format!("the VM has several devices, name one: {}", names())),
        },
    }
}

fn answer(result: Result<Value, String>) -> Value {
    match result {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(other) => json!({"ok": true, "result": other}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// Answers one request line.
pub fn handle_line(line: &str, devices: &[Arc<dyn Controllable>], stopper: &Stopper) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result = match words.as_slice() {
        ["status"] => {
            Ok(json!({"devices": devices.iter().map(|d| d.status()).collect::<Vec<_>>()}))
        }
        ["status", dev] => pick(devices, Some(dev)).map(|d| json!({"devices": [d.status()]})),
        ["link", state @ ("up" | "down"), rest @ ..] if rest.len() <= 1 => {
            pick(devices, rest.first().copied()).and_then(|d| d.set_link(*state == "up"))
        }
        ["link", ..] => Err("usage: link up|down [DEV]".into()),
        ["announce", rest @ ..] if rest.len() <= 1 => {
            pick(devices, rest.first().copied()).and_then(|d| d.announce())
        }
        ["quit"] => {
            stopper.stop();
            Ok(json!({"stopping": true}))
        }
        ["help"] => Ok(json!({"help": HELP})),
        [] => Err(format!("empty request; {HELP}")),
        [other, ..] => Err(format!("unknown request `{other}`; {HELP}")),
    };
    answer(result)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A device that records link changes and refuses announces.
    pub struct Fake {
        pub name: &'static str,
        pub link: Mutex<bool>,
    }

    impl Controllable for Fake {
        fn name(&self) -> String {
            self.name.into()
        }
        fn set_link(&self, up: bool) -> Result<Value, String> {
            let mut link = self.link.lock().unwrap();
            let changed = *link != up;
            *link = up;
            Ok(json!({"device": self.name, "link_up": up, "changed": changed}))
        }
        fn announce(&self) -> Result<Value, String> {
            Err("the device does not offer VIRTIO_NET_F_GUEST_ANNOUNCE".into())
        }
        fn status(&self) -> Value {
            json!({"id": self.name, "link_up": *self.link.lock().unwrap()})
        }
    }

    pub fn fake(name: &'static str) -> Arc<dyn Controllable> {
        Arc::new(Fake {
            name,
            link: Mutex::new(true),
        })
    }

    fn stopper() -> (Stopper, Arc<devices::legacy::StopRequest>) {
        let req = Arc::new(devices::legacy::StopRequest::new().unwrap());
        (Stopper::new(req.clone()), req)
    }

    #[test]
    fn link_and_status_on_the_only_device() {
        let devs = vec![fake("net0")];
        let (s, _) = stopper();
        let a = handle_line("link down", &devs, &s);
        assert_eq!(a["ok"], true);
        assert_eq!(a["changed"], true);
        let a = handle_line("status", &devs, &s);
        assert_eq!(a["devices"][0]["link_up"], false);
        let a = handle_line("link down net0", &devs, &s);
        assert_eq!(a["changed"], false);
    }

    #[test]
    fn errors_are_answers_not_failures() {
        let devs = vec![fake("net0"), fake("net1")];
        let (s, req) = stopper();
        for (line, needle) in [
            ("link down", "several devices, name one: net0, net1"),
            ("link down net7", "no device `net7`"),
            ("link sideways", "usage: link up|down"),
            ("announce net1", "GUEST_ANNOUNCE"),
            ("", "empty request"),
            ("reboot now", "unknown request `reboot`"),
        ] {
            let a = handle_line(line, &devs, &s);
            assert_eq!(a["ok"], false, "{line}");
            assert!(a["error"].as_str().unwrap().contains(needle), "{line}: {a}");
        }
        assert_eq!(req.reason(), None);
        assert_eq!(handle_line("quit", &devs, &s)["ok"], true);
        assert_eq!(req.reason(), Some(devices::legacy::StopReason::Host));
        let none: Vec<Arc<dyn Controllable>> = vec![];
        assert!(handle_line("status x", &none, &s)["error"]
            .as_str()
            .unwrap()
            .contains("no device `x`"));
    }
}
