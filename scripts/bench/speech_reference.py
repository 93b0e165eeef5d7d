#!/usr/bin/env python3
"""faster-whisper (CTranslate2) on the same recording, checkpoint, threads and beam as
`mosaic bench transcribe`, in int8 and float32: wall time of `transcribe` including decoding the
file, and the word error rate against a reference text when one is given.
Usage: speech_reference.py CT2_MODEL_DIR AUDIO [THREADS] [REFERENCE.txt]"""
import json, re, sys, time

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel

model_dir, audio = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
reference = open(sys.argv[4]).read() if len(sys.argv) > 4 else None


def words(text):
    return [w for w in (re.sub(r"[^0-9a-z]", "", w.lower()) for w in text.split()) if w]


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j - 1] + (r[i - 1] != h[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(h)] / max(1, len(r))


rows = []
for compute in ["int8", "float32"]:
    model = WhisperModel(model_dir, device="cpu", compute_type=compute, cpu_threads=threads)
    list(model.transcribe(audio, beam_size=1, language="en")[0])  # warm-up
    start = time.perf_counter()
    segments, info = model.transcribe(audio, beam_size=1, language="en")
    text = " ".join(s.text.strip() for s in segments)
    seconds = time.perf_counter() - start
    rows.append({
        "engine": f"faster-whisper {faster_whisper.__version__} / CTranslate2 {ctranslate2.__version__} {compute}",
        "compute_type": compute, "threads": threads, "seconds": seconds,
        "duration_s": info.duration, "rtf": seconds / info.duration,
        "wer": wer(reference, text) if reference else None, "text": text,
    })
print(json.dumps(rows, indent=2))
