#!/usr/bin/env bash
# The cluster-backend numbers in docs/performance.md, on the 2,000-file benchmark corpus:
#   ingestion with the catalog on PostgreSQL (embedded vectors and BM25), one worker, against
#     the all-embedded `mosaic ingest` (from scripts/bench/run.sh's index when present);
#   search latency with the catalog on PostgreSQL against the all-embedded default;
#   with QDRANT_URL set: ingestion by one and by two `mosaic worker`s sharing Qdrant and the
#     PostgreSQL queue.
# PostgreSQL: $DATABASE_URL (a role that may create databases), else a throwaway server from
# scripts/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="$CARGO_TARGET_DIR/debug/mosaic"
WORK="${BENCH_DIR:-/tmp/mosaic-bench}"
mkdir -p "$WORK"
grep -m1 "model name" /proc/cpuinfo
[ -d "$WORK/corpus" ] || python3 scripts/corpus/make_bench_corpus.py "$WORK/corpus" -n 2000 --seed 1234
if [ -z "${DATABASE_URL:-}" ]; then
  PG_DIR="$(mktemp -d /tmp/mosaic-bench-pg.XXXXXX)"
  trap 'scripts/postgres.sh stop "$PG_DIR" || true; rm -rf "$PG_DIR"' EXIT
  DATABASE_URL="$(scripts/postgres.sh start "$PG_DIR" 54339)"
fi
fresh_db() { # name -> URL of a new, empty database
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  python3 -c "import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p._replace(path='/' + sys.argv[2]).geturl())" "$DATABASE_URL" "$1"
}
seconds() { python3 -c "import time; print(time.time())"; }

if [ ! -e "$WORK/data/catalog.db" ]; then
  echo "== all-embedded ingestion (mosaic ingest)"
  /usr/bin/time -f "%e s wall, %M KiB peak" "$MOSAIC" --data-dir "$WORK/data" --json ingest "$WORK/corpus" > "$WORK/ingest.json"
fi

echo "== catalog on PostgreSQL, embedded vectors and BM25: enqueue + one worker"
PG_URL="$(fresh_db mosaic_bench_pg)"
rm -rf "$WORK/data-pg"
export MOSAIC__BACKEND__CATALOG="$PG_URL"
"$MOSAIC" --data-dir "$WORK/data-pg" enqueue "$WORK/corpus"
start=$(seconds)
"$MOSAIC" --data-dir "$WORK/data-pg" --json worker --exit-when-idle > "$WORK/worker-pg.jsonl"
end=$(seconds)
python3 -c "print(f'one worker: {2000 / ($end - $start):.2f} files/s ({$end - $start:.1f} s)')"

echo "== search latency: catalog on PostgreSQL"
"$MOSAIC" --data-dir "$WORK/data-pg" --json bench search --queries tests/fixtures/corpus/questions.json --runs 5 | tee "$WORK/search-pg.json"
unset MOSAIC__BACKEND__CATALOG
echo "== search latency: all embedded"
"$MOSAIC" --data-dir "$WORK/data" --json bench search --queries tests/fixtures/corpus/questions.json --runs 5 | tee "$WORK/search-embedded.json"

if [ -n "${QDRANT_URL:-}" ]; then
  for workers in 1 2; do
    echo "== Qdrant + PostgreSQL: $workers worker(s)"
    PG_URL="$(fresh_db mosaic_bench_q$workers)"
    export MOSAIC__BACKEND__CATALOG="$PG_URL" MOSAIC__BACKEND__STORE__KIND=qdrant \
      MOSAIC__BACKEND__STORE__URL="$QDRANT_URL" MOSAIC__BACKEND__STORE__COLLECTION_PREFIX="bench$workers"
    rm -rf "$WORK"/data-q*
    "$MOSAIC" --data-dir "$WORK/data-q0" enqueue "$WORK/corpus"
    start=$(seconds)
    for w in $(seq 1 $workers); do
      "$MOSAIC" --data-dir "$WORK/data-q$w" --json worker --exit-when-idle > "$WORK/worker-q$workers-$w.jsonl" &
    done
    wait
    end=$(seconds)
    python3 -c "print(f'$workers worker(s): {2000 / ($end - $start):.2f} files/s ({$end - $start:.1f} s)')"
    "$MOSAIC" --data-dir "$WORK/data-q0" --json bench search --queries tests/fixtures/corpus/questions.json --runs 5 | tee "$WORK/search-q$workers.json"
    unset MOSAIC__BACKEND__CATALOG MOSAIC__BACKEND__STORE__KIND MOSAIC__BACKEND__STORE__URL MOSAIC__BACKEND__STORE__COLLECTION_PREFIX
  done
fi
