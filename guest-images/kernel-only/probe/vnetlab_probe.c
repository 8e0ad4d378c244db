// SPDX-License-Identifier: GPL-2.0
/*
 * vnetlab_probe.c - the virtio-net lab's built-in operstate probe.
 *
 * What it is for: on a machine whose /dev/kvm is an instruction emulator no
 * guest user space can make a system call, so `ip link set eth0 up; ip link
 * show eth0` cannot run in a guest there. This file does the same work from
 * inside the kernel, as a late_initcall that runs before user space would
 * start, so that the lab's VMM, its virtio-net device and the real Linux
 * virtio_net driver still meet end to end. It reproduces the observations of
 * the investigation behind Linux commit bda7fab54828 ("virtio-net: Fix
 * operstate for virtio when no VIRTIO_NET_F_STATUS").
 *
 * It is built into the lab's "kernel-only" test kernel only (guest-images,
 * kernel-only profile) and is not meant for any other kernel.
 *
 * The steps come from the kernel command line:
 *
 *   vnetlab.probe=up,sleep:1500,show,rebind,up,sleep:1500,show
 *   vnetlab.timeout=240        (watchdog for the whole run, seconds)
 *
 * Every step prints lines starting with "vnetlab: " followed by a tag (BEGIN,
 * STEP, OK, FAIL, LINK, CARRIER, NOTE, TRACE, END); LINK lines carry exactly the
 * first line `ip link show` (iproute2) prints for the interface. At the end
 * the probe writes its exit status to the VMM's debug-exit port 0x501 (0 =
 * every step passed). guest-images/kernel-only/README.md documents the
 * protocol; keep the two in step. When vnetlab.trace= asked for a call
 * trace (vnetlab_trace.c), its record is printed before END.
 *
 * Nothing here can hang the guest: every wait has a deadline, rtnl is taken
 * with a deadline, and a watchdog timer ends the machine if a step blocks.
 */

#define pr_fmt(fmt) "vnetlab: " fmt

#include <linux/delay.h>
#include <linux/device.h>
#include <linux/init.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/netdevice.h>
#include <linux/printk.h>
#include <linux/reboot.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <net/sch_generic.h>

#undef MODULE_PARAM_PREFIX
#define MODULE_PARAM_PREFIX "vnetlab."
#include <linux/moduleparam.h>

/* Defined in net/core/link_watch.c, declared in net/core/dev.h. */
void linkwatch_run_queue(void);
/* Defined in vnetlab_trace.c: the boot-time call trace (vnetlab.trace=). */
void vnl_trace_set_step(unsigned int step);
void vnl_trace_dump(void);

#define VNL_PROTOCOL		1
#define VNL_MAX_STEPS		64
#define VNL_MAX_WAIT_MS		600000
#define VNL_RTNL_DEADLINE_MS	10000
#define VNL_POLL_MS		10
/* isa-debug-exit style port of the lab's VMM: the VMM exits with 100 + N. */
#define VNL_EXIT_PORT		0x501
/* Exit statuses besides "number of the first failed step" (1..99). */
#define VNL_EXIT_MAX_STEP	99
#define VNL_EXIT_BAD_STEPS	120
#define VNL_EXIT_WATCHDOG	121
#define VNL_EXIT_NO_MEMORY	122

static char *probe_steps;
module_param_named(probe, probe_steps, charp, 0444);
MODULE_PARM_DESC(probe, "Comma-separated probe steps; see guest-images/kernel-only/README.md");

static unsigned int probe_timeout = 240;
module_param_named(timeout, probe_timeout, uint, 0444);
MODULE_PARM_DESC(timeout, "Seconds before the watchdog ends the machine (default 240)");

enum vnl_kind {
	VNL_IFACE,
	VNL_UP,
	VNL_DOWN,
	VNL_SHOW,
	VNL_SLEEP,
	VNL_LINKWATCH,
	VNL_UNBIND,
	VNL_BIND,
	VNL_REBIND,
	VNL_WAIT_CARRIER,
	VNL_WAIT_OPERSTATE,
	VNL_WAIT_CHANGES,
	VNL_EXIT,
};

struct vnl_step {
	enum vnl_kind kind;
	unsigned int value;	/* carrier state, operstate or change count */
	unsigned int ms;	/* sleep or deadline */
	char name[IFNAMSIZ];	/* iface:NAME */
	const char *text;	/* the step as written */
};

/* The names iproute2 prints for IF_OPER_* (ip/ipaddress.c, oper_states). */
static const char *const vnl_oper_states[] = {
	"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN",
	"TESTING", "DORMANT", "UP",
};

static const char *const vnl_link_modes[] = { "DEFAULT", "DORMANT", "TESTING" };

static struct vnl_step vnl_steps[VNL_MAX_STEPS];
static unsigned int vnl_nsteps;
static char vnl_iface[IFNAMSIZ];	/* chosen by iface:NAME, else automatic */
static struct device *vnl_unbound;	/* virtio device we released, held */
static struct timer_list vnl_watchdog;
static ktime_t vnl_started;

/* Stops the machine through the VMM's debug-exit port. */
static void vnl_exit(int status)
{
	pr_info("END status=%d elapsed_ms=%lld\n", status,
		ktime_ms_delta(ktime_get(), vnl_started));
	outb(status, VNL_EXIT_PORT);
	/* Not under the lab's VMM (no debug-exit port): restart instead. */
	mdelay(1000);
	pr_info("NOTE the debug-exit port 0x%x did not stop the machine; restarting\n",
		VNL_EXIT_PORT);
	emergency_restart();
}

static void vnl_watchdog_fired(struct timer_list *t)
{
	pr_info("FAIL watchdog: the steps did not finish within %u s\n", probe_timeout);
	vnl_trace_dump();
	vnl_exit(VNL_EXIT_WATCHDOG);
}

static bool vnl_parse_uint(const char *s, unsigned int max, unsigned int *out)
{
	return s && *s && !kstrtouint(s, 10, out) && *out <= max;
}

static int vnl_parse_operstate(const char *s, unsigned int *out)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vnl_oper_states); i++) {
		if (s && !strcasecmp(s, vnl_oper_states[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Parses one step ("name" or "name:arg" or "name:arg:ms") in place. */
static const char *vnl_parse_step(char *text, struct vnl_step *st)
{
	char *copy = text;
	char *name = strsep(&copy, ":");
	char *a1 = strsep(&copy, ":");
	char *a2 = strsep(&copy, ":");
	unsigned int nargs = (a1 != NULL) + (a2 != NULL);

	if (copy)
		return "too many ':' arguments";
	if (!strcmp(name, "up") || !strcmp(name, "down") || !strcmp(name, "show") ||
	    !strcmp(name, "linkwatch") || !strcmp(name, "unbind") ||
	    !strcmp(name, "bind") || !strcmp(name, "rebind") || !strcmp(name, "exit")) {
		if (nargs)
			return "takes no argument";
		if (!strcmp(name, "up"))
			st->kind = VNL_UP;
		else if (!strcmp(name, "down"))
			st->kind = VNL_DOWN;
		else if (!strcmp(name, "show"))
			st->kind = VNL_SHOW;
		else if (!strcmp(name, "linkwatch"))
			st->kind = VNL_LINKWATCH;
		else if (!strcmp(name, "unbind"))
			st->kind = VNL_UNBIND;
		else if (!strcmp(name, "bind"))
			st->kind = VNL_BIND;
		else if (!strcmp(name, "rebind"))
			st->kind = VNL_REBIND;
		else
			st->kind = VNL_EXIT;
		return NULL;
	}
	if (!strcmp(name, "iface")) {
		if (nargs != 1 || !*a1 || strlen(a1) >= IFNAMSIZ)
			return "needs an interface name (iface:NAME)";
		st->kind = VNL_IFACE;
		strscpy(st->name, a1, IFNAMSIZ);
		return NULL;
	}
	if (!strcmp(name, "sleep")) {
		if (nargs != 1 || !vnl_parse_uint(a1, VNL_MAX_WAIT_MS, &st->ms))
			return "needs milliseconds (sleep:MS, at most 600000)";
		st->kind = VNL_SLEEP;
		return NULL;
	}
	if (!strcmp(name, "wait-carrier")) {
		if (nargs != 2 || !vnl_parse_uint(a1, 1, &st->value) ||
		    !vnl_parse_uint(a2, VNL_MAX_WAIT_MS, &st->ms))
			return "needs a state and a deadline (wait-carrier:0|1:MS)";
		st->kind = VNL_WAIT_CARRIER;
		return NULL;
	}
	if (!strcmp(name, "wait-operstate")) {
		if (nargs != 2 || vnl_parse_operstate(a1, &st->value) ||
		    !vnl_parse_uint(a2, VNL_MAX_WAIT_MS, &st->ms))
			return "needs an operstate and a deadline (wait-operstate:UP:MS)";
		st->kind = VNL_WAIT_OPERSTATE;
		return NULL;
	}
	if (!strcmp(name, "wait-changes")) {
		if (nargs != 2 || !vnl_parse_uint(a1, 1000000, &st->value) ||
		    !vnl_parse_uint(a2, VNL_MAX_WAIT_MS, &st->ms))
			return "needs a count and a deadline (wait-changes:N:MS)";
		st->kind = VNL_WAIT_CHANGES;
		return NULL;
	}
	return "unknown step";
}

/* rtnl_lock() with a deadline, so a stuck rtnl holder cannot hang the probe. */
static bool vnl_rtnl_lock(void)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(VNL_RTNL_DEADLINE_MS);

	while (!rtnl_trylock()) {
		if (time_after(jiffies, deadline))
			return false;
		msleep(1);
	}
	return true;
}

static bool vnl_is_virtio(struct net_device *dev)
{
	struct device *parent = dev->dev.parent;

	return parent && parent->bus && parent->bus->name &&
	       !strcmp(parent->bus->name, "virtio");
}

/*
 * The interface under test: the one named by iface:NAME, else the first
 * network device whose parent is a virtio device. Caller holds rtnl.
 */
static struct net_device *vnl_find(void)
{
	struct net_device *dev;

	ASSERT_RTNL();
	if (vnl_iface[0])
		return __dev_get_by_name(&init_net, vnl_iface);
	for_each_netdev(&init_net, dev)
		if (vnl_is_virtio(dev))
			return dev;
	return NULL;
}

static const char *vnl_missing(void)
{
	return vnl_iface[0] ? "the interface named by iface: does not exist" :
			      "no virtio-net interface exists";
}

/* iproute2's print_link_flags() over dev_get_flags(), as `ip link` shows them. */
static void vnl_format_flags(char *buf, size_t len, unsigned int flags)
{
	static const struct {
		unsigned int bit;
		const char *name;
	} names[] = {
		{ IFF_LOOPBACK, "LOOPBACK" }, { IFF_BROADCAST, "BROADCAST" },
		{ IFF_POINTOPOINT, "POINTOPOINT" }, { IFF_MULTICAST, "MULTICAST" },
		{ IFF_NOARP, "NOARP" }, { IFF_ALLMULTI, "ALLMULTI" },
		{ IFF_PROMISC, "PROMISC" }, { IFF_MASTER, "MASTER" },
		{ IFF_SLAVE, "SLAVE" }, { IFF_DEBUG, "DEBUG" },
		{ IFF_DYNAMIC, "DYNAMIC" }, { IFF_AUTOMEDIA, "AUTOMEDIA" },
		{ IFF_PORTSEL, "PORTSEL" }, { IFF_NOTRAILERS, "NOTRAILERS" },
		{ IFF_UP, "UP" }, { IFF_LOWER_UP, "LOWER_UP" },
		{ IFF_DORMANT, "DORMANT" }, { IFF_ECHO, "ECHO" },
	};
	size_t pos = 0;
	unsigned int i;

	buf[0] = '\0';
	if ((flags & IFF_UP) && !(flags & IFF_RUNNING))
		pos += scnprintf(buf + pos, len - pos, flags ? "%s," : "%s", "NO-CARRIER");
	flags &= ~IFF_RUNNING;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (!(flags & names[i].bit))
			continue;
		flags &= ~names[i].bit;
		pos += scnprintf(buf + pos, len - pos, flags ? "%s," : "%s", names[i].name);
	}
	if (flags)
		scnprintf(buf + pos, len - pos, "%x", flags);
}

/* Prints the LINK and CARRIER lines of one observation. Caller holds rtnl. */
static void vnl_show(struct net_device *dev)
{
	/* rtnl_fill_ifinfo() reports DOWN for an interface that is not running. */
	unsigned char oper = netif_running(dev) ? dev->operstate : IF_OPER_DOWN;
	struct Qdisc *qdisc = rtnl_dereference(dev->qdisc);
	char flags[160], state[24], mode[16], group[16], qdisc_part[IFNAMSIZ + 8];
	char qlen[20];
	struct virtio_device *vdev;

	vnl_format_flags(flags, sizeof(flags), dev_get_flags(dev));
	if (oper < ARRAY_SIZE(vnl_oper_states))
		scnprintf(state, sizeof(state), "%s", vnl_oper_states[oper]);
	else
		scnprintf(state, sizeof(state), "%#x", oper);
	if (dev->link_mode < ARRAY_SIZE(vnl_link_modes))
		scnprintf(mode, sizeof(mode), "%s", vnl_link_modes[dev->link_mode]);
	else
		scnprintf(mode, sizeof(mode), "%d", dev->link_mode);
	if (dev->group == 0)
		scnprintf(group, sizeof(group), "default");
	else
		scnprintf(group, sizeof(group), "%u", dev->group);
	if (qdisc)
		scnprintf(qdisc_part, sizeof(qdisc_part), "qdisc %s ", qdisc->ops->id);
	else
		qdisc_part[0] = '\0';
	if (dev->tx_queue_len)
		scnprintf(qlen, sizeof(qlen), " qlen %u", dev->tx_queue_len);
	else
		qlen[0] = '\0';
	pr_info("LINK %d: %s: <%s> mtu %u %sstate %s mode %s group %s%s\n",
		dev->ifindex, dev->name, flags, dev->mtu, qdisc_part, state, mode,
		group, qlen);

	if (vnl_is_virtio(dev)) {
		vdev = dev_to_virtio(dev->dev.parent);
		pr_info("CARRIER %s carrier %d carrier_changes %u carrier_up_count %u carrier_down_count %u operstate %u features %#llx device_features %#llx virtio_status %#x virtio_device %s\n",
			dev->name, netif_carrier_ok(dev) ? 1 : 0,
			atomic_read(&dev->carrier_up_count) +
				atomic_read(&dev->carrier_down_count),
			atomic_read(&dev->carrier_up_count),
			atomic_read(&dev->carrier_down_count), dev->operstate,
			(unsigned long long)vdev->features,
			(unsigned long long)vdev->config->get_features(vdev),
			vdev->config->get_status(vdev), dev_name(&vdev->dev));
	} else {
		pr_info("CARRIER %s carrier %d carrier_changes %u carrier_up_count %u carrier_down_count %u operstate %u\n",
			dev->name, netif_carrier_ok(dev) ? 1 : 0,
			atomic_read(&dev->carrier_up_count) +
				atomic_read(&dev->carrier_down_count),
			atomic_read(&dev->carrier_up_count),
			atomic_read(&dev->carrier_down_count), dev->operstate);
	}
}

/* up/down/show/linkwatch: one action under rtnl. */
static int vnl_locked_step(const struct vnl_step *st, const char **why)
{
	struct net_device *dev;
	int err = 0;

	if (!vnl_rtnl_lock()) {
		*why = "rtnl stayed locked for 10 s";
		return -ETIMEDOUT;
	}
	if (st->kind == VNL_LINKWATCH) {
		/* What linkwatch_event() does, without waiting for its delay. */
		linkwatch_run_queue();
		rtnl_unlock();
		return 0;
	}
	dev = vnl_find();
	if (!dev) {
		*why = vnl_missing();
		err = -ENODEV;
	} else if (st->kind == VNL_UP || st->kind == VNL_DOWN) {
		/* As `ip link set DEV up|down`: rtnetlink's do_setlink(). */
		unsigned int flags = st->kind == VNL_UP ? dev->flags | IFF_UP :
							   dev->flags & ~IFF_UP;

		err = dev_change_flags(dev, flags, NULL);
		if (err)
			*why = "dev_change_flags() failed";
	} else {
		vnl_show(dev);
	}
	rtnl_unlock();
	return err;
}

/* Releases the driver of the interface's virtio device, as `rmmod virtio_net`. */
static int vnl_unbind(const char **why)
{
	struct net_device *dev;
	struct device *vdev;

	if (vnl_unbound) {
		*why = "a device is already unbound (bind it first)";
		return -EBUSY;
	}
	if (!vnl_rtnl_lock()) {
		*why = "rtnl stayed locked for 10 s";
		return -ETIMEDOUT;
	}
	dev = vnl_find();
	if (!dev || !vnl_is_virtio(dev)) {
		rtnl_unlock();
		*why = dev ? "the interface is not on a virtio device" : vnl_missing();
		return -ENODEV;
	}
	vdev = get_device(dev->dev.parent);
	rtnl_unlock();
	pr_info("NOTE releasing the driver of %s\n", dev_name(vdev));
	/* virtnet_remove() unregisters the interface; it takes rtnl itself. */
	device_release_driver(vdev);
	vnl_unbound = vdev;
	return 0;
}

/* Probes the released device again, as `modprobe virtio_net`: a fresh virtnet_probe(). */
static int vnl_bind(const char **why)
{
	int ret;

	if (!vnl_unbound) {
		*why = "no device was unbound before";
		return -EINVAL;
	}
	ret = device_attach(vnl_unbound);
	pr_info("NOTE device_attach(%s) = %d\n", dev_name(vnl_unbound), ret);
	put_device(vnl_unbound);
	vnl_unbound = NULL;
	if (ret < 0) {
		*why = "device_attach() failed";
		return ret;
	}
	if (ret == 0) {
		*why = "no driver took the device";
		return -ENODEV;
	}
	return 0;
}

/* Polls the interface until the wanted condition holds or the deadline passes. */
static int vnl_wait(const struct vnl_step *st, const char **why)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(st->ms);
	struct net_device *dev;
	unsigned int now;
	bool done;

	for (;;) {
		if (!vnl_rtnl_lock()) {
			*why = "rtnl stayed locked for 10 s";
			return -ETIMEDOUT;
		}
		dev = vnl_find();
		done = false;
		if (dev) {
			switch (st->kind) {
			case VNL_WAIT_CARRIER:
				now = netif_carrier_ok(dev) ? 1 : 0;
				break;
			case VNL_WAIT_OPERSTATE:
				now = netif_running(dev) ? dev->operstate : IF_OPER_DOWN;
				break;
			default:
				now = atomic_read(&dev->carrier_up_count) +
				      atomic_read(&dev->carrier_down_count);
				break;
			}
			done = st->kind == VNL_WAIT_CHANGES ? now >= st->value :
							      now == st->value;
		}
		if (done || time_after(jiffies, deadline)) {
			if (!done) {
				*why = dev ? "deadline passed" : vnl_missing();
				if (dev)
					vnl_show(dev);
			}
			rtnl_unlock();
			return done ? 0 : -ETIMEDOUT;
		}
		rtnl_unlock();
		msleep(VNL_POLL_MS);
	}
}

static int vnl_run_step(const struct vnl_step *st, const char **why)
{
	int err;

	switch (st->kind) {
	case VNL_IFACE:
		strscpy(vnl_iface, st->name, IFNAMSIZ);
		return 0;
	case VNL_UP:
	case VNL_DOWN:
	case VNL_SHOW:
	case VNL_LINKWATCH:
		return vnl_locked_step(st, why);
	case VNL_SLEEP:
		msleep(st->ms);
		return 0;
	case VNL_UNBIND:
		return vnl_unbind(why);
	case VNL_BIND:
		return vnl_bind(why);
	case VNL_REBIND:
		err = vnl_unbind(why);
		return err ? err : vnl_bind(why);
	case VNL_WAIT_CARRIER:
	case VNL_WAIT_OPERSTATE:
	case VNL_WAIT_CHANGES:
		return vnl_wait(st, why);
	case VNL_EXIT:
		return 0;
	}
	*why = "internal error: unknown step kind";
	return -EINVAL;
}

static int __init vnetlab_probe_init(void)
{
	char *buf, *cursor, *text;
	unsigned int i;
	int status = 0;

	if (!probe_steps || !*probe_steps) {
		pr_info("NOTE not requested (no vnetlab.probe= on the command line)\n");
		return 0;
	}
	/* The probe's lines must reach the console even with `quiet`. */
	if (console_loglevel <= LOGLEVEL_INFO)
		console_loglevel = LOGLEVEL_INFO + 1;
	vnl_started = ktime_get();
	timer_setup(&vnl_watchdog, vnl_watchdog_fired, 0);
	mod_timer(&vnl_watchdog, jiffies + msecs_to_jiffies(probe_timeout * 1000U));

	pr_info("BEGIN protocol=%d steps=%s\n", VNL_PROTOCOL, probe_steps);
	buf = kstrdup(probe_steps, GFP_KERNEL);
	if (!buf) {
		pr_info("FAIL out of memory\n");
		vnl_exit(VNL_EXIT_NO_MEMORY);
		return 0;
	}
	cursor = buf;
	while ((text = strsep(&cursor, ",")) != NULL) {
		const char *err;
		char *orig;

		if (!*text)
			continue;
		if (vnl_nsteps == VNL_MAX_STEPS) {
			pr_info("FAIL more than %d steps\n", VNL_MAX_STEPS);
			vnl_exit(VNL_EXIT_BAD_STEPS);
			return 0;
		}
		orig = kstrdup(text, GFP_KERNEL);
		if (!orig) {
			pr_info("FAIL out of memory\n");
			vnl_exit(VNL_EXIT_NO_MEMORY);
			return 0;
		}
		err = vnl_parse_step(text, &vnl_steps[vnl_nsteps]);
		vnl_steps[vnl_nsteps].text = orig;
		if (err) {
			pr_info("FAIL bad step %u '%s': %s\n", vnl_nsteps + 1, orig, err);
			vnl_exit(VNL_EXIT_BAD_STEPS);
			return 0;
		}
		vnl_nsteps++;
	}

	for (i = 0; i < vnl_nsteps; i++) {
		const struct vnl_step *st = &vnl_steps[i];
		const char *why = "failed";
		ktime_t t0 = ktime_get();
		int err;

		pr_info("STEP %u/%u %s\n", i + 1, vnl_nsteps, st->text);
		vnl_trace_set_step(i + 1);
		err = vnl_run_step(st, &why);
		if (err) {
			pr_info("FAIL %u/%u %s %lld ms: %s (%d)\n", i + 1, vnl_nsteps,
				st->text, ktime_ms_delta(ktime_get(), t0), why, err);
			status = min(i + 1, (unsigned int)VNL_EXIT_MAX_STEP);
			break;
		}
		pr_info("OK %u/%u %s %lld ms\n", i + 1, vnl_nsteps, st->text,
			ktime_ms_delta(ktime_get(), t0));
		if (st->kind == VNL_EXIT)
			break;
	}
	del_timer_sync(&vnl_watchdog);
	vnl_trace_dump();
	vnl_exit(status);
	return 0;
}
late_initcall(vnetlab_probe_init);
