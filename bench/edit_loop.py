"""Edit-to-audio latency for one changed line of the demo dialogue: (a) `render --watch`, from the save to its
chapter WAV rewritten (and to the cycle's printed line, the whole cycle done), (b) a one-shot `voicebatch
render` against the reused local server (started in the warm process beside it, flows/warm.py, once that is
ready), (c) the same with a temporary server (`--no-server`: in a process of its own); and the unchanged
re-run of a 200-line manifest in (b) and (c). Whole processes through the real CLI; each figure is the
median of `--repeats` tries.

    .venv/bin/python bench/edit_loop.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, prepare_environment, save, write_manifest  # noqa: E402

LINE = "The fog came in faster than I have ever seen it."
VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")


def cli(*args: str) -> float:
    """Seconds the whole `voicebatch` process took; it must succeed."""
    start = time.perf_counter()
    done = subprocess.run([VOICEBATCH, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"voicebatch {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


class Edits:
    """Saves of the dialogue manifest, each with a line the cache has never seen."""

    def __init__(self, manifest: Path) -> None:
        self.manifest, self.text, self.count = manifest, manifest.read_text(), 0

    def save(self) -> None:
        self.count += 1
        self.manifest.write_text(self.text.replace(LINE, f"The fog came in faster than ever, take {self.count}."))


def one_shot(edits: Edits, out: Path, repeats: int, *extra: str) -> float:
    cli("render", str(edits.manifest), "--out", str(out), *extra)  # engines' files and the database warm
    times = []
    for _ in range(repeats):
        edits.save()
        times.append(cli("render", str(edits.manifest), "--out", str(out), *extra))
    return statistics.median(times)


def chapter_files(out: Path) -> dict[Path, tuple[int, int]]:
    """Each chapter WAV under `out` with its inode and change time: a rewrite (a new file renamed into
    place) changes both."""
    found = {}
    for path in out.glob("*/[0-9]*.wav"):
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        found[path] = (status.st_ino, status.st_mtime_ns)
    return found


def watched(edits: Edits, out: Path, repeats: int) -> tuple[float, float]:
    """Median seconds from a save to its chapter WAV rewritten, and to the cycle's printed line (after the
    chapter's MP3 and the book's M4B and MP3, provenance and the review page)."""
    process = subprocess.Popen([VOICEBATCH, "render", str(edits.manifest), "--watch", "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in process.stdout),
                     daemon=True).start()

    def cycles() -> list[float]:
        return [t for t, line in lines if "takes rendered" in line]

    def wait(count: int) -> None:
        while len(cycles()) < count:
            if process.poll() is not None:
                raise SystemExit("".join(line for _, line in lines))
            time.sleep(0.01)

    try:
        wait(1)
        to_chapter, to_line = [], []
        for n in range(repeats):
            time.sleep(0.5)  # past the debounce of the previous save
            before = chapter_files(out)
            saved = time.perf_counter()
            edits.save()
            while chapter_files(out) == before:
                if process.poll() is not None:
                    raise SystemExit("".join(line for _, line in lines))
                time.sleep(0.005)
            to_chapter.append(time.perf_counter() - saved)
            wait(n + 2)
            to_line.append(cycles()[n + 1] - saved)
        return statistics.median(to_chapter), statistics.median(to_line)
    finally:
        process.terminate()
        process.wait(timeout=60)


def warm_ready(timeout: float = 180) -> float:
    """Seconds until the warm process that `server start` started is ready (b's commands start in it)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        status = json.loads(subprocess.run([VOICEBATCH, "server", "status", "--json"], capture_output=True,
                                           text=True, cwd=ROOT).stdout)
        if status["warm_ready"]:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise SystemExit(f"the warm process was not ready after {timeout:g} s: {status}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scratch = prepare_environment()
    os.environ["VOICEBATCH_SERVER_PORT"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for name in ("demo-dialogue.yaml", "demo-dialogue-scene2.txt"):
        shutil.copy(ROOT / "manifests" / name, scratch / name)
    edits = Edits(scratch / "demo-dialogue.yaml")
    long = write_manifest(scratch, 200, name="edit-loop-200")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed bench still stops its server (finally)
    results = {"targets": "a < 1.5 s, b < 3 s, b unchanged 200 lines < 2.5 s"}

    def measured(key: str, seconds: float) -> None:
        results[key] = round(seconds, 2)
        print(f"{key:38s} {results[key]}", flush=True)

    measured("server_start_s", cli("server", "start"))
    try:
        measured("warm_process_ready_s", warm_ready())
        to_chapter, to_line = watched(edits, scratch / "out-a", args.repeats)
        measured("a_watch_save_to_chapter_s", to_chapter)
        measured("a_watch_save_to_cycle_line_s", to_line)
        measured("b_reused_server_one_line_s", one_shot(edits, scratch / "out-b", args.repeats))
        cli("render", str(long), "--out", str(scratch / "out-200"))
        measured("b_reused_server_unchanged_200_s", statistics.median(
            cli("render", str(long), "--out", str(scratch / "out-200")) for _ in range(args.repeats)))
        measured("c_temporary_server_one_line_s", one_shot(edits, scratch / "out-c", args.repeats, "--no-server"))
        measured("c_temporary_server_unchanged_200_s", statistics.median(
            cli("render", str(long), "--out", str(scratch / "out-200"), "--no-server") for _ in range(args.repeats)))
    finally:
        cli("server", "stop")
        save("edit_loop", results)


if __name__ == "__main__":
    main()
