//! The catalog of sources, chunks, embedding spaces and jobs in SQL (SQLite in WAL mode by
//! default). It is the source of truth: a source counts as indexed only once the catalog marks
//! it complete, which happens after its vectors and BM25 entries are durable.

mod types;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use thiserror::Error;

use crate::fault::{Fault, HasFault};
pub use types::*;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("catalog holds an invalid row: {0}")]
    Corrupt(String),
}

impl HasFault for CatalogError {
    fn fault(&self) -> Fault {
        match self {
            CatalogError::Database(sqlx::Error::PoolTimedOut) => Fault::Transient,
            _ => Fault::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// Status of a source row.
pub mod status {
    /// Writes to the stores may be under way; not visible to queries.
    pub const INDEXING: &str = "indexing";
    /// Every chunk is in every store.
    pub const COMPLETE: &str = "complete";
    /// Could not be ingested; `error` says why.
    pub const FAILED: &str = "failed";
}

/// Counts used by `mosaic status` and the consistency checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CatalogCounts {
    pub sources: i64,
    pub complete: i64,
    pub failed: i64,
    /// Complete sources whose file failed its last ingestion: the version indexed before is
    /// still what search finds.
    pub stale: i64,
    pub indexing: i64,
    pub chunks: i64,
    /// Chunks with text, which BM25 indexes (all but audio windows).
    pub lexical_chunks: i64,
}

/// An embedding space registered in the catalog.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpaceRow {
    pub name: String,
    pub model_id: String,
    pub dims: i64,
    pub modality: String,
    pub chunks: i64,
}

#[derive(Clone)]
pub struct Catalog {
    pool: SqlitePool,
}

impl Catalog {
    /// Opens (creating if needed) the SQLite catalog at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn source(&self, id: &str) -> Result<Option<Source>> {
        let row = sqlx::query("SELECT * FROM sources WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| source_from_row(&r)).transpose()
    }

    pub async fn sources(&self) -> Result<Vec<Source>> {
        let rows = sqlx::query("SELECT * FROM sources ORDER BY uri")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(source_from_row).collect()
    }

    pub async fn sources_with_status(&self, status: &str) -> Result<Vec<Source>> {
        let rows = sqlx::query("SELECT * FROM sources WHERE status = ? ORDER BY uri")
            .bind(status)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(source_from_row).collect()
    }

    /// Marks a source as being written. Its old chunks stay listed until
    /// [`Catalog::finish_source`] replaces them, so a crash leaves a row to repair from.
    pub async fn begin_source(
        &self,
        id: &str,
        uri: &str,
        media_type: &str,
        bytes: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sources (id, uri, media_type, bytes, status) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET media_type = excluded.media_type, bytes = excluded.bytes,
               status = excluded.status, error = NULL,
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(id)
        .bind(uri)
        .bind(media_type)
        .bind(bytes)
        .bind(status::INDEXING)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces a source's chunks and marks it complete, in one transaction. Called only after
    /// the vector store and the BM25 index hold exactly `chunks`.
    pub async fn finish_source(&self, done: &FinishedSource<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chunks WHERE source_id = ?")
            .bind(done.source_id)
            .execute(&mut *tx)
            .await?;
        let all = done
            .chunks
            .iter()
            .map(|c| (c, done.space))
            .chain(done.extra.iter().map(|c| (c, done.extra_space)));
        for (chunk, space) in all {
            let (kind, page, cs, ce, sm, em, at) = anchor_columns(&chunk.anchor);
            sqlx::query(
                "INSERT INTO chunks (id, source_id, ordinal, modality, text, context, token_count, anchor_kind,
                   page, char_start, char_end, start_ms, end_ms, at_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                sqlx::query("INSERT INTO chunk_vectors (chunk_id, space) VALUES (?, ?)")
                    .bind(&chunk.id)
                    .bind(space)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(media) = done.media {
            sqlx::query("DELETE FROM segments WHERE source_id = ?")
                .bind(done.source_id)
                .execute(&mut *tx)
                .await?;
            for (ordinal, seg) in media.segments.iter().enumerate() {
                let words = (!seg.words.is_empty())
                    .then(|| serde_json::to_string(&seg.words).expect("words serialize"));
                sqlx::query(
                    "INSERT INTO segments (source_id, ordinal, start_ms, end_ms, text, words)
                     VALUES (?, ?, ?, ?, ?, ?)",
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
            sqlx::query("UPDATE sources SET duration_ms = ?, media_info = ? WHERE id = ?")
                .bind(media.duration_ms as i64)
                .bind(&media.info)
                .bind(done.source_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE sources SET status = ?, error = NULL, content_hash = ?, pipeline_version = ?,
               title = ?, chunk_count = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE id = ?",
        )
        .bind(status::COMPLETE)
        .bind(done.content_hash)
        .bind(done.pipeline_version)
        .bind(done.title)
        .bind((done.chunks.len() + done.extra.len()) as i64)
        .bind(done.source_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a per-file failure. A source that was indexed before keeps its chunks (nothing
    /// already indexed is damaged) and carries the error; a new one is marked failed.
    pub async fn fail_source(
        &self,
        id: &str,
        uri: &str,
        media_type: &str,
        bytes: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sources (id, uri, media_type, bytes, status, error) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET error = excluded.error,
               status = CASE WHEN sources.chunk_count > 0 AND sources.status != 'indexing'
                             THEN sources.status ELSE excluded.status END,
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(id)
        .bind(uri)
        .bind(media_type)
        .bind(bytes)
        .bind(status::FAILED)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Clears a source's recorded error (its file is back to the version that is indexed).
    pub async fn clear_error(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE sources SET error = NULL WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a source and (by cascade) its chunks. Call after removing them from the stores.
    pub async fn remove_source(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sources WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Registers an embedding space (idempotent).
    pub async fn ensure_space(
        &self,
        name: &str,
        model_id: &str,
        dims: usize,
        modality: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO embedding_spaces (name, model_id, dims, modality) VALUES (?, ?, ?, ?)
             ON CONFLICT(name) DO NOTHING",
        )
        .bind(name)
        .bind(model_id)
        .bind(dims as i64)
        .bind(modality)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every registered space with the number of live chunks that have a vector in it.
    pub async fn spaces(&self) -> Result<Vec<SpaceRow>> {
        let rows = sqlx::query(
            "SELECT s.name, s.model_id, s.dims, s.modality, COUNT(cv.chunk_id) AS chunks
             FROM embedding_spaces s LEFT JOIN chunk_vectors cv ON cv.space = s.name
             GROUP BY s.name ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SpaceRow {
                name: r.get("name"),
                model_id: r.get("model_id"),
                dims: r.get("dims"),
                modality: r.get("modality"),
                chunks: r.get("chunks"),
            })
            .collect())
    }

    /// Chunks by id, with their sources, keeping only those of complete sources. Results come
    /// in the order of `ids`; ids the catalog does not know (or not yet) are left out.
    pub async fn chunks_by_ids(&self, ids: &[String]) -> Result<Vec<StoredChunk>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; ids.len()].join(",");
        let sql = format!(
            "SELECT c.id AS chunk_id, c.ordinal, c.modality, c.text, c.context, c.anchor_kind, c.page, c.char_start,
                    c.char_end, c.start_ms, c.end_ms, c.at_ms, s.*
             FROM chunks c JOIN sources s ON s.id = c.source_id
             WHERE s.status = 'complete' AND c.id IN ({placeholders})"
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut by_id = std::collections::HashMap::new();
        for row in &rows {
            let chunk = stored_chunk_from_row(row)?;
            by_id.insert(chunk.id.clone(), chunk);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    pub async fn counts(&self) -> Result<CatalogCounts> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS sources,
               COALESCE(SUM(status = 'complete'), 0) AS complete,
               COALESCE(SUM(status = 'failed'), 0) AS failed,
               COALESCE(SUM(status = 'indexing'), 0) AS indexing,
               COALESCE(SUM(status = 'complete' AND error IS NOT NULL), 0) AS stale,
               (SELECT COUNT(*) FROM chunks) AS chunks,
               (SELECT COUNT(*) FROM chunks WHERE modality != 'audio') AS lexical_chunks
             FROM sources",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CatalogCounts {
            sources: row.get("sources"),
            complete: row.get("complete"),
            failed: row.get("failed"),
            indexing: row.get("indexing"),
            stale: row.get("stale"),
            chunks: row.get("chunks"),
            lexical_chunks: row.get("lexical_chunks"),
        })
    }

    /// Whisper segments of a source that overlap `[from_ms, to_ms)`, in time order.
    pub async fn segments(
        &self,
        source_id: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<crate::transcribe::Segment>> {
        let rows = sqlx::query(
            "SELECT start_ms, end_ms, text, words FROM segments
             WHERE source_id = ? AND end_ms > ? AND start_ms < ? ORDER BY ordinal",
        )
        .bind(source_id)
        .bind(from_ms as i64)
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
                Ok(crate::transcribe::Segment {
                    start_ms: r.try_get::<i64, _>("start_ms")? as u64,
                    end_ms: r.try_get::<i64, _>("end_ms")? as u64,
                    text: r.try_get("text")?,
                    words,
                })
            })
            .collect()
    }

    /// A recording's duration and probe data, when it has them.
    pub async fn media_info(&self, source_id: &str) -> Result<Option<(u64, serde_json::Value)>> {
        let row = sqlx::query("SELECT duration_ms, media_info FROM sources WHERE id = ?")
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What [`Catalog::finish_source`] records.
pub struct FinishedSource<'a> {
    pub source_id: &'a str,
    pub content_hash: &'a str,
    pub pipeline_version: &'a str,
    pub title: Option<&'a str>,
    pub chunks: &'a [ChunkRecord],
    /// The embedding space the chunks' vectors were written to.
    pub space: Option<&'a str>,
    /// For recordings: probe data and Whisper's segments.
    pub media: Option<&'a MediaRecord>,
    /// Chunks whose vectors live in another space (audio windows), not in BM25.
    pub extra: &'a [ChunkRecord],
    pub extra_space: Option<&'a str>,
}

/// A recording's catalog data besides its chunks.
#[derive(Debug, Clone)]
pub struct MediaRecord {
    pub duration_ms: u64,
    /// JSON object: container, codec, channels, sample_rate, language.
    pub info: String,
    pub segments: Vec<crate::transcribe::Segment>,
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

fn source_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Source> {
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

fn stored_chunk_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredChunk> {
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

    #[tokio::test]
    async fn finish_replaces_chunks_and_hides_indexing_sources() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).await.unwrap();
        let sid = source_id("file:///a.txt");
        catalog
            .begin_source(&sid, "file:///a.txt", "text", 10)
            .await
            .unwrap();
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
                extra: &[],
                extra_space: None,
            })
            .await
            .unwrap();
        assert_eq!(catalog.chunks_by_ids(&ids).await.unwrap().len(), 2);

        catalog
            .begin_source(&sid, "file:///a.txt", "text", 10)
            .await
            .unwrap();
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
                extra: &[],
                extra_space: None,
            })
            .await
            .unwrap();
        assert!(catalog.chunks_by_ids(&ids).await.unwrap().is_empty());
        assert_eq!(catalog.counts().await.unwrap().chunks, 1);
        assert_eq!(catalog.spaces().await.unwrap()[0].chunks, 1);

        catalog
            .fail_source(&sid, "file:///a.txt", "text", 10, "boom")
            .await
            .unwrap();
        let s = catalog.source(&sid).await.unwrap().unwrap();
        assert_eq!(
            s.status,
            status::COMPLETE,
            "a failed re-ingest keeps what was indexed"
        );
        assert_eq!(s.error.as_deref(), Some("boom"));
    }
}
