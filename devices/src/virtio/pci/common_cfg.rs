//! The `virtio_pci_common_cfg` register block: feature windows, MSI-X
//! vector mapping, device status and queue set-up, mapped onto the shared
//! transport state.

use super::interrupt::VirtioPciInterrupt;
use super::layout::{common::*, COMMON_CFG_SIZE, VIRTIO_MSI_NO_VECTOR};
use crate::ratelimit::limited;
use crate::virtio::transport::{AddrPart, RingArea, StatusWrite, TransportState};

/// The registers as the driver would read them now.
fn image(state: &TransportState, irq: &VirtioPciInterrupt) -> [u8; COMMON_CFG_SIZE as usize] {
    let mut img = [0u8; COMMON_CFG_SIZE as usize];
    let mut put = |offset: u64, bytes: &[u8]| {
        let o = offset as usize;
        img[o..o + bytes.len()].copy_from_slice(bytes);
    };
    put(DFSELECT, &state.device_features_select().to_le_bytes());
    put(DF, &state.device_features().to_le_bytes());
    put(GFSELECT, &state.driver_features_select().to_le_bytes());
    put(GF, &state.driver_features_page().to_le_bytes());
    put(MSIX, &irq.config_vector().to_le_bytes());
    // At most MAX_QUEUES (1024) queues.
    put(NUMQ, &(state.num_queues() as u16).to_le_bytes());
    put(STATUS, &[state.status()]);
    // The 8-bit field shows the low byte of the device's generation.
    put(CFGGENERATION, &[state.config_generation() as u8]);
    let sel = state.queue_select();
    put(Q_SELECT, &(sel as u16).to_le_bytes());
    if let Some(q) = state.selected_queue() {
        put(Q_SIZE, &q.size().to_le_bytes());
        put(Q_MSIX, &irq.queue_vector(sel as usize).to_le_bytes());
        put(Q_ENABLE, &u16::from(q.ready()).to_le_bytes());
        // Queue n notifies at n * multiplier.
        put(Q_NOFF, &(sel as u16).to_le_bytes());
        put(Q_DESCLO, &q.addr(RingArea::Desc).to_le_bytes());
        put(Q_AVAILLO, &q.addr(RingArea::Avail).to_le_bytes());
        put(Q_USEDLO, &q.addr(RingArea::Used).to_le_bytes());
    } else {
        // queue_size 0 tells the driver the queue is unavailable.
        put(Q_MSIX, &VIRTIO_MSI_NO_VECTOR.to_le_bytes());
    }
    img
}

/// The driver reads `data.len()` bytes at `offset`; any width is served
/// from the current register values (nothing here has read side effects).
pub fn read(state: &TransportState, irq: &VirtioPciInterrupt, offset: u64, data: &mut [u8]) {
    let img = image(state, irq);
    for (i, b) in data.iter_mut().enumerate() {
        *b = offset
            .checked_add(i as u64)
            .and_then(|o| img.get(usize::try_from(o).ok()?))
            .copied()
            .unwrap_or(0);
    }
}

/// The driver writes `data` at `offset`. Fields are written with their
/// natural width (64-bit addresses also as two 32-bit halves); other
/// writes are logged and ignored.
pub fn write(state: &mut TransportState, irq: &VirtioPciInterrupt, offset: u64, data: &[u8]) {
    let mut buf = [0u8; 8];
    let Some(dst) = buf.get_mut(..data.len()) else {
        limited!(
            state.limiter(),
            "bad_access",
            log::Level::Warn,
            "{}: {}-byte common configuration write at {offset:#x}; ignored",
            state.label(),
            data.len()
        );
        return;
    };
    dst.copy_from_slice(data);
    let v = u64::from_le_bytes(buf);
    let sel = state.queue_select() as usize;
    use AddrPart::{Full, High, Low};
    use RingArea::{Avail, Desc, Used};
    match (offset, data.len()) {
        (DFSELECT, 4) => state.set_device_features_select(v as u32),
        (GFSELECT, 4) => state.set_driver_features_select(v as u32),
        (GF, 4) => state.write_driver_features(v as u32),
        (MSIX, 2) => irq.set_config_vector(v as u16),
        (STATUS, 1) => {
            if state.write_status(v as u8) == StatusWrite::Reset {
                irq.reset();
            }
        }
        (Q_SELECT, 2) => state.set_queue_select(u32::from(v as u16)),
        (Q_SIZE, 2) => state.write_queue_size(u32::from(v as u16)),
        (Q_MSIX, 2) => {
            if state.selected_queue().is_some() {
                irq.set_queue_vector(sel, v as u16);
            } else {
                limited!(
                    state.limiter(),
                    "bad_register",
                    log::Level::Warn,
                    "{}: MSI-X vector written for queue {sel}, which does not exist; ignored",
                    state.label()
                );
            }
        }
        (Q_ENABLE, 2) => {
            if v == 1 {
                state.write_queue_ready(true);
            } else {
                // virtio 1.2 section 4.1.4.3.2: the driver MUST NOT write
                // 0 to queue_enable.
                limited!(
                    state.limiter(),
                    "bad_register",
                    log::Level::Warn,
                    "{}: queue_enable {v} written for queue {sel}; only 1 is allowed, ignored",
                    state.label()
                );
            }
        }
        (Q_DESCLO, 8) => state.write_queue_addr(Desc, Full, v),
        (Q_DESCLO, 4) => state.write_queue_addr(Desc, Low, v),
        (Q_DESCHI, 4) => state.write_queue_addr(Desc, High, v),
        (Q_AVAILLO, 8) => state.write_queue_addr(Avail, Full, v),
        (Q_AVAILLO, 4) => state.write_queue_addr(Avail, Low, v),
        (Q_AVAILHI, 4) => state.write_queue_addr(Avail, High, v),
        (Q_USEDLO, 8) => state.write_queue_addr(Used, Full, v),
        (Q_USEDLO, 4) => state.write_queue_addr(Used, Low, v),
        (Q_USEDHI, 4) => state.write_queue_addr(Used, High, v),
        (DF | NUMQ | CFGGENERATION | Q_NOFF, _) => limited!(
            state.limiter(),
            "bad_register",
            log::Level::Warn,
            "{}: write to read-only common configuration field {offset:#x}; ignored",
            state.label()
        ),
        _ => {
            limited!(
                state.limiter(),
                "bad_access",
                log::Level::Warn,
                "{}: {}-byte common configuration write at {offset:#x} does not match a field; ignored",
                state.label(),
                data.len()
            )
        }
    }
}
