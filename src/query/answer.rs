//! The extracted answer: the block sentences that best answer the question, chosen by the
//! text embedder's similarity (with the cross-encoder's score when one is installed) and BM25
//! term overlap as a tie-breaker, shown in source order, each with its citation.

use std::collections::HashMap;

use super::evidence::Sentence;
use super::types::{AnswerType, GOOD_FIT};
use crate::catalog::Anchor;
use crate::pipeline::AnswerSection;

/// BM25 of each sentence for the question's terms, with document frequencies counted over
/// these sentences, scaled so the best sentence has 1 (all 0 when no term matches).
pub fn term_overlap(question: &[String], sentences: &[Vec<String>]) -> Vec<f64> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let n = sentences.len() as f64;
    if sentences.is_empty() {
        return Vec::new();
    }
    let average = sentences.iter().map(Vec::len).sum::<usize>() as f64 / n;
    let mut document_frequency: HashMap<&str, usize> = HashMap::new();
    for terms in sentences {
        let mut seen: Vec<&str> = terms.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *document_frequency.entry(t).or_default() += 1;
        }
    }
    let mut query: Vec<&str> = question.iter().map(String::as_str).collect();
    query.sort_unstable();
    query.dedup();
    let scores: Vec<f64> = sentences
        .iter()
        .map(|terms| {
            let len = terms.len() as f64;
            query
                .iter()
                .map(|q| {
                    let tf = terms.iter().filter(|t| t == q).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let df = *document_frequency.get(q).unwrap_or(&0) as f64;
                    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / average.max(1.0)))
                })
                .sum()
        })
        .collect();
    let top = scores.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return vec![0.0; scores.len()];
    }
    scores.into_iter().map(|s| s / top).collect()
}

/// Position of an anchor within its source, for source order.
fn position(anchor: &Anchor) -> u64 {
    match anchor {
        Anchor::Span { char_start, .. } => *char_start,
        Anchor::Time { start_ms, .. } => *start_ms,
        Anchor::Frame { at_ms } => *at_ms,
        Anchor::Image => 0,
    }
}

/// Whether two anchors of one source cover some of the same words.
fn overlaps(a: &Anchor, b: &Anchor) -> bool {
    match (a, b) {
        (
            Anchor::Span {
                page: pa,
                char_start: sa,
                char_end: ea,
            },
            Anchor::Span {
                page: pb,
                char_start: sb,
                char_end: eb,
            },
        ) => pa == pb && sa < eb && sb < ea,
        (
            Anchor::Time {
                start_ms: sa,
                end_ms: ea,
            },
            Anchor::Time {
                start_ms: sb,
                end_ms: eb,
            },
        ) => sa < eb && sb < ea,
        (a, b) => a == b,
    }
}

/// Drops the sentences that repeat an earlier one (chunks overlap, so a sentence can reach
/// the context twice): the same source and overlapping anchors, or the same text.
pub fn distinct(sentences: Vec<Sentence>) -> Vec<Sentence> {
    let mut out: Vec<Sentence> = Vec::with_capacity(sentences.len());
    for s in sentences {
        let repeated = out.iter().any(|o| {
            (o.source == s.source && overlaps(&o.anchor, &s.anchor))
                || o.text.eq_ignore_ascii_case(&s.text)
        });
        if !repeated {
            out.push(s);
        }
    }
    out
}

/// What the question asks for, and how well each sentence's spans fill it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub answer_type: AnswerType,
    /// Per sentence: the best fit of its typed spans to the asked type (0 when none).
    pub fits: &'a [f64],
    /// Whether the question asks for a default ("by default", "if I don't say"), and per
    /// sentence whether it states one.
    pub wants_default: bool,
    pub defaults: &'a [bool],
}

/// Sentences after the best one that the continuation looks at (in its group).
const CONTINUATION_REACH: usize = 8;

/// The sentences (indexes into `sentences`) that answer: the best-scoring one; when the
/// question asks for a type the best one lacks, the next sentence of its group (paragraph or
/// entry) that has it; then others whose score, and whose own part of it (`own`: without the
/// share that all sentences of a passage have in common), are within `sentence_margin` of the
/// best's (holding the asked type, if one was asked), up to the type's sentence count
/// (`max_sentences` for procedures and lists, two for others). In source order (sources in the
/// order of their best block, sentences by position). Headings never answer.
pub fn choose(
    scores: &[f64],
    own: &[f64],
    asked: Asked<'_>,
    sentences: &[Sentence],
    settings: &AnswerSection,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sentences.len())
        .filter(|&i| !sentences[i].heading)
        .collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let Some(&best) = order.first() else {
        return Vec::new();
    };
    let typed = asked.answer_type.typed();
    let fit = |i: usize| asked.fits.get(i).copied().unwrap_or(0.0);
    let limit = asked
        .answer_type
        .max_sentences()
        .min(settings.max_sentences.max(1));
    let states_default = |i: usize| asked.defaults.get(i).copied().unwrap_or(false);
    let has_type = |i: usize| !typed || fit(i) >= GOOD_FIT;
    let has_default = |i: usize| !asked.wants_default || states_default(i);
    let mut picked = vec![best];
    if !has_type(best) || !has_default(best) {
        let b = &sentences[best];
        let entry: Vec<usize> = (best + 1..sentences.len())
            .take_while(|&k| {
                sentences[k].block == b.block
                    && sentences[k].group == b.group
                    && k - best <= CONTINUATION_REACH
            })
            .filter(|&k| !sentences[k].heading)
            .collect();
        // The next sentence that holds what the best one lacks: both the type and the default
        // when both were asked (for a number, a size or a duration, a sentence stating the
        // default first: an entry's other numbers are often conditions, `If set to 0, …`),
        // else the type.
        let numeric = matches!(
            asked.answer_type,
            AnswerType::Quantity | AnswerType::Size | AnswerType::Duration
        );
        let next = entry
            .iter()
            .copied()
            .find(|&k| has_type(k) && has_default(k) && (!numeric || states_default(k)))
            .or_else(|| {
                entry
                    .iter()
                    .copied()
                    .find(|&k| has_type(k) && has_default(k))
            })
            .or_else(|| {
                (!has_type(best))
                    .then(|| entry.iter().copied().find(|&k| has_type(k)))
                    .flatten()
            });
        picked.extend(next);
    }
    for &i in order.iter().skip(1) {
        if picked.len() >= limit {
            break;
        }
        if scores[i] < scores[best] - settings.sentence_margin {
            break;
        }
        let close = own[i] >= own[best] - settings.sentence_margin;
        if close && !picked.contains(&i) && (!typed || fit(i) >= GOOD_FIT) {
            picked.push(i);
        }
    }
    let first_block = |source: &str| {
        picked
            .iter()
            .map(|&i| &sentences[i])
            .filter(|s| s.source == source)
            .map(|s| s.block)
            .min()
            .unwrap_or(usize::MAX)
    };
    let keys: HashMap<usize, (usize, u64)> = picked
        .iter()
        .map(|&i| {
            let s = &sentences[i];
            (i, (first_block(&s.source), position(&s.anchor)))
        })
        .collect();
    picked.sort_by_key(|i| keys[i]);
    picked
}

/// How close, from 0 to 1, the typed span starting at byte `span_start` of `text` is to the
/// question's key words (`keys`, lower-case) in it: 1 when a key word is next to it, falling
/// with the words between; 0 when no key word is in the sentence.
pub fn proximity(text: &str, span_start: usize, keys: &[String]) -> f64 {
    let stem = super::types::stem;
    let keys: Vec<String> = keys.iter().map(|k| stem(k)).collect();
    let mut span_word = None;
    let mut key_positions = Vec::new();
    let mut at = 0;
    for (n, word) in text.split_whitespace().enumerate() {
        let start = text[at..].find(word).map_or(at, |p| at + p);
        at = start + word.len();
        if span_word.is_none() && at > span_start {
            span_word = Some(n);
        }
        let clean: String = word
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if !clean.is_empty() && keys.contains(&stem(&clean)) {
            key_positions.push(n);
        }
    }
    let Some(span) = span_word else {
        return 0.0;
    };
    key_positions
        .iter()
        .map(|&k| {
            let distance = k.abs_diff(span) as f64;
            1.0 / (1.0 + distance / 3.0)
        })
        .fold(0.0, f64::max)
}

/// One sentence of the answer as shown: the text, then its citation numbers (or the
/// unsupported mark) before its closing punctuation: `It is closed until May [1].`
pub fn render_sentence(text: &str, citations: &[usize], supported: bool) -> String {
    let text = text.trim();
    let cut = text.trim_end_matches(['.', '!', '?', '…']).len();
    let (body, end) = text.split_at(cut);
    let marks: String = if supported {
        citations.iter().map(|n| format!("[{n}]")).collect()
    } else {
        "[unsupported]".into()
    };
    if marks.is_empty() {
        text.to_string()
    } else {
        format!("{body} {marks}{end}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence(block: usize, source: &str, start: u64, text: &str) -> Sentence {
        Sentence {
            block,
            source: source.into(),
            text: text.into(),
            anchor: Anchor::Span {
                page: None,
                char_start: start,
                char_end: start + text.len() as u64,
            },
            heading: false,
            range: (0, text.len()),
            group: 0,
            credits: false,
        }
    }

    fn settings() -> AnswerSection {
        AnswerSection {
            search_limit: 10,
            max_sentences: 3,
            sentence_margin: 0.1,
            min_relevance: 0.3,
            support_threshold: 0.6,
            term_weight: 0.05,
            passage_weight: 0.5,
            rank_weight: 0.1,
            type_weight: 0.1,
            proximity_weight: 0.05,
            type_margin: 0.1,
            title_weight: 0.05,
        }
    }

    #[test]
    fn the_best_sentences_in_source_order() {
        let sentences = vec![
            sentence(1, "a", 500, "Second in a."),
            sentence(1, "a", 100, "First in a."),
            sentence(2, "b", 0, "In b."),
            sentence(2, "b", 90, "Far below."),
        ];
        let scores = [0.8, 0.75, 0.72, 0.2];
        let fits = [0.0; 4];
        let list = Asked {
            answer_type: AnswerType::List,
            fits: &fits,
            wants_default: false,
            defaults: &[],
        };
        let picked = choose(&scores, &scores, list, &sentences, &settings());
        assert_eq!(picked, vec![1, 0, 2]);
        // Other types answer in one or two sentences.
        let other = Asked {
            answer_type: AnswerType::Definition,
            fits: &fits,
            wants_default: false,
            defaults: &[],
        };
        assert_eq!(
            choose(&scores, &scores, other, &sentences, &settings()),
            vec![1, 0]
        );
        // Only the best when the others are far behind.
        let behind = [0.8, 0.5, 0.5, 0.2];
        assert_eq!(
            choose(&behind, &behind, list, &sentences, &settings()),
            vec![0]
        );
        // Close only through the passage they share with the best: not an answer.
        assert_eq!(
            choose(
                &scores,
                &[0.5, 0.3, 0.45, 0.1],
                list,
                &sentences,
                &settings()
            ),
            vec![0, 2]
        );
        // Headings never answer.
        let mut with_heading = sentences.clone();
        with_heading[0].heading = true;
        assert_eq!(
            choose(&behind, &behind, list, &with_heading, &settings()),
            vec![1, 2]
        );
    }

    #[test]
    fn the_answer_goes_on_to_the_sentence_of_its_entry_that_holds_the_asked_type() {
        let mut sentences = vec![
            sentence(
                1,
                "a",
                0,
                "Specify the size of the buffer used for transfers.",
            ),
            sentence(1, "a", 60, "This helps on slow links."),
            sentence(1, "a", 90, "The default is 32768 bytes."),
            sentence(1, "a", 200, "Another entry of 512 bytes."),
        ];
        sentences[3].group = 1;
        let scores = [0.8, 0.5, 0.6, 0.75];
        let fits = [0.0, 0.0, 1.0, 1.0];
        let size = Asked {
            answer_type: AnswerType::Size,
            fits: &fits,
            wants_default: false,
            defaults: &[],
        };
        // The best lacks a size: its entry's next sentence with one joins it, and no other
        // entry's sentence does.
        assert_eq!(
            choose(&scores, &scores, size, &sentences, &settings()),
            vec![0, 2]
        );
        // Without a typed sentence in the entry, the best stands alone; a sentence of
        // another entry within the margin that has the type may join it.
        let fits = [0.0, 0.0, 0.0, 1.0];
        let size = Asked {
            answer_type: AnswerType::Size,
            fits: &fits,
            wants_default: false,
            defaults: &[],
        };
        assert_eq!(
            choose(&scores, &scores, size, &sentences, &settings()),
            vec![0, 3]
        );
    }

    #[test]
    fn a_question_about_a_default_goes_on_to_the_sentence_that_states_it() {
        let sentences = vec![
            sentence(1, "a", 0, "Specifies the minimum RSA key size in bits."),
            sentence(1, "a", 50, "Keys smaller than 512 bits are ignored."),
            sentence(1, "a", 90, "The default is 1024 bits."),
        ];
        let scores = [0.85, 0.7, 0.72];
        let fits = [0.0, 1.0, 1.0];
        let defaults = [false, false, true];
        let asked = Asked {
            answer_type: AnswerType::Quantity,
            fits: &fits,
            wants_default: true,
            defaults: &defaults,
        };
        assert_eq!(
            choose(&scores, &scores, asked, &sentences, &settings()),
            vec![0, 2]
        );
        // Not asked for the default, a number still comes from the sentence that states
        // the default (an entry's other numbers are often conditions); another type takes the
        // first sentence that has it.
        let asked = Asked {
            wants_default: false,
            ..asked
        };
        assert_eq!(
            choose(&scores, &scores, asked, &sentences, &settings()),
            vec![0, 2]
        );
        let asked = Asked {
            answer_type: AnswerType::Version,
            ..asked
        };
        assert_eq!(
            choose(&scores, &scores, asked, &sentences, &settings()),
            vec![0, 1]
        );
    }

    #[test]
    fn proximity_is_highest_next_to_the_key_words() {
        let keys = vec!["buffer".to_string()];
        let text = "The buffer holds 512 bytes and the cache holds far more than 4096 bytes.";
        let near = proximity(text, text.find("512").unwrap(), &keys);
        let far = proximity(text, text.find("4096").unwrap(), &keys);
        assert!(near > far && far > 0.0, "{near} {far}");
        assert_eq!(proximity(text, 0, &["none".to_string()]), 0.0);
    }

    #[test]
    fn repeated_sentences_are_dropped() {
        let a = sentence(1, "a", 100, "Same words.");
        let overlap = sentence(2, "a", 105, "Same words and more.");
        let elsewhere = sentence(3, "b", 100, "Same words.");
        let other = sentence(3, "b", 400, "Other words.");
        let kept = distinct(vec![a.clone(), overlap, elsewhere, other.clone()]);
        assert_eq!(kept, vec![a, other]);
    }

    #[test]
    fn term_overlap_prefers_rare_terms() {
        let terms = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let scores = term_overlap(
            &terms("car park resurfac"),
            &[
                terms("the car park is closed for resurfac"),
                terms("the car is red"),
                terms("nothing here"),
            ],
        );
        assert_eq!(scores[0], 1.0);
        assert!(scores[1] > 0.0 && scores[1] < 0.5, "{scores:?}");
        assert_eq!(scores[2], 0.0);
    }

    #[test]
    fn citations_go_before_the_full_stop() {
        assert_eq!(
            render_sentence("It is closed until May.", &[1, 2], true),
            "It is closed until May [1][2]."
        );
        assert_eq!(
            render_sentence("It is closed", &[3], true),
            "It is closed [3]"
        );
        assert_eq!(
            render_sentence("It is 7 m wide.", &[], false),
            "It is 7 m wide [unsupported]."
        );
        assert_eq!(render_sentence("Hello.", &[], true), "Hello.");
    }
}
