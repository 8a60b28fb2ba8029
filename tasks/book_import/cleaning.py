"""Text cleaning a listener would want, and nothing more. Pure functions.

Removed: footnote markers, page numbers, soft hyphens and zero-width characters. Joined: a word hyphenated
across a line break. Folded: runs of whitespace (no-break and thin spaces included) to one space. Kept as
written: smart quotes, apostrophes, dashes, ellipses, capitalisation and spelling.
"""
from __future__ import annotations

import re
import unicodedata

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
# [12], [^note] and [*] after a word or punctuation; superscript digits only after punctuation ("end.¹"),
# because after a letter they may be an exponent ("m²").
_FOOTNOTE_MARKER = re.compile(r"(?<=[\w.,;:!?)\]”’\"'])(?:\[\d{1,3}\]|\[\^[^\]\s]{1,20}\]|\[\*{1,3}\])"
                              r"|(?<=[.,;:!?)”’\"'])[¹²³⁴⁵⁶⁷⁸⁹⁰]+")
# A word broken at a line end ("hyphen-\nated"); the continuation starts in lower case.
_LINE_BREAK_HYPHEN = re.compile(r"(\w+)-[ \t]*\n\s*([a-z]\w*)")
_HYPHENATED_WORD = re.compile(r"\b\w+-\w+\b")
# A line that is only a page number: "42", "- 42 -", "[42]", "Page 42", "p. 42".
_PAGE_NUMBER = re.compile(r"\s*(?:[-–—]\s*\d{1,4}\s*[-–—]|\[\d{1,4}\]|(?:page|p\.)\s*\d{1,4}|\d{1,4})\s*", re.I)


def is_page_number(line: str) -> bool:
    return bool(line.strip()) and _PAGE_NUMBER.fullmatch(line) is not None


def hyphenated_words(text: str) -> frozenset[str]:
    """Hyphenated words written on one line: evidence that the hyphen belongs to the word ("well-known")."""
    return frozenset(w.lower() for w in _HYPHENATED_WORD.findall(text))


def join_line_break_hyphens(text: str, keep: frozenset[str] = frozenset()) -> str:
    """"hyphen-\\nated" becomes "hyphenated", unless the text elsewhere writes the word with its hyphen."""
    def join(m: re.Match) -> str:
        word = f"{m[1]}-{m[2]}"
        return word if word.lower() in keep else m[1] + m[2]

    return _LINE_BREAK_HYPHEN.sub(join, text)


def remove_footnote_markers(text: str) -> str:
    return _FOOTNOTE_MARKER.sub("", text)


def normalise_whitespace(text: str) -> str:
    """Invisible characters dropped, every kind of space and line break folded to one space."""
    text = text.translate(_INVISIBLE)
    return " ".join("".join(" " if unicodedata.category(c) == "Zs" else c for c in text).split())


def clean_paragraph(text: str, keep_hyphens: frozenset[str] = frozenset()) -> str:
    """One paragraph as it should be spoken: the steps above, in an order where each sees raw line breaks."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\u00ad\s*", "", text)  # a soft hyphen at a line end joins the word too
    text = join_line_break_hyphens(text, keep_hyphens)
    text = remove_footnote_markers(text)
    return normalise_whitespace(text)
