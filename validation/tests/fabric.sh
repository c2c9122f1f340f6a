#!/bin/bash
# Live check of validation/racklift-validate against real lldpd (as root; needs lldpd, iproute2,
# jq, dmidecode): a "switch" and a "server" network namespace joined by veths, lldpd in each with
# its own socket and configuration (the commands tests/common/lldp.rs uses), and the script run
# with --dry-run in the server namespace. Checks the report's lldp array (and nics) for 1 and 2
# neighbours, then for two neighbours on one port (a second switch behind a bridge that forwards
# LLDP). Everything it creates is removed on exit. Prints "N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$here/../racklift-validate
dump=$here/../../tests/fixtures/smbios-lab.bin
base=rlfx$(($$ % 10000))
sw=${base}sw
srv=${base}sv
sw2=${base}s2
# lldpcli is setuid _lldpd, and lldpd applies its -O file through it: sockets and configurations
# must be in a directory _lldpd can enter (mktemp -d makes it 0700).
run=$(mktemp -d "/tmp/$base.XXXXXX")
chmod 755 "$run"
pids=()
passed=0
failed=0

cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "$sw" "$srv" "$sw2"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf -- "$run"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || {
    echo "fabric.sh must run as root" >&2
    exit 2
}
if [[ -e /run/lldpd.socket ]]; then
    echo "note: a host lldpd runs; this check uses its own sockets only" >&2
fi

for ns in "$sw" "$srv" "$sw2"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

# link SERVER_IF SERVER_MAC SWITCH_PORT SWITCH_MAC
link() {
    ip link add name "$1" address "$2" netns "$srv" type veth peer name "$3" address "$4" netns "$sw"
    ip -n "$sw" link set "$3" up
    ip -n "$srv" link set "$1" up
}

# lldpd ROLE NS CONFIG_LINES...
lldpd_start() {
    local role=$1 ns=$2
    shift 2
    printf '%s\n' "$@" >"$run/$role.conf"
    chmod 644 "$run/$role.conf"
    ip netns exec "$ns" lldpd -d -u "$run/$role.sock" -O "$run/$role.conf" >"$run/$role.log" 2>&1 &
    pids+=($!)
}

lldpd_ready() {
    local role _
    for _ in $(seq 150); do
        local ready=1
        for role in "$@"; do
            grep -q 'lldpd should resume operations' "$run/$role.log" 2>/dev/null || ready=0
        done
        ((ready)) && return 0
        sleep 0.1
    done
    echo "lldpd did not apply its configuration:" >&2
    for role in "$@"; do cat "$run/$role.log" >&2; done
    return 1
}

# wait_neighbours N [PORTS]: the server's lldpd knows N neighbours (on PORTS, comma-separated).
wait_neighbours() {
    local n _
    for _ in $(seq 150); do
        n=$(lldpcli -u "$run/server.sock" -f json0 show neighbors ${2:+ports "$2"} 2>/dev/null |
            jq '[.lldp[]?.interface[]?] | length')
        [[ $n == "$1" ]] && return 0
        sleep 0.1
    done
    echo "the server saw ${n:-no} neighbours, expected $1" >&2
    return 1
}

# wait_up NS IF...: the operstate of each is UP (it lags the carrier by up to a second).
wait_up() {
    local ns=$1 _
    shift
    for _ in $(seq 50); do
        [[ $(ip -j -n "$ns" link show | jq --args '[.[] | select(.ifname == ($ARGS.positional[]))
            | select(.operstate == "UP")] | length' "$@") == "$#" ]] && return 0
        sleep 0.1
    done
    return 1
}

validate() {
    ip netns exec "$srv" "$script" --config /dev/null --cmdline /dev/null --dmidecode-dump "$dump" \
        --lldpcli-socket "$run/server.sock" --lldp-wait 5 --dry-run >"$run/out" 2>"$run/err"
}

check() { # NAME JQ_FILTER
    if jq -e "$2" "$run/out" >/dev/null; then
        echo "ok: $1"
        passed=$((passed + 1))
    else
        echo "FAIL: $1"
        echo "  filter: $2"
        echo "  lldp: $(jq -c '.lldp' "$run/out")"
        echo "  nics: $(jq -c '.nics' "$run/out")"
        sed 's/^/  stderr: /' "$run/err"
        failed=$((failed + 1))
    fi
}

# 1 neighbour.
link eth0 02:00:00:00:01:00 swp1 02:00:00:00:00:01
lldpd_start switch "$sw" "configure system hostname sw-lab-01" "configure lldp portidsubtype ifname" \
    "configure lldp tx-interval 1" 'configure ports swp1 lldp portdescription "swp1 to srv eth0"'
lldpd_start server "$srv" "configure system hostname srv-lab-01" "configure lldp tx-interval 1"
lldpd_ready switch server || exit 1
wait_neighbours 1 && wait_up "$srv" eth0 || exit 1
validate
check "1 neighbour" '.lldp == [{interface: "eth0", chassis_name: "sw-lab-01", chassis_id: "02:00:00:00:00:01",
    port_id: "swp1", port_id_type: "ifname", port_description: "swp1 to srv eth0"}]
    and .nics == [{name: "eth0", mac: "02:00:00:00:01:00", speed_mbps: 10000, operstate: "UP"}]'

# 2 neighbours: a second link while lldpd runs. lldpd picks the new port up, but a -O file's
# `configure ports swp2 ...` would have been ignored (no swp2 then), and so is a runtime one
# until lldpd has noticed the port: describe it once the server hears it.
link eth1 02:00:00:00:01:01 swp2 02:00:00:00:00:02
wait_neighbours 2 && wait_up "$srv" eth0 eth1 || exit 1
lldpcli -u "$run/switch.sock" configure ports swp2 lldp portdescription "swp2 to srv eth1" >/dev/null
for _ in $(seq 50); do
    lldpcli -u "$run/server.sock" -f json0 show neighbors ports eth1 | grep -q '"swp2 to srv eth1"' && break
    sleep 0.1
done
validate
check "2 neighbours" '.lldp == [
    {interface: "eth0", chassis_name: "sw-lab-01", chassis_id: "02:00:00:00:00:01", port_id: "swp1", port_id_type: "ifname", port_description: "swp1 to srv eth0"},
    {interface: "eth1", chassis_name: "sw-lab-01", chassis_id: "02:00:00:00:00:01", port_id: "swp2", port_id_type: "ifname", port_description: "swp2 to srv eth1"}]
    and (.nics | map(.name) == ["eth0", "eth1"])'

# An admin-down NIC: no speed (EINVAL), operstate DOWN, its neighbour gone; the script waits
# --lldp-wait only for NICs that are up.
ip -n "$srv" link set eth1 down
wait_neighbours 1 || exit 1
validate
check "admin-down NIC" '(.nics[1] == {name: "eth1", mac: "02:00:00:00:01:01", speed_mbps: null, operstate: "DOWN"})
    and (.lldp | map(.interface) == ["eth0"])'
ip -n "$srv" link set eth1 up

# 2 neighbours on one port: eth2 -> swp3 on a bridge (forwarding LLDP) with a second switch behind it.
link eth2 02:00:00:00:01:02 swp3 02:00:00:00:00:03
ip link add name p1 address 02:00:00:00:02:01 netns "$sw2" type veth peer name swp9 netns "$sw"
ip -n "$sw" link add br0 type bridge
ip netns exec "$sw" sh -c 'echo 0x4000 > /sys/class/net/br0/bridge/group_fwd_mask'
ip -n "$sw" link set swp3 master br0
ip -n "$sw" link set swp9 master br0
ip -n "$sw" link set swp9 up
ip -n "$sw" link set br0 up
ip -n "$sw2" link set p1 up
lldpd_start switch2 "$sw2" "configure system hostname sw-lab-02" "configure lldp portidsubtype ifname" \
    "configure lldp tx-interval 1" 'configure ports p1 lldp portdescription "p1 behind a bridge"'
lldpd_ready switch2 || exit 1
wait_neighbours 4 && wait_up "$srv" eth0 eth1 eth2 || exit 1
validate
check "2 neighbours on one port" '(.lldp | length == 4)
    and (.lldp | map(select(.interface == "eth2")) | sort_by(.chassis_name) == [
      {interface: "eth2", chassis_name: "sw-lab-01", chassis_id: "02:00:00:00:00:01", port_id: "swp3", port_id_type: "ifname", port_description: "swp3"},
      {interface: "eth2", chassis_name: "sw-lab-02", chassis_id: "02:00:00:00:02:01", port_id: "p1", port_id_type: "ifname", port_description: "p1 behind a bridge"}])'

# lldpd gone: the script says so (after --lldp-wait) instead of reporting no neighbours.
rc=0
ip netns exec "$srv" "$script" --config /dev/null --cmdline /dev/null --dmidecode-dump "$dump" \
    --lldpcli-socket "$run/nothing.sock" --lldp-wait 1 --dry-run >"$run/out" 2>"$run/err" || rc=$?
if [[ $rc == 4 ]] && grep -q 'cannot list the LLDP neighbours (is lldpd running?)' "$run/err"; then
    echo "ok: no lldpd"
    passed=$((passed + 1))
else
    echo "FAIL: no lldpd (exit $rc): $(cat "$run/err")"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
((failed == 0))
