"""`voicebatch import BOOK`: an EPUB, Markdown or plain-text book into a manifest."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tasks.book_import.importer import ImportOptions, import_book
from tasks.core.settings import get_settings


def cmd_import(args: argparse.Namespace) -> int:
    settings = get_settings()
    max_mb = args.max_mb if args.max_mb is not None else settings.import_max_mb
    options = ImportOptions(voice=args.voice, dialogue_voice=args.dialogue, chapter_pattern=args.chapter_pattern,
                            title=args.title, author=args.author, keep_matter=args.keep_matter,
                            max_bytes=int(max_mb * 1024 * 1024), chunk_words=settings.chunk_words)
    result = import_book(args.book, args.out, options, settings.voices_dir, force=args.force)
    book = result.book
    if args.json:
        print(json.dumps({"manifest": str(result.manifest), "written": result.written, "title": book.title,
                          "author": book.author, "language": book.language, "format": book.source_format,
                          "chapters": [c.title for c in book.chapters],
                          "skipped": [s.__dict__ for s in book.skipped], "notes": list(book.notes)}, indent=2))
        return 0
    state = "wrote" if result.written else "unchanged"
    print(f"{state} {result.manifest}: {book.title!r}, {len(book.chapters)} chapters from {args.book} ({book.source_format})")
    for i, chapter in enumerate(book.chapters, start=1):
        print(f"  {i:>3}. {chapter.title}  ({sum(len(p.split()) for p in chapter.paragraphs)} words)")
    for part in book.skipped:
        print(f"  skipped {part.kind}: {part.title!r} ({part.source})")
    for note in book.notes:
        print(f"  note: {note}")
    print(f"render it with: voicebatch render {result.manifest}")
    return 0


def add_command(sub) -> None:
    imp = sub.add_parser("import", help="turn an EPUB, Markdown or plain-text book into a manifest")
    imp.add_argument("book", type=Path, metavar="BOOK", help="a .epub, .md or .txt file")
    imp.add_argument("--out", type=Path, help="manifest to write (default: manifests/<book name>.yaml)")
    imp.add_argument("--voice", default="ava", help="narrator's voice id in the voices folder (default: ava)")
    speakers = imp.add_mutually_exclusive_group()
    speakers.add_argument("--narrator-only", action="store_true", help="every word read by the narrator (default)")
    speakers.add_argument("--dialogue", metavar="VOICE", help="text in double quotes read by this second voice")
    imp.add_argument("--chapter-pattern", metavar="REGEX",
                     help="plain text: a Python regular expression matching a whole chapter heading line")
    imp.add_argument("--title", help="book title (Markdown and plain text; default: from the file)")
    imp.add_argument("--author", help="book author (Markdown and plain text)")
    imp.add_argument("--keep-matter", action="store_true",
                     help="EPUB: keep cover, contents, copyright and index pages as chapters")
    imp.add_argument("--max-mb", type=float, help="refuse a book file larger than this (default: VOICEBATCH_IMPORT_MAX_MB, 100)")
    imp.add_argument("--force", action="store_true", help="overwrite a different manifest already at --out")
    imp.add_argument("--json", action="store_true", help="print what was imported as JSON")
    imp.set_defaults(func=cmd_import)
