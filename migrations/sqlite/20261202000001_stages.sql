-- Stage versions: a recording's transcript is reused while its content, the Whisper model and
-- the transcription options are unchanged (the key hashes the three), whatever happens to
-- chunking or the embedding model.

ALTER TABLE sources ADD COLUMN transcript_key TEXT;
