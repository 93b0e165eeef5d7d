#!/usr/bin/env bash
# The main job on the embedded default: set up, ingest the bundled samples, answer a question
# with citations. Data goes to ./mosaic-data (override with MOSAIC_DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
MOSAIC="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}/debug/mosaic"
question="${1:-How large is the main telescope at Kestrel Ridge?}"
"$MOSAIC" ingest samples/ || [ $? -eq 3 ]
echo
echo "Q: $question"
"$MOSAIC" ask "$question"
