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
    let Some(encoding) = text_encoding(bytes) else {
        return Err(Rejection::Binary);
    };
    let (head, _) = encoding.decode(&bytes[..bytes.len().min(1024)]);
    let start = head.trim_start().to_ascii_lowercase();
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

/// How a text file's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    /// Marked by a byte order mark (Windows "Unicode" text).
    Utf16Le,
    Utf16Be,
    /// Not UTF-8 and no byte order mark: legacy 8-bit text, read as Windows-1252 (a superset
    /// of ISO-8859-1 for printable text).
    Windows1252,
}

impl TextEncoding {
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf16Le => "UTF-16LE",
            TextEncoding::Utf16Be => "UTF-16BE",
            TextEncoding::Windows1252 => "Windows-1252",
        }
    }

    /// The text of `bytes` (a byte order mark dropped); malformed sequences become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> (String, bool) {
        let encoding = match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8,
            TextEncoding::Utf16Le => encoding_rs::UTF_16LE,
            TextEncoding::Utf16Be => encoding_rs::UTF_16BE,
            TextEncoding::Windows1252 => encoding_rs::WINDOWS_1252,
        };
        let (text, had_errors) = encoding.decode_with_bom_removal(bytes);
        (text.into_owned(), had_errors)
    }
}

/// The encoding of text bytes, or `None` when they are not text: NULs (outside UTF-16), or
/// more than 1% control characters or undecodable sequences in the first 64 KiB.
pub fn text_encoding(bytes: &[u8]) -> Option<TextEncoding> {
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    let encoding = if sample.starts_with(b"\xff\xfe") {
        TextEncoding::Utf16Le
    } else if sample.starts_with(b"\xfe\xff") {
        TextEncoding::Utf16Be
    } else if sample.contains(&0) {
        return None;
    } else {
        utf8_or_legacy(bytes)
    };
    let (text, _) = encoding.decode(sample);
    let total = text.chars().count();
    let (control, replaced) = text.chars().fold((0, 0), |(control, replaced), c| {
        let is_control = c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}');
        (
            control + usize::from(is_control),
            replaced + usize::from(c == '\u{fffd}'),
        )
    });
    // One replacement is allowed for a character cut by the sample's or the file's end.
    (control * 100 <= total && replaced.saturating_sub(1) * 100 <= total).then_some(encoding)
}

/// UTF-8, unless the whole file reads better as Windows-1252: more malformed sequences than
/// well-formed non-ASCII characters, and no UTF-8 byte order mark. A UTF-8 file with a stray
/// byte stays UTF-8 (that byte becomes U+FFFD); a Latin-1 file is read as Latin-1 even when
/// its first accented letter comes late.
fn utf8_or_legacy(bytes: &[u8]) -> TextEncoding {
    let mut well_formed = 0usize;
    let mut malformed = 0usize;
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        well_formed += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        let invalid = chunk.invalid();
        // The start of a character cut off by the end of the file is not malformed.
        let cut_at_end = chunks.peek().is_none()
            && std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        malformed += usize::from(!invalid.is_empty() && !cut_at_end);
    }
    if malformed == 0 || bytes.starts_with(b"\xef\xbb\xbf") || well_formed >= malformed {
        TextEncoding::Utf8
    } else {
        TextEncoding::Windows1252
    }
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
    fn legacy_and_utf16_text_is_text() {
        let latin1 = b"Caf\xe9 cr\xe8me, 12\xb0C in the cellar.\n";
        assert_eq!(text_encoding(latin1), Some(TextEncoding::Windows1252));
        assert_eq!(
            TextEncoding::Windows1252.decode(latin1).0,
            "Café crème, 12°C in the cellar.\n"
        );
        assert_eq!(
            detect(Path::new("notes.txt"), latin1),
            Ok(DocumentKind::Text)
        );
        let mut utf16: Vec<u8> = vec![0xff, 0xfe];
        for unit in "<!DOCTYPE html><p>Grüße</p>".encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(text_encoding(&utf16), Some(TextEncoding::Utf16Le));
        assert_eq!(detect(Path::new("page"), &utf16), Ok(DocumentKind::Html));
        assert_eq!(
            TextEncoding::Utf16Le.decode(&utf16).0,
            "<!DOCTYPE html><p>Grüße</p>"
        );
        // UTF-8 cut inside a character is still UTF-8.
        assert_eq!(
            text_encoding("Grüße".as_bytes()[..3].as_ref()),
            Some(TextEncoding::Utf8)
        );
        // Random bytes (no NULs) are not text in any of these encodings, nor behind a UTF-16
        // byte order mark.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        assert!(!noise.contains(&0));
        assert_eq!(text_encoding(&noise), None);
        let marked: Vec<u8> = [0xff, 0xfe].into_iter().chain(noise.clone()).collect();
        assert_eq!(text_encoding(&marked), None);
        // The whole file decides: Latin-1 after 70 KB of ASCII is Latin-1, and one stray byte
        // in UTF-8 text does not turn it into Windows-1252.
        let mut late = vec![b'a'; 70_000];
        late.extend_from_slice(b" caf\xe9 au lait");
        assert_eq!(text_encoding(&late), Some(TextEncoding::Windows1252));
        let stray = b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xff und mehr";
        assert_eq!(text_encoding(stray), Some(TextEncoding::Utf8));
        assert!(TextEncoding::Utf8
            .decode(stray)
            .0
            .starts_with("Grüße aus Köln"));
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
