//! Weighted reciprocal rank fusion with an explicit `k` and per-list weights (from
//! `pipelines/query.toml`): `score(d) = Σ_i w_i / (k + rank_i(d))`, ranks starting at 1.
//! Done here rather than by a backend so every backend fuses identically.

use std::collections::HashMap;

/// One ranked candidate list (best first) and its weight.
#[derive(Debug, Clone)]
pub struct RankedList {
    pub name: String,
    pub weight: f64,
    pub ids: Vec<String>,
}

/// A fused candidate with its score and its rank in each list it appeared in.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub id: String,
    pub score: f64,
    pub ranks: Vec<(String, usize)>,
}

/// Candidate ids best first: by score, and equal scores by id, so a list does not depend on
/// the order a backend happened to store or visit tied candidates (tantivy's segment layout
/// after background merges, for one).
pub fn ranked_ids(mut hits: Vec<(String, f32)>) -> Vec<String> {
    hits.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    hits.into_iter().map(|h| h.0).collect()
}

/// Fuses lists. Ties break on the best single rank, then on the ranks list by list in the
/// order given (dense spaces before BM25: dense 1 + BM25 2 before dense 2 + BM25 1), then on
/// id. So results are deterministic, and ties do not depend on ids, which change with the
/// source path and pipeline version.
pub fn reciprocal_rank_fusion(lists: &[RankedList], k: f64) -> Vec<Fused> {
    let mut fused: HashMap<&str, (Fused, Vec<usize>)> = HashMap::new();
    for (l, list) in lists.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for (i, id) in list.ids.iter().enumerate() {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let rank = i + 1;
            let (entry, by_list) = fused.entry(id.as_str()).or_insert_with(|| {
                (
                    Fused {
                        id: id.clone(),
                        score: 0.0,
                        ranks: Vec::new(),
                    },
                    vec![usize::MAX; lists.len()],
                )
            });
            entry.score += list.weight / (k + rank as f64);
            entry.ranks.push((list.name.clone(), rank));
            by_list[l] = rank;
        }
    }
    let mut out: Vec<(Fused, Vec<usize>)> = fused.into_values().collect();
    out.sort_by(|(a, ra), (b, rb)| {
        let best = |r: &[usize]| r.iter().copied().min().unwrap_or(usize::MAX);
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(best(ra).cmp(&best(rb)))
            .then_with(|| ra.cmp(rb))
            .then_with(|| a.id.cmp(&b.id))
    });
    out.into_iter().map(|(f, _)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(name: &str, weight: f64, ids: &[&str]) -> RankedList {
        RankedList {
            name: name.into(),
            weight,
            ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tied_candidates_are_ordered_by_id() {
        let hits = |order: &[&str]| {
            order
                .iter()
                .map(|id| (id.to_string(), if *id == "z" { 2.0 } else { 1.0 }))
                .collect::<Vec<_>>()
        };
        let want = vec!["z", "a", "b", "c"];
        assert_eq!(ranked_ids(hits(&["c", "a", "z", "b"])), want);
        assert_eq!(ranked_ids(hits(&["b", "c", "a", "z"])), want);
    }

    #[test]
    fn scores_follow_the_formula() {
        let fused = reciprocal_rank_fusion(
            &[
                list("dense", 1.0, &["a", "b"]),
                list("bm25", 1.0, &["b", "c"]),
            ],
            60.0,
        );
        let score = |id: &str| fused.iter().find(|f| f.id == id).unwrap().score;
        assert!((score("b") - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert!((score("a") - 1.0 / 61.0).abs() < 1e-12);
        assert_eq!(fused[0].id, "b");
        // a and c tie on score; a's best rank (1) beats c's (2).
        assert_eq!(fused[1].id, "a");
        assert_eq!(fused[2].id, "c");
    }

    #[test]
    fn weights_and_k_change_the_order() {
        let lists = [
            list("dense", 1.0, &["a", "b"]),
            list("bm25", 3.0, &["b", "a"]),
        ];
        assert_eq!(reciprocal_rank_fusion(&lists, 60.0)[0].id, "b");
        let lists = [
            list("dense", 3.0, &["a", "b"]),
            list("bm25", 1.0, &["b", "a"]),
        ];
        assert_eq!(reciprocal_rank_fusion(&lists, 60.0)[0].id, "a");
        // Small k rewards the top of a single list more than agreement lower down.
        let lists = [
            list("x", 1.0, &["a", "d", "c"]),
            list("y", 1.0, &["b", "e", "c"]),
        ];
        assert_eq!(reciprocal_rank_fusion(&lists, 0.5)[2].id, "c");
        assert_eq!(reciprocal_rank_fusion(&lists, 100.0)[0].id, "c");
    }

    #[test]
    fn exact_ties_prefer_the_earlier_list_not_the_id() {
        // "z" is dense 1 + BM25 2, "a" dense 2 + BM25 1: equal scores and best ranks.
        let fused = reciprocal_rank_fusion(
            &[
                list("dense", 1.0, &["z", "a"]),
                list("bm25", 1.0, &["a", "z"]),
            ],
            60.0,
        );
        assert_eq!(fused[0].score, fused[1].score);
        assert_eq!((fused[0].id.as_str(), fused[1].id.as_str()), ("z", "a"));
    }

    #[test]
    fn duplicates_in_one_list_count_once() {
        let fused = reciprocal_rank_fusion(&[list("x", 1.0, &["a", "a"])], 1.0);
        assert_eq!(fused.len(), 1);
        assert!((fused[0].score - 0.5).abs() < 1e-12);
    }
}
