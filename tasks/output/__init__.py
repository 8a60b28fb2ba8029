"""Delivery: normalising takes, mastering chapters, exporting WAVs and encoding MP3/M4B."""
