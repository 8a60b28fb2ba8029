"""Voice rows in the provenance database: the Whisper transcript cache, and which voices each run used."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.store import db as provenance


def cached_transcript(db: Path, audio_key: str, model: str) -> str | None:
    """The transcript Whisper `model` made of the staged clip `audio_key`, if it ever did."""
    with provenance.connect(db) as con:
        row = con.execute("SELECT transcript FROM voice_transcripts WHERE audio_key = ? AND model = ?",
                          [audio_key, model]).fetchone()
    return row[0] if row else None


def store_transcript(db: Path, audio_key: str, model: str, transcript: str, language: str | None,
                     seconds: float) -> None:
    with provenance.connect(db) as con:
        con.execute("INSERT INTO voice_transcripts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [audio_key, model, transcript, language, seconds, datetime.now()])


def transcripts_of(db: Path, audio_key: str) -> list[dict[str, Any]]:
    """Every cached Whisper transcript of one staged clip, newest first (empty when there is no database)."""
    if not Path(db).exists():
        return []
    with provenance.connect(db, read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'voice_transcripts'"
                           ).fetchone()[0]:
            return []  # a database from before transcripts were cached; the next render migrates it
        cur = con.execute("SELECT model, transcript, language, created_at FROM voice_transcripts "
                          "WHERE audio_key = ? ORDER BY created_at DESC", [audio_key])
        columns = [d[0] for d in cur.description]
        return [dict(zip(columns, row)) for row in cur.fetchall()]


def record_run_voices(db: Path, rows: list[dict[str, Any]]) -> None:
    """The voices one run spoke with: where each reference and transcript came from, in one transaction."""
    with provenance.connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            provenance.insert_rows(con, "voices", rows)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
