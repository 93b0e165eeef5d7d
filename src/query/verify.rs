//! Verification of a generated answer against the blocks it was given. An answer sentence is
//! supported when a block sentence is close to it in embedding space (cosine at or above a
//! calibrated threshold) and every number and proper name it states is in that sentence or
//! its neighbours (two such sentences of different blocks may share the facts). Supported
//! sentences cite that block, at the words that support them; citations to blocks that do not
//! support a sentence are corrected or removed; the rest are marked unsupported. A number
//! elsewhere in the block does not count: "a 6.5-metre telescope" is not supported by a block
//! whose telescope is 0.6 metres and whose dome, three sentences on, is 6.5.

use super::evidence::Sentence;
use super::facts::{facts, Vocabulary};

/// One sentence of a generated answer, as the generator wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The sentence without its citation markers.
    pub text: String,
    /// Block numbers it cites (only numbers of existing blocks).
    pub cited: Vec<usize>,
}

/// The sentences of `answer` with the blocks each cites. A marker written after a sentence's
/// full stop (`… November. [2]`) belongs to that sentence.
pub fn claims(answer: &str, blocks: usize) -> Vec<Claim> {
    let mut out: Vec<Claim> = Vec::new();
    for sentence in crate::text::sentences(answer) {
        let (start, end) = (sentence.start, sentence.end);
        let (text, cited) = super::cite::split_markers(&answer[start..end], blocks);
        let leading_only = text.trim().is_empty();
        let text = super::evidence::display_text(&text);
        if leading_only || text.chars().all(|c| !c.is_alphanumeric()) {
            if let Some(last) = out.last_mut() {
                for n in cited {
                    if !last.cited.contains(&n) {
                        last.cited.push(n);
                    }
                }
            }
            continue;
        }
        out.push(Claim { text, cited });
    }
    out
}

/// What verification did to a sentence's citations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Its citation was right.
    Kept,
    /// It cited nothing; a supporting block was added.
    Added,
    /// It cited a block that does not support it; the supporting block replaced it.
    Corrected,
    /// It is unsupported; the citations it had were removed.
    Removed,
    /// It is unsupported and cited nothing.
    None,
}

/// The verdict on one claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub supported: bool,
    /// Indexes (into the evidence sentences) of the sentences that support it: one, or two
    /// from different blocks when it joins facts of both.
    pub evidence: Vec<usize>,
    /// Its best cosine similarity to any block sentence.
    pub similarity: f64,
    /// Numbers and names it states that no supporting-enough block holds.
    pub missing: Vec<String>,
    pub change: Change,
}

pub use crate::embed::encoder::cosine;

/// What each evidence sentence can vouch for: its own words with its neighbours in the same
/// block (a claim may join two adjacent sentences), the block's title > section line, and the
/// question (which an answer may repeat). `contexts[b - 1]` is block `b`'s line.
pub fn windows(sentences: &[Sentence], contexts: &[&str], question: &str) -> Vec<Vocabulary> {
    (0..sentences.len())
        .map(|j| {
            let block = sentences[j].block;
            let neighbour = |k: Option<usize>| {
                k.and_then(|k| sentences.get(k))
                    .filter(|s| s.block == block)
                    .map(|s| s.text.as_str())
                    .unwrap_or_default()
            };
            Vocabulary::of([
                neighbour(j.checked_sub(1)),
                sentences[j].text.as_str(),
                neighbour(Some(j + 1)),
                contexts
                    .get(block.wrapping_sub(1))
                    .copied()
                    .unwrap_or_default(),
                question,
            ])
        })
        .collect()
}

/// Judges each claim. `claim_vectors[i]` embeds `claims[i].text`; `sentence_vectors[j]`
/// embeds `sentences[j]` and `windows[j]` is what it vouches for (see [`windows`]).
/// `threshold` is the cosine a supporting sentence must reach. A claim is supported by the
/// closest sentence (of a block it cites, if one qualifies) that reaches the threshold and
/// vouches for all its numbers and names, or by two such sentences of different blocks that
/// do so together.
pub fn judge(
    claims: &[Claim],
    claim_vectors: &[Vec<f32>],
    sentences: &[Sentence],
    sentence_vectors: &[Vec<f32>],
    windows: &[Vocabulary],
    threshold: f64,
) -> Vec<Judgement> {
    claims
        .iter()
        .zip(claim_vectors)
        .map(|(claim, vector)| {
            let stated = facts(&claim.text);
            // Headings and labels give context to their neighbours' windows; they support
            // nothing themselves.
            let mut ranked: Vec<(usize, f64)> = sentence_vectors
                .iter()
                .enumerate()
                .filter(|(j, _)| !sentences[*j].heading)
                .map(|(j, v)| (j, cosine(vector, v)))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let similarity = ranked.first().map_or(0.0, |r| r.1);
            let close: Vec<usize> = ranked
                .iter()
                .take_while(|(_, s)| *s >= threshold)
                .map(|(j, _)| *j)
                .collect();
            let missing_at = |j: usize| windows[j].missing(&stated);
            let supporting: Vec<usize> = close
                .iter()
                .copied()
                .filter(|&j| missing_at(j).is_empty())
                .collect();
            let cites = |j: &usize| claim.cited.contains(&sentences[*j].block);
            let single = supporting
                .iter()
                .find(|j| cites(j))
                .or(supporting.first())
                .map(|&j| vec![j]);
            let evidence = single.or_else(|| {
                // Two sentences of different blocks that hold every fact between them.
                close.iter().enumerate().find_map(|(i, &a)| {
                    let missing_a = missing_at(a);
                    close[i + 1..].iter().find_map(|&b| {
                        let other_block = sentences[a].block != sentences[b].block;
                        let missing_b = missing_at(b);
                        (other_block && missing_a.iter().all(|m| !missing_b.contains(m)))
                            .then(|| vec![a, b])
                    })
                })
            });
            let evidence = evidence.unwrap_or_default();
            let change = match (evidence.is_empty(), claim.cited.is_empty()) {
                (false, true) => Change::Added,
                (false, false) if evidence.iter().any(cites) => Change::Kept,
                (false, false) => Change::Corrected,
                (true, false) => Change::Removed,
                (true, true) => Change::None,
            };
            let missing = match (evidence.is_empty(), ranked.first()) {
                (true, Some((j, _))) => missing_at(*j),
                _ => Vec::new(),
            };
            Judgement {
                supported: !evidence.is_empty(),
                evidence,
                similarity,
                missing,
                change,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Anchor;

    fn sentence(block: usize, text: &str) -> Sentence {
        Sentence {
            block,
            source: format!("source{block}"),
            text: text.into(),
            anchor: Anchor::Image,
            heading: false,
            range: (0, text.len()),
            group: 0,
            credits: false,
        }
    }

    #[test]
    fn markers_are_taken_off_their_sentences() {
        let got = claims(
            "The dome is 6.5 m wide [1]. It has 16 wheels. [2][9]\n\n- Doors open at 20:00 [3, 1].",
            3,
        );
        assert_eq!(
            got,
            vec![
                Claim {
                    text: "The dome is 6.5 m wide.".into(),
                    cited: vec![1]
                },
                Claim {
                    text: "It has 16 wheels.".into(),
                    cited: vec![2]
                },
                Claim {
                    text: "Doors open at 20:00.".into(),
                    cited: vec![3, 1]
                },
            ]
        );
    }

    /// Unit vectors along axes stand in for embeddings: equal axes are paraphrases.
    fn axis(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i] = 1.0;
        v
    }

    #[test]
    fn citations_are_kept_added_corrected_or_removed() {
        let sentences = vec![
            sentence(1, "The main dome is 6.5 metres in diameter."),
            sentence(2, "The shuttle costs 8 dollars return and has 14 seats."),
        ];
        let vectors = vec![axis(0), axis(1)];
        let vocabularies = windows(&sentences, &["", ""], "");
        let cases = [
            // (claim, cited, axis) -> (supported, evidence, change)
            (
                "The dome is 6.5 metres across.",
                vec![1],
                0,
                true,
                vec![0],
                Change::Kept,
            ),
            (
                "The dome is 6.5 metres across.",
                vec![],
                0,
                true,
                vec![0],
                Change::Added,
            ),
            (
                "The shuttle has 14 seats.",
                vec![1],
                1,
                true,
                vec![1],
                Change::Corrected,
            ),
            // A wrong number: close in meaning, but block 1 does not hold 7.
            (
                "The dome is 7 metres across.",
                vec![1],
                0,
                false,
                vec![],
                Change::Removed,
            ),
            // A wrong name.
            (
                "The shuttle is run by Greyhound.",
                vec![],
                1,
                false,
                vec![],
                Change::None,
            ),
            // Far from every block.
            (
                "Penguins live in the south.",
                vec![2],
                3,
                false,
                vec![],
                Change::Removed,
            ),
        ];
        for (text, cited, a, supported, evidence, change) in cases {
            let claim = Claim {
                text: text.into(),
                cited,
            };
            let got = judge(
                &[claim],
                &[axis(a)],
                &sentences,
                &vectors,
                &vocabularies,
                0.6,
            );
            assert_eq!(
                (got[0].supported, got[0].evidence.clone(), got[0].change),
                (supported, evidence, change),
                "{text}: {got:?}"
            );
        }
        let wrong = judge(
            &[Claim {
                text: "The dome is 7 metres across.".into(),
                cited: vec![1],
            }],
            &[axis(0)],
            &sentences,
            &vectors,
            &vocabularies,
            0.6,
        );
        assert_eq!(wrong[0].missing, vec!["7"]);
    }

    #[test]
    fn a_number_must_be_near_the_supporting_sentence() {
        let sentences = vec![
            sentence(1, "Our main telescope is a 0.6-metre reflector."),
            sentence(1, "It is named after Harriet Lowenthal."),
            sentence(1, "Visitors love it."),
            sentence(1, "The main dome is 6.5 metres in diameter."),
        ];
        let mut telescope = vec![0.0f32; 4];
        telescope[0] = 0.9;
        telescope[3] = 0.4;
        let vectors = vec![axis(0), axis(1), axis(2), axis(3)];
        let vocabularies = windows(&sentences, &["Telescopes"], "How large is the telescope?");
        let judged = |text: &str| {
            judge(
                &[Claim {
                    text: text.into(),
                    cited: vec![1],
                }],
                &[telescope.clone()],
                &sentences,
                &vectors,
                &vocabularies,
                0.6,
            )
            .remove(0)
        };
        assert!(!judged("The main telescope is a 6.5-metre reflector.").supported);
        // A neighbour's name counts.
        let named = judged("The 0.6-metre reflector is named after Lowenthal.");
        assert!(named.supported, "{named:?}");
        assert_eq!(named.evidence, vec![0]);
    }

    #[test]
    fn a_sentence_joining_two_blocks_cites_both() {
        let sentences = vec![
            sentence(1, "The main dome is 6.5 metres in diameter."),
            sentence(2, "The west dome is 4 metres in diameter."),
        ];
        let mut joined = vec![0.0f32; 4];
        joined[0] = 0.8;
        joined[1] = 0.7;
        let vocabularies = windows(&sentences, &["", ""], "");
        let got = judge(
            &[Claim {
                text: "The domes are 6.5 and 4 metres across.".into(),
                cited: vec![1],
            }],
            &[joined],
            &sentences,
            &[axis(0), axis(1)],
            &vocabularies,
            0.6,
        );
        assert!(got[0].supported, "{got:?}");
        assert_eq!(got[0].evidence, vec![0, 1]);
        assert_eq!(got[0].change, Change::Kept);
    }
}
