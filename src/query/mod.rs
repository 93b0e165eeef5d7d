//! The query path: retrieve (dense per embedding space + BM25) -> fuse (weighted RRF) ->
//! rerank (cross-encoder) -> context (numbered blocks) -> generate -> cite.

pub mod cite;
pub mod fuse;
pub mod similar;

use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::app::Mosaic;
use crate::catalog::{with_context, Anchor, CatalogError, SourceRef, StoredChunk};
use crate::embed::Purpose;
use crate::fault::{Fault, HasFault};
use crate::ingest::uri_path;
use crate::lexical::LexicalError;
use crate::llm::{GenerationParams, LlmError, Message, Role};
use crate::models::ModelError;
use crate::store::{SearchFilter, StoreError};
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
}

impl HasFault for QueryError {
    fn fault(&self) -> Fault {
        match self {
            QueryError::Catalog(e) => e.fault(),
            QueryError::Store(e) => e.fault(),
            QueryError::Lexical(e) => e.fault(),
            QueryError::Model(e) => e.fault(),
            QueryError::Llm(e) => e.fault(),
            QueryError::EmptyQuery | QueryError::SimilarAudio(_) => Fault::User,
        }
    }
}

/// Which retrievers feed the fusion (hybrid in normal use; the others for evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    Hybrid,
    Dense,
    Bm25,
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub limit: usize,
    pub modalities: Vec<String>,
    pub mode: RetrievalMode,
    pub rerank: bool,
}

/// A result chunk.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rank: usize,
    pub score: f64,
    pub chunk: StoredChunk,
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
        }
    }
}

/// A citation in an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    pub n: usize,
    pub source: SourceRef,
    pub anchor: Anchor,
    pub url: String,
    pub text: String,
    #[serde(skip)]
    pub title: Option<String>,
}

/// The result of `ask`.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub answer: String,
    pub citations: Vec<Citation>,
    pub generator: String,
    /// The numbered blocks the generator was given (shown when it cites none).
    #[serde(rename = "context")]
    pub blocks: Vec<Citation>,
    #[serde(skip)]
    pub notices: Vec<String>,
}

/// A link that opens the source at the anchor.
pub fn citation_url(chunk: &StoredChunk) -> String {
    let base = if uri_path(&chunk.source.uri).is_some() {
        chunk.source.uri.clone()
    } else {
        format!("/v1/sources/{}/media", chunk.source.id)
    };
    match chunk.anchor.fragment() {
        Some(f) => format!("{base}#{f}"),
        None => base,
    }
}

fn to_citation(n: usize, chunk: &StoredChunk) -> Citation {
    Citation {
        n,
        source: chunk.source.as_ref(),
        anchor: chunk.anchor.clone(),
        url: citation_url(chunk),
        text: chunk.text.clone(),
        title: chunk.source.title.clone(),
    }
}

/// Rough token count for LLM budgets (about 0.75 words per token for English).
pub fn approx_tokens(text: &str) -> usize {
    (text.split_whitespace().count() * 4).div_ceil(3)
}

const INSTRUCTIONS: &str = "Answer the question using only the numbered context blocks below. \
Cite every block you use with its number in square brackets, like [1] or [2]. \
If the blocks do not contain the answer, say that you do not know.";

/// The prompt: instructions, numbered blocks with source and anchor, then the question.
pub fn build_messages(question: &str, blocks: &[Citation], single_turn: bool) -> Vec<Message> {
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
        vec![Message {
            role: Role::User,
            content: format!("{INSTRUCTIONS}\n\n{user}\nAnswer in one or two sentences and cite the block number, like [1]."),
        }]
    } else {
        vec![
            Message {
                role: Role::System,
                content: INSTRUCTIONS.to_string(),
            },
            Message {
                role: Role::User,
                content: user,
            },
        ]
    }
}

impl Mosaic {
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
            for space in self.catalog.spaces().await? {
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
            let hits = self
                .lexical
                .run(move |l| l.search(&q, k, &modalities))
                .await?;
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
        let ids: Vec<String> = fused
            .iter()
            .take(pool.max(request.limit) * 2)
            .map(|f| f.id.clone())
            .collect();
        let chunks = self.catalog.chunks_by_ids(&ids).await?;
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
                    // The cross-encoder reads a passage as the embedder and BM25 do: under its
                    // title > section line.
                    let passages: Vec<String> = ranked[..n]
                        .iter()
                        .map(|(_, c)| with_context(&c.context, &c.text))
                        .collect();
                    let scores = reranker.score(query.to_string(), passages).await?;
                    let mut head: Vec<(f64, StoredChunk)> = ranked
                        .drain(..n)
                        .zip(scores)
                        .map(|((_, c), s)| (s as f64, c))
                        .collect();
                    head.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
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

        outcome.hits = ranked
            .into_iter()
            .take(request.limit)
            .enumerate()
            .map(|(i, (score, chunk))| Hit {
                rank: i + 1,
                score,
                chunk,
            })
            .collect();
        Ok(outcome)
    }

    /// Answers a question from the index, streaming the answer's text to `sink`.
    pub async fn ask(
        &self,
        question: &str,
        sink: mpsc::UnboundedSender<String>,
    ) -> Result<Answer, QueryError> {
        let context = &self.pipelines.query.context;
        let (generator, why_not) = self.generator().await;
        let max_blocks = match &generator {
            Some(g) if g.prefers_single_turn() => context.embedded_max_blocks,
            _ => context.max_blocks,
        };
        let found = self
            .search(&SearchRequest {
                query: question.to_string(),
                limit: max_blocks,
                modalities: Vec::new(),
                mode: RetrievalMode::Hybrid,
                rerank: true,
            })
            .await?;
        let mut notices = found.notices;
        // Said before the answer streams, not after it.
        for notice in &notices {
            tracing::warn!("{notice}");
        }
        let mut blocks = Vec::new();
        let mut used = 0;
        for hit in &found.hits {
            let cost = approx_tokens(&hit.chunk.text) + 16;
            if !blocks.is_empty() && used + cost > context.token_budget {
                break;
            }
            used += cost;
            blocks.push(to_citation(blocks.len() + 1, &hit.chunk));
        }

        let Some(generator) = generator else {
            let notice = format!(
                "no language model available ({why_not}): answering with the best passages"
            );
            tracing::warn!("{notice}");
            notices.push(notice);
            let answer = extractive_answer(&blocks);
            let _ = sink.send(answer.clone());
            return Ok(Answer {
                answer,
                citations: blocks.iter().take(EXTRACTIVE_PASSAGES).cloned().collect(),
                generator: "extractive".into(),
                blocks,
                notices,
            });
        };
        if blocks.is_empty() {
            let answer = "Nothing in the index matches this question.".to_string();
            let _ = sink.send(answer.clone());
            return Ok(Answer {
                answer,
                citations: Vec::new(),
                generator: generator.name(),
                blocks,
                notices,
            });
        }
        let messages = build_messages(question, &blocks, generator.prefers_single_turn());
        let params = GenerationParams {
            max_tokens: self.settings.llm.max_tokens,
            temperature: self.settings.llm.temperature,
        };
        let answer = generator.generate(messages, params, sink).await?;
        // Markers naming no block are dropped from the text as from the citations (the
        // streamed copy has already been shown as the model wrote it).
        let answer = cite::drop_dangling(&answer, blocks.len());
        let citations = cite::cited_numbers(&answer, blocks.len())
            .into_iter()
            .map(|n| blocks[n - 1].clone())
            .collect();
        Ok(Answer {
            answer,
            citations,
            generator: generator.name(),
            blocks,
            notices,
        })
    }
}

/// Passages an extractive answer shows (and cites).
const EXTRACTIVE_PASSAGES: usize = 3;

/// The answer when no language model is available: the best passages, numbered.
pub fn extractive_answer(blocks: &[Citation]) -> String {
    if blocks.is_empty() {
        return "Nothing in the index matches this question.".into();
    }
    let mut out = String::from(
        "No language model is configured, so here are the passages that best match the question:\n",
    );
    for b in blocks.iter().take(EXTRACTIVE_PASSAGES) {
        let text: String = b.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = text.chars().take(400).collect();
        let ellipsis = if short.len() < text.len() { "…" } else { "" };
        out.push_str(&format!("\n[{}] {short}{ellipsis}\n", b.n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Citation {
        Citation {
            n,
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
        }
    }

    #[test]
    fn prompt_numbers_blocks_with_source_and_anchor() {
        let messages = build_messages("What?", &[block(1), block(2)], false);
        assert_eq!(messages[0].role, Role::System);
        let user = &messages[1].content;
        assert!(user.contains("[1] Annual report (p. 2, chars 10–20)\nblock text 1"));
        assert!(user.contains("[2] Annual report"));
        assert!(user.ends_with("Question: What?"));
        let single = build_messages("What?", &[block(1)], true);
        assert_eq!(single.len(), 1);
        assert!(single[0].content.starts_with(INSTRUCTIONS));
        assert!(single[0]
            .content
            .contains("Question: What?\nAnswer in one or two sentences"));
    }

    #[test]
    fn extractive_answer_cites_blocks() {
        let answer = extractive_answer(&[block(1), block(2)]);
        assert_eq!(cite::cited_numbers(&answer, 2), vec![1, 2]);
    }
}
