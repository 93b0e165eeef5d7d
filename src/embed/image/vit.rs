//! The pre-norm transformer both CLIP and SigLIP build their towers from (`x += attn(ln1(x))`,
//! `x += mlp(ln2(x))`, transformers' `CLIPEncoderLayer` / `SiglipEncoderLayer` names), on the
//! kernels the text encoder uses: packed sequences with no padding, fused q|k|v products on the
//! machine's product path, attention per (sequence, head), causal for CLIP's text tower.

use super::efficientnet::StateDict;
use super::Result;
use crate::kernels::path::{Linear, ProductPath};
use crate::kernels::{self, conv::Conv2d, conv::FeatureMap, conv::Padding, Activation};

/// A layer norm's parameters.
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl Norm {
    pub fn load(w: &mut StateDict, prefix: &str, hidden: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: w.take(&format!("{prefix}.weight"), &[hidden])?,
            beta: w.take(&format!("{prefix}.bias"), &[hidden])?,
            eps: eps as f32,
        })
    }

    /// Normalises each `hidden`-wide row of `x` in place.
    pub fn apply(&self, x: &mut [f32]) {
        kernels::layer_norm(x, &self.gamma, &self.beta, self.eps);
    }
}

/// A linear layer `prefix.weight` `[outputs × inputs]` with `prefix.bias` (zeros when the
/// checkpoint has none: CLIP's projections).
pub fn linear(w: &mut StateDict, prefix: &str, inputs: usize, outputs: usize) -> Result<Linear> {
    let weight = w.take(&format!("{prefix}.weight"), &[outputs, inputs])?;
    let bias_name = format!("{prefix}.bias");
    let bias = if w.has(&bias_name) {
        w.take(&bias_name, &[outputs])?
    } else {
        vec![0.0; outputs]
    };
    Ok(Linear::new(weight, bias))
}

/// `out = x · wᵀ + b` for `t` rows, on the f32 path (projections and heads: one row per
/// picture or text).
pub fn apply(layer: &Linear, x: &[f32], t: usize, activation: Option<Activation>) -> Vec<f32> {
    apply_on(ProductPath::default_f32(), layer, x, t, activation)
}

/// `out = x · wᵀ + b` for `t` rows on `path`.
fn apply_on(
    path: ProductPath,
    layer: &Linear,
    x: &[f32],
    t: usize,
    activation: Option<Activation>,
) -> Vec<f32> {
    let mut out = vec![0f32; t * layer.outputs()];
    layer.forward_into(path, x, t, activation, &mut out);
    out
}

/// The activation a `hidden_act` names.
pub fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "quick_gelu" => Activation::QuickGelu,
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => {
            return Err(super::ImageModelError::Unsupported(format!(
                "hidden_act `{other}`"
            )))
        }
    })
}

/// The sizes of one tower.
#[derive(Debug, Clone, Copy)]
pub struct TowerShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub eps: f64,
    pub activation: Activation,
}

struct Layer {
    norm1: Norm,
    qkv: Linear,
    out: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
}

/// A stack of pre-norm transformer layers, its products on one [`ProductPath`] (the default
/// f32 path until [`Transformer::use_path`]).
pub struct Transformer {
    shape: TowerShape,
    layers: Vec<Layer>,
    causal: bool,
    path: ProductPath,
}

impl Transformer {
    /// Loads `prefix.layers.{i}` (`self_attn.{q,k,v,out}_proj`, `layer_norm{1,2}`,
    /// `mlp.fc{1,2}`).
    pub fn load(w: &mut StateDict, prefix: &str, shape: TowerShape, causal: bool) -> Result<Self> {
        let h = shape.hidden;
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let p = format!("{prefix}.layers.{i}");
            let parts = ["q_proj", "k_proj", "v_proj"]
                .iter()
                .map(|name| linear(w, &format!("{p}.self_attn.{name}"), h, h))
                .collect::<Result<Vec<_>>>()?;
            let qkv = Linear::new(
                parts
                    .iter()
                    .flat_map(|l| l.weight().unwrap_or_default().iter().copied())
                    .collect(),
                parts.iter().flat_map(|l| l.bias.iter().copied()).collect(),
            );
            layers.push(Layer {
                norm1: Norm::load(w, &format!("{p}.layer_norm1"), h, shape.eps)?,
                qkv,
                out: linear(w, &format!("{p}.self_attn.out_proj"), h, h)?,
                norm2: Norm::load(w, &format!("{p}.layer_norm2"), h, shape.eps)?,
                fc1: linear(w, &format!("{p}.mlp.fc1"), h, shape.intermediate)?,
                fc2: linear(w, &format!("{p}.mlp.fc2"), shape.intermediate, h)?,
            });
        }
        if w.has(&format!(
            "{prefix}.layers.{}.layer_norm1.weight",
            shape.layers
        )) {
            return Err(super::ImageModelError::Unsupported(format!(
                "{prefix} has more than the {} layers its config names",
                shape.layers
            )));
        }
        Ok(Self {
            shape,
            layers,
            causal,
            path: ProductPath::default_f32(),
        })
    }

    /// The path the layers' products run on.
    pub fn path(&self) -> ProductPath {
        self.path
    }

    fn linears(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers
            .iter_mut()
            .flat_map(|l| [&mut l.qkv, &mut l.out, &mut l.fc1, &mut l.fc2])
    }

    /// Runs the products on `path` from now on, building the weight forms it needs (the
    /// others are kept until [`Transformer::keep_only_path`]).
    pub fn use_path(&mut self, path: ProductPath) -> std::result::Result<(), String> {
        for layer in self.linears() {
            layer.prepare(path)?;
        }
        self.path = path;
        Ok(())
    }

    /// Frees every weight form the current path does not use.
    pub fn keep_only_path(&mut self) {
        let path = self.path;
        for layer in self.linears() {
            layer.keep_only(path);
        }
    }

    /// Runs every layer over packed sequences `x` (`[t × hidden]`; `spans` are each
    /// sequence's first row and length).
    pub fn forward(&self, x: &mut [f32], spans: &[(usize, usize)]) {
        let h = self.shape.hidden;
        let t = x.len() / h;
        let apply = |layer: &Linear, x: &[f32], t: usize, activation: Option<Activation>| {
            apply_on(self.path, layer, x, t, activation)
        };
        for layer in &self.layers {
            let mut normed = x.to_vec();
            layer.norm1.apply(&mut normed);
            let qkv = apply(&layer.qkv, &normed, t, None);
            let mut context = vec![0f32; t * h];
            kernels::attention_masked(&qkv, h, self.shape.heads, spans, self.causal, &mut context);
            let attended = apply(&layer.out, &context, t, None);
            x.iter_mut().zip(&attended).for_each(|(v, a)| *v += a);
            let mut normed = x.to_vec();
            layer.norm2.apply(&mut normed);
            let inner = apply(&layer.fc1, &normed, t, Some(self.shape.activation));
            let out = apply(&layer.fc2, &inner, t, None);
            x.iter_mut().zip(&out).for_each(|(v, o)| *v += o);
        }
    }
}

/// A ViT patch embedding: `Conv2d(3, hidden, patch, stride = patch)`, its output read row by
/// row over the patch grid into `[patches × hidden]`.
pub struct Patches {
    conv: Conv2d,
    pub patch: usize,
}

impl Patches {
    pub fn load(w: &mut StateDict, prefix: &str, hidden: usize, patch: usize) -> Result<Self> {
        let weight = w.take(&format!("{prefix}.weight"), &[hidden, 3, patch, patch])?;
        let bias_name = format!("{prefix}.bias");
        let bias = if w.has(&bias_name) {
            Some(w.take(&bias_name, &[hidden])?)
        } else {
            None
        };
        Ok(Self {
            conv: Conv2d::dense(weight, bias, hidden, 3, patch, patch),
            patch,
        })
    }

    /// The patch tokens of a `[3, h, w]` picture and their count.
    pub fn embed(&self, pixels: &FeatureMap) -> (Vec<f32>, usize) {
        let map = self.conv.forward(pixels, Padding::symmetric(0));
        let (c, n) = (map.c, map.h * map.w);
        let mut tokens = vec![0f32; n * c];
        for ch in 0..c {
            for p in 0..n {
                tokens[p * c + ch] = map.data[ch * n + p];
            }
        }
        (tokens, n)
    }
}
