#!/bin/sh
# Start vsftpd under sockexit: every accept, connect and listen it makes is decided by
# the policy (see vsftpd.yaml beside this script), and a refused client is reset
# before vsftpd sends its banner.
#
# Usage: vsftpd.sh [vsftpd arguments]        e.g. vsftpd.sh /etc/vsftpd.conf
#
# Environment (all optional):
#   SOCKEXIT_POLICY  policy file             (default /etc/sockexit/vsftpd.yaml)
#   SOCKEXIT         the sockexit command    (default: sockexit from PATH)
#   VSFTPD           the daemon              (default /usr/sbin/vsftpd)
#
# `sockexit run` checks the policy first and refuses to start vsftpd on an invalid
# one; it then execs vsftpd (same pid), so this script works as ExecStart= or from an
# init script. Use `background=NO` in vsftpd.conf under systemd's Type=simple.
set -eu
: "${SOCKEXIT:=sockexit}"
: "${SOCKEXIT_POLICY:=/etc/sockexit/vsftpd.yaml}"
: "${VSFTPD:=/usr/sbin/vsftpd}"
exec "$SOCKEXIT" run --policy "$SOCKEXIT_POLICY" -- "$VSFTPD" "$@"
