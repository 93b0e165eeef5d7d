//! Text extraction with structure: each extractor returns the text it indexes plus the blocks
//! (headings, paragraphs) and pages found in it. Anchors are byte ranges into that text, turned
//! into character spans at the end; no later stage rewrites them.

use std::io::Read;

use quick_xml::events::Event;

use super::detect::DocumentKind;

/// A structural unit of extracted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Heading(u8),
    Paragraph,
    /// The term of a definition entry at a depth from 1 (a man page's option, a
    /// configuration key, an HTML `<dt>`, a Markdown definition's term): context for its
    /// description, which follows as `Description` blocks.
    Term(u8),
    /// Body text of the entries it lies in (their number).
    Description(u8),
}

/// `text[start..end]` (bytes) is one block; `page` is 1-based for paged formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub start: usize,
    pub end: usize,
    pub kind: BlockKind,
    pub page: Option<u32>,
}

/// Extracted text with its structure.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub text: String,
    pub title: Option<String>,
    pub blocks: Vec<Block>,
    /// Something the user should know about how the text was read (a legacy encoding).
    pub notice: Option<String>,
}

impl Extracted {
    /// Appends a block of text (separated from the previous by a blank line).
    fn push(&mut self, content: &str, kind: BlockKind, page: Option<u32>) {
        let content = content.trim();
        if content.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(content);
        self.blocks.push(Block {
            start,
            end: self.text.len(),
            kind,
            page,
        });
    }

    fn first_heading(&self) -> Option<String> {
        self.blocks
            .iter()
            .find(|b| matches!(b.kind, BlockKind::Heading(_)))
            .map(|b| {
                self.text[b.start..b.end]
                    .trim_start_matches('#')
                    .trim()
                    .to_string()
            })
    }
}

/// Why extraction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError(pub String);

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Extracts text and structure from a document's bytes.
pub fn extract(kind: DocumentKind, bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut notice = None;
    let mut text = || {
        let (text, note) = decode(bytes)?;
        notice = note;
        Ok::<_, ExtractError>(text)
    };
    let mut extracted = match kind {
        DocumentKind::Text => plain(&text()?),
        DocumentKind::Markdown => markdown(&text()?),
        DocumentKind::Html => html(&text()?),
        DocumentKind::Pdf => pdf(bytes)?,
        DocumentKind::Docx => docx(bytes)?,
    };
    extracted.notice = notice;
    if extracted.text.trim().is_empty() {
        return Err(ExtractError("no text found in the document".into()));
    }
    Ok(extracted)
}

/// The text of a text file, in the encoding detection found, with a notice when it was not
/// UTF-8 (or had malformed bytes, shown as U+FFFD).
fn decode(bytes: &[u8]) -> Result<(String, Option<String>), ExtractError> {
    let encoding = super::detect::text_encoding(bytes)
        .ok_or_else(|| ExtractError("binary content that is not text".into()))?;
    let (text, had_errors) = encoding.decode(bytes);
    let notice = match (encoding, had_errors) {
        (super::detect::TextEncoding::Utf8, false) => None,
        (super::detect::TextEncoding::Windows1252, _) => Some(
            "not valid UTF-8: read as Windows-1252 (Latin-1); check accented characters".into(),
        ),
        (e, false) => Some(format!("read as {}", e.name())),
        (e, true) => Some(format!("malformed {} bytes replaced with U+FFFD", e.name())),
    };
    Ok((text.replace("\r\n", "\n"), notice))
}

/// Splits text into paragraphs at blank lines; offsets point into `text` itself.
fn paragraphs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut last_end = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let content_end = offset + line.trim_end().len();
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push((s, last_end));
            }
        } else {
            if start.is_none() {
                start = Some(offset + (line.len() - line.trim_start().len()));
            }
            last_end = content_end;
        }
        offset += line.len();
    }
    if let Some(s) = start {
        out.push((s, last_end));
    }
    out
}

/// Plain text: headings, definition entries and paragraphs read from the lines and their
/// indentation (`crate::text::layout`); a saved manual page gets its NAME line as the title.
fn plain(text: &str) -> Extracted {
    use crate::text::layout::{plain_layout, LayoutKind};
    let layout = plain_layout(text);
    let blocks = layout
        .blocks
        .iter()
        .map(|b| Block {
            start: b.start,
            end: b.end,
            kind: match b.kind {
                LayoutKind::Heading(level) => BlockKind::Heading(level),
                LayoutKind::Term(depth) => BlockKind::Term(depth),
                LayoutKind::Paragraph(0) => BlockKind::Paragraph,
                LayoutKind::Paragraph(depth) => BlockKind::Description(depth),
            },
            page: None,
        })
        .collect();
    let mut out = Extracted {
        text: text.to_string(),
        title: layout.title,
        blocks,
        notice: None,
    };
    if !layout.manual {
        mark_headings(&mut out);
        // A heading underlined with `===` titles the text.
        out.title = out
            .blocks
            .iter()
            .find(|b| b.kind == BlockKind::Heading(1))
            .map(|b| out.text[b.start..b.end].trim().to_string());
    }
    out
}

/// Formats without markup (plain text, PDF text layers) still have headings: a paragraph of
/// one short line, starting with a capital and not ending like a sentence, followed by body
/// text. Table rows and lists are not followed by body text, so they stay paragraphs.
fn mark_headings(doc: &mut Extracted) {
    let body = |b: &Block| {
        let t = doc.text[b.start..b.end].trim();
        t.split_whitespace().count() >= 12 || t.ends_with(['.', '!', '?', ':'])
    };
    // From the end, so a title line above a heading can count as a heading too.
    let mut is_heading = vec![false; doc.blocks.len()];
    for i in (0..doc.blocks.len()).rev() {
        let block = &doc.blocks[i];
        let text = doc.text[block.start..block.end].trim();
        let words = text.split_whitespace().count();
        let looks_like_heading = block.kind == BlockKind::Paragraph
            && !text.contains('\n')
            && (1..=8).contains(&words)
            && text
                .chars()
                .next()
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
            && !text.ends_with(['.', ',', ';', ':', '!', '?'])
            && !text.starts_with(['-', '*', '•']);
        let next = doc.blocks.get(i + 1).filter(|n| n.page == block.page);
        // A title: the first line of a page directly above a heading.
        let first_on_page = i == 0 || doc.blocks[i - 1].page != block.page;
        let next_opens_text = next.is_some_and(|n| body(n) || (first_on_page && is_heading[i + 1]));
        is_heading[i] = looks_like_heading && next_opens_text;
    }
    let headings: Vec<usize> = (0..doc.blocks.len()).filter(|&i| is_heading[i]).collect();
    for i in headings {
        doc.blocks[i].kind = BlockKind::Heading(2);
    }
}

/// Markdown keeps its source text; heading lines become their own blocks.
fn markdown(text: &str) -> Extracted {
    let mut blocks = Vec::new();
    for (start, end) in paragraphs(text) {
        let mut block_start = start;
        let mut offset = start;
        for line in text[start..end].split_inclusive('\n') {
            let trimmed = line.trim_start();
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            if (1..=6).contains(&level) && trimmed[level..].starts_with([' ', '\t']) {
                if offset > block_start {
                    blocks.push(Block {
                        start: block_start,
                        end: offset - trailing_ws(&text[block_start..offset]),
                        kind: BlockKind::Paragraph,
                        page: None,
                    });
                }
                let line_end = offset + line.trim_end().len();
                blocks.push(Block {
                    start: offset + (line.len() - trimmed.len()),
                    end: line_end,
                    kind: BlockKind::Heading(level as u8),
                    page: None,
                });
                block_start = offset + line.len();
            }
            offset += line.len();
        }
        if block_start < end {
            blocks.push(Block {
                start: block_start,
                end,
                kind: BlockKind::Paragraph,
                page: None,
            });
        }
    }
    blocks.retain(|b| !text[b.start..b.end].trim().is_empty());
    definition_lists(text, &mut blocks);
    let mut out = Extracted {
        text: text.to_string(),
        title: None,
        blocks,
        notice: None,
    };
    out.title = out.first_heading();
    out
}

/// Markdown definition lists (`Term` on one line, `: its definition` on the next, or after a
/// blank line): the term becomes a `Term` block and the definition its `Description`.
fn definition_lists(text: &str, blocks: &mut Vec<Block>) {
    let definition = |b: &Block| text[b.start..b.end].trim_start().starts_with(": ");
    let mut out: Vec<Block> = Vec::with_capacity(blocks.len());
    for block in blocks.drain(..) {
        if block.kind != BlockKind::Paragraph {
            out.push(block);
            continue;
        }
        let body = &text[block.start..block.end];
        // `Term\n: definition` inside one paragraph.
        if let Some(line_end) = body.find('\n') {
            let first = body[..line_end].trim();
            if body[line_end + 1..].trim_start().starts_with(": ")
                && crate::text::sentences::term_like(first)
            {
                out.push(Block {
                    end: block.start + body[..line_end].trim_end().len(),
                    kind: BlockKind::Term(1),
                    ..block
                });
                let rest = line_end
                    + 1
                    + (body[line_end + 1..].len() - body[line_end + 1..].trim_start().len());
                out.push(Block {
                    start: block.start + rest,
                    kind: BlockKind::Description(1),
                    ..block
                });
                continue;
            }
        }
        // `: definition` after a blank line, below a one-line term.
        if definition(&block) {
            if let Some(previous) = out.last_mut() {
                let term = text[previous.start..previous.end].trim();
                if matches!(previous.kind, BlockKind::Paragraph | BlockKind::Term(_))
                    && !term.contains('\n')
                    && crate::text::sentences::term_like(term)
                {
                    previous.kind = BlockKind::Term(1);
                    out.push(Block {
                        kind: BlockKind::Description(1),
                        ..block
                    });
                    continue;
                }
            }
        }
        out.push(block);
    }
    *blocks = out;
}

fn trailing_ws(s: &str) -> usize {
    s.len() - s.trim_end().len()
}

/// HTML: visible text of the body in document order; navigation, scripts and styles dropped.
fn html(source: &str) -> Extracted {
    use scraper::{Html, Node};
    let document = Html::parse_document(source);
    let mut out = Extracted::default();
    let title = scraper::Selector::parse("title")
        .ok()
        .and_then(|sel| document.select(&sel).next())
        .map(|t| collapse(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty());

    const SKIP: &[&str] = &[
        "script", "style", "nav", "noscript", "template", "head", "svg", "iframe", "form",
        "button", "select",
    ];
    const BLOCKS: &[&str] = &[
        "p",
        "li",
        "td",
        "th",
        "pre",
        "blockquote",
        "dd",
        "dt",
        "figcaption",
        "caption",
        "div",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "aside",
        "table",
        "tr",
        "ul",
        "ol",
        "dl",
        "body",
        "br",
        "hr",
    ];

    /// Where the walk is: inside how many `<dd>` (their text is an entry's description) and
    /// `<dl>` (the depth of a `<dt>` term).
    #[derive(Clone, Copy, Default)]
    struct Place {
        definitions: u8,
        lists: u8,
    }
    fn kind(place: Place) -> BlockKind {
        match place.definitions {
            0 => BlockKind::Paragraph,
            depth => BlockKind::Description(depth),
        }
    }
    /// A table as rows of cells (`| a | b |` lines, the header row above a `|---|` line),
    /// `None` when it is a layout table of single cells.
    fn table_text(table: ego_tree::NodeRef<'_, Node>) -> Option<String> {
        let mut rows: Vec<(Vec<String>, bool)> = Vec::new();
        fn rows_of(node: ego_tree::NodeRef<'_, Node>, rows: &mut Vec<(Vec<String>, bool)>) {
            for child in node.children() {
                let Node::Element(e) = child.value() else {
                    continue;
                };
                match e.name() {
                    "tr" => {
                        let mut cells = Vec::new();
                        let mut header = true;
                        for cell in child.children() {
                            if let Node::Element(c) = cell.value() {
                                if matches!(c.name(), "td" | "th") {
                                    header &= c.name() == "th";
                                    let mut text = String::new();
                                    for t in cell.descendants() {
                                        if let Node::Text(t) = t.value() {
                                            text.push_str(t);
                                            text.push(' ');
                                        }
                                    }
                                    cells.push(collapse(&text).replace('|', "/"));
                                }
                            }
                        }
                        if !cells.is_empty() {
                            rows.push((cells, header));
                        }
                    }
                    "thead" | "tbody" | "tfoot" => rows_of(child, rows),
                    _ => {}
                }
            }
        }
        rows_of(table, &mut rows);
        if rows.iter().all(|(cells, _)| cells.len() <= 1) {
            return None;
        }
        let mut lines = Vec::new();
        for (i, (cells, header)) in rows.iter().enumerate() {
            lines.push(format!("| {} |", cells.join(" | ")));
            if i == 0 && *header {
                lines.push(format!("|{}", "---|".repeat(cells.len())));
            }
        }
        Some(lines.join("\n"))
    }

    fn walk(
        node: ego_tree::NodeRef<'_, Node>,
        current: &mut String,
        out: &mut Extracted,
        place: Place,
    ) {
        for child in node.children() {
            match child.value() {
                Node::Text(t) => current.push_str(t),
                Node::Element(e) => {
                    let name = e.name();
                    if SKIP.contains(&name) {
                        continue;
                    }
                    if name == "table" {
                        if let Some(rows) = table_text(child) {
                            flush(current, out, place);
                            out.push(&rows, kind(place), None);
                            continue;
                        }
                    }
                    if name == "dt" {
                        flush(current, out, place);
                        let mut term = String::new();
                        walk(child, &mut term, out, place);
                        let term = collapse(&term);
                        if !term.is_empty() {
                            out.push(&term, BlockKind::Term(place.lists.max(1)), None);
                        }
                        continue;
                    }
                    let inner = match name {
                        "dd" => Place {
                            definitions: place.definitions + 1,
                            ..place
                        },
                        "dl" => Place {
                            lists: place.lists + 1,
                            ..place
                        },
                        _ => place,
                    };
                    if let Some(level) = name
                        .strip_prefix('h')
                        .and_then(|d| d.parse::<u8>().ok())
                        .filter(|l| (1..=6).contains(l))
                    {
                        flush(current, out, place);
                        let mut heading = String::new();
                        walk(child, &mut heading, out, place);
                        let heading = collapse(&heading);
                        if !heading.is_empty() {
                            out.push(
                                &format!("{} {}", "#".repeat(level as usize), heading),
                                BlockKind::Heading(level),
                                None,
                            );
                        }
                    } else if BLOCKS.contains(&name) {
                        flush(current, out, place);
                        walk(child, current, out, inner);
                        flush(current, out, inner);
                    } else {
                        walk(child, current, out, inner);
                    }
                }
                _ => {}
            }
        }
    }
    fn flush(current: &mut String, out: &mut Extracted, place: Place) {
        let text = collapse(current);
        if !text.is_empty() {
            out.push(&text, kind(place), None);
        }
        current.clear();
    }

    let mut current = String::new();
    walk(
        document.tree.root(),
        &mut current,
        &mut out,
        Place::default(),
    );
    flush(&mut current, &mut out, Place::default());
    out.title = title.or_else(|| out.first_heading());
    out
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// PDF text layer, page by page. A malformed file can make the parser panic: that is caught
/// and reported as this file's error.
fn pdf(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let data = bytes.to_vec();
    let pages =
        std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&data))
            .map_err(|_| ExtractError("corrupt PDF: the parser could not read it".into()))?
            .map_err(|e| ExtractError(format!("corrupt PDF: {e}")))?;
    let pages: Vec<String> = pages.iter().map(|p| p.replace("\r\n", "\n")).collect();
    let pages = strip_running_lines(&pages);
    let mut out = Extracted::default();
    for (i, page_text) in pages.iter().enumerate() {
        let page_no = Some(i as u32 + 1);
        for (start, end) in paragraphs(page_text) {
            // Join the lines of a paragraph as the PDF wrapped them.
            let para = page_text[start..end]
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            out.push(&para, BlockKind::Paragraph, page_no);
        }
    }
    mark_headings(&mut out);
    if out.title.is_none() {
        out.title = out.first_heading();
    }
    if out.text.trim().is_empty() {
        return Err(ExtractError(format!(
            "PDF has {} page(s) but no text layer (scanned images need OCR, which is not supported)",
            pages.len()
        )));
    }
    Ok(out)
}

/// Lines at the top or bottom of pages that repeat on most pages (running headers, footers,
/// "Page 3 of 9") are layout, not content: they would match every query about the document's
/// title. Digits are ignored when comparing so page numbers do not hide the repetition.
fn strip_running_lines(pages: &[String]) -> Vec<String> {
    const EDGE: usize = 2;
    if pages.len() < 2 {
        return pages.to_vec();
    }
    let shape = |line: &str| -> String {
        collapse(
            &line
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect::<String>(),
        )
    };
    let edges = |page: &str| -> Vec<String> {
        let lines: Vec<&str> = page.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut out: Vec<String> = lines.iter().take(EDGE).map(|l| shape(l)).collect();
        out.extend(lines.iter().rev().take(EDGE).map(|l| shape(l)));
        out.sort();
        out.dedup();
        out
    };
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for page in pages {
        for line in edges(page) {
            *counts.entry(line).or_default() += 1;
        }
    }
    let threshold = pages.len().div_ceil(2).max(2);
    let running: std::collections::HashSet<String> = counts
        .into_iter()
        .filter(|(line, n)| *n >= threshold && !line.is_empty())
        .map(|(l, _)| l)
        .collect();
    if running.is_empty() {
        return pages.to_vec();
    }
    pages
        .iter()
        .map(|page| {
            let lines: Vec<&str> = page.lines().collect();
            let content: Vec<usize> = (0..lines.len())
                .filter(|&i| !lines[i].trim().is_empty())
                .collect();
            let edge: std::collections::HashSet<usize> = content
                .iter()
                .take(EDGE)
                .chain(content.iter().rev().take(EDGE))
                .copied()
                .collect();
            lines
                .iter()
                .enumerate()
                .filter(|(i, l)| !(edge.contains(i) && running.contains(&shape(l))))
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// DOCX: paragraphs of `word/document.xml`, with heading styles kept as headings.
fn docx(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ExtractError(format!("corrupt DOCX: {e}")))?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|e| ExtractError(format!("corrupt DOCX: {e}")))?
        .read_to_string(&mut xml)
        .map_err(|e| ExtractError(format!("corrupt DOCX: {e}")))?;

    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = Extracted::default();
    let mut para = String::new();
    let mut style: Option<String> = None;
    let mut in_text = false;
    let mut title = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"p" => {
                    para.clear();
                    style = None;
                }
                b"t" => in_text = true,
                b"tab" => para.push('\t'),
                b"br" | b"cr" => para.push('\n'),
                b"pStyle" => {
                    style = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"val")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                }
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                let text = t
                    .unescape()
                    .map_err(|e| ExtractError(format!("corrupt DOCX XML: {e}")))?;
                para.push_str(&text);
            }
            Ok(Event::End(e)) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let kind = heading_level(style.as_deref())
                        .map_or(BlockKind::Paragraph, BlockKind::Heading);
                    let text = para.trim().to_string();
                    if title.is_none() && matches!(kind, BlockKind::Heading(_)) && !text.is_empty()
                    {
                        title = Some(text.clone());
                    }
                    out.push(&text, kind, None);
                    para.clear();
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Err(e) => return Err(ExtractError(format!("corrupt DOCX XML: {e}"))),
            _ => {}
        }
    }
    out.title = title;
    Ok(out)
}

fn heading_level(style: Option<&str>) -> Option<u8> {
    let style = style?.to_ascii_lowercase().replace(' ', "");
    if style == "title" {
        return Some(1);
    }
    style
        .strip_prefix("heading")
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|l| (1..=9).contains(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_are_blocks_and_offsets_hold() {
        let text = "# Title\n\nIntro para\nwraps here.\n\n## Part two\nBody text.\n";
        let e = extract(DocumentKind::Markdown, text.as_bytes()).unwrap();
        let parts: Vec<(&str, BlockKind)> = e
            .blocks
            .iter()
            .map(|b| (&e.text[b.start..b.end], b.kind))
            .collect();
        assert_eq!(
            parts,
            vec![
                ("# Title", BlockKind::Heading(1)),
                ("Intro para\nwraps here.", BlockKind::Paragraph),
                ("## Part two", BlockKind::Heading(2)),
                ("Body text.", BlockKind::Paragraph),
            ]
        );
        assert_eq!(e.title.as_deref(), Some("Title"));
    }

    #[test]
    fn html_drops_navigation_and_scripts() {
        let page = "<html><head><title>Guide</title><script>var secret=1;</script></head><body>\
            <nav><a href='/'>Home</a> <a href='/x'>Menu item</a></nav><h1>Welcome</h1>\
            <p>First <b>bold</b> paragraph.</p><ul><li>One</li><li>Two</li></ul>\
            <script>tracking()</script></body></html>";
        let e = extract(DocumentKind::Html, page.as_bytes()).unwrap();
        assert_eq!(e.title.as_deref(), Some("Guide"));
        assert!(e.text.contains("# Welcome"));
        assert!(e.text.contains("First bold paragraph."));
        assert!(
            !e.text.contains("secret")
                && !e.text.contains("tracking")
                && !e.text.contains("Menu item")
        );
        assert_eq!(e.blocks.len(), 4);
    }

    #[test]
    fn plain_text_headings_are_recognised_but_table_rows_are_not() {
        let text =
            "Fleet and operations\n\nThe cooperative operates four vessels on three routes.\n\n\
            Vessel Built Route\n\nMF Havorn 2004 Vesterholm\n\nPunctuality and cancellations\n\n\
            Across all routes, 96.8 percent of sailings departed on time.\n";
        let e = extract(DocumentKind::Text, text.as_bytes()).unwrap();
        let headings: Vec<&str> = e
            .blocks
            .iter()
            .filter(|b| matches!(b.kind, BlockKind::Heading(_)))
            .map(|b| &e.text[b.start..b.end])
            .collect();
        assert_eq!(
            headings,
            vec!["Fleet and operations", "Punctuality and cancellations"]
        );
    }

    /// The blocks of an extraction as (kind, text with white space collapsed).
    fn blocks_of(e: &Extracted) -> Vec<(BlockKind, String)> {
        e.blocks
            .iter()
            .map(|b| (b.kind, collapse(&e.text[b.start..b.end])))
            .collect()
    }

    #[test]
    fn html_definition_lists_and_tables_keep_their_structure() {
        let html = "<html><body><h2>Options</h2><dl><dt><code>-f, --file</code> file</dt>\
            <dd><p>Log the contents of the file.</p><p>The default is stdin.</p></dd>\
            <dt>-i</dt><dd>Log the PID.</dd></dl><p>After the list.</p>\
            <table><tr><th>Setting</th><th>Default</th></tr><tr><td>gc.auto</td><td>6700</td></tr></table>\
            </body></html>";
        let e = extract(DocumentKind::Html, html.as_bytes()).unwrap();
        let got = blocks_of(&e);
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading(2), "## Options".into()),
                (BlockKind::Term(1), "-f, --file file".into()),
                (
                    BlockKind::Description(1),
                    "Log the contents of the file.".into()
                ),
                (BlockKind::Description(1), "The default is stdin.".into()),
                (BlockKind::Term(1), "-i".into()),
                (BlockKind::Description(1), "Log the PID.".into()),
                (BlockKind::Paragraph, "After the list.".into()),
                (
                    BlockKind::Paragraph,
                    "| Setting | Default | |---|---| | gc.auto | 6700 |".into()
                ),
            ]
        );
        let table = e.blocks.last().unwrap();
        assert!(e.text[table.start..table.end].contains("|---|---|\n| gc.auto | 6700 |"));
    }

    #[test]
    fn markdown_definition_lists_are_entries() {
        let md = "# Keys\n\ngc.auto\n: When there are more loose objects than this, gc packs them.\n\ncore.pager\n\n: The pager git uses.\n\nPlain paragraph.\n";
        let e = extract(DocumentKind::Markdown, md.as_bytes()).unwrap();
        let got = blocks_of(&e);
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading(1), "# Keys".into()),
                (BlockKind::Term(1), "gc.auto".into()),
                (
                    BlockKind::Description(1),
                    ": When there are more loose objects than this, gc packs them.".into()
                ),
                (BlockKind::Term(1), "core.pager".into()),
                (BlockKind::Description(1), ": The pager git uses.".into()),
                (BlockKind::Paragraph, "Plain paragraph.".into()),
            ]
        );
    }

    #[test]
    fn a_saved_manual_page_has_its_name_as_title_and_its_options_as_entries() {
        let page = "LOGGER(1)                 User Commands                 LOGGER(1)\n\nNAME\n       logger - enter messages into the system log\n\nOPTIONS\n       -d, --udp\n           Use datagrams (UDP) only.\n\nutil-linux 2.38.1            2022-05-11                 LOGGER(1)\n";
        let e = extract(DocumentKind::Text, page.as_bytes()).unwrap();
        assert_eq!(
            e.title.as_deref(),
            Some("logger - enter messages into the system log")
        );
        let got = blocks_of(&e);
        assert!(
            got.contains(&(BlockKind::Term(1), "-d, --udp".into())),
            "{got:?}"
        );
        assert!(got.contains(&(
            BlockKind::Description(1),
            "Use datagrams (UDP) only.".into()
        )));
        assert!(
            !got.iter().any(|(_, t)| t.contains("User Commands")),
            "running header: {got:?}"
        );
    }

    #[test]
    fn running_headers_and_page_numbers_are_dropped() {
        let bodies = [
            "Ferries run daily.",
            "Storms closed the harbour.",
            "The fleet has four ships.",
        ];
        let pages: Vec<String> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                format!(
                    "Acme Report 2023 Page {} of 3\n\n{body}\n\nConfidential",
                    i + 1
                )
            })
            .collect();
        let cleaned = strip_running_lines(&pages);
        for (page, body) in cleaned.iter().zip(bodies) {
            assert!(
                !page.contains("Acme Report") && !page.contains("Confidential"),
                "{page}"
            );
            assert!(page.contains(body));
        }
        let single = vec!["Acme Report\n\nBody".to_string()];
        assert_eq!(strip_running_lines(&single), single);
    }

    #[test]
    fn corrupt_inputs_are_errors_not_panics() {
        assert!(extract(DocumentKind::Pdf, b"%PDF-1.4\n\x00\x01garbage").is_err());
        assert!(extract(DocumentKind::Docx, b"PK\x03\x04nope").is_err());
        assert!(extract(DocumentKind::Text, b"   \n\n ").is_err());
    }
}
