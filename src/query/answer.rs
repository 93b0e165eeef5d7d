//! The extracted answer: the block sentences that best answer the question, chosen by the
//! text embedder's similarity (with the cross-encoder's score when one is installed) and BM25
//! term overlap as a tie-breaker, shown in source order, each with its citation.

use std::collections::HashMap;

use super::evidence::Sentence;
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

/// The sentences (indexes into `sentences`) that answer: the best-scoring one, then up to
/// `max_sentences` in all whose score, and whose own part of it (`own`: without the share
/// that all sentences of a passage have in common), are within `sentence_margin` of the
/// best's, in source order (sources in the order of their best block, sentences by
/// position). Headings never answer.
pub fn choose(
    scores: &[f64],
    own: &[f64],
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
    let mut picked: Vec<usize> = order
        .into_iter()
        .take_while(|&i| scores[i] >= scores[best] - settings.sentence_margin)
        .filter(|&i| own[i] >= own[best] - settings.sentence_margin)
        .take(settings.max_sentences.max(1))
        .collect();
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
        let picked = choose(&scores, &scores, &sentences, &settings());
        assert_eq!(picked, vec![1, 0, 2]);
        // Only the best when the others are far behind.
        let behind = [0.8, 0.5, 0.5, 0.2];
        assert_eq!(choose(&behind, &behind, &sentences, &settings()), vec![0]);
        // Close only through the passage they share with the best: not an answer.
        assert_eq!(
            choose(&scores, &[0.5, 0.3, 0.45, 0.1], &sentences, &settings()),
            vec![0, 2]
        );
        // Headings never answer.
        let mut with_heading = sentences.clone();
        with_heading[0].heading = true;
        assert_eq!(
            choose(&behind, &behind, &with_heading, &settings()),
            vec![1, 2]
        );
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
