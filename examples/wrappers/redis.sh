#!/bin/sh
# Start redis-server under sockexit: clients from the application servers only, and
# no outgoing connection except replication from the primary (see redis.yaml).
#
# Usage: redis.sh [redis-server arguments]   e.g. redis.sh /etc/redis/redis.conf
#
# Environment (all optional):
#   SOCKEXIT_POLICY  policy file             (default /etc/sockexit/redis.yaml)
#   SOCKEXIT         the sockexit command    (default: sockexit from PATH)
#   REDIS_SERVER     the daemon              (default /usr/bin/redis-server)
#
# Unix-socket clients (unixsocket in redis.conf) are not IP and pass untouched.
set -eu
: "${SOCKEXIT:=sockexit}"
: "${SOCKEXIT_POLICY:=/etc/sockexit/redis.yaml}"
: "${REDIS_SERVER:=/usr/bin/redis-server}"
exec "$SOCKEXIT" run --policy "$SOCKEXIT_POLICY" -- "$REDIS_SERVER" "$@"
