//! The data model shared by every layer: sources, chunks and the anchors that tie a chunk to
//! the exact place in its source it came from.

use serde::{Deserialize, Serialize};

/// Where a chunk lives inside its source. Stages may split anchors but never rewrite them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anchor {
    /// Characters `[char_start, char_end)` (Unicode scalar values) of the extracted text;
    /// `page` is 1-based for paged documents.
    Span {
        page: Option<u32>,
        char_start: u64,
        char_end: u64,
    },
    /// A time range in an audio or video file.
    Time { start_ms: u64, end_ms: u64 },
    /// One video frame.
    Frame { at_ms: u64 },
    /// A whole picture.
    Image,
}

impl Anchor {
    /// Human-readable location, e.g. `p. 3, chars 120–480` or `12:31–13:05`.
    pub fn describe(&self) -> String {
        match self {
            Anchor::Span {
                page: Some(page),
                char_start,
                char_end,
            } => format!("p. {page}, chars {char_start}–{char_end}"),
            Anchor::Span {
                page: None,
                char_start,
                char_end,
            } => format!("chars {char_start}–{char_end}"),
            Anchor::Time { start_ms, end_ms } => {
                format!("{}–{}", clock(*start_ms), clock(*end_ms))
            }
            Anchor::Frame { at_ms } => format!("frame at {}", clock(*at_ms)),
            Anchor::Image => "image".into(),
        }
    }

    /// URL fragment that seeks to the anchor: `#page=3` for pages, `#t=12.5,31.0` for time.
    pub fn fragment(&self) -> Option<String> {
        match self {
            Anchor::Span { page: Some(p), .. } => Some(format!("page={p}")),
            Anchor::Span { page: None, .. } | Anchor::Image => None,
            Anchor::Time { start_ms, end_ms } => Some(format!(
                "t={:.1},{:.1}",
                *start_ms as f64 / 1000.0,
                *end_ms as f64 / 1000.0
            )),
            Anchor::Frame { at_ms } => Some(format!("t={:.1}", *at_ms as f64 / 1000.0)),
        }
    }
}

/// `m:ss` (or `h:mm:ss`) of milliseconds.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Text,
    Transcript,
    Caption,
    Image,
    Frame,
    Audio,
}

impl Modality {
    pub fn as_str(&self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Transcript => "transcript",
            Modality::Caption => "caption",
            Modality::Image => "image",
            Modality::Frame => "frame",
            Modality::Audio => "audio",
        }
    }

    /// Whether chunks of this modality are indexed in BM25: the ones made of words. Audio
    /// windows, pictures and video frames live in their embedding spaces only (a frame's words
    /// are its transcript chunk's, which BM25 already has).
    pub fn in_bm25(&self) -> bool {
        matches!(
            self,
            Modality::Text | Modality::Transcript | Modality::Caption
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Modality::Text,
            "transcript" => Modality::Transcript,
            "caption" => Modality::Caption,
            "image" => Modality::Image,
            "frame" => Modality::Frame,
            "audio" => Modality::Audio,
            _ => return None,
        })
    }
}

/// One timed segment of a transcript (a Whisper segment), in milliseconds from the start of
/// the recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// Word pieces with their own times, where whisper.cpp gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<Word>,
}

/// A token of a segment with its time range.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// A source as scripts see it in `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub id: String,
    pub uri: String,
    pub media_type: String,
}

/// One source row of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub id: String,
    pub uri: String,
    pub title: Option<String>,
    pub media_type: String,
    pub content_hash: Option<String>,
    pub bytes: i64,
    pub status: String,
    pub error: Option<String>,
    pub pipeline_version: Option<String>,
    pub chunk_count: i64,
}

impl Source {
    pub fn as_ref(&self) -> SourceRef {
        SourceRef {
            id: self.id.clone(),
            uri: self.uri.clone(),
            media_type: self.media_type.clone(),
        }
    }
}

/// A chunk ready to be written: everything but its vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    pub id: String,
    pub source_id: String,
    pub ordinal: u32,
    pub modality: Modality,
    pub text: String,
    /// Title and section headings above the chunk (see `ingest::chunk::ChunkSpan::context`).
    pub context: String,
    pub token_count: u32,
    pub anchor: Anchor,
}

impl ChunkRecord {
    /// What is embedded and indexed: the context line, then the text.
    pub fn indexed_text(&self) -> String {
        with_context(&self.context, &self.text)
    }
}

/// Joins a context line and a chunk's text the one way embedding, BM25 and reranking see it.
pub fn with_context(context: &str, text: &str) -> String {
    if context.is_empty() {
        text.to_string()
    } else {
        format!("{context}\n\n{text}")
    }
}

/// A chunk read back with its source, for results and citations.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub id: String,
    pub source: Source,
    pub ordinal: u32,
    pub modality: Modality,
    pub text: String,
    pub context: String,
    pub anchor: Anchor,
}

/// Deterministic id of a source: the same uri always gets the same id, so links stay valid
/// across re-ingestion.
pub fn source_id(uri: &str) -> String {
    let hash = blake3::hash(format!("source:{uri}").as_bytes());
    hash.to_hex()[..32].to_string()
}

/// Deterministic chunk id (a UUID, as Qdrant point ids must be): the same bytes under the same
/// pipeline give the same ids, so re-running an interrupted ingest overwrites, never duplicates.
/// The source id is part of the key so two copies of one file keep separate chunks.
pub fn chunk_id(
    source_id: &str,
    content_hash: &str,
    pipeline_version: &str,
    modality: Modality,
    anchor: &Anchor,
) -> String {
    let anchor = serde_json::to_string(anchor).expect("anchor serializes");
    let key = format!(
        "chunk:{source_id}:{content_hash}:{pipeline_version}:{}:{anchor}",
        modality.as_str()
    );
    let hash = blake3::hash(key.as_bytes());
    let bytes: [u8; 16] = hash.as_bytes()[..16].try_into().expect("16 bytes");
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Converts byte offsets of `text` to character (Unicode scalar) offsets, the unit of span
/// anchors.
pub struct CharIndex {
    starts: Vec<usize>,
}

impl CharIndex {
    pub fn new(text: &str) -> Self {
        Self {
            starts: text.char_indices().map(|(b, _)| b).collect(),
        }
    }

    pub fn char_offset(&self, byte: usize) -> usize {
        self.starts.partition_point(|&b| b < byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_serialize_as_documented() {
        let span = Anchor::Span {
            page: Some(1),
            char_start: 0,
            char_end: 10,
        };
        assert_eq!(
            serde_json::to_string(&span).unwrap(),
            r#"{"kind":"span","page":1,"char_start":0,"char_end":10}"#
        );
        assert_eq!(
            serde_json::to_string(&Anchor::Time {
                start_ms: 0,
                end_ms: 1000
            })
            .unwrap(),
            r#"{"kind":"time","start_ms":0,"end_ms":1000}"#
        );
        assert_eq!(
            serde_json::to_string(&Anchor::Image).unwrap(),
            r#"{"kind":"image"}"#
        );
        assert_eq!(
            serde_json::to_string(&Anchor::Frame { at_ms: 5 }).unwrap(),
            r#"{"kind":"frame","at_ms":5}"#
        );
    }

    #[test]
    fn time_anchor_fragment_seeks() {
        let a = Anchor::Time {
            start_ms: 12_500,
            end_ms: 31_000,
        };
        assert_eq!(a.fragment().unwrap(), "t=12.5,31.0");
        assert_eq!(a.describe(), "0:12–0:31");
    }

    #[test]
    fn chunk_ids_are_deterministic_and_distinct() {
        let a = Anchor::Span {
            page: None,
            char_start: 0,
            char_end: 5,
        };
        let b = Anchor::Span {
            page: None,
            char_start: 5,
            char_end: 9,
        };
        let id1 = chunk_id("s", "h", "v", Modality::Text, &a);
        assert_eq!(id1, chunk_id("s", "h", "v", Modality::Text, &a));
        assert_ne!(id1, chunk_id("s", "h", "v", Modality::Text, &b));
        assert_ne!(id1, chunk_id("s2", "h", "v", Modality::Text, &a));
        assert_ne!(id1, chunk_id("s", "h", "v2", Modality::Text, &a));
        assert!(uuid::Uuid::parse_str(&id1).is_ok());
    }
}
