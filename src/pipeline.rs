//! Declarative pipeline settings from `pipelines/*.toml`. The files in the repository are
//! compiled in as defaults, so a binary run outside the checkout behaves the same.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fault::{Fault, HasFault};

const TEXT_DEFAULT: &str = include_str!("../pipelines/text.toml");
const QUERY_DEFAULT: &str = include_str!("../pipelines/query.toml");
const AUDIO_DEFAULT: &str = include_str!("../pipelines/audio.toml");
const IMAGE_DEFAULT: &str = include_str!("../pipelines/image.toml");
const VIDEO_DEFAULT: &str = include_str!("../pipelines/video.toml");

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("pipeline file {path} is invalid: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("pipeline setting {setting} {problem}")]
    Value {
        setting: &'static str,
        problem: String,
    },
}

impl HasFault for PipelineError {
    fn fault(&self) -> Fault {
        Fault::User
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextPipeline {
    pub embedder: EmbedderSection,
    pub chunking: ChunkingSection,
    pub lexical: LexicalSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSection {
    pub model: String,
    pub query_prefix: Option<String>,
    pub passage_prefix: Option<String>,
    pub batch_tokens: usize,
    pub dtype: String,
    /// Also embed every sentence of a chunk (with the chunk's context line); the chunk then
    /// scores as the best of its vectors against the question.
    /// (Left out of the canonical form when off, so versions made before it existed hold.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub sentence_vectors: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChunkingSection {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LexicalSection {
    pub analyzer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryPipeline {
    pub retrieve: RetrieveSection,
    pub fusion: FusionSection,
    pub rerank: RerankSection,
    pub context: ContextSection,
    pub answer: AnswerSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrieveSection {
    pub dense_top_k: usize,
    pub bm25_top_k: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FusionSection {
    pub k: f64,
    pub dense_weight: f64,
    pub bm25_weight: f64,
    /// Weight of each picture space searched through a text tower (CLIP, SigLIP).
    #[serde(default = "default_image_weight")]
    pub image_weight: f64,
}

fn default_image_weight() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RerankSection {
    pub model: String,
    pub top_n: usize,
    /// Token window of a (query, passage) pair; the tokenizer's `model_max_length` when unset.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    pub enabled: bool,
    /// Number type and product path of the forward pass: "auto" (measured at load), "f32",
    /// "bf16", or a path id (see `crate::kernels::path::ProductPath::id`).
    #[serde(default = "default_dtype")]
    pub dtype: String,
}

fn default_dtype() -> String {
    "auto".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    pub max_blocks: usize,
    /// Blocks given to the embedded model (a 135M model answers better from fewer).
    pub embedded_max_blocks: usize,
    pub token_budget: usize,
    /// Blocks the extracted answer (no language model) chooses its sentences from, within
    /// `extracted_token_budget`: it reads every sentence of them, so it can look further than
    /// a model's prompt holds.
    pub extracted_max_blocks: usize,
    pub extracted_token_budget: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnswerSection {
    pub search_limit: usize,
    /// Sentences an extracted answer gives at most.
    pub max_sentences: usize,
    /// Sentences after the best one join the answer when their score is at most this far
    /// below it.
    pub sentence_margin: f64,
    /// The best sentence must score at least this (cosine to the question, plus the term
    /// tie-breaker) or the answer says the sources do not answer the question.
    pub min_relevance: f64,
    /// Cosine a block sentence must reach with a generated sentence to support it.
    pub support_threshold: f64,
    /// Weight of BM25 term overlap (scaled 0..1) added to a sentence's score.
    pub term_weight: f64,
    /// Share (0..1) of a sentence's similarity taken from its whole passage's.
    pub passage_weight: f64,
    /// Added to a sentence's score when choosing answer sentences: this divided by its
    /// block's rank in the fused retrieval order (block 1 gets all of it).
    pub rank_weight: f64,
    /// Added to a sentence's score when the question asks for a type of fact (a number, a
    /// size, a duration, a version, a name, an option, …), times how well the sentence's best
    /// span fills it (1 fully, less for a bare number where a unit was asked).
    pub type_weight: f64,
    /// Added with a typed span, times how close (in words) the span is to the question's key
    /// words in the sentence (1 when next to them, falling with distance).
    pub proximity_weight: f64,
    /// A question asking for a number, a size, a duration, a date or a version whose best
    /// sentences state none is answered by the best sentence that does if it scores within
    /// this of them, and declined otherwise.
    pub type_margin: f64,
    /// Added to the sentences of a document the question names by a word of its title
    /// (`gzip` in "How many threads can gzip use?"): its own page answers before another
    /// that mentions it.
    pub title_weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioPipeline {
    pub transcribe: TranscribeSection,
    pub chunking: TranscriptChunkingSection,
    pub similar: SimilarAudioSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimilarAudioSection {
    pub model: String,
    pub window_secs: f64,
    pub hop_secs: f64,
    pub enabled: bool,
}

impl SimilarAudioSection {
    pub fn window_options(&self, silence_dbfs: f32) -> crate::embed::audio::WindowOptions {
        crate::embed::audio::WindowOptions {
            window_ms: (self.window_secs * 1000.0) as u64,
            hop_ms: (self.hop_secs * 1000.0) as u64,
            silence_dbfs,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TranscribeSection {
    pub model: String,
    pub language: String,
    pub threads: usize,
    pub beam_size: usize,
    pub window_secs: u32,
    pub silence_dbfs: f32,
    pub token_timestamps: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TranscriptChunkingSection {
    pub min_secs: f64,
    pub max_secs: f64,
    pub overlap_secs: f64,
}

impl AudioPipeline {
    /// Transcription options for whisper.cpp.
    pub fn transcribe_options(&self) -> crate::transcribe::TranscribeOptions {
        let t = &self.transcribe;
        let mut o = crate::transcribe::TranscribeOptions::default();
        if t.threads > 0 {
            o.threads = t.threads;
        }
        o.language = Some(t.language.clone()).filter(|l| !l.is_empty() && l != "auto");
        o.beam_size = t.beam_size.max(1);
        o.window_secs = t.window_secs;
        o.silence_dbfs = t.silence_dbfs;
        o.token_timestamps = t.token_timestamps;
        o
    }

    /// Key of a recording's transcript: its content, the speech model and every option that
    /// changes what Whisper writes (thread count does not). While it is unchanged the stored
    /// transcript is reused: changing chunking, the text model, its dtype or batch sizes
    /// re-chunks or re-embeds a recording without transcribing it again.
    pub fn transcript_key(&self, content_hash: &str) -> String {
        let mut transcribe = self.transcribe.clone();
        transcribe.threads = 0;
        let canonical = serde_json::to_string(&transcribe).expect("pipeline serializes");
        let hash = blake3::hash(format!("transcript-v1:{content_hash}:{canonical}").as_bytes());
        hash.to_hex()[..32].to_string()
    }

    /// Version of everything that shapes a recording's chunks and vectors: the transcript
    /// (its model and options), the transcript chunking, the text pipeline's embedder and
    /// the audio windows. Thread counts and batch sizes do not count. `similar_audio` says
    /// whether audio windows are embedded (the CNN14 checkpoint is installed): installing it
    /// later re-ingests recordings (their transcripts are reused).
    pub fn version(&self, text: &TextPipeline, similar_audio: bool) -> String {
        let mut me = self.clone();
        me.transcribe.threads = 0;
        if !similar_audio {
            me.similar.enabled = false;
        }
        let canonical = serde_json::to_string(&me).expect("pipeline serializes");
        let hash = blake3::hash(
            format!("audio-pipeline-v1:{}:{canonical}", text.embedding_version()).as_bytes(),
        );
        hash.to_hex()[..16].to_string()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImagePipeline {
    pub embedder: ImageEmbedderSection,
    pub decode: ImageDecodeSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageEmbedderSection {
    pub model: String,
    pub enabled: bool,
    /// Number type and product path of the CLIP/SigLIP towers: "auto" (measured at load),
    /// "f32", "bf16", or a path id; the convolutional networks run f32 whatever it says.
    /// (Left out of the canonical form at "auto", so versions made before it existed hold.)
    #[serde(default = "default_dtype", skip_serializing_if = "is_auto")]
    pub dtype: String,
}

fn is_auto(dtype: &str) -> bool {
    dtype == "auto"
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageDecodeSection {
    pub max_pixels: u64,
    pub thumbnail_px: u32,
}

impl ImagePipeline {
    /// Version of everything that shapes a picture's vectors: the model and the decoding
    /// limits (thumbnail size does not count).
    pub fn version(&self) -> String {
        let mut me = self.clone();
        me.decode.thumbnail_px = 0;
        let canonical = serde_json::to_string(&me).expect("pipeline serializes");
        let hash = blake3::hash(format!("image-pipeline-v1:{canonical}").as_bytes());
        hash.to_hex()[..16].to_string()
    }
}

/// The video pipeline (`pipelines/video.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoPipeline {
    pub embed: VideoEmbedSection,
    pub frames: crate::media::video::SamplerSettings,
    pub similar: VideoSimilarSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoSimilarSection {
    pub min_frame_similarity: f64,
    pub min_matched_frames: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoEmbedSection {
    pub enabled: bool,
}

impl VideoPipeline {
    /// Version of a video's chunks: the sampler's settings, the picture pipeline's version
    /// and the sound track's (`audio_version`).
    pub fn version(&self, image: &ImagePipeline, audio_version: &str) -> String {
        // Query settings do not shape what is indexed.
        let indexed = (&self.embed, &self.frames);
        let canonical = serde_json::to_string(&indexed).expect("pipeline serializes");
        let hash = blake3::hash(
            format!(
                "video-pipeline-v1:{canonical}:{}:{audio_version}",
                image.version()
            )
            .as_bytes(),
        );
        hash.to_hex()[..16].to_string()
    }
}

/// All pipelines of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipelines {
    pub text: TextPipeline,
    pub query: QueryPipeline,
    pub audio: AudioPipeline,
    pub image: ImagePipeline,
    pub video: VideoPipeline,
}

impl Pipelines {
    /// Reads `text.toml` and `query.toml` from `dir` where present, else the built-in copies.
    pub fn load(dir: Option<&Path>) -> Result<Self, PipelineError> {
        let pipelines = Self {
            text: load_one(dir, "text.toml", TEXT_DEFAULT)?,
            query: load_one(dir, "query.toml", QUERY_DEFAULT)?,
            audio: load_one(dir, "audio.toml", AUDIO_DEFAULT)?,
            image: load_one(dir, "image.toml", IMAGE_DEFAULT)?,
            video: load_one(dir, "video.toml", VIDEO_DEFAULT)?,
        };
        pipelines.validate()?;
        Ok(pipelines)
    }

    /// Values the types allow but the pipelines cannot run with.
    fn validate(&self) -> Result<(), PipelineError> {
        let fail =
            |setting: &'static str, problem: String| Err(PipelineError::Value { setting, problem });
        let frames = &self.video.frames;
        if !(frames.scene_threshold > 0.0 && frames.scene_threshold <= 1.0) {
            return fail(
                "[frames] scene_threshold (video.toml)",
                format!("is {}; it must be in (0, 1]", frames.scene_threshold),
            );
        }
        if frames.max_frames == 0 || frames.max_interval_ms == 0 {
            return fail(
                "[frames] max_frames / max_interval_ms (video.toml)",
                "must be above 0".into(),
            );
        }
        if frames.score_width < 8 || frames.frame_side < 32 {
            return fail(
                "[frames] score_width / frame_side (video.toml)",
                "score_width must be 8 or more and frame_side 32 or more".into(),
            );
        }
        let chunking = &self.text.chunking;
        if chunking.max_tokens < 8 {
            return fail(
                "[chunking] max_tokens",
                format!("is {}; it must be at least 8", chunking.max_tokens),
            );
        }
        if chunking.overlap_tokens >= chunking.max_tokens {
            return fail(
                "[chunking] overlap_tokens",
                format!(
                    "is {}; it must be below max_tokens ({})",
                    chunking.overlap_tokens, chunking.max_tokens
                ),
            );
        }
        let fusion = &self.query.fusion;
        if !(fusion.k.is_finite() && fusion.k > 0.0) {
            return fail(
                "[fusion] k",
                format!(
                    "is {}; it must be a positive number (60 is usual)",
                    fusion.k
                ),
            );
        }
        for (setting, weight) in [
            ("[fusion] dense_weight", fusion.dense_weight),
            ("[fusion] bm25_weight", fusion.bm25_weight),
            ("[fusion] image_weight", fusion.image_weight),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return fail(setting, format!("is {weight}; it must be 0 or more"));
            }
        }
        if fusion.dense_weight + fusion.bm25_weight <= 0.0 {
            return fail(
                "[fusion] dense_weight and bm25_weight",
                "are both 0; at least one retriever must count".into(),
            );
        }
        let answer = &self.query.answer;
        if answer.max_sentences == 0 {
            return fail("[answer] max_sentences", "must be at least 1".into());
        }
        for (setting, value) in [
            ("[answer] sentence_margin", answer.sentence_margin),
            ("[answer] term_weight", answer.term_weight),
            ("[answer] rank_weight", answer.rank_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return fail(setting, format!("is {value}; it must be 0 or more"));
            }
        }
        if !(0.0..=1.0).contains(&answer.passage_weight) {
            return fail(
                "[answer] passage_weight",
                format!("is {}; it must be from 0 to 1", answer.passage_weight),
            );
        }
        for (setting, value) in [
            ("[answer] min_relevance", answer.min_relevance),
            ("[answer] support_threshold", answer.support_threshold),
        ] {
            if !(value.is_finite() && (-1.0..=1.0).contains(&value)) {
                return fail(
                    setting,
                    format!("is {value}; it must be a cosine similarity, from -1 to 1"),
                );
            }
        }
        if self.image.decode.max_pixels == 0 {
            return fail("[decode] max_pixels", "must be at least 1".into());
        }
        let retrieve = &self.query.retrieve;
        if retrieve.dense_top_k == 0 || retrieve.bm25_top_k == 0 {
            return fail(
                "[retrieve] dense_top_k and bm25_top_k",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }
}

fn load_one<T: serde::de::DeserializeOwned>(
    dir: Option<&Path>,
    name: &str,
    default: &str,
) -> Result<T, PipelineError> {
    let (text, path) = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
        Some(path) => (
            std::fs::read_to_string(&path).map_err(|source| PipelineError::Read {
                path: path.display().to_string(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => (default.to_string(), format!("<built-in {name}>")),
    };
    toml::from_str(&text).map_err(|source| PipelineError::Parse { path, source })
}

impl TextPipeline {
    /// The settings that can change chunks or vectors, serialized: batch sizes (a throughput
    /// setting) are left out, so changing them invalidates nothing.
    fn canonical(&self) -> String {
        let mut me = self.clone();
        me.embedder.batch_tokens = 0;
        serde_json::to_string(&me).expect("pipeline serializes")
    }

    /// Version of everything that shapes text chunks and their vectors. A source ingested
    /// under another version is re-ingested.
    pub fn version(&self) -> String {
        let canonical = self.canonical();
        // The prefix changes with the document chunking code: v2 cuts unpunctuated runs
        // into token windows that v1 left whole; v3 reads plain text's layout (headings,
        // definition entries whose terms are context, not text) and cuts at the sentences of
        // the one splitter the query path also uses.
        let hash = blake3::hash(format!("text-pipeline-v3:{canonical}").as_bytes());
        hash.to_hex()[..16].to_string()
    }

    /// Version of the settings alone (embedder, chunk sizes, analyzer), without the document
    /// chunking code's: what transcript chunks depend on, so a change to how documents are cut
    /// does not re-transcribe recordings.
    pub fn embedding_version(&self) -> String {
        let canonical = self.canonical();
        let hash = blake3::hash(format!("text-pipeline-v1:{canonical}").as_bytes());
        hash.to_hex()[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_pipelines_parse() {
        let p = Pipelines::load(None).unwrap();
        assert_eq!(
            p.text.embedder.model,
            "sentence-transformers/all-MiniLM-L6-v2"
        );
        assert!(p.query.fusion.k > 0.0);
        assert_eq!(p.audio.transcribe.model, "tiny.en-q8_0");
        let mut other = p.audio.clone();
        other.transcribe.threads = 7;
        assert_eq!(p.audio.version(&p.text, true), other.version(&p.text, true));
        assert_ne!(
            p.audio.version(&p.text, true),
            p.audio.version(&p.text, false)
        );
        other.transcribe.model = "base".into();
        assert_ne!(p.audio.version(&p.text, true), other.version(&p.text, true));
    }

    #[test]
    fn unusable_values_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().unwrap();
        for (file, from, to, named) in [
            ("query.toml", "k = 60.0", "k = -5.0", "[fusion] k"),
            (
                "query.toml",
                "bm25_weight = 1.0",
                "bm25_weight = -1.0",
                "bm25_weight",
            ),
            (
                "query.toml",
                "dense_top_k = 40",
                "dense_top_k = 0",
                "dense_top_k",
            ),
            (
                "text.toml",
                "overlap_tokens = 32",
                "overlap_tokens = 300",
                "overlap_tokens",
            ),
        ] {
            let default = match file {
                "query.toml" => QUERY_DEFAULT,
                _ => TEXT_DEFAULT,
            };
            assert!(default.contains(from), "{from}");
            std::fs::write(dir.path().join(file), default.replace(from, to)).unwrap();
            let err = Pipelines::load(Some(dir.path())).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
            std::fs::remove_file(dir.path().join(file)).unwrap();
        }
        assert!(Pipelines::load(Some(dir.path())).is_ok());
    }

    #[test]
    fn transcripts_outlive_text_and_throughput_changes() {
        let p = Pipelines::load(None).unwrap();
        let key = p.audio.transcript_key("hash");
        // Batch sizes and threads change nothing at all.
        let mut batch = p.text.clone();
        batch.embedder.batch_tokens = 123;
        assert_eq!(p.text.version(), batch.version());
        assert_eq!(
            p.audio.version(&p.text, true),
            p.audio.version(&batch, true)
        );
        let mut threads = p.audio.clone();
        threads.transcribe.threads = 3;
        assert_eq!(threads.transcript_key("hash"), key);
        // The text model, its dtype and the transcript chunking re-embed or re-chunk a
        // recording but keep its transcript.
        let mut model = p.text.clone();
        model.embedder.model = "BAAI/bge-small-en-v1.5".into();
        model.embedder.dtype = "bf16".into();
        assert_ne!(
            p.audio.version(&p.text, true),
            p.audio.version(&model, true)
        );
        let mut chunking = p.audio.clone();
        chunking.chunking.max_secs = 45.0;
        assert_ne!(
            p.audio.version(&p.text, true),
            chunking.version(&p.text, true)
        );
        assert_eq!(chunking.transcript_key("hash"), key);
        // Another recording, speech model or decoding option is another transcript.
        assert_ne!(p.audio.transcript_key("other"), key);
        let mut whisper = p.audio.clone();
        whisper.transcribe.model = "base.en".into();
        assert_ne!(whisper.transcript_key("hash"), key);
        let mut beam = p.audio.clone();
        beam.transcribe.beam_size = 5;
        assert_ne!(beam.transcript_key("hash"), key);
    }

    #[test]
    fn version_changes_with_model() {
        let p = Pipelines::load(None).unwrap();
        let mut other = p.text.clone();
        other.embedder.model = "BAAI/bge-small-en-v1.5".into();
        assert_ne!(p.text.version(), other.version());
        assert_eq!(p.text.version(), p.text.clone().version());
        // Sentence vectors change what is embedded, so both versions; the document chunking
        // code's revision changes only the text version, not the recordings'.
        let mut sentences = p.text.clone();
        sentences.embedder.sentence_vectors = true;
        assert_ne!(p.text.version(), sentences.version());
        assert_ne!(
            p.audio.version(&p.text, true),
            p.audio.version(&sentences, true)
        );
        assert_ne!(p.text.version(), p.text.embedding_version());
    }
}
