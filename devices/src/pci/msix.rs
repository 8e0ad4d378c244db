//! MSI-X: the vector table and pending-bit array a driver programs through a
//! BAR, the capability that points to them, and delivery of a vector's
//! message through the VMM ([`MsiSender`], e.g. `KVM_SIGNAL_MSI`).

use crate::ratelimit::{limited, RateLimiter};
use std::sync::Arc;

use super::regs::CAP_ID_MSIX;

/// Bytes per MSI-X table entry.
pub const MSIX_TABLE_ENTRY_SIZE: u64 = 16;
/// The most vectors an MSI-X table may have.
pub const MSIX_MAX_VECTORS: u16 = 2048;
/// Message control: MSI-X enable.
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: mask all vectors of the function.
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: the vector is masked.
const VECTOR_CONTROL_MASKED: u32 = 1;

/// Delivers an MSI message (address, data) to the guest; the VMM implements
/// it, on KVM with `KVM_SIGNAL_MSI`.
pub trait MsiSender: Send + Sync {
    /// Sends the message `data` to `address`.
    fn send(&self, address: u64, data: u32) -> std::io::Result<()>;
}

/// The body of an MSI-X capability (after ID and next pointer) and its
/// writable mask: `num_vectors` entries in BAR `table_bar` at
/// `table_offset`, pending bits in BAR `pba_bar` at `pba_offset` (offsets
/// 8-byte aligned). Only the enable and function-mask bits are writable.
pub fn msix_capability(
    num_vectors: u16,
    table_bar: u8,
    table_offset: u32,
    pba_bar: u8,
    pba_offset: u32,
) -> (u8, [u8; 10], [u8; 10]) {
    let control = num_vectors.saturating_sub(1) & 0x7ff;
    let mut body = [0u8; 10];
    body[0..2].copy_from_slice(&control.to_le_bytes());
    body[2..6].copy_from_slice(&((table_offset & !7) | u32::from(table_bar & 7)).to_le_bytes());
    body[6..10].copy_from_slice(&((pba_offset & !7) | u32::from(pba_bar & 7)).to_le_bytes());
    let mut writable = [0u8; 10];
    writable[0..2]
        .copy_from_slice(&(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK).to_le_bytes());
    (CAP_ID_MSIX, body, writable)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Default for Entry {
    fn default() -> Self {
        // Vectors come out of reset masked (PCI 3.0 section 6.8.2.9).
        Self {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            control: VECTOR_CONTROL_MASKED,
        }
    }
}

impl Entry {
    fn masked(&self) -> bool {
        self.control & VECTOR_CONTROL_MASKED != 0
    }

    fn address(&self) -> u64 {
        (u64::from(self.addr_hi) << 32) | u64::from(self.addr_lo)
    }

    fn dword(&self, i: usize) -> u32 {
        [self.addr_lo, self.addr_hi, self.data, self.control][i]
    }

    fn set_dword(&mut self, i: usize, v: u32) {
        match i {
            0 => self.addr_lo = v & !3, // dword aligned
            1 => self.addr_hi = v,
            2 => self.data = v,
            _ => self.control = v & VECTOR_CONTROL_MASKED,
        }
    }
}

/// The MSI-X state of one function: table, pending bits, and the enable
/// and function-mask bits of the capability's message control.
pub struct Msix {
    label: String,
    entries: Vec<Entry>,
    pending: Vec<bool>,
    enabled: bool,
    function_masked: bool,
    sender: Arc<dyn MsiSender>,
    limiter: RateLimiter,
}

impl std::fmt::Debug for Msix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msix")
            .field("vectors", &self.entries.len())
            .field("enabled", &self.enabled)
            .field("function_masked", &self.function_masked)
            .finish_non_exhaustive()
    }
}

impl Msix {
    /// `num_vectors` masked vectors (clamped to 1..=2048), MSI-X disabled;
    /// messages go out through `sender`. `label` names the function in logs.
    pub fn new(label: String, num_vectors: u16, sender: Arc<dyn MsiSender>) -> Self {
        let n = usize::from(num_vectors.clamp(1, MSIX_MAX_VECTORS));
        Self {
            limiter: RateLimiter::new(label.clone()),
            label,
            entries: vec![Entry::default(); n],
            pending: vec![false; n],
            enabled: false,
            function_masked: false,
            sender,
        }
    }

    /// The number of vectors in the table.
    pub fn num_vectors(&self) -> u16 {
        // At most MSIX_MAX_VECTORS, see `new`.
        self.entries.len() as u16
    }

    /// Whether the driver enabled MSI-X (then INTx is off).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether vector `v` is pending (its PBA bit).
    pub fn pending(&self, v: u16) -> bool {
        self.pending.get(usize::from(v)).copied().unwrap_or(false)
    }

    /// The driver wrote the capability's message control word: takes the
    /// enable and function-mask bits and delivers what unmasking released.
    pub fn set_control(&mut self, control: u16) {
        let enabled = control & MSIX_CONTROL_ENABLE != 0;
        let masked = control & MSIX_CONTROL_FUNCTION_MASK != 0;
        if enabled != self.enabled || masked != self.function_masked {
            log::info!(
                "{}: MSI-X {}, function {}",
                self.label,
                if enabled { "enabled" } else { "disabled" },
                if masked { "masked" } else { "unmasked" }
            );
        }
        self.enabled = enabled;
        self.function_masked = masked;
        self.deliver_pending();
    }

    /// Forgets every pending vector (device reset).
    pub fn clear_pending(&mut self) {
        self.pending.fill(false);
    }

    /// Raises vector `v`: sends its message, or sets its pending bit while
    /// it or the function is masked.
    pub fn trigger(&mut self, v: u16) -> std::io::Result<()> {
        let i = usize::from(v);
        let Some(entry) = self.entries.get(i).copied() else {
            limited!(
                self.limiter,
                "interrupt_dropped",
                log::Level::Warn,
                "{}: interrupt on MSI-X vector {v}, but the table has {} entries; dropped",
                self.label,
                self.entries.len()
            );
            return Ok(());
        };
        if !self.enabled {
            limited!(
                self.limiter,
                "interrupt_dropped",
                log::Level::Warn,
                "{}: interrupt on MSI-X vector {v} while MSI-X is disabled; dropped",
                self.label
            );
            return Ok(());
        }
        if self.function_masked || entry.masked() {
            self.pending[i] = true;
            return Ok(());
        }
        self.send(v, &entry)
    }

    fn send(&self, v: u16, entry: &Entry) -> std::io::Result<()> {
        log::trace!(
            "{}: MSI-X vector {v}: address {:#x} data {:#x}",
            self.label,
            entry.address(),
            entry.data
        );
        self.sender.send(entry.address(), entry.data)
    }

    fn deliver_pending(&mut self) {
        if !self.enabled || self.function_masked {
            return;
        }
        for i in 0..self.entries.len() {
            if self.pending[i] && !self.entries[i].masked() {
                self.pending[i] = false;
                // The index fits: the table has at most 2048 entries.
                if let Err(e) = self.send(i as u16, &self.entries[i]) {
                    limited!(
                        self.limiter,
                        "msi_send_failed",
                        log::Level::Error,
                        "{}: cannot send MSI-X vector {i}: {e}",
                        self.label
                    );
                }
            }
        }
    }

    // Splits an access into (entry, first dword, dword count); the table
    // is accessed in aligned dwords or qwords.
    fn table_access(&self, offset: u64, len: usize) -> Option<(usize, usize, usize)> {
        let aligned = matches!(len, 4 | 8) && offset % len as u64 == 0;
        let entry = usize::try_from(offset / MSIX_TABLE_ENTRY_SIZE).ok()?;
        if !aligned || entry >= self.entries.len() {
            limited!(
                self.limiter,
                "bad_access",
                log::Level::Warn,
                "{}: {len}-byte MSI-X table access at {offset:#x} ignored (aligned dwords or qwords inside {} entries only)",
                self.label,
                self.entries.len()
            );
            return None;
        }
        Some((
            entry,
            (offset % MSIX_TABLE_ENTRY_SIZE / 4) as usize,
            len / 4,
        ))
    }

    /// The driver reads the table at `offset`.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some((entry, first, count)) = self.table_access(offset, data.len()) {
            for k in 0..count {
                let v = self.entries[entry].dword(first + k);
                data[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// The driver writes the table at `offset`; unmasking a vector with its
    /// pending bit set delivers it.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let Some((entry, first, count)) = self.table_access(offset, data.len()) else {
            return;
        };
        for k in 0..count {
            let mut v = [0u8; 4];
            v.copy_from_slice(&data[4 * k..4 * k + 4]);
            self.entries[entry].set_dword(first + k, u32::from_le_bytes(v));
        }
        self.deliver_pending();
    }

    /// The driver reads the pending-bit array at `offset` (read-only).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let byte = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok());
            *b = byte
                .and_then(|byte| self.pending.chunks(8).nth(byte))
                .map_or(0, |bits| {
                    bits.iter()
                        .enumerate()
                        .fold(0u8, |acc, (k, &p)| acc | (u8::from(p) << k))
                });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every message sent.
    #[derive(Default)]
    pub struct RecordingSender(pub Mutex<Vec<(u64, u32)>>);

    impl MsiSender for RecordingSender {
        fn send(&self, address: u64, data: u32) -> std::io::Result<()> {
            self.0.lock().unwrap().push((address, data));
            Ok(())
        }
    }

    impl RecordingSender {
        /// Takes the messages sent so far.
        pub fn take(&self) -> Vec<(u64, u32)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn program(m: &mut Msix, v: u64, addr: u64, data: u32, masked: bool) {
        let base = v * MSIX_TABLE_ENTRY_SIZE;
        m.write_table(base, &addr.to_le_bytes());
        m.write_table(base + 8, &data.to_le_bytes());
        m.write_table(base + 12, &u32::from(masked).to_le_bytes());
    }

    fn pba(m: &Msix) -> u64 {
        let mut d = [0u8; 8];
        m.read_pba(0, &mut d);
        u64::from_le_bytes(d)
    }

    #[test]
    fn capability_layout() {
        let (id, body, writable) = msix_capability(3, 0, 0x4000, 0, 0x5000);
        assert_eq!(id, 0x11);
        assert_eq!(body, [2, 0, 0, 0x40, 0, 0, 0, 0x50, 0, 0]);
        assert_eq!(writable[..2], [0, 0xc0]);
    }

    #[test]
    fn table_programming_and_delivery() {
        let sender = Arc::new(RecordingSender::default());
        let mut m = Msix::new("t".into(), 4, sender.clone());
        // Entries start masked.
        let mut d = [0u8; 4];
        m.read_table(12, &mut d);
        assert_eq!(u32::from_le_bytes(d), 1);
        program(&mut m, 1, 0xfee0_1000, 0x4041, false);
        let mut q = [0u8; 8];
        m.read_table(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_1000);
        m.read_table(24, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x4041);

        // Disabled: dropped.
        m.trigger(1).unwrap();
        assert!(sender.take().is_empty());
        m.set_control(MSIX_CONTROL_ENABLE);
        m.trigger(1).unwrap();
        assert_eq!(sender.take(), vec![(0xfee0_1000, 0x4041)]);
        // Out of range vectors are dropped.
        m.trigger(9).unwrap();
        assert!(sender.take().is_empty());
    }

    #[test]
    fn masking_sets_pending_and_unmasking_delivers() {
        let sender = Arc::new(RecordingSender::default());
        let mut m = Msix::new("t".into(), 4, sender.clone());
        m.set_control(MSIX_CONTROL_ENABLE);
        program(&mut m, 2, 0xfee0_0000, 0x30, true);
        m.trigger(2).unwrap();
        assert!(sender.take().is_empty());
        assert!(m.pending(2));
        assert_eq!(pba(&m), 0b100);
        // Unmask the vector: delivered once, pending cleared.
        m.write_table(2 * 16 + 12, &0u32.to_le_bytes());
        assert_eq!(sender.take(), vec![(0xfee0_0000, 0x30)]);
        assert_eq!(pba(&m), 0);

        // Function mask.
        m.set_control(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
        m.trigger(2).unwrap();
        assert!(sender.take().is_empty());
        assert!(m.pending(2));
        m.set_control(MSIX_CONTROL_ENABLE);
        assert_eq!(sender.take(), vec![(0xfee0_0000, 0x30)]);

        // clear_pending drops what was pending.
        m.set_control(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK);
        m.trigger(2).unwrap();
        m.clear_pending();
        m.set_control(MSIX_CONTROL_ENABLE);
        assert!(sender.take().is_empty());
    }

    #[test]
    fn bad_table_accesses_are_ignored() {
        let sender = Arc::new(RecordingSender::default());
        let mut m = Msix::new("t".into(), 2, sender);
        let before = m.entries.clone();
        m.write_table(2, &[1, 2, 3, 4]);
        m.write_table(0, &[1, 2]);
        m.write_table(32, &[1, 2, 3, 4]);
        m.write_table(u64::MAX - 3, &[1, 2, 3, 4]);
        assert_eq!(m.entries, before);
        let mut d = [0xffu8; 2];
        m.read_table(0, &mut d);
        assert_eq!(d, [0, 0]);
        let mut big = [0xffu8; 8];
        m.read_pba(u64::MAX / 8, &mut big);
        assert_eq!(big, [0; 8]);
    }
}
