//! ResNet (He et al.; v1.5, the stride on the 3×3 convolution) on Mosaic's convolution
//! kernels: the pooled features of the last stage (2048-d for ResNet-50) serve image-to-image
//! search. Two checkpoint layouts load: Hugging Face's (`microsoft/resnet-50`:
//! `resnet.embedder.embedder.convolution`, `resnet.encoder.stages.{s}.layers.{i}.layer.{k}`,
//! `…shortcut`, `classifier.1`) and torchvision's, which timm shares (`conv1`, `bn1`,
//! `layer{s+1}.{i}.conv{k+1}`, `…downsample.{0,1}`, `fc`). A [`Layout`] maps one onto the other,
//! so the network is built once. Batch norm is folded into the convolutions at load.

use std::collections::HashMap;

use candle_core::Tensor;

use super::efficientnet::StateDict;
use super::{ImageModelError, Result};
use crate::kernels::conv::{max_pool, Activation, Conv2d, FeatureMap, Padding};

/// Batch-norm epsilon of PyTorch's `BatchNorm2d`, which every ResNet checkpoint used.
const BN_EPS: f64 = 1e-5;

/// Where a checkpoint keeps each tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers' `ResNetModel` names, with or without the `resnet.` prefix.
    HuggingFace { prefixed: bool },
    /// torchvision's (and timm's) `resnet*` names.
    Torchvision,
}

impl Layout {
    /// The layout of a state dict, from the names of its stem convolution.
    pub fn detect(names: &HashMap<String, Tensor>) -> Option<Self> {
        if names.contains_key("resnet.embedder.embedder.convolution.weight") {
            Some(Layout::HuggingFace { prefixed: true })
        } else if names.contains_key("embedder.embedder.convolution.weight") {
            Some(Layout::HuggingFace { prefixed: false })
        } else if names.contains_key("conv1.weight") && names.contains_key("layer1.0.conv1.weight")
        {
            Some(Layout::Torchvision)
        } else {
            None
        }
    }

    fn root(self) -> &'static str {
        match self {
            Layout::HuggingFace { prefixed: true } => "resnet.",
            _ => "",
        }
    }

    /// (convolution, batch norm) of the stem.
    fn stem(self) -> (String, String) {
        match self {
            Layout::HuggingFace { .. } => {
                let p = format!("{}embedder.embedder", self.root());
                (format!("{p}.convolution"), format!("{p}.normalization"))
            }
            Layout::Torchvision => ("conv1".into(), "bn1".into()),
        }
    }

    /// (convolution, batch norm) `k` of layer `i` in stage `s` (all 0-based).
    fn conv(self, s: usize, i: usize, k: usize) -> (String, String) {
        match self {
            Layout::HuggingFace { .. } => {
                let p = format!("{}encoder.stages.{s}.layers.{i}.layer.{k}", self.root());
                (format!("{p}.convolution"), format!("{p}.normalization"))
            }
            Layout::Torchvision => (
                format!("layer{}.{i}.conv{}", s + 1, k + 1),
                format!("layer{}.{i}.bn{}", s + 1, k + 1),
            ),
        }
    }

    /// (convolution, batch norm) of the projection shortcut of layer `i` in stage `s`.
    fn shortcut(self, s: usize, i: usize) -> (String, String) {
        match self {
            Layout::HuggingFace { .. } => {
                let p = format!("{}encoder.stages.{s}.layers.{i}.shortcut", self.root());
                (format!("{p}.convolution"), format!("{p}.normalization"))
            }
            Layout::Torchvision => (
                format!("layer{}.{i}.downsample.0", s + 1),
                format!("layer{}.{i}.downsample.1", s + 1),
            ),
        }
    }

    /// (weight, bias) of the ImageNet classifier.
    fn classifier(self) -> (&'static str, &'static str) {
        match self {
            Layout::HuggingFace { .. } => ("classifier.1.weight", "classifier.1.bias"),
            Layout::Torchvision => ("fc.weight", "fc.bias"),
        }
    }
}

/// The shape of a ResNet, from transformers' `ResNetConfig` or read off the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetShape {
    /// Layers per stage (`[3, 4, 6, 3]` for ResNet-50).
    pub depths: Vec<usize>,
    /// Bottleneck blocks (ResNet-50 and up) or basic two-convolution blocks (18, 34).
    pub bottleneck: bool,
    /// The stride on the first 1×1 convolution (v1, `downsample_in_bottleneck`) rather than
    /// on the 3×3 (v1.5, what torchvision and `microsoft/resnet-50` use).
    pub stride_on_first: bool,
    /// Stage 0 downsamples too (`downsample_in_first_stage`; false in every common model).
    pub downsample_first_stage: bool,
}

impl ResNetShape {
    /// Counts the layers of each stage in the checkpoint.
    pub fn from_tensors(layout: Layout, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let mut depths = Vec::new();
        for s in 0.. {
            let layers = (0..)
                .take_while(|&i| {
                    tensors.contains_key(&format!("{}.weight", layout.conv(s, i, 0).0))
                })
                .count();
            if layers == 0 {
                break;
            }
            depths.push(layers);
        }
        if depths.is_empty() {
            return Err(ImageModelError::Unsupported(
                "no ResNet stages in the checkpoint".into(),
            ));
        }
        let bottleneck = tensors.contains_key(&format!("{}.weight", layout.conv(0, 0, 2).0));
        Ok(Self {
            depths,
            bottleneck,
            stride_on_first: false,
            downsample_first_stage: false,
        })
    }
}

struct Block {
    convs: Vec<Conv2d>,
    shortcut: Option<Conv2d>,
}

/// A ResNet on Mosaic's CPU convolution kernels.
pub struct ResNet {
    stem: Conv2d,
    blocks: Vec<Block>,
    features: usize,
    classifier: Option<(Vec<f32>, Vec<f32>)>,
}

impl ResNet {
    pub fn from_tensors(tensors: HashMap<String, Tensor>, shape: &ResNetShape) -> Result<Self> {
        let layout = Layout::detect(&tensors).ok_or_else(|| {
            ImageModelError::Unsupported(
                "not a ResNet checkpoint: no `resnet.embedder…`, `embedder…` or `conv1`/`layer1` \
                 tensors"
                    .into(),
            )
        })?;
        let mut w = StateDict::new(tensors);
        let (conv, bn) = layout.stem();
        let stem = w.conv_bn(&conv, &bn, 2, Activation::Relu, BN_EPS)?;
        let mut blocks = Vec::new();
        let mut c_in = stem.c_out;
        for (s, &depth) in shape.depths.iter().enumerate() {
            for i in 0..depth {
                let stride = if i == 0 && (s > 0 || shape.downsample_first_stage) {
                    2
                } else {
                    1
                };
                let count = if shape.bottleneck { 3 } else { 2 };
                let mut convs = Vec::with_capacity(count);
                for k in 0..count {
                    let strided = if shape.bottleneck && !shape.stride_on_first {
                        k == 1
                    } else {
                        k == 0
                    };
                    let (conv, bn) = layout.conv(s, i, k);
                    let activation = if k + 1 == count {
                        Activation::None
                    } else {
                        Activation::Relu
                    };
                    let layer = w.conv_bn(
                        &conv,
                        &bn,
                        if strided { stride } else { 1 },
                        activation,
                        BN_EPS,
                    )?;
                    let expected_in = convs.last().map_or(c_in, |c: &Conv2d| c.c_out);
                    if layer.c_in != expected_in {
                        return Err(ImageModelError::Unsupported(format!(
                            "{conv}.weight takes {} channels, the layer before gives {expected_in}",
                            layer.c_in
                        )));
                    }
                    convs.push(layer);
                }
                let c_out = convs.last().map_or(c_in, |c| c.c_out);
                let (conv, bn) = layout.shortcut(s, i);
                let shortcut = if w.has(&format!("{conv}.weight")) {
                    Some(w.conv_bn(&conv, &bn, stride, Activation::None, BN_EPS)?)
                } else if c_out != c_in || stride != 1 {
                    return Err(ImageModelError::MissingTensor(format!("{conv}.weight")));
                } else {
                    None
                };
                blocks.push(Block { convs, shortcut });
                c_in = c_out;
            }
        }
        let (weight, bias) = layout.classifier();
        let classifier = if w.has(weight) {
            let classes = w.dims(weight)?[0];
            Some((w.take(weight, &[classes, c_in])?, w.take(bias, &[classes])?))
        } else {
            None
        };
        Ok(Self {
            stem,
            blocks,
            features: c_in,
            classifier,
        })
    }

    /// Width of the pooled features (2048 for ResNet-50).
    pub fn features(&self) -> usize {
        self.features
    }

    /// The last stage's feature map: `[features, h/32, w/32]` for a `[3, h, w]` input.
    pub fn forward(&self, pixels: FeatureMap) -> FeatureMap {
        let conv = |c: &Conv2d, x: &FeatureMap| c.forward(x, Padding::symmetric(c.kernel / 2));
        let x = conv(&self.stem, &pixels);
        let mut x = max_pool(&x, 3, 2, 1);
        for block in &self.blocks {
            let shortcut = match &block.shortcut {
                Some(projection) => conv(projection, &x),
                None => x.clone(),
            };
            for layer in &block.convs {
                x = conv(layer, &x);
            }
            x.add(&shortcut);
            x.data.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        x
    }

    /// Pooled features of one preprocessed picture `[3, h, w]`.
    pub fn embed(&self, pixels: FeatureMap) -> Vec<f32> {
        self.forward(pixels).mean_pool()
    }

    /// Class logits from pooled features, when the checkpoint has its classifier.
    pub fn classify(&self, pooled: &[f32]) -> Option<Vec<f32>> {
        Some(super::linear_head(self.classifier.as_ref()?, pooled))
    }
}
