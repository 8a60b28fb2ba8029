"""SIGINT, SIGTERM and SIGHUP during start-up, rendering and assembly of a `--no-server` render, through the
real CLI: the exit code of the signal, no traceback, the run closed as `interrupted`, the temporary server
gone (by its pid), and a re-run that writes the same chapter bytes as a clean render."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, rows, run_cli, running
from test_local_server import children

from tasks.core.out_folders import takes_dir

MANIFEST = str(ROOT / "manifests" / "demo-dialogue.yaml")


@pytest.fixture(scope="module")
def clean_render(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    done = run_cli("render", MANIFEST, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def chapters(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("the-lighthouse-dialogue/*.wav"))}


def reached(stage: str, render: subprocess.Popen, out: Path) -> bool:
    if stage == "start-up":
        return bool(children(render.pid))
    if stage == "rendering":
        return any(takes_dir(out).glob("??/*.wav"))
    return any((takes_dir(out) / "normalised").rglob("*.wav"))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the temporary server's pid")
@pytest.mark.parametrize("signum, stage", [(signal.SIGTERM, "start-up"), (signal.SIGINT, "rendering"),
                                           (signal.SIGHUP, "assembly")])
def test_signal_stops_cleanly_and_the_rerun_matches(signum, stage, clean_render, tmp_path):
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "voicebatch"
    render = subprocess.Popen([str(exe), "render", MANIFEST, "--no-server", "--out", str(out)], env=cli_env(),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not reached(stage, render, out) and render.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    servers = children(render.pid)
    assert render.poll() is None, f"the render ended before {stage}: {render.stdout.read()}"
    render.send_signal(signum)
    output = render.communicate(timeout=120)[0]
    assert render.returncode == 128 + signum, output
    assert "Traceback" not in output
    assert f"stopped by {signal.Signals(signum).name}" in output
    assert servers and not any(running(pid) for pid in servers), f"temporary server left running: {servers}"
    if (out / "provenance.duckdb").exists():
        assert {r["status"] for r in rows(str(out / "provenance.duckdb"), "SELECT status FROM runs")} <= {"interrupted"}
    assert not list(out.rglob("*.tmp*")) if out.exists() else True

    again = run_cli("render", MANIFEST, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert chapters(out) == chapters(clean_render)
