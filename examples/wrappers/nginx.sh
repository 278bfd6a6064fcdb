#!/bin/sh
# Start nginx under sockexit: listen only on the web ports, refuse block-listed peers
# before nginx reads a byte, and connect to the upstream only (see nginx.yaml).
#
# Usage: nginx.sh [nginx arguments]          e.g. nginx.sh -g 'daemon off;'
#
# Environment (all optional):
#   SOCKEXIT_POLICY  policy file             (default /etc/sockexit/nginx.yaml)
#   SOCKEXIT         the sockexit command    (default: sockexit from PATH)
#   NGINX            the daemon              (default /usr/sbin/nginx)
#
# The master process and its workers all inherit the preload: the master's listen
# and the workers' accept and connect are all decided by the policy. Reloads (HUP)
# keep it; a binary upgrade (USR2) re-executes nginx with the same environment.
set -eu
: "${SOCKEXIT:=sockexit}"
: "${SOCKEXIT_POLICY:=/etc/sockexit/nginx.yaml}"
: "${NGINX:=/usr/sbin/nginx}"
exec "$SOCKEXIT" run --policy "$SOCKEXIT_POLICY" -- "$NGINX" "$@"
