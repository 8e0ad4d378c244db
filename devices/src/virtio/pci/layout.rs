//! Where things are in a virtio-pci function: the PCI identity, the layout
//! of the one BAR, the `virtio_pci_common_cfg` register offsets, and the
//! virtio vendor capabilities that point into the BAR (virtio 1.2 section
//! 4.1.4). virtio-bindings has no virtio_pci module, so the constants are
//! here, named as in Linux's `include/uapi/linux/virtio_pci.h`.

use crate::pci::regs::{CAP_ID_VENDOR, CLASS_NETWORK, CLASS_OTHER, SUBCLASS_ETHERNET};
use crate::pci::{msix_capability, PciConfigError, PciConfigSpace};

/// The PCI vendor ID of virtio devices.
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern (non-transitional) device IDs are this plus the virtio device ID.
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Non-transitional devices have revision 1 or more.
pub const VIRTIO_PCI_REVISION: u8 = 1;
/// Subsystem vendor ID: the virtio vendor, as QEMU does.
pub const VIRTIO_PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
/// Subsystem ID: QEMU's for non-transitional devices (the spec asks for
/// 0x40 or more).
pub const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x1100;

/// The (class, subclass) of a virtio device type: Ethernet for net, as
/// QEMU and Cloud Hypervisor report; "unclassified" otherwise.
pub fn class_of(device_type: u32) -> (u8, u8) {
    if device_type == virtio_bindings::virtio_ids::VIRTIO_ID_NET {
        (CLASS_NETWORK, SUBCLASS_ETHERNET)
    } else {
        (CLASS_OTHER, 0)
    }
}

/// The BAR holding every virtio structure: a 64-bit memory BAR using BAR
/// slots 0 and 1 (as Cloud Hypervisor; QEMU uses BAR 4).
pub const BAR_INDEX: usize = 0;
/// The BAR's size: a power of two covering the regions below.
pub const BAR_SIZE: u64 = 0x8000;

/// `virtio_pci_common_cfg`, at the start of the BAR.
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
/// Length of `virtio_pci_common_cfg` up to `queue_device` (virtio 1.0-1.2
/// without `queue_notif_config_data`/`queue_reset`, which this transport
/// does not implement).
pub const COMMON_CFG_SIZE: u64 = 0x38;
/// The ISR status byte.
pub const ISR_OFFSET: u64 = 0x1000;
/// Length of the ISR region.
pub const ISR_SIZE: u64 = 1;
/// The device-specific configuration space.
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
/// Length of the device-specific configuration region.
pub const DEVICE_CFG_SIZE: u64 = 0x1000;
/// Queue notification addresses: queue `n` at `NOTIFY_OFFSET + 4 * n`.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Length of the notification region.
pub const NOTIFY_SIZE: u64 = 0x1000;
/// A dword per queue, so that each queue has its own address and an
/// ioeventfd needs no datamatch (multiplier 0 would make all queues share
/// one address).
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// The MSI-X table (16 bytes per vector), in its own page as the PCI spec
/// recommends.
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// Length of the MSI-X table region.
pub const MSIX_TABLE_SIZE: u64 = 0x1000;
/// The MSI-X pending-bit array.
pub const MSIX_PBA_OFFSET: u64 = 0x5000;
/// Length of the MSI-X PBA region.
pub const MSIX_PBA_SIZE: u64 = 0x1000;

/// The most queues the notification region can address.
pub const MAX_QUEUES: usize = (NOTIFY_SIZE / NOTIFY_OFF_MULTIPLIER as u64) as usize;
/// The most MSI-X vectors the table region holds.
pub const MAX_VECTORS: u16 = (MSIX_TABLE_SIZE / 16) as u16;
/// The vector number meaning "no MSI-X vector".
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// `cfg_type` of the common configuration capability.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification capability.
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type` of the ISR capability.
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// `cfg_type` of the device configuration capability.
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type` of the PCI configuration access capability.
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;

/// `virtio_pci_common_cfg` field offsets.
pub mod common {
    /// le32 device_feature_select.
    pub const DFSELECT: u64 = 0x00;
    /// le32 device_feature (read-only).
    pub const DF: u64 = 0x04;
    /// le32 driver_feature_select.
    pub const GFSELECT: u64 = 0x08;
    /// le32 driver_feature.
    pub const GF: u64 = 0x0c;
    /// le16 config_msix_vector.
    pub const MSIX: u64 = 0x10;
    /// le16 num_queues (read-only).
    pub const NUMQ: u64 = 0x12;
    /// u8 device_status.
    pub const STATUS: u64 = 0x14;
    /// u8 config_generation (read-only).
    pub const CFGGENERATION: u64 = 0x15;
    /// le16 queue_select.
    pub const Q_SELECT: u64 = 0x16;
    /// le16 queue_size.
    pub const Q_SIZE: u64 = 0x18;
    /// le16 queue_msix_vector.
    pub const Q_MSIX: u64 = 0x1a;
    /// le16 queue_enable.
    pub const Q_ENABLE: u64 = 0x1c;
    /// le16 queue_notify_off (read-only).
    pub const Q_NOFF: u64 = 0x1e;
    /// le64 queue_desc.
    pub const Q_DESCLO: u64 = 0x20;
    /// Upper half of queue_desc.
    pub const Q_DESCHI: u64 = 0x24;
    /// le64 queue_driver (available ring).
    pub const Q_AVAILLO: u64 = 0x28;
    /// Upper half of queue_driver.
    pub const Q_AVAILHI: u64 = 0x2c;
    /// le64 queue_device (used ring).
    pub const Q_USEDLO: u64 = 0x30;
    /// Upper half of queue_device.
    pub const Q_USEDHI: u64 = 0x34;
}

// Offsets inside a `virtio_pci_cap`, from the capability's start.
/// `bar` field.
pub const CAP_BAR: usize = 4;
/// `offset` field (le32).
pub const CAP_OFFSET: usize = 8;
/// `length` field (le32).
pub const CAP_LENGTH: usize = 12;
/// `pci_cfg_data` of a `virtio_pci_cfg_cap` (4 bytes).
pub const CAP_PCI_CFG_DATA: usize = 16;

/// Where the capabilities that need run-time handling ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapOffsets {
    /// The MSI-X capability.
    pub msix: usize,
    /// The VIRTIO_PCI_CAP_PCI_CFG capability.
    pub pci_cfg: usize,
}

// The body of a `virtio_pci_cap` after cap_vndr and cap_next, plus `extra`
// bytes (notify_off_multiplier, pci_cfg_data).
fn virtio_cap(cfg_type: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let mut body = vec![
        (16 + extra.len()) as u8, // cap_len
        cfg_type,
        BAR_INDEX as u8,
        0, // id
        0,
        0, // padding
    ];
    // The offsets and lengths above are small constants.
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

/// Adds the MSI-X capability and the virtio capabilities for
/// `num_queues` queues and `num_vectors` MSI-X vectors.
pub fn add_capabilities(
    config: &mut PciConfigSpace,
    num_queues: usize,
    num_vectors: u16,
) -> Result<CapOffsets, PciConfigError> {
    let (id, body, writable) = msix_capability(
        num_vectors,
        BAR_INDEX as u8,
        MSIX_TABLE_OFFSET as u32,
        BAR_INDEX as u8,
        MSIX_PBA_OFFSET as u32,
    );
    let msix = config.add_capability(id, &body, &writable)?;

    let read_only = |cfg_type, offset, length, extra: &[u8]| {
        let body = virtio_cap(cfg_type, offset, length, extra);
        (body.clone(), vec![0u8; body.len()])
    };
    let notify_len = (num_queues.max(1) as u64) * u64::from(NOTIFY_OFF_MULTIPLIER);
    for (body, writable) in [
        read_only(
            VIRTIO_PCI_CAP_COMMON_CFG,
            COMMON_CFG_OFFSET,
            COMMON_CFG_SIZE,
            &[],
        ),
        read_only(
            VIRTIO_PCI_CAP_NOTIFY_CFG,
            NOTIFY_OFFSET,
            notify_len,
            &NOTIFY_OFF_MULTIPLIER.to_le_bytes(),
        ),
        read_only(VIRTIO_PCI_CAP_ISR_CFG, ISR_OFFSET, ISR_SIZE, &[]),
        read_only(
            VIRTIO_PCI_CAP_DEVICE_CFG,
            DEVICE_CFG_OFFSET,
            DEVICE_CFG_SIZE,
            &[],
        ),
    ] {
        config.add_capability(CAP_ID_VENDOR, &body, &writable)?;
    }

    // VIRTIO_PCI_CAP_PCI_CFG: the driver writes bar, offset and length,
    // then accesses pci_cfg_data (handled by the transport, not stored).
    let body = virtio_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, &[0; 4]);
    let mut writable = vec![0u8; body.len()];
    writable[CAP_BAR - 2] = 0xff;
    writable[CAP_OFFSET - 2..CAP_LENGTH + 4 - 2].fill(0xff);
    let pci_cfg = config.add_capability(CAP_ID_VENDOR, &body, &writable)?;
    Ok(CapOffsets { msix, pci_cfg })
}

/// The structures in the BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// `virtio_pci_common_cfg`.
    CommonCfg,
    /// The ISR status byte.
    Isr,
    /// The device-specific configuration.
    DeviceCfg,
    /// The notification area.
    Notify,
    /// The MSI-X table.
    MsixTable,
    /// The MSI-X pending-bit array.
    MsixPba,
}

impl Region {
    /// The region an access of `len` bytes at BAR offset `offset` falls in,
    /// with the offset inside it; `None` if it is in no region or straddles
    /// two.
    pub fn of(offset: u64, len: usize) -> Option<(Region, u64)> {
        const REGIONS: [(Region, u64, u64); 6] = [
            (
                Region::CommonCfg,
                COMMON_CFG_OFFSET,
                ISR_OFFSET - COMMON_CFG_OFFSET,
            ),
            (Region::Isr, ISR_OFFSET, DEVICE_CFG_OFFSET - ISR_OFFSET),
            (Region::DeviceCfg, DEVICE_CFG_OFFSET, DEVICE_CFG_SIZE),
            (Region::Notify, NOTIFY_OFFSET, NOTIFY_SIZE),
            (Region::MsixTable, MSIX_TABLE_OFFSET, MSIX_TABLE_SIZE),
            (Region::MsixPba, MSIX_PBA_OFFSET, MSIX_PBA_SIZE),
        ];
        let end = offset.checked_add(len as u64)?;
        REGIONS
            .iter()
            .find(|(_, start, size)| offset >= *start && end <= start + size)
            .map(|&(region, start, _)| (region, offset - start))
    }
}
