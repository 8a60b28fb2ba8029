"""What every reader produces: a Book of chapters (cleaned paragraphs), what was skipped, and notes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from tasks.core.errors import UserInputError


class BookImportError(UserInputError):
    """A book that cannot be imported: the message names the file and what to do about it."""
    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: cannot import: {problem}")


@dataclass(frozen=True)
class BookChapter:
    title: str
    paragraphs: tuple[str, ...]
    source: str  # where it came from, for notes: "ch03.xhtml" or "line 120"
    heading_only: bool = False  # a divider ("Part II") with no text of its own


@dataclass(frozen=True)
class SkippedPart:
    """Front or back matter left out of the manifest, listed so the producer can add it back."""
    title: str
    kind: str  # "cover", "toc", "copyright-page", "index", "non-linear", "no text", ...
    source: str
    words: int


@dataclass(frozen=True)
class Book:
    title: str
    author: str | None
    language: str | None
    source_format: str  # "EPUB 3", "EPUB 2", "Markdown", "plain text"
    chapters: tuple[BookChapter, ...]
    skipped: tuple[SkippedPart, ...] = ()
    notes: tuple[str, ...] = field(default=())
    modified: str | None = None  # the source's own modification date (EPUB metadata), never the clock


def fold_dividers(chapters: list[BookChapter]) -> list[BookChapter]:
    """A divider with no text of its own ("Part II") joins the chapter after it: its heading is read first
    and prefixes that chapter's title, so no chapter file holds a lone heading."""
    out: list[BookChapter] = []
    pending: list[BookChapter] = []
    for chapter in chapters:
        if chapter.heading_only:
            pending.append(chapter)
            continue
        if pending:
            title = ": ".join([*(p.title for p in pending), chapter.title])
            paragraphs = tuple(par for p in pending for par in p.paragraphs) + chapter.paragraphs
            chapter = replace(chapter, title=title, paragraphs=paragraphs)
            pending = []
        out.append(chapter)
    if pending:  # dividers at the very end: keep them rather than lose words
        out.extend(replace(p, heading_only=False) for p in pending)
    return out

