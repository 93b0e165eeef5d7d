#!/usr/bin/env bash
# The main job on the embedded default: set up, ingest the bundled samples, answer a question
# with citations. Data goes to ./mosaic-data (override with MOSAIC_DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
MOSAIC="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}/debug/mosaic"
"$MOSAIC" ingest samples/ || [ $? -eq 3 ]
if [ $# -gt 0 ]; then
  questions=("$@")
else
  # One answered from a document, one from the recording (cited with its time range).
  questions=("How large is the main telescope at Kestrel Ridge?"
             "When is the lower car park closed for resurfacing?")
fi
for question in "${questions[@]}"; do
  echo
  echo "Q: $question"
  "$MOSAIC" ask "$question"
done
