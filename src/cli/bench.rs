//! `mosaic bench`: embedding and query speed measured the way ingestion and search run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;

use crate::app::Mosaic;
use crate::config::Settings;
use crate::embed::encoder::{choose, resolve_dtype, Encoder, TokenBatch};
use crate::embed::{Purpose, TextEmbedder};
use crate::kernels::path::ProductPath;
use crate::models::{ModelStore, TextModelSpec};
use crate::query::SearchRequest;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Embedding throughput of a text model.
    Embed {
        #[arg(long, default_value = "sentence-transformers/all-MiniLM-L6-v2")]
        model: String,
        /// JSON array of strings, or one text per line.
        #[arg(long)]
        texts: PathBuf,
        /// Token budget per batch (real tokens: batches are packed without padding).
        #[arg(long, default_value_t = 8192)]
        batch_tokens: usize,
        /// At most this many texts per batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Compute threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Timed passes over all texts.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Product paths to measure: "all" (every path this machine offers, side by side,
        /// with what `auto` would choose), or one `dtype` setting (auto, f32, bf16, a path id).
        #[arg(long, default_value = "all")]
        dtype: String,
    },
    /// Cross-encoder throughput: score every text against one query.
    Rerank {
        #[arg(long, default_value = "cross-encoder/ms-marco-MiniLM-L-6-v2")]
        model: String,
        #[arg(long)]
        query: String,
        /// JSON array of strings, or one text per line.
        #[arg(long)]
        texts: PathBuf,
        #[arg(long, default_value_t = 8192)]
        batch_tokens: usize,
        #[arg(long)]
        threads: Option<usize>,
        /// Product paths to measure: "all", or one `dtype` setting (auto, f32, bf16, a path id).
        #[arg(long, default_value = "all")]
        dtype: String,
    },
    /// Speech: decode+resample, raw whisper.cpp on the whole decoded buffer (as the whisper-rs
    /// example runs it), and Mosaic's pipeline (stream, windows, time snapping), as real-time
    /// factors on one recording.
    Transcribe {
        /// Any recording FFmpeg reads.
        #[arg(long)]
        audio: PathBuf,
        /// Whisper model name (ggml-<name>.bin); default from pipelines/audio.toml.
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// CNN14 windows per second (10 s windows of a recording, as ingestion embeds them).
    AudioEmbed {
        #[arg(long)]
        audio: PathBuf,
        /// A CNN14 checkpoint; default from pipelines/audio.toml. With `--random-weights` no
        /// checkpoint is needed (speed does not depend on the weights).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        random_weights: bool,
    },
    /// Image embedding: decode + preprocess and the network's forward pass, images per second
    /// for each model named (installed ids or model folders), on the pictures of a folder.
    Image {
        /// A folder of pictures (or one picture).
        #[arg(long)]
        images: PathBuf,
        /// Models to measure; default: the one in pipelines/image.toml.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Timed passes over all pictures (after one warm-up picture).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Product paths of the CLIP/SigLIP towers: "all" (each one this machine offers,
        /// with what `auto` would choose), or one `dtype` setting (auto, f32, bf16, a path
        /// id). The convolutional networks run f32.
        #[arg(long, default_value = "all")]
        dtype: String,
    },
    /// Video frame sampling: the first pass (every frame decoded and scored, or key frames
    /// only), the second (the kept frames as RGB) and embedding the kept frames, on one file.
    Video {
        #[arg(long)]
        video: PathBuf,
        /// Key frames only (the fast mode), whatever video.toml says.
        #[arg(long)]
        keyframes: bool,
        /// Also embed the kept frames with the picture model of image.toml.
        #[arg(long)]
        embed: bool,
    },
    /// Query latency of `search` on the current index.
    Search {
        /// JSON array of strings or of objects with a "question" field.
        #[arg(long)]
        queries: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        no_rerank: bool,
    },
    /// A running `mosaic serve` over HTTP, as its clients see it: `/v1/search` latency
    /// (p50/p95/p99) and throughput at each concurrency, streamed chat time to first token,
    /// and `/v1/embeddings` throughput.
    Serve {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8400")]
        url: String,
        /// A read key, when the server has keys.
        #[arg(long, env = "MOSAIC_API_KEY")]
        key: Option<String>,
        /// JSON array of strings or of objects with a "question" field.
        #[arg(long)]
        queries: PathBuf,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        concurrency: Vec<usize>,
        /// Searches per concurrency level.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// Streamed chats, one at a time (0 skips the chat measurement).
        #[arg(long, default_value_t = 10)]
        chats: usize,
        /// Texts for `/v1/embeddings` (JSON array or one per line); without it, skipped.
        #[arg(long)]
        texts: Option<PathBuf>,
        /// Texts per `/v1/embeddings` request.
        #[arg(long, default_value_t = 256)]
        embed_batch: usize,
    },
}

fn read_texts(path: &PathBuf) -> Result<Vec<String>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(&raw) {
        return Ok(values
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Object(o) => o
                    .get("question")
                    .or_else(|| o.get("text"))
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                _ => None,
            })
            .collect());
    }
    Ok(raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Peak resident memory of this process in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// Sizes the compute thread pool; must run before any model work.
fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("setting the thread count")?;
    }
    Ok(())
}

/// The paths a bench run measures for `dtype`, and what `auto` chose on the probe batch
/// (always measured afresh here).
fn bench_paths(
    encoder: &mut Encoder,
    model: &str,
    dtype: &str,
    probe: &TokenBatch,
) -> Result<(Vec<ProductPath>, serde_json::Value)> {
    let measures = encoder
        .measure_paths(probe)
        .map_err(|e| anyhow::anyhow!(e))?;
    let chosen = choose(&measures).map(|m| m.path);
    let auto = json!({
        "path": chosen.map(ProductPath::id),
        "products": chosen.map(ProductPath::describe),
        "probe": measures.iter().map(|m| json!({
            "path": m.path.id(), "tokens_per_s": m.per_s, "worst_cosine": m.worst_cosine,
        })).collect::<Vec<_>>(),
    });
    let paths = if dtype == "all" {
        ProductPath::all_available()
    } else {
        vec![resolve_dtype(model, dtype, chosen).map_err(|e| anyhow::anyhow!(e))?]
    };
    Ok((paths, auto))
}

/// The CPU this runs on and the features the paths depend on.
fn cpu_report() -> serde_json::Value {
    let (model, flags) = crate::embed::paths::cpu();
    let features: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| {
            f.starts_with("avx") || f.starts_with("amx") || matches!(*f, "fma" | "f16c" | "sse4_2")
        })
        .collect();
    json!({
        "model": model,
        "features": features,
        "libraries": crate::kernels::blas::loaded().iter().map(|b| b.name()).collect::<Vec<_>>(),
        "skipped_paths": ProductPath::unavailable().iter()
            .map(|(p, why)| format!("{}: {why}", p.id())).collect::<Vec<_>>(),
    })
}

fn worst_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| crate::embed::encoder::cosine(x, y))
        .fold(1.0, f64::min)
}

/// The pipelines a run would use (`--pipelines`, else ./pipelines, else the built-in ones).
fn load_pipelines(settings: &Settings) -> Result<crate::pipeline::Pipelines> {
    let dir = settings
        .pipelines_dir
        .clone()
        .or_else(|| Some(PathBuf::from("pipelines")).filter(|p| p.is_dir()));
    Ok(crate::pipeline::Pipelines::load(dir.as_deref())?)
}

/// Deterministic pseudo-random values (xorshift) in `center ± width / 2`.
fn pseudo_random(seed: &mut u64, n: usize, center: f32, width: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            center + width * ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        })
        .collect()
}

/// A full-size CNN14 filled with deterministic pseudo-random weights (for timing only).
fn random_cnn14() -> Result<crate::embed::cnn14::Cnn14> {
    use candle_core::{Device, Tensor};
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut tensors = std::collections::HashMap::new();
    let mut bn = |prefix: &str, n: usize, seed: &mut u64| -> Result<()> {
        for (leaf, center, width) in [
            ("weight", 1.0, 0.2),
            ("bias", 0.0, 0.2),
            ("running_mean", 0.0, 0.2),
            ("running_var", 1.0, 0.5),
        ] {
            let v = pseudo_random(seed, n, center, width);
            tensors.insert(
                format!("{prefix}.{leaf}"),
                Tensor::from_vec(v, n, &Device::Cpu)?,
            );
        }
        Ok(())
    };
    bn("bn0", 64, &mut seed)?;
    let widths = [1usize, 64, 128, 256, 512, 1024, 2048];
    let mut convs = Vec::new();
    for i in 1..=6 {
        for (j, (c_in, c_out)) in [(widths[i - 1], widths[i]), (widths[i], widths[i])]
            .into_iter()
            .enumerate()
        {
            let w = pseudo_random(
                &mut seed,
                c_out * c_in * 9,
                0.0,
                (6.0 / (c_in * 9) as f32).sqrt(),
            );
            convs.push((
                format!("conv_block{i}.conv{}.weight", j + 1),
                w,
                (c_out, c_in, 3, 3),
            ));
            bn(&format!("conv_block{i}.bn{}", j + 1), c_out, &mut seed)?;
        }
    }
    for (name, w, shape) in convs {
        tensors.insert(name, Tensor::from_vec(w, shape, &Device::Cpu)?);
    }
    let w = pseudo_random(&mut seed, 2048 * 2048, 0.0, 0.05);
    tensors.insert(
        "fc1.weight".into(),
        Tensor::from_vec(w, (2048, 2048), &Device::Cpu)?,
    );
    let b = pseudo_random(&mut seed, 2048, 0.0, 0.1);
    tensors.insert("fc1.bias".into(), Tensor::from_vec(b, 2048, &Device::Cpu)?);
    Ok(crate::embed::cnn14::Cnn14::from_tensors(
        tensors,
        &Device::Cpu,
    )?)
}

pub async fn run(what: BenchCommand, settings: Settings, as_json: bool) -> Result<ExitCode> {
    match what {
        BenchCommand::Transcribe {
            audio,
            model,
            threads,
        } => {
            let pipelines = load_pipelines(&settings)?;
            let name = model.unwrap_or_else(|| pipelines.audio.transcribe.model.clone());
            let store = ModelStore::new(&settings.models.dir);
            let path = store.require_whisper(&name)?;
            let mut options = pipelines.audio.transcribe_options();
            if let Some(t) = threads {
                options.threads = t;
            }
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                use crate::transcribe::{whisper::SAMPLE_RATE, Whisper};
                let whisper = Whisper::load(&path)?;
                let t = Instant::now();
                let (samples, decoded) = crate::media::decode::decode_all(&audio, SAMPLE_RATE)?;
                let decode_s = t.elapsed().as_secs_f64();
                let duration_s = samples.len() as f64 / SAMPLE_RATE as f64;
                let raw_options = crate::transcribe::TranscribeOptions {
                    refine_times: false,
                    ..options.clone()
                };
                let t = Instant::now();
                let (raw, _) = whisper.transcribe_samples(&samples, 0, &raw_options)?;
                let raw_s = t.elapsed().as_secs_f64();
                let encoder = whisper.time_encoder(&samples, options.threads, 3)?;
                drop(samples);
                let t = Instant::now();
                let piped = whisper.transcribe_file(&audio, &options, &mut |_, _| {})?;
                let pipeline_s = t.elapsed().as_secs_f64();
                Ok(json!({
                    "audio": audio, "model": name, "threads": options.threads,
                    "codec": decoded.info.codec, "duration_s": duration_s,
                    "decode_s": decode_s, "decode_rtf": decode_s / duration_s,
                    "whisper_raw_s": raw_s, "whisper_raw_rtf": raw_s / duration_s,
                    "pipeline_s": pipeline_s, "pipeline_rtf": pipeline_s / duration_s,
                    "overhead_vs_decode_plus_raw": pipeline_s / (decode_s + raw_s) - 1.0,
                    "encoder_30s_s": encoder.encode_s, "mel_30s_s": encoder.mel_s,
                    "segments_raw": raw.len(), "segments_pipeline": piped.segments.len(),
                    "text": piped.segments.iter().map(|s| s.text.trim()).collect::<Vec<_>>().join(" "),
                }))
            })
            .await??;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} ({:.1} s, {}), whisper {} on {} threads\n  decode+resample  {:>7.2} s  RTF {:.4}\n  whisper.cpp raw  {:>7.2} s  RTF {:.4}\n  mosaic pipeline  {:>7.2} s  RTF {:.4}  ({:+.1}% vs decode + raw)\n  whisper.cpp's encoder, one 30 s span {:.3} s (log-mel {:.3} s)",
                    report["audio"].as_str().unwrap_or_default(),
                    report["duration_s"].as_f64().unwrap_or_default(),
                    report["codec"].as_str().unwrap_or_default(),
                    report["model"].as_str().unwrap_or_default(),
                    report["threads"],
                    report["decode_s"].as_f64().unwrap_or_default(),
                    report["decode_rtf"].as_f64().unwrap_or_default(),
                    report["whisper_raw_s"].as_f64().unwrap_or_default(),
                    report["whisper_raw_rtf"].as_f64().unwrap_or_default(),
                    report["pipeline_s"].as_f64().unwrap_or_default(),
                    report["pipeline_rtf"].as_f64().unwrap_or_default(),
                    100.0 * report["overhead_vs_decode_plus_raw"].as_f64().unwrap_or_default(),
                    report["encoder_30s_s"].as_f64().unwrap_or_default(),
                    report["mel_30s_s"].as_f64().unwrap_or_default(),
                );
            }
        }
        BenchCommand::Image {
            images,
            models,
            repeat,
            dtype,
        } => {
            let pipelines = load_pipelines(&settings)?;
            let models = if models.is_empty() {
                vec![pipelines.image.embedder.model.clone()]
            } else {
                models
            };
            let store = ModelStore::new(&settings.models.dir);
            let mut files: Vec<PathBuf> = if images.is_dir() {
                std::fs::read_dir(&images)?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && crate::media::image::is_picture_extension(p))
                    .collect()
            } else {
                vec![images.clone()]
            };
            files.sort();
            anyhow::ensure!(!files.is_empty(), "no pictures in {}", images.display());
            let max_pixels = pipelines.image.decode.max_pixels;
            let mut reports = Vec::new();
            for id in models {
                let dir = if std::path::Path::new(&id).is_dir() {
                    PathBuf::from(&id)
                } else {
                    store.require(&id)?
                };
                let (files, dtype) = (files.clone(), dtype.clone());
                let rows =
                    tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>> {
                        use crate::embed::image::{ImageModel, BATCH};
                        use crate::embed::paths::PathModel;
                        let mut model = ImageModel::load(&id, &dir)?;
                        let t = Instant::now();
                        let decoded = files
                            .iter()
                            .map(|f| crate::media::image::decode_file(f, max_pixels).map(|p| p.rgb))
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        let decode_s = t.elapsed().as_secs_f64();
                        // The paths: every one this machine offers for the ViT towers ("all"), or
                        // the one the setting names; what `auto` picks on its probe is measured
                        // afresh and reported beside them.
                        let (paths, auto) = if model.switches_paths() {
                            let probe = model.probe();
                            let measures = model
                                .measure_paths(&probe)
                                .map_err(|e| anyhow::anyhow!(e))?;
                            let chosen = choose(&measures).map(|m| m.path);
                            let paths = if dtype == "all" {
                                ProductPath::all_available()
                            } else {
                                vec![resolve_dtype(&id, &dtype, chosen)
                                    .map_err(|e| anyhow::anyhow!(e))?]
                            };
                            (paths, chosen)
                        } else {
                            (vec![ProductPath::default_f32()], None)
                        };
                        let mut reference: Option<Vec<Vec<f32>>> = None;
                        let mut rows = Vec::new();
                        for path in paths {
                            model.use_path(path).map_err(|e| anyhow::anyhow!(e))?;
                            let _ = model.embed(&decoded[..1]);
                            let (mut preprocess_s, mut forward_s) = (0.0, 0.0);
                            let mut embeddings = Vec::new();
                            for _ in 0..repeat.max(1) {
                                let t = Instant::now();
                                let pixels: Vec<_> = decoded
                                    .iter()
                                    .map(|rgb| model.preprocess().apply(rgb))
                                    .collect();
                                preprocess_s += t.elapsed().as_secs_f64();
                                // In the worker's batches.
                                let t = Instant::now();
                                embeddings.clear();
                                for batch in pixels.chunks(BATCH) {
                                    embeddings.extend(model.features_of(batch.to_vec()));
                                }
                                forward_s += t.elapsed().as_secs_f64();
                            }
                            let worst = reference.as_ref().map(|r| {
                                r.iter()
                                    .zip(&embeddings)
                                    .map(|(a, b)| crate::embed::encoder::cosine(a, b))
                                    .fold(1.0f64, f64::min)
                            });
                            if reference.is_none() {
                                reference = Some(embeddings);
                            }
                            let n = (decoded.len() * repeat.max(1)) as f64;
                            let (w, h) = model.preprocess().output_size();
                            rows.push(json!({
                            "model": id, "dims": model.dims(), "input": format!("{w}x{h}"),
                            "path": path.id(), "products": path.describe(), "dtype": path.dtype(),
                            "auto": auto.map(ProductPath::id),
                            "worst_cosine_to_first_path": worst,
                            "images": decoded.len(), "repeat": repeat.max(1),
                            "threads": rayon::current_num_threads(),
                            "decode_ms_per_image": 1e3 * decode_s / decoded.len() as f64,
                            "preprocess_ms_per_image": 1e3 * preprocess_s / n,
                            "forward_ms_per_image": 1e3 * forward_s / n,
                            "images_per_s": n / (preprocess_s + forward_s),
                        }));
                        }
                        Ok(rows)
                    })
                    .await??;
                reports.extend(rows);
            }
            if as_json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!(
                    "{:<32} {:>6} {:>9} {:<13} {:>10} {:>12} {:>10} {:>9} {:>9}",
                    "model",
                    "dims",
                    "input",
                    "path",
                    "decode ms",
                    "preproc ms",
                    "net ms",
                    "images/s",
                    "cosine"
                );
                for r in &reports {
                    let auto = if r["auto"] == r["path"] {
                        " (auto)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<32} {:>6} {:>9} {:<13} {:>10.1} {:>12.1} {:>10.1} {:>9.1} {:>9}",
                        r["model"].as_str().unwrap_or_default(),
                        r["dims"],
                        r["input"].as_str().unwrap_or_default(),
                        format!("{}{auto}", r["path"].as_str().unwrap_or_default()),
                        r["decode_ms_per_image"].as_f64().unwrap_or_default(),
                        r["preprocess_ms_per_image"].as_f64().unwrap_or_default(),
                        r["forward_ms_per_image"].as_f64().unwrap_or_default(),
                        r["images_per_s"].as_f64().unwrap_or_default(),
                        r["worst_cosine_to_first_path"]
                            .as_f64()
                            .map_or("-".to_string(), |c| format!("{c:.5}")),
                    );
                }
            }
        }
        BenchCommand::Video {
            video,
            keyframes,
            embed,
        } => {
            let pipelines = load_pipelines(&settings)?;
            let mut sampler = pipelines.video.frames.clone();
            sampler.keyframes_only |= keyframes;
            let model = embed
                .then(|| {
                    let id = pipelines.image.embedder.model.clone();
                    ModelStore::new(&settings.models.dir)
                        .require(&id)
                        .map(|dir| (id, dir))
                })
                .transpose()?;
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                use crate::media::video;
                let t = Instant::now();
                let (info, planned) = video::scan(&video, &sampler)?;
                let scan_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let frames = video::capture(&video, &info, &planned, &sampler)?;
                let capture_s = t.elapsed().as_secs_f64();
                let embed_s = match &model {
                    Some((id, dir)) => {
                        let model = crate::embed::image::ImageModel::load(id, dir)?;
                        let pictures: Vec<_> = frames.iter().map(|f| f.rgb.clone()).collect();
                        let t = Instant::now();
                        std::hint::black_box(model.embed(&pictures));
                        Some(t.elapsed().as_secs_f64())
                    }
                    None => None,
                };
                let minutes = info.duration_ms as f64 / 60_000.0;
                Ok(json!({
                    "video": video, "codec": info.codec, "width": info.width, "height": info.height,
                    "duration_s": info.duration_ms as f64 / 1000.0, "keyframes_only": info.keyframes_only,
                    "frames_decoded": info.frames_decoded, "frames_kept": frames.len(),
                    "cuts": frames.iter().filter(|f| f.reason == video::FrameReason::Cut).count(),
                    "scan_s": scan_s, "frames_scanned_per_s": info.frames_decoded as f64 / scan_s,
                    "capture_s": capture_s, "embed_s": embed_s,
                    "threads": rayon::current_num_threads(),
                    "video_minutes_per_minute": minutes / ((scan_s + capture_s + embed_s.unwrap_or(0.0)) / 60.0),
                }))
            })
            .await??;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} ({}, {}x{}, {:.1} s){}\n  scan      {:>7.2} s  {:>8.1} frames/s ({} decoded)\n  capture   {:>7.2} s  ({} kept, {} at cuts){}",
                    report["video"].as_str().unwrap_or_default(),
                    report["codec"].as_str().unwrap_or_default(),
                    report["width"],
                    report["height"],
                    report["duration_s"].as_f64().unwrap_or_default(),
                    if report["keyframes_only"] == true { ", key frames only" } else { "" },
                    report["scan_s"].as_f64().unwrap_or_default(),
                    report["frames_scanned_per_s"].as_f64().unwrap_or_default(),
                    report["frames_decoded"],
                    report["capture_s"].as_f64().unwrap_or_default(),
                    report["frames_kept"],
                    report["cuts"],
                    match report["embed_s"].as_f64() {
                        Some(s) => format!("\n  embed     {s:>7.2} s"),
                        None => String::new(),
                    },
                );
                println!(
                    "  {:.1} minutes of video per minute",
                    report["video_minutes_per_minute"]
                        .as_f64()
                        .unwrap_or_default()
                );
            }
        }
        BenchCommand::AudioEmbed {
            audio,
            checkpoint,
            random_weights,
        } => {
            let pipelines = load_pipelines(&settings)?;
            let similar = pipelines.audio.similar.clone();
            let options = similar.window_options(-200.0);
            let store = ModelStore::new(&settings.models.dir);
            let checkpoint =
                if random_weights {
                    None
                } else {
                    Some(checkpoint.or_else(|| store.locate_panns(&similar.model)).context(
                    "no CNN14 checkpoint installed: pass --checkpoint PATH or --random-weights",
                )?)
                };
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                let model = match &checkpoint {
                    Some(path) => crate::embed::cnn14::Cnn14::load(path, &candle_core::Device::Cpu)?,
                    None => random_cnn14()?,
                };
                let t = Instant::now();
                let windows = crate::embed::audio::embed_file(&model, &audio, &options)?;
                let secs = t.elapsed().as_secs_f64();
                Ok(json!({
                    "audio": audio, "windows": windows.len(), "seconds": secs,
                    "windows_per_s": windows.len() as f64 / secs,
                    "window_s": similar.window_secs, "hop_s": similar.hop_secs,
                    "weights": checkpoint.map(|p| p.display().to_string()).unwrap_or_else(|| "random".into()),
                }))
            })
            .await??;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "CNN14: {} windows of {} s (hop {} s) in {:.2} s = {:.2} windows/s (decode included)",
                    report["windows"], report["window_s"], report["hop_s"],
                    report["seconds"].as_f64().unwrap_or_default(),
                    report["windows_per_s"].as_f64().unwrap_or_default()
                );
            }
        }
        BenchCommand::Rerank {
            model,
            query,
            texts,
            batch_tokens,
            threads,
            dtype,
        } => {
            set_threads(threads)?;
            let texts = read_texts(&texts)?;
            let store = ModelStore::new(&settings.models.dir);
            let dir = store.require(&model)?;
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                let mut reranker =
                    crate::embed::CrossEncoder::load(&model, &dir, None, batch_tokens)?;
                let probe = reranker.probe()?;
                let (paths, auto) = bench_paths(reranker.encoder_mut(), &model, &dtype, &probe)?;
                let tokens: usize = reranker
                    .tokenize(&query, &texts)?
                    .iter()
                    .map(|(ids, _)| ids.len())
                    .sum();
                let mut rows = Vec::new();
                let mut reference: Option<Vec<f32>> = None;
                for path in paths {
                    reranker
                        .encoder_mut()
                        .use_path(path)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    reranker.score(&query, &texts[..texts.len().min(4)])?;
                    let start = Instant::now();
                    let scores = reranker.score(&query, &texts)?;
                    let seconds = start.elapsed().as_secs_f64();
                    let reference = reference.get_or_insert_with(|| scores.clone());
                    let change = scores
                        .iter()
                        .zip(reference.iter())
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    rows.push(json!({
                        "path": path.id(), "products": path.describe(), "dtype": path.dtype(),
                        "seconds": seconds, "pairs_per_s": texts.len() as f64 / seconds,
                        "tokens_per_s": tokens as f64 / seconds,
                        "checksum": scores.iter().map(|&s| s as f64).sum::<f64>(),
                        "max_score_change": change,
                    }));
                }
                Ok(json!({
                    "model": model, "pairs": texts.len(), "tokens": tokens,
                    "threads": rayon::current_num_threads(), "cpu": cpu_report(),
                    "auto": auto, "paths": rows, "peak_rss_mib": peak_rss_mib(),
                }))
            })
            .await??;
            print_report(&report, as_json);
        }
        BenchCommand::Embed {
            model,
            texts,
            batch_tokens,
            batch,
            threads,
            repeat,
            dtype,
        } => {
            set_threads(threads)?;
            let texts = read_texts(&texts)?;
            let store = ModelStore::new(&settings.models.dir);
            let dir = store.require(&model)?;
            let spec = TextModelSpec::load(&model, &dir, None, None)?;
            let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
                let mut embedder =
                    TextEmbedder::load(spec, &dir, batch_tokens)?.with_max_batch_rows(batch);
                let probe = embedder.probe()?;
                let id = embedder.spec().id.clone();
                let (paths, auto) = bench_paths(embedder.encoder_mut(), &id, &dtype, &probe)?;
                let ids = embedder.tokenize(&texts, Purpose::Passage)?;
                let tokens: usize = ids.iter().map(Vec::len).sum();
                let mut rows = Vec::new();
                let mut reference: Option<Vec<Vec<f32>>> = None;
                for path in paths {
                    embedder
                        .encoder_mut()
                        .use_path(path)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    // Warm-up on a few texts so one-time allocation is not timed.
                    embedder.embed_ids(&ids[..ids.len().min(8)])?;
                    let start = Instant::now();
                    let mut vectors = Vec::new();
                    for _ in 0..repeat.max(1) {
                        vectors = embedder.embed_ids(&ids)?;
                    }
                    let seconds = start.elapsed().as_secs_f64() / repeat.max(1) as f64;
                    let checksum: f64 = vectors.iter().flatten().map(|&x| x as f64).sum();
                    let reference = reference.get_or_insert_with(|| vectors.clone());
                    rows.push(json!({
                        "path": path.id(), "products": path.describe(), "dtype": path.dtype(),
                        "seconds": seconds, "chunks_per_s": texts.len() as f64 / seconds,
                        "tokens_per_s": tokens as f64 / seconds, "checksum": checksum,
                        "worst_cosine_to_first": worst_cosine(&vectors, reference),
                    }));
                }
                Ok(json!({
                    "model": id, "texts": texts.len(), "tokens": tokens,
                    "batch_tokens": batch_tokens, "batch": batch,
                    "threads": rayon::current_num_threads(), "cpu": cpu_report(),
                    "auto": auto, "paths": rows, "peak_rss_mib": peak_rss_mib(),
                }))
            })
            .await??;
            print_report(&report, as_json);
        }
        BenchCommand::Search {
            queries,
            runs,
            no_rerank,
        } => {
            let queries = read_texts(&queries)?;
            let mosaic = Mosaic::open(settings).await?;
            let limit = mosaic.pipelines.query.answer.search_limit;
            let request = |query: &String| SearchRequest {
                rerank: !no_rerank,
                ..SearchRequest::new(query.clone(), limit)
            };
            // Warm-up loads the models (and says whether a reranker takes part).
            let mut reranker = None;
            if let Some(q) = queries.first() {
                reranker = mosaic.search(&request(q)).await?.reranker;
            }
            let mut latencies = Vec::new();
            for _ in 0..runs.max(1) {
                for q in &queries {
                    let start = Instant::now();
                    mosaic.search(&request(q)).await?;
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                }
            }
            latencies.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
            let counts = mosaic.catalog.counts().await?;
            let report = json!({
                "queries": latencies.len(), "sources": counts.sources, "chunks": counts.chunks,
                "p50_ms": percentile(&latencies, 0.5), "p95_ms": percentile(&latencies, 0.95),
                "mean_ms": latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
                "reranker": reranker,
            });
            print_report(&report, as_json);
        }
        BenchCommand::Serve {
            url,
            key,
            queries,
            concurrency,
            requests,
            top_k,
            chats,
            texts,
            embed_batch,
        } => {
            let bench = super::bench_serve::ServeBench {
                url,
                key,
                queries: read_texts(&queries)?,
                concurrency,
                requests,
                top_k,
                chats,
                texts: texts
                    .as_ref()
                    .map(read_texts)
                    .transpose()?
                    .unwrap_or_default(),
                embed_batch,
            };
            let mut report = super::bench_serve::run(bench).await?;
            report["cpu"] = cpu_report();
            print_report(&report, as_json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &serde_json::Value, as_json: bool) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("JSON serializes")
        );
    } else if let Some(rows) = report["paths"].as_array() {
        // A product-path comparison: one line per path.
        let cpu = &report["cpu"];
        println!(
            "{} on {} ({} threads); libraries: {}",
            report["model"].as_str().unwrap_or_default(),
            cpu["model"].as_str().unwrap_or("an unknown CPU"),
            report["threads"],
            cpu["libraries"]
                .as_array()
                .map(|l| l
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "none".into()),
        );
        let first = rows
            .first()
            .and_then(|r| r["tokens_per_s"].as_f64())
            .unwrap_or(1.0);
        for row in rows {
            let rate = row["tokens_per_s"].as_f64().unwrap_or_default();
            let parity = match (
                row.get("worst_cosine_to_first"),
                row.get("max_score_change"),
            ) {
                (Some(c), _) => {
                    format!("worst cosine to f32 {:.5}", c.as_f64().unwrap_or_default())
                }
                (_, Some(d)) => {
                    format!("largest score change {:.4}", d.as_f64().unwrap_or_default())
                }
                _ => String::new(),
            };
            println!(
                "  {:<13} {:>9.0} tokens/s  {:>5.2}×  {parity}  ({})",
                row["path"].as_str().unwrap_or_default(),
                rate,
                rate / first,
                row["products"].as_str().unwrap_or_default(),
            );
        }
        if let Some(path) = report["auto"]["path"].as_str() {
            println!("  dtype = \"auto\" picks {path} here (probe batch)");
        }
        for skipped in cpu["skipped_paths"].as_array().into_iter().flatten() {
            println!("  skipped {}", skipped.as_str().unwrap_or_default());
        }
    } else if let Some(map) = report.as_object() {
        for (k, v) in map {
            println!("{k:>14}: {v}");
        }
    }
}
