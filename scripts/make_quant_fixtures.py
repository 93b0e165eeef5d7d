#!/usr/bin/env python3
"""Writes tests/fixtures/quant/reference.json: ggml q8_0 and q5_1 blocks of fixed values, made by
the reference quantizer of the `gguf` package (gguf-py, the llama.cpp project's Python port of
ggml-quants.c's `quantize_row_*_ref`), for Mosaic's Whisper quantizer to match byte for byte.

    pip install gguf numpy && python3 scripts/make_quant_fixtures.py
"""
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType, quants

rng = np.random.default_rng(20261202)
# Weight-like values (f16-representable, as the checkpoints hold them), plus blocks that hit the
# edge cases: all zero, constant, one outlier, exact halves of a step.
rows = [
    rng.normal(0, 0.05, 256),
    rng.normal(0.01, 0.2, 256),
    np.concatenate([np.zeros(32), np.full(32, 0.125), np.r_[1.0, np.zeros(31)],
                    np.arange(32) / 62.0, rng.uniform(-1, 1, 128)]),
]
values = np.concatenate(rows).astype(np.float16).astype(np.float32)
out = {"values": [float(v) for v in values]}
for name, kind in [("q8_0", GGMLQuantizationType.Q8_0), ("q5_1", GGMLQuantizationType.Q5_1)]:
    blocks = quants.quantize(values.reshape(-1, 32 * 8), kind)
    out[name] = bytes(blocks.tobytes()).hex()
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/quant/reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}: {len(values)} values")
