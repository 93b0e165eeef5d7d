//! Convolutions for the image towers (ResNet, EfficientNet): one image at a time in CHW
//! layout, batch norm folded into the weights at load, dense convolutions as im2col plus the
//! shared GEMM (BLAS when loaded, a 1×1 stride-1 convolution straight on the feature map),
//! depthwise convolutions as direct loops parallel over channels, and the pooling and
//! activations the CNNs use.

use rayon::prelude::*;

/// One image's feature map: `c` planes of `h × w`, row-major, plane after plane.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    pub fn new(c: usize, h: usize, w: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), c * h * w, "feature map size");
        Self { c, h, w, data }
    }

    /// The mean of each channel (global average pooling).
    pub fn mean_pool(&self) -> Vec<f32> {
        let n = (self.h * self.w).max(1);
        self.data
            .par_chunks(n)
            .map(|plane| (plane.iter().map(|&v| v as f64).sum::<f64>() / n as f64) as f32)
            .collect()
    }

    /// `self += other`, element by element (a residual connection).
    pub fn add(&mut self, other: &FeatureMap) {
        assert_eq!(
            (self.c, self.h, self.w),
            (other.c, other.h, other.w),
            "residual shape"
        );
        self.data
            .par_chunks_mut(1 << 14)
            .zip(other.data.par_chunks(1 << 14))
            .for_each(|(a, b)| wide!(a.iter_mut().zip(b).for_each(|(x, y)| *x += y)));
    }
}

/// What follows a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet, EfficientNet-Lite).
    Relu6,
}

impl Activation {
    fn apply(self, x: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => wide!(x.iter_mut().for_each(|v| *v = v.max(0.0))),
            Activation::Relu6 => wide!(x.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0))),
        }
    }
}

/// Zero padding on each side of a convolution's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on every side (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Self {
        Self {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    /// TensorFlow's `SAME` padding for an `h × w` input: the output is `ceil(in / stride)`,
    /// and an odd total padding puts the extra row and column at the bottom and right.
    pub fn same(h: usize, w: usize, kernel: usize, stride: usize) -> Self {
        let total = |n: usize| {
            let out = n.div_ceil(stride);
            ((out - 1) * stride + kernel).saturating_sub(n)
        };
        let (th, tw) = (total(h), total(w));
        Self {
            top: th / 2,
            left: tw / 2,
            bottom: th - th / 2,
            right: tw - tw / 2,
        }
    }

    fn output(&self, h: usize, w: usize, kernel: usize, stride: usize) -> (usize, usize) {
        let out = |n: usize| n / stride + 1;
        let (hp, wp) = (h + self.top + self.bottom, w + self.left + self.right);
        assert!(
            hp >= kernel && wp >= kernel,
            "input smaller than the kernel"
        );
        (out(hp - kernel), out(wp - kernel))
    }
}

/// Folded eval-mode batch norm: `y = x · scale + shift` per channel.
pub fn batch_norm_affine(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g as f64 / (v as f64 + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32)
        .collect();
    (scale.into_iter().map(|s| s as f32).collect(), shift)
}

/// A 2-D convolution (square kernel) with its bias (or folded batch norm) and activation.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub c_out: usize,
    pub c_in: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Depthwise (one filter per channel, `c_in == c_out`) rather than dense.
    pub depthwise: bool,
    /// Dense: `[c_out, c_in · k · k]`; depthwise: `[c, k · k]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    pub activation: Activation,
}

impl Conv2d {
    /// A dense convolution from PyTorch's `[c_out, c_in, k, k]` weight.
    pub fn dense(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        c_out: usize,
        c_in: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        assert_eq!(weight.len(), c_out * c_in * kernel * kernel, "weight size");
        Self {
            c_out,
            c_in,
            kernel,
            stride,
            depthwise: false,
            weight,
            bias: bias.unwrap_or_else(|| vec![0.0; c_out]),
            activation: Activation::None,
        }
    }

    /// A depthwise convolution from PyTorch's `[c, 1, k, k]` weight.
    pub fn depthwise(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        c: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        assert_eq!(weight.len(), c * kernel * kernel, "weight size");
        Self {
            c_out: c,
            c_in: c,
            kernel,
            stride,
            depthwise: true,
            weight,
            bias: bias.unwrap_or_else(|| vec![0.0; c]),
            activation: Activation::None,
        }
    }

    /// Folds an eval-mode batch norm that follows this convolution into it.
    pub fn fold_batch_norm(&mut self, scale: &[f32], shift: &[f32]) {
        assert_eq!(scale.len(), self.c_out, "batch norm width");
        let per_out = self.weight.len() / self.c_out;
        for (o, row) in self.weight.chunks_mut(per_out).enumerate() {
            row.iter_mut().for_each(|w| *w *= scale[o]);
            self.bias[o] = self.bias[o] * scale[o] + shift[o];
        }
    }

    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Runs the convolution on one feature map.
    pub fn forward(&self, x: &FeatureMap, padding: Padding) -> FeatureMap {
        assert_eq!(x.c, self.c_in, "input channels");
        let (ho, wo) = padding.output(x.h, x.w, self.kernel, self.stride);
        let mut out = if self.depthwise {
            self.forward_depthwise(x, padding, ho, wo)
        } else {
            self.forward_dense(x, padding, ho, wo)
        };
        let activation = self.activation;
        out.par_chunks_mut(1 << 14)
            .for_each(|chunk| activation.apply(chunk));
        FeatureMap::new(self.c_out, ho, wo, out)
    }

    fn forward_dense(&self, x: &FeatureMap, padding: Padding, ho: usize, wo: usize) -> Vec<f32> {
        let positions = ho * wo;
        let k = self.c_in * self.kernel * self.kernel;
        let mut out = vec![0f32; self.c_out * positions];
        out.par_chunks_mut(positions)
            .zip(self.bias.par_iter())
            .for_each(|(row, &b)| row.fill(b));
        let pointwise = self.kernel == 1 && self.stride == 1 && padding == Padding::default();
        // About 16 MB of columns per chunk of output rows.
        let rows_per_chunk = if pointwise {
            ho
        } else {
            ((4 << 20) / (k * wo).max(1)).clamp(1, ho)
        };
        let mut cols = Vec::new();
        let mut y0 = 0;
        while y0 < ho {
            let rows = rows_per_chunk.min(ho - y0);
            let n = rows * wo;
            let b: &[f32] = if pointwise {
                &x.data
            } else {
                cols.resize(k * n, 0.0);
                self.im2col(x, padding, y0, rows, wo, &mut cols[..k * n]);
                &cols[..k * n]
            };
            super::matmul(
                true,
                self.c_out,
                n,
                k,
                &self.weight,
                k,
                b,
                n,
                &mut out[y0 * wo..],
                positions,
            );
            y0 += rows;
        }
        out
    }

    /// Columns for output rows `y0..y0 + rows`: row `(ci, ky, kx)`, column `(oy, ox)` holds
    /// the input at `(oy·s + ky − top, ox·s + kx − left)`, zero outside.
    fn im2col(
        &self,
        x: &FeatureMap,
        padding: Padding,
        y0: usize,
        rows: usize,
        wo: usize,
        cols: &mut [f32],
    ) {
        let (kk, s) = (self.kernel, self.stride);
        let n = rows * wo;
        cols.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
            let (ci, ky, kx) = (r / (kk * kk), r % (kk * kk) / kk, r % kk);
            let plane = &x.data[ci * x.h * x.w..(ci + 1) * x.h * x.w];
            for oy in 0..rows {
                let iy = ((y0 + oy) * s + ky) as isize - padding.top as isize;
                let dst = &mut dst[oy * wo..(oy + 1) * wo];
                if iy < 0 || iy >= x.h as isize {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[iy as usize * x.w..(iy as usize + 1) * x.w];
                for (ox, d) in dst.iter_mut().enumerate() {
                    let ix = (ox * s + kx) as isize - padding.left as isize;
                    *d = if ix < 0 || ix >= x.w as isize {
                        0.0
                    } else {
                        src[ix as usize]
                    };
                }
            }
        });
    }

    fn forward_depthwise(
        &self,
        x: &FeatureMap,
        padding: Padding,
        ho: usize,
        wo: usize,
    ) -> Vec<f32> {
        let (kk, s) = (self.kernel, self.stride);
        let mut out = vec![0f32; self.c_out * ho * wo];
        out.par_chunks_mut(ho * wo)
            .enumerate()
            .for_each(|(c, dst)| {
                let plane = &x.data[c * x.h * x.w..(c + 1) * x.h * x.w];
                let taps = &self.weight[c * kk * kk..(c + 1) * kk * kk];
                dst.fill(self.bias[c]);
                wide!(depthwise_plane(
                    plane, x.h, x.w, taps, kk, s, padding, ho, wo, dst
                ));
            });
        out
    }
}

/// One channel of a depthwise convolution, accumulated tap by tap onto `dst` (`ho × wo`, the
/// bias already in it): for each tap, a row of the output adds a strided row of the input.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_plane(
    plane: &[f32],
    h: usize,
    w: usize,
    taps: &[f32],
    kernel: usize,
    stride: usize,
    padding: Padding,
    ho: usize,
    wo: usize,
    dst: &mut [f32],
) {
    for ky in 0..kernel {
        for kx in 0..kernel {
            let t = taps[ky * kernel + kx];
            // Output columns whose input column is inside the row.
            let first = padding.left.saturating_sub(kx).div_ceil(stride);
            let last = (w + padding.left)
                .saturating_sub(kx)
                .div_ceil(stride)
                .min(wo);
            if first >= last {
                continue;
            }
            for oy in 0..ho {
                let iy = (oy * stride + ky) as isize - padding.top as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                let row = &mut dst[oy * wo..(oy + 1) * wo];
                let x0 = first * stride + kx - padding.left;
                if stride == 1 {
                    let src = &src[x0..x0 + (last - first)];
                    row[first..last]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, &v)| *d += t * v);
                } else {
                    row[first..last]
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, d)| *d += t * src[x0 + i * stride]);
                }
            }
        }
    }
}

/// Max pooling (square window), padding counted as minus infinity, as PyTorch's
/// `MaxPool2d(kernel, stride, padding)`.
pub fn max_pool(x: &FeatureMap, kernel: usize, stride: usize, padding: usize) -> FeatureMap {
    let pad = Padding::symmetric(padding);
    let (ho, wo) = pad.output(x.h, x.w, kernel, stride);
    let mut out = vec![0f32; x.c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(c, dst)| {
            let plane = &x.data[c * x.h * x.w..(c + 1) * x.h * x.w];
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut best = f32::NEG_INFINITY;
                    for ky in 0..kernel {
                        let iy = (oy * stride + ky) as isize - padding as isize;
                        if iy < 0 || iy >= x.h as isize {
                            continue;
                        }
                        for kx in 0..kernel {
                            let ix = (ox * stride + kx) as isize - padding as isize;
                            if ix >= 0 && ix < x.w as isize {
                                best = best.max(plane[iy as usize * x.w + ix as usize]);
                            }
                        }
                    }
                    dst[oy * wo + ox] = best;
                }
            }
        });
    FeatureMap::new(x.c, ho, wo, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of a (grouped) convolution, for checking the fast paths.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &FeatureMap,
        weight: &[f32],
        bias: &[f32],
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        depthwise: bool,
    ) -> FeatureMap {
        let (ho, wo) = padding.output(x.h, x.w, kernel, stride);
        let mut out = vec![0f32; c_out * ho * wo];
        let c_in = if depthwise { 1 } else { x.c };
        for o in 0..c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias[o] as f64;
                    for ci in 0..c_in {
                        let plane = if depthwise { o } else { ci };
                        for ky in 0..kernel {
                            for kx in 0..kernel {
                                let iy = (oy * stride + ky) as isize - padding.top as isize;
                                let ix = (ox * stride + kx) as isize - padding.left as isize;
                                if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                    continue;
                                }
                                let v = x.data[plane * x.h * x.w + iy as usize * x.w + ix as usize];
                                let wv = weight[((o * c_in + ci) * kernel + ky) * kernel + kx];
                                acc += v as f64 * wv as f64;
                            }
                        }
                    }
                    out[(o * ho + oy) * wo + ox] = acc as f32;
                }
            }
        }
        FeatureMap::new(c_out, ho, wo, out)
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
                v as f32 / 500.0 - 1.0
            })
            .collect()
    }

    fn close(a: &FeatureMap, b: &FeatureMap) {
        assert_eq!((a.c, a.h, a.w), (b.c, b.h, b.w));
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn dense_and_depthwise_match_the_definition() {
        let x = FeatureMap::new(3, 11, 9, values(3 * 11 * 9, 1));
        for &(kernel, stride) in &[(1, 1), (1, 2), (3, 1), (3, 2), (5, 2), (7, 2)] {
            for padding in [
                Padding::symmetric(kernel / 2),
                Padding::same(x.h, x.w, kernel, stride),
                Padding::default(),
            ] {
                let w = values(4 * 3 * kernel * kernel, 2);
                let b = values(4, 3);
                let conv = Conv2d::dense(w.clone(), Some(b.clone()), 4, 3, kernel, stride);
                close(
                    &conv.forward(&x, padding),
                    &reference(&x, &w, &b, 4, kernel, stride, padding, false),
                );
                let w = values(3 * kernel * kernel, 4);
                let conv = Conv2d::depthwise(w.clone(), Some(b[..3].to_vec()), 3, kernel, stride);
                close(
                    &conv.forward(&x, padding),
                    &reference(&x, &w, &b[..3], 3, kernel, stride, padding, true),
                );
            }
        }
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // TensorFlow: 224 input, 3×3 stride 2 -> 112 out, total padding 1: (0 before, 1 after).
        let p = Padding::same(224, 224, 3, 2);
        assert_eq!((p.top, p.bottom, p.left, p.right), (0, 1, 0, 1));
        assert_eq!(p.output(224, 224, 3, 2), (112, 112));
        let p = Padding::same(112, 112, 5, 1);
        assert_eq!((p.top, p.bottom), (2, 2));
    }

    #[test]
    fn folded_batch_norm_equals_applying_it() {
        let x = FeatureMap::new(2, 5, 5, values(50, 5));
        let w = values(3 * 2 * 9, 6);
        let mut conv = Conv2d::dense(w, None, 3, 2, 3, 1);
        let plain = conv.forward(&x, Padding::symmetric(1));
        let (gamma, beta, mean, var) = (
            [1.5, -0.5, 2.0],
            [0.1, 0.2, -0.3],
            [0.3, -1.0, 0.0],
            [2.0, 0.5, 1.0],
        );
        let (scale, shift) = batch_norm_affine(&gamma, &beta, &mean, &var, 1e-5);
        conv.fold_batch_norm(&scale, &shift);
        let folded = conv
            .with_activation(Activation::Relu6)
            .forward(&x, Padding::symmetric(1));
        for (i, (&p, &f)) in plain.data.iter().zip(&folded.data).enumerate() {
            let c = i / 25;
            let bn = (p - mean[c]) / (var[c] + 1e-5f32).sqrt() * gamma[c] + beta[c];
            assert!((bn.clamp(0.0, 6.0) - f).abs() < 1e-5);
        }
    }

    #[test]
    fn max_pool_ignores_padding() {
        let x = FeatureMap::new(1, 4, 4, (0..16).map(|v| -(v as f32)).collect());
        let y = max_pool(&x, 3, 2, 1);
        assert_eq!((y.h, y.w), (2, 2));
        assert_eq!(y.data, vec![0.0, -1.0, -4.0, -5.0]);
    }
}
