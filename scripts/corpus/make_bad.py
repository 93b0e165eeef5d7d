#!/usr/bin/env python3
"""Regenerate tests/fixtures/bad/: inputs that Mosaic's ingestion must survive.

Usage (from the repository root, with scripts/corpus/requirements.txt installed):

    .venv/bin/python scripts/corpus/make_bad.py

Files written (all deterministic; pseudo-random bytes come from SHA-256 in
counter mode, so they do not depend on Python's random module):

  corrupt.pdf      "%PDF-1.7" header followed by ~2 KB of garbage bytes
  truncated.pdf    a valid two-page ReportLab PDF cut to half its length
  empty.txt        0 bytes
  binary-blob.txt  4 KB of pseudo-random bytes, including NUL bytes
  fake.docx        plain text with a .docx extension (not a zip archive)
  unknown.xyz      pseudo-random bytes with an unsupported extension
  good.md          one valid Markdown file with a distinctive fact

Only good.md should produce chunks; every other file should be reported as
skipped/failed without aborting the ingestion run.
"""

import hashlib
import io
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BAD_DIR = os.path.join(REPO, "tests", "fixtures", "bad")


def prng_bytes(label, n):
    """n deterministic pseudo-random bytes derived from `label`."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(("%s:%d" % (label, counter)).encode()).digest()
        counter += 1
    return bytes(out[:n])


def valid_pdf_bytes():
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setTitle("Truncation victim")
    for page in range(1, 3):
        c.setFont("Helvetica", 12)
        y = 780
        for line in range(30):
            c.drawString(72, y, "Truncated fixture page %d line %d: the quick brown "
                                "fox jumps over the lazy dog." % (page, line + 1))
            y -= 22
        c.showPage()
    c.save()
    return buf.getvalue()


def main():
    os.makedirs(BAD_DIR, exist_ok=True)
    files = {}

    garbage = bytearray(prng_bytes("corrupt.pdf", 2048))
    files["corrupt.pdf"] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(garbage)

    pdf = valid_pdf_bytes()
    files["truncated.pdf"] = pdf[: len(pdf) // 2]

    files["empty.txt"] = b""

    blob = bytearray(prng_bytes("binary-blob.txt", 4096))
    for i in range(0, len(blob), 64):  # guarantee plenty of NULs
        blob[i] = 0
    files["binary-blob.txt"] = bytes(blob)

    files["fake.docx"] = (
        b"This file has a .docx extension but it is plain text, not a zip archive.\n"
        b"A DOCX reader must reject it with an error instead of crashing.\n"
    )

    files["unknown.xyz"] = prng_bytes("unknown.xyz", 1024)

    files["good.md"] = (
        "# The Pellinore Lighthouse Keepers' Log\n"
        "\n"
        "This is the only valid document in the bad-input fixture directory.\n"
        "\n"
        "The Pellinore lighthouse on Gannet Skerry was kept by Horatio Vellacott\n"
        "from 1902 until 1931. During those twenty-nine years he recorded 4,716 ships\n"
        "passing the skerry in his log and lit the lamp on 10,583 consecutive nights.\n"
        "His lamp burned colza oil until 1911, when it was converted to paraffin.\n"
    ).encode("utf-8")

    for name, data in sorted(files.items()):
        with open(os.path.join(BAD_DIR, name), "wb") as f:
            f.write(data)
        print("wrote tests/fixtures/bad/%s (%d bytes)" % (name, len(data)))


if __name__ == "__main__":
    main()
