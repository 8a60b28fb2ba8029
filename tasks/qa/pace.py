"""A voice's usual pace, for the duration check: learnt from its own earlier takes (median and spread of
seconds per word), else from its reference clip, else the fixed range. A voice that speaks slowly is not a
run-on, and a fast one that suddenly takes twice as long is."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tasks.qa.score import QaLimits, normalise_words
from tasks.store import db as provenance

MIN_HISTORY = 8  # earlier takes before a voice's own pace is trusted
HISTORY_LIMIT = 500  # the newest takes of a voice that are read
SPREAD_WIDTH = 4.0  # robust standard deviations (of log pace) either side of the median
MIN_HISTORY_FACTOR = 1.75  # never narrower than x/÷ this: short lines carry relatively more silence
REFERENCE_FACTOR = 2.0  # one clip says less than many takes: a wider band around its pace


@dataclass(frozen=True)
class PaceRange:
    """Seconds per word a voice's takes may have before they are flagged, and what the range was learnt from."""
    low: float
    high: float
    source: str  # history (n takes), reference clip, fixed

    def limits(self, base: QaLimits) -> QaLimits:
        return QaLimits(base.wer_threshold, self.low, self.high, base.min_words)


def seconds_per_word(text: str, duration: float, min_words: int) -> float | None:
    """A take's pace, or None for a line too short to judge."""
    words = len(normalise_words(text))
    return duration / words if words >= min_words and duration > 0 else None


def pace_range(history: Sequence[float], reference_pace: float | None, limits: QaLimits = QaLimits()) -> PaceRange:
    """The accepted pace: median x/÷ max(MIN_HISTORY_FACTOR, exp(SPREAD_WIDTH robust deviations)) of the
    voice's earlier takes (log pace, so slow and fast deviations count alike); with too little history, the
    reference clip's pace x/÷ REFERENCE_FACTOR; without either, the fixed range of `limits`."""
    paces = [math.log(p) for p in history if p and p > 0]
    if len(paces) >= MIN_HISTORY:
        centre = statistics.median(paces)
        spread = 1.4826 * statistics.median(abs(p - centre) for p in paces)  # MAD as a standard deviation
        half = max(math.log(MIN_HISTORY_FACTOR), SPREAD_WIDTH * spread)
        return PaceRange(math.exp(centre - half), math.exp(centre + half), f"history ({len(paces)} takes)")
    if reference_pace and reference_pace > 0:
        return PaceRange(reference_pace / REFERENCE_FACTOR, reference_pace * REFERENCE_FACTOR, "reference clip")
    return PaceRange(limits.min_seconds_per_word, limits.max_seconds_per_word, "fixed")


def voice_history(db: Path, voice_id: str, engine: str, min_words: int, before_run: str | None = None) -> list[float]:
    """Seconds per word of the voice's earlier takes on `engine` (each take once, newest first), from
    provenance; takes QA flagged are left out so a bad take does not teach the voice's pace."""

    if not Path(db).exists():
        return []
    with provenance.connect(db) as con:
        found = con.execute("""
            SELECT r.text, r.duration FROM renders r
            WHERE r.voice_id = ? AND r.engine = ? AND r.status = 'rendered' AND r.duration > 0 AND r.run_id <> ?
              AND NOT EXISTS (SELECT 1 FROM qa_scores q WHERE q.cache_key = r.cache_key AND q.flagged)
            QUALIFY row_number() OVER (PARTITION BY r.cache_key ORDER BY r.created_at DESC) = 1
            ORDER BY r.created_at DESC LIMIT ?""", [voice_id, engine, before_run or "", HISTORY_LIMIT]).fetchall()
    return [p for text, duration in found if (p := seconds_per_word(text, duration, min_words)) is not None]


def reference_pace(reference: Path | None, transcript: str | None, min_words: int) -> float | None:
    """The reference clip's seconds per word (its duration over its transcript's words)."""
    if reference is None or not transcript or not Path(reference).is_file():
        return None
    import soundfile

    return seconds_per_word(transcript, soundfile.info(str(reference)).duration, min_words)


def learn_paces(db: Path, voices: dict[tuple[str, str], tuple[Path | None, str | None]], limits: QaLimits,
                before_run: str | None = None) -> dict[tuple[str, str], PaceRange]:
    """(voice id, engine) -> its accepted pace, for every voice of a run given with its reference clip and
    transcript."""
    return {(voice_id, engine): pace_range(voice_history(db, voice_id, engine, limits.min_words, before_run),
                                           reference_pace(reference, transcript, limits.min_words), limits)
            for (voice_id, engine), (reference, transcript) in voices.items()}
