#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1, with its data under a folder of ours.
#
#   bash scripts/postgres.sh start DIR   # installs PostgreSQL if missing (root + apt), starts it,
#                                        # creates role and database, prints the URL on stdout
#   bash scripts/postgres.sh stop DIR    # stops it (DIR is left for the caller to remove)
#
# Exits non-zero, saying why on stderr, when PostgreSQL cannot be installed or started; the caller
# (scripts/test.sh) decides whether that skips the PostgreSQL tests or fails the run (CI=true).
set -euo pipefail

action="${1:-}"
dir="${2:-}"
if [ -z "$action" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 64
fi

say() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$found" ] && [ -x "$found/pg_ctl" ]; then
    echo "$found"
  elif command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
  fi
}

# As root, the server runs as the postgres user (initdb refuses root); otherwise as ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if [ "$action" = stop ]; then
  bin="$(pg_bindir)"
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  exit 0
fi

if [ "$action" != start ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 64
fi

bin="$(pg_bindir)"
if [ -z "$bin" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
    exit 1
  fi
  say "installing PostgreSQL (apt-get) …"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # postgresql-common's hook would create and start a cluster on 5432; ours is private
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/esm-no-main.conf
  apt-get install -y -qq --no-install-recommends postgresql >&2
  bin="$(pg_bindir)"
  if [ -z "$bin" ]; then
    say "apt-get installed postgresql but pg_ctl was not found"
    exit 1
  fi
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="esm-test-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$dir"
fi
chmod 700 "$dir"

printf '%s\n' "$password" > "$dir/pwfile.tmp"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$dir/pwfile.tmp"
fi
as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile.tmp" -A scram-sha-256 \
  --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
  say "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pwfile.tmp"
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null || { say "the server did not start:"; cat "$dir/server.log" >&2; exit 1; }

# esm may create roles: the Lakebase test makes one whose password it rotates (ALTER ROLE … PASSWORD)
psql_local() { as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql_local -d postgres -c "CREATE ROLE esm LOGIN CREATEROLE PASSWORD '$password'" >&2
psql_local -d postgres -c "CREATE DATABASE esm_test OWNER esm" >&2
echo "postgresql://esm:$password@127.0.0.1:$port/esm_test"
