"""Plain text into a Book: paragraphs at blank lines, chapters at heading lines ("Chapter 7", "CHAPTER
SEVEN", "Part II", "Prologue") or at lines matching a pattern the producer gives; otherwise one chapter."""
from __future__ import annotations

import re
from pathlib import Path

from tasks.book_import.book import Book, BookChapter, BookImportError, fold_dividers
from tasks.book_import.cleaning import clean_paragraph, hyphenated_words, is_page_number

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_NUMBER = rf"(?:\d{{1,4}}|[ivxlcdm]{{1,8}}|(?:{_TENS})(?:[ -](?:{_UNITS}))?|{_TEENS}|{_UNITS}|hundred)"
# The whole heading line: a keyword and a number, then optionally a separator and a short title.
DEFAULT_CHAPTER_PATTERN = (rf"(?i)(?:(?:chapter|part|book)\s+{_NUMBER}\b(?:\s*[.:—–-]\s*\S.{{0,70}}|\.)?"
                           r"|prologue|epilogue|introduction|preface|afterword)")
_SENTENCE_END = tuple(".!?…:;\"”’)")


def compile_chapter_pattern(pattern: str | None) -> re.Pattern:
    """The producer's heading pattern (matched against a whole stripped line) or the default."""
    try:
        return re.compile(pattern or DEFAULT_CHAPTER_PATTERN)
    except re.error as e:
        raise BookImportError("--chapter-pattern", f"{pattern!r} is not a valid regular expression ({e}); "
                                                   "write a Python pattern such as '(?i)chapter \\d+'") from None


def _paragraphs(text: str) -> list[tuple[list[str], int, bool]]:
    """(lines, first line number, a page number was removed just before it) for each blank-line block."""
    out: list[tuple[list[str], int, bool]] = []
    current: list[str] = []
    start, page_break = 0, False
    for number, line in enumerate(text.replace("\f", "\n").splitlines(), start=1):
        if is_page_number(line):
            if current:
                out.append((current, start, page_break))
                current = []
            page_break = True
            continue
        if not line.strip():
            if current:
                out.append((current, start, page_break))
                current, page_break = [], False
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        out.append((current, start, page_break))
    return out


def _rejoin_page_breaks(blocks: list[tuple[list[str], int, bool]]) -> list[tuple[list[str], int]]:
    """A sentence cut by a removed page number (no end punctuation before, lower case after) is rejoined."""
    out: list[tuple[list[str], int]] = []
    for lines, start, page_break in blocks:
        if page_break and out and not out[-1][0][-1].rstrip().endswith(_SENTENCE_END) and lines[0].lstrip()[:1].islower():
            out[-1][0].extend(lines)
        else:
            out.append((list(lines), start))
    return out


def _heading(lines: list[str], pattern: re.Pattern) -> tuple[str, list[str], list[str]] | None:
    """(title, heading lines, body lines after them) when the block starts with a heading line."""
    first = lines[0].strip()
    if len(first) > 100 or not pattern.fullmatch(first):
        return None
    rest = lines[1:]
    # "CHAPTER I." then "The Storm" on the next line: the short second line is the chapter's name.
    if len(rest) == 1 and len(rest[0].strip()) <= 60 and not rest[0].rstrip().endswith((".", ",", ";")):
        sep = " " if first.endswith((".", ":")) else ": "
        return f"{first}{sep}{rest[0].strip()}", [first, rest[0]], []
    return first, [first], rest


def read_text_book(path: Path, text: str, pattern: re.Pattern, title: str | None = None,
                   author: str | None = None) -> Book:
    blocks = _rejoin_page_breaks(_paragraphs(text))
    keep = hyphenated_words(text)
    book_title = title or path.stem.replace("_", " ").replace("-", " ")
    chapters: list[BookChapter] = []
    preamble: list[str] = []
    current: list | None = None  # [title, paragraphs, line, heading only]
    for lines, start in blocks:
        found = _heading(lines, pattern)
        if found:
            if current:
                chapters.append(BookChapter(current[0], tuple(current[1]), f"line {current[2]}", current[3]))
            name, heading, body = found
            # Each heading line is read as its own paragraph, as written (the title's ": " is not spoken).
            current = [" ".join(name.split())[:500], [clean_paragraph(h) for h in heading], start, not body]
            if body:
                current[1].append(clean_paragraph("\n".join(body), keep))
            continue
        paragraph = clean_paragraph("\n".join(lines), keep)
        if not paragraph:
            continue
        if current is None:
            preamble.append(paragraph)
        else:
            current[1].append(paragraph)
            current[3] = False
    if current:
        chapters.append(BookChapter(current[0], tuple(current[1]), f"line {current[2]}", current[3]))
    notes = []
    if preamble:
        chapters.insert(0, BookChapter(book_title[:500], tuple(preamble), "line 1"))
        if len(chapters) > 1:
            notes.append(f"text before the first chapter heading kept as a chapter titled {book_title!r}")
    return Book(title=book_title[:500], author=author, language=None, source_format="plain text",
                chapters=tuple(fold_dividers(chapters)), notes=tuple(notes))
