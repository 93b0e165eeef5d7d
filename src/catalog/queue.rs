//! The ingest queue on PostgreSQL, shared by `mosaic worker` processes on any number of
//! machines. A worker claims the oldest queued files (a few at a time, so they are embedded
//! and committed together) with `FOR UPDATE SKIP LOCKED` and keeps those rows locked, in an
//! open transaction, while it ingests them; finishing marks each done (or failed, with the
//! reason) and commits. Two workers never hold the same row, and a worker
//! that dies mid-file loses its connection, so its lock and its uncommitted claim vanish and
//! the file is still queued for the next worker.

use sqlx::{Any, AnyPool, Row, Transaction};

use super::sql::now;
use super::Result;

/// Counts by status.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueueCounts {
    pub queued: i64,
    pub done: i64,
    pub failed: i64,
}

/// The queue (PostgreSQL catalogs only: [`super::SqlCatalog::queue`]).
#[derive(Clone)]
pub struct Queue {
    pub(super) pool: AnyPool,
}

/// Files claimed by this worker; their rows stay locked until [`Claim::finish`] or drop.
pub struct Claim {
    tx: Transaction<'static, Any>,
    /// Queue row ids and paths, oldest first.
    pub files: Vec<(i64, String)>,
}

impl Queue {
    /// Queues files (absolute paths). A path already queued stays once; one done or failed is
    /// queued again (its file may have changed: the ingest skips it when it has not).
    pub async fn enqueue(&self, paths: &[String]) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let mut queued = 0;
        for path in paths {
            let done = sqlx::query(
                "INSERT INTO ingest_queue (path, status, enqueued_at) VALUES ($1, 'queued', $2)
                 ON CONFLICT (path) DO UPDATE SET status = 'queued', error = NULL,
                   enqueued_at = excluded.enqueued_at
                 WHERE ingest_queue.status <> 'queued'",
            )
            .bind(path)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            queued += done.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Up to `limit` of the oldest queued files no other worker holds, locked for this one.
    pub async fn claim(&self, limit: usize) -> Result<Option<Claim>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, path FROM ingest_queue WHERE status = 'queued'
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit.max(1) as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let files = rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("path")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Claim { tx, files }))
    }

    pub async fn counts(&self) -> Result<QueueCounts> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued,
                    COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS done,
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed
             FROM ingest_queue",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            queued: row.try_get("queued")?,
            done: row.try_get("done")?,
            failed: row.try_get("failed")?,
        })
    }
}

impl Claim {
    /// Marks each claimed file done, or failed with the error `errors` gives for its path,
    /// by `worker`, and releases them all in one commit.
    pub async fn finish(
        mut self,
        worker: &str,
        errors: &std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let at = now();
        for (id, path) in &self.files {
            let error = errors.get(path);
            sqlx::query(
                "UPDATE ingest_queue SET status = $1, error = $2, worker = $3, finished_at = $4,
                   attempts = attempts + 1
                 WHERE id = $5",
            )
            .bind(if error.is_some() { "failed" } else { "done" })
            .bind(error.map(String::as_str))
            .bind(worker)
            .bind(&at)
            .bind(*id)
            .execute(&mut *self.tx)
            .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}
