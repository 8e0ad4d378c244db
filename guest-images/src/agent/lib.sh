# Helpers the guest agent's steps can call (sourced before each step).

# busybox sh runs its own applets before searching PATH, and busybox's ip has
# no operstate column: route `ip` to iproute2's binary (a path with a slash
# is executed, never taken for an applet).
ip() { /bin/ip "$@"; }

# wait_iface IFACE [SECS]: waits until the interface exists.
wait_iface() {
    i=0
    limit=$(( ${2:-10} * 10 ))
    while [ ! -e "/sys/class/net/$1" ]; do
        i=$((i + 1))
        [ "$i" -gt "$limit" ] && { echo "wait_iface: $1 did not appear"; return 1; }
        usleep 100000
    done
}

# wait_operstate IFACE STATE [SECS]: waits until operstate is STATE (e.g. up).
wait_operstate() {
    i=0
    limit=$(( ${3:-10} * 10 ))
    while [ "$(cat "/sys/class/net/$1/operstate" 2>/dev/null)" != "$2" ]; do
        i=$((i + 1))
        [ "$i" -gt "$limit" ] && { echo "wait_operstate: $1 is $(cat "/sys/class/net/$1/operstate" 2>/dev/null), not $2"; return 1; }
        usleep 100000
    done
}

# link_facts IFACE: operstate, carrier and carrier counters from sysfs.
link_facts() {
    d=/sys/class/net/$1
    echo "operstate=$(cat $d/operstate) carrier=$(cat $d/carrier 2>/dev/null) carrier_changes=$(cat $d/carrier_changes) carrier_up_count=$(cat $d/carrier_up_count 2>/dev/null) carrier_down_count=$(cat $d/carrier_down_count 2>/dev/null) flags=$(cat $d/flags)"
}

# show_link IFACE: `ip link show IFACE`, then the sysfs attributes the
# harness reads, one per line as `sysfs:NAME=VALUE` (empty when unreadable:
# `carrier` cannot be read while the interface is down). `features` is the
# virtio device's negotiated feature bits, one 0/1 character per bit, bit 0
# first.
show_link() {
    d=/sys/class/net/$1
    ip link show "$1" || return 1
    echo "sysfs:operstate=$(cat "$d/operstate" 2>/dev/null)"
    echo "sysfs:carrier=$(cat "$d/carrier" 2>/dev/null)"
    echo "sysfs:carrier_changes=$(cat "$d/carrier_changes" 2>/dev/null)"
    echo "sysfs:features=$(cat "$d/device/features" 2>/dev/null)"
}

# wait_carrier IFACE 0|1 [SECS]: waits until the carrier is off (0) or on
# (1), e.g. after the host changed the device's link. An interface that is
# administratively down has no readable carrier: then it waits one second
# and says so.
wait_carrier() {
    d=/sys/class/net/$1
    if [ $(( $(cat "$d/flags") & 1 )) = 0 ]; then
        echo "wait_carrier: $1 is administratively down, its carrier cannot be read; waited 1 s instead"
        sleep 1
        return 0
    fi
    i=0
    limit=$(( ${3:-10} * 10 ))
    while [ "$(cat "$d/carrier" 2>/dev/null)" != "$2" ]; do
        i=$((i + 1))
        [ "$i" -gt "$limit" ] && { echo "wait_carrier: the carrier of $1 is $(cat "$d/carrier" 2>&1), not $2, after ${3:-10} s"; return 1; }
        usleep 100000
    done
}

# reload_virtio_net IFACE: unloads and reloads the virtio_net driver and
# waits for IFACE to come back: `rmmod virtio_net; modprobe virtio_net`
# when it is a module (Debian kernels), else (built in: the test kernel)
# unbinds and binds the virtio device of IFACE through sysfs. Says which.
reload_virtio_net() {
    if grep -qs '^virtio_net ' /proc/modules; then
        echo "reload_virtio_net: module: rmmod virtio_net; modprobe virtio_net"
        rmmod virtio_net || return 1
        modprobe virtio_net || return 1
    else
        dev=$(basename "$(readlink "/sys/class/net/$1/device")")
        [ -n "$dev" ] || { echo "reload_virtio_net: $1 has no device"; return 1; }
        echo "reload_virtio_net: built in: unbind and bind $dev"
        echo "$dev" > /sys/bus/virtio/drivers/virtio_net/unbind || return 1
        echo "$dev" > /sys/bus/virtio/drivers/virtio_net/bind || return 1
    fi
    wait_iface "$1" 30
}
