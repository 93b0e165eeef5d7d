//! Text structure shared by ingestion and the query path: the one sentence splitter (chunks
//! are cut at its sentences, answers are extracted from them) and the line layout of plain
//! text (headings, definition entries such as man-page options and configuration keys).

pub mod layout;
pub mod sentences;

pub use sentences::{display_text, sentences, SentenceRange};
