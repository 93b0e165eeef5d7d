//! Parity of the candle CNN14 against `panns_inference.models.Cnn14` (PyTorch).
//!
//! Fixtures come from `scripts/make_cnn14_fixtures.py`. The full-size reference network
//! is filled from a counter-based formula (reproduced here bit for bit), written to a
//! temporary safetensors file and loaded through `Cnn14::load`. A tiny-width CNN14 is
//! committed as `.pth` in both torch formats (legacy and zip, state dict under `model`)
//! to exercise the PyTorch checkpoint path end to end.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mosaic::embed::cnn14::{
    Cnn14, Cnn14Error, LogMel, EMBEDDING_DIM, MEL_BINS, MIN_SAMPLES, SAMPLE_RATE,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/cnn14")
}

pub fn fixture() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("parity.json")).expect("parity.json");
    serde_json::from_str(&text).expect("valid json")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

// --- the fixture formula (see FORMULA_DOC in scripts/make_cnn14_fixtures.py) ---

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// f64 values in [-1, 1): `((splitmix64(seed + (i + 1) * golden) >> 40) - 2^23) / 2^23`.
fn uniform_pm1(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let seed = fnv1a64(name);
    (0..n as u64).map(move |i| {
        let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 40) as f64 - 8_388_608.0) / 8_388_608.0
    })
}

fn formula_tensor(name: &str, shape: &[usize], center: f64, half_width: f64) -> Tensor {
    let n = shape.iter().product();
    let data: Vec<f32> = uniform_pm1(name, n)
        .map(|u| (center + half_width * u) as f32)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")
}

/// The formula-filled state dict described by the fixture's `params` table.
pub fn deterministic_state_dict(fx: &Value) -> HashMap<String, Tensor> {
    fx["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name");
            let shape: Vec<usize> = p["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let t = formula_tensor(
                name,
                &shape,
                p["center"].as_f64().expect("center"),
                p["half_width"].as_f64().expect("half_width"),
            );
            (name.to_string(), t)
        })
        .collect()
}

fn waveform() -> Vec<f32> {
    let n = 64_000;
    let noise: Vec<f64> = uniform_pm1("waveform", n).collect();
    let two_pi = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(SAMPLE_RATE);
            let env = 0.6 + 0.4 * (two_pi * 1.5 * t).sin();
            let x = 0.5 * env * (two_pi * 440.0 * t).sin()
                + 0.25 * (two_pi * 1234.5 * t + 0.3).sin()
                + 0.1 * (two_pi * (3000.0 + 2000.0 * t) * t).sin()
                + 0.05 * noise[i];
            x as f32
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn waveform_matches_fixture() {
    let fx = fixture();
    let wav = waveform();
    assert_eq!(
        wav.len() as u64,
        fx["waveform"]["len"].as_u64().expect("len")
    );
    let head = f32s(&fx["waveform"]["head"]);
    assert!(max_abs_diff(&wav[..head.len()], &head) < 1e-7);
    let sum: f64 = wav.iter().map(|&x| f64::from(x)).sum();
    let sum_sq: f64 = wav.iter().map(|&x| f64::from(x).powi(2)).sum();
    assert!((sum - fx["waveform"]["sum"].as_f64().expect("sum")).abs() < 1e-4);
    assert!((sum_sq - fx["waveform"]["sum_sq"].as_f64().expect("sum_sq")).abs() < 1e-4);
}

#[test]
fn log_mel_matches_torchlibrosa() {
    let fx = fixture();
    let wav = waveform();
    let got = LogMel::new().compute(&wav).expect("log-mel");
    let frames = fx["log_mel"]["frames"].as_u64().expect("frames") as usize;
    assert_eq!(frames, LogMel::num_frames(wav.len()));
    assert_eq!(got.len(), frames * MEL_BINS);
    let want = f32s(&fx["log_mel"]["values"]);
    let err = max_abs_diff(&got, &want);
    eprintln!("log-mel max abs err {err:.3e} dB");
    assert!(err < 1e-3, "log-mel max abs err {err}");
}

#[test]
fn full_size_embedding_matches_panns() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cnn14_formula.safetensors");
    candle_core::safetensors::save(&deterministic_state_dict(&fx), &path).expect("save");
    let model = Cnn14::load(&path, &Device::Cpu).expect("load");
    assert_eq!(model.embedding_dim(), EMBEDDING_DIM);
    assert_eq!(model.num_classes(), Some(527));

    let wav = waveform();
    let emb = model.embed(&wav).expect("embed");
    let want = f32s(&fx["embedding"]);
    let (cos, err) = (cosine(&emb, &want), max_abs_diff(&emb, &want));
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("embedding cosine {cos:.9}, max abs err {err:.3e} (max |ref| {scale:.3})");
    assert!(cos > 0.9999, "cosine {cos}");
    assert!(err < 1e-3 * scale.max(1.0), "max abs err {err}");

    let clip = model.clipwise_output(&wav).expect("clipwise");
    let clip_err = max_abs_diff(&clip, &f32s(&fx["clipwise_output"]));
    eprintln!("clipwise max abs err {clip_err:.3e}");
    assert!(clip_err < 1e-4, "clipwise max abs err {clip_err}");

    // Batched path agrees with the single-window path.
    let batch = model
        .embed_batch(&[wav.clone(), wav[..MIN_SAMPLES].to_vec(), wav.clone()])
        .expect("batch");
    assert_eq!(batch.len(), 3);
    assert!(max_abs_diff(&batch[0], &emb) < 1e-5);
    assert!(max_abs_diff(&batch[2], &emb) < 1e-5);
    let short = model.embed(&wav[..MIN_SAMPLES]).expect("short");
    assert!(max_abs_diff(&batch[1], &short) < 1e-5);
}

#[test]
fn tiny_pth_checkpoints_match_panns() {
    let fx = fixture();
    let tiny = &fx["tiny"];
    let want_emb = f32s(&tiny["embedding"]);
    let want_clip = f32s(&tiny["clipwise_output"]);
    let wav = waveform();
    for file in tiny["files"].as_array().expect("files") {
        let path = fixture_dir().join(file.as_str().expect("file"));
        let model = Cnn14::load(&path, &Device::Cpu).expect("load pth");
        assert_eq!(model.embedding_dim(), want_emb.len());
        let emb = model.embed(&wav).expect("embed");
        let (cos, err) = (cosine(&emb, &want_emb), max_abs_diff(&emb, &want_emb));
        let clip_err = max_abs_diff(&model.clipwise_output(&wav).expect("clip"), &want_clip);
        eprintln!("{file}: cosine {cos:.9}, max abs err {err:.3e}, clipwise err {clip_err:.3e}");
        assert!(cos > 0.9999 && err < 1e-4 && clip_err < 1e-5, "{file}");
    }
}

#[test]
fn rejects_bad_audio() {
    let path = fixture_dir().join("tiny_zip.pth");
    let model = Cnn14::load(&path, &Device::Cpu).expect("load");
    assert!(matches!(
        model.embed(&vec![0.0; MIN_SAMPLES - 1]),
        Err(Cnn14Error::TooShort { .. })
    ));
    let mut wav = vec![0.0; MIN_SAMPLES];
    wav[5] = f32::NAN;
    assert!(matches!(model.embed(&wav), Err(Cnn14Error::NonFinite(5))));
}

#[test]
fn mel_filterbank_matches_librosa() {
    // tiny_legacy.pth keeps torchlibrosa's `logmel_extractor.melW` ([513, 64]), i.e.
    // librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    let sd = mosaic::embed::cnn14::load_state_dict(&fixture_dir().join("tiny_legacy.pth"))
        .expect("load");
    let mel_w = sd
        .get("logmel_extractor.melW")
        .expect("melW")
        .t()
        .expect("t")
        .to_vec2::<f32>()
        .expect("vec");
    let ours =
        mosaic::embed::cnn14::mel_filterbank(f64::from(SAMPLE_RATE), 1024, MEL_BINS, 50.0, 14000.0);
    let err = mel_w
        .iter()
        .flatten()
        .zip(ours.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("mel filterbank max abs err {err:.3e}");
    assert!(err <= 1e-7, "mel filterbank max abs err {err}");
}

/// The formula network with its batch norms fitted to `windows` (32 kHz, equal lengths):
/// data-dependent initialisation, so every batch norm normalises what reaches it the way
/// trained statistics do. Still untrained, but its embeddings tell sounds apart instead of
/// collapsing onto one direction (cosine > 0.99 between any two inputs with the raw formula).
pub fn calibrated_state_dict(windows: &[Vec<f32>]) -> HashMap<String, Tensor> {
    let mut sd = deterministic_state_dict(&fixture());
    let dev = Device::Cpu;
    let mel = LogMel::new();
    let frames = LogMel::num_frames(windows[0].len());
    let mut data = Vec::new();
    for w in windows {
        data.extend(mel.compute(w).expect("log-mel"));
    }
    let x = Tensor::from_vec(data, (windows.len(), 1, frames, MEL_BINS), &dev).expect("input");
    let set_bn = |sd: &mut HashMap<String, Tensor>, prefix: &str, mean: &Tensor, var: &Tensor| {
        let n = mean.dims1().expect("1-d");
        sd.insert(format!("{prefix}.running_mean"), mean.clone());
        sd.insert(format!("{prefix}.running_var"), var.clone());
        sd.insert(
            format!("{prefix}.weight"),
            Tensor::ones(n, candle_core::DType::F32, &dev).expect("ones"),
        );
        sd.insert(
            format!("{prefix}.bias"),
            Tensor::zeros(n, candle_core::DType::F32, &dev).expect("zeros"),
        );
    };
    // bn0 normalises each mel bin (the last dim of [batch, 1, frames, mel]).
    let (mean, var) = channel_stats(&x, 3);
    set_bn(&mut sd, "bn0", &mean, &var);
    let mut x = normalize(&x, &mean, &var, 3);
    for i in 1..=6 {
        for j in 1..=2 {
            let w = sd[&format!("conv_block{i}.conv{j}.weight")].clone();
            let y = x.conv2d(&w, 1, 1, 1, 1).expect("conv");
            let (mean, var) = channel_stats(&y, 1);
            set_bn(&mut sd, &format!("conv_block{i}.bn{j}"), &mean, &var);
            x = normalize(&y, &mean, &var, 1).relu().expect("relu");
        }
        if i < 6 {
            x = x.avg_pool2d((2, 2)).expect("pool");
        }
    }
    sd
}

/// Mean and biased variance of `x` for each index of `dim`, over every other dim.
fn channel_stats(x: &Tensor, dim: usize) -> (Tensor, Tensor) {
    let moved = x.transpose(0, dim).expect("t").contiguous().expect("c");
    let c = moved.dims()[0];
    let flat = moved.reshape((c, ())).expect("reshape");
    let mean = flat.mean(1).expect("mean");
    let var = flat
        .broadcast_sub(&mean.unsqueeze(1).expect("u"))
        .expect("sub")
        .sqr()
        .expect("sqr")
        .mean(1)
        .expect("var");
    (mean, var)
}

fn normalize(x: &Tensor, mean: &Tensor, var: &Tensor, dim: usize) -> Tensor {
    let mut shape = vec![1; x.rank()];
    shape[dim] = mean.dims1().expect("1-d");
    let m = mean.reshape(shape.clone()).expect("m");
    let s = (var + 1e-5)
        .expect("eps")
        .sqrt()
        .expect("sqrt")
        .reshape(shape)
        .expect("s");
    x.broadcast_sub(&m)
        .expect("sub")
        .broadcast_div(&s)
        .expect("div")
}
