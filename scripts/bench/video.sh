#!/usr/bin/env bash
# Video sampling speed against FFmpeg on the same 1080p H.264 file: FFmpeg decoding key frames
# only (`-skip_frame nokey`) and running its scene filter (`select='gt(scene,0.4)'`), then
# Mosaic's two passes (`mosaic bench video`, also in key-frame mode) and a full `mosaic ingest`.
# The file is built from scikit-image's photos (scripts/setup.sh unpacks them): 60 s, 30 fps,
# a new photo every 6 s, narrated by espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}"
MOSAIC="${MOSAIC:-$CARGO_TARGET_DIR/debug/mosaic}"
SAMPLES="${MOSAIC_CACHE:-$HOME/.cache/mosaic}/samples/skimage"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
VIDEO="$WORK/bench-1080p.mp4"
if [ ! -s "$VIDEO" ]; then
  inputs=() filter="" concat=""
  i=0
  for p in chelsea.png coffee.png astronaut.png rocket.jpg motorcycle_left.png hubble_deep_field.jpg horse.png camera.png coins.png retina.jpg; do
    inputs+=(-loop 1 -t 6 -i "$SAMPLES/$p")
    filter+="[$i]scale=1920:1080,setsar=1,fps=30,format=yuv420p[v$i];"
    concat+="[v$i]"
    i=$((i+1))
  done
  espeak-ng -w "$WORK/narration.wav" "$(printf 'Scene %s of the benchmark video. ' one two three four five six seven eight nine ten)"
  ffmpeg -y -loglevel error "${inputs[@]}" -i "$WORK/narration.wav" \
    -filter_complex "${filter}${concat}concat=n=$i:v=1:a=0[v];[$i]apad,atrim=0:60[a]" \
    -map "[v]" -map "[a]" -c:v libx264 -preset veryfast -g 60 -c:a aac "$VIDEO"
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk "BEGIN { printf \"%.2f\", $e - $s }"; }
echo "ffmpeg -skip_frame nokey (decode key frames):   $(t ffmpeg -skip_frame nokey -i "$VIDEO" -an -f null -) s"
echo "ffmpeg -vf select='gt(scene,0.4)' (all frames): $(t ffmpeg -i "$VIDEO" -an -vf "select='gt(scene,0.4)'" -f null -) s"
"$MOSAIC" bench video --video "$VIDEO" --embed
"$MOSAIC" bench video --video "$VIDEO" --keyframes
rm -rf "$WORK/data"
echo "mosaic ingest (transcribe + sample + embed):    $(t "$MOSAIC" --data-dir "$WORK/data" ingest "$VIDEO") s for 60 s of video"
