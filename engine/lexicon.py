"""A pronunciation lexicon: words or phrases of a script mapped to how an engine should say them, either as
phonemes (`/ɡˈʌːl ɹˈɑk,/`, for engines that read phonemes) or as a plain-text respelling (any engine).

Matching is case-sensitive (names are what a lexicon is for: "Reading" the town is not "reading"), on whole
words (`Rock` does not match inside `Rocks` or `Rockall`), with any run of spaces in the text matching the
one space of a phrase, and the longest term first where terms overlap. The script's words stay the words of
record (captions, QA reference, reports); only what the engine reads changes. Pure functions.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Iterable, Mapping

Entries = tuple[tuple[str, str], ...]  # (term, pronunciation) pairs, sorted by term: part of a cache key


def is_phonemes(pronunciation: str) -> bool:
    """`/.../` marks phonemes; anything else is a respelling."""
    return len(pronunciation) >= 2 and pronunciation.startswith("/") and pronunciation.endswith("/")


def phonemes_of(pronunciation: str) -> str:
    return pronunciation[1:-1].strip()


@lru_cache(maxsize=256)
def _pattern(terms: tuple[str, ...]) -> re.Pattern:
    # Longest first: at one position the regex alternation takes the first alternative that matches.
    ordered = sorted(terms, key=lambda t: (-len(t), t))
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in ordered)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def _term_of(matched: str, terms: Iterable[str]) -> str:
    spaced = " ".join(matched.split())
    return next(t for t in terms if " ".join(t.split()) == spaced)


def matching_entries(text: str, lexicon: Mapping[str, str]) -> Entries:
    """The lexicon's entries that occur in `text`, sorted by term (empty when none does)."""
    if not lexicon:
        return ()
    found = {_term_of(m.group(0), lexicon) for m in _pattern(tuple(lexicon)).finditer(text)}
    return tuple(sorted((term, lexicon[term]) for term in found))


def occurs(term: str, text: str) -> bool:
    return _pattern((term,)).search(text) is not None


def rewrite(text: str, entries: Entries, phonemes: Callable[[str, str], str] | None = None) -> str:
    """`text` as the engine should read it: each matched term replaced by its respelling, or by
    `phonemes(term, phoneme_string)` for a phoneme entry. Raises ValueError for a phoneme entry when
    `phonemes` is None (the engine reads text only)."""
    if not entries:
        return text
    lexicon = dict(entries)

    def replace(match: re.Match) -> str:
        term = _term_of(match.group(0), lexicon)
        said = lexicon[term]
        if not is_phonemes(said):
            return said
        if phonemes is None:
            raise ValueError(f"{term!r} has a phoneme pronunciation {said!r}, and this engine reads text only")
        return phonemes(match.group(0), phonemes_of(said))

    return _pattern(tuple(lexicon)).sub(replace, text)
