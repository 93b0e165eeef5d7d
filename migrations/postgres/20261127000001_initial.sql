-- Sources, chunks, embedding spaces and jobs: the tables of migrations/sqlite, on PostgreSQL.
-- Integers are BIGINT and timestamps TEXT (RFC 3339, UTC, bound from Rust) so that rows read
-- the same on both engines. Schema changes only by new migrations, in both folders.

CREATE TABLE sources (
    id               TEXT PRIMARY KEY,
    uri              TEXT NOT NULL UNIQUE,
    title            TEXT,
    media_type       TEXT NOT NULL,
    content_hash     TEXT,
    bytes            BIGINT NOT NULL DEFAULT 0,
    duration_ms      BIGINT,
    status           TEXT NOT NULL,
    error            TEXT,
    pipeline_version TEXT,
    chunk_count      BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    updated_at       TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
);
CREATE INDEX sources_status ON sources(status);

CREATE TABLE chunks (
    id          TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal     BIGINT NOT NULL,
    modality    TEXT NOT NULL,
    text        TEXT,
    context     TEXT NOT NULL DEFAULT '',
    token_count BIGINT,
    anchor_kind TEXT NOT NULL,
    page        BIGINT,
    char_start  BIGINT,
    char_end    BIGINT,
    start_ms    BIGINT,
    end_ms      BIGINT,
    at_ms       BIGINT
);
CREATE INDEX chunks_source ON chunks(source_id, ordinal);

CREATE TABLE embedding_spaces (
    name       TEXT PRIMARY KEY,
    model_id   TEXT NOT NULL,
    dims       BIGINT NOT NULL,
    modality   TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
);

CREATE TABLE chunk_vectors (
    chunk_id TEXT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    space    TEXT NOT NULL REFERENCES embedding_spaces(name),
    PRIMARY KEY (chunk_id, space)
);
CREATE INDEX chunk_vectors_space ON chunk_vectors(space);

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    args       TEXT NOT NULL DEFAULT '{}',
    done       BIGINT NOT NULL DEFAULT 0,
    total      BIGINT NOT NULL DEFAULT 0,
    summary    TEXT,
    error      TEXT,
    created_at TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    updated_at TEXT NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
);
