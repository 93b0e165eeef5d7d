//! Citation mapping: find `[n]` markers in an answer, keep those that refer to a numbered
//! context block, and drop the rest (a model may invent numbers).

/// Citation-shaped markers in `answer`: byte range and the numbers inside. Recognises `[1]`,
/// `[1, 3]`, `[1][2]` and `[1-2]`; brackets holding anything else (`[note]`) are not markers.
fn markers(answer: &str) -> Vec<(usize, usize, Vec<usize>)> {
    let mut out = Vec::new();
    let bytes = answer.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        let Some(close) = answer[i + 1..].find(']') else {
            break;
        };
        let inner = &answer[i + 1..i + 1 + close];
        let mut numbers = Vec::new();
        let mut valid = !inner.trim().is_empty();
        for part in inner.split([',', ';']) {
            let part = part.trim();
            if let Some((a, b)) = part.split_once(['-', '–']) {
                match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    (Ok(a), Ok(b)) if a <= b && b - a < 20 => numbers.extend(a..=b),
                    _ => valid = false,
                }
            } else {
                match part.parse::<usize>() {
                    Ok(n) => numbers.push(n),
                    Err(_) => valid = false,
                }
            }
        }
        if valid {
            out.push((i, i + close + 2, numbers));
        }
        i += close + 2;
    }
    out
}

/// Distinct block numbers cited in `answer`, in order of first appearance; only numbers in
/// `1..=blocks` are kept.
pub fn cited_numbers(answer: &str, blocks: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for (_, _, numbers) in markers(answer) {
        for n in numbers {
            if (1..=blocks).contains(&n) && !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// `text` without its citation markers (and the space before each), and the numbers they
/// cite that name one of `blocks` blocks, in order of first appearance. Code brackets stay.
pub fn split_markers(text: &str, blocks: usize) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut cited = Vec::new();
    let mut last = 0;
    for (start, end, numbers) in markers(text) {
        if is_code(&text[..start]) {
            continue;
        }
        let before = &text[last..start];
        out.push_str(before.trim_end_matches(' '));
        for n in numbers {
            if (1..=blocks).contains(&n) && !cited.contains(&n) {
                cited.push(n);
            }
        }
        last = end;
    }
    out.push_str(&text[last..]);
    (out, cited)
}

/// Whether a bracket right after `before` is code (`argv[0]`, inside backticks), not a
/// citation.
fn is_code(before: &str) -> bool {
    let after_word = before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    after_word || before.matches('`').count() % 2 == 1
}

/// `answer` with each citation marker reduced to the blocks that exist: `[1, 7]` becomes
/// `[1]`, and `[7]` (no such block) goes, with the space before it. Brackets right after a
/// word (`argv[0]`, `items[5]`) or inside backticks are code, not citations, and stay.
pub fn drop_dangling(answer: &str, blocks: usize) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut last = 0;
    for (start, end, numbers) in markers(answer) {
        if is_code(&answer[..start]) {
            continue;
        }
        let kept: Vec<String> = numbers
            .iter()
            .filter(|n| (1..=blocks).contains(*n))
            .map(|n| n.to_string())
            .collect();
        let all_kept = kept.len() == numbers.len();
        if all_kept {
            continue;
        }
        let before = &answer[last..start];
        if kept.is_empty() {
            out.push_str(before.strip_suffix(' ').unwrap_or(before));
        } else {
            out.push_str(before);
            out.push_str(&format!("[{}]", kept.join(", ")));
        }
        last = end;
    }
    out.push_str(&answer[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_valid_citations_and_drops_others() {
        let answer = "Paris [2]. Also [1, 3] and [3][2]; see [7] and [note] and [0] and [2-3].";
        assert_eq!(cited_numbers(answer, 3), vec![2, 1, 3]);
        assert!(cited_numbers("no citations", 3).is_empty());
        assert_eq!(cited_numbers("unclosed [1", 3), Vec::<usize>::new());
        assert_eq!(cited_numbers("[1–2]", 5), vec![1, 2]);
    }

    #[test]
    fn markers_split_from_their_sentence() {
        assert_eq!(
            split_markers("The dome is 6.5 m [2][9] wide [1, 2].", 3),
            ("The dome is 6.5 m wide.".to_string(), vec![2, 1])
        );
        assert_eq!(
            split_markers("Use argv[1] here [1].", 3),
            ("Use argv[1] here.".to_string(), vec![1])
        );
    }

    #[test]
    fn dangling_markers_leave_the_answer() {
        let answer = "Paris [2]. See also [7]. Both [1, 7] agree [note].";
        assert_eq!(
            drop_dangling(answer, 3),
            "Paris [2]. See also. Both [1] agree [note]."
        );
        assert_eq!(drop_dangling("No markers.", 3), "No markers.");
        assert_eq!(drop_dangling("[4][1]", 3), "[1]");
        assert_eq!(drop_dangling("Grüße [9] — ok [2-3]", 3), "Grüße — ok [2-3]");
        // Code is left alone.
        assert_eq!(
            drop_dangling("Use argv[0] and `x [9]` here [1][8].", 3),
            "Use argv[0] and `x [9]` here [1]."
        );
    }
}
