#!/usr/bin/env python3
"""Regenerate the PANN CNN14 parity fixtures under tests/fixtures/models/cnn14/.

The reference is `panns_inference.models.Cnn14` (eval mode) with the AudioSet
configuration used by `Cnn14_mAP=0.431.pth` (32 kHz, window 1024, hop 320,
64 mel bins, 50..14000 Hz, 527 classes).  The real checkpoint (~80M parameters)
is far too large to commit, so every parameter and buffer of the reference
network is instead filled from a counter-based formula that the Rust test
reproduces bit for bit (see `uniform_pm1`).  The spectrogram / log-mel
extractor buffers are left exactly as torchlibrosa builds them.

Outputs (all small):
  parity.json      formula table, waveform checksum, reference log-mel
                   [frames, 64], embedding [2048] and clipwise_output [527],
                   plus the reference outputs of a tiny-width CNN14.
  tiny_legacy.pth  tiny-width CNN14 checkpoint in torch's legacy (pre-1.6,
                   non-zip) format, shaped like the published checkpoint:
                   {"iteration", "model": state_dict, "sampler": {numpy..}}.
  tiny_zip.pth     the same tiny state dict in the current zip format.

All outputs are byte-reproducible with the versions below (the legacy
checkpoint's address-based storage keys are renamed to indices).

Environment used to produce the committed fixtures:
  torch 2.5.1 (CPU), panns_inference 0.1.1, torchlibrosa 0.1.0, librosa 0.11.0,
  numpy 1.26.4, scipy 1.17.1
  pip install --no-deps panns_inference torchlibrosa
  pip install librosa matplotlib   # without letting pip touch torch/numpy

Usage: python scripts/make_cnn14_fixtures.py [--out tests/fixtures/models/cnn14]
"""

import argparse
import importlib.util
import io
import json
import math
import os
import pickle
import struct
import sys
import types
import warnings
from collections import OrderedDict

import numpy as np
import torch

# Import panns_inference.models without running the package __init__, which
# imports matplotlib and tries to download a label CSV into ~/panns_data.
_spec = importlib.util.find_spec("panns_inference")
if _spec is None or _spec.submodule_search_locations is None:
    sys.exit("panns_inference is not installed")
_pkg = types.ModuleType("panns_inference")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules.setdefault("panns_inference", _pkg)
from panns_inference.models import Cnn14, ConvBlock  # noqa: E402

SAMPLE_RATE = 32000
WAVEFORM_SECONDS = 2.0

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3

FORMULA_DOC = (
    "seed = fnv1a64(utf8(name)); for flat row-major index i (0-based): "
    "z = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15 mod 2^64) where "
    "mix(z): z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; "
    "z *= 0x94D049BB133111EB; z ^= z >> 31 (all mod 2^64); "
    "u = ((z >> 40) - 2^23) / 2^23 in f64 (exactly in [-1, 1)); "
    "value = f32(center + half_width * u) with f64 arithmetic"
)


def fnv1a64(name: str) -> int:
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def uniform_pm1(name: str, n: int) -> np.ndarray:
    """float64 values in [-1, 1), exactly reproducible in Rust."""
    seed = np.uint64(fnv1a64(name))
    out = np.empty(n, dtype=np.float64)
    chunk = 1 << 22
    with np.errstate(over="ignore"):
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            i = np.arange(start + 1, stop + 1, dtype=np.uint64)
            z = seed + i * np.uint64(GOLDEN)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
            z = z ^ (z >> np.uint64(31))
            k = (z >> np.uint64(40)).astype(np.float64)
            out[start:stop] = (k - 8388608.0) / 8388608.0
    return out


def formula_tensor(name, shape, center, half_width):
    n = int(np.prod(shape)) if len(shape) else 1
    vals = center + half_width * uniform_pm1(name, n)
    return vals.astype(np.float32).reshape(shape)


def param_rule(name, shape):
    """(center, half_width) for a state-dict entry, or None to leave it alone."""
    if name.startswith("spectrogram_extractor.") or name.startswith("logmel_extractor."):
        return None
    if name.endswith("num_batches_tracked"):
        return None
    leaf = name.rsplit(".", 1)[1]
    if ".conv" in name and leaf == "weight":
        fan_in = shape[1] * shape[2] * shape[3]
        return 0.0, math.sqrt(6.0 / fan_in)
    if name.startswith("bn0."):
        return {
            "weight": (1.0, 0.25),
            "bias": (0.0, 0.2),
            "running_mean": (-40.0, 10.0),
            "running_var": (400.0, 100.0),
        }[leaf]
    if ".bn" in name:
        return {
            "weight": (1.0, 0.25),
            "bias": (0.0, 0.2),
            "running_mean": (0.0, 0.2),
            "running_var": (1.0, 0.5),
        }[leaf]
    if name.startswith("fc1."):
        return (0.0, math.sqrt(6.0 / shape[1])) if leaf == "weight" else (0.0, 0.1)
    if name.startswith("fc_audioset."):
        return (0.0, math.sqrt(3.0 / shape[1])) if leaf == "weight" else (0.0, 0.1)
    raise ValueError(f"no rule for {name}")


def fill_model(model):
    """Overwrite parameters/buffers in place; return the formula table."""
    table = []
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            shape = list(t.shape)
            rule = param_rule(name, shape)
            if rule is None:
                continue
            center, hw = rule
            t.copy_(torch.from_numpy(formula_tensor(name, shape, center, hw)))
            table.append({"name": name, "shape": shape, "center": center, "half_width": hw})
    return table


def waveform() -> np.ndarray:
    n = int(SAMPLE_RATE * WAVEFORM_SECONDS)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    env = 0.6 + 0.4 * np.sin(2.0 * np.pi * 1.5 * t)
    x = (
        0.5 * env * np.sin(2.0 * np.pi * 440.0 * t)
        + 0.25 * np.sin(2.0 * np.pi * 1234.5 * t + 0.3)
        + 0.1 * np.sin(2.0 * np.pi * (3000.0 + 2000.0 * t) * t)
        + 0.05 * uniform_pm1("waveform", n)
    )
    return x.astype(np.float32)


WAVEFORM_DOC = (
    "n = 64000, t = n_idx / 32000 (f64); env = 0.6 + 0.4 sin(2 pi 1.5 t); "
    "x = 0.5 env sin(2 pi 440 t) + 0.25 sin(2 pi 1234.5 t + 0.3) "
    "+ 0.1 sin(2 pi (3000 + 2000 t) t) + 0.05 u_waveform[n_idx], cast to f32; "
    "u_waveform = formula u for name 'waveform'"
)


def make_model():
    return Cnn14(
        sample_rate=SAMPLE_RATE,
        window_size=1024,
        hop_size=320,
        mel_bins=64,
        fmin=50,
        fmax=14000,
        classes_num=527,
    )


TINY_CHANNELS = [4, 8, 8, 16, 16, 32]
TINY_CLASSES = 5


def make_tiny_model():
    model = make_model()
    cin = 1
    for i, c in enumerate(TINY_CHANNELS, start=1):
        setattr(model, f"conv_block{i}", ConvBlock(in_channels=cin, out_channels=c))
        cin = c
    model.fc1 = torch.nn.Linear(cin, cin, bias=True)
    model.fc_audioset = torch.nn.Linear(cin, TINY_CLASSES, bias=True)
    return model


def run(model, wav):
    model.eval()
    x = torch.from_numpy(wav)[None, :]
    with torch.no_grad():
        logmel = model.logmel_extractor(model.spectrogram_extractor(x))
        out = model(x)
    return (
        logmel[0, 0].numpy(),
        out["embedding"][0].numpy(),
        out["clipwise_output"][0].numpy(),
    )


def f32_list(a, digits=9):
    return [float(f"{float(v):.{digits}g}") for v in np.asarray(a).reshape(-1)]


def _binunicode(s):
    """A str as pickled by protocol 2 (BINUNICODE opcode)."""
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


class _StorageScan(pickle.Unpickler):
    """Unpickles a legacy checkpoint body, noting storage keys in order of use."""

    def __init__(self, f):
        super().__init__(f)
        self.elem_size = {}  # key -> element size, in order of first appearance

    def persistent_load(self, pid):
        _, storage_type, key, _location, numel, _view = pid
        dtype = storage_type.dtype
        self.elem_size.setdefault(key, torch._utils._element_size(dtype))
        return torch.storage.TypedStorage(numel, dtype=dtype, _internal=True)


def canonicalize_legacy_pth(path):
    """Make a legacy torch checkpoint byte-reproducible.

    torch's legacy writer names storages by memory address and writes them in
    sorted-address order.  Rename them to "0", "1", ... in order of first use
    in the pickled object and write the storages in that order.
    """
    with open(path, "rb") as f:
        data = f.read()
    bio = io.BytesIO(data)
    for _ in range(3):  # magic, protocol version, sys info
        pickle.load(bio)
    body_start = bio.tell()
    scan = _StorageScan(bio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
        scan.load()
    body_end = bio.tell()
    old_keys = pickle.load(bio)
    assert sorted(old_keys) == sorted(scan.elem_size)
    chunks = {}
    for key in old_keys:
        (numel,) = struct.unpack("<q", data[bio.tell() : bio.tell() + 8])
        chunks[key] = bio.read(8 + numel * scan.elem_size[key])
    assert bio.read() == b"", "unexpected trailing data"
    rename = {k: str(i) for i, k in enumerate(scan.elem_size)}
    body = data[body_start:body_end]
    for old, new in rename.items():
        assert body.count(_binunicode(old)) == 1
        body = body.replace(_binunicode(old), _binunicode(new))
    with open(path, "wb") as f:
        f.write(data[:body_start])
        f.write(body)
        pickle.dump([rename[k] for k in scan.elem_size], f, protocol=2)
        for key in scan.elem_size:
            f.write(chunks[key])


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument(
        "--out", default=os.path.join(here, "..", "tests", "fixtures", "models", "cnn14")
    )
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    wav = waveform()

    # Full-size network with formula weights.
    model = make_model()
    table = fill_model(model)
    logmel, emb, clip = run(model, wav)
    del model

    # Tiny-width network: same formula, saved as .pth in both torch formats.
    tiny = make_tiny_model()
    fill_model(tiny)
    _, tiny_emb, tiny_clip = run(tiny, wav)
    tiny_sd = OrderedDict(
        (k, v.clone())
        for k, v in tiny.state_dict().items()
        if not k.startswith("spectrogram_extractor.")  # 4 MB of DFT kernels
    )
    # Mimic the published checkpoint layout: extra entries, numpy sampler state.
    legacy = {
        "iteration": 660000,
        "model": tiny_sd,
        "sampler": {
            "indexes_per_class": [np.arange(i, 40, 7, dtype=np.int64) for i in range(3)],
            "queue": [3, 1, 4, 1, 5],
            "pointers_of_classes": [0] * 3,
            "random_state": np.random.RandomState(1234).get_state(),
        },
    }
    legacy_path = os.path.join(args.out, "tiny_legacy.pth")
    torch.save(legacy, legacy_path, _use_new_zipfile_serialization=False)
    canonicalize_legacy_pth(legacy_path)
    zip_sd = OrderedDict((k, v) for k, v in tiny_sd.items() if k != "logmel_extractor.melW")
    torch.save({"iteration": 1, "model": zip_sd}, os.path.join(args.out, "tiny_zip.pth"))

    frames, mels = logmel.shape
    fixture = {
        "format": 1,
        "generator": "scripts/make_cnn14_fixtures.py",
        "reference": "panns_inference.models.Cnn14(sample_rate=32000, window_size=1024, "
        "hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527).eval()",
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "librosa": __import__("librosa").__version__,
            "torchlibrosa": "0.1.0",
            "panns_inference": "0.1.1",
        },
        "formula": FORMULA_DOC,
        "params": table,
        "waveform": {
            "formula": WAVEFORM_DOC,
            "len": int(wav.shape[0]),
            "head": f32_list(wav[:16]),
            "sum": float(np.sum(wav.astype(np.float64))),
            "sum_sq": float(np.sum(wav.astype(np.float64) ** 2)),
        },
        "log_mel": {"frames": int(frames), "mel_bins": int(mels), "values": f32_list(logmel, 8)},
        "embedding": f32_list(emb),
        "clipwise_output": f32_list(clip),
        "tiny": {
            "channels": TINY_CHANNELS,
            "classes": TINY_CLASSES,
            "files": ["tiny_legacy.pth", "tiny_zip.pth"],
            "embedding": f32_list(tiny_emb),
            "clipwise_output": f32_list(tiny_clip),
        },
    }
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(
        f"log-mel {logmel.shape} range [{logmel.min():.2f}, {logmel.max():.2f}], "
        f"embedding nonzero {int((emb > 0).sum())}/{emb.size} max {emb.max():.4f}, "
        f"clipwise range [{clip.min():.4f}, {clip.max():.4f}], "
        f"tiny embedding max {tiny_emb.max():.4f}"
    )


if __name__ == "__main__":
    main()
