#!/usr/bin/env python3
"""Cross-encoder throughput on PyTorch CPU, scoring the same (query, text) pairs as
`mosaic bench rerank` with sentence-transformers' CrossEncoder (same model folder, same
512-token truncation), for a side-by-side comparison.

  rerank_reference.py make MINILM_DIR OUT_DIR
      writes a BERT cross-encoder of ms-marco-MiniLM-L-6-v2's shape (6 layers, 384 wide):
      all-MiniLM-L6-v2's encoder and pooler with a seeded classification head. Throughput
      depends on the shape, not the weights; no trained cross-encoder can be fetched here.
  rerank_reference.py run MODEL_DIR QUERY TEXTS.json [BATCH] [THREADS]"""
import json, shutil, sys, time

import torch

if sys.argv[1] == "make":
    from transformers import BertForSequenceClassification
    src, out = sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(src, num_labels=1)
    model.save_pretrained(out, safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        shutil.copy(f"{src}/{name}", f"{out}/{name}")
    sys.exit(0)

from sentence_transformers import CrossEncoder

model_dir, query, texts_path = sys.argv[2], sys.argv[3], sys.argv[4]
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 2
dtypes = ["f32", "bf16"] if (sys.argv[7] if len(sys.argv) > 7 else "both") == "both" else [sys.argv[7]]
torch.set_num_threads(threads)
texts = json.load(open(texts_path))
pairs = [(query, t) for t in texts]
rows, reference = [], None
for dtype in dtypes:
    # Raw logits, as Mosaic ranks by (no sigmoid).
    kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if dtype == "bf16" else {}
    model = CrossEncoder(model_dir, device="cpu", max_length=512,
                         default_activation_function=torch.nn.Identity(), **kwargs)
    tokens = sum(len(ids) for ids in model.tokenizer([p[0] for p in pairs], [p[1] for p in pairs],
                                                      truncation=True, max_length=512)["input_ids"])
    model.predict(pairs[:4], batch_size=batch)  # warm-up
    start = time.perf_counter()
    scores = model.predict(pairs, batch_size=batch, convert_to_tensor=True).float().numpy()
    seconds = time.perf_counter() - start
    if reference is None:
        reference = scores
    import sentence_transformers
    rows.append({
        "engine": f"sentence-transformers {sentence_transformers.__version__} CrossEncoder / torch {torch.__version__} {dtype}",
        "dtype": dtype, "pairs": len(pairs), "tokens": tokens, "seconds": seconds, "batch": batch,
        "threads": threads, "pairs_per_s": len(pairs) / seconds, "tokens_per_s": tokens / seconds,
        "checksum": float(scores.astype("float64").sum()),
        "max_score_change": float(abs(scores - reference).max()),
    })
print(json.dumps(rows, indent=2))
