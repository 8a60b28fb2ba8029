"""The `voicebatch` command. Thin: parse, call one function, print. Errors become one message and an exit
code here, and only here (VOICEBATCH_DEBUG=1 shows the traceback instead)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import flows  # noqa: F401  (sets Prefect's offline defaults before Prefect is imported)
from engine.errors import VoicebatchError
from engine.settings import get_settings


def _print_summary(manifest: Path, summary, total: float) -> None:
    print(f"\nrendered {manifest}: run {summary.run_id}")
    for path in summary.chapters:
        print(f"  chapter  {path}")
    print(f"  book     {summary.book}")
    print(f"  {summary.takes_rendered} takes, {summary.audio_seconds:.1f} s of audio; provenance in {summary.database}")
    rest = summary.wall_seconds - summary.load_seconds - summary.render_seconds
    print(f"  time: {total:.1f} s total = Prefect start-up and orchestration {total - summary.wall_seconds:.1f} s"
          f" + model load {summary.load_seconds:.1f} s + rendering {summary.render_seconds:.1f} s"
          f" + planning, assembly and writes {rest:.1f} s")


def cmd_render(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.out:
        settings.output_dir = Path(args.out)
    # Refuse bad input before Prefect starts: no run row, no file.
    from engine.registry import engine_class
    from tasks.ingest import ingest

    for manifest in args.manifests:
        ingest(manifest, settings.voices_dir)
    if args.engine:
        engine_class(args.engine)

    from flows.render import render_manifest

    results = []
    for manifest in args.manifests:  # one process: one Prefect start-up, engines stay warm between manifests
        start = time.perf_counter()
        summary = render_manifest(manifest=str(manifest), engine=args.engine, output_dir=str(settings.output_dir))
        total = time.perf_counter() - start
        results.append({**summary.__dict__, "manifest": str(manifest), "total_seconds": total})
        if not args.json:
            _print_summary(manifest, summary, total)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from tasks.provenance import recent_runs

    runs = recent_runs(get_settings().database, args.limit)
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print("no runs yet")
    for r in runs:
        audio = f"{r['audio_seconds']:.1f} s audio" if r["audio_seconds"] is not None else "-"
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['status']:<9} {r['run_id']}  {r['title']}  "
              f"{r['takes_rendered'] or 0} takes  {audio}  {r['manifest_path']}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tasks.book_import.importer import ImportOptions, import_book

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebatch", description="Batch text-to-speech from script manifests.")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render a manifest into chapter and book audio")
    render.add_argument("manifests", type=Path, nargs="+", metavar="MANIFEST", help="a .yaml, .yml or .json manifest")
    render.add_argument("--engine", help="engine for every voice (default: the manifest's, the voice's, then settings)")
    render.add_argument("--out", help="output folder (default: VOICEBATCH_OUTPUT_DIR or outputs/)")
    render.add_argument("--json", action="store_true", help="print the run summary as JSON")
    render.set_defaults(func=cmd_render)

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

    history = sub.add_parser("history", help="list recent runs")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("engine", "tasks", "flows"):
        logging.getLogger(name).addHandler(handler)
    try:
        return args.func(args)
    except VoicebatchError as e:
        if get_settings().debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
