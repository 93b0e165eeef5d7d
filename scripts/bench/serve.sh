#!/usr/bin/env bash
# The serving numbers in docs/performance.md: `mosaic serve` on the 2,000-file benchmark index,
# driven over loopback HTTP by `mosaic bench serve`:
#   /v1/search latency p50/p95/p99 and throughput at concurrency 1, 4 and 16;
#   streamed chat on the embedded generator: time to first byte, role delta, first content
#     token and the whole answer;
#   /v1/embeddings throughput next to `mosaic bench embed` on the same texts.
# Client and server share this machine's cores, as they do when a page or app runs beside it.
# Reuses scripts/bench/run.sh's index in $BENCH_DIR/data when it is there (else builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="$CARGO_TARGET_DIR/debug/mosaic"
WORK="${BENCH_DIR:-/tmp/mosaic-bench}"
PORT="${PORT:-8466}"
REQUESTS="${REQUESTS:-200}"
mkdir -p "$WORK"

echo "== machine"
grep -m1 "model name" /proc/cpuinfo
echo "cores: $(nproc)"
[ -d "$WORK/corpus" ] || python3 scripts/corpus/make_bench_corpus.py "$WORK/corpus" -n 2000 --seed 1234
[ -e "$WORK/texts.json" ] || python3 scripts/bench/make_texts.py "$WORK/corpus" "$WORK/texts.json" 512 200
if [ ! -e "$WORK/data/catalog.db" ]; then
  echo "== ingesting the 2,000 files"
  "$MOSAIC" --data-dir "$WORK/data" --json ingest "$WORK/corpus" > "$WORK/ingest.json"
fi
"$MOSAIC" --data-dir "$WORK/data" status

echo "== mosaic serve on 127.0.0.1:$PORT"
"$MOSAIC" --data-dir "$WORK/data" serve --port "$PORT" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 0.5
done

echo "== over HTTP: search at concurrency 1, 4, 16 ($REQUESTS each), 10 streamed chats, embeddings"
"$MOSAIC" --json bench serve --url "http://127.0.0.1:$PORT" \
  --queries tests/fixtures/corpus/questions.json --requests "$REQUESTS" --concurrency 1,4,16 \
  --chats 10 --texts "$WORK/texts.json" --embed-batch 256 | tee "$WORK/serve.json"

kill -TERM $SERVER; wait $SERVER || true
trap - EXIT
echo "== the same texts in process (mosaic bench embed, the product path auto picks)"
"$MOSAIC" --json bench embed --texts "$WORK/texts.json" --dtype auto --batch 256 \
  | tee "$WORK/serve-embed-inprocess.json"
