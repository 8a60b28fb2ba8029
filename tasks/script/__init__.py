"""From manifest to render jobs: the manifest schema, ingest (with voice assets), chunking, pronunciations,
overrides, engine choice, and planning into cache-keyed jobs and batches."""
