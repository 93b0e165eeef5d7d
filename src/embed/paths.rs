//! `dtype = "auto"`: at model load, the encoder's product paths are measured on a fixed probe
//! batch and the fastest one whose outputs stay within cosine 0.999 of f32 is taken
//! ([`super::encoder::choose`]). The measurement is remembered per machine (CPU model and
//! features, loaded libraries, threads, Mosaic version, model) in a small JSON file beside the
//! models, so later loads on the same machine pay nothing; `bench embed` always measures
//! afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::encoder::{choose, cosine, Encoder, PathMeasure, TokenBatch, PARITY_BAR};
use crate::kernels::path::ProductPath;

/// A model whose linear layers can run on any [`ProductPath`]: the text encoder (under the
/// text embedder and the cross-encoder) and the CLIP/SigLIP towers.
pub trait PathModel {
    /// The fixed inputs `auto` measures on.
    type Probe;
    /// What the measured rate counts: `"tokens"`, `"pictures"`.
    const UNIT: &'static str;
    /// Every available path measured on `probe` (see [`measure`]).
    fn measure_paths(&mut self, probe: &Self::Probe) -> Result<Vec<PathMeasure>, String>;
    /// Takes the path `dtype` names (`chosen` for `"auto"`) and frees the weight forms it does
    /// not use.
    fn set_dtype(
        &mut self,
        model: &str,
        dtype: &str,
        chosen: Option<ProductPath>,
    ) -> Result<ProductPath, String>;
}

impl PathModel for Encoder {
    type Probe = TokenBatch;
    const UNIT: &'static str = "tokens";

    fn measure_paths(&mut self, probe: &TokenBatch) -> Result<Vec<PathMeasure>, String> {
        Encoder::measure_paths(self, probe)
    }

    fn set_dtype(
        &mut self,
        model: &str,
        dtype: &str,
        chosen: Option<ProductPath>,
    ) -> Result<ProductPath, String> {
        Encoder::set_dtype(self, model, dtype, chosen)
    }
}

/// Timed rounds over every path in [`measure`].
const PROBE_ROUNDS: usize = 4;

/// Measures every path this machine offers: `forward` (the probe's outputs, one vector each)
/// on each path after `use_path`, its worst cosine against the default f32 path's outputs and
/// its rate (`items` per second, best of interleaved rounds). Leaves `model` on the default
/// f32 path.
pub fn measure<M: ?Sized>(
    model: &mut M,
    items: usize,
    mut use_path: impl FnMut(&mut M, ProductPath) -> Result<(), String>,
    mut forward: impl FnMut(&mut M) -> Result<Vec<Vec<f32>>, String>,
) -> Result<Vec<PathMeasure>, String> {
    let paths = ProductPath::all_available();
    let reference_path = paths[0];
    use_path(model, reference_path)?;
    let reference = forward(model)?;
    // Every path warmed once and checked, then timed in interleaved rounds (the best of
    // each): on a shared machine the speed drifts, and interleaving gives every path the
    // same conditions.
    let mut worst = Vec::with_capacity(paths.len());
    for &path in &paths {
        use_path(model, path)?;
        let outputs = forward(model)?;
        if outputs.len() != reference.len() {
            return Err(format!(
                "{} gave {} outputs, f32 {}",
                path.id(),
                outputs.len(),
                reference.len()
            ));
        }
        worst.push(
            outputs
                .iter()
                .zip(&reference)
                // Equal outputs agree even where both are zero (cosine is undefined there).
                .map(|(a, b)| if a == b { 1.0 } else { cosine(a, b) as f32 })
                .fold(1.0f32, f32::min),
        );
    }
    let mut best = vec![f64::INFINITY; paths.len()];
    for _ in 0..PROBE_ROUNDS {
        for (i, &path) in paths.iter().enumerate() {
            use_path(model, path)?;
            let start = std::time::Instant::now();
            forward(model)?;
            best[i] = best[i].min(start.elapsed().as_secs_f64());
        }
    }
    use_path(model, reference_path)?;
    Ok(paths
        .iter()
        .zip(worst)
        .zip(best)
        .map(|((&path, worst_cosine), seconds)| PathMeasure {
            path,
            per_s: items as f64 / seconds.max(1e-9),
            worst_cosine,
        })
        .collect())
}

/// The probe's passages: ordinary prose of the kind that gets indexed.
pub const PROBE_TEXTS: [&str; 4] = [
    "The ferry leaves the north pier every forty minutes between six in the morning and \
     midnight. In winter the last two sailings are cancelled when the wind exceeds fifty \
     kilometres per hour, and a bus replacement runs along the coast road instead. Tickets \
     bought on board cost a little more than those bought at the machines on the quay, and \
     bicycles travel free outside the morning rush. Last year almost ninety-seven percent of \
     departures left within five minutes of the timetable, the best record since the route \
     was electrified.",
    "To replace the filter cartridge, switch the pump off at the mains and wait until the \
     impeller has stopped. Unscrew the housing anticlockwise, lift out the old cartridge and \
     rinse the seal in clean water; never use solvents, which swell the rubber. Insert the new \
     cartridge with the arrow pointing towards the outlet, refit the housing hand-tight and \
     run the pump for two minutes to purge air from the line. The rated power is 550 watts and \
     the maximum head is nine metres.",
    "Quarterly revenue rose eleven percent to 4.2 million, driven by subscriptions in the \
     northern region, while hardware sales fell for the third quarter in a row. Operating \
     costs grew more slowly than revenue, so the margin widened to eighteen percent. The board \
     approved a second warehouse near the rail freight terminal, to open next spring, and \
     expects the move to cut delivery times to the coast by a day. Cash reserves cover about \
     fourteen months of spending at the current rate.",
    "The trail climbs steadily through beech woods for the first six kilometres, then crosses \
     an old railway viaduct and enters an unlit tunnel about three hundred metres long; bring \
     a torch. After the tunnel the path follows the river to a stone bridge, where a cafe \
     opens on weekends from April to October. The full loop is twenty-two kilometres with \
     about five hundred metres of ascent, and most walkers take seven hours including stops.",
];

/// Questions paired with the probe passages for cross-encoders.
pub const PROBE_QUESTIONS: [&str; 4] = [
    "How punctual was the ferry last year?",
    "How much power does the pump draw?",
    "Why did the margin widen?",
    "How long is the tunnel on the trail?",
];

/// How a model's product path was chosen.
#[derive(Debug, Clone)]
pub struct PathChoice {
    pub path: ProductPath,
    /// The `dtype` setting that led here.
    pub dtype: String,
    /// The probe measurements (`auto` only).
    pub measures: Vec<PathMeasure>,
    /// Whether the measurements were read from the cache.
    pub remembered: bool,
    /// What the rates count (`"tokens"`, `"pictures"`).
    pub unit: &'static str,
}

impl PathChoice {
    /// One line saying what was chosen and why.
    pub fn explain(&self) -> String {
        if self.measures.is_empty() {
            return format!(
                "products on {} (dtype {:?})",
                self.path.describe(),
                self.dtype
            );
        }
        let f32_rate = self.measures.first().map(|m| m.per_s).unwrap_or(1.0);
        let list = self
            .measures
            .iter()
            .map(|m| {
                let verdict = if m.worst_cosine >= PARITY_BAR {
                    ""
                } else {
                    " (fails the parity bar)"
                };
                format!(
                    "{} {:.1} {}/s ({:.2}×), cosine {:.5}{verdict}",
                    m.path.id(),
                    m.per_s,
                    self.unit,
                    m.per_s / f32_rate,
                    m.worst_cosine
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "dtype auto chose {}: the fastest path within cosine {PARITY_BAR} of f32 on the \
             probe batch{} [{list}]",
            self.path.describe(),
            if self.remembered {
                " (measured earlier on this machine)"
            } else {
                ""
            },
        )
    }
}

/// The CPU's model name and feature flags, as `/proc/cpuinfo` gives them (empty elsewhere).
pub fn cpu() -> (String, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("model name"), field("flags"))
}

/// What the choice depends on, besides the model: the CPU, its enabled kernels, the loaded
/// libraries, the thread count and this build.
fn machine_key() -> String {
    let (model, flags) = cpu();
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_bf16",
        "avx512_vnni",
        "amx_bf16",
        "amx_tile",
        "amx_int8",
    ];
    let flags: Vec<&str> = flags
        .split_whitespace()
        .filter(|f| wanted.contains(f))
        .collect();
    let libraries: Vec<String> = crate::kernels::blas::loaded()
        .iter()
        .map(|b| b.name().to_string())
        .collect();
    format!(
        "probe v3 | {} | {} | simd {} | {} | threads {} | mosaic {}",
        model,
        flags.join(" "),
        crate::kernels::simd_allowed(),
        libraries.join(", "),
        rayon::current_num_threads(),
        env!("CARGO_PKG_VERSION"),
    )
}

#[derive(Serialize, Deserialize, Default)]
struct Remembered {
    /// `machine key || model` -> measurements.
    choices: BTreeMap<String, Vec<Measured>>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Measured {
    path: String,
    per_s: f64,
    worst_cosine: f32,
}

fn read(file: &Path) -> Remembered {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write(file: &Path, remembered: &Remembered) {
    let Ok(bytes) = serde_json::to_vec_pretty(remembered) else {
        return;
    };
    // Written aside and renamed, so a concurrent reader sees the old or the new file whole.
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let done = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, file));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(file = %file.display(), "cannot remember the product path: {e}");
    }
}

/// Where `auto` choices are remembered: beside the models.
pub fn cache_file(models_dir: &Path) -> PathBuf {
    models_dir.join(".product-paths.json")
}

/// Sets `encoder`'s product path from `dtype` (see [`PathModel::set_dtype`]); for `"auto"`,
/// measures the paths on `probe()` (or reads an earlier measurement from `cache`), takes the
/// fastest that meets the parity bar and logs why.
pub fn select<M: PathModel>(
    encoder: &mut M,
    model: &str,
    dtype: &str,
    probe: impl FnOnce() -> Result<M::Probe, String>,
    cache: Option<&Path>,
) -> Result<PathChoice, String> {
    if dtype != "auto" {
        let path = encoder.set_dtype(model, dtype, None)?;
        let choice = PathChoice {
            path,
            dtype: dtype.to_string(),
            measures: Vec::new(),
            remembered: false,
            unit: M::UNIT,
        };
        tracing::info!(%model, "{}", choice.explain());
        return Ok(choice);
    }
    let key = format!("{} || {model}", machine_key());
    let remembered = cache.map(read);
    let earlier = remembered
        .as_ref()
        .and_then(|r| r.choices.get(&key))
        .and_then(|list| {
            list.iter()
                .map(|m| {
                    Some(PathMeasure {
                        path: ProductPath::from_id(&m.path).filter(|p| p.available())?,
                        per_s: m.per_s,
                        worst_cosine: m.worst_cosine,
                    })
                })
                .collect::<Option<Vec<_>>>()
        });
    let (measures, was_remembered) = match earlier {
        Some(measures) if !measures.is_empty() => (measures, true),
        _ => {
            let probe = probe()?;
            let measures = encoder.measure_paths(&probe)?;
            if let (Some(file), Some(mut remembered)) = (cache, remembered) {
                remembered.choices.insert(
                    key,
                    measures
                        .iter()
                        .map(|m| Measured {
                            path: m.path.id().to_string(),
                            per_s: m.per_s,
                            worst_cosine: m.worst_cosine,
                        })
                        .collect(),
                );
                write(file, &remembered);
            }
            (measures, false)
        }
    };
    let best = choose(&measures).map(|m| m.path);
    let path = encoder.set_dtype(model, "auto", best)?;
    let choice = PathChoice {
        path,
        dtype: dtype.to_string(),
        measures,
        remembered: was_remembered,
        unit: M::UNIT,
    };
    // A fresh measurement is news; the remembered one is repeated at every load.
    if was_remembered {
        tracing::debug!(%model, "{}", choice.explain());
    } else {
        tracing::info!(%model, "{}", choice.explain());
    }
    Ok(choice)
}
