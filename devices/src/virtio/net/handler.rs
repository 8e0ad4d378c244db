//! [`NetEventHandler`]: the device's subscriber in the VMM's
//! `EventManager`. Registered once, it watches the device's wake-up
//! eventfd and the backend; after every activation it adds the queue
//! notification events it was given, and after a reset it removes them
//! (the device keeps them open until then, so a closed, reused fd number
//! can never be confused with a live one).

use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::state::Shared;

const TAG_WAKE: u32 = 0;
const TAG_BACKEND: u32 = 1;
const TAG_QUEUE: u32 = 0x100;

/// The event-loop side of a [`super::NetDevice`].
pub struct NetEventHandler {
    shared: Arc<Shared>,
    /// Queue events in the epoll set: (fd, queue index).
    registered: Vec<(RawFd, u16)>,
}

impl std::fmt::Debug for NetEventHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetEventHandler")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

impl NetEventHandler {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            registered: Vec::new(),
        }
    }

    /// Brings the epoll set in line with the device's current queue
    /// events, then runs what the device asked for (first pass after
    /// activation, another pass for each one that stopped at its budget).
    fn sync(&mut self, ops: &mut EventOps) {
        let wanted: Vec<(RawFd, u16)> = {
            let mut st = self.shared.lock();
            let wanted: Vec<(RawFd, u16)> = st.active.as_ref().map_or_else(Vec::new, |a| {
                a.evts.iter().map(|(i, e)| (e.as_raw_fd(), *i)).collect()
            });
            for (fd, idx) in self.registered.clone() {
                if !wanted.contains(&(fd, idx)) {
                    if let Err(e) = ops.remove(Events::empty_raw(fd)) {
                        log::warn!("{}: cannot stop watching queue {idx}: {e}", st.name);
                    }
                }
            }
            // Every stale fd left the epoll set; they may close now.
            st.retired.clear();
            wanted
        };
        self.registered.retain(|r| wanted.contains(r));
        for (fd, idx) in wanted {
            if self.registered.contains(&(fd, idx)) {
                continue;
            }
            let ev = Events::with_data_raw(fd, TAG_QUEUE + u32::from(idx), EventSet::IN);
            match ops.add(ev) {
                Ok(()) => self.registered.push((fd, idx)),
                Err(e) => log::error!("cannot watch queue {idx} (fd {fd}): {e}"),
            }
        }
        let more = self.shared.with(|st, irqs| {
            // Passes owed from the last iteration first: what kick_all
            // leaves over waits for the next one.
            st.run_more(irqs);
            st.kick_all(irqs);
            st.has_more()
        });
        // A pass that stopped at its budget asks for another turn, after
        // the other events of this iteration.
        if more {
            self.shared.wake_handler();
        }
    }

    fn queue_event(&mut self, fd: RawFd, idx: u16) {
        let more = self.shared.with(|st, irqs| {
            let current = st
                .active
                .as_ref()
                .and_then(|a| {
                    a.evts
                        .iter()
                        .find(|(i, e)| *i == idx && e.as_raw_fd() == fd)
                })
                .map(|(_, e)| {
                    // Level-triggered: consume the notification. EAGAIN
                    // only means a spurious wake-up.
                    let _ = e.read();
                });
            if current.is_none() {
                // A queue of a previous activation, not yet removed from
                // the epoll set: consume it so it does not fire again.
                if let Some(e) = st.retired.iter().find(|e| e.as_raw_fd() == fd) {
                    let _ = e.read();
                }
                return false;
            }
            // Errors are logged and turned into NEEDS_RESET inside.
            let _ = st.notified(irqs, idx);
            st.has_more()
        });
        if more {
            self.shared.wake_handler();
        }
    }
}

impl MutEventSubscriber for NetEventHandler {
    fn init(&mut self, ops: &mut EventOps) {
        let backend_fd = {
            let mut st = self.shared.lock();
            st.handler_attached = true;
            st.backend.rx_fd()
        };
        if let Err(e) = ops.add(Events::with_data(&self.shared.wake, TAG_WAKE, EventSet::IN)) {
            log::error!("cannot watch the net device's wake-up event: {e}");
        }
        if let Some(fd) = backend_fd {
            let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(fd, TAG_BACKEND, set)) {
                log::error!("cannot watch the net backend (fd {fd}): {e}");
            }
        }
        self.sync(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            TAG_WAKE => {
                // EAGAIN only means a spurious wake-up.
                let _ = self.shared.wake.read();
                self.sync(ops);
            }
            TAG_BACKEND => {
                if events
                    .event_set()
                    .intersects(EventSet::ERROR | EventSet::HANG_UP)
                {
                    log::error!(
                        "the net backend reported an error or hang-up; no longer watching it"
                    );
                    if let Err(e) = ops.remove(events) {
                        log::warn!("cannot stop watching the net backend: {e}");
                    }
                    return;
                }
                let more = self.shared.with(|st, irqs| {
                    st.backend_readable(irqs);
                    st.has_more()
                });
                if more {
                    self.shared.wake_handler();
                }
            }
            tag if tag >= TAG_QUEUE => match u16::try_from(tag - TAG_QUEUE) {
                Ok(idx) => self.queue_event(events.fd(), idx),
                Err(_) => log::warn!("unexpected event tag {tag:#x}"),
            },
            tag => log::warn!("unexpected event tag {tag:#x}"),
        }
    }
}
