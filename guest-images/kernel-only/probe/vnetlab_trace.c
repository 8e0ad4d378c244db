// SPDX-License-Identifier: GPL-2.0
/*
 * vnetlab_trace.c - the virtio-net lab's boot-time kernel call trace.
 *
 * What it is for: the original investigation of Linux commit bda7fab54828
 * ("virtio-net: Fix operstate for virtio when no VIRTIO_NET_F_STATUS")
 * compared which kernel functions ran on a normal and an abnormal machine.
 * On the lab's kernel-only test kernel no user space runs (the machines'
 * /dev/kvm is an instruction emulator), so nothing can write to tracefs.
 * This file records the requested functions itself, with the kernel's own
 * function tracing (an ftrace_ops with an address filter), from an early
 * initcall on, so that virtnet_probe() at boot is seen too; the probe
 * (vnetlab_probe.c) prints the record when its steps are done.
 *
 * It is built into the lab's "kernel-only" test kernel only (guest-images,
 * kernel-only profile) and is not meant for any other kernel.
 *
 * The request comes from the kernel command line, one NAME@ADDRESS per
 * function (the address in hex, from the kernel's System.map; a NAME
 * without an address is a function the host did not find there):
 *
 *   vnetlab.trace=netif_carrier_on@ffffffff81140635,default_operstate
 *
 * Addresses, not names, because matching names costs a kallsyms lookup for
 * every traceable function of the kernel, per name: minutes under the
 * emulator. Each address is checked against its name (kallsyms) before it
 * goes into the filter.
 *
 * Output, printed by vnl_trace_dump() (guest-images/kernel-only/README.md
 * documents it; keep the two in step):
 *
 *   vnetlab: TRACE BEGIN protocol=1 requested=<n> traced=<n> events=<n> lost=<n>
 *   vnetlab: TRACE FUNC <name> traceable addr=<hex>
 *   vnetlab: TRACE FUNC <name> untraceable: <reason> (<errno>)
 *   vnetlab: TRACE FAIL <reason> (<errno>)
 *   vnetlab: TRACE EVENT <n> t=<s.ns> cpu=<c> step=<s> func=<name> caller=<name+off/size>
 *   vnetlab: TRACE END events=<n>
 *
 * t= is local_clock(), the clock of the printk timestamps; step= is the
 * probe step that was running (0: the boot, before the first step).
 */

#define pr_fmt(fmt) "vnetlab: " fmt

#include <linux/atomic.h>
#include <linux/ftrace.h>
#include <linux/init.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/printk.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/string.h>

#undef MODULE_PARAM_PREFIX
#define MODULE_PARAM_PREFIX "vnetlab."
#include <linux/moduleparam.h>

#define VNL_TRACE_PROTOCOL	1
#define VNL_TRACE_MAX_FUNCS	32
#define VNL_TRACE_MAX_EVENTS	2048
#define VNL_TRACE_NAME_LEN	128

static char *trace_list;
module_param_named(trace, trace_list, charp, 0444);
MODULE_PARM_DESC(trace, "Functions to trace as NAME@HEXADDRESS,...; see guest-images/kernel-only/README.md");

struct vnl_trace_func {
	char name[VNL_TRACE_NAME_LEN];
	unsigned long addr;
	const char *why;	/* NULL: in the filter */
	int err;
};

struct vnl_trace_event {
	u64 ns;
	unsigned long ip;
	unsigned long parent_ip;
	unsigned int cpu;
	unsigned int step;
};

static struct vnl_trace_func vnl_funcs[VNL_TRACE_MAX_FUNCS];
static unsigned int vnl_nfuncs;
static unsigned int vnl_ntraced;
static unsigned int vnl_dropped;	/* requested beyond VNL_TRACE_MAX_FUNCS */
static struct vnl_trace_event vnl_events[VNL_TRACE_MAX_EVENTS];
static atomic_t vnl_nevents = ATOMIC_INIT(0);
static unsigned int vnl_step;
static bool vnl_stopped;
static const char *vnl_fail;
static int vnl_fail_err;

/* The ftrace callback: one slot per call; calls past the end are counted. */
static void notrace vnl_trace_hit(unsigned long ip, unsigned long parent_ip,
				  struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	struct vnl_trace_event *ev;
	int n;

	if (READ_ONCE(vnl_stopped))
		return;
	n = atomic_inc_return(&vnl_nevents) - 1;
	if (n >= VNL_TRACE_MAX_EVENTS)
		return;
	ev = &vnl_events[n];
	ev->ns = local_clock();
	ev->ip = ip;
	ev->parent_ip = parent_ip;
	ev->cpu = raw_smp_processor_id();
	ev->step = READ_ONCE(vnl_step);
}

static struct ftrace_ops vnl_ops = {
	.func = vnl_trace_hit,
	/* ftrace guards against recursion and disables preemption for us. */
	.flags = FTRACE_OPS_FL_RECURSION,
};

/* Puts one NAME[@ADDRESS] item into the filter, or says why it cannot. */
static void __init vnl_trace_add(char *item)
{
	struct vnl_trace_func *f;
	char sym[KSYM_NAME_LEN];
	char *at = strchr(item, '@');
	int err;

	if (vnl_nfuncs == VNL_TRACE_MAX_FUNCS) {
		vnl_dropped++;
		return;
	}
	f = &vnl_funcs[vnl_nfuncs++];
	if (at)
		*at++ = '\0';
	if (strscpy(f->name, item, sizeof(f->name)) < 0) {
		f->why = "the name is longer than 127 characters";
		f->err = -ENAMETOOLONG;
		return;
	}
	if (!at) {
		f->why = "not a function of this kernel's System.map (inlined, or not built in)";
		f->err = -ENOENT;
		return;
	}
	if (kstrtoul(at, 16, &f->addr)) {
		f->why = "the address is not hexadecimal";
		f->err = -EINVAL;
		return;
	}
	if (lookup_symbol_name(f->addr, sym) || strcmp(sym, f->name)) {
		f->why = "the address is not this function's in this kernel (a System.map of another build?)";
		f->err = -EINVAL;
		return;
	}
	err = ftrace_set_filter_ip(&vnl_ops, f->addr, 0, 0);
	if (err) {
		f->why = "ftrace cannot trace it (no __fentry__ call site: notrace or not instrumented)";
		f->err = err;
		return;
	}
	vnl_ntraced++;
}

/*
 * Early, before any driver probes: virtnet_probe() runs when virtio_net
 * registers (device_initcall).
 */
static int __init vnetlab_trace_init(void)
{
	char *buf, *cursor, *item;
	int err;

	if (!trace_list || !*trace_list)
		return 0;
	buf = kstrdup(trace_list, GFP_KERNEL);
	if (!buf) {
		vnl_fail = "out of memory";
		vnl_fail_err = -ENOMEM;
		return 0;
	}
	cursor = buf;
	while ((item = strsep(&cursor, ",")) != NULL)
		if (*item)
			vnl_trace_add(item);
	kfree(buf);
	if (!vnl_ntraced) {
		/* An ops with an empty filter would trace every function. */
		vnl_fail = "none of the requested functions can be traced; ftrace was not started";
		vnl_fail_err = -ENOENT;
		return 0;
	}
	err = register_ftrace_function(&vnl_ops);
	if (err) {
		vnl_fail = "register_ftrace_function() failed";
		vnl_fail_err = err;
	}
	return 0;
}
early_initcall(vnetlab_trace_init);

/* The probe step now running (1-based; 0 while booting). */
void vnl_trace_set_step(unsigned int step)
{
	WRITE_ONCE(vnl_step, step);
}

/* Stops recording and prints the request's outcome and every event. */
void vnl_trace_dump(void)
{
	unsigned int i, total, n;

	if (!trace_list || !*trace_list)
		return;
	WRITE_ONCE(vnl_stopped, true);
	total = atomic_read(&vnl_nevents);
	n = min_t(unsigned int, total, VNL_TRACE_MAX_EVENTS);
	pr_info("TRACE BEGIN protocol=%d requested=%u traced=%u events=%u lost=%u\n",
		VNL_TRACE_PROTOCOL, vnl_nfuncs + vnl_dropped, vnl_ntraced, n, total - n);
	if (vnl_fail)
		pr_info("TRACE FAIL %s (%d)\n", vnl_fail, vnl_fail_err);
	if (vnl_dropped)
		pr_info("TRACE FAIL %u functions beyond the first %d were not traced (%d)\n",
			vnl_dropped, VNL_TRACE_MAX_FUNCS, -E2BIG);
	for (i = 0; i < vnl_nfuncs; i++) {
		const struct vnl_trace_func *f = &vnl_funcs[i];

		if (f->why)
			pr_info("TRACE FUNC %s untraceable: %s (%d)\n", f->name, f->why, f->err);
		else
			pr_info("TRACE FUNC %s traceable addr=%lx\n", f->name, f->addr);
	}
	for (i = 0; i < n; i++) {
		const struct vnl_trace_event *ev = &vnl_events[i];
		u64 ns = ev->ns;
		u32 rem = do_div(ns, NSEC_PER_SEC);

		pr_info("TRACE EVENT %u t=%llu.%09u cpu=%u step=%u func=%ps caller=%pS\n",
			i + 1, ns, rem, ev->cpu, ev->step, (void *)ev->ip,
			(void *)ev->parent_ip);
	}
	pr_info("TRACE END events=%u\n", n);
}
