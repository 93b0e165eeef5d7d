//! Fused multi-head self-attention for AVX-512 CPUs, on packed sequences (no padding, no
//! mask). Per (sequence, head) and per block of query rows: the scores against every key are
//! computed into a small buffer that stays in cache, turned into exponentials in place, and
//! multiplied by the values; the softmax's division is applied once to the output row. No
//! `[len × len]` matrix is allocated and no GEMM library is called per head, which is what
//! the general path in [`super::kernels::attention`] does.
//!
//! Keys are packed per head into panels of 16 (`kt[panel][dim][16]`) so a query row meets 32
//! keys per pair of vector FMAs; values are copied into contiguous rows. Head sizes that are a
//! multiple of 16 up to 128 take this path (MiniLM and BGE-small: 32, BERT-base and -large:
//! 64).

use std::cell::RefCell;

use rayon::prelude::*;

thread_local! {
    /// Per-thread scratch: packed keys, values and one block of scores.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`attention`] runs on this CPU for heads of `head_dim`.
pub fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim.is_multiple_of(16)
            && matches!(head_dim / 16, 1 | 2 | 4 | 8)
            && super::kernels::simd_allowed()
            && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// Raw output pointer shared by tasks that write disjoint (rows × head columns) blocks.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only its own sequence's rows in its own head's columns.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Same contract as [`super::kernels::attention`]: `qkv` is `[t × 3h]`, `spans` the
/// `(first row, length)` of each sequence; writes the context `[t × h]` into `out`. Panics
/// unless [`supported`] for `hidden / heads`.
pub fn attention(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    out: &mut [f32],
) {
    let d = hidden / heads;
    assert!(
        supported(d),
        "fused attention needs AVX-512 and a head size of 16·2^i"
    );
    let total: usize = spans.iter().map(|s| s.1).sum();
    assert!(qkv.len() >= total * 3 * hidden && out.len() >= total * hidden);
    for &(start, len) in spans {
        assert!(start + len <= total, "span outside the batch");
    }
    let shared = Out(out.as_mut_ptr());
    let tasks: Vec<(usize, usize, usize)> = spans
        .iter()
        .filter(|s| s.1 > 0)
        .flat_map(|&(start, len)| (0..heads).map(move |h| (start, len, h)))
        .collect();
    tasks.par_iter().for_each(|&(start, len, head)| {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            // SAFETY: AVX-512F was checked by `supported`; the spans lie inside `qkv` and
            // `out` (asserted above) and this task writes only its (rows, head) block.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::head(qkv, hidden, d, start, len, head, shared.ptr(), &mut scratch)
            };
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (&mut scratch, shared, start, len, head);
                unreachable!("fused attention is x86_64 only")
            }
        })
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Query rows per block.
    const ROWS: usize = 8;

    /// One (sequence, head): context rows `start..start+len`, columns `head*d..(head+1)*d`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn head(
        qkv: &[f32],
        hidden: usize,
        d: usize,
        start: usize,
        len: usize,
        head: usize,
        out: *mut f32,
        scratch: &mut Vec<f32>,
    ) {
        let stride = 3 * hidden;
        // Keys padded to whole pairs of 16-key panels.
        let padded = len.div_ceil(32) * 32;
        let need = padded * d + len * d + ROWS * padded;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (kt, rest) = scratch.split_at_mut(padded * d);
        let (v, scores) = rest.split_at_mut(len * d);
        let q0 = start * stride + head * d;
        let k0 = q0 + hidden;
        let v0 = q0 + 2 * hidden;
        // Pack keys: kt[(panel * d + c) * 16 + lane] = k[panel * 16 + lane][c], zero past len.
        for j in 0..padded {
            let (panel, lane) = (j / 16, j % 16);
            if j < len {
                let key = &qkv[k0 + j * stride..k0 + j * stride + d];
                for (c, &x) in key.iter().enumerate() {
                    kt[(panel * d + c) * 16 + lane] = x;
                }
            } else {
                for c in 0..d {
                    kt[(panel * d + c) * 16 + lane] = 0.0;
                }
            }
        }
        for j in 0..len {
            v[j * d..(j + 1) * d].copy_from_slice(&qkv[v0 + j * stride..v0 + j * stride + d]);
        }
        let scale = 1.0 / (d as f32).sqrt();
        let mut inv = [0f32; ROWS];
        let mut r0 = 0;
        while r0 < len {
            // Rows past the end repeat the last row; their results are not stored.
            let rows: [*const f32; ROWS] = std::array::from_fn(|i| {
                let r = (r0 + i).min(len - 1);
                qkv.as_ptr().add(q0 + r * stride)
            });
            let mut p = 0;
            while p < padded {
                scores_block(
                    &rows,
                    kt.as_ptr().add(p * d),
                    d,
                    scores.as_mut_ptr().add(p),
                    padded,
                );
                p += 32;
            }
            for (i, inv) in inv.iter_mut().enumerate() {
                let row = &mut scores[i * padded..i * padded + len];
                *inv = 1.0 / exp_row(row, scale);
            }
            let dst = out.add((start + r0) * hidden + head * d);
            let valid = ROWS.min(len - r0);
            match d / 16 {
                1 => values_block::<1, 8>(scores, padded, v, len, &inv, dst, hidden, valid),
                2 => values_block::<2, 8>(scores, padded, v, len, &inv, dst, hidden, valid),
                4 => values_block::<4, 4>(scores, padded, v, len, &inv, dst, hidden, valid),
                _ => values_block::<8, 2>(scores, padded, v, len, &inv, dst, hidden, valid),
            }
            r0 += ROWS;
        }
    }

    /// `scores[i][0..32] = q_i · k` for the 32 keys of two panels starting at `kt`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn scores_block(
        rows: &[*const f32; ROWS],
        kt: *const f32,
        d: usize,
        scores: *mut f32,
        ld: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        let second = kt.add(d * 16);
        for c in 0..d {
            let b0 = _mm512_loadu_ps(kt.add(c * 16));
            let b1 = _mm512_loadu_ps(second.add(c * 16));
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*rows[i].add(c));
                acc[0] = _mm512_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(a, b1, acc[1]);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(scores.add(i * ld), acc[0]);
            _mm512_storeu_ps(scores.add(i * ld + 16), acc[1]);
        }
    }

    /// `row[j] = exp((row[j] - max) · scale)`; returns the sum.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn exp_row(row: &mut [f32], scale: f32) -> f32 {
        let n = row.len();
        let p = row.as_mut_ptr();
        let full = n / 16 * 16;
        let tail: __mmask16 = ((1u32 << (n - full)) - 1) as u16;
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut j = 0;
        while j < full {
            m = _mm512_max_ps(m, _mm512_loadu_ps(p.add(j)));
            j += 16;
        }
        if tail != 0 {
            m = _mm512_mask_max_ps(m, tail, m, _mm512_maskz_loadu_ps(tail, p.add(full)));
        }
        let max = _mm512_reduce_max_ps(m);
        let s = _mm512_set1_ps(scale);
        let shift = _mm512_set1_ps(max * scale);
        let mut sum = _mm512_setzero_ps();
        j = 0;
        while j < full {
            let e = super::super::kernels::simd::exp16(_mm512_fmsub_ps(
                _mm512_loadu_ps(p.add(j)),
                s,
                shift,
            ));
            _mm512_storeu_ps(p.add(j), e);
            sum = _mm512_add_ps(sum, e);
            j += 16;
        }
        if tail != 0 {
            let x = _mm512_maskz_loadu_ps(tail, p.add(full));
            let e = super::super::kernels::simd::exp16(_mm512_fmsub_ps(x, s, shift));
            _mm512_mask_storeu_ps(p.add(full), tail, e);
            sum = _mm512_mask_add_ps(sum, tail, sum, e);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// `dst[i] = inv[i] · Σ_j scores[i][j] · v[j]` for the first `valid` rows; `V` vectors of 16
    /// per row (`d = 16·V`), `R` rows per pass so the accumulators stay in registers.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn values_block<const V: usize, const R: usize>(
        scores: &[f32],
        ld: usize,
        v: &[f32],
        len: usize,
        inv: &[f32; ROWS],
        dst: *mut f32,
        hidden: usize,
        valid: usize,
    ) {
        let d = 16 * V;
        let mut i0 = 0;
        while i0 < valid {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            let sp = scores.as_ptr().add(i0 * ld);
            for j in 0..len {
                let vr = v.as_ptr().add(j * d);
                let vv: [__m512; V] = std::array::from_fn(|c| _mm512_loadu_ps(vr.add(16 * c)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*sp.add(i * ld + j));
                    for c in 0..V {
                        acc[c] = _mm512_fmadd_ps(a, vv[c], acc[c]);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate().take(valid - i0) {
                let k = _mm512_set1_ps(inv[i0 + i]);
                for (c, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(dst.add((i0 + i) * hidden + 16 * c), _mm512_mul_ps(*a, k));
                }
            }
            i0 += R;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                ((x >> 8) % 2000) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    /// Softmax(q kᵀ / √d) v in f64, one (sequence, head) at a time.
    fn reference(qkv: &[f32], hidden: usize, heads: usize, spans: &[(usize, usize)]) -> Vec<f64> {
        let d = hidden / heads;
        let stride = 3 * hidden;
        let total: usize = spans.iter().map(|s| s.1).sum();
        let mut out = vec![0f64; total * hidden];
        for &(start, len) in spans {
            for h in 0..heads {
                for i in 0..len {
                    let q = &qkv[(start + i) * stride + h * d..][..d];
                    let s: Vec<f64> = (0..len)
                        .map(|j| {
                            let k = &qkv[(start + j) * stride + hidden + h * d..][..d];
                            q.iter()
                                .zip(k)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for (j, w) in e.iter().enumerate() {
                        let v = &qkv[(start + j) * stride + 2 * hidden + h * d..][..d];
                        for c in 0..d {
                            out[(start + i) * hidden + h * d + c] += w / sum * v[c] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_a_reference_softmax_attention() {
        // Head sizes 16, 32 and 64; lengths that leave partial row blocks and partial panels.
        for (hidden, heads) in [(32, 2), (64, 2), (128, 2), (96, 3), (256, 2)] {
            if !supported(hidden / heads) {
                eprintln!("no AVX-512 here: skipped");
                return;
            }
            let spans = [(0, 1), (1, 9), (10, 33), (43, 70)];
            let total = 113;
            let qkv = data(total * 3 * hidden, hidden as u32);
            let mut out = vec![f32::NAN; total * hidden];
            attention(&qkv, hidden, heads, &spans, &mut out);
            let want = reference(&qkv, hidden, heads, &spans);
            for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
                    "hidden {hidden} heads {heads} element {i}: {g} vs {w}"
                );
            }
            // The general path gives the same.
            let mut general = vec![0f32; total * hidden];
            super::super::kernels::attention(&qkv, hidden, heads, &spans, &mut general);
            for (g, w) in out.iter().zip(&general) {
                assert!((g - w).abs() < 1e-4 * w.abs().max(1.0));
            }
        }
    }
}
