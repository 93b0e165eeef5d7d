-- Stage versions: a recording's transcript is reused while its content, the Whisper model and
-- the transcription options are unchanged.

ALTER TABLE sources ADD COLUMN transcript_key TEXT;
