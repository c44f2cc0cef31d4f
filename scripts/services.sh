#!/usr/bin/env bash
# Makes sure the services the tests need are installed and running on this
# machine: PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
# Prints the export lines for their URLs. Idempotent; run as root to install.
set -euo pipefail

log() { echo "services: $*" >&2; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

# --- PostgreSQL -------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  apt_install postgresql postgresql-client
fi
if ! pg_up; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi

pg_url="postgres://postgres@127.0.0.1:5432/postgres"
if pg_up && ! psql "$pg_url" -Atqc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian install asks for a password on TCP: give the postgres
  # role a known one (through the local socket, as the postgres OS user).
  log "setting a password for the postgres role"
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  pg_url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
fi

# --- Redis ------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
if ! redis_up; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
fi

status=0
if psql "$pg_url" -Atqc 'select 1' >/dev/null 2>&1; then
  log "PostgreSQL reachable at 127.0.0.1:5432"
else
  log "PostgreSQL is NOT reachable at 127.0.0.1:5432"; status=1
fi
if redis_up; then
  log "Redis reachable at 127.0.0.1:6379"
else
  log "Redis is NOT reachable at 127.0.0.1:6379"; status=1
fi

echo "export MONITOR_TEST_POSTGRES_URL='$pg_url'"
echo "export MONITOR_TEST_REDIS_URL='redis://127.0.0.1:6379'"
exit $status
