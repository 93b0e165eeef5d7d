//! Structure-aware chunking. Text is cut into units (headings and entry terms, then the
//! sentences of paragraphs as `crate::text::sentences` splits them, then token windows of
//! over-long sentences) and units are packed into chunks up to the embedder's token budget. A
//! heading opens a new chunk, and so does a definition entry (a man page's option, a
//! configuration key, a `<dt>`): its term goes into the chunk's context line, not its text, so
//! the entry's sentences are read under it and never glued to it. A page never spans two
//! chunks, and a chunk cut for size repeats the previous chunk's last sentences up to the
//! overlap budget. Chunks are byte ranges of the extracted text: the text of a chunk is always
//! exactly `text[start..end]`.

use super::extract::{BlockKind, Extracted};

/// Token counting as the embedder does it.
pub trait Tokens {
    fn count(&self, text: &str) -> usize;
    /// Byte offsets where consecutive runs of at most `max` tokens end (last = `text.len()`).
    fn split_points(&self, text: &str, max: usize) -> Vec<usize>;
}

impl Tokens for crate::embed::TokenCounter {
    fn count(&self, text: &str) -> usize {
        crate::embed::TokenCounter::count(self, text)
    }
    fn split_points(&self, text: &str, max: usize) -> Vec<usize> {
        crate::embed::TokenCounter::split_points(self, text, max)
    }
}

/// One chunk: `text[start..end]` (bytes), its page and token count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSpan {
    pub start: usize,
    pub end: usize,
    pub page: Option<u32>,
    pub tokens: usize,
    /// Document title and the section headings above the chunk that are not inside it
    /// (`Title > Section > Subsection`). Embedded and indexed with the chunk so a passage cut
    /// from the middle of a section still carries what it is about; not part of the anchor.
    pub context: String,
}

#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    /// A heading or an entry's term.
    heading: bool,
    /// An entry's term (context of the entry's chunks, not their text).
    term: bool,
    /// Heading level (1 = top; terms below every heading level); 0 for body text.
    level: u8,
    /// Entries the unit lies in (for a term: its own depth).
    depth: u8,
    page: Option<u32>,
}

/// Terms sit below headings of every level.
const TERM_LEVEL: u8 = 10;

/// Headings and terms in effect before each unit: the nearest preceding heading of each
/// shallower level, and the terms of the entries the unit lies in.
fn heading_paths(units: &[Unit]) -> Vec<Vec<usize>> {
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        if u.heading {
            // A heading closes its siblings and their subsections.
            stack.retain(|&h| units[h].level < u.level);
            out.push(stack.clone());
            stack.push(i);
        } else {
            // Body text outside an entry closes it.
            stack.retain(|&h| !units[h].term || units[h].depth <= u.depth);
            out.push(stack.clone());
        }
    }
    out
}

fn heading_text(text: &str) -> &str {
    text.trim().trim_start_matches('#').trim()
}

/// The context line of a chunk starting at unit `i`, within `max_tokens`.
fn context_for(
    doc: &Extracted,
    title: Option<&str>,
    units: &[Unit],
    path: &[usize],
    tokens: &dyn Tokens,
    max_tokens: usize,
) -> (String, usize) {
    let mut parts: Vec<String> = path
        .iter()
        .map(|&h| heading_text(&doc.text[units[h].start..units[h].end]).to_string())
        .collect();
    if let Some(title) = title.map(str::trim).filter(|t| !t.is_empty()) {
        if parts.first().map(String::as_str) != Some(title) {
            parts.insert(0, title.to_string());
        }
    }
    loop {
        if parts.is_empty() {
            return (String::new(), 0);
        }
        let line = parts.join(" > ");
        let n = tokens.count(&line);
        if n <= max_tokens {
            return (line, n);
        }
        // Too long: keep the title and the nearest headings, dropping the outermost section
        // first, then the title.
        if parts.len() > 2 {
            parts.remove(1);
        } else {
            parts.remove(0);
        }
    }
}

/// Chunks `doc` so each chunk with its context line holds at most `budget` tokens (a single
/// unit may exceed it only when the tokenizer cannot split it further), with up to `overlap`
/// tokens repeated. `title` heads every chunk's context line.
pub fn chunk(
    doc: &Extracted,
    title: Option<&str>,
    tokens: &dyn Tokens,
    budget: usize,
    overlap: usize,
) -> Vec<ChunkSpan> {
    let full_budget = budget.max(8);
    let context_budget = full_budget / 4;
    let units = units(doc, tokens, full_budget);
    let paths = heading_paths(&units);
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < units.len() {
        // An entry's terms are the context of its text, not part of it: the chunk starts at
        // the body after them, whose path holds them.
        let mut body = i;
        while body < units.len() && units[body].term && units[body].page == units[i].page {
            body += 1;
        }
        if body > i
            && body < units.len()
            && !units[body].heading
            && units[body].page == units[i].page
        {
            i = body;
        }
        // The context line gets at most a quarter of the budget, and never crowds out the
        // chunk's first unit.
        let room = context_budget.min(full_budget.saturating_sub(units[i].tokens));
        let path = &paths[i];
        let (context, context_tokens) = context_for(doc, title, &units, path, tokens, room);
        let budget = full_budget - context_tokens;
        let overlap = overlap.min(budget / 2);
        let mut j = i;
        let mut sum = 0;
        let mut has_body = false;
        // The headings and terms the chunk's body lies under: body text under others (an
        // entry ended) starts the next chunk.
        let mut body_path: Option<&Vec<usize>> = None;
        while j < units.len() {
            let u = &units[j];
            let fits = sum + u.tokens <= budget || j == i;
            let same_page = u.page == units[i].page;
            let section_break = u.heading && has_body;
            let entry_break = !u.heading && body_path.is_some_and(|p| *p != paths[j] && has_body);
            if !fits || !same_page || section_break || entry_break {
                break;
            }
            if !u.heading && body_path.is_none() {
                body_path = Some(&paths[j]);
            }
            sum += u.tokens;
            has_body |= !u.heading;
            j += 1;
        }
        chunks.push(ChunkSpan {
            start: units[i].start,
            end: units[j - 1].end,
            page: units[i].page,
            tokens: sum + context_tokens,
            context,
        });
        if j >= units.len() {
            break;
        }
        // Overlap only when the cut was for size, inside one section (or entry) on one page.
        let next = &units[j];
        let size_cut = !next.heading
            && next.page == units[j - 1].page
            && body_path.is_none_or(|p| *p == paths[j]);
        let mut start = j;
        if size_cut && overlap > 0 {
            let mut carried = 0;
            while start > i + 1 {
                let prev = &units[start - 1];
                if prev.heading
                    || carried + prev.tokens > overlap
                    || carried + prev.tokens + next.tokens > budget
                {
                    break;
                }
                carried += prev.tokens;
                start -= 1;
            }
        }
        i = start;
    }
    chunks
}

fn units(doc: &Extracted, tokens: &dyn Tokens, budget: usize) -> Vec<Unit> {
    let text = &doc.text;
    let mut out = Vec::new();
    for block in &doc.blocks {
        let body = &text[block.start..block.end];
        if body.trim().is_empty() {
            continue;
        }
        let (level, term, depth) = match block.kind {
            BlockKind::Heading(level) => (Some(level.max(1)), false, 0),
            BlockKind::Term(depth) => (Some(TERM_LEVEL + depth), true, depth),
            BlockKind::Paragraph => (None, false, 0),
            BlockKind::Description(depth) => (None, false, depth),
        };
        if let Some(level) = level {
            let (s, e) = trim_range(text, block.start, block.end);
            out.push(Unit {
                start: s,
                end: e,
                tokens: tokens.count(&text[s..e]),
                heading: true,
                term,
                level,
                depth,
                page: block.page,
            });
            continue;
        }
        for sentence in crate::text::sentences(body) {
            let (s, e) = (block.start + sentence.start, block.start + sentence.end);
            if s >= e {
                continue;
            }
            let n = tokens.count(&text[s..e]);
            if n <= budget {
                out.push(Unit {
                    start: s,
                    end: e,
                    tokens: n,
                    heading: false,
                    term: false,
                    level: 0,
                    depth,
                    page: block.page,
                });
                continue;
            }
            // An over-long sentence: cut into token windows.
            let mut piece_start = s;
            for cut in tokens.split_points(&text[s..e], budget) {
                let (ps, pe) = trim_range(text, piece_start, s + cut);
                if ps < pe {
                    out.push(Unit {
                        start: ps,
                        end: pe,
                        tokens: tokens.count(&text[ps..pe]),
                        heading: false,
                        term: false,
                        level: 0,
                        depth,
                        page: block.page,
                    });
                }
                piece_start = s + cut;
            }
        }
    }
    out
}

fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let slice = &text[start..end];
    let s = start + (slice.len() - slice.trim_start().len());
    let e = end - (slice.len() - slice.trim_end().len());
    (s, e.max(s))
}

/// At most this many sentence vectors per chunk (a chunk holds at most a few hundred tokens,
/// so only a chunk of very short lines reaches it; later sentences are then left to the
/// chunk's own vector).
pub const MAX_SENTENCES: usize = 64;

/// Byte ranges of the sentences of a chunk's text, as `crate::text::sentences` splits them (the
/// query path answers from the same sentences). Empty when the text is a single sentence: the
/// chunk's own vector already covers it.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = crate::text::sentences(text)
        .into_iter()
        .map(|s| (s.start, s.end))
        .collect();
    if spans.len() <= 1 {
        return Vec::new();
    }
    spans.truncate(MAX_SENTENCES);
    spans
}

pub use crate::catalog::CharIndex;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::detect::DocumentKind;
    use crate::ingest::extract::extract;
    use proptest::prelude::*;

    /// Whitespace words as tokens: simple and exact for checking budgets.
    struct Words;
    impl Tokens for Words {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
        fn split_points(&self, text: &str, max: usize) -> Vec<usize> {
            let mut points = Vec::new();
            let mut words = 0;
            let mut in_word = false;
            for (i, c) in text.char_indices() {
                if c.is_whitespace() {
                    in_word = false;
                } else if !in_word {
                    in_word = true;
                    if words == max {
                        points.push(i);
                        words = 0;
                    }
                    words += 1;
                }
            }
            points.push(text.len());
            points
        }
    }

    fn md(text: &str) -> Extracted {
        extract(DocumentKind::Markdown, text.as_bytes()).unwrap()
    }

    fn sentences(text: &str) -> Vec<&str> {
        sentence_spans(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect()
    }

    #[test]
    fn sentences_split_on_boundaries_and_lines_and_join_fragments() {
        let text = "Punctuality and cancellations\n\nAcross all routes, 96.8 percent of sailings\n\
                    departed on time. We cancelled 143 sailings.\n\n- Fixed\n\n- Vehicles carried: 96,400";
        let got = sentences(text);
        assert_eq!(
            got,
            [
                "Punctuality and cancellations",
                // A hard-wrapped line does not end the sentence.
                "Across all routes, 96.8 percent of sailings\ndeparted on time.",
                "We cancelled 143 sailings.",
                // List items are sentences of their own, however short.
                "- Fixed",
                "- Vehicles carried: 96,400",
            ]
        );
        // One sentence (or one plus a fragment): nothing beyond the chunk's own vector.
        assert!(sentence_spans("A single sentence here.").is_empty());
        assert!(sentence_spans("A single sentence here. Yes.").is_empty());
        assert!(sentence_spans("").is_empty());
        // CRLF and CR line ends: a wrapped line continues, a blank line separates.
        let text = "First wrapped\r\nsentence here.\r\n\r\nSecond one is here.\r\rThird one here.";
        let got = sentences(text);
        assert_eq!(
            got,
            [
                "First wrapped\r\nsentence here.",
                "Second one is here.",
                "Third one here."
            ]
        );
        // A trailing fragment joins the sentence before it.
        let text = "First full sentence here. Second full sentence here. Ok.";
        let last = *sentence_spans(text).last().unwrap();
        assert_eq!(&text[last.0..last.1], "Second full sentence here. Ok.");
    }

    proptest! {
        /// Sentence spans are ordered, disjoint, trimmed, on char boundaries, and bounded.
        #[test]
        fn sentence_spans_are_ordered_slices(text in "[a-zé .!?\n-]{0,400}") {
            let spans = sentence_spans(&text);
            prop_assert!(spans.len() <= MAX_SENTENCES);
            let mut end = 0;
            for (s, e) in spans {
                prop_assert!(s >= end && s < e && e <= text.len());
                prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
                prop_assert_eq!(text[s..e].trim(), &text[s..e]);
                end = e;
            }
        }
    }

    #[test]
    fn headings_open_chunks_and_overlap_repeats_sentences() {
        let doc = md("# A\n\nOne two three. Four five six. Seven eight nine. Ten eleven twelve.\n\n# B\n\nThirteen fourteen.\n");
        let chunks = chunk(&doc, None, &Words, 8, 3);
        let texts: Vec<&str> = chunks.iter().map(|c| &doc.text[c.start..c.end]).collect();
        assert_eq!(texts[0], "# A\n\nOne two three. Four five six.");
        assert_eq!(
            texts[1], "Four five six. Seven eight nine.",
            "overlap carries the last sentence"
        );
        assert_eq!(texts.last().unwrap(), &"# B\n\nThirteen fourteen.");
        assert!(texts
            .iter()
            .all(|t| !t.contains("# B") || t.starts_with("# B")));
    }

    #[test]
    fn chunks_carry_title_and_section_headings_as_context() {
        let doc = md(
            "# Guide\n\n## Setup\n\nOne two three. Four five six. Seven eight nine. \
            Twelve thirteen fourteen. Fifteen sixteen seventeen.\n\n## Usage\n\nTen eleven.\n",
        );
        let chunks = chunk(&doc, Some("Guide"), &Words, 16, 0);
        let view: Vec<(&str, &str)> = chunks
            .iter()
            .map(|c| (c.context.as_str(), &doc.text[c.start..c.end]))
            .collect();
        assert_eq!(
            view,
            vec![
                (
                    "Guide",
                    "# Guide\n\n## Setup\n\nOne two three. Four five six. Seven eight nine."
                ),
                (
                    "Guide > Setup",
                    "Twelve thirteen fourteen. Fifteen sixteen seventeen."
                ),
                ("Guide", "## Usage\n\nTen eleven."),
            ]
        );
        assert!(chunks.iter().all(|c| c.tokens <= 16));
    }

    #[test]
    fn long_sentences_are_cut_by_tokens() {
        let long = (0..50)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let doc = md(&long);
        let chunks = chunk(&doc, None, &Words, 10, 0);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.tokens <= 10));
    }

    #[test]
    fn char_index_counts_scalars() {
        let text = "héllo wörld";
        let idx = CharIndex::new(text);
        let byte = text.find('w').unwrap();
        assert_eq!(idx.char_offset(byte), 6);
        assert_eq!(idx.char_offset(text.len()), text.chars().count());
    }

    proptest! {
        #[test]
        fn anchors_round_trip_and_cover_all_text(
            paragraphs in prop::collection::vec(
                prop::collection::vec("[a-zA-Zéü]{1,12}( [a-z]{1,8}){0,14}[.!?]", 1..6), 1..8),
            headings in prop::collection::vec(any::<bool>(), 8),
            budget in 6usize..40,
            overlap in 0usize..10,
        ) {
            let mut text = String::new();
            for (i, sentences) in paragraphs.iter().enumerate() {
                if headings[i % headings.len()] {
                    text.push_str(&format!("## Heading {i}\n\n"));
                }
                text.push_str(&sentences.join(" "));
                text.push_str("\n\n");
            }
            let doc = md(&text);
            let chunks = chunk(&doc, None, &Words, budget, overlap);
            let idx = CharIndex::new(&doc.text);
            let chars: Vec<char> = doc.text.chars().collect();
            let mut covered = vec![false; doc.text.len()];
            let mut last_start = 0;
            for c in &chunks {
                prop_assert!(c.start < c.end && c.end <= doc.text.len());
                prop_assert!(c.start >= last_start, "chunks are in order");
                last_start = c.start;
                // Char anchors select exactly the chunk text.
                let (cs, ce) = (idx.char_offset(c.start), idx.char_offset(c.end));
                let via_chars: String = chars[cs..ce].iter().collect();
                prop_assert_eq!(&via_chars, &doc.text[c.start..c.end]);
                prop_assert!(Words.count(&doc.text[c.start..c.end]) <= budget.max(8));
                covered[c.start..c.end].fill(true);
            }
            for (b, ch) in doc.text.char_indices() {
                prop_assert!(ch.is_whitespace() || covered[b], "byte {} ({:?}) not in any chunk", b, ch);
            }
        }
    }
}
