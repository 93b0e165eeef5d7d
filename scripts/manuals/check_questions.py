#!/usr/bin/env python3
"""Check tests/fixtures/manuals/questions.json against the rendered pages.

For every answerable item:
  * the file exists in the fixture folder;
  * every fact (at least one of its "|"-separated alternatives) occurs within a
    single line of the file, after runs of whitespace are collapsed to one space;
  * the quote occurs in the whole file, after the same collapsing.
For every unanswerable item the page named in "about" must exist.

Also checks the counts the set promises (answerable, unanswerable, per page,
per type) and prints a summary. Exits 1 if anything fails.

Usage: check_questions.py [--dir DIR]   (default: tests/fixtures/manuals)
"""
import argparse
import collections
import json
import os
import re
import sys

TYPES = [
    "quantity", "size", "duration", "date", "version", "person", "place",
    "option", "yesno", "definition", "procedure", "list",
]
MIN_ANSWERABLE = 60
MIN_UNANSWERABLE = 12
MIN_PER_PAGE = 2
MAX_PER_PAGE = 8
MIN_PER_TYPE = 2

WS = re.compile(r"\s+")


def collapse(text):
    return WS.sub(" ", text).strip()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.path.normpath(os.path.join(here, "..", "..", "tests", "fixtures", "manuals"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=default_dir, help="fixture folder (default: %(default)s)")
    args = ap.parse_args()

    qpath = os.path.join(args.dir, "questions.json")
    with open(qpath, encoding="utf-8") as fh:
        items = json.load(fh)
    if not isinstance(items, list):
        print(f"{qpath}: top level is not a JSON array")
        return 1

    pages = sorted(n for n in os.listdir(args.dir) if n.endswith(".txt"))
    cache = {}

    def load(name):
        if name not in cache:
            with open(os.path.join(args.dir, name), encoding="utf-8") as fh:
                raw = fh.read()
            lines = [collapse(line) for line in raw.splitlines()]
            cache[name] = (collapse(raw), lines)
        return cache[name]

    errors = []
    seen_questions = set()
    per_type = collections.Counter()
    per_type_unans = collections.Counter()
    per_page = collections.Counter()
    per_page_unans = collections.Counter()
    n_ans = n_unans = 0

    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, dict):
            errors.append(f"{where}: not an object")
            continue
        question = item.get("question")
        where = f"item {i} ({question!r})"
        if not isinstance(question, str) or not question.strip():
            errors.append(f"{where}: missing question")
            continue
        if question in seen_questions:
            errors.append(f"{where}: duplicate question")
        seen_questions.add(question)
        qtype = item.get("type")
        if qtype not in TYPES:
            errors.append(f"{where}: unknown type {qtype!r}")

        if item.get("unanswerable") is True:
            n_unans += 1
            per_type_unans[qtype] += 1
            about = item.get("about")
            extra = set(item) - {"question", "type", "unanswerable", "about"}
            if extra:
                errors.append(f"{where}: unexpected keys {sorted(extra)}")
            if about not in pages:
                errors.append(f"{where}: 'about' page {about!r} not in {args.dir}")
            else:
                per_page_unans[about] += 1
            continue

        n_ans += 1
        per_type[qtype] += 1
        extra = set(item) - {"question", "file", "type", "facts", "quote"}
        if extra:
            errors.append(f"{where}: unexpected keys {sorted(extra)}")
        name = item.get("file")
        if name not in pages:
            errors.append(f"{where}: file {name!r} not in {args.dir}")
            continue
        per_page[name] += 1
        text, lines = load(name)

        facts = item.get("facts")
        if not isinstance(facts, list) or not 1 <= len(facts) <= 2 \
                or not all(isinstance(f, str) and f.strip() for f in facts):
            errors.append(f"{where}: facts must be a list of 1-2 non-empty strings")
            facts = []
        for fact in facts:
            alts = [a.strip() for a in fact.split("|") if a.strip()]
            if not alts:
                errors.append(f"{where}: empty fact {fact!r}")
                continue
            if not any(any(a in line for line in lines) for a in alts):
                errors.append(f"{where}: fact {fact!r} not found within one line of {name}")

        quote = item.get("quote")
        if not isinstance(quote, str) or not quote.strip():
            errors.append(f"{where}: missing quote")
        elif collapse(quote) != quote:
            errors.append(f"{where}: quote is not whitespace-collapsed")
        elif quote not in text:
            errors.append(f"{where}: quote not found in {name}: {quote!r}")

    if n_ans < MIN_ANSWERABLE:
        errors.append(f"only {n_ans} answerable items (need {MIN_ANSWERABLE})")
    if n_unans < MIN_UNANSWERABLE:
        errors.append(f"only {n_unans} unanswerable items (need {MIN_UNANSWERABLE})")
    for page in pages:
        if per_page[page] < MIN_PER_PAGE:
            errors.append(f"{page}: {per_page[page]} answerable items (need {MIN_PER_PAGE})")
        if per_page[page] > MAX_PER_PAGE:
            errors.append(f"{page}: {per_page[page]} answerable items (at most {MAX_PER_PAGE})")
    for t in TYPES:
        if per_type[t] < MIN_PER_TYPE:
            errors.append(f"type {t}: {per_type[t]} answerable items (need {MIN_PER_TYPE})")

    print(f"{qpath}: {len(items)} items, {n_ans} answerable, {n_unans} unanswerable, "
          f"{len(pages)} pages")
    print(f"{'type':<12} {'answerable':>10} {'unanswerable':>12}")
    for t in TYPES:
        print(f"{t:<12} {per_type[t]:>10} {per_type_unans[t]:>12}")
    print(f"{'page':<26} {'answerable':>10} {'unanswerable':>12}")
    for page in pages:
        print(f"{page:<26} {per_page[page]:>10} {per_page_unans[page]:>12}")

    if errors:
        print(f"\n{len(errors)} problem(s):")
        for e in errors:
            print(f"  {e}")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
