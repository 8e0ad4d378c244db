//! The 16550 UART at 0x3f8 (vm-superio), with its interrupt on an eventfd
//! the VMM binds to IRQ 4 through an irqfd, and its output to any writer.

use std::io::{self, Write};

use vm_superio::serial::NoEvents;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;

/// vm-superio's interrupt trigger, backed by an eventfd.
#[derive(Debug)]
pub struct EventFdTrigger(EventFd);

impl EventFdTrigger {
    /// Wraps `evt`.
    pub fn new(evt: EventFd) -> Self {
        Self(evt)
    }

    /// The underlying eventfd (to register as an irqfd).
    pub fn eventfd(&self) -> &EventFd {
        &self.0
    }
}

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where guest serial output goes: a writer that is flushed after every
/// guest write, so nothing is lost when the VMM stops.
pub type SerialOutput = Box<dyn Write + Send>;

/// The serial port as a bus device.
pub struct Serial {
    inner: vm_superio::Serial<EventFdTrigger, NoEvents, SerialOutput>,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serial")
    }
}

impl Serial {
    /// A UART that raises `interrupt` and writes to `out`.
    pub fn new(interrupt: EventFd, out: SerialOutput) -> Self {
        Self {
            inner: vm_superio::Serial::new(EventFdTrigger(interrupt), out),
        }
    }

    /// Queues bytes for the guest to read (console input). Returns how many
    /// fit into the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner
            .enqueue_raw_bytes(bytes)
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }

    /// Free room in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.inner.fifo_capacity()
    }

    /// Flushes the output writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.writer_mut().flush()
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(offset), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.inner.read(offset);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if let Err(e) = self.inner.write(offset, value) {
            log::warn!("serial write at offset {offset}: {e:?}");
        }
        // vm-superio writes through to `out` byte by byte; flush so that a
        // crash or a kill loses nothing the guest already printed.
        if offset == 0 {
            if let Err(e) = self.inner.writer_mut().flush() {
                log::warn!("cannot flush serial output: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_and_input() {
        let out = Shared::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut serial = Serial::new(irq.try_clone().unwrap(), Box::new(out.clone()));
        for b in b"hi" {
            serial.write(0x3f8, 0, &[*b]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi");

        // Enable the "data available" interrupt, then feed input.
        serial.write(0x3f8, 1, &[0x01]);
        assert_eq!(serial.enqueue_input(b"x").unwrap(), 1);
        assert!(irq.read().unwrap() >= 1);
        let mut data = [0u8; 1];
        serial.read(0x3f8, 0, &mut data);
        assert_eq!(data[0], b'x');
    }
}
