//! Pictures: decoded on the read stage's blocking thread (header checked against the pixel
//! limit first, EXIF orientation applied, the first frame of an animation), a thumbnail kept
//! for results, then embedded on the image model's worker into the model's own space as one
//! chunk anchored to the whole picture.

use std::path::{Path, PathBuf};

use super::{hash_bytes, unchanged, IngestError, Outcome, Prepared};
use crate::catalog::{self, chunk_id, source_id, Anchor, ChunkRecord, Modality};
use crate::embed::image::preprocess::Rgb;
use crate::embed::ImageEmbedding;
use crate::engine::Engine;
use crate::ingest::file_uri;
use crate::ingest::write::{ExtraSet, SourceWrite};
use crate::media::image as picture;
use crate::store::SpaceSpec;

/// A picture decoded and due for embedding.
pub(super) struct PictureJob {
    uri: String,
    bytes: i64,
    content_hash: String,
    rgb: Rgb,
}

/// What the read stage needs for pictures.
#[derive(Debug, Clone)]
pub(super) struct PictureLimits {
    pub enabled: bool,
    pub model: String,
    pub max_pixels: u64,
    pub version: String,
    pub thumbnail_px: u32,
    /// Thumbnails go under its `thumbnails/`.
    pub data_dir: PathBuf,
}

/// Where the thumbnail of source `source_id` is kept.
pub fn thumbnail_path(data_dir: &Path, source_id: &str) -> PathBuf {
    data_dir.join("thumbnails").join(format!("{source_id}.jpg"))
}

/// Deletes thumbnails under `data_dir`: every one of the sources in `whole` (a picture's, a
/// video's and its frames'), and the frame thumbnails of `source` whose time is not in `keep`
/// (a re-ingested video whose frames moved). Returns how many went; a file that cannot be
/// removed is logged and left.
pub fn remove_thumbnails(
    data_dir: &Path,
    whole: &[String],
    frames_of: Option<(&str, &[u64])>,
) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("thumbnails")) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".jpg")) else {
            continue;
        };
        // `<source>.jpg` or `<source>-<ms>.jpg` (source ids are hex).
        let (source, at_ms) = match stem.split_once('-') {
            Some((source, ms)) => match ms.parse::<u64>() {
                Ok(ms) => (source, Some(ms)),
                Err(_) => continue,
            },
            None => (stem, None),
        };
        let doomed = whole.iter().any(|id| id == source)
            || frames_of.is_some_and(|(id, keep)| {
                id == source && at_ms.is_some_and(|ms| !keep.contains(&ms))
            });
        if doomed {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), "thumbnail not removed: {e}")
                }
            }
        }
    }
    removed
}

/// Reads, hashes and decodes a picture (blocking).
pub(super) fn read_picture(
    path: &Path,
    format: &str,
    limits: &PictureLimits,
    max_media_bytes: u64,
    known: Option<&catalog::Source>,
) -> Outcome {
    let uri = file_uri(path);
    let fail = |bytes: i64, error: String| Outcome::Failed {
        uri: uri.clone(),
        media_type: "image".into(),
        bytes,
        error,
    };
    if !limits.enabled {
        return fail(
            0,
            format!("{format} picture: image ingestion is off ([embedder] enabled in pipelines/image.toml)"),
        );
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > max_media_bytes {
        return fail(
            size as i64,
            format!(
                "file is {:.1} GiB, over the {:.1} GiB limit (ingest.max_media_bytes)",
                size as f64 / 1073741824.0,
                max_media_bytes as f64 / 1073741824.0
            ),
        );
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return fail(size as i64, format!("cannot read {}: {e}", path.display())),
    };
    let size = bytes.len() as i64;
    let content_hash = hash_bytes(&bytes);
    if unchanged(known, &content_hash, &limits.version) {
        return Outcome::Skipped { uri };
    }
    let decoded = match picture::decode(&bytes, limits.max_pixels) {
        Ok(p) => p,
        Err(e) => return fail(size, e.to_string()),
    };
    drop(bytes);
    if limits.thumbnail_px > 0 {
        let target = thumbnail_path(&limits.data_dir, &source_id(&uri));
        let written = picture::thumbnail_jpeg(&decoded.rgb, limits.thumbnail_px)
            .map_err(|e| e.to_string())
            .and_then(|jpeg| write_atomically(&target, &jpeg).map_err(|e| e.to_string()));
        if let Err(e) = written {
            // Results show no picture for it; search is unaffected.
            tracing::warn!(%uri, error = %e, "thumbnail not written");
        }
    }
    Outcome::Picture(Box::new(PictureJob {
        uri,
        bytes: size,
        content_hash,
        rgb: decoded.rgb,
    }))
}

/// Writes `data` to `path` through a temporary file in the same folder and a rename.
pub(super) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("thumbnail path has a folder");
    std::fs::create_dir_all(dir)?;
    let staging = dir.join(format!(
        ".{}.partial",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&staging, data)?;
    std::fs::rename(&staging, path)
}

impl Engine {
    /// Registers an image model's space in both stores.
    pub(crate) async fn register_image_space(
        &self,
        service: &dyn ImageEmbedding,
    ) -> Result<String, IngestError> {
        let space = SpaceSpec::image(service.model_id(), service.dims());
        self.vectors.ensure_space(&space).await?;
        self.catalog
            .ensure_space(&space.name, service.model_id(), space.dims, "image")
            .await?;
        Ok(space.name)
    }

    /// The picture model `model` and its space (registered with the first picture): an error
    /// for this file when the model cannot be loaded, a fatal one when a store fails.
    #[allow(clippy::type_complexity)]
    pub(super) async fn picture_model(
        &self,
        model: &str,
        space: &tokio::sync::OnceCell<String>,
    ) -> Result<Result<(std::sync::Arc<dyn ImageEmbedding>, String), String>, IngestError> {
        let service = match self.workers.image_embedder(model).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("image model: {e}"))),
        };
        let space = space
            .get_or_try_init(|| self.register_image_space(service.as_ref()))
            .await?
            .clone();
        Ok(Ok((service, space)))
    }

    /// Embeds a decoded picture into its model's space.
    pub(super) async fn picture_outcome(
        &self,
        job: PictureJob,
        limits: &PictureLimits,
        space: &tokio::sync::OnceCell<String>,
        text_space: &str,
    ) -> Outcome {
        let failed = |error: String| Outcome::Failed {
            uri: job.uri.clone(),
            media_type: "image".into(),
            bytes: job.bytes,
            error,
        };
        let (service, space) = match self.picture_model(&limits.model, space).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => return failed(error),
            Err(fatal) => return Outcome::Fatal(Box::new(fatal)),
        };
        let (width, height) = (job.rgb.width, job.rgb.height);
        let vector = match service.embed(vec![job.rgb]).await {
            Ok(mut v) if v.len() == 1 => v.pop().expect("one vector"),
            Ok(v) => return failed(format!("image model returned {} vectors for 1", v.len())),
            Err(e) => return failed(format!("embedding failed: {e}")),
        };
        let sid = source_id(&job.uri);
        let name = crate::uri::display_name(&job.uri);
        let anchor = Anchor::Image;
        let chunk = ChunkRecord {
            id: chunk_id(
                &sid,
                &job.content_hash,
                &limits.version,
                Modality::Image,
                &anchor,
            ),
            source_id: sid.clone(),
            ordinal: 0,
            modality: Modality::Image,
            text: String::new(),
            context: name.clone(),
            token_count: 0,
            anchor,
        };
        tracing::debug!(uri = %job.uri, width, height, "picture embedded");
        Outcome::Prepared(Box::new(Prepared {
            write: SourceWrite {
                source_id: sid,
                uri: job.uri.clone(),
                media_type: "image".into(),
                bytes: job.bytes,
                content_hash: job.content_hash.clone(),
                version: limits.version.clone(),
                title: Some(name),
                chunks: Vec::new(),
                space: text_space.to_string(),
                extras: vec![ExtraSet {
                    space,
                    chunks: vec![chunk],
                    vectors: vec![vector],
                }],
                ..Default::default()
            },
            notice: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::remove_thumbnails;

    #[test]
    fn thumbnails_go_with_their_source_and_stale_frames() {
        let dir = tempfile::tempdir().unwrap();
        let thumbs = dir.path().join("thumbnails");
        std::fs::create_dir_all(&thumbs).unwrap();
        let names = [
            "aa.jpg",
            "aa-100.jpg",
            "aa-200.jpg",
            "bb.jpg",
            "bb-5.jpg",
            "bbb.jpg",
            "aa-x.jpg",
            "notes.txt",
        ];
        for name in names {
            std::fs::write(thumbs.join(name), b"x").unwrap();
        }
        let removed = remove_thumbnails(dir.path(), &["bb".into()], Some(("aa", &[100])));
        assert_eq!(removed, 3);
        let mut left: Vec<String> = std::fs::read_dir(&thumbs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["aa-100.jpg", "aa-x.jpg", "aa.jpg", "bbb.jpg", "notes.txt"]
        );
        // No thumbnails folder: nothing to do.
        assert_eq!(remove_thumbnails(&dir.path().join("none"), &[], None), 0);
    }
}
