#!/usr/bin/env python3
"""sentence-transformers on PyTorch CPU, embedding the same texts the same way as
`mosaic bench embed` (same model folder, same truncation, mean pooling, normalization),
for a side-by-side throughput comparison, in f32 and in bf16 (`torch_dtype=torch.bfloat16`:
oneDNN runs the products on AMX tiles or AVX512_BF16 where the CPU has them).
Usage: embed_reference.py MODEL_DIR TEXTS.json [BATCH] [THREADS] [f32|bf16|both]"""
import json, sys, time

import numpy as np
import torch
import sentence_transformers
from sentence_transformers import SentenceTransformer

model_dir, texts_path = sys.argv[1], sys.argv[2]
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
dtypes = {"both": ["f32", "bf16"]}.get(sys.argv[5] if len(sys.argv) > 5 else "both",
                                      [sys.argv[5] if len(sys.argv) > 5 else "f32"])
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
rows, reference = [], None
for dtype in dtypes:
    kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bf16" else {}
    model = SentenceTransformer(model_dir, device="cpu", **kwargs)
    model.max_seq_length = 256
    tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"])
    model.encode(texts[:8], batch_size=batch)  # warm-up
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=batch, convert_to_tensor=True).float().numpy()
    seconds = time.perf_counter() - start
    if reference is None:
        reference = vectors
    cos = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    rows.append({
        "engine": f"sentence-transformers {sentence_transformers.__version__} / torch {torch.__version__} {dtype}",
        "dtype": dtype, "texts": len(texts), "tokens": tokens, "seconds": seconds, "batch": batch,
        "threads": threads, "chunks_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
        "checksum": float(vectors.astype("float64").sum()), "worst_cosine_to_first": float(cos.min()),
    })
print(json.dumps(rows, indent=2))
