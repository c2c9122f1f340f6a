#!/bin/sh
# ISC dhcpd hook, called by execute() from `on commit`, `on release` and `on expiry` (see
# README.md for the dhcpd.conf lines) as:  isc-dhcpd.sh commit|release|expiry IP MAC [HOSTNAME]
# dhcpd waits for this script with the whole server blocked: racklift only spools the event
# and returns. Settings may come from isc-dhcpd.env beside this script.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
RACKLIFT=/usr/local/bin/racklift
RACKLIFT_CONFIG=/etc/racklift/racklift.yaml
env_file="${0%.sh}.env"
[ -r "$env_file" ] && . "$env_file"

case "$1" in
  commit) event=commit ;;
  release) event=release ;;
  expiry) event=expire ;;
  *) echo "isc-dhcpd.sh: unknown event '$1' (expected commit, release or expiry)" >&2; exit 2 ;;
esac
exec "$RACKLIFT" --config "$RACKLIFT_CONFIG" dhcp-lease --server isc-dhcpd \
  --event "$event" --ip "$2" --mac "$3" --hostname "${4:-}"
