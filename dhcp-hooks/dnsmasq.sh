#!/bin/sh
# dnsmasq hook (--dhcp-script, with --script-on-renewal), called as:
#   dnsmasq.sh add|old|del MAC IP [HOSTNAME]
# `old` is a renewal, or a lease replayed when dnsmasq restarts: both are renewals to racklift
# (nothing new, nothing written). `del` is a release or an expiry: an expiry is the one whose
# DNSMASQ_LEASE_EXPIRES has come. Settings may come from dnsmasq.env beside this script.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
RACKLIFT=/usr/local/bin/racklift
RACKLIFT_CONFIG=/etc/racklift/racklift.yaml
env_file="${0%.sh}.env"
[ -r "$env_file" ] && . "$env_file"

case "$1" in
  add) event=commit ;;
  old) event=renew ;;
  del)
    event=release
    if [ -n "${DNSMASQ_LEASE_EXPIRES:-}" ] && [ "$DNSMASQ_LEASE_EXPIRES" -le "$(date +%s)" ]; then
      event=expire
    fi ;;
  tftp|init|arp|arp-add|arp-del|relay-snoop) exit 0 ;;
  *) echo "dnsmasq.sh: unknown action '$1'" >&2; exit 2 ;;
esac
exec "$RACKLIFT" --config "$RACKLIFT_CONFIG" dhcp-lease --server dnsmasq \
  --event "$event" --mac "$2" --ip "$3" --hostname "${4:-}"
