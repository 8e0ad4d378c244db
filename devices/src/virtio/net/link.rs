//! Runtime link control: the user's cable (`set_link`) and the request
//! that the guest announce itself (`announce`), with the rules for when the
//! guest can be told (VIRTIO_NET_F_STATUS, GUEST_ANNOUNCE).

use serde_json::json;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_STATUS};

use super::config_space;
use super::features::has;
use super::state::{Irqs, NetState};

/// Why a runtime link or announce request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// STATUS is not offered: there is no status field.
    #[error("the device does not offer VIRTIO_NET_F_STATUS, the guest cannot be told about link changes")]
    StatusNotOffered,
    /// GUEST_ANNOUNCE is not offered.
    #[error("the device does not offer VIRTIO_NET_F_GUEST_ANNOUNCE, the guest cannot be asked to announce itself")]
    AnnounceNotOffered,
    /// GUEST_ANNOUNCE without STATUS: the ANNOUNCE bit has nowhere to go.
    #[error("the device does not offer VIRTIO_NET_F_STATUS, so the ANNOUNCE bit cannot be shown to the guest")]
    AnnounceWithoutStatus,
    /// No driver runs the device.
    #[error("the driver has not set DRIVER_OK, so there is no driver to announce")]
    NotActive,
    /// The driver did not negotiate the feature and would ignore the request.
    #[error("the driver did not negotiate VIRTIO_NET_F_{0}, so it would ignore the request")]
    NotNegotiated(&'static str),
}

/// What a successful `set_link` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChange {
    /// The status field changed and one configuration interrupt was raised.
    Notified,
    /// The link already was in that state: nothing changed, no interrupt.
    Unchanged,
    /// The status field changed; no driver runs yet, it reads the field
    /// when it starts.
    NotStarted,
    /// The status field changed; the driver did not negotiate STATUS, so
    /// it was not interrupted.
    NotNegotiated,
}

impl NetState {
    pub(crate) fn set_link(&mut self, irqs: &mut Irqs, up: bool) -> Result<LinkChange, LinkError> {
        if !has(self.offered, VIRTIO_NET_F_STATUS) {
            self.event(
                log::Level::Warn,
                "link_change_refused",
                json!({ "up": up, "why": LinkError::StatusNotOffered.to_string() }),
            );
            return Err(LinkError::StatusNotOffered);
        }
        if self.fields.link_up == up {
            return Ok(LinkChange::Unchanged);
        }
        self.fields.link_up = up;
        self.generation = self.generation.wrapping_add(1);
        let outcome = match &self.active {
            None => LinkChange::NotStarted,
            Some(_) if !has(self.acked, VIRTIO_NET_F_STATUS) => LinkChange::NotNegotiated,
            Some(_) => LinkChange::Notified,
        };
        self.event(
            log::Level::Info,
            "link_change",
            json!({
                "up": up,
                "outcome": outcome,
                "config_status": config_space::status_word(&self.fields),
                "generation": self.generation,
            }),
        );
        if outcome == LinkChange::Notified {
            self.raise_config(irqs, "link_change");
        }
        Ok(outcome)
    }

    pub(crate) fn announce(&mut self, irqs: &mut Irqs) -> Result<(), LinkError> {
        let refused = if !has(self.offered, VIRTIO_NET_F_GUEST_ANNOUNCE) {
            Some(LinkError::AnnounceNotOffered)
        } else if !has(self.offered, VIRTIO_NET_F_STATUS) {
            Some(LinkError::AnnounceWithoutStatus)
        } else if self.active.is_none() {
            Some(LinkError::NotActive)
        } else if !has(self.acked, VIRTIO_NET_F_GUEST_ANNOUNCE) {
            Some(LinkError::NotNegotiated("GUEST_ANNOUNCE"))
        } else if !has(self.acked, VIRTIO_NET_F_STATUS) {
            Some(LinkError::NotNegotiated("STATUS"))
        } else {
            None
        };
        if let Some(e) = refused {
            self.event(
                log::Level::Warn,
                "announce_refused",
                json!({ "why": e.to_string() }),
            );
            return Err(e);
        }
        self.fields.announce = true;
        self.generation = self.generation.wrapping_add(1);
        self.event(
            log::Level::Info,
            "announce",
            json!({ "config_status": config_space::status_word(&self.fields) }),
        );
        self.raise_config(irqs, "announce");
        Ok(())
    }
}
