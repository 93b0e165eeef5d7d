//! CPU kernels for the encoder's hot path, on packed tokens (the real tokens of every sequence
//! in a batch, one after another, no padding): matrix products through the fastest GEMM this
//! machine has, attention per sequence and head without padded copies or masks, and fused
//! row kernels (bias, residual + layer norm, GELU, softmax) parallel over rows.
//!
//! GEMM: a BLAS library is loaded at run time when one is present (`MOSAIC_BLAS=/path/lib.so`,
//! else MKL's `libmkl_rt`, else OpenBLAS), so no build depends on it; otherwise the pure-Rust
//! `gemm` crate (the one behind candle's CPU matmul) is used. Which one is logged once.
//! `MOSAIC_BLAS=off` forces the pure-Rust path.

use std::sync::OnceLock;

use rayon::prelude::*;

type CblasSgemm = unsafe extern "C" fn(
    layout: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

/// The GEMM implementation in use.
pub enum Gemm {
    Blas {
        name: String,
        sgemm: CblasSgemm,
        _library: libloading::Library,
    },
    Rust,
}

impl Gemm {
    pub fn name(&self) -> &str {
        match self {
            Gemm::Blas { name, .. } => name,
            Gemm::Rust => "gemm (pure Rust)",
        }
    }
}

const CANDIDATES: &[&str] = &[
    "libmkl_rt.so.2",
    "libmkl_rt.so",
    "libopenblas.so.0",
    "libopenblas.so",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
];

fn load_blas(path: &str, threads: usize) -> Result<Gemm, String> {
    // SAFETY: loading a shared library runs its initialisers; the candidates are BLAS
    // libraries whose initialisers only set up their thread pools.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: `cblas_sgemm` has the standard CBLAS signature in every BLAS that exports it.
    let sgemm: CblasSgemm = unsafe { library.get::<CblasSgemm>(b"cblas_sgemm\0") }
        .map(|s| *s)
        .map_err(|e| e.to_string())?;
    let threads = threads as i32;
    // SAFETY: these setters take one int and exist in MKL and OpenBLAS respectively.
    unsafe {
        if let Ok(set) = library.get::<unsafe extern "C" fn(i32)>(b"MKL_Set_Num_Threads\0") {
            set(threads);
        }
        if let Ok(set) = library.get::<unsafe extern "C" fn(i32)>(b"openblas_set_num_threads\0") {
            set(threads);
        }
    }
    Ok(Gemm::Blas {
        name: format!("BLAS {path}"),
        sgemm,
        _library: library,
    })
}

/// The GEMM chosen for this process.
pub fn gemm() -> &'static Gemm {
    static GEMM: OnceLock<Gemm> = OnceLock::new();
    GEMM.get_or_init(|| {
        let threads = rayon::current_num_threads();
        let requested = std::env::var("MOSAIC_BLAS").ok();
        let chosen = match requested.as_deref() {
            Some("off") | Some("rust") => Gemm::Rust,
            Some(path) => load_blas(path, threads).unwrap_or_else(|e| {
                tracing::warn!("MOSAIC_BLAS={path} could not be loaded ({e}); using the pure-Rust GEMM");
                Gemm::Rust
            }),
            None => CANDIDATES
                .iter()
                .find_map(|c| load_blas(c, threads).ok())
                .unwrap_or(Gemm::Rust),
        };
        match &chosen {
            Gemm::Rust if requested.is_none() => tracing::info!(
                "no BLAS library found (MKL or OpenBLAS, e.g. Debian's libopenblas0): using the pure-Rust GEMM"
            ),
            other => tracing::debug!("matrix products use {}", other.name()),
        }
        chosen
    })
}

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

/// Row-major `c[m×n] = a[m×k] · b` where `b` is `[k×n]` (or `[n×k]` read transposed), with
/// leading dimensions.
#[allow(clippy::too_many_arguments)]
fn sgemm(
    route: Route,
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
    if m == 0 || n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + k, "lhs too short");
    assert!(c.len() >= (m - 1) * ldc + n, "dst too short");
    let (rows_b, cols_b) = if transpose_b { (n, k) } else { (k, n) };
    assert!(b.len() >= (rows_b - 1) * ldb + cols_b, "rhs too short");
    if let (Route::Threaded, Gemm::Blas { sgemm, .. }) = (route, gemm()) {
        // SAFETY: the slices cover every element the call reads or writes (checked above)
        // and the dimensions fit in i32 for any batch the encoder forms.
        unsafe {
            sgemm(
                ROW_MAJOR,
                NO_TRANS,
                if transpose_b { TRANS } else { NO_TRANS },
                m as i32,
                n as i32,
                k as i32,
                1.0,
                a.as_ptr(),
                lda as i32,
                b.as_ptr(),
                ldb as i32,
                0.0,
                c.as_mut_ptr(),
                ldc as i32,
            )
        };
        return;
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
    // SAFETY: as above; the strides describe row-major storage inside the checked slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `out[t×n] = x[t×k] · w[n×k]ᵀ + bias`.
pub fn linear(x: &[f32], t: usize, k: usize, w: &[f32], bias: &[f32], out: &mut [f32]) {
    linear_activate(x, t, k, w, bias, None, out)
}

/// `out = activation(x · wᵀ + bias)`, the bias and activation in one pass over the output.
pub fn linear_activate(
    x: &[f32],
    t: usize,
    k: usize,
    w: &[f32],
    bias: &[f32],
    activation: Option<Activation>,
    out: &mut [f32],
) {
    let n = bias.len();
    sgemm(Route::Threaded, true, t, n, k, x, k, w, k, out, n);
    bias_activate(out, bias, activation);
}

/// `out[r] = activation(out[r] + bias)` for every row `r` of `out` (`bias.len()` wide).
pub fn bias_activate(out: &mut [f32], bias: &[f32], activation: Option<Activation>) {
    let n = bias.len();
    // Tasks of several rows: one row per task is too little work to share out.
    let rows_per_task = (16_384 / n).max(1);
    out.par_chunks_mut(n * rows_per_task).for_each(|rows| {
        for row in rows.chunks_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            if let Some(activation) = activation {
                activate_row(row, activation);
            }
        }
    });
}

/// `x = layer_norm(x + residual) · gamma + beta`, row by row.
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    let rows_per_task = (16_384 / n).max(1);
    x.par_chunks_mut(n * rows_per_task)
        .zip(residual.par_chunks(n * rows_per_task))
        .flat_map_iter(|(rows, res)| rows.chunks_mut(n).zip(res.chunks(n)))
        .for_each(|(row, res)| {
            let mut mean = 0f32;
            for (v, r) in row.iter_mut().zip(res) {
                *v += r;
                mean += *v;
            }
            mean /= n as f32;
            let mut var = 0f32;
            for v in row.iter() {
                let d = v - mean;
                var += d * d;
            }
            let inv = 1.0 / (var / n as f32 + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        });
}

/// Layer norm without a residual.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let zeros = vec![0f32; x.len()];
    add_layer_norm(x, &zeros, gamma, beta, eps);
}

/// Activation functions of BERT-family models, in place.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

#[inline]
fn activate_row(chunk: &mut [f32], activation: Activation) {
    match activation {
        Activation::GeluErf => {
            for v in chunk {
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
    }
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, inside f32 rounding of
/// the GELU it feeds), several times faster than a correctly rounded erff.
#[inline]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-a * a).exp();
    y.copysign(x)
}

/// Raw pointer that may cross threads: each task writes a disjoint block.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (row range × column range) blocks of the output.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method so closures capture the wrapper (which is `Sync`), not the raw field.
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// Multi-head self-attention over packed sequences. `qkv` is `[t × 3h]` (queries, keys,
/// values side by side), `spans` are `(first row, length)` of each sequence; writes the
/// context `[t × h]` into `out`. Each (sequence, head) is independent: only real tokens take
/// part, so there is no mask and no padding.
pub fn attention(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    spans: &[(usize, usize)],
    out: &mut [f32],
) {
    let d = hidden / heads;
    let stride = 3 * hidden;
    let scale = 1.0 / (d as f32).sqrt();
    let shared = SharedOut(out.as_mut_ptr());
    let out_len = out.len();
    let tasks: Vec<(usize, usize, usize)> = spans
        .iter()
        .flat_map(|&(start, len)| (0..heads).map(move |h| (start, len, h)))
        .collect();
    tasks.par_iter().for_each(|&(start, len, h)| {
        let q = &qkv[start * stride + h * d..];
        let k = &qkv[start * stride + hidden + h * d..];
        let v = &qkv[start * stride + 2 * hidden + h * d..];
        let mut scores = vec![0f32; len * len];
        sgemm(
            Route::OnThisThread,
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
        for row in scores.chunks_mut(len) {
            let mut max = f32::NEG_INFINITY;
            for s in row.iter_mut() {
                *s *= scale;
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            for s in row.iter_mut() {
                *s *= inv;
            }
        }
        let offset = start * hidden + h * d;
        // SAFETY: this task alone writes rows start..start+len, columns h*d..(h+1)*d of the
        // output; the slice below starts there and stays inside the buffer.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(shared.ptr().add(offset), out_len - offset) };
        sgemm(
            Route::OnThisThread,
            false,
            len,
            d,
            len,
            &scores,
            len,
            v,
            stride,
            dst,
            hidden,
        );
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
        linear(&x, t, k, &w, &bias, &mut out);
        let want = naive(&x, &w, t, n, k);
        for i in 0..t {
            for j in 0..n {
                assert!((out[i * n + j] - want[i * n + j] - bias[j]).abs() < 1e-4);
            }
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
