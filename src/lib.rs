//! Mosaic: multimodal retrieval-augmented generation. Ingest documents and recordings into an
//! embedded vector store, a BM25 index and a SQL catalog, then answer questions with citations
//! that map back to the exact page and character span, or time range, they came from, and find
//! recordings that sound alike; `mosaic serve` puts it all behind an OpenAI-compatible HTTP API
//! and a web page.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod embed;
pub mod engine;
pub mod fault;
pub mod faults;
pub mod ingest;
pub mod kernels;
pub mod lexical;
pub mod llm;
pub mod media;
pub mod models;
pub mod pipeline;
pub mod query;
pub mod server;
pub mod store;
pub mod text;
pub mod transcribe;
pub mod uri;
