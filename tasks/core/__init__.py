"""What every layer may import: errors, settings, the audio format, files (hashes, atomic writes, temporary
files), processes (identity, liveness, cores) and a stop asked for by a signal."""
