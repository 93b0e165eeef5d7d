#!/usr/bin/env python3
"""Writes a JSON array of N texts of about W words, cut from a folder of text files, for
`mosaic bench embed` and the sentence-transformers reference (both read the same file)."""
import json, pathlib, sys

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
n = int(sys.argv[3]) if len(sys.argv) > 3 else 512
w = int(sys.argv[4]) if len(sys.argv) > 4 else 200
words = []
for f in sorted(src.glob("*")):
    if f.is_file():
        words.extend(f.read_text(errors="replace").split())
texts = [" ".join(words[i * w:(i + 1) * w]) for i in range(n) if (i + 1) * w <= len(words)]
out.write_text(json.dumps(texts))
print(f"{len(texts)} texts of {w} words -> {out}")
