#!/usr/bin/env python3
"""What an int8 (VNNI) path would cost in quality, measured before building one: all-MiniLM-L6-v2
in PyTorch with every chosen linear layer simulated as int8 (u8 activations per token,
asymmetric; s8 weights per output channel), optionally with SmoothQuant (per-input-channel
factors from activation maxima on calibration texts, alpha), against f32 embeddings.

  int8_quality.py TEXTS.json MINILM_DIR [--smooth ALPHA] [--skip SUBSTR,SUBSTR]

Prints the minimum and mean cosine over 128 texts (calibration on 128 others)."""
import argparse, json

import torch
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("texts"); ap.add_argument("model")
ap.add_argument("--smooth", type=float, default=None)
ap.add_argument("--skip", default="")
args = ap.parse_args()
torch.set_num_threads(2)
all_texts = json.load(open(args.texts))
texts, calib = all_texts[:128], all_texts[256:384]
model = SentenceTransformer(args.model, device="cpu")
model.max_seq_length = 256
ref = model.encode(texts, batch_size=32, convert_to_tensor=True, normalize_embeddings=True)
linears = {n: m for n, m in model[0].auto_model.named_modules() if isinstance(m, torch.nn.Linear)}
skip = [s for s in args.skip.split(",") if s]

amax = {}
def record(name):
    def hook(_, inputs):
        x = inputs[0].abs().reshape(-1, inputs[0].shape[-1]).amax(0)
        amax[name] = torch.maximum(amax.get(name, torch.zeros_like(x)), x)
    return hook
hooks = [m.register_forward_pre_hook(record(n)) for n, m in linears.items()]
model.encode(calib, batch_size=32)
for h in hooks:
    h.remove()

def quantized(lin, name):
    w, b = lin.weight.data.clone(), lin.bias.data.clone()
    s = torch.ones(w.shape[1])
    if args.smooth is not None:
        a = args.smooth
        s = amax[name].clamp_min(1e-5) ** a / w.abs().amax(0).clamp_min(1e-5) ** (1 - a)
    w = w * s
    sw = w.abs().amax(1, keepdim=True) / 127.0
    wq = torch.round(w / sw).clamp(-127, 127)
    def forward(x):
        x = x / s
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        sx = (hi - lo).clamp_min(1e-8) / 255.0
        zp = torch.round(-lo / sx)
        xq = (torch.round(x / sx) + zp).clamp(0, 255)
        return ((xq - zp) @ wq.t()) * sx * sw.t() + b
    return forward

covered = 0
for name, mod in linears.items():
    if not any(k in name for k in skip):
        mod.forward = quantized(mod, name)
        covered += mod.weight.numel()
total = sum(m.weight.numel() for m in linears.values())
out = model.encode(texts, batch_size=32, convert_to_tensor=True, normalize_embeddings=True)
cos = (ref * out).sum(-1)
print(json.dumps({"smooth": args.smooth, "skip": skip, "int8_share_of_gemm_work": covered / total,
                  "min_cosine": cos.min().item(), "mean_cosine": cos.mean().item()}))
