//! Frames per second through the virtio-net device with the in-memory
//! backend, on one core: transmit (guest ring -> backend) and receive
//! (backend -> guest ring), 64- and 1500-byte frames, next to this machine's
//! memcpy bandwidth measured in the same run.
//!
//! The guest driver is played by this program on the same core: it
//! publishes a ring's worth of buffers, calls the device's synchronous
//! entry point (what the event loop calls on a notification), and reclaims
//! the used ring; the peer side of the in-memory backend injects or
//! discards frames. Everything counts: driver, device, backend, peer.
//!
//! Run with `cargo bench -p devices --bench net_throughput`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::event_log::EventLog;
use devices::net::memory::{MemoryBackend, MemoryPeer};
use devices::net::NetHdr;
use devices::virtio::net::features::{default_mask, mask};
use devices::virtio::net::{NetConfig, NetDevice};
use devices::virtio::{ActivateContext, VirtioDevice, VirtioInterrupt, VirtioInterruptType};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const QSIZE: u16 = 256;
const BUF_SIZE: u64 = 2048;
const RUN_FOR: Duration = Duration::from_millis(1500);

/// Ring layout of one queue at `base`: descriptors, avail, used.
#[derive(Clone, Copy)]
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    bufs: u64,
}

impl Ring {
    fn at(base: u64) -> Self {
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            bufs: base + 0x10_0000,
        }
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).unwrap();
        q.set_size(QSIZE);
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.avail))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.used))
            .unwrap();
        q.set_ready(true);
        q
    }

    /// One descriptor per ring slot, each with its own buffer.
    fn fill_descriptors(&self, mem: &GuestMemoryMmap, len: u32, flags: u16) {
        for i in 0..u64::from(QSIZE) {
            let d = self.desc + 16 * i;
            mem.write_obj(self.bufs + i * BUF_SIZE, GuestAddress(d))
                .unwrap();
            mem.write_obj(len, GuestAddress(d + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
            mem.write_obj(0u16, GuestAddress(d + 14)).unwrap();
        }
    }
}

/// The driver's side of one ring.
struct Driver<'m> {
    mem: &'m GuestMemoryMmap,
    ring: Ring,
    avail_idx: u16,
    used_seen: u16,
}

impl Driver<'_> {
    /// Makes every descriptor available again.
    fn publish_all(&mut self) {
        for k in 0..QSIZE {
            let slot = u64::from(self.avail_idx.wrapping_add(k) % QSIZE);
            self.mem
                .write_obj(k, GuestAddress(self.ring.avail + 4 + 2 * slot))
                .unwrap();
        }
        self.avail_idx = self.avail_idx.wrapping_add(QSIZE);
        self.mem
            .store(
                self.avail_idx,
                GuestAddress(self.ring.avail + 2),
                Ordering::Release,
            )
            .unwrap();
    }

    /// Reclaims the used ring and, as Linux does, asks for an interrupt
    /// at the next used buffer (`used_event`); returns how many chains
    /// came back.
    fn reclaim(&mut self) -> u16 {
        let used: u16 = self
            .mem
            .load(GuestAddress(self.ring.used + 2), Ordering::Acquire)
            .unwrap();
        let n = used.wrapping_sub(self.used_seen);
        self.used_seen = used;
        let used_event = self.ring.avail + 4 + 2 * u64::from(QSIZE);
        self.mem
            .store(used, GuestAddress(used_event), Ordering::Release)
            .unwrap();
        n
    }
}

#[derive(Default)]
struct CountingInterrupt(AtomicU64);

impl VirtioInterrupt for CountingInterrupt {
    fn trigger(&self, _kind: VirtioInterruptType) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn device(
    mem: &GuestMemoryMmap,
    rx: Ring,
    tx: Ring,
) -> (NetDevice, MemoryPeer, Arc<CountingInterrupt>) {
    let cfg = NetConfig::parse("backend=memory").unwrap();
    let (backend, peer) = MemoryBackend::pair(4096).unwrap();
    let mut dev = NetDevice::new(cfg, Box::new(backend), EventLog::disabled()).unwrap();
    // A Linux-like driver: every default feature but the control queue.
    let acked = default_mask()
        & !(mask(VIRTIO_NET_F_CTRL_VQ)
            | mask(VIRTIO_NET_F_CTRL_RX)
            | mask(VIRTIO_NET_F_CTRL_RX_EXTRA)
            | mask(VIRTIO_NET_F_CTRL_VLAN)
            | mask(VIRTIO_NET_F_GUEST_ANNOUNCE)
            | mask(VIRTIO_NET_F_CTRL_MAC_ADDR)
            | mask(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS));
    dev.set_acked_features(acked);
    let irq = Arc::new(CountingInterrupt::default());
    dev.activate(ActivateContext {
        mem: mem.clone(),
        interrupt: irq.clone(),
        queues: vec![(0, rx.queue()), (1, tx.queue())],
        queue_evts: vec![
            EventFd::new(EFD_NONBLOCK).unwrap(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        ],
    })
    .unwrap();
    (dev, peer, irq)
}

fn frame(len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
    f[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

struct Figure {
    frames: u64,
    elapsed: Duration,
    /// Time inside the device call alone (no driver, no peer).
    in_device: Duration,
    interrupts: u64,
}

impl Figure {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64()
    }

    fn device_fps(&self) -> f64 {
        self.frames as f64 / self.in_device.as_secs_f64()
    }
}

fn bench_tx(len: usize) -> Figure {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
    let (rx, tx) = (Ring::at(0), Ring::at(0x80_0000));
    let (dev, peer, irq) = device(&mem, rx, tx);
    let mut packet = NetHdr::default().to_bytes(0).to_vec();
    packet.extend_from_slice(&frame(len));
    for i in 0..u64::from(QSIZE) {
        mem.write_slice(&packet, GuestAddress(tx.bufs + i * BUF_SIZE))
            .unwrap();
    }
    tx.fill_descriptors(&mem, packet.len() as u32, 0);
    let mut driver = Driver {
        mem: &mem,
        ring: tx,
        avail_idx: 0,
        used_seen: 0,
    };
    let mut frames = 0u64;
    let mut in_device = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < RUN_FOR {
        driver.publish_all();
        let t = Instant::now();
        dev.process_queue(1).unwrap();
        in_device += t.elapsed();
        let n = driver.reclaim();
        assert_eq!(n, QSIZE, "every frame is used");
        assert_eq!(
            peer.discard_sent(),
            usize::from(QSIZE),
            "every frame is sent"
        );
        frames += u64::from(n);
    }
    let elapsed = start.elapsed();
    assert_eq!(dev.status().counters.tx_frames, frames);
    Figure {
        frames,
        elapsed,
        in_device,
        interrupts: irq.0.load(Ordering::Relaxed),
    }
}

fn bench_rx(len: usize) -> Figure {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap();
    let (rx, tx) = (Ring::at(0), Ring::at(0x80_0000));
    let (dev, peer, irq) = device(&mem, rx, tx);
    rx.fill_descriptors(&mem, BUF_SIZE as u32, VRING_DESC_F_WRITE as u16);
    let f = frame(len);
    let mut driver = Driver {
        mem: &mem,
        ring: rx,
        avail_idx: 0,
        used_seen: 0,
    };
    let mut frames = 0u64;
    let mut in_device = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < RUN_FOR {
        driver.publish_all();
        for _ in 0..QSIZE {
            assert!(peer.inject(&f));
        }
        let t = Instant::now();
        dev.process_rx().unwrap();
        in_device += t.elapsed();
        let n = driver.reclaim();
        assert_eq!(n, QSIZE, "every frame is delivered");
        frames += u64::from(n);
    }
    let elapsed = start.elapsed();
    let last: u32 = mem
        .read_obj(GuestAddress(
            rx.used + 4 + 8 * u64::from((driver.used_seen.wrapping_sub(1)) % QSIZE) + 4,
        ))
        .unwrap();
    assert_eq!(last as usize, len + 12, "header and frame in each buffer");
    assert_eq!(dev.status().counters.rx_frames, frames);
    Figure {
        frames,
        elapsed,
        in_device,
        interrupts: irq.0.load(Ordering::Relaxed),
    }
}

/// memcpy bandwidth over buffers much larger than the caches, in bytes/s.
fn memcpy_bandwidth() -> f64 {
    const SIZE: usize = 64 << 20;
    let src = vec![0x5au8; SIZE];
    let mut dst = vec![0u8; SIZE];
    dst.copy_from_slice(&src); // fault the pages in
    let rounds = 10;
    let start = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }
    (SIZE * rounds) as f64 / start.elapsed().as_secs_f64()
}

/// Keeps this thread on the CPU it runs on, so the figures are one core's.
fn pin_to_current_cpu() -> Option<i32> {
    // SAFETY: sched_getcpu has no arguments and only returns a value.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return None;
    }
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of `set`, cpu is a valid CPU number.
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: sched_setaffinity reads `set` for the calling thread (pid 0).
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    (rc == 0).then_some(cpu)
}

fn gbs(bytes_per_s: f64) -> String {
    format!("{:.2} GB/s", bytes_per_s / 1e9)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too,
    // where a short smoke run is enough.
    let smoke =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    if smoke {
        let f = bench_tx(64);
        assert!(f.frames > 0);
        println!("net_throughput: smoke run ok (pass --bench for figures)");
        return;
    }
    match pin_to_current_cpu() {
        Some(cpu) => println!("pinned to CPU {cpu}"),
        None => println!("could not pin to one CPU; figures may mix cores"),
    }
    let memcpy = memcpy_bandwidth();
    println!("memcpy bandwidth (64 MiB buffers): {}", gbs(memcpy));
    println!();
    println!(
        "{:<4} {:>6} {:>12} {:>11} {:>11} {:>9} {:>11} {:>15}",
        "dir",
        "frame",
        "frames/s",
        "payload/s",
        "guest mem/s",
        "of memcpy",
        "interrupts",
        "device alone"
    );
    for (dir, len) in [("tx", 64), ("tx", 1500), ("rx", 64), ("rx", 1500)] {
        let f = if dir == "tx" {
            bench_tx(len)
        } else {
            bench_rx(len)
        };
        let payload = f.fps() * len as f64;
        // Bytes the device moves through guest memory: header + frame.
        let moved = f.fps() * (len + 12) as f64;
        println!(
            "{:<4} {:>5}B {:>10.3} M {:>11} {:>11} {:>8.1}% {:>11} {:>10.3} M/s",
            dir,
            len,
            f.fps() / 1e6,
            gbs(payload),
            gbs(moved),
            100.0 * moved / memcpy,
            f.interrupts,
            f.device_fps() / 1e6,
        );
    }
    println!();
    println!("frames/s counts everything on this core: the driver, the device, the in-memory");
    println!("backend and its peer; 'device alone' is the time inside the device call only.");
    println!("goal: at least 1 M frames/s of 64 bytes each way");
}
