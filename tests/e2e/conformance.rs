//! Every store implementation passes its trait's conformance suite (`mosaic::conformance`):
//! the embedded engines, and the same engines behind the fault-injection wrappers with no
//! fault planned (the wrappers must be transparent).

use std::sync::Arc;

use mosaic::catalog::SqlCatalog;
use mosaic::conformance;
use mosaic::faults::{FaultPlan, FaultyCatalog, FaultyLexical, FaultyVectors};
use mosaic::lexical::TantivyIndex;
use mosaic::store::EdgeStore;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn sqlite_catalog_conforms() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let plain = SqlCatalog::open(&dir.path().join("a.db")).await.unwrap();
        conformance::catalog(&plain).await;
        let wrapped = FaultyCatalog {
            inner: Arc::new(SqlCatalog::open(&dir.path().join("b.db")).await.unwrap()),
            plan: FaultPlan::never(),
        };
        conformance::catalog(&wrapped).await;
        assert!(wrapped.plan.calls() > 20);
    });
}

#[test]
fn edge_vector_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let plain = EdgeStore::open(&dir.path().join("a")).unwrap();
        conformance::vector_store(&plain).await;
        let wrapped = FaultyVectors {
            inner: Arc::new(EdgeStore::open(&dir.path().join("b")).unwrap()),
            plan: FaultPlan::never(),
        };
        conformance::vector_store(&wrapped).await;
        assert!(wrapped.plan.calls() > 10);
    });
}

#[test]
fn tantivy_lexical_index_conforms() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (plain, _) = TantivyIndex::open(&dir.path().join("a"), "en_stem").unwrap();
        conformance::lexical_index(&plain).await;
        let (inner, _) = TantivyIndex::open(&dir.path().join("b"), "en_stem").unwrap();
        let wrapped = FaultyLexical {
            inner: Arc::new(inner),
            plan: FaultPlan::never(),
        };
        conformance::lexical_index(&wrapped).await;
        assert!(wrapped.plan.calls() > 10);
    });
}

#[test]
fn model_workers_conform() {
    use mosaic::engine::Models;
    crate::common::real_model(crate::common::MINILM);
    let dir = tempfile::tempdir().unwrap();
    let wav = crate::common::spoken(&dir.path().join("notice.wav"), crate::common::NOTICE);
    runtime().block_on(async {
        let hub = mosaic::app::ModelHub::new(&mosaic::config::Settings::default()).unwrap();
        let embedder = hub.text_embedder(crate::common::MINILM).await.unwrap();
        conformance::text_embedding(embedder.as_ref()).await;
        let whisper = hub.transcriber("tiny.en").await.unwrap();
        conformance::transcriber(whisper.as_ref(), &wav, &["car park", "october"]).await;
        // A loaded model stays loaded: the hub hands out the same worker.
        let again = hub.text_embedder(crate::common::MINILM).await.unwrap();
        assert!(Arc::ptr_eq(&embedder, &again));
    });
}
