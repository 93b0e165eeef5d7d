#!/usr/bin/env python3
"""Regenerate the PDF and DOCX fixtures of Mosaic's test corpus and samples.

Usage (from the repository root):

    python3 -m venv .venv
    .venv/bin/pip install -r scripts/corpus/requirements.txt
    .venv/bin/python scripts/corpus/make_corpus.py            # write files
    .venv/bin/python scripts/corpus/make_corpus.py --verify   # also check questions.json

The .md, .txt and .html fixtures are hand-written and committed as-is; this
script only (re)builds the binary formats from the text in docs_content.py.

Output is byte-for-byte deterministic for the pinned package versions:
  * PDFs are written by ReportLab in "invariant" mode (fixed creation date and
    document ID);
  * DOCX core properties use fixed dates, and the zip container is rewritten
    with fixed timestamps and a fixed member order.
"""

import argparse
import datetime
import io
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import docs_content  # noqa: E402

CORPUS_DIR = os.path.join(REPO, "tests", "fixtures", "corpus")
SAMPLES_DIR = os.path.join(REPO, "samples")

FIXED_DATETIME = datetime.datetime(2024, 1, 1, 12, 0, 0)
ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------

def build_pdf(doc, out_path):
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (KeepTogether, ListFlowable, ListItem, PageBreak,
                                    Paragraph, SimpleDocTemplate, Spacer, Table,
                                    TableStyle)
    from xml.sax.saxutils import escape

    styles = getSampleStyleSheet()
    body = ParagraphStyle("MosaicBody", parent=styles["BodyText"], fontName="Helvetica",
                          fontSize=10.5, leading=14, spaceAfter=6)
    h1 = ParagraphStyle("MosaicH1", parent=styles["Heading1"], fontName="Helvetica-Bold",
                        fontSize=17, leading=21, spaceAfter=10)
    h2 = ParagraphStyle("MosaicH2", parent=styles["Heading2"], fontName="Helvetica-Bold",
                        fontSize=13, leading=16, spaceBefore=8, spaceAfter=4)
    cell = ParagraphStyle("MosaicCell", parent=body, fontSize=9.5, leading=12, spaceAfter=0)

    n_pages = len(doc["pages"])
    story = []
    for i, page in enumerate(doc["pages"]):
        for kind, content in page:
            if kind == "h1":
                story.append(Paragraph(escape(content), h1))
            elif kind == "h2":
                story.append(Paragraph(escape(content), h2))
            elif kind == "p":
                story.append(Paragraph(escape(content), body))
            elif kind == "bullets":
                story.append(ListFlowable(
                    [ListItem(Paragraph(escape(t), body), leftIndent=12) for t in content],
                    bulletType="bullet", start="-", leftIndent=12))
            elif kind == "table":
                data = [[Paragraph(escape(c), cell) for c in row] for row in content]
                t = Table(data, hAlign="LEFT")
                t.setStyle(TableStyle([
                    ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]))
                story.append(KeepTogether([t, Spacer(1, 6)]))
            else:
                raise ValueError("unknown block kind %r" % kind)
        if i != n_pages - 1:
            story.append(PageBreak())

    def decorate(canvas, tmpl):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(20 * mm, 12 * mm, doc["title"])
        canvas.drawRightString(A4[0] - 20 * mm, 12 * mm,
                               "Page %d of %d" % (canvas.getPageNumber(), n_pages))
        canvas.restoreState()

    template = SimpleDocTemplate(
        out_path, pagesize=A4, invariant=1,
        leftMargin=22 * mm, rightMargin=22 * mm, topMargin=22 * mm, bottomMargin=22 * mm,
        title=doc["title"], author=doc["author"], subject=doc.get("subject", ""),
        creator="Mosaic scripts/corpus/make_corpus.py",
    )
    template.build(story, onFirstPage=decorate, onLaterPages=decorate)

    # Sanity check: one logical page per PDF page.
    from pypdf import PdfReader
    got = len(PdfReader(out_path).pages)
    if got != n_pages:
        raise SystemExit("%s: expected %d pages, got %d (a page overflowed)"
                         % (out_path, n_pages, got))


# --------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------

def normalize_zip(path):
    """Rewrite a zip with fixed timestamps/attributes so output is reproducible."""
    with zipfile.ZipFile(path) as zin:
        members = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zout:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0o600 << 16
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def build_docx(doc, out_path):
    import docx

    d = docx.Document()
    cp = d.core_properties
    cp.title = doc["title"]
    cp.author = doc["author"]
    cp.last_modified_by = doc["author"]
    cp.created = FIXED_DATETIME
    cp.modified = FIXED_DATETIME
    cp.last_printed = FIXED_DATETIME
    cp.revision = 1
    cp.comments = "Generated by Mosaic scripts/corpus/make_corpus.py"

    for kind, content in doc["blocks"]:
        if kind == "h1":
            d.add_heading(content, level=1)
        elif kind == "h2":
            d.add_heading(content, level=2)
        elif kind == "p":
            d.add_paragraph(content)
        elif kind == "bullets":
            for item in content:
                d.add_paragraph(item, style="List Bullet")
        elif kind == "table":
            t = d.add_table(rows=len(content), cols=len(content[0]))
            t.style = "Table Grid"
            for r, row in enumerate(content):
                for c, text in enumerate(row):
                    t.cell(r, c).text = text
        else:
            raise ValueError("unknown block kind %r" % kind)
    d.save(out_path)
    normalize_zip(out_path)


# --------------------------------------------------------------------------
# Verification of questions.json (optional)
# --------------------------------------------------------------------------

def extract_text(path):
    """Return a list of (page_or_None, text) passages for one corpus file."""
    import re
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pdf":
        from pypdf import PdfReader
        return [(i + 1, p.extract_text()) for i, p in enumerate(PdfReader(path).pages)]
    if ext == ".docx":
        import docx
        d = docx.Document(path)
        return [(None, "\n".join(p.text for p in d.paragraphs))]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if ext in (".html", ".htm"):
        text = re.sub(r"(?is)<(script|style|nav)\b.*?</\1>", " ", text)
        text = re.sub(r"(?s)<[^>]+>", " ", text)
        import html
        text = html.unescape(text)
    return [(None, text)]


def pdftotext_pages(path, n):
    """Second opinion from poppler's pdftotext, if it is installed."""
    import shutil
    import subprocess
    if not shutil.which("pdftotext"):
        return None
    out = []
    for i in range(1, n + 1):
        r = subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), path, "-"],
                           capture_output=True, text=True, check=True)
        out.append(r.stdout)
    return out


def verify():
    import json
    with open(os.path.join(CORPUS_DIR, "questions.json"), encoding="utf-8") as f:
        questions = json.load(f)
    # README.md is included on purpose: it must not contain any answer substring.
    files = sorted(n for n in os.listdir(CORPUS_DIR) if n != "questions.json")
    texts = {n: extract_text(os.path.join(CORPUS_DIR, n)) for n in files}
    poppler = {n: pdftotext_pages(os.path.join(CORPUS_DIR, n), len(texts[n]))
               for n in files if n.endswith(".pdf")}
    errors = 0
    for q in questions:
        sub, fname, page = q["answer_substring"], q["file"], q["page"]
        where = []
        for n, passages in texts.items():
            for pg, t in passages:
                if sub in t:
                    where.append((n, pg))
        expected = [(fname, page)]
        ok = where == expected and 5 <= len(sub) <= 60
        if ok and fname.endswith(".pdf") and poppler.get(fname) is not None:
            ok = sub in poppler[fname][page - 1]
        if not ok:
            errors += 1
            print("FAIL: %r expected in %s p%s, found in %s" % (sub, fname, page, where))
    # Script/nav canaries must exist in the raw HTML but not in extracted text.
    for n, passages in texts.items():
        raw = open(os.path.join(CORPUS_DIR, n), "rb").read()
        if n.endswith(".html") and b"SCRIPTCANARY" not in raw:
            errors += 1
            print("FAIL: %s has no canary token in its <script>" % n)
        if any("SCRIPTCANARY" in t for _, t in passages):
            errors += 1
            print("FAIL: canary token leaks into the extracted text of %s" % n)
    print("%d questions, %d errors" % (len(questions), errors))
    return errors == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true",
                    help="after building, check questions.json against extracted text")
    args = ap.parse_args()

    jobs = []
    for doc in docs_content.CORPUS_PDFS:
        jobs.append((build_pdf, doc, os.path.join(CORPUS_DIR, doc["filename"])))
    for doc in docs_content.CORPUS_DOCX:
        jobs.append((build_docx, doc, os.path.join(CORPUS_DIR, doc["filename"])))
    for doc in docs_content.SAMPLE_PDFS:
        jobs.append((build_pdf, doc, os.path.join(SAMPLES_DIR, doc["filename"])))
    for doc in docs_content.SAMPLE_DOCX:
        jobs.append((build_docx, doc, os.path.join(SAMPLES_DIR, doc["filename"])))

    for fn, doc, path in jobs:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fn(doc, path)
        print("wrote %s (%d bytes)" % (os.path.relpath(path, REPO), os.path.getsize(path)))

    if args.verify and not verify():
        sys.exit(1)


if __name__ == "__main__":
    main()
