"""`voicebatch import` as one function: read a book file by its extension, write its manifest."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tasks.book_import.book import Book, BookImportError
from tasks.book_import.epub import read_epub_book
from tasks.book_import.manifest_writer import header, manifest_data, manifest_text, write_manifest
from tasks.book_import.markdown import read_markdown_book
from tasks.book_import.plaintext import compile_chapter_pattern, read_text_book
from tasks.output.export import slug
from tasks.script.voices import available_voice_ids

READERS = {".epub": "EPUB", ".md": "Markdown", ".markdown": "Markdown", ".txt": "plain text"}


@dataclass(frozen=True)
class ImportOptions:
    voice: str = "ava"
    dialogue_voice: str | None = None  # None: every word is the narrator's
    chapter_pattern: str | None = None  # plain text only; None: the built-in heading pattern
    title: str | None = None  # Markdown and plain text: overrides what the file says
    author: str | None = None
    keep_matter: bool = False  # EPUB: keep cover, contents, copyright... as chapters
    max_bytes: int = 100 * 1024 * 1024
    chunk_words: int = 60


@dataclass(frozen=True)
class ImportResult:
    manifest: Path
    book: Book
    written: bool  # False: the manifest already held exactly these bytes


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BookImportError(path, f"not valid UTF-8 at byte {e.start}; save the file as UTF-8 and import again") from None


def read_book(path: Path, options: ImportOptions) -> Book:
    """The book in `path`, whatever its format; BookImportError for anything that cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise BookImportError(path, f"unknown book type {path.suffix or '(no extension)'!r}; "
                                    f"import .epub, .md or .txt ({', '.join(READERS)})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BookImportError(path, f"cannot read the file ({e.strerror}); check the path") from None
    if size > options.max_bytes:
        raise BookImportError(path, f"the file is {size} bytes, over the import limit of {options.max_bytes} bytes; "
                                    "raise VOICEBATCH_IMPORT_MAX_MB or --max-mb if it is genuine")
    if suffix == ".epub":

        book = read_epub_book(path, options.max_bytes, keep_matter=options.keep_matter)
    else:
        try:
            text = _decode(path, path.read_bytes())
        except OSError as e:
            raise BookImportError(path, f"cannot read the file ({e.strerror})") from None
        if suffix == ".txt":

            book = read_text_book(path, text, compile_chapter_pattern(options.chapter_pattern), options.title,
                                  options.author)
        else:

            book = read_markdown_book(path, text, options.title, options.author)
    if not book.chapters:
        raise BookImportError(path, "there is no text to read in it; check it is the manuscript and not empty")
    return book


def default_manifest_path(book_path: Path) -> Path:
    return Path("manifests") / f"{slug(book_path.stem, 'book')}.yaml"


def _voicebatch_version() -> str:
    try:
        return version("voicebatch")
    except PackageNotFoundError:
        return "unknown"


def import_book(path: Path, out: Path | None, options: ImportOptions, voices_dir: Path,
                force: bool = False) -> ImportResult:
    """Read the book, check its voices exist, write a validated manifest (atomically, only when it changed)."""
    path = Path(path)
    book = read_book(path, options)
    known = available_voice_ids(voices_dir)
    for flag, voice in (("--voice", options.voice), ("--dialogue", options.dialogue_voice)):
        if voice is not None and voice not in known:
            raise BookImportError(f"{flag} {voice}", f"unknown voice; voices in {Path(voices_dir).resolve()}: "
                                                     f"{', '.join(known) or 'none'} (VOICEBATCH_VOICES_DIR sets the folder)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    lines = header(book, path.name, digest, _voicebatch_version(), options.voice, options.dialogue_voice)
    text = manifest_text(lines, manifest_data(book, options.voice, options.dialogue_voice, options.chunk_words))
    target = Path(out) if out else default_manifest_path(path)
    written = write_manifest(text, target, voices_dir, force)
    return ImportResult(manifest=target, book=book, written=written)
