#!/usr/bin/env python3
"""Generate a synthetic text corpus for Mosaic throughput benchmarks.

Usage (standard library only, no virtualenv needed):

    python3 scripts/corpus/make_bench_corpus.py OUT_DIR [-n 2000] [--seed 1234]

Writes N plain-text files (bench-00001.txt, ...) to OUT_DIR. Each file has a
title line and several paragraphs, 150-600 words in total, of varied English
produced by a word-level Markov chain (order 2 with occasional order-1
back-off) trained on the hand-written test corpus in tests/fixtures/corpus/
and on the PDF/DOCX source text in scripts/corpus/docs_content.py. Numbers are
re-drawn at random so that documents do not repeat each other verbatim.

The output depends only on N, the seed and the training text, so it is fully
reproducible. Do not commit it: write it to /tmp or target/.
"""

import argparse
import html
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_SOURCE = os.path.join(REPO, "tests", "fixtures", "corpus")

START = "\x02"
END = "\x03"


def load_training_text(source_dir):
    texts = []
    for name in sorted(os.listdir(source_dir)):
        path = os.path.join(source_dir, name)
        ext = os.path.splitext(name)[1].lower()
        if name == "README.md" or ext not in (".md", ".txt", ".html", ".htm"):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if ext in (".html", ".htm"):
            text = re.sub(r"(?is)<(script|style|nav)\b.*?</\1>", " ", text)
            text = re.sub(r"(?s)<[^>]+>", " ", text)
            text = html.unescape(text)
        texts.append(text)
    # Text of the generated PDF/DOCX fixtures (pure Python data, no dependencies).
    sys.path.insert(0, HERE)
    try:
        import docs_content
        for doc in docs_content.CORPUS_PDFS:
            for page in doc["pages"]:
                texts.extend(_block_text(page))
        for doc in docs_content.CORPUS_DOCX:
            texts.extend(_block_text(doc["blocks"]))
    except ImportError:
        pass
    return "\n\n".join(texts)


def _block_text(blocks):
    out = []
    for kind, content in blocks:
        if kind == "p":
            out.append(content)
        elif kind == "bullets":
            out.extend(c + "." for c in content)
    return out


def sentences(text):
    """Split training text into lists of word tokens, one list per sentence."""
    # Drop Markdown/table furniture and collapse whitespace.
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("|") or set(s) <= set("=-_*#| "):
            continue
        s = re.sub(r"^(#+|[-*]|\d+\.)\s+", "", s)
        s = s.replace("**", "").replace("*", "").replace("`", "")
        lines.append(s)
    flat = re.sub(r"\s+", " ", " ".join(lines))
    out = []
    for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", flat):
        words = sent.split()
        if 4 <= len(words) <= 60 and sent[-1] in ".!?":
            out.append(words)
    return out


def build_chain(sents):
    chain2, chain1 = {}, {}
    for words in sents:
        seq = [START, START] + words + [END]
        for i in range(2, len(seq)):
            chain2.setdefault((seq[i - 2], seq[i - 1]), []).append(seq[i])
            chain1.setdefault(seq[i - 1], []).append(seq[i])
    return chain2, chain1


NUM_RE = re.compile(r"^(\D*?)(\d[\d,]*(?:\.\d+)?)(\D*)$")


def jitter_number(rng, token):
    m = NUM_RE.match(token)
    if not m:
        return token
    pre, num, post = m.groups()
    digits = num.replace(",", "")
    if "." in digits:
        whole, frac = digits.split(".")
        new = "%d.%s" % (rng.randint(1, max(9, 10 ** len(whole) - 1)),
                         "".join(str(rng.randint(0, 9)) for _ in frac))
    else:
        n = len(digits)
        lo = 10 ** (n - 1) if n > 1 else 1
        new = str(rng.randint(lo, 10 ** n - 1))
        if "," in num and len(new) > 3:
            new = "{:,}".format(int(new))
    return pre + new + post


def make_sentence(rng, chain2, chain1, max_words=45):
    a, b = START, START
    words = []
    while len(words) < max_words:
        if words and rng.random() < 0.08 and b in chain1:
            nxt = rng.choice(chain1[b])        # order-1 back-off for variety
        else:
            nxt = rng.choice(chain2[(a, b)])
        if nxt == END:
            break
        words.append(jitter_number(rng, nxt))
        a, b = b, nxt
    if len(words) < 4:
        return None
    s = " ".join(words)
    s = s[0].upper() + s[1:]
    if s[-1] not in ".!?":
        s = s.rstrip(",;:") + "."
    return s


def make_title(rng, vocab):
    words = rng.sample(vocab, rng.randint(2, 5))
    return " ".join(w.capitalize() for w in words)


def make_document(rng, chain2, chain1, vocab):
    target = rng.randint(150, 600)
    title = make_title(rng, vocab)
    paragraphs, para, count = [], [], len(title.split())
    para_len = rng.randint(3, 7)
    while count < target:
        s = make_sentence(rng, chain2, chain1)
        if s is None:
            continue
        n = len(s.split())
        if count + n > 600:
            break
        para.append(s)
        count += n
        if len(para) >= para_len:
            paragraphs.append(" ".join(para))
            para, para_len = [], rng.randint(3, 7)
    if para:
        paragraphs.append(" ".join(para))
    return title + "\n\n" + "\n\n".join(paragraphs) + "\n", count


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="directory to write the files to (created if missing)")
    ap.add_argument("-n", "--count", type=int, default=2000, help="number of files (default 2000)")
    ap.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    ap.add_argument("--source", default=DEFAULT_SOURCE,
                    help="directory of training text (default tests/fixtures/corpus)")
    args = ap.parse_args()

    sents = sentences(load_training_text(args.source))
    if len(sents) < 50:
        sys.exit("not enough training sentences in %s" % args.source)
    chain2, chain1 = build_chain(sents)
    vocab = sorted({w.strip(".,;:()\"'").lower() for s in sents for w in s
                    if len(w.strip(".,;:()\"'")) >= 5 and w.strip(".,;:()\"'").isalpha()})

    rng = random.Random(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    total_words = total_bytes = 0
    width = max(5, len(str(args.count)))
    for i in range(1, args.count + 1):
        doc, words = make_document(rng, chain2, chain1, vocab)
        data = doc.encode("utf-8")
        with open(os.path.join(args.out_dir, "bench-%0*d.txt" % (width, i)), "wb") as f:
            f.write(data)
        total_words += words
        total_bytes += len(data)
    print("wrote %d files, %d words, %d bytes to %s"
          % (args.count, total_words, total_bytes, args.out_dir))


if __name__ == "__main__":
    main()
