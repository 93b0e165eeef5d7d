//! The query path: retrieve (dense per embedding space + BM25) -> fuse (weighted RRF) ->
//! rerank (cross-encoder) -> context (numbered blocks) -> answer (extracted, or generated and
//! verified) -> cite, each citation at the words it rests on.

pub mod answer;
pub mod cite;
pub mod evidence;
pub mod facts;
pub mod fuse;
pub mod similar;
pub mod types;
pub mod verify;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::catalog::{
    with_context, Anchor, CatalogError, Modality, Source, SourceRef, SpaceRow, StoredChunk,
};
use crate::embed::{Purpose, TextEmbedding};
use crate::engine::Engine;
use crate::fault::{Fault, HasFault};
use crate::lexical::LexicalError;
use crate::llm::{GenerationParams, LlmError, Message, Role};
use crate::models::ModelError;
use crate::store::{SearchFilter, StoreError};
use crate::uri::uri_path;
use fuse::{ranked_ids, reciprocal_rank_fusion, RankedList};

#[derive(Debug, Error)]
pub enum QueryError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the question is empty")]
    EmptyQuery,
    #[error("similar audio: {0}")]
    SimilarAudio(String),
    #[error("similar images: {0}")]
    SimilarImage(String),
    #[error("similar video: {0}")]
    SimilarVideo(String),
}

impl HasFault for QueryError {
    fn fault(&self) -> Fault {
        match self {
            QueryError::Catalog(e) => e.fault(),
            QueryError::Store(e) => e.fault(),
            QueryError::Lexical(e) => e.fault(),
            QueryError::Model(e) => e.fault(),
            QueryError::Llm(e) => e.fault(),
            QueryError::EmptyQuery
            | QueryError::SimilarAudio(_)
            | QueryError::SimilarImage(_)
            | QueryError::SimilarVideo(_) => Fault::User,
        }
    }
}

/// Which retrievers feed the fusion (hybrid in normal use; the others for evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    Hybrid,
    Dense,
    Bm25,
}

/// How hits are listed: each source once at the rank of its best passage, with its other
/// matching passages nested under it (as Qdrant's query groups), or one hit per passage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Source,
    None,
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    /// Hits to return (sources, when grouped).
    pub limit: usize,
    pub modalities: Vec<String>,
    /// Only these source ids (none: all).
    pub sources: Vec<String>,
    /// Only sources of these media types (none: all).
    pub media_types: Vec<String>,
    pub mode: RetrievalMode,
    pub rerank: bool,
    pub group_by: GroupBy,
    /// Other passages nested under a source's best one, when grouped.
    pub group_size: usize,
}

impl SearchRequest {
    /// A hybrid, reranked search grouped by source.
    pub fn new(query: impl Into<String>, limit: usize) -> Self {
        Self {
            query: query.into(),
            limit,
            modalities: Vec::new(),
            sources: Vec::new(),
            media_types: Vec::new(),
            mode: RetrievalMode::Hybrid,
            rerank: true,
            group_by: GroupBy::Source,
            group_size: 3,
        }
    }

    /// The same search with one hit per passage.
    pub fn passages(mut self) -> Self {
        self.group_by = GroupBy::None;
        self
    }
}

/// A result chunk; grouped by source, the source's other matching passages are in `more`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rank: usize,
    pub score: f64,
    pub chunk: StoredChunk,
    pub more: Vec<Hit>,
}

/// Groups ranked passages by source: each source once, at the rank of its best passage, with
/// up to `group_size` of its other passages (in rank order) nested under it; `limit` sources.
pub fn group_by_source(
    ranked: Vec<(f64, StoredChunk)>,
    limit: usize,
    group_size: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for (score, chunk) in ranked {
        match index.get(&chunk.source.id) {
            Some(&at) => {
                let group = &mut hits[at];
                if group.more.len() < group_size {
                    group.more.push(Hit {
                        rank: group.rank,
                        score,
                        chunk,
                        more: Vec::new(),
                    });
                }
            }
            None if hits.len() < limit => {
                index.insert(chunk.source.id.clone(), hits.len());
                hits.push(Hit {
                    rank: hits.len() + 1,
                    score,
                    chunk,
                    more: Vec::new(),
                });
            }
            None => {}
        }
    }
    hits
}

/// Hits plus anything the user should know about how they were found.
#[derive(Debug, Clone, Default)]
pub struct SearchOutcome {
    pub hits: Vec<Hit>,
    pub notices: Vec<String>,
    pub reranker: Option<String>,
}

/// JSON shape of a hit (DESIGN.md).
#[derive(Debug, Serialize)]
pub struct HitJson {
    pub rank: usize,
    pub score: f64,
    pub chunk_id: String,
    pub modality: String,
    pub source: SourceRef,
    pub anchor: Anchor,
    /// Opens the source at the anchor (`#page=3`, `#t=751.0,785.0`).
    pub url: String,
    pub text: String,
    /// Title and section headings above the passage (`Report > Finances`); empty when none.
    pub context: String,
    /// The source's other matching passages, when grouped by source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<MoreJson>,
}

/// A further passage of a grouped hit's source.
#[derive(Debug, Serialize)]
pub struct MoreJson {
    pub chunk_id: String,
    pub score: f64,
    pub modality: String,
    pub anchor: Anchor,
    pub url: String,
    pub text: String,
}

impl Hit {
    pub fn to_json(&self) -> HitJson {
        HitJson {
            rank: self.rank,
            score: self.score,
            chunk_id: self.chunk.id.clone(),
            modality: self.chunk.modality.as_str().to_string(),
            source: self.chunk.source.as_ref(),
            anchor: self.chunk.anchor.clone(),
            url: citation_url(&self.chunk),
            text: self.chunk.text.clone(),
            context: self.chunk.context.clone(),
            more: self
                .more
                .iter()
                .map(|m| MoreJson {
                    chunk_id: m.chunk.id.clone(),
                    score: m.score,
                    modality: m.chunk.modality.as_str().to_string(),
                    anchor: m.chunk.anchor.clone(),
                    url: citation_url(&m.chunk),
                    text: m.chunk.text.clone(),
                })
                .collect(),
        }
    }
}

/// A citation in an answer: `[n]` in its text. An answer sentence's citation carries the
/// anchor of the block sentence it rests on (its own span and page, or the time it was
/// spoken), so the link lands on those words.
#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    pub n: usize,
    /// The context block it points into (`context[block - 1]`).
    pub block: usize,
    pub source: SourceRef,
    pub anchor: Anchor,
    pub url: String,
    pub text: String,
    #[serde(skip)]
    pub title: Option<String>,
    /// For a video: the frame on screen when the cited words were spoken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameRef>,
    /// The retrieval score of the passage cited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A kept video frame: its time and its thumbnail.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRef {
    pub at_ms: u64,
    /// The JPEG thumbnail under the data dir, when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// One sentence of the answer, as checked against the blocks.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerSentence {
    pub text: String,
    pub supported: bool,
    /// Numbers of the citations it carries (`citations[n - 1]`).
    pub citations: Vec<usize>,
    /// For a generated sentence: what verification did to its citations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<verify::Change>,
    /// Numbers and names it states that the closest block does not hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// What a language model wrote, before verification replaced it by the extracted answer.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    pub by: String,
    pub text: String,
    pub sentences: usize,
    pub supported: usize,
}

/// The result of `ask`.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub answer: String,
    pub citations: Vec<Citation>,
    /// Who wrote the answer shown: `extracted`, or the generator (`openai:MODEL`,
    /// `embedded:NAME`).
    pub generator: String,
    /// False when the indexed sources do not answer the question.
    pub answered: bool,
    /// Score of the block sentence that best answers the question (see `[answer]` in
    /// pipelines/query.toml); below `min_relevance` the question is not answered.
    pub relevance: f64,
    /// What the question asks for (`types::classify`): a quantity, a size, a version, …
    pub answer_type: types::AnswerType,
    pub sentences: Vec<AnswerSentence>,
    /// The numbered blocks the answer was drawn from (or the generator was given).
    #[serde(rename = "context")]
    pub blocks: Vec<Citation>,
    /// A generated answer that verification found mostly unsupported and replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// One question of a conversation: the question and the turns before it (oldest first).
#[derive(Debug, Clone, Default)]
pub struct AskRequest {
    pub question: String,
    pub history: Vec<Message>,
    /// Sampling temperature for a generated answer (default: `llm.temperature`).
    pub temperature: Option<f32>,
    /// Token limit of a generated answer (default: `llm.max_tokens`).
    pub max_tokens: Option<u32>,
}

impl AskRequest {
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            history: Vec::new(),
            temperature: None,
            max_tokens: None,
        }
    }

    /// What retrieval searches for: a follow-up ("and in summer?") is read together with the
    /// user's previous question, so its passages are found.
    pub fn retrieval_query(&self) -> String {
        let previous = self
            .history
            .iter()
            .rev()
            .find(|m| m.role == Role::User && !m.content.trim().is_empty());
        match previous {
            Some(m) => format!("{}\n{}", m.content.trim(), self.question.trim()),
            None => self.question.trim().to_string(),
        }
    }
}

/// A link that opens `source` at `anchor`.
pub fn anchor_url(source: &Source, anchor: &Anchor) -> String {
    let base = if uri_path(&source.uri).is_some() {
        source.uri.clone()
    } else {
        format!("/v1/sources/{}/media", source.id)
    };
    match anchor.fragment() {
        Some(f) => format!("{base}#{f}"),
        None => base,
    }
}

/// A link that opens the chunk's source at the chunk.
pub fn citation_url(chunk: &StoredChunk) -> String {
    anchor_url(&chunk.source, &chunk.anchor)
}

fn to_citation(n: usize, chunk: &StoredChunk, score: f64) -> Citation {
    Citation {
        n,
        block: n,
        source: chunk.source.as_ref(),
        anchor: chunk.anchor.clone(),
        url: citation_url(chunk),
        text: chunk.text.clone(),
        title: chunk.source.title.clone(),
        frame: None,
        score: Some(score),
    }
}

/// Rough token count for LLM budgets (about 0.75 words per token for English).
pub fn approx_tokens(text: &str) -> usize {
    (text.split_whitespace().count() * 4).div_ceil(3)
}

const INSTRUCTIONS: &str = "Answer the question using only the numbered context blocks below, \
never outside knowledge. End every sentence of the answer with the number of the block it comes \
from in square brackets, like [1] or [2][3]. Keep numbers, dates and names exactly as the blocks \
give them. If the blocks do not contain the answer, say that the sources do not answer the \
question.";

/// The prompt: instructions, the earlier turns of the conversation, then the numbered blocks
/// (each with its source and anchor) and the question. Earlier answers lose their `[n]`
/// markers, which named blocks of earlier prompts.
pub fn build_messages(
    question: &str,
    blocks: &[Citation],
    history: &[Message],
    single_turn: bool,
) -> Vec<Message> {
    let mut context = String::new();
    for b in blocks {
        let name = b.title.clone().unwrap_or_else(|| {
            b.source
                .uri
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        });
        context.push_str(&format!(
            "[{}] {} ({})\n{}\n\n",
            b.n,
            name,
            b.anchor.describe(),
            b.text.trim()
        ));
    }
    let user = format!("Context:\n\n{context}Question: {question}");
    if single_turn {
        // Small models follow the instruction nearest the end: repeat the citation rule there.
        return vec![Message {
            role: Role::User,
            content: format!("{INSTRUCTIONS}\n\n{user}\nAnswer in one or two sentences and cite the block number, like [1]."),
        }];
    }
    let mut messages = vec![Message {
        role: Role::System,
        content: INSTRUCTIONS.to_string(),
    }];
    for turn in history.iter().filter(|m| m.role != Role::System) {
        let content = match turn.role {
            Role::Assistant => cite::split_markers(&turn.content, usize::MAX).0,
            _ => turn.content.clone(),
        };
        messages.push(Message {
            role: turn.role,
            content,
        });
    }
    messages.push(Message {
        role: Role::User,
        content: user,
    });
    messages
}

impl Engine {
    /// Retrieves, fuses and reranks.
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchOutcome, QueryError> {
        let query = request.query.trim();
        if query.is_empty() {
            return Err(QueryError::EmptyQuery);
        }
        let settings = &self.pipelines.query;
        let mut outcome = SearchOutcome::default();
        let mut lists = Vec::new();
        // Each list's own scores (cosine, BM25): shown when only one list was searched.
        let mut raw_scores: Vec<std::collections::HashMap<String, f64>> = Vec::new();

        if request.mode != RetrievalMode::Bm25 {
            for space in self.catalog.searchable_spaces().await? {
                if space.modality == "image" {
                    let filter = SearchFilter {
                        modalities: request.modalities.clone(),
                        source_id: None,
                    };
                    if let Some((list, scores)) = self
                        .search_pictures_by_text(&space, query, filter, &mut outcome)
                        .await?
                    {
                        raw_scores.push(scores);
                        lists.push(list);
                    }
                    continue;
                }
                if space.modality != "text" || space.chunks == 0 {
                    continue;
                }
                let embedder = match self.text_embedder(&space.model_id).await {
                    Ok(e) => e,
                    Err(e @ ModelError::NotInstalled { .. }) => {
                        outcome
                            .notices
                            .push(format!("dense retrieval in {} skipped: {e}", space.name));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let vector = embedder
                    .embed(vec![query.to_string()], Purpose::Query)
                    .await?
                    .pop()
                    .unwrap_or_default();
                let filter = SearchFilter {
                    modalities: request.modalities.clone(),
                    source_id: None,
                };
                let hits = self
                    .vectors
                    .search(&space.name, vector, settings.retrieve.dense_top_k, filter)
                    .await?;
                raw_scores.push(
                    hits.iter()
                        .map(|h| (h.id.clone(), h.score as f64))
                        .collect(),
                );
                lists.push(RankedList {
                    name: space.name.clone(),
                    weight: settings.fusion.dense_weight,
                    ids: ranked_ids(hits.into_iter().map(|h| (h.id, h.score)).collect()),
                });
            }
        }
        if request.mode != RetrievalMode::Dense {
            let q = query.to_string();
            let k = settings.retrieve.bm25_top_k;
            let modalities = request.modalities.clone();
            let hits = self.lexical.search(q, k, modalities).await?;
            raw_scores.push(
                hits.iter()
                    .map(|h| (h.id.clone(), h.score as f64))
                    .collect(),
            );
            lists.push(RankedList {
                name: "bm25".into(),
                weight: settings.fusion.bm25_weight,
                ids: ranked_ids(hits.into_iter().map(|h| (h.id, h.score)).collect()),
            });
        }

        let fused = reciprocal_rank_fusion(&lists, settings.fusion.k);
        let pool = request.limit.max(if request.rerank {
            settings.rerank.top_n
        } else {
            0
        });
        // Grouping by source and filtering need more passages than hits shown.
        let widen = if request.group_by == GroupBy::Source {
            4
        } else {
            1
        } * if request.sources.is_empty() && request.media_types.is_empty() {
            1
        } else {
            4
        };
        let ids: Vec<String> = fused
            .iter()
            .take(pool.max(request.limit) * 2 * widen)
            .map(|f| f.id.clone())
            .collect();
        let mut chunks = self.catalog.chunks_by_ids(&ids).await?;
        if !request.sources.is_empty() {
            chunks.retain(|c| request.sources.contains(&c.source.id));
        }
        if !request.media_types.is_empty() {
            chunks.retain(|c| request.media_types.contains(&c.source.media_type));
        }
        // One list (dense or BM25 only, one space): its own scores; several: the fused ones.
        let single = (raw_scores.len() == 1).then(|| raw_scores.remove(0));
        let scores: std::collections::HashMap<&str, f64> = fused
            .iter()
            .map(|f| {
                let own = single.as_ref().and_then(|s| s.get(&f.id)).copied();
                (f.id.as_str(), own.unwrap_or(f.score))
            })
            .collect();
        let mut ranked: Vec<(f64, StoredChunk)> = chunks
            .into_iter()
            .map(|c| (scores.get(c.id.as_str()).copied().unwrap_or(0.0), c))
            .collect();

        if request.rerank && settings.rerank.enabled && !ranked.is_empty() {
            match self.reranker(&settings.rerank.model).await {
                Ok(reranker) => {
                    let n = settings.rerank.top_n.min(ranked.len());
                    // The cross-encoder reads passages (under their title > section line, as
                    // the embedder and BM25 do); a picture has no passage to read, so pictures
                    // keep their fused places and the passages are reordered among the rest.
                    let (pictures, passages): (Vec<_>, Vec<_>) = ranked
                        .drain(..n)
                        .enumerate()
                        .partition(|(_, (_, c))| c.modality == Modality::Image);
                    let texts: Vec<String> = passages
                        .iter()
                        .map(|(_, (_, c))| with_context(&c.context, &c.text))
                        .collect();
                    let scores = if texts.is_empty() {
                        Vec::new()
                    } else {
                        reranker.score(query.to_string(), texts).await?
                    };
                    let mut passages: Vec<(f64, StoredChunk)> = passages
                        .into_iter()
                        .zip(scores)
                        .map(|((_, (_, c)), s)| (s as f64, c))
                        .collect();
                    passages
                        .sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
                    let mut passages = passages.into_iter();
                    let mut pictures = pictures.into_iter().peekable();
                    let mut head = Vec::with_capacity(n);
                    for slot in 0..n {
                        if pictures.peek().is_some_and(|(at, _)| *at == slot) {
                            head.extend(pictures.next().map(|(_, hit)| hit));
                        } else {
                            head.extend(passages.next());
                        }
                    }
                    head.extend(ranked);
                    ranked = head;
                    outcome.reranker = Some(reranker.id().to_string());
                }
                Err(ModelError::NotInstalled { id }) => outcome.notices.push(format!(
                    "reranking skipped: {id} is not installed (mosaic models pull {id})"
                )),
                Err(e) => return Err(e.into()),
            }
        }

        let gap =
            self.pipelines.video.frames.max_interval_ms + self.pipelines.video.frames.cut_delay_ms;
        let collapsed = collapse_moments(ranked, gap);
        outcome.hits = match request.group_by {
            GroupBy::Source => group_by_source(collapsed, request.limit, request.group_size),
            GroupBy::None => collapsed
                .into_iter()
                .take(request.limit)
                .enumerate()
                .map(|(i, (score, chunk))| Hit {
                    rank: i + 1,
                    score,
                    chunk,
                    more: Vec::new(),
                })
                .collect(),
        };
        Ok(outcome)
    }

    /// One picture space searched with the query's words through its model's text tower
    /// (CLIP, SigLIP): its ranked list and raw cosines. `None` when the space's model embeds
    /// pictures only (EfficientNet, ResNet), or is not installed (then with a notice).
    async fn search_pictures_by_text(
        &self,
        space: &SpaceRow,
        query: &str,
        filter: SearchFilter,
        outcome: &mut SearchOutcome,
    ) -> Result<Option<(RankedList, std::collections::HashMap<String, f64>)>, QueryError> {
        if space.chunks == 0 {
            return Ok(None);
        }
        let embedder = match self.workers.image_embedder(&space.model_id).await {
            Ok(e) => e,
            Err(e @ ModelError::NotInstalled { .. }) => {
                outcome
                    .notices
                    .push(format!("picture search in {} skipped: {e}", space.name));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !embedder.embeds_text() {
            return Ok(None);
        }
        let vector = embedder
            .embed_texts(vec![query.to_string()])
            .await?
            .pop()
            .unwrap_or_default();
        let settings = &self.pipelines.query;
        let hits = self
            .vectors
            .search(&space.name, vector, settings.retrieve.dense_top_k, filter)
            .await?;
        let scores = hits
            .iter()
            .map(|h| (h.id.clone(), h.score as f64))
            .collect();
        Ok(Some((
            RankedList {
                name: space.name.clone(),
                weight: settings.fusion.image_weight,
                ids: ranked_ids(hits.into_iter().map(|h| (h.id, h.score)).collect()),
            },
            scores,
        )))
    }

    /// Answers a question from the index. Without an OpenAI-compatible server (and with the
    /// embedded model off, the default) the answer is extracted: the block sentences that
    /// best answer it, each cited at its own words. A generated answer is verified sentence
    /// by sentence, and replaced by the extracted one when most of it is unsupported. When no
    /// block sentence is relevant enough, the answer says the sources do not answer the
    /// question and lists the closest passages. Generated text is streamed to `sink` as it
    /// is written; the checked answer is in the result.
    pub async fn ask(
        &self,
        request: &AskRequest,
        sink: mpsc::UnboundedSender<String>,
    ) -> Result<Answer, QueryError> {
        let mut answer = self.answer(request, sink).await?;
        for citation in answer.citations.iter_mut().chain(answer.blocks.iter_mut()) {
            citation.frame = self.frame_of(citation).await?;
        }
        Ok(answer)
    }

    /// The frame a video citation shows: the first kept frame inside its time range, else
    /// the last one before it.
    async fn frame_of(&self, citation: &Citation) -> Result<Option<FrameRef>, QueryError> {
        let Anchor::Time { start_ms, end_ms } = citation.anchor else {
            return Ok(None);
        };
        if citation.source.media_type != "video" {
            return Ok(None);
        }
        let Some((_, info)) = self.catalog.media_info(&citation.source.id).await? else {
            return Ok(None);
        };
        let times: Vec<u64> = info["frames"]["times"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_u64()).collect())
            .unwrap_or_default();
        let at = times
            .iter()
            .copied()
            .find(|&t| t >= start_ms && t <= end_ms)
            .or_else(|| times.iter().copied().filter(|&t| t < start_ms).max());
        Ok(at.map(|at_ms| {
            let path = crate::ingest::video::frame_thumbnail_path(
                &self.settings.data_dir,
                &citation.source.id,
                at_ms,
            );
            FrameRef {
                at_ms,
                thumbnail: path.is_file().then(|| path.display().to_string()),
            }
        }))
    }

    async fn answer(
        &self,
        request: &AskRequest,
        sink: mpsc::UnboundedSender<String>,
    ) -> Result<Answer, QueryError> {
        let question = request.question.trim();
        if question.is_empty() {
            return Err(QueryError::EmptyQuery);
        }
        let retrieval_query = request.retrieval_query();
        let context = &self.pipelines.query.context;
        let (generator, why_not) = self.generator().await;
        let (max_blocks, token_budget) = match &generator {
            Some(g) if g.prefers_single_turn() => {
                (context.embedded_max_blocks, context.token_budget)
            }
            Some(_) => (context.max_blocks, context.token_budget),
            None => (context.extracted_max_blocks, context.extracted_token_budget),
        };
        let found = self
            .search(&SearchRequest::new(retrieval_query.clone(), max_blocks).passages())
            .await?;
        let mut notices = Vec::new();
        for notice in found.notices {
            note(&mut notices, notice);
        }
        let mut chunks = Vec::new();
        let mut scores = Vec::new();
        let mut used = 0;
        // A picture found by its look has no words to answer from (video frames come with
        // the words spoken over them).
        for hit in found
            .hits
            .into_iter()
            .filter(|h| !h.chunk.text.trim().is_empty())
        {
            let cost = approx_tokens(&hit.chunk.text) + 16;
            if !chunks.is_empty() && used + cost > token_budget {
                break;
            }
            used += cost;
            scores.push(hit.score);
            chunks.push(hit.chunk);
        }
        let blocks: Vec<Citation> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| to_citation(i + 1, c, scores[i]))
            .collect();
        if generator.is_none() && self.settings.llm.embedded {
            note(&mut notices, format!("no language model: {why_not}"));
        }

        let evidence = self.evidence(&chunks).await?;
        let embedder = match self
            .text_embedder(&self.pipelines.text.embedder.model)
            .await
        {
            Ok(e) => Some(e),
            Err(e @ ModelError::NotInstalled { .. }) => {
                note(
                    &mut notices,
                    format!("sentences ranked by BM25 overlap alone: {e}"),
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        let sentence_vectors = match &embedder {
            Some(e) => {
                let texts = evidence
                    .iter()
                    .map(|s| with_context(&chunks[s.block - 1].context, &s.text))
                    .collect();
                e.embed(texts, Purpose::Passage).await?
            }
            None => Vec::new(),
        };
        let scores = self
            .sentence_scores(
                &retrieval_query,
                &evidence,
                &chunks,
                embedder.as_deref(),
                &sentence_vectors,
            )
            .await?;
        // Whether the sources answer at all is judged on relevance alone; which sentences
        // answer also weighs the retrieval order of their blocks (hybrid retrieval has seen
        // BM25 and every passage, the sentence scores only these blocks).
        let settings = &self.pipelines.query.answer;
        let relevance = scores
            .gate
            .iter()
            .zip(&evidence)
            .filter(|(_, s)| !s.heading)
            .map(|(score, _)| *score)
            .fold(0.0, f64::max);
        // What the question asks for, and how well each sentence fills it: a sentence with a
        // span of the asked type (near the question's key words) ranks higher.
        let answer_type = types::classify(question);
        let wants_default = types::asks_default(question);
        let keys = types::key_words(question);
        let defaults: Vec<bool> = evidence
            .iter()
            .map(|s| types::states_default(&s.text))
            .collect();
        // An entry's term speaks for its sentences when an option is asked: a sentence of the
        // `-A, --fstab` entry answers "which switch …" though it names no option itself (the
        // span then counts as at the sentence's start).
        let fitted: Vec<Option<(f64, usize)>> = evidence
            .iter()
            .map(|s| {
                let own = types::best_fit(answer_type, &types::spans(&s.text));
                let term = (answer_type == types::AnswerType::Option)
                    .then(|| entry_term(&chunks[s.block - 1].context))
                    .flatten()
                    .and_then(|term| types::best_fit(answer_type, &types::term_spans(term)));
                match (own, term) {
                    (Some(own), Some(term)) if term.0 > own.0 => Some((term.0, 0)),
                    (None, Some(term)) => Some((term.0, 0)),
                    (own, _) => own,
                }
            })
            .collect();
        let fits: Vec<f64> = fitted.iter().map(|f| f.map_or(0.0, |f| f.0)).collect();
        let ranking: Vec<f64> = scores
            .relevance
            .iter()
            .zip(&evidence)
            .zip(&fitted)
            .zip(&defaults)
            .map(|(((score, s), fit), states_default)| {
                let typed = match fit {
                    Some((fit, at)) if answer_type.typed() => {
                        settings.type_weight * fit
                            + settings.proximity_weight
                                * fit
                                * answer::proximity(&s.text, *at, &keys)
                    }
                    _ => 0.0,
                };
                let default = if wants_default && *states_default {
                    settings.type_weight / 2.0
                } else {
                    0.0
                };
                let named = if names_document(&keys, &chunks[s.block - 1]) {
                    settings.title_weight
                } else {
                    0.0
                };
                // "Who wrote it?": the people a credits section names.
                let credited = if answer_type == types::AnswerType::Person && s.credits {
                    settings.type_weight
                } else {
                    0.0
                };
                score + settings.rank_weight / s.block as f64 + typed + default + named + credited
            })
            .collect();
        for (s, score) in evidence.iter().zip(&ranking) {
            tracing::debug!(
                block = s.block,
                score,
                heading = s.heading,
                "sentence {:?}",
                s.text
            );
        }
        let unanswerable = why_unanswerable(answer_type, &keys, &evidence, &fits, &chunks);
        if let Some(why) = &unanswerable {
            tracing::debug!("not answered: {why}");
        }
        let asked = answer::Asked {
            answer_type,
            fits: &fits,
            wants_default,
            defaults: &defaults,
        };
        let chosen = if relevance < settings.min_relevance || unanswerable.is_some() {
            Vec::new()
        } else {
            answer::choose(&ranking, &scores.own, asked, &evidence, settings)
        };
        // An answer to a question that asks for a number, a size, a duration, a date, a
        // version or a person must state one: sentences that speak of the thing without it (a
        // setting's description with no value given) do not answer. When the chosen ones lack
        // it, the best sentence that has it answers if it scores within `type_margin` of
        // them; else the sources do not answer.
        let chosen = if answer_type.strict()
            && !chosen.is_empty()
            && !chosen.iter().any(|&i| fits[i] >= types::GOOD_FIT)
        {
            let top = chosen.iter().map(|&i| ranking[i]).fold(f64::MIN, f64::max);
            let typed: Vec<f64> = ranking
                .iter()
                .zip(&fits)
                .map(|(r, f)| if *f >= types::GOOD_FIT { *r } else { f64::MIN })
                .collect();
            let best_typed = (0..evidence.len())
                .filter(|&i| !evidence[i].heading && fits[i] >= types::GOOD_FIT)
                .max_by(|&a, &b| typed[a].total_cmp(&typed[b]));
            match best_typed {
                Some(i) if typed[i] >= top - settings.type_margin => {
                    answer::choose(&typed, &scores.own, asked, &evidence, settings)
                }
                _ => {
                    tracing::debug!(
                        "not answered: no sentence close to the best holds a {}",
                        answer_type.name()
                    );
                    Vec::new()
                }
            }
        } else {
            chosen
        };
        let extracted = |notices: Vec<String>, generated: Option<Generated>| {
            let answer = if chosen.is_empty() {
                not_answered(&blocks)
            } else {
                let mut led = std::collections::HashSet::new();
                let parts: Vec<Part> = chosen
                    .iter()
                    .map(|&i| {
                        let s = &evidence[i];
                        let term = entry_term(&chunks[s.block - 1].context)
                            .filter(|term| term_answers(answer_type, term, &s.text, fits[i]))
                            .filter(|_| led.insert((s.block, s.group)));
                        Part {
                            text: match term {
                                Some(term) => format!("{term}: {}", s.text),
                                None => s.text.clone(),
                            },
                            evidence: vec![i],
                            change: None,
                            missing: Vec::new(),
                        }
                    })
                    .collect();
                assemble(&parts, &evidence, &chunks, &blocks)
            };
            Answer {
                generator: "extracted".into(),
                generated,
                notices,
                relevance,
                answer_type,
                ..answer
            }
        };

        let Some(generator) = generator else {
            let answer = extracted(notices, None);
            let _ = sink.send(answer.answer.clone());
            return Ok(answer);
        };
        if chosen.is_empty() {
            // Nothing to answer from: the model would only make something up.
            note(
                &mut notices,
                format!(
                    "{} was not asked: no passage is relevant enough to the question",
                    generator.name()
                ),
            );
            let answer = extracted(notices, None);
            let _ = sink.send(answer.answer.clone());
            return Ok(answer);
        }
        let messages = build_messages(
            question,
            &blocks,
            &request.history,
            generator.prefers_single_turn(),
        );
        let params = GenerationParams {
            max_tokens: request.max_tokens.unwrap_or(self.settings.llm.max_tokens),
            temperature: request.temperature.unwrap_or(self.settings.llm.temperature),
        };
        let written = generator.generate(messages, params, sink).await?;
        let claims = verify::claims(&written, blocks.len());
        let judgements = match &embedder {
            Some(e) if !claims.is_empty() => {
                // Claims are compared with block sentences as they are: the context line that
                // helps retrieval blurs entailment (docs/answers.md: calibration).
                let plain = e
                    .embed(
                        evidence.iter().map(|s| s.text.clone()).collect(),
                        Purpose::Passage,
                    )
                    .await?;
                let vectors = e
                    .embed(
                        claims.iter().map(|c| c.text.clone()).collect(),
                        Purpose::Passage,
                    )
                    .await?;
                let contexts: Vec<&str> = chunks.iter().map(|c| c.context.as_str()).collect();
                let windows = verify::windows(&evidence, &contexts, question);
                verify::judge(
                    &claims,
                    &vectors,
                    &evidence,
                    &plain,
                    &windows,
                    self.pipelines.query.answer.support_threshold,
                )
            }
            _ => Vec::new(),
        };
        for (claim, j) in claims.iter().zip(&judgements) {
            tracing::debug!(supported = j.supported, similarity = j.similarity, missing = ?j.missing, "claim {:?}", claim.text);
        }
        let supported = judgements.iter().filter(|j| j.supported).count();
        let generated = Generated {
            by: generator.name(),
            text: written.clone(),
            sentences: claims.len(),
            supported,
        };
        if claims.is_empty() || supported * 2 < claims.len() {
            note(&mut notices, format!(
                "{} of the {} sentences {} wrote are supported by the sources: showing the extracted answer instead",
                supported,
                claims.len(),
                generator.name()
            ));
            return Ok(extracted(notices, Some(generated)));
        }
        let parts: Vec<Part> = claims
            .iter()
            .zip(&judgements)
            .map(|(c, j)| Part {
                text: c.text.clone(),
                evidence: j.evidence.clone(),
                change: Some(j.change),
                missing: j.missing.clone(),
            })
            .collect();
        Ok(Answer {
            generator: generator.name(),
            notices,
            relevance,
            answer_type,
            ..assemble(&parts, &evidence, &chunks, &blocks)
        })
    }

    /// The sentences of the blocks, each with its own anchor (transcript sentences timed from
    /// the catalog's Whisper segments), repeats dropped.
    async fn evidence(
        &self,
        chunks: &[StoredChunk],
    ) -> Result<Vec<evidence::Sentence>, QueryError> {
        let mut sentences = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let segments = match chunk.anchor {
                Anchor::Time { start_ms, end_ms } => {
                    self.catalog
                        .segments(&chunk.source.id, start_ms, end_ms.max(start_ms + 1))
                        .await?
                }
                _ => Vec::new(),
            };
            sentences.extend(evidence::block_sentences(i + 1, chunk, &segments));
        }
        Ok(answer::distinct(sentences))
    }

    /// How well each sentence answers `query`. Its own part: the cosine similarity of the
    /// sentence (under its title > section line) to the question, averaged with the
    /// cross-encoder's probability when one is installed, plus BM25 term overlap weighted as
    /// a tie-breaker; to that its passage's similarity adds a share (`passage_weight`). The
    /// question is read twice: whole, to judge whether the sources answer it at all (the
    /// threshold was calibrated so), and without the collection's common words, to rank the
    /// sentences by what it asks.
    async fn sentence_scores(
        &self,
        query: &str,
        sentences: &[evidence::Sentence],
        chunks: &[StoredChunk],
        embedder: Option<&dyn TextEmbedding>,
        vectors: &[Vec<f32>],
    ) -> Result<SentenceScores, QueryError> {
        let settings = &self.pipelines.query;
        let answer_settings = &settings.answer;
        // Cosine parts per reading of the question: (sentence, passage share).
        let mut readings: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        if let Some(embedder) = embedder {
            let owned = query.to_string();
            let focus = self
                .lexical
                .without_common_words(owned, COMMON_WORD_SHARE)
                .await?;
            tracing::debug!("sentences ranked against {focus:?}");
            let questions = embedder
                .embed(vec![query.to_string(), focus], Purpose::Query)
                .await?;
            let weight = answer_settings.passage_weight;
            let passages = if weight > 0.0 {
                let texts = chunks
                    .iter()
                    .map(|c| with_context(&c.context, &c.text))
                    .collect();
                embedder.embed(texts, Purpose::Passage).await?
            } else {
                Vec::new()
            };
            for question in &questions {
                let by_passage: Vec<f64> = passages
                    .iter()
                    .map(|v| verify::cosine(question, v))
                    .collect();
                readings.push(
                    sentences
                        .iter()
                        .zip(vectors)
                        .map(|(s, v)| {
                            let share = by_passage.get(s.block - 1).map_or(0.0, |p| weight * p);
                            ((1.0 - weight) * verify::cosine(question, v), share)
                        })
                        .unzip(),
                );
            }
        }
        // The cross-encoder's probability, when one is installed.
        let mut probabilities = None;
        if settings.rerank.enabled && !sentences.is_empty() {
            match self.reranker(&settings.rerank.model).await {
                Ok(reranker) => {
                    let passages = sentences
                        .iter()
                        .map(|s| with_context(&chunks[s.block - 1].context, &s.text))
                        .collect();
                    let logits = reranker.score(query.to_string(), passages).await?;
                    probabilities = Some(
                        logits
                            .into_iter()
                            .map(|l| 1.0 / (1.0 + (-(l as f64)).exp()))
                            .collect::<Vec<f64>>(),
                    );
                }
                Err(ModelError::NotInstalled { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let question_terms = self.lexical.terms(query)?;
        let sentence_terms = sentences
            .iter()
            .map(|s| self.lexical.terms(&s.text))
            .collect::<Result<Vec<_>, _>>()?;
        let overlap = answer::term_overlap(&question_terms, &sentence_terms);
        // (whole score, own part) of each sentence under one reading.
        let combine = |reading: Option<&(Vec<f64>, Vec<f64>)>| -> (Vec<f64>, Vec<f64>) {
            (0..sentences.len())
                .map(|i| {
                    let (mut own, mut share) = reading.map_or((0.0, 0.0), |(c, p)| (c[i], p[i]));
                    if let Some(p) = &probabilities {
                        if reading.is_some() {
                            own = (own + p[i]) / 2.0;
                            share /= 2.0;
                        } else {
                            own = p[i];
                        }
                    }
                    own += answer_settings.term_weight * overlap[i];
                    (own + share, own)
                })
                .unzip()
        };
        let (gate, _) = combine(readings.first());
        let (relevance, own) = combine(readings.last());
        Ok(SentenceScores {
            gate,
            relevance,
            own,
        })
    }
}

/// A question word found in more than this share of the indexed chunks is the collection's
/// setting, not the question's focus (see `LexicalIndex::without_common_words`).
const COMMON_WORD_SHARE: f64 = 0.5;

/// How well each block sentence answers the question.
struct SentenceScores {
    /// The whole score for the question as asked: whether the sources answer it.
    gate: Vec<f64>,
    /// The whole score for the question's focus: which sentences answer it.
    relevance: Vec<f64>,
    /// The sentence's own part alone: sentences of one passage share the passage's part, so
    /// how close two of them are is judged on this.
    own: Vec<f64>,
}

/// Logs a notice and keeps it for the answer.
/// A video's frame hits that follow each other within `gap_ms` (a chain of them) collapse
/// into one moment: it takes the rank of its best frame, its anchor widened to the time range
/// the chain spans.
fn collapse_moments(ranked: Vec<(f64, StoredChunk)>, gap_ms: u64) -> Vec<(f64, StoredChunk)> {
    let frame_at = |c: &StoredChunk| match c.anchor {
        Anchor::Frame { at_ms } if c.modality == Modality::Frame => Some(at_ms),
        _ => None,
    };
    // Per source, its frame hits in time order, cut into chains.
    let mut times: std::collections::HashMap<&str, Vec<u64>> = std::collections::HashMap::new();
    for (_, chunk) in &ranked {
        if let Some(at) = frame_at(chunk) {
            times.entry(chunk.source.id.as_str()).or_default().push(at);
        }
    }
    let mut chain_of: std::collections::HashMap<(String, u64), (usize, u64, u64)> =
        std::collections::HashMap::new();
    let mut chains = 0;
    for (source, mut at) in times {
        at.sort_unstable();
        let mut start = 0;
        for i in 1..=at.len() {
            if i == at.len() || at[i] > at[i - 1] + gap_ms {
                for &t in &at[start..i] {
                    chain_of.insert((source.to_string(), t), (chains, at[start], at[i - 1]));
                }
                chains += 1;
                start = i;
            }
        }
    }
    let mut emitted = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(ranked.len());
    for (score, mut chunk) in ranked {
        let Some(at) = frame_at(&chunk) else {
            out.push((score, chunk));
            continue;
        };
        let (chain, start, end) = chain_of[&(chunk.source.id.clone(), at)];
        if !emitted.insert(chain) {
            continue;
        }
        if start < end {
            chunk.anchor = Anchor::Time {
                start_ms: start,
                end_ms: end,
            };
        }
        out.push((score, chunk));
    }
    out
}

/// Adds a notice to the answer and logs it: at warn the first time this process meets it (a
/// server answers many questions with the same missing model), at debug after that.
fn note(notices: &mut Vec<String>, notice: String) {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let first = SEEN
        .lock()
        .map(|mut seen| {
            seen.get_or_insert_with(Default::default)
                .insert(notice.clone())
        })
        .unwrap_or(true);
    if first {
        tracing::warn!("{notice}");
    } else {
        tracing::debug!("{notice}");
    }
    notices.push(notice);
}

/// One sentence of an answer before numbering: its text and the evidence sentences
/// (indexes) it rests on, none when unsupported.
struct Part {
    text: String,
    evidence: Vec<usize>,
    change: Option<verify::Change>,
    missing: Vec<String>,
}

/// The answer text, its citations (numbered in order of first use, each at its evidence
/// sentence's anchor) and its sentences.
fn assemble(
    parts: &[Part],
    evidence: &[evidence::Sentence],
    chunks: &[StoredChunk],
    blocks: &[Citation],
) -> Answer {
    let mut citations: Vec<Citation> = Vec::new();
    let mut numbers_of: std::collections::HashMap<usize, usize> = Default::default();
    let mut sentences = Vec::new();
    let mut text = Vec::new();
    for part in parts {
        let numbers: Vec<usize> = part
            .evidence
            .iter()
            .map(|&i| {
                *numbers_of.entry(i).or_insert_with(|| {
                    let s = &evidence[i];
                    let chunk = &chunks[s.block - 1];
                    citations.push(Citation {
                        n: citations.len() + 1,
                        block: s.block,
                        source: chunk.source.as_ref(),
                        anchor: s.anchor.clone(),
                        url: anchor_url(&chunk.source, &s.anchor),
                        text: s.text.clone(),
                        title: chunk.source.title.clone(),
                        frame: None,
                        score: blocks.get(s.block - 1).and_then(|b| b.score),
                    });
                    citations.len()
                })
            })
            .collect();
        let supported = !part.evidence.is_empty();
        text.push(answer::render_sentence(&part.text, &numbers, supported));
        sentences.push(AnswerSentence {
            text: part.text.clone(),
            supported,
            citations: numbers,
            change: part.change,
            missing: part.missing.clone(),
        });
    }
    Answer {
        answer: text.join(" "),
        citations,
        generator: String::new(),
        answered: true,
        relevance: 0.0,
        answer_type: types::AnswerType::Other,
        sentences,
        blocks: blocks.to_vec(),
        generated: None,
        notices: Vec::new(),
    }
}

/// Whether the question names the chunk's document: one of its key words is a word of the
/// document's title, before any ` - ` description (`gzip` for `gzip, gunzip, zcat -
/// compress or expand files`, `logind` for `logind.conf, logind.conf.d - Login manager
/// configuration files`).
fn names_document(keys: &[String], chunk: &StoredChunk) -> bool {
    let title = chunk
        .source
        .title
        .as_deref()
        .or_else(|| chunk.context.split(" > ").next())
        .unwrap_or_default();
    let name = title.split(" - ").next().unwrap_or(title).to_lowercase();
    let words: Vec<&str> = name
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.len() >= 2)
        .collect();
    keys.iter().any(|k| {
        let k = k.trim_end_matches(['\'', '’', 's']);
        words
            .iter()
            .any(|w| *w == k || w.trim_end_matches('s') == k)
    })
}

/// The term of the entry a chunk belongs to (a man page's `-f, --file file`, a key such as
/// `HUSHLOGIN_FILE (string)`), if its context line ends in one: the last part of
/// `Title > Section > term`, when it reads as an option or key rather than a heading.
fn entry_term(context: &str) -> Option<&str> {
    let parts: Vec<&str> = context.split(" > ").collect();
    if parts.len() < 2 {
        return None;
    }
    let last = parts.last()?.trim();
    let shouted = !last.chars().any(char::is_lowercase);
    let option_like = last.starts_with('-')
        || types::term_spans(last)
            .iter()
            .any(|s| matches!(s.kind, types::SpanKind::Option | types::SpanKind::Path));
    let single = !last.contains(char::is_whitespace) && !shouted;
    (option_like || single).then_some(last)
}

/// Whether an entry's term belongs in the answer before its sentence: the question asks for
/// an option or key, or how to do something (in a manual the answer is an option), and the
/// sentence names none; or it asks for a type that the term holds and the sentence lacks.
fn term_answers(answer_type: types::AnswerType, term: &str, sentence: &str, fit: f64) -> bool {
    let options = |spans: Vec<types::Span>| spans.iter().any(|s| s.kind == types::SpanKind::Option);
    let named = |sentence: &str| options(types::spans(sentence));
    let named_term = |term: &str| options(types::term_spans(term));
    match answer_type {
        types::AnswerType::Option => !named(sentence),
        types::AnswerType::Procedure | types::AnswerType::Other => {
            !named(sentence) && (term.starts_with('-') || named_term(term))
        }
        t if t.typed() && fit < types::GOOD_FIT => {
            types::best_fit(t, &types::term_spans(term)).is_some_and(|f| f.0 >= types::GOOD_FIT)
        }
        _ => false,
    }
}

/// Why the blocks cannot answer the question, if they cannot: it asks for a type of fact
/// (a number, a size, a date, a version, a person) that no block sentence holds, or none of
/// its key words is in any block (text or context line).
fn why_unanswerable(
    answer_type: types::AnswerType,
    keys: &[String],
    evidence: &[evidence::Sentence],
    fits: &[f64],
    chunks: &[StoredChunk],
) -> Option<String> {
    if answer_type.strict()
        && !evidence
            .iter()
            .zip(fits)
            .any(|(s, fit)| !s.heading && *fit >= types::GOOD_FIT)
    {
        return Some(format!("no passage holds a {}", answer_type.name()));
    }
    let stem = types::stem;
    let present: std::collections::HashSet<String> = chunks
        .iter()
        .flat_map(|c| {
            types::key_words(&c.text)
                .into_iter()
                .chain(types::key_words(&c.context))
        })
        .map(|w| stem(&w))
        .collect();
    if !keys.is_empty() && !keys.iter().any(|k| present.contains(&stem(k))) {
        return Some("none of the question's key words is in the passages".into());
    }
    None
}

/// Passages listed when the sources do not answer the question.
const CLOSEST_PASSAGES: usize = 3;

/// The answer when no block sentence is relevant enough: say so, and cite the closest
/// passages.
fn not_answered(blocks: &[Citation]) -> Answer {
    let closest: Vec<Citation> = blocks.iter().take(CLOSEST_PASSAGES).cloned().collect();
    let answer = if closest.is_empty() {
        "Nothing in the index matches this question.".to_string()
    } else {
        let marks: Vec<String> = closest.iter().map(|c| format!("[{}]", c.n)).collect();
        let list = match marks.as_slice() {
            [one] => format!("passage is {one}"),
            [init @ .., last] => format!("passages are {} and {last}", init.join(", ")),
            [] => unreachable!(),
        };
        format!("The indexed sources do not answer this question. The closest {list}.")
    };
    Answer {
        answer,
        citations: closest,
        generator: String::new(),
        answered: false,
        relevance: 0.0,
        answer_type: types::AnswerType::Other,
        sentences: Vec::new(),
        blocks: blocks.to_vec(),
        generated: None,
        notices: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Citation {
        Citation {
            n,
            block: n,
            source: SourceRef {
                id: "s".into(),
                uri: "file:///docs/a.pdf".into(),
                media_type: "pdf".into(),
            },
            anchor: Anchor::Span {
                page: Some(2),
                char_start: 10,
                char_end: 20,
            },
            url: "file:///docs/a.pdf#page=2".into(),
            text: format!("block text {n}"),
            title: Some("Annual report".into()),
            frame: None,
            score: None,
        }
    }

    #[test]
    fn prompt_numbers_blocks_with_source_and_anchor() {
        let messages = build_messages("What?", &[block(1), block(2)], &[], false);
        assert_eq!(messages[0].role, Role::System);
        assert!(messages[0].content.contains("End every sentence"));
        let user = &messages[1].content;
        assert!(user.contains("[1] Annual report (p. 2, chars 10–20)\nblock text 1"));
        assert!(user.contains("[2] Annual report"));
        assert!(user.ends_with("Question: What?"));
        let single = build_messages("What?", &[block(1)], &[], true);
        assert_eq!(single.len(), 1);
        assert!(single[0].content.starts_with(INSTRUCTIONS));
        assert!(single[0]
            .content
            .contains("Question: What?\nAnswer in one or two sentences"));
    }

    #[test]
    fn follow_ups_carry_the_conversation() {
        let history = vec![
            Message {
                role: Role::User,
                content: "When do doors open in winter?".into(),
            },
            Message {
                role: Role::Assistant,
                content: "At 20:00 [1].".into(),
            },
        ];
        let request = AskRequest {
            history: history.clone(),
            ..AskRequest::new("And in summer?")
        };
        assert_eq!(
            request.retrieval_query(),
            "When do doors open in winter?\nAnd in summer?"
        );
        assert_eq!(AskRequest::new(" Q? ").retrieval_query(), "Q?");
        let messages = build_messages("And in summer?", &[block(1)], &history, false);
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![Role::System, Role::User, Role::Assistant, Role::User]
        );
        // The earlier answer's markers named blocks of another prompt.
        assert_eq!(messages[2].content, "At 20:00.");
        assert!(messages[3].content.ends_with("Question: And in summer?"));
    }

    #[test]
    fn unanswered_questions_say_so_and_list_the_closest_passages() {
        let answer = not_answered(&[block(1), block(2), block(3), block(4)]);
        assert!(!answer.answered);
        assert_eq!(
            answer.answer,
            "The indexed sources do not answer this question. The closest passages are [1], [2] and [3]."
        );
        assert_eq!(answer.citations.len(), 3);
        assert_eq!(
            not_answered(&[block(1)]).answer,
            "The indexed sources do not answer this question. The closest passage is [1]."
        );
        assert_eq!(
            not_answered(&[]).answer,
            "Nothing in the index matches this question."
        );
    }
}
