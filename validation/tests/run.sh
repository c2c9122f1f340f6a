#!/bin/bash
# Self-test of validation/racklift-validate: fixture inputs (SMBIOS dump, lldpcli JSON, ip link,
# lsblk, a fake sysfs), and posting to a small HTTP server on 127.0.0.1 (retries on 503, stops on
# 401, gives up when nothing listens). Needs bash, jq, curl, dmidecode and python3; no root.
# Prints "N passed, M failed" and exits 0 only when every test passed.
# shellcheck disable=SC2016 # $names in single quotes are jq variables
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$here/../racklift-validate
fx=$here/fixtures
dump=$here/../../tests/fixtures/smbios-lab.bin
work=$(mktemp -d "${TMPDIR:-/tmp}/racklift-validate-test.XXXXXX")
server_pid=
cleanup() {
    stop_server
    rm -rf -- "$work"
}
trap cleanup EXIT

passed=0
failed=0
failures=()

# fail MESSAGE: the current test fails (it goes on, so one run shows every broken assertion).
fail() {
    printf '    FAIL: %s\n' "$*"
    test_failed=1
}

run_test() {
    local name=$1
    test_failed=0
    printf '%s\n' "$name"
    "$name"
    if ((test_failed)); then
        failed=$((failed + 1))
        failures+=("$name")
        if [[ -s $work/err ]]; then
            printf '    stderr of the last run:\n'
            sed 's/^/      /' "$work/err"
        fi
    else
        passed=$((passed + 1))
    fi
}

# A fake /sys/class/net: eth0 at 10000, eth1 reporting -1 (no link), eth2 unreadable (EINVAL
# when admin-down on a real one: here a directory, which cat cannot read).
sysfs=$work/sysfs
mkdir -p "$sysfs/eth0" "$sysfs/eth1" "$sysfs/eth2/speed" "$sysfs/lo" "$sysfs/br9"
echo 10000 >"$sysfs/eth0/speed"
echo -1 >"$sysfs/eth1/speed"
echo 10 >"$sysfs/br9/speed"

# validate ARGS...: runs the script on fixtures (no config file, no kernel command line),
# stdout to $work/out, stderr to $work/err, exit code in $rc.
validate() {
    rc=0
    "$script" --config /dev/null --cmdline /dev/null --dmidecode-dump "$dump" \
        --ip-link-json "$fx/ip-link-d.json" --sysfs-net "$sysfs" \
        --lsblk-json "$fx/lsblk-server.json" --lldp-json "$fx/lldp-json0-0nbr.json" \
        "$@" >"$work/out" 2>"$work/err" || rc=$?
}

# expect_rc N: the last run exited N.
expect_rc() {
    [[ $rc == "$1" ]] || fail "exit code $rc, expected $1"
}

# expect_jq FILTER [JQ ARGS...]: FILTER is true of the last run's stdout.
expect_jq() {
    local filter=$1
    shift
    if ! jq -e "$@" "$filter" "$work/out" >/dev/null 2>&1; then
        fail "jq: $filter"
        printf '    got: %s\n' "$(jq -c . "$work/out" 2>/dev/null | head -c 2000 || head -c 500 "$work/out")"
    fi
}

# expect_lldp FIXTURE EXPECTED_JSON: the report's lldp array for that lldpcli output.
expect_lldp() {
    validate --dry-run --lldp-json "$1"
    expect_rc 0
    expect_jq '.lldp == $want' --argjson want "$2"
}

expect_err() {
    grep -q -- "$1" "$work/err" || fail "stderr lacks '$1'"
}

# --- inventory from fixtures ---------------------------------------------------------------------

test_smbios_dump() {
    validate --dry-run
    expect_rc 0
    expect_jq '.version == 1 and .serial == "SN-LAB-0001"'
    expect_jq '.system == {manufacturer: "Acme Corp", product: "LabServer 1000", uuid: "12345678-1234-5678-9abc-def012345678"}'
    expect_jq '.cpus == {sockets: 1, cores: 16, threads: 32, model: "Intel(R) Xeon(R) Lab CPU @ 2.40GHz"}'
    # One 16 GB module; the empty slot ("No Module Installed") does not count.
    expect_jq '.memory_bytes == 17179869184'
    expect_jq 'keys == ["cpus", "disks", "lldp", "memory_bytes", "nics", "serial", "system", "version"]'
}

# An older dmidecode (sizes in MB), two sockets of which one is empty, placeholders.
test_dmidecode_text_older_format() {
    local bin=$work/bin-old
    mkdir -p "$bin"
    cat >"$bin/dmidecode" <<'EOF'
#!/bin/bash
args=" $* "
case $args in
*" -s system-serial-number "*) echo "  CZ1234ABCD  " ;;
*" -s system-manufacturer "*) echo "HPE" ;;
*" -s system-product-name "*) echo "To Be Filled By O.E.M." ;;
*" -s system-uuid "*) echo "Not Settable" ;;
*" -t processor "*) printf '%s\n' "# dmidecode 3.1" "Getting SMBIOS data from sysfs." "SMBIOS 2.8 present." "" \
    "Handle 0x0400, DMI type 4, 42 bytes" "Processor Information" $'\tSocket Designation: Proc 1' \
    $'\tVersion: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz  ' $'\tStatus: Populated, Enabled' \
    $'\tCore Count: 20' $'\tCore Enabled: 20' $'\tThread Count: 40' $'\tCharacteristics:' $'\t\t64-bit capable' "" \
    "Handle 0x0401, DMI type 4, 42 bytes" "Processor Information" $'\tSocket Designation: Proc 2' \
    $'\tVersion: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz' $'\tStatus: Populated, Enabled' \
    $'\tCore Count: 20' $'\tThread Count: 40' "" \
    "Handle 0x0402, DMI type 4, 42 bytes" "Processor Information" $'\tSocket Designation: Proc 3' \
    $'\tVersion: Not Specified' $'\tStatus: Unpopulated' "" ;;
*" -t memory "*) printf '%s\n' "# dmidecode 3.1" "" \
    "Handle 0x1000, DMI type 16, 23 bytes" "Physical Memory Array" $'\tMaximum Capacity: 3 TB' "" \
    "Handle 0x1100, DMI type 17, 84 bytes" "Memory Device" $'\tSize: 16384 MB' $'\tVolatile Size: 16 GB' $'\tLocator: PROC 1 DIMM 1' "" \
    "Handle 0x1101, DMI type 17, 84 bytes" "Memory Device" $'\tSize: No Module Installed' "" \
    "Handle 0x1102, DMI type 17, 84 bytes" "Memory Device" $'\tSize: 32 GB' $'\tCache Size: None' "" \
    "Handle 0x1103, DMI type 17, 84 bytes" "Memory Device" $'\tSize: 512 MB' "" \
    "Handle 0x1300, DMI type 19, 31 bytes" "Memory Array Mapped Address" $'\tRange Size: 48 GB' "" ;;
*) exit 1 ;;
esac
EOF
    chmod +x "$bin/dmidecode"
    rc=0
    PATH=$bin:$PATH "$script" --config /dev/null --cmdline /dev/null --ip-link-json "$fx/ip-link-d.json" \
        --sysfs-net "$sysfs" --lsblk-json "$fx/lsblk-server.json" --lldp-json "$fx/lldp-json0-0nbr.json" \
        --dry-run >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    expect_jq '.serial == "CZ1234ABCD"'
    expect_jq '.system == {manufacturer: "HPE", product: null, uuid: null}'
    expect_jq '.cpus == {sockets: 2, cores: 40, threads: 80, model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"}'
    expect_jq '.memory_bytes == (16384 + 32768 + 512) * 1048576'
}

test_no_smbios() {
    local bin=$work/bin-none
    mkdir -p "$bin"
    printf '%s\n' '#!/bin/sh' 'echo "# dmidecode 3.4"' 'echo "/dev/mem: No such file or directory" >&2' 'exit 1' >"$bin/dmidecode"
    chmod +x "$bin/dmidecode"
    rc=0
    PATH=$bin:$PATH "$script" --config /dev/null --cmdline /dev/null --ip-link-json "$fx/ip-link-d.json" \
        --lsblk-json "$fx/lsblk-server.json" --lldp-json "$fx/lldp-json0-0nbr.json" \
        --dry-run >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 4
    expect_err 'cannot read the SMBIOS system serial number: dmidecode: /dev/mem: No such file or directory'
    [[ ! -s $work/out ]] || fail "printed a report without a serial"
}

test_nics() {
    validate --dry-run
    expect_rc 0
    # lo (loopback) and br9 (a bridge) are left out; the veths stay; speeds from the fake sysfs.
    expect_jq '.nics == [
        {name: "eth0", mac: "02:00:00:00:01:00", speed_mbps: 10000, operstate: "UP"},
        {name: "eth1", mac: "02:00:00:00:01:01", speed_mbps: null, operstate: "UP"},
        {name: "eth2", mac: "02:00:00:00:01:02", speed_mbps: null, operstate: "DOWN"}]'
}

test_nics_bond_slave_permaddr() {
    jq '[.[] | select(.ifname == "eth0") | .permaddr = "0C:C4:7A:00:00:01" | .address = "0e:aa:bb:cc:dd:ee",
         {ifname: "bond0", link_type: "ether", address: "0e:aa:bb:cc:dd:ee", operstate: "UP", linkinfo: {info_kind: "bond"}},
         {ifname: "tap0", link_type: "ether", address: "0e:aa:bb:cc:dd:ef", operstate: "UP", linkinfo: {info_kind: "tun"}},
         {ifname: "ib0", link_type: "infiniband", address: "00:00:00:00", operstate: "UP"}]' \
        "$fx/ip-link-d.json" >"$work/links-bond.json"
    validate --dry-run --ip-link-json "$work/links-bond.json"
    expect_rc 0
    expect_jq '.nics == [{name: "eth0", mac: "0c:c4:7a:00:00:01", speed_mbps: 10000, operstate: "UP"}]'
}

test_disks() {
    validate --dry-run
    expect_rc 0
    # loop, rom, zram and a 0-byte disk are left out; partitions are not disks.
    expect_jq '.disks == [
        {name: "sda", model: "ST4000NM000A-2HZ100", serial: "WX41A12B3C4D", size_bytes: 4000787030016, rotational: true},
        {name: "nvme0n1", model: "SAMSUNG MZQL2960HCJR-00A07", serial: "S64FNE0R812345", size_bytes: 960197124096, rotational: false}]'
    validate --dry-run --lsblk-json "$fx/lsblk-old-strings.json"
    expect_rc 0
    expect_jq '.disks == [
        {name: "sda", model: "INTEL SSDSC2KB48", serial: "BTYF12345678480BGN", size_bytes: 480103981056, rotational: false},
        {name: "sdb", model: null, serial: null, size_bytes: 2000398934016, rotational: true}]'
    # This VM (real lsblk output): zram0 has size 0, vda has no model or serial.
    validate --dry-run --lsblk-json "$fx/lsblk-vm.json"
    expect_rc 0
    expect_jq '.disks == [{name: "vda", model: null, serial: null, size_bytes: 274877906944, rotational: true}]'
}

# --- LLDP ------------------------------------------------------------------------------------------

sw1_a8='"chassis_name": "sw-lab-01", "chassis_id": "f6:5b:c9:3b:26:a8", "port_id_type": "ifname"'
sw1_59='"chassis_name": "sw-lab-01", "chassis_id": "96:fd:2f:4b:a9:59", "port_id_type": "ifname"'

test_lldp_json0_0() {
    expect_lldp "$fx/lldp-json0-0nbr.json" '[]'
}

test_lldp_json0_1() {
    expect_lldp "$fx/lldp-json0-1nbr.json" \
        "[{\"interface\": \"eth0\", $sw1_a8, \"port_id\": \"swp1\", \"port_description\": \"swp1 to srv eth0\"}]"
}

test_lldp_json0_2() {
    expect_lldp "$fx/lldp-json0-2nbr.json" \
        "[{\"interface\": \"eth0\", $sw1_a8, \"port_id\": \"swp1\", \"port_description\": \"swp1 to srv eth0\"},
          {\"interface\": \"eth1\", $sw1_a8, \"port_id\": \"swp2\", \"port_description\": \"swp2 to srv eth1\"}]"
}

# Real lldpcli output: eth2 hears two switches through a bridge (order as lldpcli lists them).
test_lldp_json0_several_on_one_port() {
    expect_lldp "$fx/lldp-json0-multi.json" \
        "[{\"interface\": \"eth0\", $sw1_a8, \"port_id\": \"swp1\", \"port_description\": \"swp1 to srv eth0\"},
          {\"interface\": \"eth1\", $sw1_a8, \"port_id\": \"swp2\", \"port_description\": \"swp2 to srv eth1\"},
          {\"interface\": \"eth2\", \"chassis_name\": \"sw-lab-02\", \"chassis_id\": \"aa:20:8b:a1:f1:81\", \"port_id_type\": \"ifname\", \"port_id\": \"p1\", \"port_description\": \"p1 behind bridge\"},
          {\"interface\": \"eth2\", $sw1_a8, \"port_id\": \"swp3\", \"port_description\": \"swp3\"}]"
}

# A neighbour that sends no SysName and no port description (the keys are then absent in json0).
test_lldp_json0_no_sysname() {
    jq '.lldp[0].interface[0].chassis[0] |= del(.name) | .lldp[0].interface[0].port[0] |= del(.descr)' \
        "$fx/lldp-json0-1nbr.json" >"$work/nosysname.json"
    expect_lldp "$work/nosysname.json" \
        '[{"interface": "eth0", "chassis_name": null, "chassis_id": "f6:5b:c9:3b:26:a8", "port_id": "swp1", "port_id_type": "ifname", "port_description": null}]'
}

# The older -f json shape (a file given by hand may have it): 0, 1 (an object), 2 (a list),
# several on one port including an unkeyed chassis (no SysName).
test_lldp_json_shapes() {
    expect_lldp "$fx/lldp-json-0nbr.json" '[]'
    expect_lldp "$fx/lldp_sample_1nbr.json" \
        "[{\"interface\": \"eth0\", $sw1_59, \"port_id\": \"swp1\", \"port_description\": \"swp1 to srv eth0\"}]"
    expect_lldp "$fx/lldp_sample_2nbr.json" \
        "[{\"interface\": \"eth0\", $sw1_59, \"port_id\": \"swp1\", \"port_description\": \"swp1 to srv eth0\"},
          {\"interface\": \"eth1\", $sw1_59, \"port_id\": \"swp2\", \"port_description\": \"swp2 to srv eth1\"}]"
    expect_lldp "$fx/lldp_sample_multi_on_eth1.json" \
        '[{"interface": "eth1", "chassis_name": "sw-lab-02", "chassis_id": "96:fd:2f:4b:a9:59", "port_id": "swp2", "port_id_type": "ifname", "port_description": "swp2 to srv eth1"},
          {"interface": "eth1", "chassis_name": null, "chassis_id": "02:00:00:00:aa:00", "port_id": "Ethernet12", "port_id_type": "local", "port_description": "Ethernet12 desc"},
          {"interface": "eth1", "chassis_name": "fake-sw-b", "chassis_id": "02:00:00:00:bb:00", "port_id": "02:00:00:00:00:bb", "port_id_type": "mac", "port_description": null}]'
}

# lldpcli reached through a socket (a stand-in lldpcli on PATH checks -u and -f json0).
test_lldpcli_socket() {
    local bin=$work/bin-lldpcli
    mkdir -p "$bin"
    cat >"$bin/lldpcli" <<EOF
#!/bin/bash
[[ "\$*" == "-u $work/lldpd.sock -f json0 show neighbors" ]] || { echo "unexpected: \$*" >&2; exit 1; }
cat "$fx/lldp-json0-2nbr.json"
EOF
    chmod +x "$bin/lldpcli"
    rc=0
    PATH=$bin:$PATH "$script" --config /dev/null --cmdline /dev/null --dmidecode-dump "$dump" \
        --ip-link-json "$fx/ip-link-d.json" --sysfs-net "$sysfs" --lsblk-json "$fx/lsblk-server.json" \
        --lldpcli-socket "$work/lldpd.sock" --dry-run >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    expect_jq '.lldp | map(.interface) == ["eth0", "eth1"]'
    # A socket nothing listens on: a clear error once --lldp-wait is over.
    rc=0
    "$script" --config /dev/null --cmdline /dev/null --dmidecode-dump "$dump" \
        --ip-link-json "$fx/ip-link-d.json" --lsblk-json "$fx/lsblk-server.json" \
        --lldpcli-socket "$work/nothing.sock" --lldp-wait 0 --dry-run >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 4
    expect_err "lldpcli -u $work/nothing.sock cannot list the LLDP neighbours (is lldpd running?)"
}

# --- settings --------------------------------------------------------------------------------------

test_usage_errors() {
    validate --bogus
    expect_rc 2
    expect_err "unknown argument '--bogus'"
    validate
    expect_rc 2
    expect_err 'no racklift URL'
    validate --url http://127.0.0.1:9
    expect_rc 2
    expect_err 'no validation token'
    validate --url ftp://x --token t
    expect_rc 2
    validate --url http://127.0.0.1:9 --token t --timeout soon
    expect_rc 2
    expect_err 'timeout must be a whole number'
    validate --url http://127.0.0.1:9 --token t --token-file "$work/missing"
    expect_rc 2
    expect_err 'give either a token or a token file'
    validate --url http://127.0.0.1:9 --token-file "$work/missing"
    expect_rc 2
    expect_err "cannot read the token file $work/missing"
    validate --lsblk-json "$work/missing" --dry-run
    expect_rc 2
}

# --- posting ---------------------------------------------------------------------------------------

# start_server CODES [UNIX_SOCKET]: an HTTP server on 127.0.0.1 (or on UNIX_SOCKET) answering POSTs
# with CODES in turn (the last one repeats), recording each request as $work/requests/N.json
# ({path, authorization, content_type, body}).
start_server() {
    rm -rf "$work/requests" "$work/port"
    mkdir -p "$work/requests"
    python3 - "$work/port" "$work/requests" "$@" <<'EOF' >"$work/server.log" 2>&1 &
import http.server, json, os, socketserver, sys
port_file, requests, codes = sys.argv[1], sys.argv[2], [int(c) for c in sys.argv[3].split(",")]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = len(os.listdir(requests))
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(os.path.join(requests, f"{n}.json"), "w") as f:
            json.dump({"path": self.path, "authorization": self.headers.get("Authorization"),
                       "content_type": self.headers.get("Content-Type"), "body": body.decode()}, f)
        code = codes[min(n, len(codes) - 1)]
        answer = json.dumps({"status": code, "error": "bad token" if code == 401 else None}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
if len(sys.argv) > 4:  # a Unix socket
    class Server(socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("unix", 0)
    server = Server(sys.argv[4], Handler)
else:
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]) if len(sys.argv) <= 4 else "unix")
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
EOF
    server_pid=$!
    local _
    for _ in $(seq 100); do
        [[ -s $work/port ]] && break
        sleep 0.05
    done
    [[ -s $work/port ]] || { fail "the test server did not start: $(cat "$work/server.log")"; return; }
    url=http://127.0.0.1:$(cat "$work/port")
}

stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}

requests() { find "$work/requests" -name '*.json' | wc -l; }

token_never_printed() {
    ! grep -q -- "$1" "$work/out" "$work/err" || fail "the token appears in the output"
}

test_post_retries_503_then_202() {
    start_server 503,503,202
    printf 'secret-token-503\n' >"$work/token"
    local start=$SECONDS
    validate --url "$url/" --token-file "$work/token" --timeout 60
    local took=$((SECONDS - start))
    stop_server
    expect_rc 0
    [[ $(requests) == 3 ]] || fail "$(requests) requests, expected 3"
    # Backoff 1 s then 2 s.
    ((took >= 3 && took <= 8)) || fail "took ${took}s, expected about 3 s"
    expect_err 'attempt 1 to post to .*/v1/validation failed (HTTP 503.*retrying in 1s'
    expect_err 'attempt 2 .*retrying in 2s'
    expect_err 'racklift accepted the report (HTTP 202, attempt 3)'
    local r=$work/requests/2.json
    jq -e '.path == "/v1/validation" and .authorization == "Bearer secret-token-503" and .content_type == "application/json"' "$r" >/dev/null ||
        fail "request: $(cat "$r")"
    # What it printed is what it sent.
    jq -e --slurpfile printed "$work/out" '(.body | fromjson) == $printed[0]' "$r" >/dev/null ||
        fail "the printed report differs from the posted one"
    expect_jq '.serial == "SN-LAB-0001"'
    token_never_printed secret-token-503
}

test_post_stops_on_401() {
    start_server 401
    local start=$SECONDS
    validate --url "$url" --token wrong-token-401 --timeout 60
    local took=$((SECONDS - start))
    stop_server
    expect_rc 3
    [[ $(requests) == 1 ]] || fail "$(requests) requests, expected 1"
    ((took <= 2)) || fail "took ${took}s: it should stop at once"
    expect_err 'racklift refused the report (HTTP 401): {"status": 401, "error": "bad token"}'
    token_never_printed wrong-token-401
}

test_post_retries_429_and_gives_up_on_500() {
    start_server 429,500
    local start=$SECONDS
    validate --url "$url" --token t0k3n-500 --timeout 4
    local took=$((SECONDS - start))
    stop_server
    expect_rc 1
    # 1 s + 2 s of backoff fit in 4 s; the next 4 s would not.
    [[ $(requests) == 3 ]] || fail "$(requests) requests, expected 3"
    ((took <= 6)) || fail "took ${took}s with --timeout 4"
    expect_err 'attempt 1 .*(HTTP 429'
    expect_err 'giving up after 3 attempts in 3s (--timeout 4s); last: HTTP 500'
    token_never_printed t0k3n-500
}

test_post_unreachable_gives_up() {
    # A port nothing listens on (bound and released).
    local closed
    closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local start=$SECONDS
    # Attempts at 0 s, 1 s and 2 s; a fourth would start after 3 s, past the budget.
    validate --url "http://127.0.0.1:$closed" --token t --timeout 3 --max-delay 1
    local took=$((SECONDS - start))
    expect_rc 1
    ((took <= 5)) || fail "took ${took}s with --timeout 3"
    expect_err "giving up after 3 attempts in 2s (--timeout 3s); last: curl: (7) Failed to connect"
    expect_jq '.version == 1'
}

# Through a Unix socket (how the Rust harness reaches racklift from a network namespace).
test_post_through_unix_socket() {
    start_server 200 "$work/racklift.sock"
    validate --url http://racklift.example:8080 --token unix-token --unix-socket "$work/racklift.sock"
    stop_server
    expect_rc 0
    [[ $(requests) == 1 ]] || fail "$(requests) requests, expected 1"
    jq -e '.path == "/v1/validation" and .authorization == "Bearer unix-token"' "$work/requests/0.json" >/dev/null ||
        fail "request: $(cat "$work/requests/0.json")"
}

# The kernel command line wins over the config file, a flag over both.
test_settings_precedence() {
    start_server 202
    printf 'flag-token\n' >"$work/flag-token"
    printf '# racklift\nURL="%s"\nTOKEN=config-token\nTIMEOUT = 30\n' "$url" >"$work/conf"
    printf 'quiet racklift.token=cmdline-token splash\n' >"$work/cmdline"
    local args=(--dmidecode-dump "$dump" --ip-link-json "$fx/ip-link-d.json" --sysfs-net "$sysfs"
        --lsblk-json "$fx/lsblk-server.json" --lldp-json "$fx/lldp-json0-0nbr.json")
    rc=0
    "$script" "${args[@]}" --config "$work/conf" --cmdline /dev/null >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    rc=0
    "$script" "${args[@]}" --config "$work/conf" --cmdline "$work/cmdline" >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    rc=0
    "$script" "${args[@]}" --config "$work/conf" --cmdline "$work/cmdline" --token-file "$work/flag-token" \
        >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    # The URL only from the kernel command line.
    printf 'racklift.url=%s/ racklift.token="quoted-token"\n' "$url" >"$work/cmdline2"
    rc=0
    "$script" "${args[@]}" --config /dev/null --cmdline "$work/cmdline2" >"$work/out" 2>"$work/err" || rc=$?
    expect_rc 0
    stop_server
    local tokens
    tokens=$(jq -r '.authorization' "$work"/requests/{0,1,2,3}.json | tr '\n' ' ')
    [[ $tokens == "Bearer config-token Bearer cmdline-token Bearer flag-token Bearer quoted-token " ]] ||
        fail "tokens sent: $tokens"
}

tests=(
    test_smbios_dump
    test_dmidecode_text_older_format
    test_no_smbios
    test_nics
    test_nics_bond_slave_permaddr
    test_disks
    test_lldp_json0_0
    test_lldp_json0_1
    test_lldp_json0_2
    test_lldp_json0_several_on_one_port
    test_lldp_json0_no_sysname
    test_lldp_json_shapes
    test_lldpcli_socket
    test_usage_errors
    test_post_retries_503_then_202
    test_post_stops_on_401
    test_post_retries_429_and_gives_up_on_500
    test_post_unreachable_gives_up
    test_post_through_unix_socket
    test_settings_precedence
)
if (($#)); then
    tests=("$@")
fi
for t in "${tests[@]}"; do
    t0=$SECONDS
    run_test "$t"
    ((SECONDS - t0 < 2)) || printf '    (%ds)\n' "$((SECONDS - t0))"
done

echo
if ((failed)); then
    printf 'failed: %s\n' "${failures[*]}"
fi
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
