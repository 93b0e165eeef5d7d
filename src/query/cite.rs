//! Citation mapping: find `[n]` markers in an answer, keep those that refer to a numbered
//! context block, and drop the rest (a model may invent numbers).

/// Distinct block numbers cited in `answer`, in order of first appearance. Recognises `[1]`,
/// `[1, 3]`, `[1][2]` and `[1-2]`; only numbers in `1..=blocks` are kept.
pub fn cited_numbers(answer: &str, blocks: usize) -> Vec<usize> {
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
            for n in numbers {
                if (1..=blocks).contains(&n) && !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        i += close + 2;
    }
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
}
