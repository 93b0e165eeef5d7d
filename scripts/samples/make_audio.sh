#!/usr/bin/env bash
# Regenerates samples/volunteer-briefing.opus: a short spoken briefing (espeak-ng), with pauses
# between items, encoded as Opus. The text is original to this project and fictional.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
parts=()
while IFS= read -r line; do
  [ -z "$line" ] && continue
  sox -n -r 22050 -c 1 -b 16 "$tmp/gap$i.wav" trim 0 1.5
  espeak-ng -v en-us -s 155 -w "$tmp/line$i.wav" "$line"
  parts+=("$tmp/gap$i.wav" "$tmp/line$i.wav")
  i=$((i + 1))
done <<'TEXT'
Good evening, and welcome to the volunteer briefing for the autumn season at Kestrel Ridge.
First, the car park. The lower car park will be closed for resurfacing from the first of October until the end of November.
Visitors should use the overflow field next to the old barn, and volunteers should arrive by the shuttle bus.
Second, the dome. The shutter motor on the main dome was replaced last week, so please report any grinding noise to the duty astronomer at once.
Third, the public nights. Because of the clocks changing, the Saturday public nights start at seven o'clock from November.
Finally, the training. Every volunteer must complete the new red light and night vision course before the end of October.
Thank you all, and clear skies.
TEXT
sox "${parts[@]}" "$tmp/briefing.wav"
ffmpeg -v error -y -i "$tmp/briefing.wav" -c:a libopus -b:a 24k samples/volunteer-briefing.opus
echo "wrote samples/volunteer-briefing.opus"
