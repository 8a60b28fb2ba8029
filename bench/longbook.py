"""Long books through the real pipeline (ffmpeg on): a synthetic book of 40 distinct sentences repeated as
separate lines (so rendering is cheap and delivery is what is measured) at 4 and 40 hours, first rendered by
`voicebatch render` in its own process, then one line edited and rendered again, three times, each by the
console script as a user's next command: it is handed to the warm process that the first render started
beside the reused server (flows/warm.py). The median edit is reported: this VM's timings move by a few
seconds. Each timed run starts with the files of the runs before it on disk (os.sync). Prints wall time, peak RSS (the render process,
or its largest child), seconds per book hour, the edit re-runs, the disk the outputs take and
how many encodes were redone to bring a true peak under the ceiling.

    .venv/bin/python bench/longbook.py [--hours 4 40]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, SENTENCES, prepare_environment, save  # noqa: E402

ENDINGS = ["", " Then it was quiet.", " Nobody answered.", " The wind rose.", " It was late."]
TEXTS = [s + e for s in SENTENCES for e in ENDINGS]  # 40 distinct sentences
LINES_PER_HOUR = 760  # the two voices speak these at ~4.7 s a line with the pauses between them
CLI = "import sys; from flows.cli import main; sys.exit(main())"  # this tree's CLI, not an installed one
LINES_PER_CHAPTER = 250  # ~20 minutes, a common chapter length (mastering holds a chapter: ~70 MB per minute)


EDITS = 3  # one-line edits after the first render (each a new text for the same line): their median is reported


def write_book(path: Path, hours: float, edit: int = 0) -> Path:
    """The synthetic book; with `edit` n > 0, its middle line rewritten for the n-th time."""
    lines = [{"speaker": ("Ava", "Joe")[i % 2], "text": TEXTS[i % len(TEXTS)]} for i in range(int(hours * LINES_PER_HOUR))]
    if edit:
        lines[len(lines) // 2]["text"] = f"This one line was edited after the first render, {edit} times."
    chapters = [{"title": f"Chapter {c + 1}", "lines": lines[i:i + LINES_PER_CHAPTER]}
                for c, i in enumerate(range(0, len(lines), LINES_PER_CHAPTER))]
    data = {"title": f"Long Book {hours:g}h", "author": "Bench", "defaults": {"seed": 1},
            "voices": {"Ava": "ava", "Joe": "joe"}, "chapters": chapters}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def render(manifest: Path, out: Path, warm: bool = False) -> dict:
    """One `voicebatch render --json` process: its summary, wall time and peak RSS. With `warm`, the console
    script, which hands the render to the warm process when it is ready (the RSS is then the handing-off
    process's alone, and not reported); else this tree's CLI in the process itself. The files written before
    are flushed to disk first: a run that starts while the system still writes back the gigabytes of the run
    before it (a first render of 12 hours writes 6.5 GB) waits on the disk, by seconds that vary from run to
    run, which are not this run's own cost."""
    os.sync()
    start = time.perf_counter()
    log = manifest.with_suffix(".log")
    command = [str(Path(sys.executable).parent / "voicebatch")] if warm else [sys.executable, "-c", CLI]
    with log.open("w") as errors:
        proc = subprocess.Popen([*command, "render", str(manifest), "--out", str(out), "--json"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    reencodes = sum("the encoder raised the true peak" in line for line in log.read_text().splitlines())
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"render of {manifest} failed (exit {os.waitstatus_to_exitcode(status)}): {stdout[-2000:]}")
    summary = json.loads(stdout[stdout.index("[\n"):])[0]
    return {"wall": wall, "peak_rss_mb": None if warm else usage.ru_maxrss / 1024, "summary": summary,
            "reencodes": reencodes}


def handed_off() -> int:
    log = Path(os.environ["PREFECT_HOME"]) / "voicebatch-warm.log"
    return log.read_text().count("handed off:") if log.exists() else 0


def warm_ready(timeout: float = 180) -> float:
    """Seconds waited, after the first render, for the warm process it started (the edits are handed to it,
    as a user's next command would be)."""
    from flows.handoff import read_warm_state

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if (read_warm_state(Path(os.environ["PREFECT_HOME"])) or {}).get("socket"):
            return time.perf_counter() - start
        time.sleep(0.2)
    raise SystemExit(f"no warm process was ready {timeout:g} s after the first render")


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2


def bench_book(scratch: Path, hours: float) -> dict:
    out = scratch / f"out-{hours:g}h"
    first = render(write_book(scratch / f"book-{hours:g}h.yaml", hours), out)
    audio_h = first["summary"]["audio_seconds"] / 3600
    warm_wait = warm_ready()
    handed_before = handed_off()
    edits = [render(write_book(scratch / f"book-{hours:g}h.yaml", hours, edit=n + 1), out, warm=True)
             for n in range(EDITS)]
    edit = sorted(edits, key=lambda e: e["wall"])[len(edits) // 2]
    s = first["summary"]
    result = {"audio_hours": round(audio_h, 2), "lines": int(hours * LINES_PER_HOUR), "chapters": len(s["chapters"]),
              "first_wall_s": round(first["wall"], 1), "peak_rss_mb": round(first["peak_rss_mb"]),
              "s_per_book_hour": round(first["wall"] / audio_h, 1), "edit_wall_s": round(edit["wall"], 1),
              "edit_walls_s": [round(e["wall"], 1) for e in edits],
              "edit_over_first": round(edit["wall"] / first["wall"], 3),
              "edits_handed_off": handed_off() - handed_before, "warm_wait_s": round(warm_wait, 1),
              "edit_encodes": [e["summary"]["chapters_encoded"] for e in edits],
              "peak_reencodes": first["reencodes"],
              "m4b": any(p.endswith(".m4b") for p in s["encoded"]),
              "chapter_mp3s": sum(p.endswith(".mp3") for p in s["encoded"]) - 1,
              "book_wav": s["book"] is not None, "disk_mb": round(disk_mb(out)), "warnings": s["warnings"]}
    shutil.rmtree(out, ignore_errors=True)
    print(f"{hours:g} h book: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, nargs="+", default=[4, 40])
    args = parser.parse_args()
    scratch = prepare_environment()
    results = {f"{h:g}h": bench_book(scratch, h) for h in args.hours}
    flat = {f"{name}_{k}": v for name, r in results.items() for k, v in r.items() if k != "warnings"}
    if "4h" in results and "40h" in results:
        small, large = results["4h"], results["40h"]
        flat["rss_40h_over_4h"] = round(large["peak_rss_mb"] / small["peak_rss_mb"], 2)
        flat["time_40h_over_4h"] = round(large["first_wall_s"] / small["first_wall_s"], 2)
    save("longbook", flat)


if __name__ == "__main__":
    main()
