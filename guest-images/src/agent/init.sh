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
for word in $(cat /proc/cmdline); do
    case "$word" in
        vnetlab.steps=*) STEPS="${word#vnetlab.steps=}" ;;
        vnetlab.timeout=*) TIMEOUT="${word#vnetlab.timeout=}" ;;
        vnetlab.step_timeout=*) STEP_TIMEOUT="${word#vnetlab.step_timeout=}" ;;
        vnetlab.poweroff=*) POWEROFF="${word#vnetlab.poweroff=}" ;;
        vnetlab.modules=*) MODULES="${word#vnetlab.modules=}" ;;
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

# Quiet kernel: only errors and worse reach the console while steps run, so
# kernel lines do not interleave with the agent's.
echo 4 > /proc/sys/kernel/printk

echo "$M AGENT START version=1 kernel=$(uname -r) timeout=$TIMEOUT step_timeout=$STEP_TIMEOUT poweroff=$POWEROFF modules=$MODULES t=$(uptime_s)"

(
    sleep "$TIMEOUT"
    echo "$M WATCHDOG expired after ${TIMEOUT}s; powering off"
    end_machine
) &

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

echo "$M DONE steps=$n failed=$failed t=$(uptime_s)"
end_machine
