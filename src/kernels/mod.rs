//! CPU kernels every model shares (the text encoder's hot path, CNN14's convolutions), on
//! packed tokens (the real tokens of every sequence in a batch, one after another, no
//! padding): matrix products through the fastest GEMM this machine has, attention per
//! sequence and head without padded copies or masks, and fused row kernels (bias, residual +
//! layer norm, GELU, softmax) parallel over rows. The AVX-512 fused attention is in
//! [`mod@attention`], the bf16 products in [`bf16`]. All of Mosaic's `unsafe` kernel code lives
//! in this module, so its soundness can be checked in one place.
//!
//! GEMM: BLAS libraries are loaded at run time when present ([`blas`]: OpenBLAS, MKL), so no
//! build depends on one; otherwise the pure-Rust `gemm` crate (the one behind candle's CPU
//! matmul) is used. `MOSAIC_BLAS=off` forces the pure-Rust path. A model's linear layers run on
//! the [`path::ProductPath`] it chose at load (f32 on a library, bf16 on Mosaic's kernel or on
//! MKL).

pub mod attention;
pub mod bf16;
pub mod blas;
pub mod path;

use std::marker::PhantomData;
use std::sync::OnceLock;

use rayon::prelude::*;

/// Runs `body` compiled for AVX-512 (or AVX2 + FMA) when the CPU has it: the row kernels are
/// plain loops written to vectorise, and this gives the compiler the wide registers the
/// generic x86-64 target lacks.
macro_rules! wide {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            let simd = $crate::kernels::simd_allowed();
            if simd && $crate::kernels::avx512_rows_detected() {
                // SAFETY: `avx512_rows_detected` found every feature `with_avx512_rows` enables.
                unsafe { $crate::kernels::with_avx512_rows(|| $body) }
            } else if simd && $crate::kernels::avx2_rows_detected() {
                // SAFETY: `avx2_rows_detected` found every feature `with_avx2_rows` enables.
                unsafe { $crate::kernels::with_avx2_rows(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

// After `wide!`, which it uses.
pub mod conv;

/// Whether this CPU has every feature [`with_avx512_rows`] is compiled for.
#[cfg(target_arch = "x86_64")]
fn avx512_rows_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("fma")
}

/// Runs `f` (inlined here) compiled for AVX-512.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`avx512_rows_detected`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,fma")]
unsafe fn with_avx512_rows<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether this CPU has every feature [`with_avx2_rows`] is compiled for.
#[cfg(target_arch = "x86_64")]
fn avx2_rows_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Runs `f` (inlined here) compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must have every feature enabled here: check [`avx2_rows_detected`] first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2_rows<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether the CPU-specific kernels (AVX-512 / AVX2 row kernels, fused attention, bf16
/// products) may be used. `MOSAIC_CPU=generic` turns them off so the portable code paths can be
/// run and tested on any machine; they are what a CPU without those features runs.
pub fn simd_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| {
        let generic = std::env::var("MOSAIC_CPU").is_ok_and(|v| v == "generic");
        if generic {
            tracing::info!("MOSAIC_CPU=generic: CPU-specific kernels are off, portable ones run");
        }
        !generic
    })
}

use blas::{Blas, NO_TRANS, ROW_MAJOR, TRANS};

/// The GEMM a product runs on.
#[derive(Clone, Copy)]
pub enum Gemm {
    Blas(&'static Blas),
    Rust,
}

impl From<Option<&'static Blas>> for Gemm {
    fn from(library: Option<&'static Blas>) -> Self {
        library.map_or(Gemm::Rust, Gemm::Blas)
    }
}

impl Gemm {
    pub fn name(&self) -> &str {
        match self {
            Gemm::Blas(blas) => blas.name(),
            Gemm::Rust => "gemm (pure Rust)",
        }
    }
}

/// The GEMM f32 products use unless a model's path picks another ([`blas::default_library`]).
pub fn gemm() -> Gemm {
    Gemm::from(blas::default_library())
}

/// A destination pointer handed to rayon's threads, each writing rows of its own.
struct SendPtr(*mut f32);
// SAFETY: every thread given a `SendPtr` writes a disjoint set of rows (see its uses).
unsafe impl Sync for SendPtr {}

/// Where a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Large products: the BLAS library when loaded (it threads itself), else the pure-Rust
    /// kernel on all of rayon's threads.
    Threaded,
    /// Small products issued side by side from rayon's workers: the pure-Rust kernel on the
    /// calling thread, so no BLAS thread pool is woken per call.
    OnThisThread,
}

/// Elements a row-major `rows × cols` matrix with leading dimension `ld` spans in its buffer:
/// `(rows - 1)·ld + cols`, none when it is empty. Panics where that overflows.
fn extent(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        return 0;
    }
    (rows - 1)
        .checked_mul(ld)
        .and_then(|e| e.checked_add(cols))
        .expect("matrix extent overflows usize")
}

/// The dimensions `[m, n, k, lda, ldb, ldc]` of a row-major CBLAS product `c[m×n] = a[m×k] ·
/// b` (`b` is `[k×n]`, or `[n×k]` read transposed) as CBLAS's `int`s, or `None` where BLAS
/// cannot take them: a value past `i32::MAX`, or a leading dimension shorter than its row
/// (CBLAS rejects that and leaves `c` unwritten). The caller then takes the pure-Rust GEMM.
#[allow(clippy::too_many_arguments)]
fn blas_dims(
    transpose_b: bool,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
) -> Option<[i32; 6]> {
    let row_b = if transpose_b { k } else { n };
    if lda < k.max(1) || ldb < row_b.max(1) || ldc < n.max(1) {
        return None;
    }
    let int = |v: usize| i32::try_from(v).ok();
    Some([int(m)?, int(n)?, int(k)?, int(lda)?, int(ldb)?, int(ldc)?])
}

/// Row-major `c[m×n] = a[m×k] · b` (or `c += a · b` when `accumulate`) where `b` is `[k×n]`
/// (or `[n×k]` read transposed), with leading dimensions.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    gemm: Gemm,
    route: Route,
    accumulate: bool,
    transpose_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(c.len() >= extent(m, n, ldc), "dst too short");
    assert!(m <= 1 || n == 0 || ldc >= n, "dst rows overlap (ldc < n)");
    // SAFETY: `c` is exclusively borrowed and covers every element `i·ldc + j` (i < m, j < n)
    // the product writes (checked above), and those are distinct: rows are `ldc ≥ n` apart.
    unsafe {
        sgemm_into(
            gemm,
            route,
            accumulate,
            transpose_b,
            m,
            n,
            k,
            a,
            lda,
            b,
            ldb,
            c.as_mut_ptr(),
            ldc,
        )
    }
}

/// [`sgemm`] into a destination given by pointer, for destinations no slice can describe
/// without covering elements that belong to others (attention's per-head column blocks).
///
/// # Safety
/// `c` must be valid for reads and writes at `i·ldc + j` for every `i < m` and `j < n`, those
/// elements must be distinct (`ldc ≥ n` where `m > 1`), and nothing else may access them
/// during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_into(
    gemm: Gemm,
    route: Route,
    accumulate: bool,
    transpose_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= extent(m, k, lda), "lhs too short");
    let (rows_b, cols_b) = if transpose_b { (n, k) } else { (k, n) };
    assert!(b.len() >= extent(rows_b, cols_b, ldb), "rhs too short");
    if let (Route::Threaded, Gemm::Blas(blas)) = (route, gemm) {
        match blas_dims(transpose_b, m, n, k, lda, ldb, ldc) {
            Some([mi, ni, ki, ldai, ldbi, ldci]) => {
                let sgemm = blas.sgemm;
                let call = |rows: i32, a: *const f32, c: *mut f32| {
                    // SAFETY: `a` and `b` cover every element the call reads (checked above;
                    // a row block reads a subset), the caller vouches for `c`'s rows, and
                    // `blas_dims` checked that every dimension fits CBLAS's `int` and every
                    // leading dimension spans its row.
                    unsafe {
                        sgemm(
                            ROW_MAJOR,
                            NO_TRANS,
                            if transpose_b { TRANS } else { NO_TRANS },
                            rows,
                            ni,
                            ki,
                            1.0,
                            a,
                            ldai,
                            b.as_ptr(),
                            ldbi,
                            if accumulate { 1.0 } else { 0.0 },
                            c,
                            ldci,
                        )
                    }
                };
                let threads = rayon::current_num_threads();
                if blas.sequential && threads > 1 && m >= 2 * 16 {
                    // The library runs each call on one thread: rows go to rayon's threads in
                    // blocks, each block's rows of `c` written by one call only.
                    let block = m.div_ceil(threads).next_multiple_of(16);
                    let c = SendPtr(c);
                    (0..m.div_ceil(block)).into_par_iter().for_each(|i| {
                        let start = i * block;
                        let rows = block.min(m - start);
                        let c = &c;
                        // `start < m` and the block's rows lie inside `c` and `a` (the caller
                        // vouches for rows `< m` of `c`; `a` was checked above).
                        call(
                            rows as i32,
                            a[start * lda..].as_ptr(),
                            c.0.wrapping_add(start * ldc),
                        );
                    });
                } else {
                    call(mi, a.as_ptr(), c);
                }
                return;
            }
            None => tracing::debug!(
                "a {m}×{k}·{k}×{n} product (leading dimensions {lda}, {ldb}, {ldc}) is past what \
                 CBLAS takes: it runs on the pure-Rust GEMM"
            ),
        }
    }
    let (rhs_cs, rhs_rs) = if transpose_b {
        (ldb as isize, 1)
    } else {
        (1, ldb as isize)
    };
    let parallelism = match route {
        Route::Threaded => gemm::Parallelism::Rayon(rayon::current_num_threads()),
        Route::OnThisThread => gemm::Parallelism::None,
    };
    // SAFETY: the strides describe row-major storage inside `a` and `b` (checked above), and
    // the caller vouches for every element of `c` the product writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]`, row-major with leading dimensions, on the threaded GEMM
/// (BLAS when loaded). Accumulates onto `c` when `accumulate`, else overwrites it.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    accumulate: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm(
        gemm(),
        Route::Threaded,
        accumulate,
        false,
        m,
        n,
        k,
        a,
        lda,
        b,
        ldb,
        c,
        ldc,
    );
}

/// `out[t×n] = activation(x[t×k] · w[n×k]ᵀ + bias)` on `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn linear_activate(
    gemm: Gemm,
    x: &[f32],
    t: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    activation: Option<Activation>,
    out: &mut [f32],
) {
    let n = bias.len();
    assert_eq!(out.len(), t * n, "output size");
    // The bias goes in first and the product is accumulated onto it: one pass over the
    // output fewer than zeroing (which BLAS does for beta = 0) and adding it after.
    let rows_per_task = (16_384 / n).max(1);
    out.par_chunks_mut(n * rows_per_task).for_each(|rows| {
        for row in rows.chunks_mut(n) {
            row.copy_from_slice(bias);
        }
    });
    sgemm(
        gemm,
        Route::Threaded,
        true,
        true,
        t,
        n,
        k,
        x,
        k,
        w,
        k,
        out,
        n,
    );
    if let Some(activation) = activation {
        out.par_chunks_mut(n * rows_per_task)
            .for_each(|rows| wide!(activate_row(rows, activation)));
    }
}

/// `x = layer_norm(x + residual) · gamma + beta`, row by row.
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    let rows_per_task = (16_384 / n).max(1);
    x.par_chunks_mut(n * rows_per_task)
        .zip(residual.par_chunks(n * rows_per_task))
        .flat_map_iter(|(rows, res)| rows.chunks_mut(n).zip(res.chunks(n)))
        .for_each(|(row, res)| wide!(norm_row(row, Some(res), None, gamma, beta, eps)));
}

/// The sum of a row, in 16 lanes so the loop vectorises (float addition does not reassociate).
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// One row of [`add_layer_norm`], with the bias of the product before it where that product
/// left it out.
#[inline(always)]
fn norm_row(
    row: &mut [f32],
    res: Option<&[f32]>,
    bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = row.len();
    match (res, bias) {
        (Some(res), Some(bias)) => {
            for ((v, r), b) in row.iter_mut().zip(res).zip(bias) {
                *v += r + b;
            }
        }
        (Some(add), None) | (None, Some(add)) => {
            for (v, r) in row.iter_mut().zip(add) {
                *v += r;
            }
        }
        (None, None) => {}
    }
    let mean = lane_sum(row, |v| v) / n as f32;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Layer norm without a residual.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    x.par_chunks_mut(n * (16_384 / n).max(1))
        .flat_map_iter(|rows| rows.chunks_mut(n))
        .for_each(|row| wide!(norm_row(row, None, None, gamma, beta, eps)));
}

/// Row passes of the bf16 data flow of the `bf16-mkl` path (`crate::embed::encoder`), run by
/// the calling thread over one block of rows while it is in cache: each adds the bias its
/// product left out and writes the bf16 rows the next product reads.
///
/// `x = layer_norm(x + bias + residual) · gamma + beta`, and with `x16` the result rounded to
/// bf16 there as well.
#[allow(clippy::too_many_arguments)]
pub fn bias_add_layer_norm_rows(
    x: &mut [f32],
    bias: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    mut x16: Option<&mut [u16]>,
) {
    let n = gamma.len();
    assert!(
        bias.len() == n && residual.len() == x.len() && x.len().is_multiple_of(n),
        "row sizes"
    );
    if let Some(x16) = &x16 {
        assert_eq!(x16.len(), x.len(), "bf16 rows");
    }
    for (i, (row, res)) in x
        .chunks_exact_mut(n)
        .zip(residual.chunks_exact(n))
        .enumerate()
    {
        wide!(norm_row(row, Some(res), Some(bias), gamma, beta, eps));
        if let Some(x16) = x16.as_deref_mut() {
            path::to_bf16_rows(row, &mut x16[i * n..(i + 1) * n]);
        }
    }
}

/// `dst = bf16(activation(src + bias))`, row by row, on the calling thread (one of the row
/// passes of [`bias_add_layer_norm_rows`]); GELU to bf16 precision as
/// [`activate_row_bf16`]. In one pass where the CPU has AVX512_BF16 (`src` unchanged),
/// else through `src`.
pub fn bias_activate_rows_bf16(
    src: &mut [f32],
    bias: &[f32],
    activation: Option<Activation>,
    dst: &mut [u16],
) {
    let n = bias.len();
    assert!(
        src.len() == dst.len() && src.len().is_multiple_of(n),
        "row sizes"
    );
    let gelu = matches!(activation, Some(Activation::GeluErf));
    if bf16::supported() && (activation.is_none() || gelu) {
        for (row, out) in src.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
            // SAFETY: `bf16::supported()` checked every feature `bias_row_to_bf16` enables;
            // it reads `row` and `bias` and writes `out`, all `n` long.
            unsafe { bf16::bias_row_to_bf16(row, bias, gelu, out) };
        }
        return;
    }
    for (row, out) in src.chunks_exact_mut(n).zip(dst.chunks_exact_mut(n)) {
        wide!(for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        });
        if let Some(activation) = activation {
            activate_row_bf16(row, activation);
        }
        path::to_bf16_rows(row, out);
    }
}

/// Activation functions of BERT-family models, in place.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
    /// `x · σ(1.702 x)`: OpenAI CLIP's `quick_gelu`.
    QuickGelu,
}

/// `activation` over the output of a bf16 product path: as [`activate_row`], but GELU to bf16
/// precision ([`simd::gelu_bf16`]) where the CPU has AVX-512.
#[inline(always)]
pub fn activate_row_bf16(chunk: &mut [f32], activation: Activation) {
    #[cfg(target_arch = "x86_64")]
    if matches!(activation, Activation::GeluErf) && simd::available() {
        // SAFETY: `simd::available` checked AVX-512F, all `gelu_bf16` enables.
        unsafe { simd::gelu_bf16(chunk) };
        return;
    }
    activate_row(chunk, activation)
}

/// `activation` over a slice, in place (AVX-512 GELU where the CPU has it).
#[inline(always)]
pub fn activate_row(chunk: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => {
            #[cfg(target_arch = "x86_64")]
            if simd::available() {
                // SAFETY: `simd::available` checked AVX-512F, all `gelu_erf` enables.
                unsafe { simd::gelu_erf(chunk) };
                return;
            }
            for v in chunk.iter_mut() {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            for v in chunk {
                let x = *v;
                *v = 0.5
                    * x
                    * (1.0
                        + ((2.0f32 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x))
                            .tanh());
            }
        }
        Activation::Relu => {
            for v in chunk {
                *v = v.max(0.0);
            }
        }
        Activation::QuickGelu => {
            for v in chunk {
                *v /= 1.0 + exp(-1.702 * *v);
            }
        }
    }
}

/// e^x for f32, branch-free: Cody-Waite reduction to `r ∈ [-ln2/2, ln2/2]`, a degree-6
/// polynomial, and the power of two put in the exponent bits. Relative error below 5e-7 on
/// [-87, 88]; inputs below -87 give about 1.6e-38, above 88 saturate.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick; the integer is then in
    // the low mantissa bits of `t`, so no float-to-int conversion is needed.
    let shifter = 12_582_912.0f32;
    let t = x.mul_add(std::f32::consts::LOG2_E, shifter);
    let n = t - shifter;
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67 + r * (0.041_666_67 + r * (0.008_333_34 + r * 0.001_388_89)))));
    let k = t.to_bits().wrapping_sub(shifter.to_bits()) as i32;
    p * f32::from_bits(((k + 127) << 23) as u32)
}

/// The same `exp` and GELU written with AVX-512 intrinsics, 16 lanes at a time (the
/// compiler does not vectorise the scalar forms on its own). Every function here is compiled
/// for AVX-512F alone (as are the f32 kernels of [`super::attention`](mod@super::attention)):
/// [`avx512f_detected`] is their check.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    /// Whether the functions below may run: CPU-specific kernels allowed and AVX-512F present.
    pub fn available() -> bool {
        super::simd_allowed() && avx512f_detected()
    }

    /// Whether this CPU has AVX-512F, the one feature the functions below enable.
    pub fn avx512f_detected() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let shifter = _mm512_set1_ps(12_582_912.0);
        let t = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), shifter);
        let n = _mm512_sub_ps(t, shifter);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693_145_75), x);
        let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(0.001_388_89);
        for c in [0.008_333_34, 0.041_666_67, 0.166_666_67, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let k = _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(12_582_912.0f32.to_bits() as i32),
        );
        let pow2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(k, _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(pow2))
    }

    /// `row[i] = exp(row[i] - m)`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_minus(row: &mut [f32], m: f32) {
        let full = row.len() / 16 * 16;
        let mv = _mm512_set1_ps(m);
        let p = row.as_mut_ptr();
        let mut i = 0;
        while i < full {
            let x = _mm512_loadu_ps(p.add(i));
            _mm512_storeu_ps(p.add(i), exp16(_mm512_sub_ps(x, mv)));
            i += 16;
        }
        for v in &mut row[full..] {
            *v = super::exp(*v - m);
        }
    }

    /// GELU to the precision of a bf16 product path, whose next product rounds these values
    /// to bf16 (8 significant bits) anyway: the tanh form `x·σ(1.5957691·(x + 0.044715·x³))`
    /// with a 14-bit reciprocal, no division. Within 5e-4 of the erf form (tested), far below
    /// bf16's rounding of values that size.
    ///
    /// # Safety
    /// The CPU must have AVX-512F ([`avx512f_detected`]).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_bf16(row: &mut [f32]) {
        let full = row.len() / 16 * 16;
        let p = row.as_mut_ptr();
        let one = _mm512_set1_ps(1.0);
        let c1 = _mm512_set1_ps(-1.595_769);
        let c3 = _mm512_set1_ps(-1.595_769 * 0.044_715);
        let mut i = 0;
        while i < full {
            let x = _mm512_loadu_ps(p.add(i));
            _mm512_storeu_ps(p.add(i), gelu16_bf16(x, one, c1, c3));
            i += 16;
        }
        for v in &mut row[full..] {
            *v = 0.5 * *v * (1.0 + super::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }

    /// 16 lanes of [`gelu_bf16`], given its constants `1`, `-1.5957691` and
    /// `-1.5957691·0.044715`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn gelu16_bf16(x: __m512, one: __m512, c1: __m512, c3: __m512) -> __m512 {
        // -z = -1.5957691·x·(1 + 0.044715·x²)
        let minus_z = _mm512_mul_ps(x, _mm512_fmadd_ps(c3, _mm512_mul_ps(x, x), c1));
        let d = _mm512_add_ps(one, exp16(minus_z));
        _mm512_mul_ps(x, _mm512_rcp14_ps(d))
    }

    /// GELU with erf (Abramowitz & Stegun 7.1.26), in place.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_erf(row: &mut [f32]) {
        let full = row.len() / 16 * 16;
        let p = row.as_mut_ptr();
        let sign_mask = _mm512_set1_epi32(i32::MIN);
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i < full {
            let x = _mm512_loadu_ps(p.add(i));
            let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
            let zi = _mm512_castps_si512(z);
            let sign = _mm512_and_si512(zi, sign_mask);
            let a = _mm512_castsi512_ps(_mm512_andnot_si512(sign_mask, zi));
            let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, one));
            let mut poly = _mm512_set1_ps(1.061_405_4);
            for c in [-1.453_152_1, 1.421_413_7, -0.284_496_74, 0.254_829_6] {
                poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
            }
            poly = _mm512_mul_ps(poly, t);
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
            let erf_abs = _mm512_fnmadd_ps(poly, e, one);
            let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
            let y = _mm512_mul_ps(
                _mm512_mul_ps(_mm512_set1_ps(0.5), x),
                _mm512_add_ps(one, erf),
            );
            _mm512_storeu_ps(p.add(i), y);
            i += 16;
        }
        for v in &mut row[full..] {
            *v = 0.5 * *v * (1.0 + super::erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, inside f32 rounding of
/// the GELU it feeds), several times faster than a correctly rounded erff.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// One (sequence, head) block of attention's `[t × hidden]` output: rows `start..start + len`,
/// columns `head·d..(head + 1)·d`. Only [`head_blocks`] makes them, after checking that no two
/// sequences share a row, so no two blocks share an element and each block is, like a `&mut`,
/// the one handle to its elements: tasks fill their own blocks side by side. Its rows are
/// `hidden` apart with other heads' columns between them, which no slice can describe without
/// covering those, hence the pointer.
/// The fields are private so that no holder can change the shape the pointer is valid for.
pub(crate) struct HeadBlock<'a, T = f32> {
    start: usize,
    rows: usize,
    head: usize,
    cols: usize,
    stride: usize,
    /// Row `start`, column `head·cols` of the output.
    origin: *mut T,
    _out: PhantomData<&'a mut [T]>,
}

// SAFETY: a block is the only handle to its elements (see `head_blocks`), as a `&mut [T]`
// to them would be, and the output stays borrowed for the block's lifetime, so a block may
// move to another thread whenever a `&mut [T]` may.
unsafe impl<T: Send> Send for HeadBlock<'_, T> {}

impl<T> HeadBlock<'_, T> {
    /// The sequence's first row in the output.
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// The block's rows: the sequence's length.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The head: the block's columns are `head·cols..(head + 1)·cols` of the output.
    pub(crate) fn head(&self) -> usize {
        self.head
    }

    /// Columns per row: the head size.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Elements from one row of the block to the next: the output's row (`hidden`).
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// The block's first element: element `(i, c)`, `i < rows` and `c < cols`, is
    /// `i·stride + c` past it. Valid for reads and writes there, and only through this block.
    pub(crate) fn origin(&mut self) -> *mut T {
        self.origin
    }
}

/// Splits attention's output `out` (rows of `hidden`) into one [`HeadBlock`] per (sequence,
/// head) of `spans` (`(first row, length)`; empty sequences get none), in order. Panics unless
/// every sequence lies inside `out` and no two share a row: what makes the blocks disjoint.
pub(crate) fn head_blocks<'a, T>(
    out: &'a mut [T],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
) -> Vec<HeadBlock<'a, T>> {
    assert!(
        hidden > 0 && heads > 0,
        "attention needs a hidden size and heads"
    );
    let d = hidden / heads;
    let rows = out.len() / hidden;
    let mut sorted: Vec<(usize, usize)> = spans.iter().copied().filter(|s| s.1 > 0).collect();
    sorted.sort_unstable();
    let mut end = 0;
    for &(start, len) in &sorted {
        assert!(
            start >= end,
            "sequences overlap: one starts at row {start} before another ends at {end}"
        );
        end = start
            .checked_add(len)
            .filter(|&end| end <= rows)
            .expect("sequence outside the output");
    }
    let base = out.as_mut_ptr();
    spans
        .iter()
        .filter(|s| s.1 > 0)
        .flat_map(|&(start, len)| {
            (0..heads).map(move |head| HeadBlock {
                start,
                rows: len,
                head,
                cols: d,
                stride: hidden,
                // SAFETY: `start + len ≤ rows` (checked above) and `(head + 1)·d ≤ hidden`, so
                // the block's first element, and its last, `(start + len - 1)·hidden + (head +
                // 1)·d - 1`, lie inside `out`.
                origin: unsafe { base.add(start * hidden + head * d) },
                _out: PhantomData,
            })
        })
        .collect()
}

/// `row = softmax(row · scale)`.
#[inline(always)]
fn softmax_row(row: &mut [f32], scale: f32) {
    // Reductions in 16 lanes: a single running max or sum is a serial chain the compiler
    // does not vectorise (float addition does not reassociate).
    let mut lanes = [f32::NEG_INFINITY; 16];
    for (i, s) in row.iter_mut().enumerate() {
        *s *= scale;
        let lane = &mut lanes[i % 16];
        *lane = if *s > *lane { *s } else { *lane };
    }
    let max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    #[cfg(target_arch = "x86_64")]
    let done = if simd::available() {
        // SAFETY: `simd::available` checked AVX-512F, all `exp_minus` enables.
        unsafe { simd::exp_minus(row, max) };
        true
    } else {
        false
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = false;
    if !done {
        for s in row.iter_mut() {
            *s = exp(*s - max);
        }
    }
    let mut sums = [0f32; 16];
    for (i, s) in row.iter().enumerate() {
        sums[i % 16] += *s;
    }
    let sum: f32 = sums.iter().sum();
    let inv = 1.0 / sum;
    for s in row.iter_mut() {
        *s *= inv;
    }
}

/// Multi-head self-attention over packed sequences. `qkv` is `[t × 3h]` (queries, keys,
/// values side by side), `spans` are `(first row, length)` of each sequence; writes the
/// context `[t × h]` into `out`. Each (sequence, head) is independent: only real tokens take
/// part, so there is no mask and no padding. Panics unless the sequences lie inside `out` and
/// no two share a row.
pub fn attention(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    out: &mut [f32],
) {
    attention_masked(qkv, hidden, heads, spans, false, out)
}

/// [`attention`], optionally causal: with `causal`, token `i` attends to tokens `0..=i` of its
/// sequence only (CLIP's text tower).
pub fn attention_masked(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    causal: bool,
    out: &mut [f32],
) {
    let d = hidden / heads;
    let stride = 3 * hidden;
    let scale = 1.0 / (d as f32).sqrt();
    let blocks = head_blocks(out, hidden, heads, spans);
    blocks.into_par_iter().for_each(|mut block| {
        let (start, len, h) = (block.start(), block.rows(), block.head());
        let q = &qkv[start * stride + h * d..];
        let k = &qkv[start * stride + hidden + h * d..];
        let v = &qkv[start * stride + 2 * hidden + h * d..];
        let mut scores = vec![0f32; len * len];
        sgemm(
            Gemm::Rust,
            Route::OnThisThread,
            false,
            true,
            len,
            len,
            d,
            q,
            stride,
            k,
            stride,
            &mut scores,
            len,
        );
        for (i, row) in scores.chunks_mut(len).enumerate() {
            if causal {
                let (seen, unseen) = row.split_at_mut(i + 1);
                wide!(softmax_row(seen, scale));
                unseen.fill(0.0);
            } else {
                wide!(softmax_row(row, scale));
            }
        }
        // The context goes straight into this task's block: `len` rows of `d`, `hidden` apart.
        assert!(
            block.rows() == len && block.cols() == d && block.stride() == hidden && d <= hidden
        );
        // SAFETY: the product writes element (i, c), i < len and c < d, at i·hidden + c past
        // the block's origin: exactly the block's elements (asserted above), distinct as
        // d ≤ hidden, and no other task's (`head_blocks`).
        unsafe {
            sgemm_into(
                Gemm::Rust,
                Route::OnThisThread,
                false,
                false,
                len,
                d,
                len,
                &scores,
                len,
                v,
                stride,
                block.origin(),
                hidden,
            )
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b_t: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b_t[j * k + p]).sum();
            }
        }
        c
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32
                    / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_matches_a_naive_product() {
        let (t, k, n) = (7, 33, 19);
        let x = data(t * k, 1);
        let w = data(n * k, 2);
        let bias = data(n, 3);
        let mut out = vec![0f32; t * n];
        linear_activate(gemm(), &x, t, k, &w, &bias, None, &mut out);
        let want = naive(&x, &w, t, n, k);
        for i in 0..t {
            for j in 0..n {
                assert!((out[i * n + j] - want[i * n + j] - bias[j]).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn pure_rust_products_overwrite_or_accumulate() {
        // The route the encoder takes without a BLAS library (and for attention's products).
        let (m, k, n) = (5, 17, 11);
        let a = data(m * k, 7);
        let b_t = data(n * k, 8);
        let want = naive(&a, &b_t, m, n, k);
        for accumulate in [false, true] {
            let mut c = vec![1.0f32; m * n];
            sgemm(
                Gemm::Rust,
                Route::OnThisThread,
                accumulate,
                true,
                m,
                n,
                k,
                &a,
                k,
                &b_t,
                k,
                &mut c,
                n,
            );
            let base = if accumulate { 1.0 } else { 0.0 };
            for (got, want) in c.iter().zip(&want) {
                assert!((got - want - base).abs() < 1e-4, "accumulate {accumulate}");
            }
        }
    }

    /// Softmax(q kᵀ / √d) v in f64, one (sequence, head) at a time; rows outside `spans` 0.
    pub(super) fn reference_attention(
        qkv: &[f32],
        hidden: usize,
        heads: usize,
        spans: &[(usize, usize)],
    ) -> Vec<f64> {
        reference_attention_masked(qkv, hidden, heads, spans, false)
    }

    /// [`reference_attention`], causal when asked: query `i` sees keys `0..=i`.
    fn reference_attention_masked(
        qkv: &[f32],
        hidden: usize,
        heads: usize,
        spans: &[(usize, usize)],
        causal: bool,
    ) -> Vec<f64> {
        let d = hidden / heads;
        let stride = 3 * hidden;
        let rows = spans.iter().map(|s| s.0 + s.1).max().unwrap_or(0);
        let mut out = vec![0f64; rows * hidden];
        for &(start, len) in spans {
            for h in 0..heads {
                for i in 0..len {
                    let q = &qkv[(start + i) * stride + h * d..][..d];
                    let seen = if causal { i + 1 } else { len };
                    let s: Vec<f64> = (0..seen)
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
    fn general_attention_matches_a_reference_on_odd_spans() {
        // Spans out of order, odd lengths, an empty one, and head sizes that are not a multiple
        // of 16 (what the fused path leaves to this one).
        for (hidden, heads) in [(60, 3), (42, 7), (64, 4)] {
            let spans = [(10, 33), (0, 1), (43, 0), (1, 9), (43, 70)];
            let total = 113;
            let qkv = data(total * 3 * hidden, hidden as u32);
            let mut out = vec![f32::NAN; total * hidden];
            attention(&qkv, hidden, heads, &spans, &mut out);
            let want = reference_attention(&qkv, hidden, heads, &spans);
            for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
                    "hidden {hidden} heads {heads} element {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn causal_attention_sees_only_earlier_tokens() {
        let (hidden, heads) = (32, 4);
        let spans = [(0, 7), (7, 1), (8, 20)];
        let qkv = data(28 * 3 * hidden, 5);
        let mut out = vec![f32::NAN; 28 * hidden];
        attention_masked(&qkv, hidden, heads, &spans, true, &mut out);
        let want = reference_attention_masked(&qkv, hidden, heads, &spans, true);
        let full = reference_attention(&qkv, hidden, heads, &spans);
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() < 1e-4 * w.abs().max(1.0),
                "{i}: {g} vs {w}"
            );
        }
        // The last token of a sequence sees everything; earlier ones do not.
        let row = |r: usize| &out[r * hidden..(r + 1) * hidden];
        assert!(row(6)
            .iter()
            .zip(&full[6 * hidden..])
            .all(|(g, w)| (*g as f64 - w).abs() < 1e-4));
        assert!(row(0)
            .iter()
            .zip(&full[..hidden])
            .any(|(g, w)| (*g as f64 - w).abs() > 1e-3));
    }

    #[test]
    fn head_blocks_cover_each_element_once() {
        let (hidden, heads) = (12, 3);
        let spans = [(4, 3), (0, 4), (7, 0), (7, 2)];
        let mut out = vec![0f32; 10 * hidden];
        let mut blocks = head_blocks(&mut out, hidden, heads, &spans);
        assert_eq!(blocks.len(), 3 * heads);
        for (id, block) in blocks.iter_mut().enumerate() {
            let (len, cols, stride) = (block.rows(), block.cols(), block.stride());
            let origin = block.origin();
            for i in 0..len {
                for c in 0..cols {
                    // SAFETY: (i, c) is inside the block (`HeadBlock::origin`), and the blocks
                    // are used one at a time here.
                    unsafe { *origin.add(i * stride + c) += 1.0 + id as f32 };
                }
            }
        }
        drop(blocks);
        // Rows 0..9 are covered, each element by exactly one block (a second write would show
        // as a sum of two ids); row 9 by none.
        for (r, row) in out.chunks(hidden).enumerate() {
            for (c, v) in row.iter().enumerate() {
                let want = match r {
                    0..4 => 1 + 3 + c / 4,
                    4..7 => 1 + c / 4,
                    7..9 => 1 + 6 + c / 4,
                    _ => 0,
                };
                assert_eq!(*v, want as f32, "row {r} column {c}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "sequences overlap")]
    fn overlapping_sequences_are_refused() {
        let hidden = 8;
        let qkv = data(10 * 3 * hidden, 5);
        let mut out = vec![0f32; 10 * hidden];
        attention(&qkv, hidden, 2, &[(0, 5), (4, 3)], &mut out);
    }

    #[test]
    #[should_panic(expected = "sequences overlap")]
    fn repeated_sequences_are_refused() {
        let mut out = vec![0f32; 10 * 8];
        head_blocks(&mut out, 8, 2, &[(2, 3), (0, 1), (2, 3)]);
    }

    #[test]
    #[should_panic(expected = "sequence outside the output")]
    fn sequences_past_the_output_are_refused() {
        let mut out = vec![0f32; 10 * 8];
        head_blocks(&mut out, 8, 2, &[(0, 4), (4, 7)]);
    }

    #[test]
    #[should_panic(expected = "sequence outside the output")]
    fn sequences_whose_end_overflows_are_refused() {
        let mut out = vec![0f32; 10 * 8];
        head_blocks(&mut out, 8, 2, &[(usize::MAX, 2)]);
    }

    #[test]
    #[should_panic(expected = "dst rows overlap")]
    fn products_into_overlapping_rows_are_refused() {
        let (m, k, n) = (4, 3, 5);
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut c = vec![0f32; m * n];
        // ldc < n: row i's last columns would be row i + 1's first.
        sgemm(
            gemm(),
            Route::Threaded,
            false,
            false,
            m,
            n,
            k,
            &a,
            k,
            &b,
            n,
            &mut c,
            n - 1,
        );
    }

    #[test]
    fn blas_takes_only_dimensions_that_fit_its_int() {
        let max = i32::MAX as usize;
        let m = max as i32;
        assert_eq!(blas_dims(false, 3, 5, 7, 7, 5, 5), Some([3, 5, 7, 7, 5, 5]));
        assert_eq!(blas_dims(true, 3, 5, 7, 7, 7, 9), Some([3, 5, 7, 7, 7, 9]));
        assert_eq!(blas_dims(false, max, max, max, max, max, max), Some([m; 6]));
        // One past i32::MAX in each position (leading dimensions kept valid).
        assert_eq!(blas_dims(false, max + 1, 5, 7, 7, 5, 5), None);
        assert_eq!(blas_dims(false, 3, max + 1, 7, 7, max + 1, max + 1), None);
        assert_eq!(blas_dims(false, 3, 5, max + 1, max + 1, 5, 5), None);
        assert_eq!(blas_dims(false, 3, 5, 7, max + 1, 5, 5), None);
        assert_eq!(blas_dims(false, 3, 5, 7, 7, max + 1, 5), None);
        assert_eq!(blas_dims(false, 3, 5, 7, 7, 5, max + 1), None);
        assert_eq!(blas_dims(false, usize::MAX, 5, 7, 7, 5, 5), None);
        // Leading dimensions shorter than their rows, which CBLAS rejects.
        assert_eq!(blas_dims(false, 3, 5, 7, 6, 5, 5), None);
        assert_eq!(blas_dims(false, 3, 5, 7, 7, 4, 5), None);
        assert_eq!(blas_dims(true, 3, 5, 7, 7, 6, 5), None);
        assert_eq!(blas_dims(false, 3, 5, 7, 7, 5, 4), None);
        assert_eq!(blas_dims(false, 3, 5, 0, 0, 5, 5), None);
    }

    #[test]
    fn extents_are_checked() {
        assert_eq!(extent(0, 5, 7), 0);
        assert_eq!(extent(3, 0, 7), 0);
        assert_eq!(extent(3, 5, 7), 19);
        assert!(std::panic::catch_unwind(|| extent(usize::MAX, 2, 2)).is_err());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn feature_checks_cover_every_feature_their_kernels_enable() {
        use std::arch::is_x86_feature_detected as has;
        for (name, present) in [
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512dq", has!("avx512dq")),
            ("avx512vl", has!("avx512vl")),
            ("avx512bf16", has!("avx512bf16")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
        ] {
            eprintln!("{name}: {}", if present { "present" } else { "absent" });
        }
        // `with_avx512_rows`: avx512f,avx512bw,avx512dq,avx512vl,fma.
        assert_eq!(
            avx512_rows_detected(),
            has!("avx512f")
                && has!("avx512bw")
                && has!("avx512dq")
                && has!("avx512vl")
                && has!("fma")
        );
        // `with_avx2_rows`: avx2,fma.
        assert_eq!(avx2_rows_detected(), has!("avx2") && has!("fma"));
        // `simd::*` and the fused attention's f32 kernels: avx512f.
        assert_eq!(simd::avx512f_detected(), has!("avx512f"));
        // `bf16::*` and the fused attention's bf16 kernels: avx512f,avx512bw,avx512bf16.
        assert_eq!(
            bf16::avx512_bf16_detected(),
            has!("avx512f") && has!("avx512bw") && has!("avx512bf16")
        );
        // The `allowed` checks add only `MOSAIC_CPU`.
        assert_eq!(simd::available(), simd_allowed() && has!("avx512f"));
        assert_eq!(
            bf16::supported(),
            simd_allowed() && bf16::avx512_bf16_detected()
        );
    }

    /// The row passes of the bf16 data flow against the unfused steps: bias, then activation
    /// or residual and layer norm, then bf16 rounding. Row sizes with a partial vector; on a
    /// CPU with AVX512_BF16 this is the one-pass kernel, elsewhere the fallback.
    #[test]
    fn bf16_row_passes_match_the_unfused_steps() {
        let bf = |v: f32| half::bf16::from_f32(v).to_f32();
        for n in [16usize, 37, 384] {
            let rows = 5;
            let src = data(rows * n, 21)
                .iter()
                .map(|v| v * 4.0)
                .collect::<Vec<_>>();
            let bias = data(n, 22);
            for activation in [None, Some(Activation::GeluErf), Some(Activation::Relu)] {
                let mut fused_src = src.clone();
                let mut fused = vec![0u16; rows * n];
                bias_activate_rows_bf16(&mut fused_src, &bias, activation, &mut fused);
                for (i, &b) in fused.iter().enumerate() {
                    let x = src[i] + bias[i % n];
                    let want = match activation {
                        None => x,
                        Some(Activation::GeluErf) => {
                            0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
                        }
                        Some(_) => x.max(0.0),
                    };
                    let got = half::bf16::from_bits(b).to_f32();
                    // One bf16 step, and GELU's bf16-precision form within 5e-4.
                    assert!(
                        (got - want).abs() <= want.abs() / 128.0 + 6e-4,
                        "n {n} {activation:?} element {i}: {got} vs {want}"
                    );
                }
            }
            let residual = data(rows * n, 23);
            let (gamma, beta) = (data(n, 24), data(n, 25));
            let mut want = src.clone();
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[i % n];
            }
            add_layer_norm(&mut want, &residual, &gamma, &beta, 1e-12);
            let mut got = src.clone();
            let mut got16 = vec![0u16; rows * n];
            bias_add_layer_norm_rows(
                &mut got,
                &bias,
                &residual,
                &gamma,
                &beta,
                1e-12,
                Some(&mut got16),
            );
            for (i, ((&g, &b), &w)) in got.iter().zip(&got16).zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-5 * w.abs().max(1.0), "n {n} element {i}");
                assert_eq!(
                    half::bf16::from_bits(b).to_f32(),
                    bf(g),
                    "n {n} element {i}"
                );
            }
        }
    }

    #[test]
    fn row_kernels_match_a_scalar_reference_on_odd_sizes() {
        // Row counts that leave a partial last task (16 rows of 1000 per task, 10 of 1500).
        let (t, k, n) = (37, 29, 1000);
        let x = data(t * k, 11);
        let w = data(n * k, 12);
        let bias = data(n, 13);
        let gelu_erf = |v: f64| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
        let gelu_tanh = |v: f64| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        };
        for activation in [
            None,
            Some(Activation::GeluErf),
            Some(Activation::GeluTanh),
            Some(Activation::Relu),
            Some(Activation::QuickGelu),
        ] {
            let mut out = vec![f32::NAN; t * n];
            linear_activate(gemm(), &x, t, k, &w, &bias, activation, &mut out);
            for i in 0..t {
                for j in 0..n {
                    let z = bias[j] as f64
                        + (0..k)
                            .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                            .sum::<f64>();
                    let want = match activation {
                        None => z,
                        Some(Activation::GeluErf) => gelu_erf(z),
                        Some(Activation::GeluTanh) => gelu_tanh(z),
                        Some(Activation::Relu) => z.max(0.0),
                        Some(Activation::QuickGelu) => z / (1.0 + (-1.702 * z).exp()),
                    };
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * want.abs().max(1.0),
                        "{activation:?} [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }

        let (t, n) = (23, 1500);
        let x0 = data(t * n, 14);
        let residual = data(t * n, 15);
        let gamma = data(n, 16);
        let beta = data(n, 17);
        let reference = |x: &[f32], res: Option<&[f32]>| -> Vec<f64> {
            let mut out = Vec::with_capacity(x.len());
            for (r, row) in x.chunks(n).enumerate() {
                let row: Vec<f64> = row
                    .iter()
                    .enumerate()
                    .map(|(c, v)| *v as f64 + res.map_or(0.0, |res| res[r * n + c] as f64))
                    .collect();
                let mean = row.iter().sum::<f64>() / n as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (var + 1e-12).sqrt();
                out.extend(
                    row.iter()
                        .enumerate()
                        .map(|(c, v)| (v - mean) * inv * gamma[c] as f64 + beta[c] as f64),
                );
            }
            out
        };
        let mut x = x0.clone();
        add_layer_norm(&mut x, &residual, &gamma, &beta, 1e-12);
        for (i, (got, want)) in x.iter().zip(reference(&x0, Some(&residual))).enumerate() {
            assert!(
                (*got as f64 - want).abs() < 1e-4,
                "add_layer_norm [{i}]: {got} vs {want}"
            );
        }
        let mut x = x0.clone();
        layer_norm(&mut x, &gamma, &beta, 1e-12);
        for (i, (got, want)) in x.iter().zip(reference(&x0, None)).enumerate() {
            assert!(
                (*got as f64 - want).abs() < 1e-4,
                "layer_norm [{i}]: {got} vs {want}"
            );
        }
    }

    #[test]
    fn attention_of_one_token_returns_its_value() {
        // With one token, softmax is 1 and the context is the value itself.
        let hidden = 8;
        let qkv = data(3 * hidden, 5);
        let mut out = vec![0f32; hidden];
        attention(&qkv, hidden, 2, &[(0, 1)], &mut out);
        assert_eq!(out, qkv[2 * hidden..].to_vec());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_gelu_and_exp_match_the_scalar_forms() {
        if !simd::available() {
            eprintln!("no AVX-512F (or MOSAIC_CPU=generic): AVX-512 GELU and exp skipped");
            return;
        }
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.013).collect();
        let mut g = xs.clone();
        // SAFETY: `simd::available` checked AVX-512F, all `gelu_erf` enables.
        unsafe { simd::gelu_erf(&mut g) };
        for (x, y) in xs.iter().zip(&g) {
            let want = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            assert!(
                (y - want).abs() <= 1e-6 * want.abs().max(1.0),
                "gelu({x}) {y} vs {want}"
            );
        }
        // The bf16-grade GELU: within 5e-4 of the erf form everywhere (|x| up to 40).
        let wide: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.02).collect();
        let mut g = wide.clone();
        // SAFETY: as above, for `gelu_bf16`.
        unsafe { simd::gelu_bf16(&mut g) };
        let mut worst = 0f32;
        for (x, y) in wide.iter().zip(&g) {
            let want = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            worst = worst.max((y - want).abs() / want.abs().max(1.0));
        }
        eprintln!("bf16-grade GELU: worst error {worst:e}");
        assert!(worst <= 5e-4, "bf16-grade GELU off by {worst}");
        let mut e = xs.clone();
        // SAFETY: as above, for `exp_minus`.
        unsafe { simd::exp_minus(&mut e, 1.5) };
        for (x, y) in xs.iter().zip(&e) {
            let want = ((*x - 1.5) as f64).exp() as f32;
            assert!(
                (y - want).abs() <= 1e-6 * want,
                "exp({x} - 1.5) {y} vs {want}"
            );
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1e-37 && exp(200.0).is_finite());
    }

    #[test]
    fn fast_erf_is_accurate() {
        for i in -400..=400 {
            let x = i as f32 / 100.0;
            assert!((erf(x) - libm::erff(x)).abs() < 3e-7, "erf({x})");
        }
    }

    #[test]
    fn layer_norm_normalises_rows() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        for row in x.chunks(4) {
            let mean: f32 = row.iter().sum::<f32>() / 4.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        }
    }
}
