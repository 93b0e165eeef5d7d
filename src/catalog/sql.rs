//! The catalog on SQL: SQLite in WAL mode under the data directory (the embedded default) or
//! PostgreSQL (`[backend] catalog = "postgres://…"`), one implementation through sqlx's `Any`
//! driver. Every statement uses `$n` placeholders, `ON CONFLICT` upserts, `CASE` sums and
//! timestamps bound from Rust, so the same SQL runs on both; each engine has its own
//! migrations (`migrations/sqlite`, `migrations/postgres`) creating the same tables, with
//! PostgreSQL's integers as BIGINT so rows decode alike.
//!
//! Durability: SQLite runs with `synchronous = FULL`, so a committed transaction (and with it
//! a source's `complete` mark) survives a power cut, not only a killed process. The price is one
//! fsync per source; ingest commits its stores in batches, so the catalog's fsyncs are a small
//! part of a run. PostgreSQL commits durably by default (`synchronous_commit = on`).

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

use super::{
    status, Anchor, Catalog, CatalogCounts, CatalogError, ChunkKey, ChunkRecord, ChunkWithSpaces,
    FinishedSource, MediaRecord, Modality, NewSource, Result, Segment, Source, SpaceRow,
    StoredChunk,
};

/// Which engine a [`SqlCatalog`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlEngine {
    Sqlite,
    Postgres,
}

/// The catalog, on SQLite or PostgreSQL.
#[derive(Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    engine: SqlEngine,
}

/// The current time as the catalog stores it (RFC 3339, UTC, milliseconds).
pub(crate) fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        (day_secs / 60) % 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// Takes the exclusive lock on `<catalog>.open-lock`, waiting for another process that holds
/// it; released when the file is dropped.
async fn open_lock(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".open-lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|e| CatalogError::Lock(e.to_string()))
}

impl SqlCatalog {
    /// Opens (creating if needed) the SQLite catalog at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        // Opening a new catalog switches it to WAL and applies the migrations, and sqlx takes
        // no lock around either: two processes opening it at once (an ingest and a
        // `mosaic status`) would both apply the first migration, or meet SQLite's immediate
        // "database is locked" on the journal switch. A lock file beside the database
        // serialises opens across processes; once open, WAL and the busy timeout share it.
        let lock = open_lock(path).await?;
        let options = AnyConnectOptions::from_url(&sqlite_url(path)?)?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // The busy timeout first: the journal switch may wait for another writer.
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        drop(lock);
        Ok(Self {
            pool,
            engine: SqlEngine::Sqlite,
        })
    }

    /// Connects to the PostgreSQL catalog at `url` (`postgres://user:password@host/db`) and
    /// applies migrations (sqlx holds an advisory lock while it does, so servers and workers
    /// starting together apply each migration once). `timeout` bounds connecting and waiting
    /// for a pooled connection.
    pub async fn connect(url: &str, max_connections: u32, timeout: Duration) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| CatalogError::Config(format!("catalog URL {}: {e}", redact(url))))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(CatalogError::Config(format!(
                "catalog URL {} must start with postgres://",
                redact(url)
            )));
        }
        let options = AnyConnectOptions::from_url(&parsed)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(timeout)
            .connect_with(options);
        let pool = tokio::time::timeout(timeout, pool)
            .await
            .map_err(|_| CatalogError::Unreachable {
                url: redact(url),
                reason: format!("no answer within {} s", timeout.as_secs_f64()),
            })?
            .map_err(|e| CatalogError::Unreachable {
                url: redact(url),
                reason: e.to_string(),
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            engine: SqlEngine::Postgres,
        })
    }

    /// The engine this catalog runs on.
    pub fn engine(&self) -> SqlEngine {
        self.engine
    }

    /// The shared ingest queue; PostgreSQL only.
    pub fn queue(&self) -> Option<super::Queue> {
        (self.engine == SqlEngine::Postgres).then(|| super::Queue {
            pool: self.pool.clone(),
        })
    }

    /// Runs one statement that returns no rows.
    async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<()> {
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn finish(&self, done: &FinishedSource<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks WHERE source_id = $1")
            .bind(done.source_id)
            .execute(&mut *tx)
            .await?;
        let mut all: Vec<(&ChunkRecord, Option<&str>)> =
            done.chunks.iter().map(|c| (c, done.space)).collect();
        for (space, chunks) in &done.extras {
            all.extend(chunks.iter().map(|c| (c, Some(*space))));
        }
        for (chunk, space) in all {
            let (kind, page, cs, ce, sm, em, at) = anchor_columns(&chunk.anchor);
            sqlx::query(
                "INSERT INTO chunks (id, source_id, ordinal, modality, text, context, token_count, anchor_kind,
                   page, char_start, char_end, start_ms, end_ms, at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&chunk.id)
            .bind(&chunk.source_id)
            .bind(chunk.ordinal as i64)
            .bind(chunk.modality.as_str())
            .bind(&chunk.text)
            .bind(&chunk.context)
            .bind(chunk.token_count as i64)
            .bind(kind)
            .bind(page)
            .bind(cs)
            .bind(ce)
            .bind(sm)
            .bind(em)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if let Some(space) = space {
                sqlx::query("INSERT INTO chunk_vectors (chunk_id, space) VALUES ($1, $2)")
                    .bind(&chunk.id)
                    .bind(space)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(media) = done.media {
            sqlx::query("DELETE FROM segments WHERE source_id = $1")
                .bind(done.source_id)
                .execute(&mut *tx)
                .await?;
            for (ordinal, seg) in media.segments.iter().enumerate() {
                let words = (!seg.words.is_empty())
                    .then(|| serde_json::to_string(&seg.words).expect("words serialize"));
                sqlx::query(
                    "INSERT INTO segments (source_id, ordinal, start_ms, end_ms, text, words)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(done.source_id)
                .bind(ordinal as i64)
                .bind(seg.start_ms as i64)
                .bind(seg.end_ms as i64)
                .bind(&seg.text)
                .bind(words)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE sources SET duration_ms = $1, media_info = $2, transcript_key = $3 WHERE id = $4",
            )
            .bind(media.duration_ms as i64)
            .bind(&media.info)
            .bind(&media.transcript_key)
            .bind(done.source_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE sources SET status = $1, error = NULL, content_hash = $2, pipeline_version = $3,
               title = $4, chunk_count = $5, updated_at = $6
             WHERE id = $7",
        )
        .bind(status::COMPLETE)
        .bind(done.content_hash)
        .bind(done.pipeline_version)
        .bind(done.title)
        .bind((done.chunks.len() + done.extras.iter().map(|(_, c)| c.len()).sum::<usize>()) as i64)
        .bind(now())
        .bind(done.source_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn by_ids(&self, ids: &[String]) -> Result<Vec<StoredChunk>> {
        let mut by_id = std::collections::HashMap::new();
        // SQLite allows 32,766 parameters; stay well below in one statement.
        for part in ids.chunks(900) {
            let placeholders: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT c.id AS chunk_id, c.ordinal, c.modality, c.text, c.context, c.anchor_kind, c.page, c.char_start,
                        c.char_end, c.start_ms, c.end_ms, c.at_ms, s.*
                 FROM chunks c JOIN sources s ON s.id = c.source_id
                 WHERE s.status = 'complete' AND c.id IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query(&sql);
            for id in part {
                query = query.bind(id);
            }
            for row in &query.fetch_all(&self.pool).await? {
                let chunk = stored_chunk_from_row(row)?;
                by_id.insert(chunk.id.clone(), chunk);
            }
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn records(&self, source_id: &str) -> Result<Vec<ChunkWithSpaces>> {
        let rows = sqlx::query(
            "SELECT c.id AS chunk_id, c.ordinal, c.modality, c.text, c.context, c.token_count,
                    c.anchor_kind, c.page, c.char_start, c.char_end, c.start_ms, c.end_ms, c.at_ms,
                    cv.space, s.*
             FROM chunks c JOIN sources s ON s.id = c.source_id
             LEFT JOIN chunk_vectors cv ON cv.chunk_id = c.id
             WHERE c.source_id = $1 ORDER BY c.ordinal, c.id, cv.space",
        )
        .bind(source_id)
        .fetch_all(&self.pool)
        .await?;
        let mut records: Vec<(ChunkRecord, Vec<String>)> = Vec::new();
        for row in &rows {
            let space: Option<String> = row.try_get("space")?;
            let id: String = row.try_get("chunk_id")?;
            if let Some((_, spaces)) = records.last_mut().filter(|(c, _)| c.id == id) {
                spaces.extend(space);
                continue;
            }
            let stored = stored_chunk_from_row(row)?;
            let token_count: Option<i64> = row.try_get("token_count")?;
            records.push((
                ChunkRecord {
                    id: stored.id,
                    source_id: source_id.to_string(),
                    ordinal: stored.ordinal,
                    modality: stored.modality,
                    text: stored.text,
                    context: stored.context,
                    token_count: token_count.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
                    anchor: stored.anchor,
                },
                space.into_iter().collect(),
            ));
        }
        Ok(records)
    }

    async fn keys(&self) -> Result<Vec<ChunkKey>> {
        let rows = sqlx::query(
            "SELECT c.id, c.source_id, c.modality, cv.space
             FROM chunks c JOIN sources s ON s.id = c.source_id
             LEFT JOIN chunk_vectors cv ON cv.chunk_id = c.id
             WHERE s.status = 'complete' ORDER BY c.id, cv.space",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut keys: Vec<ChunkKey> = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            let space: Option<String> = row.try_get("space")?;
            if let Some(last) = keys.last_mut().filter(|k| k.id == id) {
                last.spaces.extend(space);
                continue;
            }
            let modality: String = row.try_get("modality")?;
            keys.push(ChunkKey {
                id,
                source_id: row.try_get("source_id")?,
                spaces: space.into_iter().collect(),
                lexical: Modality::parse(&modality).is_some_and(|m| m.in_bm25()),
            });
        }
        Ok(keys)
    }

    async fn segments_between(
        &self,
        source_id: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Segment>> {
        let rows = sqlx::query(
            "SELECT start_ms, end_ms, text, words FROM segments
             WHERE source_id = $1 AND end_ms > $2 AND start_ms < $3 ORDER BY ordinal",
        )
        .bind(source_id)
        .bind(from_ms.min(i64::MAX as u64) as i64)
        .bind(to_ms.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let words: Option<String> = r.try_get("words")?;
                let words = match words {
                    Some(w) => serde_json::from_str(&w)
                        .map_err(|e| CatalogError::Corrupt(format!("segment words: {e}")))?,
                    None => Vec::new(),
                };
                Ok(Segment {
                    start_ms: r.try_get::<i64, _>("start_ms")? as u64,
                    end_ms: r.try_get::<i64, _>("end_ms")? as u64,
                    text: r.try_get("text")?,
                    words,
                })
            })
            .collect()
    }

    async fn info(&self, source_id: &str) -> Result<Option<(u64, serde_json::Value)>> {
        let row = sqlx::query("SELECT duration_ms, media_info FROM sources WHERE id = $1")
            .bind(source_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let duration: Option<i64> = row.try_get("duration_ms")?;
        let info: Option<String> = row.try_get("media_info")?;
        Ok(match (duration, info) {
            (Some(d), Some(i)) => Some((
                d as u64,
                serde_json::from_str(&i).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
            )),
            _ => None,
        })
    }

    async fn stored_transcript(&self, source_id: &str, key: &str) -> Result<Option<MediaRecord>> {
        let row = sqlx::query(
            "SELECT duration_ms, media_info FROM sources
             WHERE id = $1 AND transcript_key = $2 AND duration_ms IS NOT NULL AND media_info IS NOT NULL",
        )
        .bind(source_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let duration: i64 = row.try_get("duration_ms")?;
        Ok(Some(MediaRecord {
            duration_ms: duration as u64,
            info: row.try_get("media_info")?,
            segments: self.segments_between(source_id, 0, u64::MAX).await?,
            transcript_key: key.to_string(),
        }))
    }
}

impl Catalog for SqlCatalog {
    fn source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Source>>> {
        async move {
            let row = sqlx::query("SELECT * FROM sources WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|r| source_from_row(&r)).transpose()
        }
        .boxed()
    }

    fn sources(&self) -> BoxFuture<'_, Result<Vec<Source>>> {
        async move {
            let rows = sqlx::query("SELECT * FROM sources ORDER BY uri")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(source_from_row).collect()
        }
        .boxed()
    }

    fn sources_with_status<'a>(&'a self, status: &'a str) -> BoxFuture<'a, Result<Vec<Source>>> {
        async move {
            let rows = sqlx::query("SELECT * FROM sources WHERE status = $1 ORDER BY uri")
                .bind(status)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(source_from_row).collect()
        }
        .boxed()
    }

    fn begin_source<'a>(&'a self, source: NewSource<'a>) -> BoxFuture<'a, Result<()>> {
        async move {
            let now = now();
            sqlx::query(
                "INSERT INTO sources (id, uri, media_type, bytes, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT(id) DO UPDATE SET media_type = excluded.media_type, bytes = excluded.bytes,
                   status = excluded.status, error = NULL, updated_at = excluded.updated_at",
            )
            .bind(source.id)
            .bind(source.uri)
            .bind(source.media_type)
            .bind(source.bytes)
            .bind(status::INDEXING)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn finish_source<'a>(&'a self, done: &'a FinishedSource<'a>) -> BoxFuture<'a, Result<()>> {
        self.finish(done).boxed()
    }

    fn fail_source<'a>(
        &'a self,
        source: NewSource<'a>,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let now = now();
            sqlx::query(
                "INSERT INTO sources (id, uri, media_type, bytes, status, error, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT(id) DO UPDATE SET error = excluded.error,
                   status = CASE WHEN sources.chunk_count > 0 AND sources.status = 'complete'
                                 THEN sources.status ELSE excluded.status END,
                   updated_at = excluded.updated_at",
            )
            .bind(source.id)
            .bind(source.uri)
            .bind(source.media_type)
            .bind(source.bytes)
            .bind(status::FAILED)
            .bind(error)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn clear_error<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.execute(sqlx::query("UPDATE sources SET error = NULL WHERE id = $1").bind(id))
            .boxed()
    }

    fn set_status<'a>(&'a self, id: &'a str, status: &'a str) -> BoxFuture<'a, Result<()>> {
        let query = sqlx::query("UPDATE sources SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now())
            .bind(id);
        self.execute(query).boxed()
    }

    fn remove_source<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.execute(sqlx::query("DELETE FROM sources WHERE id = $1").bind(id))
            .boxed()
    }

    fn ensure_space<'a>(
        &'a self,
        name: &'a str,
        model_id: &'a str,
        dims: usize,
        modality: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            sqlx::query(
                "INSERT INTO embedding_spaces (name, model_id, dims, modality, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT(name) DO NOTHING",
            )
            .bind(name)
            .bind(model_id)
            .bind(dims as i64)
            .bind(modality)
            .bind(now())
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn spaces(&self) -> BoxFuture<'_, Result<Vec<SpaceRow>>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.name, s.model_id, s.dims, s.modality, COUNT(cv.chunk_id) AS chunks
                 FROM embedding_spaces s LEFT JOIN chunk_vectors cv ON cv.space = s.name
                 GROUP BY s.name, s.model_id, s.dims, s.modality ORDER BY s.name",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| space_from_row(r, r.try_get("chunks")?))
                .collect()
        }
        .boxed()
    }

    fn searchable_spaces(&self) -> BoxFuture<'_, Result<Vec<SpaceRow>>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.name, s.model_id, s.dims, s.modality FROM embedding_spaces s
                 WHERE EXISTS (SELECT 1 FROM chunk_vectors cv WHERE cv.space = s.name)
                 ORDER BY s.name",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(|r| space_from_row(r, 1)).collect()
        }
        .boxed()
    }

    fn chunks_by_ids<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<StoredChunk>>> {
        self.by_ids(ids).boxed()
    }

    fn chunk_keys(&self) -> BoxFuture<'_, Result<Vec<ChunkKey>>> {
        self.keys().boxed()
    }

    fn counts(&self) -> BoxFuture<'_, Result<CatalogCounts>> {
        async move {
            let row = sqlx::query(
                "SELECT COUNT(*) AS sources,
                   COALESCE(SUM(CASE WHEN status = 'complete' THEN 1 ELSE 0 END), 0) AS complete,
                   COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
                   COALESCE(SUM(CASE WHEN status IN ('indexing', 'removing') THEN 1 ELSE 0 END), 0) AS indexing,
                   COALESCE(SUM(CASE WHEN status = 'complete' AND error IS NOT NULL THEN 1 ELSE 0 END), 0) AS stale,
                   (SELECT COUNT(*) FROM chunks) AS chunks
                 FROM sources",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(CatalogCounts {
                sources: row.try_get("sources")?,
                complete: row.try_get("complete")?,
                failed: row.try_get("failed")?,
                indexing: row.try_get("indexing")?,
                stale: row.try_get("stale")?,
                chunks: row.try_get("chunks")?,
            })
        }
        .boxed()
    }

    fn segments<'a>(
        &'a self,
        source_id: &'a str,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<Segment>>> {
        self.segments_between(source_id, from_ms, to_ms).boxed()
    }

    fn media_info<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, serde_json::Value)>>> {
        self.info(source_id).boxed()
    }

    fn transcript<'a>(
        &'a self,
        source_id: &'a str,
        transcript_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<MediaRecord>>> {
        self.stored_transcript(source_id, transcript_key).boxed()
    }

    fn source_records<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ChunkWithSpaces>>> {
        self.records(source_id).boxed()
    }

    fn media_record<'a>(
        &'a self,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MediaRecord>>> {
        async move {
            let key: Option<String> =
                sqlx::query("SELECT transcript_key FROM sources WHERE id = $1")
                    .bind(source_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get("transcript_key"))
                    .transpose()?
                    .flatten();
            match key {
                Some(key) => self.stored_transcript(source_id, &key).await,
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.pool.close().boxed()
    }
}

type AnchorColumns = (
    &'static str,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The `sqlite://` URL of a database file, creating it if missing. sqlx percent-decodes the
/// path, so `%`, `?` and `#` in folder names are encoded first.
fn sqlite_url(path: &Path) -> Result<reqwest::Url> {
    let absolute = std::path::absolute(path)
        .map_err(|e| CatalogError::Config(format!("catalog path {}: {e}", path.display())))?;
    let name = absolute.to_str().ok_or_else(|| {
        CatalogError::Config(format!("catalog path {} is not UTF-8", path.display()))
    })?;
    let encoded = name
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    reqwest::Url::parse(&format!("sqlite://{encoded}?mode=rwc"))
        .map_err(|e| CatalogError::Config(format!("catalog path {}: {e}", path.display())))
}

/// A database URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

fn anchor_columns(anchor: &Anchor) -> AnchorColumns {
    match anchor {
        Anchor::Span {
            page,
            char_start,
            char_end,
        } => (
            "span",
            page.map(i64::from),
            Some(*char_start as i64),
            Some(*char_end as i64),
            None,
            None,
            None,
        ),
        Anchor::Time { start_ms, end_ms } => (
            "time",
            None,
            None,
            None,
            Some(*start_ms as i64),
            Some(*end_ms as i64),
            None,
        ),
        Anchor::Frame { at_ms } => ("frame", None, None, None, None, None, Some(*at_ms as i64)),
        Anchor::Image => ("image", None, None, None, None, None, None),
    }
}

fn space_from_row(row: &AnyRow, chunks: i64) -> Result<SpaceRow> {
    Ok(SpaceRow {
        name: row.try_get("name")?,
        model_id: row.try_get("model_id")?,
        dims: row.try_get("dims")?,
        modality: row.try_get("modality")?,
        chunks,
    })
}

fn source_from_row(row: &AnyRow) -> Result<Source> {
    Ok(Source {
        id: row.try_get("id")?,
        uri: row.try_get("uri")?,
        title: row.try_get("title")?,
        media_type: row.try_get("media_type")?,
        content_hash: row.try_get("content_hash")?,
        bytes: row.try_get("bytes")?,
        status: row.try_get("status")?,
        error: row.try_get("error")?,
        pipeline_version: row.try_get("pipeline_version")?,
        chunk_count: row.try_get("chunk_count")?,
    })
}

fn stored_chunk_from_row(row: &AnyRow) -> Result<StoredChunk> {
    let kind: String = row.try_get("anchor_kind")?;
    let get = |name: &str| -> Result<Option<i64>> { Ok(row.try_get::<Option<i64>, _>(name)?) };
    let need = |name: &str| -> Result<u64> {
        get(name)?
            .map(|v| v as u64)
            .ok_or_else(|| CatalogError::Corrupt(format!("{kind} anchor without {name}")))
    };
    let anchor = match kind.as_str() {
        "span" => Anchor::Span {
            page: get("page")?.map(|p| p as u32),
            char_start: need("char_start")?,
            char_end: need("char_end")?,
        },
        "time" => Anchor::Time {
            start_ms: need("start_ms")?,
            end_ms: need("end_ms")?,
        },
        "frame" => Anchor::Frame {
            at_ms: need("at_ms")?,
        },
        "image" => Anchor::Image,
        other => {
            return Err(CatalogError::Corrupt(format!(
                "unknown anchor kind {other}"
            )))
        }
    };
    let modality: String = row.try_get("modality")?;
    Ok(StoredChunk {
        id: row.try_get("chunk_id")?,
        source: source_from_row(row)?,
        ordinal: row.try_get::<i64, _>("ordinal")? as u32,
        modality: Modality::parse(&modality)
            .ok_or_else(|| CatalogError::Corrupt(format!("unknown modality {modality}")))?,
        text: row
            .try_get::<Option<String>, _>("text")?
            .unwrap_or_default(),
        context: row.try_get("context")?,
        anchor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{chunk_id, source_id, ChunkRecord};

    fn new_source(id: &str) -> NewSource<'_> {
        NewSource {
            id,
            uri: "file:///a.txt",
            media_type: "text",
            bytes: 10,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_opening_a_new_catalog_at_once_all_succeed() {
        // Each open is its own pool, as each process has its own: without the open lock they
        // race on the WAL switch and the first migration, and some fail.
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("catalog.db");
            let opens = (0..6).map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqlCatalog::open(&path).await })
            });
            for (n, open) in futures::future::join_all(opens)
                .await
                .into_iter()
                .enumerate()
            {
                let catalog = open
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}, open {n}: {e}"));
                catalog.counts().await.unwrap();
                catalog.close().await;
            }
        }
    }

    #[tokio::test]
    async fn finish_replaces_chunks_and_hides_indexing_sources() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SqlCatalog::open(&dir.path().join("catalog.db"))
            .await
            .unwrap();
        let sid = source_id("file:///a.txt");
        catalog.begin_source(new_source(&sid)).await.unwrap();
        catalog
            .ensure_space("text/m/4", "m", 4, "text")
            .await
            .unwrap();
        let chunk = |n: u32| ChunkRecord {
            id: chunk_id(
                &sid,
                "h",
                "v",
                Modality::Text,
                &Anchor::Span {
                    page: None,
                    char_start: n as u64,
                    char_end: n as u64 + 1,
                },
            ),
            source_id: sid.clone(),
            ordinal: n,
            modality: Modality::Text,
            text: format!("chunk {n}"),
            context: String::new(),
            token_count: 2,
            anchor: Anchor::Span {
                page: None,
                char_start: n as u64,
                char_end: n as u64 + 1,
            },
        };
        let first = vec![chunk(0), chunk(1)];
        let ids: Vec<String> = first.iter().map(|c| c.id.clone()).collect();
        catalog
            .finish_source(&FinishedSource {
                source_id: &sid,
                content_hash: "h",
                pipeline_version: "v",
                title: None,
                chunks: &first,
                space: Some("text/m/4"),
                media: None,
                extras: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(catalog.chunks_by_ids(&ids).await.unwrap().len(), 2);

        catalog.begin_source(new_source(&sid)).await.unwrap();
        assert!(
            catalog.chunks_by_ids(&ids).await.unwrap().is_empty(),
            "indexing sources are hidden"
        );

        let second = vec![chunk(5)];
        catalog
            .finish_source(&FinishedSource {
                source_id: &sid,
                content_hash: "h2",
                pipeline_version: "v",
                title: None,
                chunks: &second,
                space: Some("text/m/4"),
                media: None,
                extras: Vec::new(),
            })
            .await
            .unwrap();
        assert!(catalog.chunks_by_ids(&ids).await.unwrap().is_empty());
        assert_eq!(catalog.counts().await.unwrap().chunks, 1);
        assert_eq!(catalog.spaces().await.unwrap()[0].chunks, 1);

        catalog.fail_source(new_source(&sid), "boom").await.unwrap();
        let s = catalog.source(&sid).await.unwrap().unwrap();
        assert_eq!(
            s.status,
            status::COMPLETE,
            "a failed re-ingest keeps what was indexed"
        );
        assert_eq!(s.error.as_deref(), Some("boom"));
    }
}
