//! Whisper segments grouped into retrievable chunks: about 30–60 s each, ending where a
//! sentence ends, with a little overlap, each carrying the exact time range it covers.

use super::whisper::Segment;

/// How segments become chunks.
#[derive(Debug, Clone, Copy)]
pub struct GroupOptions {
    pub min_ms: u64,
    pub max_ms: u64,
    pub overlap_ms: u64,
    /// Upper bound on a chunk's tokens (the embedder's window).
    pub max_tokens: usize,
}

/// A chunk of transcript: segments `first..=last`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedChunk {
    pub first: usize,
    pub last: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub tokens: usize,
}

fn ends_sentence(text: &str) -> bool {
    let t = text.trim_end_matches(['"', '\'', ')', ']', '”', '’']);
    t.ends_with(['.', '?', '!', '…', '。', '？', '！'])
}

/// Groups `segments` (in time order) into chunks. `count` counts a text's tokens.
pub fn group(
    segments: &[Segment],
    options: &GroupOptions,
    count: &dyn Fn(&str) -> usize,
) -> Vec<TimedChunk> {
    let n = segments.len();
    let mut chunks: Vec<TimedChunk> = Vec::new();
    let mut i = 0;
    while i < n {
        let start = segments[i].start_ms;
        let mut tokens = count(&segments[i].text);
        let mut j = i;
        // The last sentence end seen after min_ms: where to stop if max_ms comes first.
        let mut sentence_end: Option<usize> = None;
        while j + 1 < n {
            let duration = segments[j].end_ms.saturating_sub(start);
            if duration >= options.min_ms && ends_sentence(&segments[j].text) {
                break;
            }
            let next = &segments[j + 1];
            let next_tokens = count(&next.text);
            if next.end_ms.saturating_sub(start) > options.max_ms
                || tokens + next_tokens > options.max_tokens
            {
                if let Some(end) = sentence_end {
                    j = end;
                }
                break;
            }
            if duration >= options.min_ms / 2 && ends_sentence(&segments[j].text) {
                sentence_end = Some(j);
            }
            tokens += next_tokens;
            j += 1;
        }
        let text = segments[i..=j]
            .iter()
            .map(|s| s.text.trim())
            .collect::<Vec<_>>()
            .join(" ");
        chunks.push(TimedChunk {
            first: i,
            last: j,
            start_ms: start,
            end_ms: segments[j].end_ms.max(start),
            tokens: count(&text),
            text,
        });
        if j + 1 >= n {
            break;
        }
        // Overlap: trailing segments within overlap_ms start the next chunk too.
        let mut next = j + 1;
        while next - 1 > i
            && segments[j]
                .end_ms
                .saturating_sub(segments[next - 1].start_ms)
                <= options.overlap_ms
        {
            next -= 1;
        }
        i = next;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(start: u64, end: u64, text: &str) -> Segment {
        Segment {
            start_ms: start,
            end_ms: end,
            text: text.into(),
            words: vec![],
        }
    }

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    const OPTS: GroupOptions = GroupOptions {
        min_ms: 30_000,
        max_ms: 60_000,
        overlap_ms: 5_000,
        max_tokens: 200,
    };

    #[test]
    fn chunks_end_on_sentences_and_overlap() {
        // 4 s segments; every third one ends a sentence.
        let segs: Vec<Segment> = (0..40)
            .map(|k| {
                let text = if k % 3 == 2 {
                    "and so it ends."
                } else {
                    "words go on"
                };
                seg(k * 4000, k * 4000 + 4000, text)
            })
            .collect();
        let chunks = group(&segs, &OPTS, &words);
        assert!(chunks.len() > 3);
        for c in &chunks[..chunks.len() - 1] {
            assert!(ends_sentence(&segs[c.last].text), "{c:?}");
            let d = c.end_ms - c.start_ms;
            assert!((30_000..=60_000).contains(&d), "duration {d}");
        }
        for pair in chunks.windows(2) {
            assert!(pair[1].start_ms < pair[0].end_ms, "no overlap: {pair:?}");
            assert!(pair[1].first > pair[0].first);
        }
        assert_eq!(chunks.last().unwrap().last, 39);
    }

    #[test]
    fn no_sentence_end_still_caps_at_max() {
        let segs: Vec<Segment> = (0..60)
            .map(|k| seg(k * 3000, k * 3000 + 3000, "no stop here"))
            .collect();
        for c in group(&segs, &OPTS, &words) {
            assert!(c.end_ms - c.start_ms <= 60_000);
        }
    }

    proptest! {
        #[test]
        fn every_segment_is_covered_in_order(
            lens in proptest::collection::vec((500u64..20_000, 0u8..4), 1..80)
        ) {
            let mut t = 0;
            let segs: Vec<Segment> = lens
                .iter()
                .map(|(len, kind)| {
                    let s = seg(t, t + len, if *kind == 0 { "end." } else { "more words here" });
                    t += len;
                    s
                })
                .collect();
            let chunks = group(&segs, &OPTS, &words);
            prop_assert_eq!(chunks[0].first, 0);
            prop_assert_eq!(chunks.last().unwrap().last, segs.len() - 1);
            for pair in chunks.windows(2) {
                // Contiguous or overlapping, always moving forward.
                prop_assert!(pair[1].first <= pair[0].last + 1);
                prop_assert!(pair[1].first > pair[0].first);
            }
            for c in &chunks {
                prop_assert_eq!(c.start_ms, segs[c.first].start_ms);
                prop_assert_eq!(c.end_ms, segs[c.last].end_ms);
            }
        }
    }
}
