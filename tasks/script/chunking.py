"""Text normalisation and longform chunking at sentence boundaries. Pure functions."""
from __future__ import annotations

import re
import unicodedata

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "mt", "no", "fig", "capt", "col",
    "gen", "lt", "sgt", "rev", "hon", "gov", "sen", "rep", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "aug",
    "sept", "sep", "oct", "nov", "dec",
}
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+)")
_CLAUSE_END = re.compile(r"[,;:—–]+(?=\s+)")


def normalise_text(text: str) -> str:
    """The text as spoken and as keyed: Unicode NFC, whitespace runs folded to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the period ending at `end` closes an abbreviation or an initial ("Dr.", "J. K.")."""
    if text[end - 1] != ".":
        return False
    word = text[:end - 1].rsplit(None, 1)[-1].lstrip("(\"'“‘") if text[:end - 1].strip() else ""
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        following = paragraph[m.end():].lstrip()[:1]
        if following.islower() or _is_abbreviation(paragraph, m.start() + 1 if m.group()[0] == "." else m.end()):
            continue
        sentences.append(paragraph[start:m.end()].strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _split_long(sentence: str, budget: int) -> list[str]:
    """A sentence over the budget: cut at clause punctuation, then, if still too long, between words."""
    pieces, start = [], 0
    for m in _CLAUSE_END.finditer(sentence):
        pieces.append(sentence[start:m.end()].strip())
        start = m.end()
    pieces.append(sentence[start:].strip())
    out: list[str] = []
    for piece in filter(None, pieces):
        words = piece.split()
        if out and len(out[-1].split()) + len(words) <= budget:
            out[-1] = f"{out[-1]} {piece}"
        elif len(words) <= budget:
            out.append(piece)
        else:
            out.extend(" ".join(words[i:i + budget]) for i in range(0, len(words), budget))
    return out


def chunk_text(text: str, word_budget: int) -> list[str]:
    """Split longform prose into chunks of whole sentences, each at most `word_budget` words where a
    sentence allows it. Paragraph breaks (blank lines) always end a chunk."""
    if word_budget < 1:
        raise ValueError("word_budget must be at least 1")
    chunks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = normalise_text(paragraph)
        if not paragraph:
            continue
        current: list[str] = []
        count = 0
        for sentence in split_sentences(paragraph):
            n = len(sentence.split())
            if n > word_budget:
                if current:
                    chunks.append(" ".join(current))
                    current, count = [], 0
                chunks.extend(_split_long(sentence, word_budget))
                continue
            if current and count + n > word_budget:
                chunks.append(" ".join(current))
                current, count = [], 0
            current.append(sentence)
            count += n
        if current:
            chunks.append(" ".join(current))
    return chunks
