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
