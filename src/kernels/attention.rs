//! Fused multi-head self-attention for AVX-512 CPUs, on packed sequences (no padding, no
//! mask). Per (sequence, head) and per block of query rows: the scores against every key are
//! computed into a small buffer that stays in cache, turned into exponentials in place, and
//! multiplied by the values; the softmax's division is applied once to the output row. No
//! `[len × len]` matrix is allocated and no GEMM library is called per head, which is what
//! the general path in [`super::attention`](fn@super::attention) does.
//!
//! Keys are packed per head into panels of 16 (`kt[panel][dim][16]`) so a query row meets 32
//! keys per pair of vector FMAs; values are copied into contiguous rows. Head sizes that are a
//! multiple of 16 up to 128 take this path (MiniLM and BGE-small: 32, BERT-base and -large:
//! 64).
//!
//! On the `bf16-mkl` product path, [`attention_mkl`] instead runs both products of each
//! (sequence, head) through MKL's bf16 GEMM, which uses AMX tiles where the CPU has them: there
//! a tile product beats any vector loop even with the `[len × len]` scores written out.

use std::cell::RefCell;

use rayon::prelude::*;

thread_local! {
    /// Per-thread scratch: packed keys, values and one block of scores (f32), and the bf16
    /// pairs of the bf16 variant.
    static SCRATCH: RefCell<(Vec<f32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// Per-thread scratch of [`attention_mkl`]: one head's scores (f32), probabilities (bf16),
    /// the inverse of each row's sum and the head's output rows (f32).
    static MKL_SCRATCH: RefCell<MklScratch> = const { RefCell::new(MklScratch::new()) };
}

struct MklScratch {
    scores: Vec<f32>,
    probs: Vec<u16>,
    inv: Vec<f32>,
    context: Vec<f32>,
}

impl MklScratch {
    const fn new() -> Self {
        Self {
            scores: Vec::new(),
            probs: Vec::new(),
            inv: Vec::new(),
            context: Vec::new(),
        }
    }
}

/// Whether [`attention_mkl`] runs here for heads of `head_dim`: MKL with
/// `cblas_gemm_bf16bf16f32` is loaded, the CPU has what the softmax needs ([`supported`]) and
/// AVX512_BF16 for rounding the probabilities as they are made ([`super::bf16::supported`]).
pub fn mkl_supported(head_dim: usize) -> bool {
    supported(head_dim)
        && super::bf16::supported()
        && super::blas::mkl().is_some_and(|b| b.has_bf16_gemm())
}

/// Self-attention with both products on MKL's bf16 GEMM (AMX tiles where the CPU has them),
/// on bf16 operands and output: `qkv16` is `[t × 3h]` bf16 queries, keys and values, `spans`
/// the `(first row, length)` of each sequence; the context `[t × h]` is written to `out16` in
/// bf16, as the next product reads it. Each (sequence, head) gets its `[len × len]` scores in
/// f32; the softmax's exponentials (at most 1) are rounded to bf16 for the product with the
/// values, and each output row is divided by its sum before its own rounding. The per-thread
/// buffers are kept between calls. Panics unless [`mkl_supported`] for `hidden / heads`, and
/// unless the sequences lie inside `qkv16` and `out16`, tile the batch and share no row.
pub fn attention_mkl(
    qkv16: &[u16],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    out16: &mut [u16],
) {
    let d = hidden / heads;
    assert!(mkl_supported(d), "MKL bf16 attention is not available here");
    let mkl = super::blas::mkl().expect("checked above");
    let stride = hidden.checked_mul(3).expect("hidden size overflows");
    check_batch(qkv16.len(), hidden, spans, out16.len());
    let scale = 1.0 / (d as f32).sqrt();
    let blocks = super::head_blocks(out16, hidden, heads, spans);
    blocks.into_par_iter().for_each(|mut block| {
        assert!(block.cols() == d && block.stride() == hidden);
        let (start, len, head) = (block.start(), block.rows(), block.head());
        // Rows of scores and probabilities padded to an even length (whole bf16 pairs).
        let ld = len.next_multiple_of(2);
        MKL_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let MklScratch {
                scores,
                probs,
                inv,
                context,
            } = &mut *scratch;
            if scores.len() < len * ld {
                scores.resize(len * ld, 0.0);
                probs.resize(len * ld, 0);
            }
            if context.len() < len * d {
                context.resize(len * d, 0.0);
            }
            inv.clear();
            let q0 = start * stride + head * d;
            let (k0, v0) = (q0 + hidden, q0 + 2 * hidden);
            // SAFETY: `scores` holds `len` rows of `ld ≥ len` (resized above) and is borrowed
            // by this call alone.
            unsafe {
                mkl.bf16_gemm(
                    (len, len, d),
                    (&qkv16[q0..], stride),
                    (&qkv16[k0..], stride, true),
                    (scores.as_mut_ptr(), ld),
                )
            };
            for i in 0..len {
                let row = &scores[i * ld..i * ld + len];
                let dst = &mut probs[i * ld..(i + 1) * ld];
                // SAFETY: `mkl_supported(d)` (checked above) checked every feature
                // `exp2_row_bf16` enables; the row is not empty (`head_blocks` makes no block
                // of length 0) and `dst` is at least as long.
                #[cfg(target_arch = "x86_64")]
                let sum = unsafe { x86::exp2_row_bf16(row, scale, dst) };
                #[cfg(not(target_arch = "x86_64"))]
                let sum: f32 = unreachable!("supported() is false off x86_64");
                // The exponentials (at most 1) are rounded as they are; each output row is
                // divided by its sum after the product, `d` values instead of `len`.
                inv.push(1.0 / sum);
                dst[len..].fill(0);
            }
            // SAFETY: `context` holds `len` rows of `d` (resized above), borrowed by this call
            // alone.
            unsafe {
                mkl.bf16_gemm(
                    (len, d, len),
                    (probs, ld),
                    (&qkv16[v0..], stride, false),
                    (context.as_mut_ptr(), d),
                )
            };
            let origin = block.origin();
            for (i, (row, &inv)) in context.chunks_exact_mut(d).zip(inv.iter()).enumerate() {
                row.iter_mut().for_each(|v| *v *= inv);
                // SAFETY: the block's elements (i, c), i < len and c < d, are `i·hidden + c`
                // past its origin and reachable through this block alone
                // (`HeadBlock::origin`).
                let dst = unsafe { std::slice::from_raw_parts_mut(origin.add(i * hidden), d) };
                super::path::to_bf16_rows(row, dst);
            }
        })
    });
}

/// Checks that the sequences lie inside a `qkv` of `qkv_len` and an `out` of `out_len`
/// elements (and overflow nothing); returns the batch's rows.
fn check_batch(qkv_len: usize, hidden: usize, spans: &[(usize, usize)], out_len: usize) -> usize {
    let stride = hidden.checked_mul(3).expect("hidden size overflows");
    let total = spans
        .iter()
        .try_fold(0usize, |total, s| total.checked_add(s.1))
        .expect("batch size overflows");
    assert!(
        total.checked_mul(stride).is_some_and(|n| qkv_len >= n) && out_len >= total * hidden,
        "buffers shorter than the batch"
    );
    for &(start, len) in spans {
        assert!(
            start.checked_add(len).is_some_and(|end| end <= total),
            "span outside the batch"
        );
    }
    total
}

/// Whether [`attention`] runs on this CPU for heads of `head_dim`. The f32 kernels are
/// compiled for AVX-512F alone, checked by `kernels::simd::avx512f_detected`; the bf16 ones
/// for `avx512f,avx512bw,avx512bf16`, checked by [`super::bf16::supported`].
pub fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim.is_multiple_of(16)
            && matches!(head_dim / 16, 1 | 2 | 4 | 8)
            && super::simd_allowed()
            && super::simd::avx512f_detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// Same contract as [`super::attention`](fn@super::attention): `qkv` is `[t × 3h]`, `spans` the
/// `(first row, length)` of each sequence; writes the context `[t × h]` into `out`. With
/// `bf16` (and a CPU with AVX512_BF16) the two products take bf16 operands (queries, keys,
/// probabilities and values rounded to bf16, f32 accumulation, softmax in f32). Panics unless
/// [`supported`] for `hidden / heads`, and unless the sequences lie inside `qkv` and `out`, tile
/// the batch and share no row.
pub fn attention(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    bf16: bool,
    out: &mut [f32],
) {
    let bf16 = bf16 && super::bf16::supported();
    let d = hidden / heads;
    assert!(
        supported(d),
        "fused attention needs AVX-512 and a head size of 16·2^i"
    );
    check_batch(qkv.len(), hidden, spans, out.len());
    // One disjoint output block per (sequence, head); panics if sequences overlap.
    let blocks = super::head_blocks(out, hidden, heads, spans);
    blocks.into_par_iter().for_each(|mut block| {
        // The kernels write the block's rows, `d` columns each, `hidden` apart: its elements.
        assert!(block.cols() == d && block.stride() == hidden);
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let (f, u) = &mut *scratch;
            // SAFETY: `supported(d)` (asserted above) checked AVX-512F, all `head` enables, and
            // `bf16` is set only where `super::bf16::supported()` checked every feature
            // `head_bf16` enables; the kernels read rows `start..start + len` of `qkv`, which
            // lie inside it (asserted above), and write only this task's block (asserted
            // shape above, disjoint from every other task's by `head_blocks`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                if bf16 {
                    x86::head_bf16(qkv, hidden, d, &mut block, f, u)
                } else {
                    x86::head(qkv, hidden, d, &mut block, f)
                }
            };
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (f, u, &mut block, bf16);
                unreachable!("fused attention is x86_64 only")
            }
        })
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::bf16::convert_row as pairs;
    use super::super::HeadBlock;

    /// Query rows per block.
    const ROWS: usize = 8;

    /// One (sequence, head): context rows `start..start+len`, columns `head*d..(head+1)*d`,
    /// written into `block`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F ([`super::super::simd::avx512f_detected`]); `qkv` must hold
    /// the block's rows (`start + len` rows of `3·hidden`), and the block must have `d`
    /// columns, `hidden` apart.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn head(
        qkv: &[f32],
        hidden: usize,
        d: usize,
        block: &mut HeadBlock,
        scratch: &mut Vec<f32>,
    ) {
        let (start, len, head) = (block.start(), block.rows(), block.head());
        let out = block.origin();
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
            let dst = out.add(r0 * hidden);
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

    /// [`head`] with bf16 products (`vdpbf16ps`): keys packed as pairs along the head
    /// dimension in panels of 16 keys, values as pairs of consecutive keys per column.
    ///
    /// # Safety
    /// As [`head`], and the CPU must have every feature enabled here
    /// ([`super::super::bf16::supported`] checks them).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn head_bf16(
        qkv: &[f32],
        hidden: usize,
        d: usize,
        block: &mut HeadBlock,
        scratch: &mut Vec<f32>,
        pairs_scratch: &mut Vec<u32>,
    ) {
        let (start, len, head) = (block.start(), block.rows(), block.head());
        let out = block.origin();
        let stride = 3 * hidden;
        let padded = len.div_ceil(32) * 32;
        let half = d / 2;
        let key_pairs = padded / 2;
        if scratch.len() < ROWS * padded {
            scratch.resize(ROWS * padded, 0.0);
        }
        let need = padded * half + key_pairs * d + ROWS * half + ROWS * key_pairs + half;
        if pairs_scratch.len() < need {
            pairs_scratch.resize(need, 0);
        }
        let scores = &mut scratch[..ROWS * padded];
        let (kt, rest) = pairs_scratch.split_at_mut(padded * half);
        let (vp, rest) = rest.split_at_mut(key_pairs * d);
        let (qp, rest) = rest.split_at_mut(ROWS * half);
        let (pp, rest) = rest.split_at_mut(ROWS * key_pairs);
        let key = &mut rest[..half];
        let q0 = start * stride + head * d;
        let k0 = q0 + hidden;
        let v0 = q0 + 2 * hidden;
        // kt[(panel * half + c) * 16 + lane] = pair c of key panel * 16 + lane (zero past len).
        for j in 0..padded {
            let (panel, lane) = (j / 16, j % 16);
            if j < len {
                pairs(&qkv[k0 + j * stride..k0 + j * stride + d], key);
            } else {
                key.fill(0);
            }
            for (c, &k) in key.iter().enumerate() {
                kt[(panel * half + c) * 16 + lane] = k;
            }
        }
        // vp[jp * d + c] = bf16(v[2jp][c]) | bf16(v[2jp + 1][c]) << 16 (zero past len),
        // 16 columns per step.
        for jp in 0..key_pairs {
            let row = |j: usize| (j < len).then(|| qkv.as_ptr().add(v0 + j * stride));
            let (a, b) = (row(2 * jp), row(2 * jp + 1));
            for c in (0..d).step_by(16) {
                let half16 = |r: Option<*const f32>| match r {
                    Some(p) => _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
                        _mm512_cvtneps_pbh(_mm512_loadu_ps(p.add(c))),
                    )),
                    None => _mm512_setzero_si512(),
                };
                let packed = _mm512_or_si512(half16(a), _mm512_slli_epi32::<16>(half16(b)));
                _mm512_storeu_si512(vp.as_mut_ptr().add(jp * d + c) as *mut _, packed);
            }
        }
        let scale = 1.0 / (d as f32).sqrt();
        let mut inv = [0f32; ROWS];
        let used_pairs = len.div_ceil(2);
        let mut r0 = 0;
        while r0 < len {
            for i in 0..ROWS {
                let r = (r0 + i).min(len - 1);
                pairs(
                    &qkv[q0 + r * stride..q0 + r * stride + d],
                    &mut qp[i * half..(i + 1) * half],
                );
            }
            let mut p = 0;
            while p < padded {
                scores_block_bf16(
                    qp,
                    half,
                    kt.as_ptr().add(p * half),
                    scores.as_mut_ptr().add(p),
                    padded,
                );
                p += 32;
            }
            for (i, inv) in inv.iter_mut().enumerate() {
                let row = &mut scores[i * padded..(i + 1) * padded];
                *inv = 1.0 / exp_row(&mut row[..len], scale);
                // Zeros past the end, so the row converts in whole blocks of 32.
                row[len..].fill(0.0);
                pairs(row, &mut pp[i * key_pairs..(i + 1) * key_pairs]);
            }
            let dst = out.add(r0 * hidden);
            let valid = ROWS.min(len - r0);
            match d / 16 {
                1 => values_block_bf16::<1, 8>(
                    pp, key_pairs, vp, used_pairs, &inv, dst, hidden, valid,
                ),
                2 => values_block_bf16::<2, 8>(
                    pp, key_pairs, vp, used_pairs, &inv, dst, hidden, valid,
                ),
                4 => values_block_bf16::<4, 4>(
                    pp, key_pairs, vp, used_pairs, &inv, dst, hidden, valid,
                ),
                _ => values_block_bf16::<8, 2>(
                    pp, key_pairs, vp, used_pairs, &inv, dst, hidden, valid,
                ),
            }
            r0 += ROWS;
        }
    }

    /// bf16 [`scores_block`]: `qp` holds `ROWS` query rows of `half` pairs.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    unsafe fn scores_block_bf16(
        qp: &[u32],
        half: usize,
        kt: *const u32,
        scores: *mut f32,
        ld: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        let second = kt.add(half * 16);
        for c in 0..half {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(kt.add(c * 16) as *const _));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(second.add(c * 16) as *const _));
            for (i, acc) in acc.iter_mut().enumerate() {
                let a: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*qp.get_unchecked(i * half + c) as i32));
                acc[0] = _mm512_dpbf16_ps(acc[0], a, b0);
                acc[1] = _mm512_dpbf16_ps(acc[1], a, b1);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(scores.add(i * ld), acc[0]);
            _mm512_storeu_ps(scores.add(i * ld + 16), acc[1]);
        }
    }

    /// bf16 [`values_block`]: probabilities `pp` as pairs of consecutive keys (`ld` pairs per
    /// row), values `vp` as `[pair][d]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn values_block_bf16<const V: usize, const R: usize>(
        pp: &[u32],
        ld: usize,
        vp: &[u32],
        used_pairs: usize,
        inv: &[f32; ROWS],
        dst: *mut f32,
        hidden: usize,
        valid: usize,
    ) {
        let d = 16 * V;
        let mut i0 = 0;
        while i0 < valid {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            let pr = pp.as_ptr().add(i0 * ld);
            for jp in 0..used_pairs {
                let vr = vp.as_ptr().add(jp * d);
                let vv: [__m512bh; V] = std::array::from_fn(|c| {
                    std::mem::transmute(_mm512_loadu_si512(vr.add(16 * c) as *const _))
                });
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*pr.add(i * ld + jp) as i32));
                    for c in 0..V {
                        acc[c] = _mm512_dpbf16_ps(acc[c], a, vv[c]);
                    }
                }
            }
            store_rows(&acc, &inv[i0..], valid - i0, dst.add(i0 * hidden), hidden);
            i0 += R;
        }
    }

    /// `dst[i][..] = acc[i] · inv[i]` for the first `rows` rows (row stride `hidden`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_rows<const V: usize, const R: usize>(
        acc: &[[__m512; V]; R],
        inv: &[f32],
        rows: usize,
        dst: *mut f32,
        hidden: usize,
    ) {
        for (i, acc) in acc.iter().enumerate().take(rows) {
            let k = _mm512_set1_ps(inv[i]);
            for (c, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(i * hidden + 16 * c), _mm512_mul_ps(*a, k));
            }
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

    /// The largest of the `n` values from `p` (all of them readable).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn row_max(p: *const f32, n: usize) -> f32 {
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
        _mm512_reduce_max_ps(m)
    }

    /// `dst[j] = bf16(exp((row[j] - max) · scale))`, computed as `2^y`,
    /// `y = (row[j] - max) · scale · log2 e`:
    /// `2^(y - n)` for the nearest integer `n` by a degree-4 polynomial on `[-½, ½]` (relative
    /// error below 3e-6, tested), times `2^n` by `vscalefps`, which also takes every `y` below
    /// -149 to 0. Half the instructions of [`exp_row`], for probabilities that are rounded to
    /// bf16 (relative 4e-3) anyway. Returns the sum of the f32 values.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    pub(super) unsafe fn exp2_row_bf16(row: &[f32], scale: f32, dst: &mut [u16]) -> f32 {
        let n = row.len();
        assert!(n > 0 && dst.len() >= n, "row sizes");
        let p = row.as_ptr();
        let out = dst.as_mut_ptr();
        let full = n / 16 * 16;
        let tail: __mmask16 = ((1u32 << (n - full)) - 1) as u16;
        let max = row_max(p, n);
        let s = scale * std::f32::consts::LOG2_E;
        let sv = _mm512_set1_ps(s);
        let shift = _mm512_set1_ps(max * s);
        let exp2 = |x: __m512| {
            let y = _mm512_fmsub_ps(x, sv, shift);
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
            let f = _mm512_sub_ps(y, n);
            let mut q = _mm512_set1_ps(EXP2_POLY[4]);
            for c in [EXP2_POLY[3], EXP2_POLY[2], EXP2_POLY[1], EXP2_POLY[0]] {
                q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(c));
            }
            _mm512_scalef_ps(q, n)
        };
        let mut sum = _mm512_setzero_ps();
        let mut j = 0;
        while j < full {
            let e = exp2(_mm512_loadu_ps(p.add(j)));
            let bits: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(e));
            _mm256_storeu_si256(out.add(j) as *mut __m256i, bits);
            sum = _mm512_add_ps(sum, e);
            j += 16;
        }
        if tail != 0 {
            let e = exp2(_mm512_maskz_loadu_ps(tail, p.add(full)));
            let sum_tail = _mm512_maskz_mov_ps(tail, e);
            sum = _mm512_add_ps(sum, sum_tail);
            let bits: [u16; 16] = std::mem::transmute(_mm512_cvtneps_pbh(sum_tail));
            dst[full..n].copy_from_slice(&bits[..n - full]);
        }
        _mm512_reduce_add_ps(sum)
    }

    /// `2^f ≈ Σ EXP2_POLY[i]·fⁱ` on `[-½, ½]`: a fit of the relative error (below 2.7e-6 in
    /// f32 arithmetic).
    pub(super) const EXP2_POLY: [f32; 5] = [
        0.999_999_3,
        0.693_121_8,
        0.240_247_44,
        0.055_917_863,
        0.009_570_102,
    ];

    /// `row[j] = exp((row[j] - max) · scale)`; returns the sum.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn exp_row(row: &mut [f32], scale: f32) -> f32 {
        let n = row.len();
        let p = row.as_mut_ptr();
        let full = n / 16 * 16;
        let tail: __mmask16 = ((1u32 << (n - full)) - 1) as u16;
        let max = row_max(p, n);
        let s = _mm512_set1_ps(scale);
        let shift = _mm512_set1_ps(max * scale);
        let mut sum = _mm512_setzero_ps();
        let mut j = 0;
        while j < full {
            let e = super::super::simd::exp16(_mm512_fmsub_ps(_mm512_loadu_ps(p.add(j)), s, shift));
            _mm512_storeu_ps(p.add(j), e);
            sum = _mm512_add_ps(sum, e);
            j += 16;
        }
        if tail != 0 {
            let x = _mm512_maskz_loadu_ps(tail, p.add(full));
            let e = super::super::simd::exp16(_mm512_fmsub_ps(x, s, shift));
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
            store_rows(&acc, &inv[i0..], valid - i0, dst.add(i0 * hidden), hidden);
            i0 += R;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::reference_attention as reference;
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                ((x >> 8) % 2000) as f32 / 500.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn matches_a_reference_softmax_attention() {
        // Head sizes 16, 32 and 64; lengths that leave partial row blocks and partial panels.
        for (hidden, heads) in [(32, 2), (64, 2), (128, 2), (96, 3), (256, 2)] {
            if !supported(hidden / heads) {
                eprintln!("no AVX-512F here (or MOSAIC_CPU=generic): skipped");
                return;
            }
            let spans = [(0, 1), (1, 9), (10, 33), (43, 70)];
            let total = 113;
            let qkv = data(total * 3 * hidden, hidden as u32);
            let mut out = vec![f32::NAN; total * hidden];
            attention(&qkv, hidden, heads, &spans, false, &mut out);
            let want = reference(&qkv, hidden, heads, &spans);
            for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
                    "hidden {hidden} heads {heads} element {i}: {g} vs {w}"
                );
            }
            // bf16 products: within bf16 rounding of the reference.
            if !super::super::bf16::supported() {
                eprintln!("no AVX512_BF16 (or MOSAIC_CPU=generic): bf16 attention skipped");
            } else {
                let mut low = vec![f32::NAN; total * hidden];
                attention(&qkv, hidden, heads, &spans, true, &mut low);
                for (i, (g, w)) in low.iter().zip(&want).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() < 2e-2 * w.abs().max(1.0),
                        "bf16, hidden {hidden} heads {heads} element {i}: {g} vs {w}"
                    );
                }
            }
            // Both products on MKL's bf16 GEMM, bf16 in and out: within bf16 rounding of the
            // reference.
            if mkl_supported(hidden / heads) {
                let qkv16: Vec<u16> = qkv
                    .iter()
                    .map(|&v| half::bf16::from_f32(v).to_bits())
                    .collect();
                let mut out16 = vec![0xffffu16; total * hidden];
                attention_mkl(&qkv16, hidden, heads, &spans, &mut out16);
                let amx = out16.iter().map(|&b| half::bf16::from_bits(b).to_f32());
                for (i, (g, w)) in amx.zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() < 2e-2 * w.abs().max(1.0),
                        "MKL bf16, hidden {hidden} heads {heads} element {i}: {g} vs {w}"
                    );
                }
            } else {
                eprintln!("MKL with bf16 GEMM not loaded: MKL bf16 attention skipped");
            }
            // The general path gives the same.
            let mut general = vec![0f32; total * hidden];
            super::super::attention(&qkv, hidden, heads, &spans, &mut general);
            for (g, w) in out.iter().zip(&general) {
                assert!((g - w).abs() < 1e-4 * w.abs().max(1.0));
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_bf16_exponential_row_is_within_3e_6_of_exp() {
        if !(supported(32) && super::super::bf16::supported()) {
            eprintln!("no AVX-512F with AVX512_BF16 here (or MOSAIC_CPU=generic): skipped");
            return;
        }
        // Lengths with and without a partial vector; scores from -300 to 10 around the max.
        for len in [1usize, 15, 16, 17, 250, 256] {
            let row: Vec<f32> = (0..len).map(|j| 10.0 - (j as f32 * 37.0 % 310.0)).collect();
            let scale = 0.176_776_7;
            let mut dst = vec![0u16; len];
            // SAFETY: the features `exp2_row_bf16` enables were checked above; `dst` is as
            // long as the row.
            let sum = unsafe { x86::exp2_row_bf16(&row, scale, &mut dst) };
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let want: Vec<f64> = row
                .iter()
                .map(|&v| ((v as f64 - max) * scale as f64).exp())
                .collect();
            let want_sum: f64 = want.iter().sum();
            assert!(
                (sum as f64 - want_sum).abs() <= 3e-6 * want_sum,
                "len {len}: sum {sum} vs {want_sum}"
            );
            for (j, (&b, &w)) in dst.iter().zip(&want).enumerate() {
                // Each value is bf16 of an exponential within 3e-6: one bf16 step of it.
                let got = half::bf16::from_bits(b).to_f64();
                assert!(
                    (got - w).abs() <= w * (1.0 / 256.0 + 3e-6) + 1e-38,
                    "len {len} element {j}: {got} vs {w}"
                );
            }
        }
        // The polynomial itself, densely on [-1/2, 1/2], in f32 arithmetic.
        for i in 0..=100_000 {
            let f = -0.5 + i as f32 / 100_000.0;
            let p = x86::EXP2_POLY
                .iter()
                .rev()
                .fold(0f32, |acc, &c| acc.mul_add(f, c));
            let rel = (p as f64 / (f as f64).exp2() - 1.0).abs();
            assert!(rel < 3e-6, "2^{f}: relative error {rel}");
        }
    }
}
