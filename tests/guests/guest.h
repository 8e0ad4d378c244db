/* Port I/O, MMIO, serial printing and the command line for bare-metal
 * test guests of the virtio-net lab. Freestanding: no libc. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u8 mmio_r8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_r16(u64 a) { return *(volatile u16 *)a; }
static inline u32 mmio_r32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_w16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void mmio_w64(u64 a, u64 v) { mmio_w32(a, (u32)v); mmio_w32(a + 4, (u32)(v >> 32)); }

static void putc(char c) { outb(0x3f8, (u8)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
/* Prints `s` up to the first space. */
static void putword(const char *s) { while (*s && *s != ' ') putc(*s++); }
static void puthex(u64 v)
{
    char buf[19];
    int i = 18;
    buf[i] = 0;
    do { buf[--i] = "0123456789abcdef"[v & 0xf]; v >>= 4; } while (v);
    buf[--i] = 'x';
    buf[--i] = '0';
    puts(&buf[i]);
}

static void putbyte(u8 b)
{
    putc("0123456789abcdef"[b >> 4]);
    putc("0123456789abcdef"[b & 0xf]);
}

/* The command line from the zero page (cmd_line_ptr at offset 0x228). */
static const char *cmdline(const u8 *zero_page)
{
    return (const char *)(u64)*(const u32 *)(zero_page + 0x228);
}

static int starts_with(const char *s, const char *p)
{
    while (*p) if (*s++ != *p++) return 0;
    return 1;
}

/* Value of `key=` on the command line, or 0. */
static const char *arg(const char *cl, const char *key)
{
    for (const char *s = cl; *s; s++) {
        if ((s == cl || s[-1] == ' ') && starts_with(s, key)) {
            const char *k = key;
            while (*k) { k++; s++; }
            if (*s == '=') return s + 1;
            if (*s == ' ' || *s == 0) return s;
        }
    }
    return 0;
}

static u64 parse_hex(const char *s)
{
    u64 v = 0;
    if (s && s[0] == '0' && s[1] == 'x') s += 2;
    for (; s && *s && *s != ' '; s++) {
        char c = *s;
        v = v * 16 + (c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    return v;
}

#endif
