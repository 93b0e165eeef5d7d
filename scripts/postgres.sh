#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests and benchmarks: a new cluster in DIR, listening on
# 127.0.0.1:PORT only (trust authentication for the role `mosaic`, which may create databases).
#   scripts/postgres.sh start DIR [PORT]   prints the DATABASE_URL to use
#   scripts/postgres.sh stop DIR
# Uses Debian's postgresql server binaries (scripts/setup.sh installs them). As root the
# cluster runs as the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail
cmd="${1:?start or stop}" dir="${2:?data folder}" port="${3:-54329}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -e "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U mosaic -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # A test cluster: fsync off (it is thrown away; the catalog's own durability is
    # PostgreSQL's default on a real server), sockets in DIR, TCP on loopback only.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://mosaic@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -e "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *) echo "start or stop" >&2; exit 2 ;;
esac
