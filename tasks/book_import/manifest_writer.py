"""A Book becomes a manifest: YAML a producer can read and edit, a reproducible comment header, validated by
the same ingest as any manifest before it is written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.book_import.book import Book, BookImportError
from tasks.book_import.dialogue import split_dialogue
from tasks.core.errors import ManifestError
from tasks.core.files import atomic_write
from tasks.script.chunking import chunk_text
from tasks.script.ingest import ingest

NARRATOR = "Narrator"
DIALOGUE = "Dialogue"


def manifest_data(book: Book, voice: str, dialogue_voice: str | None, chunk_words: int) -> dict[str, Any]:
    """The manifest as data: prose chapters (`text`), or with a dialogue voice, `lines` per speaker."""
    data: dict[str, Any] = {"title": book.title}
    if book.author:
        data["author"] = book.author
    data["voices"] = {NARRATOR: voice, **({DIALOGUE: dialogue_voice} if dialogue_voice else {})}
    chapters = []
    for chapter in book.chapters:
        if dialogue_voice is None:
            chapters.append({"title": chapter.title, "text": "\n\n".join(chapter.paragraphs)})
            continue
        lines = []
        for paragraph in chapter.paragraphs:
            for speech, text in split_dialogue(paragraph):
                # Lines are not chunked by the planner, so a long narration stays within the word budget here.
                for piece in chunk_text(text, chunk_words):
                    lines.append({"speaker": DIALOGUE if speech else NARRATOR, "text": piece})
        chapters.append({"title": chapter.title, "lines": lines})
    data["chapters"] = chapters
    return data


def header(book: Book, source_name: str, source_sha256: str, version: str, voice: str,
           dialogue_voice: str | None) -> list[str]:
    """Where the manifest came from. No clock time: the source's hash dates it, and re-importing the same
    file must give the same bytes."""
    lines = [f"Imported by voicebatch {version} (voicebatch import) from {source_name} ({book.source_format}).",
             f"Source sha256: {source_sha256}"]
    if book.modified:
        lines.append(f"Source modified (its own metadata): {book.modified}")
    if book.language:
        lines.append(f"Language: {book.language}")
    lines.append("Importing the same file again writes this file byte for byte. Edit freely: a render re-renders "
                 "only chunks whose text changed.")
    if dialogue_voice:
        lines.append(f"Dialogue: text in double quotes is read by {DIALOGUE} ({dialogue_voice}), the rest by "
                     f"{NARRATOR} ({voice}).")
    if book.skipped:
        lines.append("Skipped (re-import with --keep-matter to include them as chapters):")
        lines += [f"  - {s.kind}: {s.title!r} ({s.source}, {s.words} words)" for s in book.skipped]
    if book.notes:
        lines.append("Notes:")
        lines += [f"  - {note}" for note in book.notes]
    return lines


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def manifest_text(header_lines: list[str], data: dict[str, Any]) -> str:
    comments = "".join(f"# {line}\n" for line in header_lines)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096, indent=2)
    return comments + body


def write_manifest(text: str, out: Path, voices_dir: Path, force: bool = False) -> bool:
    """Validate and write atomically; False when the file already holds exactly this text."""
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise BookImportError(out, "the manifest is written as YAML; give --out a .yaml or .yml name")
    if out.is_file():
        if out.read_bytes() == text.encode("utf-8"):
            return False
        if not force:
            raise BookImportError(out, "a different manifest is already there (perhaps with your edits); pass --force "
                                       "to overwrite it, or choose another --out")
    # The manifest is checked as the file it will be (a .yaml suffix: the reader picks the format by suffix).
    with atomic_write(out, suffix=out.suffix) as candidate:
        candidate.write_text(text, encoding="utf-8")
        try:
            ingest(candidate, voices_dir)
        except ManifestError as e:
            problems = "; ".join(e.problems)
            raise BookImportError(out, f"the manifest it would write is refused ({problems}); nothing was written") from None
    return True
