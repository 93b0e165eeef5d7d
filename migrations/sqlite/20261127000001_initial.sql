-- Sources, chunks, embedding spaces and jobs. Schema changes only by new migrations.

CREATE TABLE sources (
    id               TEXT PRIMARY KEY,              -- deterministic from the uri
    uri              TEXT NOT NULL UNIQUE,
    title            TEXT,
    media_type       TEXT NOT NULL,                 -- text, markdown, html, pdf, docx, ...
    content_hash     TEXT,                          -- blake3 of the bytes
    bytes            INTEGER NOT NULL DEFAULT 0,
    duration_ms      INTEGER,
    status           TEXT NOT NULL,                 -- indexing, complete, failed
    error            TEXT,
    pipeline_version TEXT,
    chunk_count      INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX sources_status ON sources(status);

CREATE TABLE chunks (
    id          TEXT PRIMARY KEY,                   -- deterministic: source hash, pipeline, modality, anchor
    source_id   TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    modality    TEXT NOT NULL,                      -- text, transcript, caption, image, frame, audio
    text        TEXT,                               -- exactly the anchored span of the source
    context     TEXT NOT NULL DEFAULT '',           -- title > section headings, embedded with the text
    token_count INTEGER,
    anchor_kind TEXT NOT NULL,                      -- span, time, frame, image
    page        INTEGER,
    char_start  INTEGER,
    char_end    INTEGER,
    start_ms    INTEGER,
    end_ms      INTEGER,
    at_ms       INTEGER
);
CREATE INDEX chunks_source ON chunks(source_id, ordinal);

CREATE TABLE embedding_spaces (
    name       TEXT PRIMARY KEY,                    -- e.g. text/all-MiniLM-L6-v2/384
    model_id   TEXT NOT NULL,
    dims       INTEGER NOT NULL,
    modality   TEXT NOT NULL,                       -- what the space embeds: text, image, audio
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Which space each chunk's vector lives in.
CREATE TABLE chunk_vectors (
    chunk_id TEXT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    space    TEXT NOT NULL REFERENCES embedding_spaces(name),
    PRIMARY KEY (chunk_id, space)
);
CREATE INDEX chunk_vectors_space ON chunk_vectors(space);

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,                       -- queued, running, complete, failed
    args       TEXT NOT NULL DEFAULT '{}',
    done       INTEGER NOT NULL DEFAULT 0,
    total      INTEGER NOT NULL DEFAULT 0,
    summary    TEXT,
    error      TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
