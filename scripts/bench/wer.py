#!/usr/bin/env python3
"""Word error rate (word-level edit distance over the reference's length, words lowercased and
stripped of punctuation), as tests/e2e/speech.rs computes it.
Usage: wer.py REFERENCE.txt RESULT.json   (RESULT's "text" is the hypothesis)"""
import json
import re
import sys


def words(text):
    return [w for w in (re.sub(r"[^0-9a-z]", "", w.lower()) for w in text.split()) if w]


def wer(reference, hypothesis):
    r, h = words(reference), words(hypothesis)
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j - 1] + (r[i - 1] != h[j - 1]), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return prev[len(h)] / max(1, len(r))


if __name__ == "__main__":
    print(f"{wer(open(sys.argv[1]).read(), json.load(open(sys.argv[2]))['text']):.4f}")
