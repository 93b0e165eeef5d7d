//! Conformance suites: what every implementation of a store trait must do, written once. The
//! embedded engines (SQLite, qdrant-edge, tantivy) and the fault-injection wrappers run them
//! in `tests/e2e/conformance.rs`; a cluster implementation (PostgreSQL, Qdrant) runs the same
//! functions. Each panics with what it found when an implementation falls short.

use crate::catalog::{
    chunk_id, source_id, status, Anchor, Catalog, ChunkRecord, FinishedSource, MediaRecord,
    Modality, NewSource, Segment,
};
use crate::lexical::{LexicalDoc, LexicalIndex};
use crate::store::{SearchFilter, SpaceSpec, VectorPoint, VectorStore};

fn chunk(source: &str, n: u64, modality: Modality) -> ChunkRecord {
    let anchor = match modality {
        Modality::Text => Anchor::Span {
            page: Some(1),
            char_start: n * 10,
            char_end: n * 10 + 9,
        },
        _ => Anchor::Time {
            start_ms: n * 1000,
            end_ms: n * 1000 + 999,
        },
    };
    ChunkRecord {
        id: chunk_id(source, "hash", "v1", modality, &anchor),
        source_id: source.to_string(),
        ordinal: n as u32,
        modality,
        text: if modality == Modality::Audio {
            String::new()
        } else {
            format!("chunk {n} of {source}")
        },
        context: "Title".into(),
        token_count: 4,
        anchor,
    }
}

/// The [`Catalog`] contract. Needs an empty catalog.
pub async fn catalog(catalog: &dyn Catalog) {
    let uri = "file:///conformance/a%20b.wav";
    let sid = source_id(uri);
    let new = || NewSource {
        id: &sid,
        uri,
        media_type: "audio",
        bytes: 42,
    };
    catalog
        .ensure_space("text/m/4", "m", 4, "text")
        .await
        .unwrap();
    catalog
        .ensure_space("text/m/4", "m", 4, "text")
        .await
        .unwrap();
    catalog
        .ensure_space("audio/a/2", "a", 2, "audio")
        .await
        .unwrap();
    assert!(catalog.searchable_spaces().await.unwrap().is_empty());

    catalog.begin_source(new()).await.unwrap();
    let begun = catalog.source(&sid).await.unwrap().expect("begun source");
    assert_eq!(
        (begun.status.as_str(), begun.uri.as_str()),
        (status::INDEXING, uri)
    );
    assert!(catalog.chunk_keys().await.unwrap().is_empty());

    let texts = vec![
        chunk(&sid, 0, Modality::Transcript),
        chunk(&sid, 1, Modality::Transcript),
    ];
    let audio = vec![chunk(&sid, 2, Modality::Audio)];
    let media = MediaRecord {
        duration_ms: 3000,
        info: r#"{"codec":"pcm"}"#.into(),
        segments: vec![
            Segment {
                start_ms: 0,
                end_ms: 900,
                text: "first".into(),
                words: Vec::new(),
            },
            Segment {
                start_ms: 1000,
                end_ms: 1900,
                text: "second".into(),
                words: Vec::new(),
            },
        ],
        transcript_key: "key-1".into(),
    };
    catalog
        .finish_source(&FinishedSource {
            source_id: &sid,
            content_hash: "hash",
            pipeline_version: "v1",
            title: Some("a b"),
            chunks: &texts,
            space: Some("text/m/4"),
            media: Some(&media),
            extras: vec![("audio/a/2", &audio)],
        })
        .await
        .unwrap();
    let done = catalog.source(&sid).await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.chunk_count),
        (status::COMPLETE, 3)
    );

    // Keys by id: where each chunk must be stored.
    let keys = catalog.chunk_keys().await.unwrap();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let audio_key = key.id == audio[0].id;
        assert_eq!(key.lexical, !audio_key, "{key:?}");
        assert_eq!(
            key.spaces,
            vec![if audio_key { "audio/a/2" } else { "text/m/4" }.to_string()]
        );
    }
    let spaces = catalog.spaces().await.unwrap();
    let text_space = spaces.iter().find(|s| s.name == "text/m/4").unwrap();
    assert_eq!((text_space.chunks, text_space.dims), (2, 4));
    assert_eq!(catalog.searchable_spaces().await.unwrap().len(), 2);

    // Lookups keep the order asked for and leave out unknown ids.
    let asked = vec![texts[1].id.clone(), "unknown".into(), texts[0].id.clone()];
    let found = catalog.chunks_by_ids(&asked).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec![texts[1].id.as_str(), texts[0].id.as_str()]);
    assert_eq!(found[0].anchor, texts[1].anchor);
    assert_eq!(found[0].text, texts[1].text);
    assert_eq!(found[0].context, "Title");

    // Transcripts: segments by time, reuse by key only.
    let seg = catalog.segments(&sid, 950, 5000).await.unwrap();
    assert_eq!(seg.len(), 1);
    assert_eq!(seg[0].text, "second");
    assert_eq!(
        catalog.transcript(&sid, "key-1").await.unwrap(),
        Some(media.clone())
    );
    assert_eq!(catalog.transcript(&sid, "key-2").await.unwrap(), None);
    assert_eq!(catalog.media_info(&sid).await.unwrap().unwrap().0, 3000);

    // A failed re-ingest keeps what was indexed; a re-begun source hides its chunks.
    catalog.fail_source(new(), "broken").await.unwrap();
    let failed = catalog.source(&sid).await.unwrap().unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref()),
        (status::COMPLETE, Some("broken"))
    );
    assert_eq!(catalog.counts().await.unwrap().stale, 1);
    catalog.clear_error(&sid).await.unwrap();
    assert_eq!(catalog.source(&sid).await.unwrap().unwrap().error, None);
    catalog.set_status(&sid, status::REMOVING).await.unwrap();
    assert!(catalog.chunks_by_ids(&asked).await.unwrap().is_empty());
    assert!(catalog.chunk_keys().await.unwrap().is_empty());
    assert_eq!(catalog.counts().await.unwrap().indexing, 1);
    assert_eq!(
        catalog
            .sources_with_status(status::REMOVING)
            .await
            .unwrap()
            .len(),
        1
    );

    // Removal takes chunks and segments with it.
    catalog.remove_source(&sid).await.unwrap();
    assert!(catalog.source(&sid).await.unwrap().is_none());
    assert!(catalog
        .segments(&sid, 0, u64::MAX)
        .await
        .unwrap()
        .is_empty());
    let counts = catalog.counts().await.unwrap();
    assert_eq!((counts.sources, counts.chunks), (0, 0));

    // A new file that fails is recorded as failed.
    catalog.fail_source(new(), "not audio").await.unwrap();
    assert_eq!(
        catalog.source(&sid).await.unwrap().unwrap().status,
        status::FAILED
    );
    assert_eq!(catalog.sources().await.unwrap().len(), 1);
}

fn unit(dims: usize, hot: usize) -> Vec<f32> {
    let mut v = vec![0.01; dims];
    v[hot % dims] = 1.0;
    v
}

fn point(id: &str, source: &str, hot: usize) -> VectorPoint {
    VectorPoint {
        id: id.to_string(),
        vector: unit(4, hot),
        parts: Vec::new(),
        payload: serde_json::json!({"source_id": source, "modality": "text"}),
    }
}

/// The [`VectorStore`] contract. Needs an empty store.
pub async fn vector_store(store: &dyn VectorStore) {
    let a = SpaceSpec {
        name: "text/conformance/4".into(),
        dims: 4,
        multivector: false,
    };
    let b = SpaceSpec {
        name: "audio/conformance/4".into(),
        ..a.clone()
    };
    store.ensure_space(&a).await.unwrap();
    store.ensure_space(&a).await.unwrap();
    store.ensure_space(&b).await.unwrap();
    let wrong = SpaceSpec {
        dims: 8,
        ..a.clone()
    };
    assert!(store.ensure_space(&wrong).await.is_err(), "dims are fixed");
    let mut names = store.space_names().await.unwrap();
    names.sort();
    assert_eq!(names, vec![b.name.clone(), a.name.clone()]);

    let ids: Vec<String> = (1..=3)
        .map(|i| format!("00000000-0000-4000-8000-00000000000{i}"))
        .collect();
    store
        .upsert(
            &a.name,
            vec![
                point(&ids[0], "s1", 0),
                point(&ids[1], "s1", 1),
                point(&ids[2], "s2", 2),
            ],
        )
        .await
        .unwrap();
    store
        .upsert(&b.name, vec![point(&ids[0], "s1", 0)])
        .await
        .unwrap();
    // Upsert by id replaces: no duplicate, the new vector wins.
    store
        .upsert(&a.name, vec![point(&ids[2], "s2", 3)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    let mut in_a = store.point_ids(&a.name).await.unwrap();
    in_a.sort();
    assert_eq!(in_a, ids);
    assert_eq!(store.count(&a.name).await.unwrap(), 3);
    let hits = store
        .search(&a.name, unit(4, 3), 2, SearchFilter::default())
        .await
        .unwrap();
    assert_eq!(hits[0].id, ids[2], "{hits:?}");
    assert!(hits[0].score > 0.99);
    let only_s1 = store
        .search(
            &a.name,
            unit(4, 3),
            10,
            SearchFilter {
                source_id: Some("s1".into()),
                modalities: vec!["text".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(only_s1.len(), 2);
    assert!(
        store
            .upsert(
                &a.name,
                vec![VectorPoint {
                    vector: vec![1.0; 3],
                    ..point(&ids[0], "s1", 0)
                }]
            )
            .await
            .is_err(),
        "wrong dimensions are refused"
    );

    // Deleting a source reaches every space; deleting by id one space.
    store.delete_source("s1").await.unwrap();
    assert_eq!(
        store.point_ids(&a.name).await.unwrap(),
        vec![ids[2].clone()]
    );
    assert!(store.point_ids(&b.name).await.unwrap().is_empty());
    store
        .delete_points(&a.name, vec![ids[2].clone()])
        .await
        .unwrap();
    store.flush().await.unwrap();
    store.optimize().await.unwrap();
    assert_eq!(store.count(&a.name).await.unwrap(), 0);
    assert!(store.point_ids("no/such/space").await.unwrap().is_empty());
}

fn doc(id: &str, source: &str, text: &str) -> LexicalDoc {
    LexicalDoc {
        chunk_id: id.into(),
        source_id: source.into(),
        modality: "text".into(),
        text: text.into(),
    }
}

/// The [`LexicalIndex`] contract. Needs an empty index.
pub async fn lexical_index(index: &dyn LexicalIndex) {
    index
        .upsert(vec![
            doc("c1", "s1", "the harbour lighthouse keeper"),
            doc("c2", "s1", "orchard apples in autumn"),
            doc("c3", "s2", "quarry stone and harbour walls"),
        ])
        .await
        .unwrap();
    assert_eq!(index.count().await.unwrap(), 0, "invisible until commit");
    index.commit().await.unwrap();
    assert_eq!(index.count().await.unwrap(), 3);
    // Upsert by chunk id: the new text replaces the old, never a second document.
    index
        .upsert(vec![doc("c2", "s1", "orchard pears in winter")])
        .await
        .unwrap();
    index.commit().await.unwrap();
    let mut ids = index.chunk_ids().await.unwrap();
    ids.sort();
    assert_eq!(ids, vec!["c1", "c2", "c3"]);
    assert!(index
        .search("apples".into(), 10, Vec::new())
        .await
        .unwrap()
        .is_empty());
    let hits = index
        .search("harbour".into(), 10, Vec::new())
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(index
        .search("harbour".into(), 10, vec!["transcript".into()])
        .await
        .unwrap()
        .is_empty());
    assert!(!index.terms("Harbour walls").unwrap().is_empty());

    index.delete_chunks(vec!["c3".into()]).await.unwrap();
    index.commit().await.unwrap();
    index.compact().await.unwrap();
    assert_eq!(index.chunk_ids().await.unwrap().len(), 2);
    index.delete_source("s1".into()).await.unwrap();
    index.commit().await.unwrap();
    assert!(index.chunk_ids().await.unwrap().is_empty());
    index.close_writer().await.unwrap();
}

/// The [`crate::embed::TextEmbedding`] contract: one unit vector of the model's dimensions
/// per text, in order, the same text giving the same vector whatever it is batched with.
pub async fn text_embedding(embedder: &dyn crate::embed::TextEmbedding) {
    use crate::embed::Purpose;
    let dims = embedder.spec().dims();
    assert!(embedder
        .embed(Vec::new(), Purpose::Passage)
        .await
        .unwrap()
        .is_empty());
    let texts: Vec<String> = ["glass frogs", "a ferry timetable", "glass frogs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let vectors = embedder
        .embed(texts.clone(), Purpose::Passage)
        .await
        .unwrap();
    assert_eq!(vectors.len(), 3);
    for v in &vectors {
        assert_eq!(v.len(), dims);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "unit length, got {norm}");
    }
    let alone = embedder
        .embed(vec![texts[1].clone()], Purpose::Passage)
        .await
        .unwrap();
    let cosine: f32 = alone[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.9999, "batching changes nothing: {cosine}");
    let same: f32 = vectors[0].iter().zip(&vectors[2]).map(|(a, b)| a * b).sum();
    assert!(same > 0.9999);
    assert!(embedder.token_counter().count("glass frogs") >= 2);
    let query = embedder
        .embed(vec!["glass frogs".into()], Purpose::Query)
        .await
        .unwrap();
    assert_eq!(query[0].len(), dims);
}

/// The [`crate::transcribe::Transcriber`] contract on a recording that says `words`: timed
/// segments in order, inside the recording, that contain the words.
pub async fn transcriber(
    transcriber: &dyn crate::transcribe::Transcriber,
    recording: &std::path::Path,
    words: &[&str],
) {
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = heard.clone();
    let transcript = transcriber
        .transcribe(
            recording,
            crate::transcribe::TranscribeOptions::default(),
            Box::new(move |done, _| seen.store(done, std::sync::atomic::Ordering::SeqCst)),
        )
        .await
        .unwrap();
    assert!(transcript.duration_ms > 0);
    assert!(!transcript.segments.is_empty());
    let mut last_end = 0;
    for s in &transcript.segments {
        assert!(
            s.start_ms < s.end_ms && s.end_ms <= transcript.duration_ms + 50,
            "{s:?}"
        );
        assert!(s.start_ms + 50 >= last_end, "in order: {s:?}");
        last_end = s.end_ms;
    }
    let text: String = transcript
        .segments
        .iter()
        .map(|s| s.text.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    for word in words {
        assert!(text.contains(word), "{word:?} in {text:?}");
    }
    assert!(
        heard.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "progress was reported"
    );
    let missing = transcriber
        .transcribe(
            std::path::Path::new("/no/such/recording.wav"),
            crate::transcribe::TranscribeOptions::default(),
            Box::new(|_, _| {}),
        )
        .await;
    assert!(
        missing.is_err(),
        "a missing file is an error, not a transcript"
    );
}
