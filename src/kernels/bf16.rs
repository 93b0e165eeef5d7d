//! bf16 matrix products on CPUs with AVX512_BF16: `out[t×n] = x[t×k] · w[n×k]ᵀ` with weights
//! converted to bf16 once at load and packed for the `vdpbf16ps` instruction (pairs of `k`
//! per 32-bit lane, 32 output columns per panel), activations rounded to bf16 per product, and
//! f32 accumulation. Twice the multiply-adds per instruction of the f32 path; the precision
//! cost is checked against f32 in the tests (cosine ≥ 0.999 per embedding).

use rayon::prelude::*;

use super::Activation;

/// Output columns per packed panel (two 16-lane vectors).
const NR: usize = 32;
/// Rows per micro-kernel call.
const MR: usize = 8;
/// Rows of `x` per parallel task (its bf16 copy stays in L2 while every panel passes).
const ROWS_PER_TASK: usize = 64;

/// Whether this CPU can run the bf16 path: CPU-specific kernels allowed and
/// [`avx512_bf16_detected`]. This is the check for every kernel here and for the bf16 ones of
/// [`super::attention`](mod@super::attention).
pub fn supported() -> bool {
    super::simd_allowed() && avx512_bf16_detected()
}

/// Whether this CPU has every feature the bf16 kernels are compiled for:
/// `avx512f,avx512bw,avx512bf16`.
pub fn avx512_bf16_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Round-to-nearest-even f32 -> bf16 bits (what `vcvtne2ps2bf16` does).
fn to_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// A weight matrix `[n × k]` packed for the kernel: panel `p` holds columns `p*32..p*32+32`
/// as `[k/2][32]` lanes of two bf16 values (`w[c][2i]` low, `w[c][2i+1]` high).
pub struct PackedBf16 {
    n: usize,
    k: usize,
    k_pairs: usize,
    data: Vec<u32>,
}

impl PackedBf16 {
    /// Width `k` of the packed weight's rows (the product's inputs).
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Packs row-major `w[n × k]`.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        let k_pairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0u32; panels * k_pairs * NR];
        for p in 0..panels {
            for kp in 0..k_pairs {
                for c in 0..NR {
                    let col = p * NR + c;
                    if col >= n {
                        continue;
                    }
                    let lo = to_bf16(w[col * k + 2 * kp]) as u32;
                    let hi = if 2 * kp + 1 < k {
                        to_bf16(w[col * k + 2 * kp + 1]) as u32
                    } else {
                        0
                    };
                    data[(p * k_pairs + kp) * NR + c] = lo | (hi << 16);
                }
            }
        }
        Self {
            n,
            k,
            k_pairs,
            data,
        }
    }
}

/// `out[t×n] = activation(x[t×k] · wᵀ + bias)`; the bias and activation are applied to each
/// register tile as it is stored. Panics unless [`supported`].
pub fn matmul(
    x: &[f32],
    t: usize,
    w: &PackedBf16,
    bias: &[f32],
    activation: Option<Activation>,
    out: &mut [f32],
) {
    assert!(supported(), "bf16 kernels need AVX512_BF16");
    let (n, k) = (w.n, w.k);
    assert_eq!(x.len(), t * k);
    assert_eq!(out.len(), t * n);
    assert_eq!(bias.len(), n, "bias size");
    x.par_chunks(ROWS_PER_TASK * k)
        .zip(out.par_chunks_mut(ROWS_PER_TASK * n))
        .for_each(|(xs, outs)| {
            let rows = xs.len() / k;
            // bf16 copy of these rows, each padded to whole pairs.
            let row_pairs = w.k_pairs;
            let mut a = vec![0u32; rows * row_pairs];
            for r in 0..rows {
                let src = &xs[r * k..(r + 1) * k];
                let dst = &mut a[r * row_pairs..(r + 1) * row_pairs];
                // SAFETY: `supported()` (asserted above) checked every feature `convert_row`
                // enables; it reads and writes within `src` and `dst`.
                unsafe { convert_row(src, dst) };
            }
            // SAFETY: `supported()` (asserted above) checked every feature `block` enables;
            // the kernel reads `a` and the panels within their lengths and writes only `outs`,
            // this task's own rows (`par_chunks_mut`).
            unsafe { block(&a, rows, row_pairs, w, bias, activation, outs) };
        });
}

/// f32 row -> bf16 pairs (round to nearest even), 32 values per instruction:
/// `dst[i] = bf16(src[2i]) | bf16(src[2i + 1]) << 16`, `src` read as zero past its end.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`supported`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn convert_row(src: &[f32], dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let full = (src.len() / 32).min(dst.len() / 16);
    for c in 0..full {
        let lo = _mm512_loadu_ps(src.as_ptr().add(c * 32));
        let hi = _mm512_loadu_ps(src.as_ptr().add(c * 32 + 16));
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(c * 16) as *mut _, packed);
    }
    for (i, d) in dst.iter_mut().enumerate().skip(full * 16) {
        let lo = src.get(2 * i).map_or(0, |&v| to_bf16(v) as u32);
        let hi = src.get(2 * i + 1).map_or(0, |&v| to_bf16(v) as u32);
        *d = lo | (hi << 16);
    }
}

/// `dst[i] = bf16(src[i] + bias[i])`, or with `gelu` of GELU of that to bf16 precision
/// (`kernels::simd::gelu_bf16`), 16 values per step: a product's bias, activation and rounding
/// for the next product in one pass.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`supported`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn bias_row_to_bf16(src: &[f32], bias: &[f32], gelu: bool, dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let n = src.len();
    assert!(bias.len() == n && dst.len() == n, "row sizes");
    let full = n / 16 * 16;
    let (one, c1, c3) = (
        _mm512_set1_ps(1.0),
        _mm512_set1_ps(-1.595_769),
        _mm512_set1_ps(-1.595_769 * 0.044_715),
    );
    let mut i = 0;
    while i < full {
        let x = _mm512_add_ps(
            _mm512_loadu_ps(src.as_ptr().add(i)),
            _mm512_loadu_ps(bias.as_ptr().add(i)),
        );
        let y = if gelu {
            super::simd::gelu16_bf16(x, one, c1, c3)
        } else {
            x
        };
        let packed: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(y));
        _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, packed);
        i += 16;
    }
    for j in full..n {
        let x = src[j] + bias[j];
        let y = if gelu {
            0.5 * x * (1.0 + super::erf(x * std::f32::consts::FRAC_1_SQRT_2))
        } else {
            x
        };
        dst[j] = to_bf16(y);
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn bias_row_to_bf16(_: &[f32], _: &[f32], _: bool, _: &mut [u16]) {
    unreachable!("bf16 kernels are x86_64 only")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn convert_row(_: &[f32], _: &mut [u32]) {
    unreachable!("bf16 kernels are x86_64 only")
}

/// `out[rows × n] = activation(a · wᵀ + bias)` for `rows` rows of bf16 pairs `a`.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`supported`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn block(
    a: &[u32],
    rows: usize,
    row_pairs: usize,
    w: &PackedBf16,
    bias: &[f32],
    activation: Option<Activation>,
    out: &mut [f32],
) {
    let n = w.n;
    let panels = n.div_ceil(NR);
    let mut tile = [0f32; MR * NR];
    for p in 0..panels {
        let panel = &w.data[p * w.k_pairs * NR..(p + 1) * w.k_pairs * NR];
        let cols = NR.min(n - p * NR);
        let mut r = 0;
        while r < rows {
            let mr = MR.min(rows - r);
            let rest = &a[r * row_pairs..];
            match mr {
                8 => micro::<8>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                7 => micro::<7>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                6 => micro::<6>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                5 => micro::<5>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                4 => micro::<4>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                3 => micro::<3>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                2 => micro::<2>(rest, row_pairs, panel, w.k_pairs, &mut tile),
                _ => micro::<1>(rest, row_pairs, panel, w.k_pairs, &mut tile),
            }
            let bias = &bias[p * NR..p * NR + cols];
            for i in 0..mr {
                let dst = &mut out[(r + i) * n + p * NR..(r + i) * n + p * NR + cols];
                for ((d, t), b) in dst.iter_mut().zip(&tile[i * NR..i * NR + cols]).zip(bias) {
                    *d = t + b;
                }
                if let Some(activation) = activation {
                    super::activate_row_bf16(dst, activation);
                }
            }
            r += mr;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn block(
    _: &[u32],
    _: usize,
    _: usize,
    _: &PackedBf16,
    _: &[f32],
    _: Option<Activation>,
    _: &mut [f32],
) {
    unreachable!("bf16 kernels are x86_64 only")
}

/// `tile[R × 32] = a[R rows] · panel` over all `k_pairs`; `R` is a constant so the 2R
/// accumulators stay in registers.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`supported`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
unsafe fn micro<const R: usize>(
    a: &[u32],
    row_pairs: usize,
    panel: &[u32],
    k_pairs: usize,
    tile: &mut [f32],
) {
    use std::arch::x86_64::*;
    // The loads below read `a` and `panel` through pointers, within these lengths.
    assert!(
        a.len() >= (R - 1) * row_pairs + k_pairs
            && panel.len() >= k_pairs * NR
            && tile.len() >= R * NR
    );
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let ap = a.as_ptr();
    let bp = panel.as_ptr();
    for kp in 0..k_pairs {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(kp * NR) as *const _));
        let b1: __m512bh =
            std::mem::transmute(_mm512_loadu_si512(bp.add(kp * NR + 16) as *const _));
        for (i, row) in acc.iter_mut().enumerate() {
            let pair = *ap.add(i * row_pairs + kp);
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
            row[0] = _mm512_dpbf16_ps(row[0], av, b0);
            row[1] = _mm512_dpbf16_ps(row[1], av, b1);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
        _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + 16), row[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2654435761).wrapping_add(seed);
                ((x >> 8) % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_f32_within_bf16_rounding() {
        if !supported() {
            eprintln!("no AVX512_BF16 here (or MOSAIC_CPU=generic): skipped");
            return;
        }
        // Odd sizes: partial row blocks, a partial panel and an odd k.
        for (t, n, k) in [(1, 1, 1), (13, 45, 37), (70, 384, 384), (129, 33, 1536)] {
            let x = data(t * k, 1);
            let w = data(n * k, 2);
            let packed = PackedBf16::pack(&w, n, k);
            let mut out = vec![0f32; t * n];
            matmul(&x, t, &packed, &vec![0.0; n], None, &mut out);
            for i in 0..t {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                        .sum();
                    // bf16 keeps 8 bits of mantissa: error grows like sqrt(k) * 2^-8.
                    let tol = 4e-3 * (k as f64).sqrt() + 1e-6;
                    assert!(
                        (out[i * n + j] as f64 - exact).abs() < tol,
                        "t={t} n={n} k={k} [{i},{j}]: {} vs {exact}",
                        out[i * n + j]
                    );
                }
            }
        }
    }
}
