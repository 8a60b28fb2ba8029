"""SIGINT, SIGTERM and SIGHUP during start-up, rendering and assembly of a `--no-server` render, through the
real CLI: the exit code of the signal, no traceback, one line saying what was kept, the run closed as
`interrupted`, no process the render started left running (its temporary server by pid, and anything started
under it), and a re-run that writes the same book folder, file for file, as a clean render.

The nine stops share three output folders, one per signal: a render is stopped during start-up, the same
command then resumes it and is stopped while rendering, then again during assembly, and the same command
finally finishes it. Each stop is thus also a resume of the one before, and one re-run per signal checks
what all three left behind; a fresh folder per stop would cost nine renders more."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, rows, run_cli, running
from test_local_server import server_children

from tasks.core.out_folders import takes_dir

MANIFEST = str(ROOT / "manifests" / "demo-dialogue.yaml")
BOOK = "the-lighthouse-dialogue"
STAGES = ("start-up", "rendering", "assembly")
# Ctrl-C and a closing terminal signal the render's whole process group (its ffmpeg children too); a
# scheduler's or CI job's `kill` signals the render's pid only.
TO_GROUP = {signal.SIGINT: True, signal.SIGTERM: False, signal.SIGHUP: True}
REACH_WITHIN = 240  # seconds for a render to reach a stage on a loaded machine
GONE_WITHIN = 10  # seconds for the processes a stopped render started to be gone
MARK = "VOICEBATCH_STOPPING_TEST_MARK"  # inherited by every process the render starts, whoever reaps it

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the processes a render started")


@pytest.fixture(scope="module")
def clean_render(tmp_path_factory) -> tuple[dict[str, str], int]:
    """A clean render's book folder (file name -> sha256) and how many takes it renders."""
    out = tmp_path_factory.mktemp("clean")
    done = run_cli("render", MANIFEST, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return book_folder(out), len(take_files(out))


def book_folder(out: Path) -> dict[str, str]:
    """Chapter and book WAVs, MP3s and the M4B: an encode cut short and reused would show here."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / BOOK).glob("*"))}


def take_files(out: Path) -> list[Path]:
    return list(takes_dir(out).glob("??/*.wav"))


def written_since(paths: list[Path], since_ns: int) -> bool:
    for path in paths:
        try:
            if path.stat().st_mtime_ns >= since_ns:
                return True
        except FileNotFoundError:  # replaced or removed meanwhile
            continue
    return False


def reached(stage: str, render: subprocess.Popen, out: Path, since_ns: int, takes: int) -> bool:
    """Whether the render (started at `since_ns`) is in `stage`: its temporary server running `prefect server
    start` and no take written; a take written by it and some still to render; every take on disk and a chapter
    written by it (the others mastered, the book assembled and encoded next: ffmpeg may be running)."""
    found = take_files(out)
    if stage == "start-up":
        return bool(server_children(render.pid)) and not found
    if stage == "rendering":
        return written_since(found, since_ns) and len(found) < takes
    return len(found) == takes and written_since(list((out / BOOK).glob("[0-9][0-9]-*.wav")), since_ns)


def marked_processes(mark: str) -> list[int]:
    """Running processes whose environment holds `mark`: all a render started, re-parented or not."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return [pid for pid in found if running(pid)]


def statuses(out: Path) -> list[str]:
    db = out / "provenance.duckdb"
    return [r["status"] for r in rows(str(db), "SELECT status FROM runs")] if db.exists() else []


def start_render(out: Path, mark: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "voicebatch"
    return subprocess.Popen([str(exe), "render", MANIFEST, "--no-server", "--out", str(out)],
                            env=cli_env({MARK: mark}), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def stop_at(stage: str, signum: int, out: Path, takes: int) -> None:
    """`voicebatch render --no-server` into `out`, sent `signum` once it reaches `stage`, and checked."""
    mark = uuid.uuid4().hex
    runs_before = statuses(out)
    since_ns = time.time_ns()
    render = start_render(out, mark)
    sent = False
    try:
        deadline = time.monotonic() + REACH_WITHIN
        while not (at_stage := reached(stage, render, out, since_ns, takes)) and render.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        servers = server_children(render.pid)
        if at_stage and render.poll() is None:
            if TO_GROUP[signum]:
                os.killpg(render.pid, signum)
            else:
                render.send_signal(signum)
            sent = True
        output = render.communicate(timeout=120 if sent else 0.1)[0]
    except subprocess.TimeoutExpired:
        os.killpg(render.pid, signal.SIGKILL)  # never reached its stage, or did not stop: leave nothing behind
        output = render.communicate()[0]
        assert not sent, f"the render did not exit within 120 s of {signal.Signals(signum).name}:\n{output[-3000:]}"
    assert sent, f"the render did not reach {stage} (exit code {render.returncode}):\n{output[-3000:]}"
    context = f"{signal.Signals(signum).name} during {stage}:\n{output[-3000:]}"
    assert render.returncode == 128 + signum, context
    assert "Traceback" not in output, context
    assert not [line for line in output.splitlines() if "ERROR" in line], context  # Prefect's, on what the stop did
    assert [line for line in output.splitlines() if line.startswith("stopped by")] == [
        f"stopped by {signal.Signals(signum).name}: every finished take is kept in {out}; "
        "run the same command again to resume"], context
    assert servers, f"no temporary server found: {context}"
    deadline = time.monotonic() + GONE_WITHIN
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left and not any(running(pid) for pid in servers), f"left running: {left}, {context}"
    runs = statuses(out)
    assert set(runs) <= {"interrupted"}, context
    if stage == "start-up":
        assert not take_files(out), context
    else:
        assert len(runs) == len(runs_before) + 1, context  # this run's row, closed as interrupted


@pytest.mark.parametrize("signum", TO_GROUP, ids=lambda s: signal.Signals(s).name)
def test_a_signal_at_each_stage_stops_cleanly_and_the_rerun_matches(signum, clean_render, tmp_path):
    clean, takes = clean_render
    out = tmp_path / "out"
    for stage in STAGES:
        stop_at(stage, signum, out, takes)

    again = run_cli("render", MANIFEST, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert book_folder(out) == clean
    assert statuses(out)[-1] == "completed"
    assert not list(out.rglob(".*.tmp*")), "temporary files left after the re-run"


SECOND_SIGNAL = """
import os, signal, time
from flows.cli.stopping import install_handlers
from tasks.core.stopping import StopRequested
install_handlers()
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
except StopRequested:
    os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while the first stop unwinds
    time.sleep(30)
    print("the second signal was ignored")
"""


def test_a_second_ctrl_c_while_stopping_exits_at_once():
    done = subprocess.run([sys.executable, "-c", SECOND_SIGNAL], env=cli_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 130, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == ["SIGINT again: stopped at once"], done.stderr
    assert not done.stdout, done.stdout


DEFERRED = """
import os, signal, subprocess, sys
from flows.cli.stopping import install_handlers
from tasks.core.stopping import StopRequested, deferred
install_handlers()
child = None
try:
    with deferred():  # the SIGTERM lands while Popen waits for the child's exec
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 preexec_fn=lambda: os.kill(os.getppid(), signal.SIGTERM))
except StopRequested as stop:
    print(stop.signum, child.pid if child else None, flush=True)
    if child:
        child.kill()
        child.wait()
"""


def test_a_stop_while_a_child_process_starts_leaves_its_process_object():
    """What a temporary server's start needs: a stop inside Popen would lose the child, and the means to stop
    it; deferred, the stop is raised once the child is known."""
    done = subprocess.run([sys.executable, "-c", DEFERRED], env=cli_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    signum, pid = done.stdout.split()
    assert int(signum) == signal.SIGTERM and pid != "None", done.stdout + done.stderr
