"""`voicebatch sweep MANIFEST`: render chosen lines over a grid of decoding settings and seeds, print the ranked
scores, or (with --adopt) turn one grid point into a speaker's overrides in the manifest."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli.preflight import check_script, preflight
from tasks.core.settings import get_settings
from tasks.script.ingest import ingest
from tasks.script.manifest import read_document
from tasks.sweep.adopt import adopting_speaker, find_point, overrides_text, write_overrides
from tasks.sweep.plan import SweepError, grid_points, parse_point_name, parse_values, spec_from_block
from tasks.sweep.score import RANKING, table_lines

# Command-line option -> decoding setting it sweeps.
GRID_OPTIONS = {"--temperature": "temperature", "--top-k": "top_k", "--top-p": "top_p",
                "--max-new-tokens": "max_new_tokens", "--ras-win-len": "ras_win_len"}


def grid_file_block(path: Path) -> dict:
    """The `sweep:` block of a grid file."""
    data = read_document(path)
    if not isinstance(data, dict) or not isinstance(data.get("sweep"), dict):
        raise SweepError(f"{path}: expected a `sweep:` mapping, e.g. sweep: {{temperature: [0.3, 0.7], seeds: 2}}")
    if set(data) != {"sweep"}:
        raise SweepError(f"{path}: unknown top-level keys {', '.join(sorted(set(data) - {'sweep'}))}; only `sweep:` "
                         "is read")
    return dict(data["sweep"])


def sweep_spec(args: argparse.Namespace):
    """The grid file's block (if any) with the command line's values over it."""
    block = grid_file_block(args.grid) if args.grid else {}
    for option, setting in GRID_OPTIONS.items():
        given = getattr(args, setting)
        if given is not None:
            block[setting] = list(parse_values(option, setting, given))
    for name in ("seeds", "chapter", "lines", "speaker"):
        if getattr(args, name) is not None:
            block[name] = getattr(args, name)
    if args.adopt and not any(k in block for k in (*GRID_OPTIONS.values(), "points")):
        # No grid given: the point's name says its settings (checked against the engine like a grid).
        block.update({k: [v] for k, v in parse_point_name(args.adopt).items()})
    return spec_from_block(block, str(args.grid) if args.grid else "command line")


def cmd_sweep(args: argparse.Namespace) -> int:
    from flows.sweep import check_sweep

    settings = get_settings()
    if args.out:
        settings.output_dir = Path(args.out)
    if args.write and not args.adopt:
        raise SweepError("--write applies an adopted point: use it with --adopt POINT")
    # Everything the user can get wrong is refused here, before Prefect starts: no run row, no file.
    script = ingest(args.manifest, settings.voices_dir)
    spec = sweep_spec(args)
    selected = check_sweep(script, spec, args.engine, settings.engine)
    if args.adopt:
        point = find_point(grid_points(spec), args.adopt)
        if not point.params:
            raise SweepError(f"--adopt: point {point.name!r} sets no decoding settings; there is nothing to adopt")
        speaker = adopting_speaker(selected, spec.speaker)
        print(f"# grid point {point.name} as {speaker}'s overrides in {args.manifest}:")
        print(overrides_text(script, speaker, point), end="")
        if args.write:
            write_overrides(args.manifest, speaker, point.params)
            print(f"wrote voices.{speaker} in {args.manifest}; `voicebatch render {args.manifest}` re-renders "
                  f"{speaker}'s lines only")
        return 0

    from flows.local_server import prefect_api
    from flows.server_check import require_api
    from flows.sweep import sweep_manifest

    check_script(script, False, settings)  # the sweep's own scoring needs no QA model up front
    require_api()
    preflight(settings.output_dir, settings.database)
    with prefect_api():
        result = sweep_manifest(manifest=str(args.manifest), grid={k: list(v) for k, v in spec.grid.items()},
                                points=[dict(p) for p in spec.points] or None,
                                seeds=spec.seeds if isinstance(spec.seeds, int) else list(spec.seeds),
                                chapter=spec.chapter, lines=spec.lines, speaker=spec.speaker, engine=args.engine,
                                output_dir=str(settings.output_dir), wer=not args.no_wer,
                                review=not args.no_review)
    if args.json:
        print(json.dumps(result.__dict__, indent=2, default=str))
    else:
        print(f"\nsweep of {args.manifest}: run {result.run_id}, {result.takes_planned} takes "
              f"({result.takes_rendered} rendered in {result.batches} batches, {result.takes_reused} reused)")
        print(f"ranked {RANKING}" + (f"; WER by {result.asr_model}" if result.asr_model else "; no ASR (--no-wer)"))
        print("\n".join("  " + line for line in table_lines(result.points)))
        for failure in result.failures:
            print(f"  FAILED chapter {failure['chapter'] + 1}, line {failure['line'] + 1}: {failure['error']}")
        print(f"  adopt one with: voicebatch sweep {args.manifest} ... --adopt POINT [--write]")
        print(f"  provenance in {result.database} (sweep_takes)")
        if result.review_page:
            print(f"review {result.review_page}")
    return 0 if result.status == "completed" else 1


def add_command(sub) -> None:
    sweep = sub.add_parser("sweep", help="render chosen lines over a grid of decoding settings and rank the points")
    sweep.add_argument("manifest", type=Path, metavar="MANIFEST")
    chosen = sweep.add_argument_group("which lines")
    chosen.add_argument("--chapter", type=int, help="chapter number, from 1")
    chosen.add_argument("--lines", help="lines of that chapter, from 1: 1-5, 2,4 (chunks, in a prose chapter)")
    chosen.add_argument("--speaker", help="only this speaker's lines (and whose overrides --adopt writes)")
    grid = sweep.add_argument_group("grid (values comma-separated; every combination is one grid point)")
    for option, setting in GRID_OPTIONS.items():
        grid.add_argument(option, dest=setting, metavar="V,V", help=f"values of {setting}")
    grid.add_argument("--seeds", type=int, help="seeds per point: the line's own seed, +1, ... (default 1)")
    grid.add_argument("--grid", type=Path, metavar="FILE.yaml", help="a file with a `sweep:` block (options override it)")
    sweep.add_argument("--engine", help="engine for every voice (default: as for render)")
    sweep.add_argument("--out", help="output folder (default: VOICEBATCH_OUTPUT_DIR or outputs/)")
    sweep.add_argument("--no-wer", action="store_true", help="skip the ASR check (no Whisper model needed)")
    sweep.add_argument("--no-review", action="store_true", help="do not write the sweep's review page")
    sweep.add_argument("--json", action="store_true", help="print the result as JSON")
    sweep.add_argument("--adopt", metavar="POINT", help="print POINT's settings as the speaker's manifest overrides")
    sweep.add_argument("--write", action="store_true", help="with --adopt: write them into the manifest")
    sweep.set_defaults(func=cmd_sweep)
