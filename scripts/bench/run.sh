#!/usr/bin/env bash
# Reproduces the numbers in docs/performance.md on this machine, every comparison side by side
# in one run:
#   the CPU (model and feature flags) and the BLAS libraries Mosaic loads;
#   text-encoder throughput on every product path Mosaic offers here (and what `auto` picks)
#     against sentence-transformers on the current PyTorch, f32 and bf16;
#   cross-encoder throughput, the same way;
#   speech: Mosaic's pipeline on each Whisper variant (f16, q8_0, q5_1) against faster-whisper
#     int8 and float32 on the same 45 s two-speaker recording, model, threads and beam, with WER;
#   end-to-end ingestion of a 2,000-file corpus against embedding its chunks alone, and search
#     latency on that index.
# Needs scripts/setup.sh and, for the comparisons, scripts/bench/setup-bench-env.sh.
#   SKIP_INGEST=1 skips the corpus ingestion; THREADS (default 2) sets the thread count.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="$CARGO_TARGET_DIR/debug/mosaic"
WORK="${BENCH_DIR:-/tmp/mosaic-bench}"
PY="${BENCH_PYTHON:-$HOME/.cache/mosaic/pybench/bin/python}"
THREADS="${THREADS:-2}"
MODELS="$HOME/.cache/mosaic/models"
MINILM="$MODELS/sentence-transformers--all-MiniLM-L6-v2"
mkdir -p "$WORK"

echo "== machine"
grep -m1 "model name" /proc/cpuinfo
echo "features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|amx|fma|f16c)' | sort | tr '\n' ' ')"
echo "cores: $(nproc), threads used: $THREADS"
[ -x "$PY" ] && "$PY" - <<'PY'
import importlib.metadata as md
print("comparison: " + ", ".join(f"{p} {md.version(p)}" for p in
      ["torch", "sentence-transformers", "faster-whisper", "ctranslate2"]))
PY

[ -d "$WORK/corpus" ] || python3 scripts/corpus/make_bench_corpus.py "$WORK/corpus" -n 2000 --seed 1234
python3 scripts/bench/make_texts.py "$WORK/corpus" "$WORK/texts.json" 512 200

echo "== text encoder: every product path Mosaic offers here (all-MiniLM-L6-v2, batch by 8,192 tokens)"
RAYON_NUM_THREADS=$THREADS "$MOSAIC" --json bench embed --texts "$WORK/texts.json" --batch-tokens 8192 \
  --threads "$THREADS" | tee "$WORK/embed-mosaic.json"
echo "== text encoder: portable paths (MOSAIC_BLAS=off MOSAIC_CPU=generic)"
MOSAIC_BLAS=off MOSAIC_CPU=generic "$MOSAIC" --json bench embed --texts "$WORK/texts.json" \
  --batch-tokens 8192 --threads "$THREADS" | tee "$WORK/embed-mosaic-generic.json"
if [ -x "$PY" ]; then
  echo "== text encoder: sentence-transformers on PyTorch CPU, f32 and bf16 (batch 32)"
  "$PY" scripts/bench/embed_reference.py "$MINILM" "$WORK/texts.json" 32 "$THREADS" both | tee "$WORK/embed-reference.json"
fi

echo "== cross-encoder: a BERT cross-encoder of ms-marco-MiniLM-L-6-v2's shape (see rerank_reference.py)"
QUERY="How long is the unlit tunnel on the first day of the loop?"
if [ -x "$PY" ]; then
  [ -d "$WORK/cross" ] || "$PY" scripts/bench/rerank_reference.py make "$MINILM" "$WORK/cross"
  "$MOSAIC" models import --id bench/minilm-l6-cross-encoder "$WORK/cross" > /dev/null
  "$MOSAIC" --json bench rerank --model bench/minilm-l6-cross-encoder --query "$QUERY" \
    --texts "$WORK/texts.json" --threads "$THREADS" | tee "$WORK/rerank-mosaic.json"
  "$PY" scripts/bench/rerank_reference.py run "$WORK/cross" "$QUERY" "$WORK/texts.json" 32 "$THREADS" both \
    | tee "$WORK/rerank-reference.json"
fi

echo "== speech: 45 s, two speakers, tiny.en, beam 1, $THREADS threads"
scripts/bench/speech.sh "$WORK/speech"

[ "${SKIP_INGEST:-}" = 1 ] && exit 0
echo "== ingestion: 2,000 files"
rm -rf "$WORK/data"
/usr/bin/time -v "$MOSAIC" --data-dir "$WORK/data" --json ingest "$WORK/corpus" > "$WORK/ingest.json" 2> "$WORK/ingest.time"
cat "$WORK/ingest.json"; grep -E "Elapsed|Maximum resident" "$WORK/ingest.time"
echo "== embedding the same chunks alone (the text the ingest embedded: context line + chunk, from the catalog)"
python3 - "$WORK/data" "$WORK/chunks.json" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}/catalog.db?mode=ro", uri=True)
rows = db.execute("SELECT context, text FROM chunks WHERE text IS NOT NULL ORDER BY id").fetchall()
json.dump([(c + "\n\n" + t) if c else t for c, t in rows], open(sys.argv[2], "w"))
print(f"{len(rows)} chunks")
PY
"$MOSAIC" --json bench embed --texts "$WORK/chunks.json" --dtype auto --threads "$(nproc)" | tee "$WORK/embed-chunks.json"

echo "== search latency"
"$MOSAIC" --data-dir "$WORK/data" --json bench search --queries tests/fixtures/corpus/questions.json --runs 5 | tee "$WORK/search.json"
