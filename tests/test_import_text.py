"""Markdown and plain-text import, the cleaning rules and the dialogue rule, on samples written here."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.book_import.book import BookImportError
from tasks.book_import.cleaning import clean_paragraph, is_page_number
from tasks.book_import.dialogue import split_dialogue
from tasks.book_import.importer import ImportOptions, read_book

MARKDOWN = """---
title: Harbour Notes
author: Mara Quill
lang: en-GB
---
# Harbour Notes

## The First Tide

The *tide* came in at [six](https://example.com) o'clock.[^1]

![a boat](boat.png)

```python
print("not for reading aloud")
```

## The Second Tide

It went out __again__ by noon, as every-
one expected.

### A Note on Gulls

Gulls&nbsp;followed   the boats.

[^1]: Tides are measured from the pier.
"""

TEXT = """THE LONG WATCH

by Mara Quill

CHAPTER ONE

The night was long. The keeper watched the sea until the light came.[1]

12

Chapter 2: The Fog

The fog rolled in over the rocks, and the horn sounded every

- 13 -

minute until the morn-
ing.

Part II

CHAPTER THREE
The Return

Joe came back on the Tuesday boat, and the keeper
was waiting on the pier.
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_markdown_chapters_at_second_level_when_one_first_level_heading_is_the_title(tmp_path):
    book = read_book(_write(tmp_path, "notes.md", MARKDOWN), ImportOptions())
    assert (book.title, book.author, book.language, book.source_format) == ("Harbour Notes", "Mara Quill", "en-GB", "Markdown")
    assert [c.title for c in book.chapters] == ["The First Tide", "The Second Tide"]
    assert book.chapters[0].paragraphs == ("The First Tide", "The tide came in at six o'clock.")
    assert book.chapters[1].paragraphs == ("The Second Tide", "It went out again by noon, as everyone expected.",
                                           "A Note on Gulls", "Gulls followed the boats.")
    assert set(book.notes) == {"1 code blocks skipped", "1 images skipped", "1 footnote texts skipped"}


def test_markdown_footnote_whose_definition_parses_as_a_link_reference(tmp_path):
    book = read_book(_write(tmp_path, "sea.md", "# Sea\n\nA *calm* sea.[^1]\n\n[^1]: note\n"), ImportOptions())
    assert book.chapters[0].paragraphs == ("Sea", "A calm sea.")


def test_markdown_with_several_first_level_headings_and_none(tmp_path):
    book = read_book(_write(tmp_path, "two-parts.md", "# One\n\nFirst.\n\n# Two\n\nSecond.\n"), ImportOptions())
    assert [(c.title, c.paragraphs) for c in book.chapters] == [("One", ("One", "First.")), ("Two", ("Two", "Second."))]
    assert book.title == "two parts"
    flat = read_book(_write(tmp_path, "flat.md", "Just *one* paragraph.\n"), ImportOptions(title="Flat"))
    assert [(c.title, c.paragraphs) for c in flat.chapters] == [("Flat", ("Just one paragraph.",))]


def test_plain_text_chapters_page_numbers_and_dividers(tmp_path):
    book = read_book(_write(tmp_path, "long-watch.txt", TEXT), ImportOptions(title="The Long Watch"))
    assert [c.title for c in book.chapters] == ["The Long Watch", "CHAPTER ONE", "Chapter 2: The Fog",
                                                "Part II: CHAPTER THREE: The Return"]
    assert book.chapters[0].paragraphs == ("THE LONG WATCH", "by Mara Quill")
    assert book.chapters[1].paragraphs == ("CHAPTER ONE", "The night was long. The keeper watched the sea until the light came.")
    # The page number "- 13 -" cut a sentence; it is removed and the sentence joined, as is "morn-/ing".
    assert book.chapters[2].paragraphs == ("Chapter 2: The Fog", "The fog rolled in over the rocks, and the horn sounded "
                                           "every minute until the morning.")
    assert book.chapters[3].paragraphs == ("Part II", "CHAPTER THREE", "The Return",
                                           "Joe came back on the Tuesday boat, and the keeper was waiting on the pier.")


def test_plain_text_with_a_pattern_of_its_own_or_no_headings(tmp_path):
    text = "~ 1 ~\n\nThe first.\n\n~ 2 ~\n\nThe second.\n"
    book = read_book(_write(tmp_path, "tildes.txt", text), ImportOptions(chapter_pattern=r"~ \d+ ~"))
    assert [(c.title, c.paragraphs[-1]) for c in book.chapters] == [("~ 1 ~", "The first."), ("~ 2 ~", "The second.")]
    single = read_book(_write(tmp_path, "tildes2.txt", text), ImportOptions())
    assert len(single.chapters) == 1 and single.chapters[0].paragraphs[1] == "The first."
    with pytest.raises(BookImportError, match="not a valid regular expression"):
        read_book(_write(tmp_path, "x.txt", text), ImportOptions(chapter_pattern="(unclosed"))


@pytest.mark.parametrize("line", ["Chapter 7", "CHAPTER SEVEN", "Part II", "Chapter twenty-one. The End", "Book 3"])
def test_default_heading_pattern_finds_common_headings(tmp_path, line):
    book = read_book(_write(tmp_path, "h.txt", f"Before.\n\n{line}\n\nAfter.\n"), ImportOptions(title="T"))
    assert [c.title for c in book.chapters] == ["T", line]


def test_a_sentence_starting_with_chapter_is_not_a_heading(tmp_path):
    book = read_book(_write(tmp_path, "s.txt", "Chapter 7 was the longest one he ever wrote, they said.\n"), ImportOptions())
    assert len(book.chapters) == 1


@pytest.mark.parametrize("raw, spoken", [
    ("remem-\nbered and well-known, not well-\nknown", "remembered and well-known, not well-known"),
    ("sea[12] and sky.[3] A note[^a].", "sea and sky. A note."),
    ("the end.¹ It was 3 m² wide.", "the end. It was 3 m² wide."),
    ("soft\u00adly, soft\u00ad\nly", "softly, softly"),
    ("a\u00a0b\u2009c \t\n d\u200be", "a b c de"),
    ("“Quoted” — it’s kept… as ‘is’.", "“Quoted” — it’s kept… as ‘is’."),
])
def test_cleaning(raw, spoken):
    from tasks.book_import.cleaning import hyphenated_words

    assert clean_paragraph(raw, hyphenated_words(raw)) == spoken


def test_page_number_lines():
    assert all(map(is_page_number, ["12", " - 13 - ", "[14]", "Page 15", "p. 16"]))
    assert not any(map(is_page_number, ["", "12 boats", "1984 was a year"]))


@pytest.mark.parametrize("paragraph, parts", [
    ("“Get the lamps lit,” said Joe. “The fog is coming.”",
     [(True, "“Get the lamps lit,”"), (False, "said Joe."), (True, "“The fog is coming.”")]),
    ('She said "Go." Then "Now"!', [(False, "She said"), (True, '"Go."'), (False, "Then"), (True, '"Now"!')]),
    ("“I'll go on, and on", [(True, "“I'll go on, and on")]),  # unclosed: runs to the paragraph's end
    ("It's the keeper's 'own' lamp.", [(False, "It's the keeper's 'own' lamp.")]),  # single quotes: not speech
])
def test_dialogue_rule(paragraph, parts):
    assert split_dialogue(paragraph) == parts


def test_bad_text_files(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BookImportError, match="not valid UTF-8"):
        read_book(bad, ImportOptions())
    with pytest.raises(BookImportError, match="no text to read"):
        read_book(_write(tmp_path, "empty.md", "\n\n```\ncode only\n```\n"), ImportOptions())
    with pytest.raises(BookImportError, match=r"unknown book type '\.pdf'"):
        read_book(_write(tmp_path, "book.pdf", "x"), ImportOptions())
    with pytest.raises(BookImportError, match="over the import limit of 10 bytes"):
        read_book(_write(tmp_path, "big.txt", "x" * 11), ImportOptions(max_bytes=10))
