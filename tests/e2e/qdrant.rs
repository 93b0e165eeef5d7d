//! The cluster stores on a real Qdrant server (`QDRANT_URL`, gRPC, e.g.
//! `http://127.0.0.1:6334`): the vector store and BM25 conformance suites, and BM25 as sparse
//! vectors ranking the test corpus as tantivy does. Without `QDRANT_URL` each test says it
//! was skipped. Every test works under collections of its own prefix and deletes them.

use mosaic::catalog::{Catalog, SqlCatalog};
use mosaic::config::QdrantSettings;
use mosaic::conformance;
use mosaic::lexical::{LexicalDoc, LexicalIndex, QdrantLexical, TantivyIndex};
use mosaic::store::{QdrantConn, QdrantStore};

use crate::common::{fixtures, shared_index};

/// Settings for a test's own collections, or `None` (saying so) without `QDRANT_URL`.
pub fn qdrant(test: &str) -> Option<QdrantSettings> {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        println!("skipped {test}: QDRANT_URL is not set (see README, Tests: cluster backends)");
        return None;
    };
    Some(QdrantSettings {
        url,
        api_key: std::env::var("QDRANT_API_KEY").ok(),
        collection_prefix: format!("t{}_{test}", std::process::id()),
        ..QdrantSettings::default()
    })
}

/// Deletes the collections under a prefix.
pub async fn drop_collections(settings: &QdrantSettings) {
    let conn = QdrantConn::connect(settings).await.unwrap();
    let all = conn.client().list_collections().await.unwrap();
    for c in all.collections {
        if c.name.starts_with(&settings.collection_prefix) {
            conn.client().delete_collection(c.name).await.unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn qdrant_vector_store_conforms() {
    let Some(settings) = qdrant("vectors") else {
        return;
    };
    runtime().block_on(async {
        let store = QdrantStore::new(QdrantConn::connect(&settings).await.unwrap());
        conformance::vector_store(&store).await;
        drop_collections(&settings).await;
    });
}

#[test]
fn qdrant_lexical_index_conforms() {
    let Some(settings) = qdrant("lexical") else {
        return;
    };
    runtime().block_on(async {
        let conn = QdrantConn::connect(&settings).await.unwrap();
        let (index, _) = QdrantLexical::open(conn, "en_stem").await.unwrap();
        conformance::lexical_index(&index).await;
        drop_collections(&settings).await;
    });
}

#[test]
fn qdrant_refuses_a_wrong_server_clearly() {
    let Some(settings) = qdrant("wrong") else {
        return;
    };
    runtime().block_on(async {
        // Nothing listens on port 9: one clear error, within the timeout.
        let away = QdrantSettings {
            url: "http://127.0.0.1:9".into(),
            timeout_secs: 3,
            ..settings.clone()
        };
        let err = QdrantConn::connect(&away).await.err().expect("an error");
        assert!(
            err.to_string()
                .contains("cannot reach Qdrant at http://127.0.0.1:9"),
            "{err}"
        );
        // A space that exists with other dimensions is refused, not overwritten.
        let store = QdrantStore::new(QdrantConn::connect(&settings).await.unwrap());
        use mosaic::store::{SpaceSpec, VectorStore};
        let spec = SpaceSpec {
            name: "text/m/4".into(),
            dims: 4,
            multivector: false,
        };
        store.ensure_space(&spec).await.unwrap();
        let other = QdrantStore::new(QdrantConn::connect(&settings).await.unwrap());
        let err = other
            .ensure_space(&SpaceSpec { dims: 8, ..spec })
            .await
            .expect_err("other dimensions are refused");
        assert!(err.to_string().contains("expects 4"), "{err}");
        drop_collections(&settings).await;
    });
}

/// The test corpus's BM25 documents, as the shared index wrote them.
async fn corpus_docs() -> Vec<LexicalDoc> {
    let catalog = SqlCatalog::open(&shared_index().data.join("catalog.db"))
        .await
        .unwrap();
    let mut docs = Vec::new();
    for source in catalog.sources().await.unwrap() {
        for (chunk, _) in catalog.source_records(&source.id).await.unwrap() {
            if chunk.modality.in_bm25() {
                docs.push(mosaic::ingest::write::lexical_doc(&chunk));
            }
        }
    }
    catalog.close().await;
    docs
}

#[test]
fn bm25_in_qdrant_ranks_like_tantivy() {
    let Some(settings) = qdrant("rank") else {
        return;
    };
    runtime().block_on(async {
        let docs = corpus_docs().await;
        assert!(docs.len() > 20);
        let dir = tempfile::tempdir().unwrap();
        let (tantivy, _) = TantivyIndex::open(&dir.path().join("bm25"), "en_stem").unwrap();
        LexicalIndex::upsert(&tantivy, docs.clone()).await.unwrap();
        LexicalIndex::commit(&tantivy).await.unwrap();
        let conn = QdrantConn::connect(&settings).await.unwrap();
        let (qdrant, _) = QdrantLexical::open(conn, "en_stem").await.unwrap();
        qdrant.upsert(docs).await.unwrap();
        qdrant.commit().await.unwrap();

        let raw = std::fs::read_to_string(fixtures().join("corpus/questions.json")).unwrap();
        let questions: Vec<serde_json::Value> = serde_json::from_str(&raw).unwrap();
        let (mut same_top, mut overlap, mut n) = (0, 0.0, 0);
        for q in &questions {
            let question = q["question"].as_str().unwrap().to_string();
            let a = LexicalIndex::search(&tantivy, question.clone(), 10, Vec::new())
                .await
                .unwrap();
            let b = qdrant.search(question.clone(), 10, Vec::new()).await.unwrap();
            if a.is_empty() {
                assert!(b.is_empty());
                continue;
            }
            n += 1;
            assert_eq!(a[0].id, b[0].id, "top-1 differs for {question:?}: {a:?} vs {b:?}");
            same_top += 1;
            let ids: std::collections::HashSet<&str> = a.iter().map(|h| h.id.as_str()).collect();
            overlap += b.iter().filter(|h| ids.contains(h.id.as_str())).count() as f64
                / a.len().max(b.len()) as f64;
            // Scores are the same BM25 up to tantivy's one-byte length norms.
            let ratio = b[0].score / a[0].score;
            assert!((0.9..1.1).contains(&ratio), "{question:?}: {} vs {}", a[0].score, b[0].score);
        }
        let overlap = overlap / n as f64;
        println!("BM25 tantivy vs Qdrant sparse: top-1 equal on {same_top}/{n}, mean overlap@10 {overlap:.3}");
        assert!(overlap >= 0.8, "overlap@10 {overlap}");
        drop_collections(&settings).await;
    });
}
