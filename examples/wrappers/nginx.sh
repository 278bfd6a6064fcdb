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
# `sockexit run` checks the policy and that nginx is a program LD_PRELOAD can reach
# (dynamically linked, not set-user-ID), then execs it with the library preloaded.
# The master's listen and the workers' accept and connect are all decided by the
# policy: workers are forked, so they are the same program with the same library.
# Reloads (HUP) keep it: the master does not exec.
#
# A binary upgrade (USR2) does exec: the master re-executes nginx with an environment
# it rebuilds, keeping only TZ and the variables named by `env` directives. The
# library puts LD_PRELOAD and SOCKEXIT_POLICY back into the environment of every
# exec that lacks them (or names another policy), so the new master and its workers run under the same policy
# (tests/nginx_upgrade.rs). As belt and braces, keep them in nginx.conf too (main
# context):
#   env LD_PRELOAD;
#   env SOCKEXIT_POLICY;
set -eu
: "${SOCKEXIT:=sockexit}"
: "${SOCKEXIT_POLICY:=/etc/sockexit/nginx.yaml}"
: "${NGINX:=/usr/sbin/nginx}"
exec "$SOCKEXIT" run --policy "$SOCKEXIT_POLICY" -- "$NGINX" "$@"
