"""Listening before shipping: Whisper checks of takes (check), word error scores, pace, the QA report, and
re-scoring past runs."""
