-- The ingest queue of cluster mode (PostgreSQL only): `mosaic enqueue` adds files, each
-- `mosaic worker` claims one at a time with FOR UPDATE SKIP LOCKED and holds the row lock in
-- an open transaction while it ingests the file, so a worker that dies leaves its file queued
-- (the lock goes with its connection) for another worker to take.

CREATE TABLE ingest_queue (
    id          BIGSERIAL PRIMARY KEY,
    path        TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,                      -- queued, done, failed
    attempts    BIGINT NOT NULL DEFAULT 0,          -- runs that finished (done or failed)
    worker      TEXT,                               -- who finished it
    error       TEXT,
    enqueued_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX ingest_queue_status ON ingest_queue(status, id);
