"""Scoring a take against its text: word error rate after normalising case, punctuation and numbers, and a
seconds-per-word check for run-ons and truncations. Pure functions, no audio, no models."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
# Contractions read out in full on both sides: an ASR writes "you're" for a spoken "you are" and back.
_CONTRACTIONS = ((re.compile(r"\bcan't\b"), "can not"), (re.compile(r"\bwon't\b"), "will not"),
                 (re.compile(r"n't\b"), " not"), (re.compile(r"'re\b"), " are"), (re.compile(r"'m\b"), " am"),
                 (re.compile(r"'ve\b"), " have"), (re.compile(r"'ll\b"), " will"), (re.compile(r"'d\b"), " would"),
                 (re.compile(r"\blet's\b"), "let us"),
                 (re.compile(r"\b(it|that|he|she|there|here|what|who|where)'s\b"), r"\1 is"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def number_words(n: int) -> str:
    """An integer in English words: 1984 -> 'one thousand nine hundred eighty four'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in _SCALES:
        if n >= size:
            rest = n % size
            return f"{number_words(n // size)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise ValueError(n)  # unreachable: every n >= 100 has a scale


def _ordinal(match: re.Match) -> str:
    words = number_words(int(match.group(1))).split()
    last = words[-1]
    words[-1] = _ORDINAL_WORDS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def _spoken_number(match: re.Match) -> str:
    text = match.group(0).replace(",", "")  # 1,200 is one number; a decimal point is read as "point"
    whole, _, fraction = text.partition(".")
    spoken = number_words(int(whole)) if len(whole) < 13 else " ".join(_ONES[int(d)] for d in whole)
    if fraction:
        spoken += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {spoken} "


@lru_cache(maxsize=1)
def british_to_american() -> dict[str, str]:
    """Whisper's own spelling map for scoring English (grey = gray, colour = color), read from the
    openai-whisper package without importing it (that would load torch); empty when it is not installed."""
    spec = find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(list(spec.submodule_search_locations)[0]) / "normalizers" / "english.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def normalise_words(text: str) -> list[str]:
    """Lower case, numbers as words, contractions in full (you're = you are), other apostrophes dropped
    (the keeper's = the keepers), hyphens and other punctuation as spaces, British spellings as American."""
    text = _ORDINAL.sub(_ordinal, text.lower().replace("\u2019", "'"))
    for pattern, full in _CONTRACTIONS:
        text = pattern.sub(full, text)
    text = _NUMBER.sub(_spoken_number, text)
    text = text.replace("'", "")
    spelling = british_to_american()
    return [spelling.get(w, w) for w in re.sub(r"[^a-z0-9]+", " ", text).split()]


def word_error_rate(reference: str, heard: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after normalising both sides; an empty
    reference scores 0 when nothing was heard and 1 otherwise. A compound written as one word on one side
    and two on the other (light house = lighthouse, Ava Marsh = Avamarsh) is a match, as scorers that
    handle compounds count it: the speech is the same, only the spelling of the word boundary differs."""
    ref, hyp = normalise_words(reference), normalise_words(heard)
    if not ref:
        return 0.0 if not hyp else 1.0
    # cost[i][j]: edits to turn ref[:i] into hyp[:j]
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(len(hyp) + 1)] for i in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(hyp) + 1):
            best = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
            if i > 1 and ref[i - 2] + ref[i - 1] == hyp[j - 1]:
                best = min(best, cost[i - 2][j - 1])
            if j > 1 and hyp[j - 2] + hyp[j - 1] == ref[i - 1]:
                best = min(best, cost[i - 1][j - 2])
            cost[i][j] = best
    return cost[-1][-1] / len(ref)


@dataclass(frozen=True)
class QaLimits:
    """When a take is flagged: its WER over the threshold, or its pace outside the seconds-per-word range
    (checked only for lines of at least `min_words`: a one-word line's pace says little)."""

    wer_threshold: float = 0.2
    min_seconds_per_word: float = 0.12
    max_seconds_per_word: float = 1.5
    min_words: int = 4


@dataclass(frozen=True)
class TakeScore:
    wer: float
    seconds_per_word: float
    flagged: bool
    reasons: tuple[str, ...]


def score_take(text: str, transcript: str, duration: float, limits: QaLimits = QaLimits()) -> TakeScore:
    """Score what a take was asked to say against what the ASR heard and how long it lasted."""
    wer = word_error_rate(text, transcript)
    words = len(normalise_words(text))
    pace = duration / words if words else 0.0
    reasons = []
    if wer > limits.wer_threshold:
        reasons.append(f"WER {wer:.2f} > {limits.wer_threshold:g}")
    if words >= limits.min_words and pace > limits.max_seconds_per_word:
        reasons.append(f"{pace:.2f} s/word > {limits.max_seconds_per_word:g}: a run-on")
    if words >= limits.min_words and pace < limits.min_seconds_per_word:
        reasons.append(f"{pace:.2f} s/word < {limits.min_seconds_per_word:g}: truncated")
    return TakeScore(wer, pace, bool(reasons), tuple(reasons))
