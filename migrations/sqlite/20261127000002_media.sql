-- Recordings: what FFmpeg probed, and Whisper's segments (kept so the transcript of any time
-- range can be shown; chunks group segments but never replace them).

ALTER TABLE sources ADD COLUMN media_info TEXT;     -- JSON: container, codec, channels, sample_rate, language

CREATE TABLE segments (
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal   INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    end_ms    INTEGER NOT NULL,
    text      TEXT NOT NULL,
    words     TEXT,                                 -- JSON [{text, start_ms, end_ms}], when timed per token
    PRIMARY KEY (source_id, ordinal)
);
CREATE INDEX segments_time ON segments(source_id, start_ms);
