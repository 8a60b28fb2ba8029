"""Markdown into a Book with markdown-it-py's tokens: chapters at top-level headings (`#`, or `##` when the
file has a single `#`, which is then the book's title), emphasis and links reduced to their text, code
blocks, raw HTML and images skipped with a note."""
from __future__ import annotations

from pathlib import Path

import yaml

from tasks.book_import.book import Book, BookChapter, fold_dividers
from tasks.book_import.cleaning import clean_paragraph, hyphenated_words

_FRONT_MATTER_END = ("\n---\n", "\n...\n")


def split_front_matter(text: str) -> tuple[dict, str]:
    """A leading `---` YAML block (title, author, lang) and the rest; an unparsable block stays as text."""
    if not text.startswith("---\n"):
        return {}, text
    ends = [i for i in (text.find(end, 3) for end in _FRONT_MATTER_END) if i != -1]
    if not ends:
        return {}, text
    end = min(ends)
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return {}, text
    if not isinstance(data, dict):
        return {}, text
    # Blank lines keep the body's line numbers the file's own.
    return data, "\n" * (text[:end + 5].count("\n")) + text[end + 5:]


def _inline_text(token, counts: dict[str, int]) -> str:
    parts: list[str] = []
    link_start = None
    for child in token.children or []:
        if child.type == "link_open":
            link_start = len(parts)
        elif child.type == "link_close" and link_start is not None:
            # "[^1]" whose definition parsed as a link reference: a footnote marker, not words.
            if "".join(parts[link_start:]).startswith("^"):
                del parts[link_start:]
                counts["footnote markers"] += 1
            link_start = None
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            counts["images"] += 1
        elif child.type == "html_inline":
            counts["inline HTML tags"] += 1
    return "".join(parts)


def _blocks(body: str) -> tuple[list[tuple[int, str, int]], dict[str, int]]:
    """(heading level or 0 for a paragraph, raw text, line number) in document order, and what was skipped."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(body)
    counts = {"code blocks": 0, "HTML blocks": 0, "images": 0, "inline HTML tags": 0, "footnote texts": 0,
              "footnote markers": 0}
    blocks = []
    for i, token in enumerate(tokens):
        line = token.map[0] + 1 if token.map else 0
        if token.type in ("fence", "code_block"):
            counts["code blocks"] += 1
        elif token.type == "html_block":
            counts["HTML blocks"] += 1
        elif token.type == "inline" and i > 0:
            opener = tokens[i - 1]
            text = _inline_text(token, counts)
            if opener.type == "heading_open":
                blocks.append((int(opener.tag[1]), text, line))
            elif text.lstrip().startswith("[^") and "]:" in text.split("\n", 1)[0]:
                counts["footnote texts"] += 1  # a footnote's own text: "[^1]: ..."
            else:
                blocks.append((0, text, line))
    return blocks, counts


def read_markdown_book(path: Path, text: str, title: str | None = None, author: str | None = None) -> Book:
    meta, body = split_front_matter(text)
    blocks, counts = _blocks(body)
    levels = [level for level, _, _ in blocks if level]
    top = min(levels) if levels else None
    book_title = None
    if top is not None and levels.count(top) == 1 and any(level > top for level in levels):
        book_title = next(clean_paragraph(t) for level, t, _ in blocks if level == top)
        blocks = [b for b in blocks if b[0] != top]
        top = min(level for level in levels if level > top)
    keep = hyphenated_words("\n".join(t for _, t, _ in blocks))
    book_title = title or str(meta.get("title") or "").strip() or book_title or path.stem.replace("_", " ").replace("-", " ")

    chapters: list[BookChapter] = []
    preamble: list[str] = []
    current: tuple[str, list[tuple[str, bool]], int] | None = None

    def close() -> None:
        if current is not None:
            name, paragraphs, line = current
            chapters.append(BookChapter(name, tuple(p for p, _ in paragraphs), f"line {line}",
                                        all(h for _, h in paragraphs)))

    for level, raw, line in blocks:
        text_ = clean_paragraph(raw, keep)
        if not text_:
            continue
        if level and level == top:
            close()
            current = (text_[:500], [(text_, True)], line)
        elif current is None:
            preamble.append(text_)
        else:
            current[1].append((text_, bool(level)))
    close()
    notes = [f"{n} {what} skipped" for what, n in counts.items() if n]
    if preamble:
        chapters.insert(0, BookChapter(book_title[:500], tuple(preamble), "line 1"))
        if len(chapters) > 1:
            notes.append(f"text before the first chapter heading kept as a chapter titled {book_title!r}")
    return Book(title=book_title[:500], author=(author or str(meta.get("author") or "").strip() or None),
                language=str(meta.get("lang") or meta.get("language") or "").strip() or None,
                source_format="Markdown", chapters=tuple(fold_dividers(chapters)), notes=tuple(notes))
