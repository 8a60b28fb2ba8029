"""What every layer may import: errors, settings, the audio format, files (hashes, atomic writes, temporary
files) and processes (identity, liveness, cores)."""
