//! Register tests of the virtio-mmio transport against a dummy device.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

use super::*;
use crate::virtio::transport::status::*;
use crate::virtio::transport::testing::{guest_memory, ring_addrs, Dummy, DUMMY_TYPE};
use crate::virtio::VirtioInterruptType;

const BASE: u64 = 0xd000_0000;
const OFFERED: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX) | (1 << 5) | (1 << 16);

fn setup(max_sizes: &[u16]) -> (MmioTransport, Arc<Mutex<Dummy>>) {
    let dummy = Dummy::new(OFFERED, max_sizes);
    let t = MmioTransport::new("test", dummy.clone(), guest_memory()).unwrap();
    (t, dummy)
}

fn r(t: &mut MmioTransport, offset: u32) -> u32 {
    let mut data = [0xffu8; 4];
    t.read(BASE, u64::from(offset), &mut data);
    u32::from_le_bytes(data)
}

fn w(t: &mut MmioTransport, offset: u32, v: u32) {
    t.write(BASE, u64::from(offset), &v.to_le_bytes());
}

fn set_status(t: &mut MmioTransport, s: u8) {
    w(t, VIRTIO_MMIO_STATUS, u32::from(s));
}

fn ack_features(t: &mut MmioTransport, features: u64) {
    w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES, features as u32);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w(t, VIRTIO_MMIO_DRIVER_FEATURES, (features >> 32) as u32);
}

fn negotiate(t: &mut MmioTransport, features: u64) {
    set_status(t, ACKNOWLEDGE);
    set_status(t, ACKNOWLEDGE | DRIVER);
    ack_features(t, features);
    set_status(t, ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

fn setup_queue(t: &mut MmioTransport, i: u16, size: u32) {
    let (desc, avail, used) = ring_addrs(i);
    w(t, VIRTIO_MMIO_QUEUE_SEL, u32::from(i));
    w(t, VIRTIO_MMIO_QUEUE_NUM, size);
    w(t, VIRTIO_MMIO_QUEUE_DESC_LOW, desc as u32);
    w(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, (desc >> 32) as u32);
    w(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail as u32);
    w(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
    w(t, VIRTIO_MMIO_QUEUE_USED_LOW, used as u32);
    w(t, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
    w(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

const ALL_OK: u8 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;

#[test]
fn identification_registers() {
    let (mut t, _) = setup(&[16, 16]);
    assert_eq!(r(&mut t, VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r(&mut t, VIRTIO_MMIO_VERSION), 2);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_ID), DUMMY_TYPE);
    assert_eq!(r(&mut t, VIRTIO_MMIO_VENDOR_ID), MMIO_VENDOR_ID);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_CONFIG_GENERATION), 0);
    // No shared memory regions.
    assert_eq!(r(&mut t, VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
    assert_eq!(r(&mut t, VIRTIO_MMIO_SHM_LEN_HIGH), u32::MAX);
}

#[test]
fn feature_windows() {
    let (mut t, _) = setup(&[16]);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), OFFERED as u32);
    w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES),
        (OFFERED >> 32) as u32
    );
    w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES), 0);
}

#[test]
fn queue_registers() {
    let (mut t, _) = setup(&[256, 64]);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 64);
    // An absent queue has a maximum size of 0.
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 2);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);

    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
    w(&mut t, VIRTIO_MMIO_QUEUE_NUM, 32);
    w(&mut t, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0x12);
    w(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x3400);
    w(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM), 32);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 1);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW), 0x3400);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_DESC_HIGH), 0x12);
    w(&mut t, VIRTIO_MMIO_QUEUE_READY, 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
    // Writes to an absent queue go nowhere.
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 9);
    w(&mut t, VIRTIO_MMIO_QUEUE_READY, 1);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
}

#[test]
fn config_space_goes_to_the_device() {
    let (mut t, dummy) = setup(&[16]);
    let mut data = [0u8; 6];
    t.read(BASE, 0x100 + 2, &mut data);
    assert_eq!(data, [0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7]);
    let mut byte = [0u8; 1];
    t.read(BASE, 0x100, &mut byte);
    assert_eq!(byte, [0xa0]);
    t.write(BASE, 0x108, &[1, 2]);
    assert_eq!(dummy.lock().unwrap().config_writes, vec![(8, vec![1, 2])]);
    dummy.lock().unwrap().generation = 7;
    assert_eq!(r(&mut t, VIRTIO_MMIO_CONFIG_GENERATION), 7);
}

#[test]
fn odd_accesses_do_not_panic_or_change_state() {
    let (mut t, _) = setup(&[16]);
    let mut two = [0xffu8; 2];
    t.read(BASE, 0, &mut two);
    assert_eq!(two, [0, 0]);
    t.write(BASE, u64::from(VIRTIO_MMIO_STATUS), &[1]);
    t.write(BASE, u64::from(VIRTIO_MMIO_STATUS) + 1, &1u32.to_le_bytes());
    t.write(BASE, u64::from(VIRTIO_MMIO_STATUS), &[1; 8]);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    // Unknown, read-only and legacy registers.
    for offset in (0..0x100).step_by(4) {
        r(&mut t, offset);
    }
    for offset in [0x0, 0x8, 0x28, 0x3c, 0x40, 0x60, 0xc0, 0xfc] {
        w(&mut t, offset, 0xffff_ffff);
    }
    assert_eq!(r(&mut t, VIRTIO_MMIO_MAGIC_VALUE), MMIO_MAGIC);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    // A status that does not fit a byte.
    w(&mut t, VIRTIO_MMIO_STATUS, 0x101);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
}

#[test]
fn features_ok_refused_for_unoffered_bit() {
    let (mut t, dummy) = setup(&[16]);
    set_status(&mut t, ACKNOWLEDGE);
    set_status(&mut t, ACKNOWLEDGE | DRIVER);
    // Bit 6 is not offered.
    ack_features(&mut t, (1 << VIRTIO_F_VERSION_1) | (1 << 6));
    set_status(&mut t, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER)
    );
    assert_eq!(dummy.lock().unwrap().acked, None);
    assert_eq!(
        dummy.lock().unwrap().refused,
        vec![(1 << VIRTIO_F_VERSION_1) | (1 << 6)],
        "the device is told"
    );
    // DRIVER_OK cannot follow.
    set_status(&mut t, ALL_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER)
    );
    assert!(dummy.lock().unwrap().activations.is_empty());
    // The driver may correct its features and try again.
    ack_features(&mut t, 1 << VIRTIO_F_VERSION_1);
    set_status(&mut t, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER | FEATURES_OK)
    );
    assert_eq!(dummy.lock().unwrap().acked, Some(1 << VIRTIO_F_VERSION_1));
    // Refused twice: the ALL_OK write asked for FEATURES_OK again.
    assert_eq!(dummy.lock().unwrap().refused.len(), 2);
}

#[test]
fn features_ok_accepted_and_frozen() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, OFFERED);
    assert_eq!(dummy.lock().unwrap().acked, Some(OFFERED));
    // After FEATURES_OK the driver cannot change its features.
    ack_features(&mut t, 0);
    w(&mut t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DRIVER_FEATURES), OFFERED as u32);
    // Every transition was reported to the device.
    assert_eq!(
        dummy.lock().unwrap().transitions,
        vec![
            (0, ACKNOWLEDGE),
            (ACKNOWLEDGE, ACKNOWLEDGE | DRIVER),
            (ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | FEATURES_OK),
        ]
    );
}

#[test]
fn status_bits_follow_the_spec_order() {
    let (mut t, _) = setup(&[16]);
    // DRIVER without ACKNOWLEDGE, FEATURES_OK without DRIVER.
    set_status(&mut t, DRIVER);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    set_status(&mut t, ACKNOWLEDGE | FEATURES_OK);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    set_status(&mut t, ACKNOWLEDGE | DRIVER);
    // Clearing a bit without a reset is refused.
    set_status(&mut t, ACKNOWLEDGE);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER)
    );
    // FAILED sticks until a reset.
    set_status(&mut t, ACKNOWLEDGE | DRIVER | FAILED);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER | FAILED)
    );
    set_status(&mut t, ACKNOWLEDGE | DRIVER | FAILED | FEATURES_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ACKNOWLEDGE | DRIVER | FAILED)
    );
    set_status(&mut t, 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
}

#[test]
fn driver_ok_activates_with_the_ready_queues() {
    let (mut t, dummy) = setup(&[16, 16, 16]);
    negotiate(
        &mut t,
        (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_EVENT_IDX),
    );
    setup_queue(&mut t, 0, 16);
    setup_queue(&mut t, 2, 8);
    set_status(&mut t, ALL_OK);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), u32::from(ALL_OK));
    let d = dummy.lock().unwrap();
    assert_eq!(d.activations.len(), 1);
    let (d0, a0, u0) = ring_addrs(0);
    let (d2, a2, u2) = ring_addrs(2);
    assert_eq!(
        d.activations[0].queues,
        vec![(0, 16, d0, a0, u0, true), (2, 8, d2, a2, u2, true)]
    );
    assert_eq!(d.activations[0].evts, 2);
    drop(d);
    // Writing DRIVER_OK again does not activate twice; queue registers
    // are frozen now.
    set_status(&mut t, ALL_OK);
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 0);
    w(&mut t, VIRTIO_MMIO_QUEUE_NUM, 4);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM), 16);
    assert_eq!(dummy.lock().unwrap().activations.len(), 1);
}

#[test]
fn notify_writes_the_queue_eventfd_after_driver_ok_only() {
    let (mut t, dummy) = setup(&[16, 16]);
    let notifiers = t.notifiers(BASE).unwrap();
    assert_eq!(notifiers.len(), 2);
    assert_eq!(notifiers[1].addr, BASE + 0x50);
    assert_eq!(notifiers[1].datamatch, Some(1));
    // Before DRIVER_OK: ignored.
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(notifiers[0].evt.read().is_err());
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    setup_queue(&mut t, 0, 16);
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(notifiers[0].evt.read().is_err());
    set_status(&mut t, ALL_OK);
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert_eq!(notifiers[0].evt.read().unwrap(), 1);
    // The device's own clone sees the same counter.
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    let ctx_evt = dummy.lock().unwrap().ctx.as_ref().unwrap().queue_evts[0]
        .try_clone()
        .unwrap();
    assert_eq!(ctx_evt.read().unwrap(), 1);
    // Queue 1 was not enabled, queue 5 does not exist.
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 5);
    assert!(notifiers[1].evt.read().is_err());
}

#[test]
fn queue_size_not_power_of_two_is_refused() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    for bad in [0, 3, 12, 32, 0x1_0010] {
        w(&mut t, VIRTIO_MMIO_QUEUE_NUM, bad);
        assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM), 16, "size {bad}");
    }
    // A driver that ignores the refusal gets DEVICE_NEEDS_RESET instead of
    // a device using the wrong ring size.
    setup_queue(&mut t, 0, 12);
    set_status(&mut t, ALL_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ALL_OK | NEEDS_RESET)
    );
    assert!(dummy.lock().unwrap().activations.is_empty());
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(t.interrupt_evt().read().unwrap(), 1);
    // And the notification of that queue is ignored.
    let notifiers = t.notifiers(BASE).unwrap();
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    assert!(notifiers[0].evt.read().is_err());
}

#[test]
fn rings_outside_memory_fail_activation() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    setup_queue(&mut t, 0, 16);
    w(&mut t, VIRTIO_MMIO_QUEUE_USED_HIGH, 1);
    set_status(&mut t, ALL_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ALL_OK | NEEDS_RESET)
    );
    assert!(dummy.lock().unwrap().activations.is_empty());
    assert_eq!(
        dummy.lock().unwrap().transitions.last(),
        Some(&(ALL_OK, ALL_OK | NEEDS_RESET))
    );
}

#[test]
fn available_ring_at_zero_fails_activation_with_needs_reset() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    setup_queue(&mut t, 0, 16);
    w(&mut t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0);
    set_status(&mut t, ALL_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ALL_OK | NEEDS_RESET)
    );
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
    assert!(dummy.lock().unwrap().activations.is_empty());
}

#[test]
fn activation_failure_sets_needs_reset() {
    let (mut t, dummy) = setup(&[16]);
    dummy.lock().unwrap().fail_activation = true;
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    set_status(&mut t, ALL_OK);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ALL_OK | NEEDS_RESET)
    );
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
}

#[test]
fn device_needs_reset_shows_in_status() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    set_status(&mut t, ALL_OK);
    dummy.lock().unwrap().needs_reset = true;
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_STATUS),
        u32::from(ALL_OK | NEEDS_RESET)
    );
    set_status(&mut t, 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
}

#[test]
fn reset_clears_everything_and_resets_the_device() {
    let (mut t, dummy) = setup(&[16, 16]);
    negotiate(&mut t, OFFERED);
    setup_queue(&mut t, 1, 8);
    set_status(&mut t, ALL_OK);
    dummy.lock().unwrap().trigger(VirtioInterruptType::Queue(1));
    w(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING
    );

    set_status(&mut t, 0);
    let d = dummy.lock().unwrap();
    assert_eq!(d.resets, 1);
    assert_eq!(d.transitions.last(), Some(&(ALL_OK, 0)));
    drop(d);
    assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DEVICE_FEATURES_SEL), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_SEL), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_DRIVER_FEATURES), 0);
    w(&mut t, VIRTIO_MMIO_QUEUE_SEL, 1);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_READY), 0);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_NUM), 16);
    assert_eq!(r(&mut t, VIRTIO_MMIO_QUEUE_DESC_LOW), 0);
    // Notifications after the reset are ignored again.
    let notifiers = t.notifiers(BASE).unwrap();
    w(&mut t, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    assert!(notifiers[1].evt.read().is_err());
    // And the device can be brought up again.
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    setup_queue(&mut t, 0, 16);
    set_status(&mut t, ALL_OK);
    assert_eq!(dummy.lock().unwrap().activations.len(), 2);
}

#[test]
fn interrupts_set_status_bits_and_write_the_eventfd() {
    let (mut t, dummy) = setup(&[16]);
    negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
    set_status(&mut t, ALL_OK);
    dummy.lock().unwrap().trigger(VirtioInterruptType::Queue(0));
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING
    );
    dummy.lock().unwrap().trigger(VirtioInterruptType::Config);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(t.interrupt_evt().read().unwrap(), 2);
    // A level-triggered line is raised again until everything is acked.
    t.interrupt().resample().unwrap();
    assert_eq!(t.interrupt_evt().read().unwrap(), 1);
    w(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_eq!(
        r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_CONFIG
    );
    w(&mut t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
    assert_eq!(r(&mut t, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    t.interrupt().resample().unwrap();
    assert!(t.interrupt_evt().read().is_err());
}

#[test]
fn cmdline_fragment() {
    assert_eq!(
        mmio_cmdline(0xd000_0000, MMIO_DEVICE_SIZE, 5),
        "virtio_mmio.device=4K@0xd0000000:5"
    );
    assert_eq!(
        mmio_cmdline(0x1_0000_0000, 2 << 20, 12),
        "virtio_mmio.device=2M@0x100000000:12"
    );
    assert_eq!(
        mmio_cmdline(0xd000_0000, 0x200, 5),
        "virtio_mmio.device=0x200@0xd0000000:5"
    );
}

#[test]
fn invalid_device_is_rejected_at_creation() {
    let dummy = Dummy::new(OFFERED, &[16, 100]);
    assert!(matches!(
        MmioTransport::new("bad", dummy, guest_memory()),
        Err(MmioError::Transport(TransportError::InvalidQueueMaxSize {
            queue: 1,
            size: 100
        }))
    ));
}

#[test]
fn bad_accesses_are_logged_within_a_rate() {
    let (mut t, _) = setup(&[16]);
    for _ in 0..1000 {
        w(&mut t, 0x0fc, 1); // no such register
        t.write(BASE, 1, &[0; 2]); // a 2-byte register write
        set_status(&mut t, DRIVER); // DRIVER without ACKNOWLEDGE
    }
    // Three kinds, each a burst of ten then one a second (the loop takes
    // well under a second); everything else is counted, not logged.
    let suppressed = t.state().limiter().suppressed();
    assert!(
        (2900..=3000 - 30).contains(&suppressed),
        "{suppressed} suppressed"
    );
}

#[test]
fn guest_garbage_never_panics() {
    let (mut t, dummy) = setup(&[16, 16]);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3 {
        for offset in 0..MMIO_DEVICE_SIZE {
            for len in [0, 1, 2, 4, 8] {
                let v = next().to_le_bytes();
                t.write(BASE, offset, &v[..len]);
                let mut d = [0u8; 8];
                t.read(BASE, offset, &mut d[..len]);
            }
        }
        // Bring the device up in between, so queue paths run too.
        set_status(&mut t, 0);
        negotiate(&mut t, 1 << VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 16);
        set_status(&mut t, ALL_OK);
        assert_eq!(r(&mut t, VIRTIO_MMIO_STATUS), u32::from(ALL_OK));
    }
    assert!(!dummy.lock().unwrap().activations.is_empty());
}

#[test]
fn works_on_the_mmio_bus() {
    let (t, _) = setup(&[16]);
    let t = Arc::new(Mutex::new(t));
    let mut bus = crate::bus::Bus::new();
    bus.insert(t, BASE, MMIO_DEVICE_SIZE).unwrap();
    let mut d = [0u8; 4];
    assert!(bus.read(BASE + u64::from(VIRTIO_MMIO_VERSION), &mut d));
    assert_eq!(u32::from_le_bytes(d), 2);
    assert!(bus.read(BASE + 0x101, &mut d));
    assert_eq!(d, [0xa1, 0xa2, 0xa3, 0xa4]);
}
