-- Recordings: what FFmpeg probed, and Whisper's segments.

ALTER TABLE sources ADD COLUMN media_info TEXT;

CREATE TABLE segments (
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal   BIGINT NOT NULL,
    start_ms  BIGINT NOT NULL,
    end_ms    BIGINT NOT NULL,
    text      TEXT NOT NULL,
    words     TEXT,
    PRIMARY KEY (source_id, ordinal)
);
CREATE INDEX segments_time ON segments(source_id, start_ms);
