//! The write path under injected faults. A scenario (ingest three documents and a recording,
//! replace one document, remove another) is run once per store call N, with the N-th call
//! failing with an error, and again with it panicking. After each failure the data directory
//! is opened again without faults and the scenario goes on from the step that failed. Then the
//! three stores must agree chunk id by chunk id (no orphan, missing or duplicate chunk), the
//! catalog must hold exactly the chunks of a clean run, and searches must return what they
//! return on the clean run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use mosaic::app::{ModelHub, Mosaic};
use mosaic::embed::{AudioEmbedding, ImageEmbedding, Reranker, TextEmbedding};
use mosaic::engine::{Models, NoProgress};
use mosaic::faults::{wrap, FaultKind, FaultPlan};
use mosaic::ingest::IngestOptions;
use mosaic::llm::Generator;
use mosaic::models::ModelError;
use mosaic::query::SearchRequest;
use mosaic::transcribe::{Progress, TranscribeError, TranscribeOptions, Transcriber, Transcript};

use crate::common::{fixtures, real_model, spoken, MINILM, NOTICE};

const QUERIES: [&str; 3] = [
    "When does the lower car park close for resurfacing?",
    "How do glass frogs hide their hearts?",
    "What did the replacement paragraph say about lanterns?",
];

/// A fresh copy of the scenario's files: three documents and a short spoken recording.
fn corpus(into: &Path, recording: &Path) -> PathBuf {
    let dir = into.join("files");
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "handbook-brightwater.md",
        "science-glass-frogs.md",
        "travel-isle-of-marrow.txt",
    ] {
        std::fs::copy(fixtures().join("corpus").join(name), dir.join(name)).unwrap();
    }
    std::fs::copy(recording, dir.join("notice.wav")).unwrap();
    dir
}

fn settings(data: &Path) -> mosaic::config::Settings {
    let mut settings = mosaic::config::Settings {
        data_dir: data.to_path_buf(),
        pipelines_dir: Some(crate::common::repo().join("pipelines")),
        ..Default::default()
    };
    settings.llm.embedded = false;
    settings.lock_wait_secs = 5;
    settings
}

/// The real models, with Whisper's transcript of a file remembered for the life of the test:
/// the scenario is run well over a hundred times and transcribes the same recording each
/// time; the first run of Whisper is real, the later ones return what it wrote (the write
/// path under test is the same either way).
struct RememberedSpeech {
    hub: Arc<ModelHub>,
    whisper: tokio::sync::OnceCell<Arc<dyn Transcriber>>,
    transcripts: std::sync::Mutex<std::collections::HashMap<String, Transcript>>,
}

impl Transcriber for RememberedSpeech {
    fn transcribe<'a>(
        &'a self,
        path: &'a Path,
        options: TranscribeOptions,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transcript, TranscribeError>> {
        async move {
            let key = blake3::hash(&std::fs::read(path).unwrap())
                .to_hex()
                .to_string();
            if let Some(t) = self.transcripts.lock().unwrap().get(&key) {
                return Ok(t.clone());
            }
            let whisper = self
                .whisper
                .get_or_try_init(|| self.hub.transcriber("tiny.en"))
                .await
                .map_err(|e| TranscribeError::Failed(e.to_string()))?;
            let transcript = whisper.transcribe(path, options, progress).await?;
            self.transcripts
                .lock()
                .unwrap()
                .insert(key, transcript.clone());
            Ok(transcript)
        }
        .boxed()
    }
}

/// [`Models`] of the hub, speech through [`RememberedSpeech`].
struct TestModels(Arc<RememberedSpeech>);

impl Models for TestModels {
    fn text_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn TextEmbedding>, ModelError>> {
        self.0.hub.text_embedder(id)
    }
    fn reranker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Arc<dyn Reranker>, ModelError>> {
        self.0.hub.reranker(id)
    }
    fn transcriber<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn Transcriber>, ModelError>> {
        let speech: Arc<dyn Transcriber> = self.0.clone();
        async move { Ok(speech) }.boxed()
    }
    fn audio_embedder<'a>(
        &'a self,
        path: &'a Path,
    ) -> BoxFuture<'a, Result<Arc<dyn AudioEmbedding>, ModelError>> {
        self.0.hub.audio_embedder(path)
    }
    fn image_embedder<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<dyn ImageEmbedding>, ModelError>> {
        self.0.hub.image_embedder(id)
    }
    fn generator(&self) -> BoxFuture<'_, (Option<Arc<dyn Generator>>, String)> {
        self.0.hub.generator()
    }
}

/// One step of the scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ingest,
    Replace,
    Remove,
}

const STEPS: [Step; 3] = [Step::Ingest, Step::Replace, Step::Remove];

async fn run_step(mosaic: &Mosaic, files: &Path, step: Step) -> Result<(), String> {
    let options = IngestOptions::default();
    let progress = Arc::new(NoProgress);
    match step {
        Step::Ingest => {}
        Step::Replace => {
            // Idempotent, so a re-run after a fault writes the same file.
            let path = files.join("handbook-brightwater.md");
            let mut text =
                std::fs::read_to_string(fixtures().join("corpus/handbook-brightwater.md")).unwrap();
            text.push_str("\n\n## Lanterns\n\nThe replacement paragraph says every volunteer carries a red lantern after dusk.\n");
            std::fs::write(&path, text).unwrap();
        }
        Step::Remove => {
            let path = files.join("travel-isle-of-marrow.txt");
            return mosaic
                .remove_paths(&[path], false)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
    }
    let report = mosaic
        .ingest(&[files.to_path_buf()], &options, progress)
        .await
        .map_err(|e| e.to_string())?;
    // A store fault inside a file's preparation ends the run: it never turns into a failed file.
    assert!(report.failed.is_empty(), "{step:?}: {:?}", report.failed);
    Ok(())
}

/// What a finished data directory holds: its catalogued chunk ids and the hits of the queries.
#[derive(Debug, PartialEq)]
struct Outcome {
    chunk_ids: Vec<String>,
    searches: Vec<Vec<String>>,
}

async fn outcome(mosaic: &Mosaic) -> Outcome {
    let check = mosaic::ingest::write::check(
        mosaic.catalog.as_ref(),
        mosaic.vectors.as_ref(),
        mosaic.lexical.as_ref(),
    )
    .await
    .unwrap();
    assert!(check.consistent, "stores disagree by id: {check:#?}");
    let mut chunk_ids: Vec<String> = mosaic
        .catalog
        .chunk_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    chunk_ids.sort();
    let mut searches = Vec::new();
    for q in QUERIES {
        let found = mosaic
            .search(&SearchRequest {
                rerank: false,
                ..SearchRequest::new(q, 5).passages()
            })
            .await
            .unwrap();
        searches.push(found.hits.iter().map(|h| h.chunk.id.clone()).collect());
    }
    Outcome {
        chunk_ids,
        searches,
    }
}

/// Runs the scenario with `plan` on fresh files; after a failed step, reopens without faults
/// and goes on from that step. Returns the outcome and whether a step failed.
async fn scenario(
    root: &Path,
    recording: &Path,
    workers: &Arc<dyn Models>,
    plan: &Arc<FaultPlan>,
) -> (Outcome, Option<(Step, String)>) {
    let files = corpus(root, recording);
    let data = root.join("data");
    let workers = workers.clone();
    let faulty =
        std::panic::AssertUnwindSafe(Mosaic::open_with(settings(&data), workers.clone(), |s| {
            wrap(s, plan)
        }))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(mosaic::app::AppError::DataDir {
                path: data.clone(),
                source: std::io::Error::other("panicked while opening"),
            })
        });
    let mut failed = None;
    let mut next = 0;
    if let Ok(mosaic) = faulty {
        for (i, step) in STEPS.iter().enumerate() {
            let result = std::panic::AssertUnwindSafe(run_step(&mosaic, &files, *step))
                .catch_unwind()
                .await;
            match result {
                Ok(Ok(())) => next = i + 1,
                Ok(Err(e)) => {
                    failed = Some((*step, e));
                    break;
                }
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "panic".into());
                    failed = Some((*step, text));
                    break;
                }
            }
        }
    } else if let Err(e) = faulty {
        failed = Some((Step::Ingest, format!("open: {e}")));
    }
    let mosaic = Mosaic::open_with(settings(&data), workers, |s| s)
        .await
        .unwrap();
    for step in &STEPS[next..] {
        run_step(&mosaic, &files, *step).await.unwrap();
    }
    (outcome(&mosaic).await, failed)
}

#[test]
fn every_store_call_failing_or_panicking_leaves_a_consistent_index() {
    real_model(MINILM);
    let dir = tempfile::tempdir().unwrap();
    let recording = spoken(&dir.path().join("notice.wav"), NOTICE);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Every run uses the same paths (chunk ids derive from them), emptied between runs.
        let base = dir.path().join("run");
        let hub = Arc::new(ModelHub::new(&settings(&base)).unwrap());
        let models: Arc<dyn Models> = Arc::new(TestModels(Arc::new(RememberedSpeech {
            hub,
            whisper: tokio::sync::OnceCell::new(),
            transcripts: Default::default(),
        })));
        let clean_plan = FaultPlan::never();
        let (clean, failed) = scenario(&base, &recording, &models, &clean_plan).await;
        assert!(failed.is_none(), "{failed:?}");
        std::fs::remove_dir_all(&base).unwrap();
        let calls = clean_plan.calls();
        assert!(
            clean.chunk_ids.len() >= 4 && clean.searches.iter().all(|s| !s.is_empty()),
            "{clean:?}"
        );
        // The injected panics print their messages below; each is caught and expected.
        let mut results = Vec::new();
        for kind in [FaultKind::Error, FaultKind::Panic] {
            // MOSAIC_FAULT_FROM=N replays from the N-th call.
            let from = std::env::var("MOSAIC_FAULT_FROM")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            for n in from..=calls {
                let plan = FaultPlan::at(n, kind);
                let (got, failed) = scenario(&base, &recording, &models, &plan).await;
                let call = plan.log().get(n - 1).copied().unwrap_or("?");
                results.push((kind, n, call, plan.fired(), failed.is_some(), got == clean));
                if got != clean {
                    let extra: Vec<&String> = got
                        .chunk_ids
                        .iter()
                        .filter(|id| !clean.chunk_ids.contains(id))
                        .collect();
                    let lost: Vec<&String> = clean
                        .chunk_ids
                        .iter()
                        .filter(|id| !got.chunk_ids.contains(id))
                        .collect();
                    panic!(
                        "{kind:?} at call {n} ({call}), failed step {failed:?}: chunks not in the clean run {extra:?}, clean chunks lost {lost:?}; searches {:?} vs clean {:?}",
                        got.searches, clean.searches
                    );
                }
                std::fs::remove_dir_all(&base).unwrap();
            }
        }
        for (kind, n, call, fired, failed, same) in &results {
            println!("{kind:?} at call {n:3} {call:32} fired {fired} step failed {failed} same {same}");
        }
        assert!(
            results.iter().all(|r| r.3),
            "every planned fault happened (the scenario makes {calls} calls)"
        );
        println!(
            "{} faulty runs over {calls} store calls: all consistent by id and equal to the clean run",
            results.len()
        );
    });
}
