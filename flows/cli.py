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
from flows import cli_doctor, cli_history, cli_import, cli_voices


def _print_summary(manifest: Path, summary, total: float) -> None:
    print(f"\nrendered {manifest}: run {summary.run_id}")
    for path in summary.chapters:
        print(f"  chapter  {path}")
    print(f"  book     {summary.book}")
    print(f"  {summary.takes_rendered} takes rendered, {summary.takes_reused} reused from the cache, "
          f"{summary.chapters_written} chapter files written; {summary.audio_seconds:.1f} s of audio")
    print(f"  provenance in {summary.database}")
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
        summary = render_manifest(manifest=str(manifest), engine=args.engine, output_dir=str(settings.output_dir),
                                  force=args.force)
        total = time.perf_counter() - start
        results.append({**summary.__dict__, "manifest": str(manifest), "total_seconds": total})
        if not args.json:
            _print_summary(manifest, summary, total)
    if args.json:
        print(json.dumps(results, indent=2))
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

    render.add_argument("--force", action="store_true", help="render every take again, ignoring the cache")

    cli_history.add_commands(sub)
    cli_import.add_command(sub)
    cli_voices.add_commands(sub)
    cli_doctor.add_command(sub)
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
