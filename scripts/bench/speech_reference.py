#!/usr/bin/env python3
"""faster-whisper (CTranslate2) on the same recording, checkpoint, threads and beam as
`mosaic bench transcribe`, in int8 and float32: wall time of `transcribe` including decoding the
file, and the word error rate against a reference text when one is given.
Usage: speech_reference.py CT2_MODEL_DIR AUDIO [THREADS] [REFERENCE.txt]"""
import json, os, sys, time

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wer import wer  # noqa: E402

model_dir, audio = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
reference = open(sys.argv[4]).read() if len(sys.argv) > 4 else None


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
