//! Image preprocessing exactly as each model's reference does it (the Hugging Face image
//! processors, which resize with Pillow): Pillow's separable resampling with its antialiasing
//! (the filter's support widened by the downscale factor), 8-bit fixed-point coefficients and
//! rounding between the horizontal and the vertical pass, centre crops with the reference's
//! offsets, then rescale and normalise into a CHW `f32` tensor.

use serde::{Deserialize, Serialize};

/// A decoded picture: interleaved 8-bit RGB, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width as usize * height as usize * 3, "RGB size");
        Self {
            width,
            height,
            data,
        }
    }

    /// The `width × height` region at (`left`, `top`), which must lie inside the picture.
    pub fn crop(&self, left: u32, top: u32, width: u32, height: u32) -> Rgb {
        assert!(
            left + width <= self.width && top + height <= self.height,
            "crop"
        );
        let mut data = Vec::with_capacity(width as usize * height as usize * 3);
        for y in top..top + height {
            let row = (y as usize * self.width as usize + left as usize) * 3;
            data.extend_from_slice(&self.data[row..row + width as usize * 3]);
        }
        Rgb::new(width, height, data)
    }
}

/// Resampling filters, as Pillow defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    /// Pillow's `resample` codes in `preprocessor_config.json` (2 bilinear, 3 bicubic).
    pub fn from_pil(code: u64) -> Option<Self> {
        match code {
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                // Keys' cubic with a = -0.5, as Pillow.
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's input range and fixed-point weights along an axis.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `input` to `output`.
fn taps(input: usize, output: usize, filter: Filter) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filter_scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| filter.weight((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = (1u64 << PRECISION_BITS) as f64;
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One horizontal pass: every row from `image.width` to `width` columns, rounded to 8 bits.
fn resize_horizontal(image: &Rgb, width: u32, filter: Filter) -> Rgb {
    let (w0, h) = (image.width as usize, image.height as usize);
    let w1 = width as usize;
    let taps = taps(w0, w1, filter);
    let round = 1i64 << (PRECISION_BITS - 1);
    let mut data = vec![0u8; w1 * h * 3];
    for y in 0..h {
        let src = &image.data[y * w0 * 3..(y + 1) * w0 * 3];
        let dst = &mut data[y * w1 * 3..(y + 1) * w1 * 3];
        for (x, t) in taps.iter().enumerate() {
            for c in 0..3 {
                let mut acc = round;
                for (i, &k) in t.weights.iter().enumerate() {
                    acc += src[(t.start + i) * 3 + c] as i64 * k as i64;
                }
                dst[x * 3 + c] = clip8(acc);
            }
        }
    }
    Rgb::new(width, image.height, data)
}

/// One vertical pass: every column from `image.height` to `height` rows, rounded to 8 bits.
fn resize_vertical(image: &Rgb, height: u32, filter: Filter) -> Rgb {
    let (w, h0) = (image.width as usize, image.height as usize);
    let h1 = height as usize;
    let taps = taps(h0, h1, filter);
    let round = 1i64 << (PRECISION_BITS - 1);
    let mut data = vec![0u8; w * h1 * 3];
    for (y, t) in taps.iter().enumerate() {
        let dst = &mut data[y * w * 3..(y + 1) * w * 3];
        for (x, d) in dst.iter_mut().enumerate() {
            let mut acc = round;
            for (i, &k) in t.weights.iter().enumerate() {
                acc += image.data[(t.start + i) * w * 3 + x] as i64 * k as i64;
            }
            *d = clip8(acc);
        }
    }
    Rgb::new(image.width, height, data)
}

/// Resizes like Pillow 13's `Image.resize((width, height), resample)` on an RGB image: two
/// separable passes, each rounded to 8 bits, a pass skipped when its side keeps its size.
/// Pillow runs the vertical pass first when the height shrinks by more than twice what the
/// width shrinks by, else the horizontal one first; the order changes the rounding.
pub fn resize(image: &Rgb, width: u32, height: u32, filter: Filter) -> Rgb {
    let (w0, h0) = (image.width as i64, image.height as i64);
    let (dw, dh) = (w0 - width as i64, h0 - height as i64);
    let vertical_first = dh > 0 && dh > 2 * dw;
    let horizontal = |img: &Rgb| {
        if img.width == width {
            img.clone()
        } else {
            resize_horizontal(img, width, filter)
        }
    };
    let vertical = |img: &Rgb| {
        if img.height == height {
            img.clone()
        } else {
            resize_vertical(img, height, filter)
        }
    };
    if vertical_first {
        horizontal(&vertical(image))
    } else {
        vertical(&horizontal(image))
    }
}

/// How a picture is brought to the model's input size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resize {
    /// The shorter side to `size`, the longer one in proportion (truncated), as
    /// transformers' `get_resize_output_image_size(default_to_square=False)`.
    ShortestEdge { size: u32 },
    /// Stretched to exactly `width × height`.
    Exact { width: u32, height: u32 },
}

/// A model's preprocessing, from its `preprocessor_config.json` or its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Centre crop to this fraction of the shorter side before resizing (TensorFlow's
    /// EfficientNet evaluation crop: `224 / (224 + 32)`), square.
    pub pre_crop: Option<f64>,
    pub resize: Resize,
    pub filter: Filter,
    /// Centre crop after resizing (`width`, `height`).
    pub crop: Option<(u32, u32)>,
    /// Pixel values are multiplied by this first (1/255, or 1 for models that normalise 0..255).
    pub rescale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// A preprocessed picture: `[3, height, width]`, channel planes in RGB order.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Preprocess {
    /// Input size the model sees (`width`, `height`).
    pub fn output_size(&self) -> (u32, u32) {
        match (self.crop, &self.resize) {
            (Some(crop), _) => crop,
            (None, Resize::Exact { width, height }) => (*width, *height),
            (None, Resize::ShortestEdge { size }) => (*size, *size),
        }
    }

    pub fn apply(&self, image: &Rgb) -> Pixels {
        let mut image = std::borrow::Cow::Borrowed(image);
        if let Some(fraction) = self.pre_crop {
            // TensorFlow's `_decode_and_center_crop`: offsets round up.
            let side = (fraction * image.width.min(image.height) as f64) as u32;
            let side = side.max(1);
            let top = (image.height - side).div_ceil(2);
            let left = (image.width - side).div_ceil(2);
            image = std::borrow::Cow::Owned(image.crop(left, top, side, side));
        }
        let (width, height) = match self.resize {
            Resize::Exact { width, height } => (width, height),
            Resize::ShortestEdge { size } => {
                let (w, h) = (image.width as u64, image.height as u64);
                if w <= h {
                    (size, ((size as u64 * h) / w) as u32)
                } else {
                    (((size as u64 * w) / h) as u32, size)
                }
            }
        };
        let mut image = if (width, height) == (image.width, image.height) {
            image.into_owned()
        } else {
            resize(&image, width, height, self.filter)
        };
        if let Some((cw, ch)) = self.crop {
            image = center_crop(&image, cw, ch);
        }
        let (w, h) = (image.width as usize, image.height as usize);
        let mut data = vec![0f32; 3 * w * h];
        for (i, px) in image.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let v = px[c] as f32 * self.rescale;
                data[c * w * h + i] = (v - self.mean[c]) / self.std[c];
            }
        }
        Pixels {
            width: w,
            height: h,
            data,
        }
    }
}

/// The image processors whose `preprocessor_config.json` Mosaic reads, and their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processor {
    /// `CLIPImageProcessor` / `CLIPFeatureExtractor`: shortest edge, centre crop, CLIP mean/std.
    Clip,
    /// `SiglipImageProcessor`: stretched to `height × width`, no crop, mean/std 0.5.
    Siglip,
    /// `ConvNextImageProcessor` (what `microsoft/resnet-50` names): shortest edge to
    /// `size / crop_pct`, then a `size` centre crop; from 384 up, stretched with no crop.
    ConvNext,
    /// `ViTImageProcessor` and `BitImageProcessor` share the generic keys.
    Vit,
    Bit,
}

const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A `size` or `crop_size` entry: an int (a shortest edge or a square, by processor) or
/// `{"shortest_edge"}` / `{"height", "width"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeSpec {
    ShortestEdge(u32),
    Exact(u32, u32),
}

fn size_spec(value: &serde_json::Value, int_is_edge: bool) -> Result<SizeSpec, String> {
    let int = |v: &serde_json::Value| -> Option<u32> { v.as_u64().map(|n| n as u32) };
    if let Some(n) = int(value) {
        return Ok(if int_is_edge {
            SizeSpec::ShortestEdge(n)
        } else {
            SizeSpec::Exact(n, n)
        });
    }
    if let Some(edge) = value.get("shortest_edge").and_then(int) {
        return Ok(SizeSpec::ShortestEdge(edge));
    }
    match (
        value.get("width").and_then(int),
        value.get("height").and_then(int),
    ) {
        (Some(w), Some(h)) => Ok(SizeSpec::Exact(w, h)),
        _ => Err(format!(
            "size {value}: expected an int, {{\"shortest_edge\"}} or {{\"height\", \"width\"}}"
        )),
    }
}

fn triple(value: Option<&serde_json::Value>, default: [f32; 3]) -> Result<[f32; 3], String> {
    let Some(value) = value else {
        return Ok(default);
    };
    if let Some(v) = value.as_f64() {
        return Ok([v as f32; 3]);
    }
    let values: Vec<f32> = value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_f64())
                .map(|v| v as f32)
                .collect()
        })
        .unwrap_or_default();
    values
        .try_into()
        .map_err(|_| format!("{value}: expected three numbers"))
}

impl Preprocess {
    /// The preprocessing a Hugging Face `preprocessor_config.json` describes, with the
    /// defaults transformers' processor class fills in for keys the file leaves out (legacy
    /// files such as `openai/clip-vit-base-patch32`'s write `size` and `crop_size` as ints and
    /// have no `do_rescale`). `fallback` names the processor when the file names none.
    pub fn from_processor_config(
        config: &serde_json::Value,
        fallback: &str,
    ) -> Result<Self, String> {
        let class = config
            .get("image_processor_type")
            .or_else(|| config.get("feature_extractor_type"))
            .and_then(|v| v.as_str())
            .unwrap_or(fallback);
        let processor = if class.starts_with("CLIP") {
            Processor::Clip
        } else if class.starts_with("Siglip") {
            Processor::Siglip
        } else if class.starts_with("ConvNext") {
            Processor::ConvNext
        } else if class.starts_with("ViT") {
            Processor::Vit
        } else if class.starts_with("Bit") {
            Processor::Bit
        } else {
            return Err(format!(
                "image processor `{class}` (supported: CLIP, Siglip, ConvNext, ViT, Bit)"
            ));
        };
        let flag =
            |key: &str, default: bool| config.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
        let (default_size, default_filter, default_mean, default_std) = match processor {
            Processor::Clip | Processor::Bit => (
                SizeSpec::ShortestEdge(224),
                Filter::Bicubic,
                CLIP_MEAN,
                CLIP_STD,
            ),
            Processor::Siglip => (
                SizeSpec::Exact(224, 224),
                Filter::Bicubic,
                [0.5; 3],
                [0.5; 3],
            ),
            Processor::ConvNext => (
                SizeSpec::ShortestEdge(384),
                Filter::Bilinear,
                IMAGENET_MEAN,
                IMAGENET_STD,
            ),
            Processor::Vit => (
                SizeSpec::Exact(224, 224),
                Filter::Bilinear,
                [0.5; 3],
                [0.5; 3],
            ),
        };
        let int_is_edge = matches!(
            processor,
            Processor::Clip | Processor::Bit | Processor::ConvNext
        );
        let size = match config.get("size") {
            Some(v) if !v.is_null() => size_spec(v, int_is_edge)?,
            _ => default_size,
        };
        let filter = match config.get("resample").and_then(|v| v.as_u64()) {
            Some(code) => Filter::from_pil(code).ok_or_else(|| {
                format!("resample {code}: Mosaic has bilinear (2) and bicubic (3)")
            })?,
            None => default_filter,
        };
        let (resize, crop) = if processor == Processor::ConvNext {
            let edge = match size {
                SizeSpec::ShortestEdge(e) => e,
                SizeSpec::Exact(w, h) if w == h => w,
                SizeSpec::Exact(..) => return Err("ConvNext size must be square".into()),
            };
            if edge < 384 {
                let crop_pct = config
                    .get("crop_pct")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(224.0 / 256.0);
                (
                    Resize::ShortestEdge {
                        size: (edge as f64 / crop_pct) as u32,
                    },
                    Some((edge, edge)),
                )
            } else {
                (
                    Resize::Exact {
                        width: edge,
                        height: edge,
                    },
                    None,
                )
            }
        } else {
            let resize = match size {
                SizeSpec::ShortestEdge(size) => Resize::ShortestEdge { size },
                SizeSpec::Exact(width, height) => Resize::Exact { width, height },
            };
            let crop_default = matches!(processor, Processor::Clip | Processor::Bit);
            let crop = if flag("do_center_crop", crop_default) {
                match config.get("crop_size") {
                    Some(v) if !v.is_null() => match size_spec(v, false)? {
                        SizeSpec::Exact(w, h) => Some((w, h)),
                        SizeSpec::ShortestEdge(e) => Some((e, e)),
                    },
                    _ => Some((224, 224)),
                }
            } else {
                None
            };
            (resize, crop)
        };
        let rescale = if flag("do_rescale", true) {
            config
                .get("rescale_factor")
                .and_then(|v| v.as_f64())
                .unwrap_or(1.0 / 255.0) as f32
        } else {
            1.0
        };
        let (mean, std) = if flag("do_normalize", true) {
            (
                triple(config.get("image_mean"), default_mean)?,
                triple(config.get("image_std"), default_std)?,
            )
        } else {
            ([0.0; 3], [1.0; 3])
        };
        Ok(Preprocess {
            pre_crop: None,
            resize: if flag("do_resize", true) {
                resize
            } else {
                return Err("do_resize false: the model's input size would vary".into());
            },
            filter,
            crop,
            rescale,
            mean,
            std,
        })
    }
}

/// transformers' `center_crop`: offsets `(size - crop) // 2`; a side smaller than the crop is
/// padded with zeros around the picture first.
pub fn center_crop(image: &Rgb, width: u32, height: u32) -> Rgb {
    let (w, h) = (image.width, image.height);
    if w >= width && h >= height {
        return image.crop((w - width) / 2, (h - height) / 2, width, height);
    }
    let (pw, ph) = (w.max(width), h.max(height));
    let (px, py) = ((pw - w) / 2, (ph - h) / 2);
    let mut padded = vec![0u8; pw as usize * ph as usize * 3];
    for y in 0..h as usize {
        let src = &image.data[y * w as usize * 3..(y + 1) * w as usize * 3];
        let at = ((y + py as usize) * pw as usize + px as usize) * 3;
        padded[at..at + src.len()].copy_from_slice(src);
    }
    Rgb::new(pw, ph, padded).crop((pw - width) / 2, (ph - height) / 2, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Rgb {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[
                    (x * 255 / w.max(1)) as u8,
                    (y * 255 / h.max(1)) as u8,
                    ((x + y) % 256) as u8,
                ]);
            }
        }
        Rgb::new(w, h, data)
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (input, output) in [(97, 32), (61, 224), (224, 224), (500, 7)] {
            for filter in [Filter::Bilinear, Filter::Bicubic] {
                for t in taps(input, output, filter) {
                    let sum: i64 = t.weights.iter().map(|&w| w as i64).sum();
                    assert!((sum - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i64);
                }
            }
        }
    }

    #[test]
    fn a_flat_picture_stays_flat_and_same_size_is_identity() {
        let flat = Rgb::new(40, 30, vec![77; 40 * 30 * 3]);
        let small = resize(&flat, 13, 9, Filter::Bicubic);
        assert!(small.data.iter().all(|&v| v == 77));
        let g = gradient(20, 10);
        assert_eq!(resize(&g, 20, 10, Filter::Bicubic), g);
    }

    #[test]
    fn shortest_edge_keeps_the_aspect_ratio_and_crops_centrally() {
        let p = Preprocess {
            pre_crop: None,
            resize: Resize::ShortestEdge { size: 32 },
            filter: Filter::Bicubic,
            crop: Some((32, 32)),
            rescale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let out = p.apply(&gradient(97, 61));
        assert_eq!((out.width, out.height), (32, 32));
        assert_eq!(p.output_size(), (32, 32));
        // A crop bigger than the picture pads it.
        let tiny = center_crop(&gradient(3, 3), 5, 5);
        assert_eq!((tiny.width, tiny.height), (5, 5));
        assert_eq!(&tiny.data[..3], &[0, 0, 0]);
    }
}
