"""Voice references: decoding and staging clips at 24 kHz mono, preparing a run's voices (transcripts by
Whisper once), and the voice library commands' work."""
