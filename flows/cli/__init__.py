"""The `voicebatch` command. Thin: parse, call one function, print. Errors become one message and an exit
code here, and only here (VOICEBATCH_DEBUG=1 shows the traceback instead)."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import flows  # noqa: F401  (sets Prefect's offline defaults before Prefect is imported)
from engine.registry import engine_class
from flows.cli import book_import as cli_import
from flows.cli import doctor as cli_doctor
from flows.cli import history as cli_history
from flows.cli import qa as cli_qa
from flows.cli import review as cli_review
from flows.cli import serve as cli_serve
from flows.cli import server as cli_server
from flows.cli import sweep as cli_sweep
from flows.cli import voices as cli_voices
from flows.cli.preflight import check_script, preflight
from flows.cli.stopping import as_stop, exit_now, install_handlers, stopped_line
from tasks.core.errors import UserInputError, VoicebatchError
from tasks.core.settings import get_settings
from tasks.qa import report as qa_report
from tasks.script.ingest import ingest
from tasks.script.overrides import apply_overrides, overrides_from_assignments, parse_overrides
from tasks.script.pronunciations import check_pronunciations

if TYPE_CHECKING:
    from flows.render import RunSummary


def _print_summary(manifest: Path, summary, total: float) -> None:
    print(f"\nrendered {manifest}: run {summary.run_id}")
    for path in summary.chapters:
        print(f"  chapter  {path}")
    if summary.book:
        print(f"  book     {summary.book}")
    for path in summary.encoded:
        print(f"  encoded  {path}")
    _print_loudness(summary.loudness)
    for warning in summary.warnings:
        print(f"  warning: {warning}")
    for line in qa_report.text_lines(summary.qa):
        print(line)
    for failure in summary.failures:
        print(f"  FAILED   chapter {failure['chapter'] + 1}, line {failure['line'] + 1} ({failure['source']}): "
              f"{failure['text'][:50]!r}: {failure['error']}")
    if summary.failures:
        print(f"  {len(summary.failures)} takes failed; their chapters and the book were not written. "
              "Run the same command again to retry only those takes.")
    print(f"  {summary.takes_rendered} takes rendered, {summary.takes_reused} reused from the cache, "
          f"{summary.chapters_written} chapter files written; {summary.audio_seconds:.1f} s of audio")
    print(f"  provenance in {summary.database}")
    if summary.review_page:
        print(f"  review   {summary.review_page}")
    for missing in summary.not_written:
        print(f"  NOT WRITTEN {missing}")
    print("  time: " + time_split(total, summary))


def time_split(total: float, summary: RunSummary) -> str:
    """The run's wall time in parts that add up: rendering counts the wall time from the first engine call to
    the last one's end (engine seconds summed over parallel lanes would exceed it)."""
    parts = [("Prefect start-up and orchestration", total - summary.wall_seconds), ("model load", summary.load_seconds),
             ("rendering", summary.render_phase_seconds)]
    parts.append(("planning, assembly and writes", summary.wall_seconds - summary.load_seconds
                  - summary.render_phase_seconds))
    text = " + ".join(f"{name} {max(0.0, seconds):.1f} s" for name, seconds in parts)
    return f"{total:.1f} s total = {text} (engine time summed over lanes {summary.render_seconds:.1f} s)"


def _db_text(value: float | None, width: int = 6) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.1f}"


def _print_loudness(rows: list[dict]) -> None:
    """One line per chapter: the measurements the presets check, and pass or what failed."""
    if not rows:
        return
    first = rows[0]
    unit = {"lufs": "LUFS", "rms": "dBFS RMS", "peak": "dBTP"}[first["mode"]]
    print(f"  loudness ({first['preset']}: {first['target']:g} {unit}, true peak <= {first['ceiling']:g} dBTP):")
    print(f"    {'title':<32} {'LUFS':>6} {'LRA':>6} {'RMS':>6} {'TP':>6} {'peak':>6} {'floor':>6}")
    for r in rows:
        verdict = "pass" if r["passed"] else "FAIL: " + "; ".join(json.loads(r["problems"]))
        print(f"    {(str(r['chapter'] + 1) + ' ' + r['title'])[:32]:<32} {_db_text(r['integrated_lufs'])} "
              f"{_db_text(r['loudness_range_lu'])} {_db_text(r['rms_dbfs'])} {_db_text(r['true_peak_dbtp'])} "
              f"{_db_text(r['sample_peak_dbfs'])} {_db_text(r['noise_floor_dbfs'])}  {verdict}")


def cmd_render(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.out:
        settings.output_dir = Path(args.out)
    # Refuse bad input before Prefect starts: no run row, no file.
    from flows.runners import task_runner

    overrides = overrides_from_assignments(args.set)
    checked = {}
    for manifest in args.manifests:
        checked[manifest] = ingest(manifest, settings.voices_dir)
        script = apply_overrides(checked[manifest], parse_overrides(overrides))
        check_pronunciations(script, args.engine, settings.engine)
        check_script(script, args.qa, settings)
    task_runner(args.runner, args.dask_address)  # a bad runner or address is refused before Prefect starts
    if args.engine:
        engine_class(args.engine)
    if args.watch and len(args.manifests) != 1:
        raise UserInputError("--watch takes one manifest")
    from flows.server_check import require_api

    require_api()  # a PREFECT_API_URL that answers nothing is refused before anything is written
    preflight(settings.output_dir, settings.database)

    from flows import local_server
    from flows.local_server import prefect_api
    from flows.render import render_manifest
    from flows.steps import checked_before_the_run
    from flows.warm import ensure_warm

    for manifest, script in checked.items():
        checked_before_the_run(manifest, settings.voices_dir, script)

    runner = task_runner(args.runner, args.dask_address, args.dask_workers)
    flow = render_manifest.with_options(task_runner=runner) if runner else render_manifest
    options = dict(engine=args.engine, output_dir=str(settings.output_dir), force=args.force, qa=args.qa,
                   review=not args.no_review, overrides=overrides)
    try:
        with prefect_api(temporary=args.no_server) as api_url:
            if local_server.is_reused(api_url):
                ensure_warm(local_server.home())  # for the next command; this one goes on meanwhile
            if args.watch:
                return _watch(args.manifests[0], settings, lambda: flow(manifest=str(args.manifests[0]), **options))
            results = []
            for manifest in args.manifests:  # one process: one Prefect start-up, engines stay warm between manifests
                start = time.perf_counter()
                summary = flow(manifest=str(manifest), **options)
                total = time.perf_counter() - start
                results.append({**summary.__dict__, "manifest": str(manifest), "total_seconds": total})
                if not args.json:
                    _print_summary(manifest, summary, total)
    except BaseException as error:  # noqa: BLE001 - only a stop is handled here
        if (stop := as_stop(error)) is None:
            raise
        print(stopped_line(stop, settings.output_dir), file=sys.stderr)
        exit_now(0 if args.watch and stop.signum == signal.SIGINT else stop.exit_code)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 1 if any(r["status"] != "completed" or r["not_written"] for r in results) else 0


def _watch(manifest: Path, settings, render) -> int:
    from flows.watch import watch_manifest

    watch_manifest(manifest, settings.voices_dir, render, lambda line: print(line, flush=True))
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
    render.add_argument("--qa", action="store_true", default=None,
                        help="check every take by ASR and re-take flagged ones (default: the manifest's qa.enabled)")
    render.add_argument("--runner", default="threads", choices=("threads", "dask"),
                        help="threads in this process (default), or a Dask cluster (prefect-dask)")
    render.add_argument("--dask-address", help="scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
                        "(default with --runner dask: a local cluster)")
    render.add_argument("--dask-workers", type=int, default=2, help="worker processes of the local Dask cluster")
    render.add_argument("--no-review", action="store_true", help="do not write the run's review page")
    render.add_argument("--watch", action="store_true",
                        help="keep running: render again, engines warm, whenever the manifest, a script file it names "
                        "or a voice folder it uses is saved")
    render.add_argument("--no-server", action="store_true",
                        help="a temporary Prefect server for this command only, instead of the reused local one "
                        "(VOICEBATCH_SERVER=temporary)")
    render.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override on top of the manifest, repeatable: decoding.seed=7, "
                        "voices.Ava.temperature=0.5 (a speaker or voice id), loudness.preset=podcast")

    cli_history.add_commands(sub)
    cli_import.add_command(sub)
    cli_voices.add_commands(sub)
    cli_doctor.add_command(sub)
    cli_qa.add_command(sub)
    cli_review.add_command(sub)
    cli_serve.add_command(sub)
    cli_server.add_command(sub)
    cli_sweep.add_command(sub)
    return parser


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed task's traceback; for errors that explain themselves, and for a stop asked for by
    a signal, the message is enough."""
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (VoicebatchError, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not get_settings().debug:
        for name in ("prefect.task_runs", "prefect.flow_runs"):
            logging.getLogger(name).addFilter(_NoTracebackForUserErrors())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("engine", "tasks", "flows"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False  # Prefect's console handler on the root would say it twice
    install_handlers()
    try:
        return args.func(args)
    except BaseException as error:  # noqa: BLE001 - a stop and errors that explain themselves are handled
        if (stop := as_stop(error)) is not None:  # outside a render (which says what it kept): only the signal
            print(f"stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
            return stop.exit_code
        if not isinstance(error, VoicebatchError) or get_settings().debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
