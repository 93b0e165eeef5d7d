//! `mosaic status` compares the stores with the catalog chunk id by chunk id: an orphan and a
//! missing chunk that cancel out by count are both reported, and `mosaic repair` fixes them.

use std::sync::Arc;

use mosaic::app::Mosaic;
use mosaic::engine::NoProgress;
use mosaic::ingest::IngestOptions;
use mosaic::lexical::LexicalDoc;
use mosaic::store::VectorPoint;

use crate::common::{fixtures, mosaic, ok, real_model, MINILM};

#[test]
fn orphans_and_missing_chunks_do_not_cancel_out_and_repair_fixes_both() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for name in ["science-glass-frogs.md", "history-varnholt-canal.md"] {
        std::fs::copy(fixtures().join("corpus").join(name), docs.join(name)).unwrap();
    }
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (space, victims) = runtime.block_on(async {
        let mut settings = mosaic::config::Settings {
            data_dir: data.clone(),
            ..Default::default()
        };
        settings.llm.embedded = false;
        let app = Mosaic::open(settings).await.unwrap();
        let report = app
            .ingest(
                std::slice::from_ref(&docs),
                &IngestOptions::default(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap();
        assert_eq!(report.ingested, 2);
        let keys = app.catalog.chunk_keys().await.unwrap();
        let space = keys[0].spaces[0].clone();
        let (a, b) = (keys[0].id.clone(), keys[1].id.clone());
        // The vector store loses chunk a and gains an orphan; BM25 loses chunk b and gains one.
        app.vectors
            .delete_points(&space, vec![a.clone()])
            .await
            .unwrap();
        let orphan = "00000000-0000-4000-8000-000000000001".to_string();
        let dims = app.catalog.spaces().await.unwrap()[0].dims as usize;
        app.vectors
            .upsert(
                &space,
                vec![VectorPoint {
                    id: orphan.clone(),
                    vector: vec![0.1; dims],
                    parts: Vec::new(),
                    payload: serde_json::json!({"source_id": "gone", "modality": "text"}),
                }],
            )
            .await
            .unwrap();
        app.lexical.delete_chunks(vec![b.clone()]).await.unwrap();
        app.lexical
            .upsert(vec![LexicalDoc {
                chunk_id: orphan.clone(),
                source_id: "gone".into(),
                modality: "text".into(),
                text: "an orphan nobody catalogued".into(),
            }])
            .await
            .unwrap();
        app.lexical.commit().await.unwrap();
        app.vectors.flush().await.unwrap();
        app.lexical.close_writer().await.unwrap();
        (space, (a, b))
    });
    let _ = victims;

    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["consistent"], false, "{status}");
    let by_space = &status["vectors"][space.as_str()];
    assert_eq!(
        (&by_space["orphans"], &by_space["missing"]),
        (&1.into(), &1.into()),
        "{status}"
    );
    assert_eq!(
        by_space["entries"], status["spaces"][0]["chunks"],
        "the counts alone agree: {status}"
    );
    assert_eq!(
        (&status["lexical"]["orphans"], &status["lexical"]["missing"]),
        (&1.into(), &1.into()),
        "{status}"
    );
    let human = mosaic(&data, &["status"], &[]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("1 orphan(s), 1 missing"), "{text}");

    let repaired = ok(&mosaic(&data, &["--json", "repair"], &[]));
    assert_eq!(repaired["status"]["consistent"], true, "{repaired}");
    assert_eq!(
        repaired["repair"]["ingested"], 1,
        "the source missing a vector is ingested again: {repaired}"
    );
    let status = ok(&mosaic(&data, &["--json", "status"], &[]));
    assert_eq!(status["consistent"], true, "{status}");
    let hits = ok(&mosaic(
        &data,
        &[
            "--json",
            "search",
            "orphan nobody catalogued",
            "--mode",
            "bm25",
        ],
        &[],
    ));
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["chunk_id"] != "00000000-0000-4000-8000-000000000001"),
        "{hits}"
    );
}
