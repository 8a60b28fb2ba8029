"""How long `voicebatch render --no-server` takes to stop once rendering has started: for each demo manifest
and each of SIGINT, SIGTERM and SIGHUP (sent to the render's pid, as `kill` does), the seconds from the signal
to the process's exit, and to the run's row closed as `interrupted`. The engine call in flight at the signal
cannot be seen from outside; what bounds it is printed beside: the longest engine time of one take in a clean
render of the same manifest (hibari renders a batch one take at a time and checks for a stop between takes).

    .venv/bin/python bench/stop_latency.py [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, prepare_environment, save  # noqa: E402

VOICEBATCH = str(Path(sys.executable).parent / "voicebatch")
MANIFESTS = ("demo-audiobook", "demo-dialogue")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
REACH_WITHIN = 300  # seconds for a render to write its first take


def rows(db: Path, sql: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def clean_render(manifest: Path, out: Path) -> list[float]:
    """Render once (also warming the temporary server's database and the engine's files); each take's engine
    seconds."""
    done = subprocess.run([VOICEBATCH, "render", str(manifest), "--no-server", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the clean render of {manifest.name} failed:\n{done.stdout}\n{done.stderr}")
    sql = "SELECT render_seconds FROM renders WHERE NOT cache_hit AND status = 'rendered'"
    return [seconds for (seconds,) in rows(out / "provenance.duckdb", sql)]


def stopped(manifest: Path, out: Path, signum: int, log: Path) -> dict[str, float]:
    """A render sent `signum` once its first take file exists: seconds to its exit and to its run's row
    closed, and its exit code."""
    from tasks.core.out_folders import takes_dir

    with open(log, "w") as output:
        render = subprocess.Popen([VOICEBATCH, "render", str(manifest), "--no-server", "--out", str(out)], cwd=ROOT,
                                  stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + REACH_WITHIN
            while not any(takes_dir(out).glob("??/*.wav")) and render.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if render.poll() is not None or time.monotonic() >= deadline:
                raise SystemExit(f"{manifest.name}: no take written before the render ended; its output is in {log}")
            sent, sent_wall = time.perf_counter(), time.time()
            render.send_signal(signum)
            code = render.wait()
            exited = time.perf_counter() - sent
        finally:
            if render.poll() is None:
                render.kill()
                render.wait()
    closed = rows(out / "provenance.duckdb", "SELECT max(ended_at) FROM runs WHERE status = 'interrupted'")[0][0]
    return {"exit_code": code, "signal_to_exit_s": round(exited, 2),
            "signal_to_run_closed_s": round(closed.timestamp() - sent_wall, 2) if closed else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1, help="stops per manifest and signal (the median is kept)")
    args = parser.parse_args()
    scratch = prepare_environment()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    results: dict[str, object] = {
        "target": "signal to exit < 2 s on the demo manifests, the engine call in flight aside"}
    for name in MANIFESTS:
        manifest = ROOT / "manifests" / f"{name}.yaml"
        calls = clean_render(manifest, scratch / f"{name}-clean")
        results[f"{name}_longest_take_engine_s"] = round(max(calls), 2)
        print(f"{name}: one take's engine time: median {statistics.median(calls):.2f} s, longest {max(calls):.2f} s",
              flush=True)
        for signum in SIGNALS:
            tries = [stopped(manifest, scratch / f"{name}-{signum.name}-{n}", signum,
                             scratch / f"{name}-{signum.name}-{n}.log") for n in range(args.repeats)]
            expected = 128 + signum
            if any(t["exit_code"] != expected for t in tries):
                raise SystemExit(f"{name}, {signum.name}: exit codes {[t['exit_code'] for t in tries]}, not {expected}")
            for key in ("signal_to_exit_s", "signal_to_run_closed_s"):
                values = [t[key] for t in tries if t[key] is not None]
                results[f"{name}_{signum.name}_{key}"] = round(statistics.median(values), 2) if values else None
            print(f"  {signum.name}: signal to exit {results[f'{name}_{signum.name}_signal_to_exit_s']} s, "
                  f"to the run closed as interrupted {results[f'{name}_{signum.name}_signal_to_run_closed_s']} s",
                  flush=True)
    save("stop_latency", results)


if __name__ == "__main__":
    main()
