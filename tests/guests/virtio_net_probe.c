/* A bare-metal virtio-net driver probe for the lab's KVM tests.
 *
 * It finds the device (on PCI through configuration mechanism #1, or at a
 * virtio-mmio address), negotiates features like a driver (reset,
 * ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queues, DRIVER_OK), reads the
 * config space's status, and with `wait-link-down` polls until the device
 * reports the link down. Every observation goes to the serial port as a
 * `probe:` line the test parses. Command line:
 *   transport=pci|mmio  mmio=0xADDR  want=0xFEATURES  extra=0xFEATURES
 *   [wait-link-down] [hold] [irq=msix|intx|line gsi=N]
 * With `irq=`, the guest takes the configuration interrupt for real while
 * it waits for the link to go down: through MSI-X (PCI), through INTx
 * routed by the IO-APIC from the function's interrupt line (PCI), or
 * through IO-APIC input `gsi` (virtio-mmio); it then reports how many
 * interrupts arrived (`irqs=`) and what the ISR said in the handler.
 * `hold` keeps the guest running after the probe (`probe: holding`) until
 * the VMM stops it.
 * The driver acks (offered & want) | extra: `extra` lets a test ack bits
 * the device did not offer, which the device must refuse at FEATURES_OK.
 */
#include "guest.h"
#include "irq.h"

#define VIRTIO_F_VERSION_1 (1ull << 32)
#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8

/* Queue memory: descriptor tables, avail and used rings, 16 entries. */
#define QSIZE 16
static u8 rings[4][4096] __attribute__((aligned(4096)));

struct ops {
    u64 (*features)(void);
    void (*set_features)(u64);
    u8 (*status)(void);
    void (*set_status)(u8);
    u16 (*num_queues)(void);
    int (*setup_queue)(u16 q, u64 desc, u64 avail, u64 used);
    u8 (*config8)(u32 off);
    u32 (*generation)(void);
    u32 (*isr)(void);
};

/* ---- virtio-pci (modern) ---- */
static u64 common, isr_addr, devcfg;
static u32 pci_slot;
static u8 msix_cap;
static u64 bar_base;

static u32 pci_read(u32 slot, u32 reg)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (reg & 0xfc));
    return inl(0xcfc);
}
static void pci_write(u32 slot, u32 reg, u32 v)
{
    outl(0xcf8, 0x80000000u | (slot << 11) | (reg & 0xfc));
    outl(0xcfc, v);
}

static u64 pci_features(void)
{
    mmio_w32(common + 0x00, 0);
    u64 lo = mmio_r32(common + 0x04);
    mmio_w32(common + 0x00, 1);
    return lo | ((u64)mmio_r32(common + 0x04) << 32);
}
static void pci_set_features(u64 f)
{
    mmio_w32(common + 0x08, 0);
    mmio_w32(common + 0x0c, (u32)f);
    mmio_w32(common + 0x08, 1);
    mmio_w32(common + 0x0c, (u32)(f >> 32));
}
static u8 pci_status(void) { return mmio_r8(common + 0x14); }
static void pci_set_status(u8 s) { mmio_w8(common + 0x14, s); }
static u16 pci_num_queues(void) { return mmio_r16(common + 0x12); }
static int pci_setup_queue(u16 q, u64 desc, u64 avail, u64 used)
{
    mmio_w16(common + 0x16, q);
    u16 max = mmio_r16(common + 0x18);
    if (max == 0) return -1;
    mmio_w16(common + 0x18, max < QSIZE ? max : QSIZE);
    mmio_w64(common + 0x20, desc);
    mmio_w64(common + 0x28, avail);
    mmio_w64(common + 0x30, used);
    mmio_w16(common + 0x1c, 1);
    return 0;
}
static u8 pci_config8(u32 off) { return mmio_r8(devcfg + off); }
static u32 pci_generation(void) { return mmio_r8(common + 0x15); }
static u32 pci_isr(void) { return mmio_r8(isr_addr); }

static int pci_find(struct ops *o)
{
    for (u32 slot = 0; slot < 32; slot++) {
        u32 id = pci_read(slot, 0);
        if (id != 0x10411af4) continue;
        puts("probe: pci device 1af4:1041 at 00:");
        putbyte((u8)slot);
        puts(".0\n");
        /* Memory decoding and bus mastering on, as Linux does. */
        pci_write(slot, 0x04, pci_read(slot, 0x04) | 0x6);
        u64 bar = ((u64)pci_read(slot, 0x14) << 32) | (pci_read(slot, 0x10) & ~0xfu);
        pci_slot = slot;
        bar_base = bar;
        u8 cap = pci_read(slot, 0x34) & 0xff;
        while (cap) {
            u32 head = pci_read(slot, cap);
            if ((head & 0xff) == 0x11) msix_cap = cap;
            if ((head & 0xff) == 0x09) {
                u8 type = (head >> 24) & 0xff;
                u64 where = bar + pci_read(slot, cap + 8);
                if (type == 1) common = where;
                if (type == 3) isr_addr = where;
                if (type == 4) devcfg = where;
            }
            cap = (head >> 8) & 0xff;
        }
        if (!common || !isr_addr || !devcfg) {
            puts("probe: error: missing virtio capabilities\n");
            return -1;
        }
        o->features = pci_features;
        o->set_features = pci_set_features;
        o->status = pci_status;
        o->set_status = pci_set_status;
        o->num_queues = pci_num_queues;
        o->setup_queue = pci_setup_queue;
        o->config8 = pci_config8;
        o->generation = pci_generation;
        o->isr = pci_isr;
        return 0;
    }
    puts("probe: error: no virtio-net device on PCI bus 0\n");
    return -1;
}

/* Points MSI-X table entry 0 at IRQ_VECTOR on APIC 0, enables MSI-X and
 * makes entry 0 the configuration vector. */
static int pci_enable_msix(void)
{
    if (!msix_cap) return -1;
    u32 table = pci_read(pci_slot, msix_cap + 4);
    if ((table & 7) != 0) return -1; /* the probe only maps BAR 0 */
    u64 entry = bar_base + (table & ~7u);
    mmio_w32(entry + 0, 0xfee00000u);
    mmio_w32(entry + 4, 0);
    mmio_w32(entry + 8, IRQ_VECTOR);
    mmio_w32(entry + 12, 0);
    pci_write(pci_slot, msix_cap, pci_read(pci_slot, msix_cap) | (1u << 31));
    mmio_w16(common + 0x10, 0);
    return mmio_r16(common + 0x10) == 0 ? 0 : -1;
}

/* ---- virtio-mmio (version 2) ---- */
static u64 mmio;

static u64 mmio_features(void)
{
    mmio_w32(mmio + 0x14, 0);
    u64 lo = mmio_r32(mmio + 0x10);
    mmio_w32(mmio + 0x14, 1);
    return lo | ((u64)mmio_r32(mmio + 0x10) << 32);
}
static void mmio_set_features(u64 f)
{
    mmio_w32(mmio + 0x24, 0);
    mmio_w32(mmio + 0x20, (u32)f);
    mmio_w32(mmio + 0x24, 1);
    mmio_w32(mmio + 0x20, (u32)(f >> 32));
}
static u8 mmio_status(void) { return (u8)mmio_r32(mmio + 0x70); }
static void mmio_set_status(u8 s) { mmio_w32(mmio + 0x70, s); }
static u16 mmio_num_queues(void)
{
    u16 n = 0;
    for (; n < 8; n++) {
        mmio_w32(mmio + 0x30, n);
        if (mmio_r32(mmio + 0x34) == 0) break;
    }
    return n;
}
static int mmio_setup_queue(u16 q, u64 desc, u64 avail, u64 used)
{
    mmio_w32(mmio + 0x30, q);
    u32 max = mmio_r32(mmio + 0x34);
    if (max == 0) return -1;
    mmio_w32(mmio + 0x38, max < QSIZE ? max : QSIZE);
    mmio_w64(mmio + 0x80, desc);
    mmio_w64(mmio + 0x90, avail);
    mmio_w64(mmio + 0xa0, used);
    mmio_w32(mmio + 0x44, 1);
    return 0;
}
static u8 mmio_config8(u32 off) { return mmio_r8(mmio + 0x100 + off); }
static u32 mmio_generation(void) { return mmio_r32(mmio + 0xfc); }
static u32 mmio_isr(void)
{
    u32 v = mmio_r32(mmio + 0x60);
    mmio_w32(mmio + 0x64, v);
    return v;
}

static int mmio_find(struct ops *o, u64 base)
{
    mmio = base;
    u32 magic = mmio_r32(base), version = mmio_r32(base + 4), id = mmio_r32(base + 8);
    if (magic != 0x74726976 || version != 2 || id != 1) {
        puts("probe: error: no virtio-mmio v2 net device at ");
        puthex(base);
        puts(" magic=");
        puthex(magic);
        puts(" version=");
        puthex(version);
        puts(" id=");
        puthex(id);
        putc('\n');
        return -1;
    }
    puts("probe: mmio device at ");
    puthex(base);
    putc('\n');
    o->features = mmio_features;
    o->set_features = mmio_set_features;
    o->status = mmio_status;
    o->set_status = mmio_set_status;
    o->num_queues = mmio_num_queues;
    o->setup_queue = mmio_setup_queue;
    o->config8 = mmio_config8;
    o->generation = mmio_generation;
    o->isr = mmio_isr;
    return 0;
}

static u16 link_status(struct ops *o) { return o->config8(6) | (o->config8(7) << 8); }

/* What the interrupt handler saw. */
static struct ops *irq_ops;
static volatile u32 irq_count, irq_isr;

void irq_handler(void)
{
    irq_count++;
    if (irq_ops) irq_isr |= irq_ops->isr();
    lapic_eoi();
}

int guest_main(const u8 *zero_page)
{
    const char *cl = cmdline(zero_page);
    struct ops o;
    const char *t = arg(cl, "transport");
    int found = (t && starts_with(t, "mmio")) ? mmio_find(&o, parse_hex(arg(cl, "mmio")))
                                              : pci_find(&o);
    if (found) return 1;

    o.set_status(0);
    o.set_status(ST_ACK);
    o.set_status(ST_ACK | ST_DRIVER);
    u64 offered = o.features();
    u64 want = arg(cl, "want") ? parse_hex(arg(cl, "want")) : ~0ull;
    u64 acked = (offered & want) | (arg(cl, "extra") ? parse_hex(arg(cl, "extra")) : 0);
    puts("probe: offered=");
    puthex(offered);
    puts("\nprobe: acked=");
    puthex(acked);
    putc('\n');
    o.set_features(acked);
    o.set_status(ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    u8 st = o.status();
    puts("probe: features_ok=");
    puthex((st & ST_FEATURES_OK) ? 1 : 0);
    putc('\n');
    if (!(st & ST_FEATURES_OK)) {
        puts("probe: device status=");
        puthex(st);
        putc('\n');
        return 2;
    }
    u16 n = o.num_queues();
    for (u16 q = 0; q < n && q < 4; q++) {
        u64 base = (u64)rings[q];
        if (o.setup_queue(q, base, base + 16 * QSIZE, base + 2048)) {
            puts("probe: error: queue ");
            puthex(q);
            puts(" unavailable\n");
            return 3;
        }
    }
    o.set_status(ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    puts("probe: queues=");
    puthex(n);
    puts(" device_status=");
    puthex(o.status());
    puts("\nprobe: mac=");
    for (int i = 0; i < 6; i++) {
        putbyte(o.config8(i));
        putc(i < 5 ? ':' : '\n');
    }
    u32 gen0 = o.generation();
    puts("probe: link_status=");
    puthex(link_status(&o));
    puts(" generation=");
    puthex(gen0);
    putc('\n');

    const char *irq = arg(cl, "irq");
    if (irq) {
        irq_setup();
        if (starts_with(irq, "msix")) {
            if (pci_enable_msix()) {
                puts("probe: error: cannot enable MSI-X\n");
                return 4;
            }
        } else if (starts_with(irq, "intx")) {
            ioapic_route(pci_read(pci_slot, 0x3c) & 0xff);
        } else {
            ioapic_route((u32)parse_hex(arg(cl, "gsi")));
        }
        irq_ops = &o;
        puts("probe: interrupts=");
        putword(irq);
        putc('\n');
    }

    if (arg(cl, "wait-link-down")) {
        (void)o.isr(); /* start from a clear ISR */
        if (irq) irq_enable();
        puts("probe: polling link\n");
        while (link_status(&o) & 1)
            ;
        if (irq) {
            /* Give late or duplicate interrupts time to arrive. */
            for (volatile u32 i = 0; i < 100000; i++)
                ;
            irq_disable();
            puts("probe: irqs=");
            puthex(irq_count);
            puts(" other_irqs=");
            puthex(other_irqs);
            puts(" handler_isr=");
            puthex(irq_isr);
            putc('\n');
        }
        /* The device changes the field before it raises the interrupt:
         * give the ISR bit a moment to follow. Reading clears it. */
        u32 isr = 0;
        for (u32 i = 0; i < 100000 && !isr && !irq; i++)
            isr = o.isr();
        puts("probe: link down link_status=");
        puthex(link_status(&o));
        puts(" isr=");
        puthex(isr);
        puts(" generation=");
        puthex(o.generation());
        putc('\n');
    }
    puts("probe: done\n");
    if (arg(cl, "hold")) {
        puts("probe: holding\n");
        for (;;)
            __asm__ volatile("pause");
    }
    return 0;
}
