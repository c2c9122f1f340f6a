#!/bin/sh
# Kea DHCPv4 hook (libdhcp_run_script.so): maps Kea's hook point and LEASE4_*/LEASES4_*
# variables to `racklift dhcp-lease`, which spools the event and returns at once.
# Kea gives a hook no PATH and no other environment; the settings below come from a file
# beside this script (kea.env: RACKLIFT=/path/to/racklift, RACKLIFT_CONFIG=/path/to/config).
# Kea runs hooks concurrently and ignores their exit code; racklift's spool copes with both.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
RACKLIFT=/usr/local/bin/racklift
RACKLIFT_CONFIG=/etc/racklift/racklift.yaml
env_file="${0%.sh}.env"
[ -r "$env_file" ] && . "$env_file"

lease() { exec "$RACKLIFT" --config "$RACKLIFT_CONFIG" dhcp-lease --server kea "$@"; }

case "$1" in
  leases4_committed)
    # A new lease; a release also arrives here with LEASES4_SIZE=0 and is handled below.
    [ "${LEASES4_SIZE:-0}" -ge 1 ] || exit 0
    lease --event commit --mac "$LEASES4_AT0_HWADDR" --ip "$LEASES4_AT0_ADDRESS" \
      --hostname "${LEASES4_AT0_HOSTNAME:-}" ;;
  lease4_renew)
    lease --event renew --mac "$LEASE4_HWADDR" --ip "$LEASE4_ADDRESS" --hostname "${LEASE4_HOSTNAME:-}" \
      --subnet "${SUBNET4_PREFIX:+$SUBNET4_PREFIX/$SUBNET4_PREFIX_LEN}" ;;
  lease4_release)
    lease --event release --mac "$LEASE4_HWADDR" --ip "$LEASE4_ADDRESS" --hostname "${LEASE4_HOSTNAME:-}" ;;
  lease4_expire)
    lease --event expire --mac "$LEASE4_HWADDR" --ip "$LEASE4_ADDRESS" --hostname "${LEASE4_HOSTNAME:-}" ;;
  *) exit 0 ;;
esac
