#!/usr/bin/env python3
"""Build the tiny random-weight parity fixtures under tests/fixtures/models/.

Each fixture is a folder in the Hugging Face Hub layout (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json, special_tokens_map.json, and for the embedders the
sentence-transformers files) plus expected.json: the fixed inputs, the token ids the reference
tokenizer produced, and the reference outputs (transformers / sentence-transformers, CPU,
float32, eval mode) at full float32 precision.

  tiny-bert-cross-encoder   BertForSequenceClassification, num_labels=1, WordPiece tokenizer
  tiny-xlmr-cross-encoder   XLMRobertaForSequenceClassification, num_labels=1, SentencePiece
                            Unigram tokenizer with XLM-R's special tokens and pair template
  tiny-bert-embedder        BertModel + sentence-transformers mean pooling + Normalize
  tiny-xlmr-embedder        XLMRobertaModel + sentence-transformers mean pooling + Normalize

Everything is seeded and single-threaded: running it twice gives byte-identical files.
Run it with the pinned reference environment (scripts/setup-reference-env.sh):

  ~/.cache/mosaic/pyref/bin/python scripts/make_parity_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "models"

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
    "restorers clean gears, repair springs and tune the tiny bells of the singing birds. "
    "Today the collection holds about two thousand objects, and the great astronomical "
    "clock in the central hall still strikes every hour, showing the phases of the moon, "
    "the tides of the harbour and the position of the planets."
)

# (query, passage) pairs for the cross-encoders. Pair 3 has accents and a character that is
# in neither vocabulary (the emoji -> unknown token); pair 4 is long enough that pair
# truncation ("longest_first", max_length 128) cuts the passage.
PAIRS = [
    ("how do glass frogs hide", "Glass frogs have translucent skin, so predators see the leaf beneath them."),
    ("how do glass frogs hide", "The canal was finished in 1842 and carried coal to the harbour."),
    ("what is the capital of france", "Paris is the capital and largest city of France."),
    ("café opening hours", "The Zürich café opens at 7:30 every morning, even on Sundays \U0001F642."),
    ("history of the clockwork museum", LONG_PASSAGE),
]

# Sentences for the embedders: very short, typical, accents + unknown character, and one that
# is longer than the embedders' max_seq_length (64) so truncation is exercised.
SENTENCES = [
    "Hello!",
    "A man is eating food.",
    "Glass frogs have translucent skin, so predators see the leaf beneath them.",
    "Crème brûlée at the café in Zürich costs 7.50 francs \U0001F642",
    LONG_PASSAGE,
]

CROSS_MAX_LENGTH = 128
EMBED_MAX_SEQ_LENGTH = 64

# Small sizes shared by all four models.
HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 64

# Extra text for the SentencePiece training corpus (several languages, as XLM-R is
# multilingual). The unknown character is kept out of it on purpose.
SPM_EXTRA_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating a piece of bread.",
    "Search engines rank passages by how well they answer a question.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Die Uhr im Museum schlägt jede Stunde.",
    "Le café ouvre à sept heures et demie tous les matins.",
    "La grenouille de verre a une peau transparente.",
    "El museo de relojes abrió en mil novecientos cuatro.",
    "¿Dónde está la estación de tren?",
    "Paris est la capitale de la France.",
]

UNKNOWN_CHAR = "\U0001F642"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def f32_list(t) -> list:
    """Tensor/array -> nested lists of Python floats that are exactly the float32 values."""
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
    return a.astype(np.float64).tolist()


def int_list(t) -> list:
    a = np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t)
    return a.astype(np.int64).tolist()


def _is_scalar_list(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, (int, float, str, bool)) or x is None for x in v
    )


def dump_json(obj, indent: int = 0) -> str:
    """Deterministic JSON: objects indented, lists of scalars on one line, floats as repr()."""
    pad = "  " * indent
    pad1 = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(str(k), ensure_ascii=False)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if not obj:
            return "[]"
        if _is_scalar_list(obj):
            return "[" + ", ".join(dump_json(x, indent + 1) for x in obj) + "]"
        items = [pad1 + dump_json(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("non-finite float in expected output")
        return repr(obj)
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    path.write_text(dump_json(obj) + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded random values.

    Independent of transformers' own init (which may change between versions), and large
    enough that the outputs depend visibly on every weight and input: LayerNorm gammas/betas
    are not 1/0, biases are not 0 (so swapped or missing tensors change the result), and the
    query/key and head weights are larger than transformers' 0.02 init so attention is not
    uniform and the logits of different pairs differ by whole units.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "LayerNorm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * noise)
                else:
                    p.copy_(0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif "embeddings" in name:
                p.copy_(1.0 * noise)
            elif ".query." in name or ".key." in name:
                p.copy_(0.5 * noise)  # sharper attention: outputs depend more on the input
            elif "classifier" in name or "pooler" in name:
                p.copy_(0.5 * noise)  # logits spread over a few units, not all near 0
            else:
                p.copy_(0.25 * noise)


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
        "sentence_transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def unpadded(enc, i: int, keys) -> dict:
    n = int(enc["attention_mask"][i].sum())
    return {k: int_list(enc[k][i][:n]) for k in keys if k in enc}


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------

# Words that are deliberately *not* whole entries in the WordPiece vocab, so that greedy
# longest-match-first splitting into "##" continuations is exercised.
BERT_SPLIT_WORDS = {"translucent", "predators", "clockwork", "harbour", "morning", "restorers", "astronomical"}
BERT_PIECES = [
    "trans", "##lu", "##cent", "predator", "clock", "##work", "harb", "##our", "morn",
    "restore", "astro", "##nom", "##ical",
    "##s", "##es", "##ed", "##ing", "##er", "##ly", "##est", "##tion",
]


def build_bert_tokenizer(save_dir: Path):
    """A few-hundred-token WordPiece vocab covering the test inputs -> BertTokenizerFast."""
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import BasicTokenizer

    basic = BasicTokenizer(do_lower_case=True)
    texts = [t for pair in PAIRS for t in pair] + SENTENCES + SPM_EXTRA_CORPUS
    words = set()
    for t in texts:
        for w in basic.tokenize(t):
            if w.isascii() and w not in BERT_SPLIT_WORDS:
                words.add(w)

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += punct + digits + letters
    vocab += ["##" + c for c in letters + digits]
    vocab += BERT_PIECES
    vocab += sorted(words)
    seen, ordered = set(), []
    for tok in vocab:
        if tok not in seen:
            seen.add(tok)
            ordered.append(tok)

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("".join(t + "\n" for t in ordered), encoding="utf-8")
        tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=512)
        tok.save_pretrained(str(save_dir))
    return len(ordered)


def train_xlmr_spm(tmp: Path) -> Path:
    """Train a small SentencePiece Unigram model (XLM-R style ids: <unk>=0 <s>=1 </s>=2)."""
    import sentencepiece as spm

    corpus = []
    for t in [t for pair in PAIRS for t in pair] + SENTENCES + SPM_EXTRA_CORPUS:
        t = t.replace(UNKNOWN_CHAR, "").strip()
        if t:
            corpus.append(t)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type="unigram",
        vocab_size=400,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    path = tmp / "sentencepiece.bpe.model"
    path.write_bytes(model.getvalue())
    return path


def build_xlmr_tokenizer(save_dir: Path, spm_path: Path) -> int:
    """XLMRobertaTokenizerFast converted from the SentencePiece model (as the Hub's XLM-R
    tokenizer.json is): Precompiled(nmt_nfkc) normalizer, Metaspace pre-tokenizer, Unigram
    model, ids <s>=0 <pad>=1 </s>=2 <unk>=3, spm pieces shifted by one, <mask> last, and the
    template <s> A </s> / <s> A </s></s> B </s>."""
    from transformers import XLMRobertaTokenizerFast

    tok = XLMRobertaTokenizerFast(vocab_file=str(spm_path), model_max_length=512)
    tok.save_pretrained(str(save_dir))
    # Rust only needs tokenizer.json; the .model file would duplicate the 240 kB charsmap.
    (save_dir / "sentencepiece.bpe.model").unlink(missing_ok=True)
    return len(tok)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def bert_config(vocab_size: int, **kw):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        max_position_embeddings=512,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        **kw,
    )


def xlmr_config(vocab_size: int, **kw):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_act="gelu",
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **kw,
    )


def tokenizer_summary(tok) -> dict:
    tj = json.loads(tok.backend_tokenizer.to_str())
    specials = {}
    for name in ["cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token"]:
        t = getattr(tok, name, None)
        if t is not None:
            specials[name] = {"token": str(t), "id": tok.convert_tokens_to_ids(str(t))}
    post = tj.get("post_processor") or {}

    def template(seq):
        parts = []
        for item in seq or []:
            if "SpecialToken" in item:
                parts.append(f"{item['SpecialToken']['id']}:{item['SpecialToken']['type_id']}")
            else:
                parts.append(f"${item['Sequence']['id']}:{item['Sequence']['type_id']}")
        return " ".join(parts)

    return {
        "class": type(tok).__name__,
        "vocab_size": len(tok),
        "model": tj["model"]["type"],
        "normalizer": (tj.get("normalizer") or {}).get("type"),
        "pre_tokenizer": (tj.get("pre_tokenizer") or {}).get("type"),
        "post_processor": post.get("type"),
        "single_template": template(post.get("single")),
        "pair_template": template(post.get("pair")),
        "special_tokens": specials,
        "model_input_names": list(tok.model_input_names),
        "tokenizer_json_truncation": tj.get("truncation"),
        "tokenizer_json_padding": tj.get("padding"),
    }


def cross_encoder_fixture(out: Path, kind: str, seed: int, spm_path: Path | None) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = f"tiny-{kind}-cross-encoder"
    d = fresh_dir(out / name)
    if kind == "bert":
        vocab_size = build_bert_tokenizer(d)
        config = bert_config(vocab_size, num_labels=1)
        from transformers import BertForSequenceClassification as Cls
        prefix = "bert."
        head = ["bert.pooler.dense.{weight,bias}", "classifier.{weight,bias}"]
        head_note = (
            "logit = classifier(tanh(pooler.dense(hidden[:, 0]))): BERT pooler on [CLS], "
            "then a Linear(hidden, 1)."
        )
    else:
        vocab_size = build_xlmr_tokenizer(d, spm_path)
        config = xlmr_config(vocab_size, num_labels=1)
        from transformers import XLMRobertaForSequenceClassification as Cls
        prefix = "roberta."
        head = ["classifier.dense.{weight,bias}", "classifier.out_proj.{weight,bias}"]
        head_note = (
            "logit = classifier.out_proj(tanh(classifier.dense(hidden[:, 0]))): "
            "RobertaClassificationHead on <s>; there is no roberta.pooler."
        )
    torch.manual_seed(seed)
    model = Cls(config)
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    del model

    # Everything below uses the files as saved, loaded the way users load them.
    tok = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForSequenceClassification.from_pretrained(str(d)).eval()
    queries = [q for q, _ in PAIRS]
    passages = [p for _, p in PAIRS]
    keys = [k for k in ["input_ids", "token_type_ids", "attention_mask"] if k in tok.model_input_names]

    batch = tok(queries, passages, padding=True, truncation="longest_first",
                max_length=CROSS_MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        out_b = model(**{k: batch[k] for k in keys}, output_hidden_states=True)
    logits = out_b.logits[:, 0]

    pairs = []
    unbatched = []
    for i, (q, p) in enumerate(PAIRS):
        enc = tok(q, p, truncation="longest_first", max_length=CROSS_MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            o = model(**{k: enc[k] for k in keys}, output_hidden_states=True)
        unbatched.append(o.logits[0, 0])
        ids = unpadded(batch, i, keys)
        assert ids["input_ids"] == int_list(enc["input_ids"][0]), "batch vs single tokenization"
        untrunc = tok(q, p)["input_ids"]
        entry = {
            "query": q,
            "passage": p,
            "tokens": tok.convert_ids_to_tokens(ids["input_ids"]),
            **ids,
            "untruncated_length": len(untrunc),
            "truncated": len(untrunc) > CROSS_MAX_LENGTH,
            "logit": float(np.float32(logits[i].item())),
            "logit_unbatched": float(np.float32(o.logits[0, 0].item())),
        }
        if i == 0:
            entry["last_hidden_state"] = f32_list(o.hidden_states[-1][0])
        pairs.append(entry)
    unbatched = torch.stack(unbatched)
    assert torch.allclose(logits, unbatched, atol=1e-5), (logits, unbatched)

    # Cross-check with sentence-transformers' CrossEncoder (what Python users would run).
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(d), max_length=CROSS_MAX_LENGTH, device="cpu",
                      default_activation_function=torch.nn.Identity())
    ce_scores = ce.predict(PAIRS, batch_size=len(PAIRS), show_progress_bar=False)
    assert np.allclose(ce_scores, logits.numpy(), atol=1e-5), (ce_scores, logits)

    batch_record = {k: int_list(batch[k]) for k in keys}
    if kind == "xlmr":
        from transformers.models.xlm_roberta.modeling_xlm_roberta import create_position_ids_from_input_ids

        batch_record["position_ids"] = int_list(
            create_position_ids_from_input_ids(batch["input_ids"], config.pad_token_id)
        )

    weights = d / "model.safetensors"
    expected = {
        "description": (
            f"Random-weight {Cls.__name__} (seed {seed}) and the reference outputs of transformers "
            f"{transformers.__version__} (CPU, float32, eval). Logits are raw (no sigmoid)."
        ),
        "generator": "scripts/make_parity_fixtures.py",
        "versions": versions(),
        "architecture": Cls.__name__,
        "config": {
            "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "num_labels": 1, "vocab_size": vocab_size,
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps,
            "pad_token_id": config.pad_token_id, "hidden_act": config.hidden_act,
        },
        "weights": {
            "file": "model.safetensors",
            "dtype": "F32",
            "prefix": prefix,
            "prefix_note": (
                f"Encoder tensors are stored under '{prefix}' (as save_pretrained writes a "
                f"*ForSequenceClassification model); the head is {', '.join(head)}. "
                "No position_ids / token_type_ids buffers are stored."
            ),
            "head": head_note,
            "tensors": tensor_table(weights),
        },
        "tokenizer": tokenizer_summary(tok),
        "encoding": {
            "call": "tokenizer(queries, passages, padding=True, truncation='longest_first', max_length=128)",
            "max_length": CROSS_MAX_LENGTH,
            "truncation": "longest_first",
            "padding": "longest (right), batch of all pairs",
        },
        "pairs": pairs,
        "batch": batch_record,
        "logits": f32_list(logits),
        "logits_unbatched": f32_list(unbatched),
        "scores_sigmoid": f32_list(torch.sigmoid(logits)),
        "files": files_table(d),
    }
    if kind == "xlmr":
        expected["xlmr_notes"] = (
            "Position ids are padding_idx + 1 + index for real tokens (start at 2) and padding_idx (1) "
            "at padding (create_position_ids_from_input_ids); token_type_ids are all zero "
            "(type_vocab_size 1, the tokenizer does not return them)."
        )
    write_json(d / "expected.json", expected)
    return expected


def embedder_fixture(out: Path, kind: str, seed: int, spm_path: Path | None) -> dict:
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoModel, AutoTokenizer

    name = f"tiny-{kind}-embedder"
    d = fresh_dir(out / name)
    if kind == "bert":
        vocab_size = build_bert_tokenizer(d)
        config = bert_config(vocab_size)
        from transformers import BertModel as Cls
    else:
        vocab_size = build_xlmr_tokenizer(d, spm_path)
        config = xlmr_config(vocab_size)
        from transformers import XLMRobertaModel as Cls
    torch.manual_seed(seed)
    model = Cls(config)  # with pooler, as AutoModel checkpoints on the Hub usually are
    randomize_(model, seed)
    model.eval()
    model.save_pretrained(str(d), safe_serialization=True)
    del model

    # Wrap in the sentence-transformers layout (modules.json, sentence_bert_config.json,
    # config_sentence_transformers.json, 1_Pooling/config.json, 2_Normalize).
    tr = models.Transformer(str(d), max_seq_length=EMBED_MAX_SEQ_LENGTH)
    pool = models.Pooling(tr.get_word_embedding_dimension(), pooling_mode="mean")
    tr.auto_model.config._name_or_path = ""  # else the absolute temp path lands in config.json
    st = SentenceTransformer(modules=[tr, pool, models.Normalize()], device="cpu")
    st.save(str(d), create_model_card=False)
    del st, tr
    norm_dir = d / "2_Normalize"
    if norm_dir.is_dir() and not any(norm_dir.iterdir()):
        norm_dir.rmdir()  # empty (git cannot keep it; the Hub repos do not have it either)

    # Reference outputs from the saved folder, loaded as users load it.
    st = SentenceTransformer(str(d), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Normalize"]
    assert st.max_seq_length == EMBED_MAX_SEQ_LENGTH
    emb = st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_tensor=True,
                    show_progress_bar=False)
    tok_embs = st.encode(SENTENCES, batch_size=len(SENTENCES), output_value="token_embeddings",
                         show_progress_bar=False)
    features = st.tokenize(SENTENCES)
    keys = [k for k in ["input_ids", "token_type_ids", "attention_mask"] if k in features]

    # Independent check with plain transformers: mean pooling over the mask, then L2 norm.
    tok = AutoTokenizer.from_pretrained(str(d))
    hf = AutoModel.from_pretrained(str(d)).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=EMBED_MAX_SEQ_LENGTH,
                return_tensors="pt")
    for k in keys:
        assert torch.equal(batch[k], features[k]), k
    with torch.no_grad():
        h = hf(**{k: batch[k] for k in keys}).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    normed = torch.nn.functional.normalize(mean, p=2, dim=1)
    assert torch.allclose(normed, emb, atol=1e-6), (normed - emb).abs().max()

    sentences = []
    for i, s in enumerate(SENTENCES):
        ids = unpadded(features, i, keys)
        untrunc = tok(s)["input_ids"]
        sentences.append({
            "text": s,
            "tokens": tok.convert_ids_to_tokens(ids["input_ids"]),
            **ids,
            "untruncated_length": len(untrunc),
            "truncated": len(untrunc) > EMBED_MAX_SEQ_LENGTH,
            "embedding": f32_list(emb[i]),
            "mean_pooled": f32_list(mean[i]),
            "token_embeddings": f32_list(tok_embs[i]),
        })

    weights = d / "model.safetensors"
    expected = {
        "description": (
            f"Random-weight {Cls.__name__} (seed {seed}) in the sentence-transformers layout "
            f"(mean pooling + Normalize) and the embeddings sentence-transformers "
            f"{sentence_transformers.__version__} computes (CPU, float32). 'embedding' is the "
            "normalized output; 'mean_pooled' is before normalization; 'token_embeddings' are the "
            "last hidden states of the real (unpadded) tokens."
        ),
        "generator": "scripts/make_parity_fixtures.py",
        "versions": versions(),
        "architecture": Cls.__name__,
        "config": {
            "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "vocab_size": vocab_size,
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size, "layer_norm_eps": config.layer_norm_eps,
            "pad_token_id": config.pad_token_id, "hidden_act": config.hidden_act,
        },
        "weights": {
            "file": "model.safetensors",
            "dtype": "F32",
            "prefix": "",
            "prefix_note": (
                "Bare AutoModel names (embeddings.*, encoder.layer.N.*, pooler.*), no model-type "
                "prefix, as save_pretrained writes a base model. The pooler is present but unused "
                "by mean pooling. No position_ids buffer is stored."
            ),
            "tensors": tensor_table(weights),
        },
        "tokenizer": tokenizer_summary(tok),
        "pipeline": {
            "max_seq_length": EMBED_MAX_SEQ_LENGTH,
            "pooling": "mean over attention_mask",
            "normalize": True,
            "encode_call": "SentenceTransformer(dir).encode(sentences, batch_size=5)",
            "padding": "longest (right), all sentences in one batch",
        },
        "sentences": sentences,
        "batch": {k: int_list(features[k]) for k in keys},
        "embeddings": f32_list(emb),
        "files": files_table(d),
    }
    if kind == "xlmr":
        from transformers.models.xlm_roberta.modeling_xlm_roberta import create_position_ids_from_input_ids

        expected["batch"]["position_ids"] = int_list(
            create_position_ids_from_input_ids(features["input_ids"], config.pad_token_id)
        )
    write_json(d / "expected.json", expected)
    return expected


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixtures folder (default: %(default)s)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        spm_path = train_xlmr_spm(Path(tmp))
        cross_encoder_fixture(out, "bert", seed=1001, spm_path=None)
        cross_encoder_fixture(out, "xlmr", seed=1002, spm_path=spm_path)
        embedder_fixture(out, "bert", seed=2001, spm_path=None)
        embedder_fixture(out, "xlmr", seed=2002, spm_path=spm_path)

    total = 0
    for name in ["tiny-bert-cross-encoder", "tiny-xlmr-cross-encoder", "tiny-bert-embedder", "tiny-xlmr-embedder"]:
        for p in sorted((out / name).rglob("*")):
            if p.is_file():
                total += p.stat().st_size
                print(f"{p.stat().st_size:>9}  {p.relative_to(out)}")
    print(f"{total:>9}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
