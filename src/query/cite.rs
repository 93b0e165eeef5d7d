//! Citation markers: find `[n]` markers in an answer and take them off its sentences, keeping
//! the numbers that refer to a context block (a model may invent others). Brackets in code
//! (`argv[0]`, inside backticks) are not markers.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_forms_and_numbers_of_no_block() {
        let cited = |text: &str, blocks| split_markers(text, blocks).1;
        let answer = "Paris [2]. Also [1, 3] and [3][2]; see [7] and [note] and [0] and [2-3].";
        assert_eq!(cited(answer, 3), vec![2, 1, 3]);
        assert!(cited("no citations", 3).is_empty());
        assert!(cited("unclosed [1", 3).is_empty());
        assert_eq!(cited("[1–2]", 5), vec![1, 2]);
        // Markers naming no block go from the text too; `[note]` is not a marker.
        assert_eq!(
            split_markers("Paris [2]. See also [7]. Both [1, 7] agree [note].", 3).0,
            "Paris. See also. Both agree [note]."
        );
        assert_eq!(split_markers("Grüße [9] — ok", 3).0, "Grüße — ok");
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
        assert_eq!(
            split_markers("Run `x [9]` here [1][8].", 3),
            ("Run `x [9]` here.".to_string(), vec![1])
        );
    }
}
