//! The ingest queue on PostgreSQL, shared by `mosaic worker` processes on any number of
//! machines. A worker claims the oldest queued file with `FOR UPDATE SKIP LOCKED` and keeps
//! that row locked, in an open transaction, while it ingests the file; finishing marks it done
//! (or failed, with the reason) and commits. Two workers never hold the same row, and a worker
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

/// A file claimed by this worker; the row stays locked until [`Claim::finish`] or drop.
pub struct Claim {
    tx: Transaction<'static, Any>,
    pub id: i64,
    pub path: String,
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

    /// The oldest queued file no other worker holds, locked for this one.
    pub async fn claim(&self) -> Result<Option<Claim>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, path FROM ingest_queue WHERE status = 'queued'
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        Ok(Some(Claim {
            id: row.try_get("id")?,
            path: row.try_get("path")?,
            tx,
        }))
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
    /// Marks the file done (or failed with `error`) by `worker` and releases it.
    pub async fn finish(mut self, worker: &str, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE ingest_queue SET status = $1, error = $2, worker = $3, finished_at = $4,
               attempts = attempts + 1
             WHERE id = $5",
        )
        .bind(if error.is_some() { "failed" } else { "done" })
        .bind(error)
        .bind(worker)
        .bind(now())
        .bind(self.id)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
