#!/bin/sh
# vnetlab guest agent: /init of the lab's initramfs, run by busybox sh.
#
# It mounts proc/sys/dev, loads the virtio networking modules, runs the
# scenario's steps, prints everything between @@VNETLAB@@ markers on the
# console and powers the machine off. A watchdog powers off after a deadline.
# The protocol is documented in guest-images/README.md ("Guest agent
# protocol") and parsed by guest_images::agent::Transcript.
#
# Kernel command line parameters (all optional):
#   vnetlab.steps=S1,S2,...   steps, each percent-encoded (else /vnetlab/steps)
#   vnetlab.timeout=SECS      watchdog deadline for the whole run (default 120)
#   vnetlab.step_timeout=SECS deadline of one step (default 60)
#   vnetlab.poweroff=poweroff|reboot   how to end (default poweroff)
#   vnetlab.modules=auto|none load /vnetlab/modules at start (default auto)
#   vnetlab.trace=F1,F2,...   kernel functions to record with the tracefs
#                             function tracer, from before the modules load
#                             until the steps are done; the trace is printed
#                             between TRACE BEGIN and TRACE END

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
M=@@VNETLAB@@
BB=/bin/busybox

$BB mkdir -p /proc /sys /dev /tmp /run
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs /dev 2>/dev/null
$BB --install -s
# iproute2's ip, not busybox's applet (which has no operstate column).
for p in /sbin/ip /usr/sbin/ip /usr/bin/ip; do
    [ -L "$p" ] && $BB rm -f "$p"
done

STEPS=
TIMEOUT=120
STEP_TIMEOUT=60
POWEROFF=poweroff
MODULES=auto
TRACE=
for word in $(cat /proc/cmdline); do
    case "$word" in
        vnetlab.steps=*) STEPS="${word#vnetlab.steps=}" ;;
        vnetlab.timeout=*) TIMEOUT="${word#vnetlab.timeout=}" ;;
        vnetlab.step_timeout=*) STEP_TIMEOUT="${word#vnetlab.step_timeout=}" ;;
        vnetlab.poweroff=*) POWEROFF="${word#vnetlab.poweroff=}" ;;
        vnetlab.modules=*) MODULES="${word#vnetlab.modules=}" ;;
        vnetlab.trace=*) TRACE="${word#vnetlab.trace=}" ;;
    esac
done
if [ -z "$STEPS" ] && [ -f /vnetlab/steps ]; then
    STEPS=$(grep -v '^#' /vnetlab/steps | grep -v '^$' | tr '\n' ',')
fi

uptime_s() { cut -d' ' -f1 /proc/uptime; }

decode() {
    printf '%b' "$(printf '%s' "$1" | sed 's/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')"
}

end_machine() {
    echo "$M POWEROFF method=$POWEROFF t=$(uptime_s)"
    sync
    if [ "$POWEROFF" = reboot ]; then
        reboot -f
        sleep 5
        echo b > /proc/sysrq-trigger
    else
        poweroff -f
        sleep 5
        echo o > /proc/sysrq-trigger
    fi
    sleep 5
    echo "$M STUCK the machine did not power off"
    while true; do sleep 60; done
}

# --- Kernel call trace (vnetlab.trace=) ---
# The function tracer of tracefs with set_ftrace_filter holding exactly the
# requested functions. A function the kernel cannot trace is reported as
# such (TRACE FUNC NAME untraceable: WHY), never dropped in silence. The
# tracer is only enabled when the filter holds a function of the kernel
# proper: an empty filter would trace every function.
T=/sys/kernel/tracing
TRACING=0
TRACE_FUNCS=$(echo "$TRACE" | tr ',' ' ')

# in_list FILE NAME: whether a line of FILE starts with the word NAME
# (set_ftrace_filter and available_filter_functions print `name [module]`).
in_list() {
    awk -v f="$2" '$1 == f { found = 1 } END { exit !found }' "$1" 2>/dev/null
}

# trace_setup: before the modules load, so that the driver's probe is seen.
trace_setup() {
    n=0
    for f in $TRACE_FUNCS; do n=$((n + 1)); done
    [ -e "$T/available_tracers" ] || $BB mount -t tracefs nodev "$T" 2>/dev/null
    echo "$M TRACE SETUP requested=$n tracefs=$T"
    if ! grep -qw function "$T/available_tracers" 2>/dev/null || [ ! -w "$T/set_ftrace_filter" ]; then
        TRACE_WHY="this kernel has no function tracer (no tracefs at $T, or no function tracer in available_tracers: CONFIG_FUNCTION_TRACER and CONFIG_DYNAMIC_FTRACE are needed)"
        echo "$M TRACE ERROR $TRACE_WHY"
        return
    fi
    echo nop > "$T/current_tracer"
    echo > "$T/set_ftrace_filter"
    TRACE_PENDING=
    for f in $TRACE_FUNCS; do
        echo "$f" >> "$T/set_ftrace_filter" 2>/dev/null || TRACE_PENDING="$TRACE_PENDING $f"
    done
    # Not in the kernel proper: perhaps in a module the agent loads. ftrace
    # keeps `NAME:mod:MODULE` and applies it when the module loads.
    if [ -n "$TRACE_PENDING" ] && [ -f /vnetlab/modules ]; then
        moddir=/lib/modules/$(uname -r)
        while read -r path; do
            [ -z "$path" ] && continue
            name=$(basename "$path" .ko)
            for f in $TRACE_PENDING; do
                # Not -F: busybox's grep -F misses text in binary files.
                grep -q "$f" "$moddir/$path" 2>/dev/null && echo "$f:mod:$name" >> "$T/set_ftrace_filter" 2>/dev/null
            done
        done < /vnetlab/modules
    fi
    if grep -v '^#' "$T/set_ftrace_filter" | grep -qv ':mod:'; then
        echo function > "$T/current_tracer" && TRACING=1
    fi
    [ "$TRACING" = 1 ] || TRACE_LATE=1
}

# trace_check: after the modules loaded; reports every requested function.
trace_check() {
    if [ -n "$TRACE_WHY" ]; then
        for f in $TRACE_FUNCS; do echo "$M TRACE FUNC $f untraceable: $TRACE_WHY"; done
        return
    fi
    if [ "$TRACE_LATE" = 1 ] && grep -v '^#' "$T/set_ftrace_filter" | grep -qv ':mod:'; then
        echo "$M TRACE ERROR none of the requested functions is in the kernel proper: tracing starts after the modules loaded, so their probe is not seen"
        echo function > "$T/current_tracer" && TRACING=1
    fi
    avail=
    for f in $TRACE_FUNCS; do
        if [ "$TRACING" = 1 ] && in_list "$T/set_ftrace_filter" "$f"; then
            echo "$M TRACE FUNC $f traceable"
            continue
        fi
        if [ -z "$avail" ]; then
            avail=/tmp/available_filter_functions
            cat "$T/available_filter_functions" > "$avail" 2>/dev/null
        fi
        if in_list "$avail" "$f"; then
            echo "$M TRACE FUNC $f untraceable: in available_filter_functions, but set_ftrace_filter did not take it"
        else
            echo "$M TRACE FUNC $f untraceable: not in available_filter_functions (inlined, notrace, or in neither the kernel nor the modules the agent loaded)"
        fi
    done
    if [ "$TRACING" != 1 ]; then
        echo "$M TRACE ERROR none of the requested functions can be traced; the function tracer was not enabled (an empty filter would trace every function)"
    fi
}

# trace_mark N: tells the trace that agent step N begins.
trace_mark() {
    [ "$TRACING" = 1 ] && echo "vnetlab-step $1" > "$T/trace_marker" 2>/dev/null
}

# trace_dump: stops recording and prints the trace file verbatim.
trace_dump() {
    [ "$TRACING" = 1 ] || return 0
    echo 0 > "$T/tracing_on"
    echo "$M TRACE BEGIN"
    lines=0
    while IFS= read -r line || [ -n "$line" ]; do
        lines=$((lines + 1))
        echo "$M TRACE LINE $line"
    done < "$T/trace"
    echo "$M TRACE END lines=$lines"
}

# Quiet kernel: only errors and worse reach the console while steps run, so
# kernel lines do not interleave with the agent's.
echo 4 > /proc/sys/kernel/printk

echo "$M AGENT START version=1 kernel=$(uname -r) timeout=$TIMEOUT step_timeout=$STEP_TIMEOUT poweroff=$POWEROFF modules=$MODULES t=$(uptime_s)"

(
    sleep "$TIMEOUT"
    echo "$M WATCHDOG expired after ${TIMEOUT}s; powering off"
    end_machine
) &

[ -n "$TRACE_FUNCS" ] && trace_setup

if [ "$MODULES" = auto ] && [ -f /vnetlab/modules ]; then
    moddir=/lib/modules/$(uname -r)
    while read -r path; do
        [ -z "$path" ] && continue
        name=$(basename "$path" .ko)
        insmod "$moddir/$path" > /tmp/mod.out 2>&1
        rc=$?
        echo "$M MODULE $name rc=$rc"
        if [ "$rc" != 0 ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                echo "$M MODULE $name OUT $line"
            done < /tmp/mod.out
        fi
    done < /vnetlab/modules
fi

[ -n "$TRACE_FUNCS" ] && trace_check

n=0
failed=0
IFS_SAVED=$IFS
IFS=,
set -f
set -- $STEPS
set +f
IFS=$IFS_SAVED
for enc in "$@"; do
    [ -z "$enc" ] && continue
    n=$((n + 1))
    trace_mark "$n"
    echo "$M STEP $n BEGIN t=$(uptime_s) cmd=$enc"
    VNETLAB_CMD=$(decode "$enc") timeout "$STEP_TIMEOUT" /bin/sh -c '. /vnetlab/lib.sh; eval "$VNETLAB_CMD"' \
        > /tmp/step.out 2>&1 < /dev/null
    rc=$?
    while IFS= read -r line || [ -n "$line" ]; do
        echo "$M STEP $n OUT $line"
    done < /tmp/step.out
    [ "$rc" != 0 ] && failed=$((failed + 1))
    echo "$M STEP $n END rc=$rc t=$(uptime_s)"
done

[ -n "$TRACE_FUNCS" ] && trace_dump
echo "$M DONE steps=$n failed=$failed t=$(uptime_s)"
end_machine
