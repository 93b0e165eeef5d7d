//! File type detection from content, with the extension only to tell markup dialects apart.
//! A binary blob named `.txt` is caught here, before any extractor sees it.

use std::path::Path;

/// Document kinds the text pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
}

impl DocumentKind {
    /// The `media_type` recorded in the catalog.
    pub fn media_type(&self) -> &'static str {
        match self {
            DocumentKind::Text => "text",
            DocumentKind::Markdown => "markdown",
            DocumentKind::Html => "html",
            DocumentKind::Pdf => "pdf",
            DocumentKind::Docx => "docx",
        }
    }
}

/// Why a file is not a document Mosaic can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Empty,
    /// Recognised binary format that no pipeline handles yet.
    Unsupported(String),
    /// Bytes that are neither a known format nor text.
    Binary,
    /// The extension names a document format the content is not.
    Mismatch(String),
    /// The extension names an audio or video format the content is not.
    NotMedia(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Empty => write!(f, "empty file (0 bytes)"),
            Rejection::Unsupported(kind) => write!(f, "unsupported file type: {kind}"),
            Rejection::Binary => write!(f, "unknown file type: binary content that is not text, PDF or DOCX"),
            Rejection::NotMedia(ext) => write!(
                f,
                "file is named .{ext} but its content is not audio or video (corrupt or mislabelled)"
            ),
            Rejection::Mismatch(kind) => write!(
                f,
                "file is named .{} but its content is not a {kind} document (corrupt or mislabelled)",
                kind.to_ascii_lowercase()
            ),
        }
    }
}

/// Extensions of recordings: a file named so whose content is not audio or video is reported
/// as mislabelled, not read as text.
const MEDIA_EXTENSIONS: &[&str] = &[
    "wav", "mp3", "m4a", "flac", "ogg", "oga", "opus", "aac", "wma", "aif", "aiff", "mp4", "m4v",
    "mkv", "webm", "mov", "avi",
];

/// A recording the audio pipeline reads, decided from the first bytes of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    /// A video container: its audio track is transcribed.
    Video,
}

impl MediaKind {
    pub fn media_type(&self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// Whether `head` (the first few KiB of a file) starts an audio or video container.
pub fn media_kind(head: &[u8]) -> Option<MediaKind> {
    let kind = infer::get(head)?;
    match kind.matcher_type() {
        infer::MatcherType::Audio => Some(MediaKind::Audio),
        infer::MatcherType::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// Decides what a file is from its bytes (and, for text, its extension).
pub fn detect(path: &Path, bytes: &[u8]) -> Result<DocumentKind, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::Empty);
    }
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).take(1020).any(|w| w == b"%PDF-") {
        return Ok(DocumentKind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if zip_has(bytes, "word/document.xml") {
            Ok(DocumentKind::Docx)
        } else {
            Err(Rejection::Unsupported("zip archive (not a .docx)".into()))
        };
    }
    if let Some(kind) = infer::get(bytes) {
        if !matches!(kind.matcher_type(), infer::MatcherType::Text) {
            return Err(Rejection::Unsupported(format!(
                "{} ({})",
                kind.mime_type(),
                kind.extension()
            )));
        }
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if matches!(ext.as_str(), "pdf" | "docx") {
        return Err(Rejection::Mismatch(ext.to_ascii_uppercase()));
    }
    if MEDIA_EXTENSIONS.contains(&ext.as_str()) {
        return Err(Rejection::NotMedia(ext));
    }
    if !looks_like_text(bytes) {
        return Err(Rejection::Binary);
    }
    let start = String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        .trim_start()
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "md" | "markdown" | "mdown" | "mkd" => DocumentKind::Markdown,
        "html" | "htm" | "xhtml" => DocumentKind::Html,
        _ if start.starts_with("<!doctype html") || start.starts_with("<html") => {
            DocumentKind::Html
        }
        _ => DocumentKind::Text,
    })
}

fn zip_has(bytes: &[u8], name: &str) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|z| z.file_names().any(|n| n == name))
        .unwrap_or(false)
}

/// Valid UTF-8 (a truncated final character is tolerated) with no NULs and few control
/// characters.
fn looks_like_text(bytes: &[u8]) -> bool {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    if sample.contains(&0) {
        return false;
    }
    let valid = match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && sample.len() < bytes.len() || e.error_len().is_none(),
    };
    if !valid {
        return false;
    }
    let control = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    control * 100 <= sample.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_extension() {
        assert_eq!(
            detect(Path::new("a.txt"), b"%PDF-1.7\n..."),
            Ok(DocumentKind::Pdf)
        );
        assert_eq!(
            detect(Path::new("a.txt"), b"hello\nworld"),
            Ok(DocumentKind::Text)
        );
        assert_eq!(
            detect(Path::new("a.md"), b"# Title\n"),
            Ok(DocumentKind::Markdown)
        );
        assert_eq!(
            detect(Path::new("page"), b"<!DOCTYPE html><p>x</p>"),
            Ok(DocumentKind::Html)
        );
        assert_eq!(detect(Path::new("a.txt"), b""), Err(Rejection::Empty));
        assert_eq!(
            detect(Path::new("a.txt"), b"ab\0cd\xff\xfe"),
            Err(Rejection::Binary)
        );
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(matches!(
            detect(Path::new("a.txt"), png),
            Err(Rejection::Unsupported(_))
        ));
        assert!(matches!(
            detect(Path::new("a.docx"), b"PK\x03\x04garbage"),
            Err(Rejection::Unsupported(_))
        ));
        assert_eq!(
            detect(Path::new("a.docx"), b"plain words"),
            Err(Rejection::Mismatch("DOCX".into()))
        );
        assert_eq!(
            detect(Path::new("talk.WAV"), b"just some text"),
            Err(Rejection::NotMedia("wav".into()))
        );
    }

    #[test]
    fn recordings_are_recognised_from_their_first_bytes() {
        let wav = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0";
        assert_eq!(media_kind(wav), Some(MediaKind::Audio));
        assert_eq!(media_kind(b"fLaC\0\0\0\x22"), Some(MediaKind::Audio));
        assert_eq!(media_kind(b"ID3\x04\0\0\0\0\0\0"), Some(MediaKind::Audio));
        let mp4 = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41";
        assert_eq!(media_kind(mp4), Some(MediaKind::Video));
        assert_eq!(media_kind(b"%PDF-1.7"), None);
        assert_eq!(media_kind(b"hello"), None);
    }
}
