#!/usr/bin/env bash
# Reproduces the numbers in docs/performance.md on this machine:
#   embedding throughput (Mosaic vs sentence-transformers, same texts, batch, threads),
#   cross-encoder throughput (Mosaic vs sentence-transformers' CrossEncoder, same pairs),
#   end-to-end ingestion of a 2,000-file corpus, and search latency on that index.
# Needs scripts/setup.sh (models, build) and, for the reference, scripts/setup-reference-env.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="$CARGO_TARGET_DIR/debug/mosaic"
WORK="${BENCH_DIR:-/tmp/mosaic-bench}"
PY="${REFERENCE_PYTHON:-$HOME/.cache/mosaic/pyref/bin/python}"
MINILM="$HOME/.cache/mosaic/models/sentence-transformers--all-MiniLM-L6-v2"
mkdir -p "$WORK"

[ -d "$WORK/corpus" ] || python3 scripts/corpus/make_bench_corpus.py "$WORK/corpus" -n 2000 --seed 1234
python3 scripts/bench/make_texts.py "$WORK/corpus" "$WORK/texts.json" 512 200

echo "== embedding: mosaic (candle f32)"
RAYON_NUM_THREADS=2 "$MOSAIC" --json bench embed --texts "$WORK/texts.json" --batch-tokens 8192 | tee "$WORK/embed-mosaic.json"
echo "== embedding: mosaic (bf16, AVX512_BF16 CPUs; f32 elsewhere)"
RAYON_NUM_THREADS=2 "$MOSAIC" --json bench embed --texts "$WORK/texts.json" --batch-tokens 8192 --dtype bf16 | tee "$WORK/embed-mosaic-bf16.json"
echo "== embedding: mosaic f32, portable paths (pure-Rust GEMM, no CPU-specific kernels)"
MOSAIC_BLAS=off MOSAIC_CPU=generic RAYON_NUM_THREADS=2 "$MOSAIC" --json bench embed --texts "$WORK/texts.json" --batch-tokens 8192 | tee "$WORK/embed-mosaic-generic.json"
if [ -x "$PY" ]; then
  echo "== embedding: sentence-transformers (PyTorch CPU)"
  "$PY" scripts/bench/embed_reference.py "$MINILM" "$WORK/texts.json" 32 2 | tee "$WORK/embed-reference.json"
fi

echo "== cross-encoder: a BERT cross-encoder of ms-marco-MiniLM-L-6-v2's shape (see rerank_reference.py)"
QUERY="How long is the unlit tunnel on the first day of the loop?"
if [ -x "$PY" ]; then
  [ -d "$WORK/cross" ] || "$PY" scripts/bench/rerank_reference.py make "$MINILM" "$WORK/cross"
  "$MOSAIC" models import --id bench/minilm-l6-cross-encoder "$WORK/cross" > /dev/null
  for dtype in f32 bf16; do
    RAYON_NUM_THREADS=2 "$MOSAIC" --json bench rerank --model bench/minilm-l6-cross-encoder \
      --query "$QUERY" --texts "$WORK/texts.json" --dtype "$dtype" | tee "$WORK/rerank-mosaic-$dtype.json"
  done
  "$PY" scripts/bench/rerank_reference.py run "$WORK/cross" "$QUERY" "$WORK/texts.json" 32 2 | tee "$WORK/rerank-reference.json"
fi

[ "${SKIP_INGEST:-}" = 1 ] && exit 0
echo "== ingestion: 2,000 files"
rm -rf "$WORK/data"
/usr/bin/time -v "$MOSAIC" --data-dir "$WORK/data" --json ingest "$WORK/corpus" > "$WORK/ingest.json" 2> "$WORK/ingest.time"
cat "$WORK/ingest.json"; grep -E "Elapsed|Maximum resident" "$WORK/ingest.time"

echo "== search latency"
"$MOSAIC" --data-dir "$WORK/data" --json bench search --queries tests/fixtures/corpus/questions.json --runs 5 | tee "$WORK/search.json"
