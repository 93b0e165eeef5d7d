//! The sentences of the retrieved blocks, each with an anchor of its own: a document sentence
//! keeps its page and character span, a transcript sentence the time range in which it was
//! spoken (from Whisper's segment and token times). Answers are extracted from these sentences
//! and generated answers are checked against them, so a citation lands on the words.

use crate::catalog::CharIndex;
use crate::catalog::{Anchor, StoredChunk};
use crate::transcribe::Segment;

/// One sentence of a context block.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    /// Number of the block it belongs to (`[n]`, from 1).
    pub block: usize,
    /// Id of the block's source.
    pub source: String,
    /// Its text as a person reads it: list markers and emphasis marks removed, white space
    /// collapsed.
    pub text: String,
    /// Where it is in its source: its own span (page kept) or time range.
    pub anchor: Anchor,
    /// A heading, label or short fragment: context for the sentences around it, never an
    /// answer alone.
    pub heading: bool,
    /// Byte range in the block's text.
    pub range: (usize, usize),
    /// The paragraph or entry it belongs to within its block (`text::SentenceRange::group`):
    /// an answer may go on into the next sentences of the same group.
    pub group: usize,
    /// It lies in a section that credits people (`AUTHOR`, `AUTHORS`, `Written by`,
    /// `MAINTAINERS`, `CREDITS`): a name on its own line there answers "who wrote it?".
    pub credits: bool,
}

/// Whether a heading names a section that credits people.
pub fn credits_heading(heading: &str) -> bool {
    let h = heading
        .trim()
        .trim_start_matches('#')
        .trim()
        .trim_end_matches(':')
        .to_lowercase();
    [
        "author",
        "authors",
        "written by",
        "maintainer",
        "maintainers",
        "credits",
        "contributors",
        "authors and contributors",
        "author and copyright",
    ]
    .contains(&h.as_str())
}

/// Sentences with fewer words than this, and no digit, are labels, not answers.
const ANSWER_WORDS: usize = 5;

/// The sentences of `chunk` as block `block`. `segments` are the Whisper segments of the
/// chunk's time range (for transcript chunks; empty otherwise): with them each sentence gets
/// the time it was spoken, without them the chunk's own range.
pub fn block_sentences(block: usize, chunk: &StoredChunk, segments: &[Segment]) -> Vec<Sentence> {
    let text = &chunk.text;
    let spans = crate::text::sentences(text);
    let times = match chunk.anchor {
        Anchor::Time { .. } => time_pieces(text, segments),
        _ => None,
    };
    let chars = CharIndex::new(text);
    // Under a heading that credits people, a line of names is an answer, not a label; the
    // chunk's context line may name that section too.
    let mut credits = chunk
        .context
        .rsplit(" > ")
        .next()
        .is_some_and(credits_heading);
    spans
        .into_iter()
        .filter_map(|sentence| {
            let (start, end, mut heading) = (sentence.start, sentence.end, sentence.heading);
            if heading && credits_heading(&text[start..end]) {
                credits = true;
            } else if heading && credits && !text[start..end].contains(char::is_lowercase) {
                // Another capital heading ends the section.
                credits = false;
            } else if heading && credits {
                heading = false;
            }
            let shown = match sentence.header {
                Some((hs, he)) => {
                    crate::text::sentences::display_row(&text[start..end], Some(&text[hs..he]))
                }
                None if crate::text::sentences::table_row(&text[start..end]) => {
                    crate::text::sentences::display_row(&text[start..end], None)
                }
                None => display_text(&text[start..end]),
            };
            if shown.is_empty() {
                return None;
            }
            let anchor = match &chunk.anchor {
                Anchor::Span {
                    page, char_start, ..
                } => Anchor::Span {
                    page: *page,
                    char_start: char_start + chars.char_offset(start) as u64,
                    char_end: char_start + chars.char_offset(end) as u64,
                },
                Anchor::Time { start_ms, end_ms } => match &times {
                    Some(pieces) => time_of(pieces, start, end).unwrap_or(Anchor::Time {
                        start_ms: *start_ms,
                        end_ms: *end_ms,
                    }),
                    None => chunk.anchor.clone(),
                },
                other => other.clone(),
            };
            // A fragment this short ("The observing ladder.", "Third, the public nights.")
            // names a topic; it does not answer anything.
            let fragment = shown.split_whitespace().count() < ANSWER_WORDS
                && !shown.chars().any(|c| c.is_ascii_digit())
                && (heading || !credits);
            Some(Sentence {
                block,
                source: chunk.source.id.clone(),
                text: shown,
                anchor,
                heading: heading || fragment,
                range: (start, end),
                group: sentence.group,
                credits: credits && !heading,
            })
        })
        .collect()
}

pub use crate::text::display_text;

/// A piece of a transcript chunk's text with the time it was spoken: byte range, start, end.
type TimedPiece = (usize, usize, u64, u64);

/// Times of the pieces of a transcript chunk's `text`, which is its segments' trimmed texts
/// joined by spaces. Each segment's words (whisper.cpp token times, kept inside the segment's
/// range) are used where they spell the segment; otherwise the segment is one piece. `None`
/// when no run of `segments` spells `text`.
fn time_pieces(text: &str, segments: &[Segment]) -> Option<Vec<TimedPiece>> {
    let first = (0..segments.len()).find(|&i| {
        let mut joined = String::new();
        for s in &segments[i..] {
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(s.text.trim());
            if joined.len() >= text.len() {
                break;
            }
        }
        joined == text
    })?;
    let mut pieces = Vec::new();
    let mut offset = 0;
    for segment in &segments[first..] {
        if offset >= text.len() {
            break;
        }
        let seg_text = segment.text.trim();
        let clamp = |ms: u64| ms.clamp(segment.start_ms, segment.end_ms.max(segment.start_ms));
        let mut words = Vec::new();
        let mut cursor = 0;
        for word in &segment.words {
            let w = word.text.trim();
            if w.is_empty() {
                continue;
            }
            match seg_text[cursor..].find(w) {
                Some(at) => {
                    let s = cursor + at;
                    cursor = s + w.len();
                    words.push((
                        offset + s,
                        offset + cursor,
                        clamp(word.start_ms),
                        clamp(word.end_ms),
                    ));
                }
                None => {
                    words.clear();
                    break;
                }
            }
        }
        if words.is_empty() || cursor < seg_text.trim_end_matches(['.', '?', '!']).len() {
            pieces.push((
                offset,
                offset + seg_text.len(),
                segment.start_ms,
                segment.end_ms,
            ));
        } else {
            pieces.extend(words);
        }
        offset += seg_text.len() + 1;
    }
    Some(pieces)
}

/// The time range of bytes `start..end`: from the first piece it touches to the last.
fn time_of(pieces: &[TimedPiece], start: usize, end: usize) -> Option<Anchor> {
    let touched: Vec<&TimedPiece> = pieces
        .iter()
        .filter(|(s, e, _, _)| *s < end && *e > start)
        .collect();
    let start_ms = touched.iter().map(|p| p.2).min()?;
    let end_ms = touched.iter().map(|p| p.3).max()?.max(start_ms);
    Some(Anchor::Time { start_ms, end_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Modality, Source};
    use crate::transcribe::whisper::Word;

    fn chunk(text: &str, anchor: Anchor) -> StoredChunk {
        StoredChunk {
            id: "c".into(),
            source: Source {
                id: "s".into(),
                uri: "file:///x".into(),
                title: None,
                media_type: "text".into(),
                content_hash: None,
                bytes: 0,
                status: "complete".into(),
                error: None,
                pipeline_version: None,
                chunk_count: 1,
            },
            ordinal: 0,
            modality: Modality::Text,
            text: text.into(),
            context: String::new(),
            anchor,
        }
    }

    #[test]
    fn document_sentences_keep_their_own_spans_and_page() {
        let text = "## The Harriet (main dome)\n\nOur main telescope is a 0.6-metre reflector,\ninstalled in 2011. It has a focal ratio of f/8.\n\n- **When:** every Friday and Saturday night.\n- **Tickets:** 12 dollars for adults.";
        let c = chunk(
            text,
            Anchor::Span {
                page: Some(3),
                char_start: 100,
                char_end: 100 + text.chars().count() as u64,
            },
        );
        let sentences = block_sentences(2, &c, &[]);
        let shown: Vec<(&str, bool)> = sentences
            .iter()
            .map(|s| (s.text.as_str(), s.heading))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("The Harriet (main dome)", true),
                (
                    "Our main telescope is a 0.6-metre reflector, installed in 2011.",
                    false
                ),
                ("It has a focal ratio of f/8.", false),
                ("When: every Friday and Saturday night.", false),
                ("Tickets: 12 dollars for adults.", false),
            ]
        );
        for s in &sentences {
            let Anchor::Span {
                page,
                char_start,
                char_end,
            } = s.anchor
            else {
                panic!("{s:?}")
            };
            assert_eq!(page, Some(3));
            assert_eq!(s.block, 2);
            // The anchor spans exactly the sentence's characters.
            let raw: String = text
                .chars()
                .skip((char_start - 100) as usize)
                .take((char_end - char_start) as usize)
                .collect();
            assert_eq!(raw, &text[s.range.0..s.range.1]);
        }
    }

    fn segment(start: u64, end: u64, text: &str, words: &[(&str, u64, u64)]) -> Segment {
        Segment {
            start_ms: start,
            end_ms: end,
            text: text.into(),
            words: words
                .iter()
                .map(|(t, s, e)| Word {
                    text: (*t).into(),
                    start_ms: *s,
                    end_ms: *e,
                })
                .collect(),
        }
    }

    #[test]
    fn names_under_an_author_heading_answer() {
        let text = "AUTHOR\n       Yann Collet\n\nCOPYRIGHT\n       Meta Platforms";
        let c = chunk(
            text,
            Anchor::Span {
                page: None,
                char_start: 0,
                char_end: text.chars().count() as u64,
            },
        );
        let got: Vec<(String, bool, bool)> = block_sentences(1, &c, &[])
            .into_iter()
            .map(|s| (s.text, s.heading, s.credits))
            .collect();
        assert_eq!(
            got,
            vec![
                ("AUTHOR".into(), true, false),
                ("Yann Collet".into(), false, true),
                ("COPYRIGHT".into(), true, false),
                ("Meta Platforms".into(), true, false),
            ]
        );
    }

    #[test]
    fn transcript_sentences_get_the_time_they_were_spoken() {
        let segments = vec![
            segment(0, 4000, " Good evening and welcome.", &[]),
            segment(
                5000,
                12000,
                " First, the car park. The lower car park is closed.",
                &[
                    (" First", 5000, 5400),
                    (",", 5400, 5400),
                    (" the", 5400, 5600),
                    (" car", 5600, 5900),
                    (" park", 5900, 6300),
                    (".", 6300, 6300),
                    (" The", 7000, 7200),
                    (" lower", 7200, 7600),
                    (" car", 7600, 8000),
                    (" park", 8000, 8400),
                    (" is", 8400, 8600),
                    (" closed", 8600, 11500),
                    (".", 11500, 11600),
                ],
            ),
            segment(13000, 15000, " Thank you all, and clear skies.", &[]),
        ];
        let text = "Good evening and welcome. First, the car park. The lower car park is closed. Thank you all, and clear skies.";
        let c = chunk(
            text,
            Anchor::Time {
                start_ms: 0,
                end_ms: 15000,
            },
        );
        let got: Vec<(String, Anchor)> = block_sentences(1, &c, &segments)
            .into_iter()
            .map(|s| (s.text, s.anchor))
            .collect();
        let time = |start_ms, end_ms| Anchor::Time { start_ms, end_ms };
        assert_eq!(
            got,
            vec![
                ("Good evening and welcome.".into(), time(0, 4000)),
                ("First, the car park.".into(), time(5000, 6300)),
                ("The lower car park is closed.".into(), time(7000, 11600)),
                ("Thank you all, and clear skies.".into(), time(13000, 15000)),
            ]
        );
        // Segments that do not spell the chunk: every sentence keeps the chunk's range.
        let other = block_sentences(1, &c, &segments[1..]);
        assert!(other.iter().all(|s| s.anchor == c.anchor));
    }
}
