#!/usr/bin/env python3
"""sentence-transformers on PyTorch CPU, embedding the same texts the same way as
`mosaic bench embed` (same model folder, same truncation, mean pooling, normalization),
for a side-by-side throughput comparison. Usage: embed_reference.py MODEL_DIR TEXTS.json [BATCH] [THREADS]"""
import json, sys, time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_path = sys.argv[1], sys.argv[2]
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
model = SentenceTransformer(model_dir, device="cpu")
model.max_seq_length = 256
tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"])
model.encode(texts[:8], batch_size=batch)  # warm-up
start = time.perf_counter()
vectors = model.encode(texts, batch_size=batch, convert_to_numpy=True)
seconds = time.perf_counter() - start
print(json.dumps({
    "engine": f"sentence-transformers {__import__('sentence_transformers').__version__} / torch {torch.__version__}",
    "texts": len(texts), "tokens": tokens, "seconds": seconds, "batch": batch, "threads": threads,
    "chunks_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
    "checksum": float(vectors.astype("float64").sum()),
}, indent=2))
