//! Product paths: the ways a model's linear layers can run on this machine (f32 on OpenBLAS,
//! MKL or the pure-Rust GEMM; bf16 on Mosaic's AVX512_BF16 kernel or on MKL, which uses AMX
//! tiles where the CPU has them), and [`Linear`], a layer that holds its weight in the forms
//! the paths need. A model picks its path at load: explicitly (`dtype = "f32"`, `"bf16"` or a
//! path id such as `"bf16-mkl"`) or by measurement (`dtype = "auto"`, see
//! `crate::embed::encoder::Encoder::choose_path`).

use rayon::prelude::*;

use super::blas::{self, Family, MklPackedBf16};
use super::{bf16, Activation};

/// One way to run `out = x · wᵀ + bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductPath {
    /// f32 on a BLAS library, or on the pure-Rust GEMM (`None`).
    F32(Option<Family>),
    /// bf16 operands, f32 accumulation, on Mosaic's AVX512_BF16 kernel ([`bf16`]).
    Bf16Kernel,
    /// bf16 operands, f32 accumulation, on MKL (`cblas_gemm_bf16bf16f32`).
    Bf16Mkl,
}

/// Whether the CPU has AMX tiles for bf16 (`amx_bf16` and `amx_tile`), as MKL's bf16 products
/// would use them. Reported only: MKL makes the choice and the OS request itself.
pub fn amx_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE (std's detection of these is
        // not stable yet).
        if std::arch::x86_64::__get_cpuid_max(0).0 < 7 {
            return false;
        }
        let leaf = std::arch::x86_64::__cpuid_count(7, 0);
        (leaf.edx >> 22) & 1 == 1 && (leaf.edx >> 24) & 1 == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl ProductPath {
    /// A stable short id: `f32-openblas`, `f32-mkl`, `f32-blas`, `f32-rust`, `bf16-avx512`,
    /// `bf16-mkl`.
    pub fn id(self) -> &'static str {
        match self {
            ProductPath::F32(Some(Family::OpenBlas)) => "f32-openblas",
            ProductPath::F32(Some(Family::Mkl)) => "f32-mkl",
            ProductPath::F32(Some(Family::Other)) => "f32-blas",
            ProductPath::F32(None) => "f32-rust",
            ProductPath::Bf16Kernel => "bf16-avx512",
            ProductPath::Bf16Mkl => "bf16-mkl",
        }
    }

    /// The path with this id.
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "f32-openblas" => ProductPath::F32(Some(Family::OpenBlas)),
            "f32-mkl" => ProductPath::F32(Some(Family::Mkl)),
            "f32-blas" => ProductPath::F32(Some(Family::Other)),
            "f32-rust" => ProductPath::F32(None),
            "bf16-avx512" => ProductPath::Bf16Kernel,
            "bf16-mkl" => ProductPath::Bf16Mkl,
            _ => return None,
        })
    }

    /// The number type of the products: `"f32"` or `"bf16"`.
    pub fn dtype(self) -> &'static str {
        match self {
            ProductPath::F32(_) => "f32",
            ProductPath::Bf16Kernel | ProductPath::Bf16Mkl => "bf16",
        }
    }

    /// What runs the products, for logs and benchmarks: "f32 on OpenBLAS 0.3.21", "bf16 on
    /// MKL 2026.2 (AMX tiles)".
    pub fn describe(self) -> String {
        match self {
            ProductPath::F32(None) => "f32 on the pure-Rust GEMM".into(),
            ProductPath::F32(Some(family)) => match blas::library(family) {
                Some(b) => format!("f32 on {}", b.name()),
                None => format!("f32 on {} (not loaded)", self.id()),
            },
            ProductPath::Bf16Kernel => "bf16 on Mosaic's AVX512_BF16 kernel".into(),
            ProductPath::Bf16Mkl => {
                let name = blas::mkl().map_or("MKL (not loaded)", |b| b.name());
                if amx_detected() {
                    format!("bf16 on {name} (AMX tiles)")
                } else {
                    format!("bf16 on {name} (no AMX on this CPU)")
                }
            }
        }
    }

    /// Whether this machine can run the path now.
    pub fn available(self) -> bool {
        match self {
            ProductPath::F32(None) => true,
            ProductPath::F32(Some(family)) => blas::library(family).is_some(),
            ProductPath::Bf16Kernel => bf16::supported(),
            ProductPath::Bf16Mkl => blas::mkl().is_some_and(|b| b.has_bf16()),
        }
    }

    /// The f32 path of the default library (what `dtype = "f32"` runs).
    pub fn default_f32() -> Self {
        ProductPath::F32(blas::default_library().map(|b| b.family()))
    }

    /// Every path this machine offers, the default f32 path first.
    pub fn all_available() -> Vec<Self> {
        let mut paths = vec![Self::default_f32()];
        for candidate in [
            ProductPath::F32(Some(Family::OpenBlas)),
            ProductPath::F32(Some(Family::Mkl)),
            ProductPath::F32(Some(Family::Other)),
            ProductPath::F32(None),
            ProductPath::Bf16Kernel,
            ProductPath::Bf16Mkl,
        ] {
            if candidate.available() && !paths.contains(&candidate) {
                paths.push(candidate);
            }
        }
        paths
    }

    /// The paths this machine lacks, each with why (for test and benchmark output).
    pub fn unavailable() -> Vec<(Self, &'static str)> {
        let mut missing = Vec::new();
        if blas::openblas().is_none() {
            missing.push((
                ProductPath::F32(Some(Family::OpenBlas)),
                "OpenBLAS not loaded",
            ));
        }
        if blas::mkl().is_none() {
            missing.push((ProductPath::F32(Some(Family::Mkl)), "MKL not loaded"));
            missing.push((ProductPath::Bf16Mkl, "MKL not loaded"));
        } else if !ProductPath::Bf16Mkl.available() {
            missing.push((ProductPath::Bf16Mkl, "this MKL has no bf16 products"));
        }
        if !bf16::supported() {
            missing.push((
                ProductPath::Bf16Kernel,
                if super::simd_allowed() {
                    "the CPU lacks AVX512_BF16"
                } else {
                    "MOSAIC_CPU=generic"
                },
            ));
        }
        missing
    }

    /// The fastest bf16 path available (what `dtype = "bf16"` runs): Mosaic's kernel, else
    /// MKL's.
    pub fn default_bf16() -> Option<Self> {
        [ProductPath::Bf16Kernel, ProductPath::Bf16Mkl]
            .into_iter()
            .find(|p| p.available())
    }
}

/// A linear layer `out = activation(x · wᵀ + bias)` with its weight `[n × k]` in the forms
/// its paths need: f32 (kept until [`Linear::keep_only`] frees it), packed for the bf16
/// kernel, packed by MKL.
pub struct Linear {
    weight: Vec<f32>,
    pub bias: Vec<f32>,
    k: usize,
    kernel: Option<bf16::PackedBf16>,
    mkl: Option<MklPackedBf16>,
}

impl Linear {
    /// From row-major `weight[n × k]` and `bias[n]`.
    pub fn new(weight: Vec<f32>, bias: Vec<f32>) -> Self {
        assert!(!bias.is_empty(), "a linear layer has outputs");
        assert_eq!(weight.len() % bias.len(), 0, "weight size");
        let k = weight.len() / bias.len();
        Self {
            weight,
            bias,
            k,
            kernel: None,
            mkl: None,
        }
    }

    pub fn inputs(&self) -> usize {
        self.k
    }

    pub fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// The f32 weight, while it is kept.
    pub fn weight(&self) -> Option<&[f32]> {
        (!self.weight.is_empty()).then_some(&self.weight[..])
    }

    /// Builds the weight form `path` needs (from the f32 copy). Errors when the f32 copy was
    /// already freed or the path cannot take this layer.
    pub fn prepare(&mut self, path: ProductPath) -> Result<(), String> {
        let (n, k) = (self.outputs(), self.k);
        let ready = match path {
            ProductPath::F32(_) => !self.weight.is_empty(),
            ProductPath::Bf16Kernel => self.kernel.is_some(),
            ProductPath::Bf16Mkl => self.mkl.is_some(),
        };
        if ready {
            return Ok(());
        }
        if self.weight.is_empty() {
            return Err(format!(
                "the layer's f32 weight was freed for another path: load the model again for {}",
                path.id()
            ));
        }
        if !path.available() {
            return Err(format!("{} is not available on this machine", path.id()));
        }
        match path {
            ProductPath::F32(_) => {}
            ProductPath::Bf16Kernel => {
                self.kernel = Some(bf16::PackedBf16::pack(&self.weight, n, k));
            }
            ProductPath::Bf16Mkl => {
                self.mkl = Some(
                    MklPackedBf16::pack(&self.weight, n, k)
                        .ok_or_else(|| format!("MKL could not pack a {n}×{k} bf16 weight"))?,
                );
            }
        }
        Ok(())
    }

    /// Frees every weight form but the one `path` uses.
    pub fn keep_only(&mut self, path: ProductPath) {
        if !matches!(path, ProductPath::F32(_)) {
            self.weight = Vec::new();
        }
        if path != ProductPath::Bf16Kernel {
            self.kernel = None;
        }
        if path != ProductPath::Bf16Mkl {
            self.mkl = None;
        }
    }

    /// `x[t × k] -> [t × n]` on `path` (see [`Linear::forward_into`]).
    pub fn forward(&self, path: ProductPath, x: &[f32], t: usize) -> Vec<f32> {
        let mut out = vec![0f32; t * self.outputs()];
        self.forward_into(path, x, t, None, &mut out);
        out
    }

    /// `out[t × n] = activation(x[t × k] · wᵀ + bias)` on `path`, which must have been
    /// [`prepare`](Self::prepare)d. Panics otherwise.
    pub fn forward_into(
        &self,
        path: ProductPath,
        x: &[f32],
        t: usize,
        activation: Option<Activation>,
        out: &mut [f32],
    ) {
        match path {
            ProductPath::F32(family) => {
                assert!(!self.weight.is_empty(), "f32 weight freed");
                let library = family.map(|f| blas::library(f).expect("library loaded"));
                super::linear_activate(
                    super::Gemm::from(library),
                    x,
                    t,
                    self.k,
                    &self.weight,
                    &self.bias,
                    activation,
                    out,
                )
            }
            ProductPath::Bf16Kernel => {
                let packed = self.kernel.as_ref().expect("bf16 kernel weight prepared");
                bf16::matmul(x, t, packed, &self.bias, activation, out)
            }
            ProductPath::Bf16Mkl => {
                let packed = self.mkl.as_ref().expect("MKL bf16 weight prepared");
                mkl_bf16_matmul(x, t, packed, &self.bias, activation, out)
            }
        }
    }
}

impl Linear {
    /// `out[rows × n] = x16[rows × k] · wᵀ` for rows already in bf16, without the bias, on
    /// MKL's bf16 product on the calling thread: the step of a data flow that keeps
    /// activations in bf16 between layers and adds the bias in the pass that follows (see
    /// `crate::embed::encoder`). Panics unless [`prepare`](Self::prepare)d for
    /// [`ProductPath::Bf16Mkl`] and the buffers cover `rows` rows.
    pub fn mkl_multiply(&self, x16: &[u16], rows: usize, out: &mut [f32]) {
        let packed = self.mkl.as_ref().expect("MKL bf16 weight prepared");
        assert!(x16.len() >= rows * self.k, "input size");
        packed.multiply(x16, rows, out);
    }
}

/// Rows per MKL bf16 call: the rows' bf16 copy (at most 256 × k × 2 bytes) stays small.
const MKL_ROWS: usize = 256;

thread_local! {
    /// Per-thread bf16 copy of the rows an MKL bf16 call multiplies.
    static ROWS_BF16: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out = activation(x · wᵀ + bias)` on MKL's bf16 products, rows split across rayon's
/// threads (MKL runs sequentially on each).
fn mkl_bf16_matmul(
    x: &[f32],
    t: usize,
    w: &MklPackedBf16,
    bias: &[f32],
    activation: Option<Activation>,
    out: &mut [f32],
) {
    let (n, k) = (w.outputs(), w.inputs());
    assert_eq!(x.len(), t * k, "input size");
    assert_eq!(out.len(), t * n, "output size");
    assert_eq!(bias.len(), n, "bias size");
    x.par_chunks(MKL_ROWS * k)
        .zip(out.par_chunks_mut(MKL_ROWS * n))
        .for_each(|(xs, outs)| {
            let rows = xs.len() / k;
            ROWS_BF16.with(|cell| {
                // One buffer per thread, kept between calls: a fresh one of this size would be
                // mapped, zeroed and unmapped by the allocator at every call.
                let mut a = cell.borrow_mut();
                if a.len() < rows * k {
                    a.resize(rows * k, 0);
                }
                let a = &mut a[..rows * k];
                to_bf16_rows(xs, a);
                for row in outs.chunks_mut(n) {
                    row.copy_from_slice(bias);
                }
                w.accumulate(a, rows, outs);
            });
            if let Some(activation) = activation {
                for row in outs.chunks_mut(n) {
                    super::activate_row_bf16(row, activation);
                }
            }
        });
}

/// f32 -> bf16 bits, round to nearest even (`vcvtne2ps2bf16` where the CPU has it).
pub fn to_bf16_rows(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if bf16::supported() && src.len().is_multiple_of(2) {
        // SAFETY: a `[u16]` of even length is a `[u32]` of half the length on this
        // little-endian target (element 2i low, 2i + 1 high, as `convert_row` writes); the
        // pointer is 2-byte aligned, so the u32 view is taken only when it is 4-byte aligned.
        let (head, pairs, tail) = unsafe { dst.align_to_mut::<u32>() };
        if head.is_empty() && tail.is_empty() {
            // SAFETY: `bf16::supported()` checked every feature `convert_row` enables; it
            // reads `src` and writes `pairs`, which covers `src.len() / 2` pairs.
            unsafe { bf16::convert_row(src, pairs) };
            return;
        }
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = half::bf16::from_f32(s).to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) - 0.5
            })
            .collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn path_ids_round_trip() {
        for path in [
            ProductPath::F32(None),
            ProductPath::F32(Some(Family::OpenBlas)),
            ProductPath::F32(Some(Family::Mkl)),
            ProductPath::F32(Some(Family::Other)),
            ProductPath::Bf16Kernel,
            ProductPath::Bf16Mkl,
        ] {
            assert_eq!(ProductPath::from_id(path.id()), Some(path));
        }
        assert_eq!(ProductPath::from_id("f16"), None);
    }

    /// Every path this machine offers against a naive f64 product, on sizes that leave partial
    /// tiles, panels and MKL row blocks; missing paths are named in the output.
    #[test]
    fn every_available_path_matches_a_naive_product() {
        for (path, why) in ProductPath::unavailable() {
            eprintln!("skipped {}: {why}", path.id());
        }
        for &(t, k, n) in &[(1, 384, 384), (37, 29, 70), (300, 384, 1536), (513, 64, 33)] {
            let x = data(t * k, 1);
            let w = data(n * k, 2);
            let bias = data(n, 3);
            let mut want = vec![0f32; t * n];
            for i in 0..t {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                        .sum();
                    want[i * n + j] = (dot + bias[j] as f64) as f32;
                }
            }
            for path in ProductPath::all_available() {
                let mut layer = Linear::new(w.clone(), bias.clone());
                layer.prepare(path).unwrap();
                layer.keep_only(path);
                let mut out = vec![f32::NAN; t * n];
                layer.forward_into(path, &x, t, None, &mut out);
                let c = cosine(&out, &want);
                let bar = if path.dtype() == "f32" {
                    0.999_999
                } else {
                    0.999
                };
                assert!(c >= bar, "{} at {t}×{k}·{n}: cosine {c}", path.id());
                if path.dtype() == "f32" {
                    let worst = out
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(worst < 1e-4, "{}: max error {worst}", path.id());
                }
                eprintln!("{} at {t}×{k}·{n}: cosine {c:.7}", path.id());
            }
        }
    }

    #[test]
    fn a_freed_f32_weight_is_reported_not_used() {
        let mut layer = Linear::new(data(8 * 4, 1), data(8, 2));
        layer.keep_only(ProductPath::Bf16Mkl);
        let err = layer.prepare(ProductPath::default_f32()).unwrap_err();
        assert!(err.contains("load the model again"), "{err}");
    }

    #[test]
    fn conversion_to_bf16_rounds_to_nearest_even() {
        let src = data(1001, 4);
        let mut fast = vec![0u16; 1000];
        to_bf16_rows(&src[..1000], &mut fast);
        let scalar: Vec<u16> = src[..1000]
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        assert_eq!(fast, scalar);
    }
}
