//! The virtio-net device as seen by the control socket.

use devices::virtio::net::{LinkChange, NetControl};
use serde_json::{json, Value};

use super::protocol::Controllable;

impl Controllable for NetControl {
    fn name(&self) -> String {
        NetControl::name(self)
    }

    fn set_link(&self, up: bool) -> Result<Value, String> {
        let change = NetControl::set_link(self, up).map_err(|e| e.to_string())?;
        Ok(json!({
            "device": NetControl::name(self),
            "link_up": up,
            "changed": change != LinkChange::Unchanged,
            "guest_notified": change == LinkChange::Notified,
            "outcome": format!("{change:?}"),
        }))
    }

    fn announce(&self) -> Result<Value, String> {
        NetControl::announce(self).map_err(|e| e.to_string())?;
        Ok(json!({"device": NetControl::name(self), "announced": true}))
    }

    fn status(&self) -> Value {
        serde_json::to_value(NetControl::status(self))
            .unwrap_or_else(|e| json!({"id": NetControl::name(self), "error": e.to_string()}))
    }
}
