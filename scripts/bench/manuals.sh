#!/usr/bin/env bash
# The real-documentation figures in docs/answers.md: about 1,000 manual pages installed on this
# machine (scripts/manuals/render.sh all: spread over sections 1, 5 and 8, the 18 fixture pages
# among them) ingested on the embedded default, then every question of
# tests/fixtures/manuals/questions.json asked (`mosaic eval --answers`: facts, sources,
# declines and mean length per answer type), and the same questions as known-item retrieval
# (`mosaic eval`: is the passage holding the quoted answer among the top k).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="${MOSAIC:-$CARGO_TARGET_DIR/debug/mosaic}"
WORK="${BENCH_DIR:-/tmp/mosaic-manuals}"
PAGES="${PAGES:-1000}"
mkdir -p "$WORK"

echo "== machine"
grep -m1 "model name" /proc/cpuinfo
echo "cores: $(nproc)"
if [ ! -e "$WORK/pages/.complete" ]; then
  echo "== rendering $PAGES manual pages into $WORK/pages"
  rm -rf "$WORK/pages"
  scripts/manuals/render.sh all "$WORK/pages" "$PAGES"
  touch "$WORK/pages/.complete"
fi
echo "pages: $(ls "$WORK/pages" | wc -l), $(du -sh "$WORK/pages" | cut -f1)"
echo "== ingesting"
/usr/bin/time -f "ingest: %e s, peak RSS %M KiB" \
  "$MOSAIC" --data-dir "$WORK/data" --json ingest "$WORK/pages" > "$WORK/ingest.json" || true
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('ingested', r['ingested'], 'skipped', r['skipped'], 'failed', len(r['failed']), 'chunks', r['chunks'])" "$WORK/ingest.json"

echo "== answers (eval --answers)"
"$MOSAIC" --data-dir "$WORK/data" eval --answers tests/fixtures/manuals/questions.json | tee "$WORK/answers.txt" | tail -20
"$MOSAIC" --data-dir "$WORK/data" --json eval --answers tests/fixtures/manuals/questions.json > "$WORK/answers.json"

echo "== known-item retrieval (the passage holding each answer's quote)"
python3 - "$WORK/known-item.json" <<'PY'
import json, sys
questions = json.load(open("tests/fixtures/manuals/questions.json"))
items = [{"question": q["question"], "file": q["file"], "answer_substring": q["quote"]}
         for q in questions if not q.get("unanswerable") and q.get("quote")]
json.dump(items, open(sys.argv[1], "w"), indent=1)
print(len(items), "known-item queries")
PY
"$MOSAIC" --data-dir "$WORK/data" eval --k 10 --no-rerank "$WORK/known-item.json"
