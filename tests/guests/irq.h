/* Interrupts for bare-metal test guests: an IDT whose vector IRQ_VECTOR
 * calls irq_handler(), the local APIC enabled, the 8259 PICs masked, and
 * IO-APIC routing of one line to IRQ_VECTOR. */
#ifndef IRQ_H
#define IRQ_H

#include "guest.h"

#define IRQ_VECTOR 0x40
#define LAPIC 0xfee00000ull
#define IOAPIC 0xfec00000ull

extern char count_stub[], other_stub[], fault_stub[];
/* Interrupts on any vector but IRQ_VECTOR (counted by other_stub). */
volatile u32 other_irqs;

struct idt_entry {
    u16 off_lo, sel;
    u8 ist, type;
    u16 off_mid;
    u32 off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));

static void set_gate(int v, void *handler)
{
    u64 a = (u64)handler;
    idt[v].off_lo = (u16)a;
    idt[v].sel = 0x10; /* the VMM's boot code segment */
    idt[v].ist = 0;
    idt[v].type = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
    idt[v].off_mid = (u16)(a >> 16);
    idt[v].off_hi = (u32)(a >> 32);
    idt[v].zero = 0;
}

static void irq_setup(void)
{
    for (int v = 0; v < 256; v++)
        set_gate(v, v < 32 ? fault_stub : v == IRQ_VECTOR ? count_stub : other_stub);
    struct { u16 limit; u64 base; } __attribute__((packed)) idtr = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
    /* Mask both 8259s so nothing arrives through LINT0 as ExtINT. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    mmio_w32(LAPIC + 0x350, 1u << 16);            /* LVT LINT0 masked */
    mmio_w32(LAPIC + 0x80, 0);                    /* task priority 0 */
    mmio_w32(LAPIC + 0xf0, (1u << 8) | 0xff);     /* software enable, spurious 0xff */
}

/* Routes IO-APIC input `gsi` to IRQ_VECTOR on APIC 0, edge, active high. */
static void ioapic_route(u32 gsi)
{
    mmio_w32(IOAPIC, 0x10 + 2 * gsi + 1);
    mmio_w32(IOAPIC + 0x10, 0);
    mmio_w32(IOAPIC, 0x10 + 2 * gsi);
    mmio_w32(IOAPIC + 0x10, IRQ_VECTOR);
}

static inline void lapic_eoi(void) { mmio_w32(LAPIC + 0xb0, 0); }
static inline void irq_enable(void) { __asm__ volatile("sti"); }
static inline void irq_disable(void) { __asm__ volatile("cli"); }

#endif
