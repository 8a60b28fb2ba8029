"""The reused local Prefect server through the real CLI: reused (same pid), a stale record replaced, two
first commands starting one server, `server stop` leaving nothing, and a temporary server that dies with a
SIGKILLed render. Each test's server lives in its own Prefect home and is stopped by the fixture."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, rows, run_cli, running, stop_local_server


@pytest.fixture
def home(tmp_path):
    folder = tmp_path / "prefect-home"
    folder.mkdir()
    yield folder
    stop_local_server(folder)


def state(home: Path) -> dict:
    return json.loads((home / "voicebatch-server.json").read_text())


def test_second_render_reuses_the_server(home, tmp_path):
    env = {"PREFECT_HOME": str(home)}
    assert run_cli("server", "status", env=env).returncode == 3
    first = run_cli("render", str(ROOT / "manifests" / "demo-dialogue.yaml"), "--out", str(tmp_path / "out"), env=env)
    assert first.returncode == 0, first.stderr
    pid = state(home)["pid"]
    second = run_cli("render", str(ROOT / "manifests" / "demo-dialogue.yaml"), "--out", str(tmp_path / "out"), env=env)
    assert second.returncode == 0, second.stderr
    assert state(home)["pid"] == pid and running(pid)
    status = json.loads(run_cli("server", "status", "--json", env=env).stdout)
    assert status["running"] and status["pid"] == pid and status["ui_url"].startswith("http://127.0.0.1:")
    runs = rows(str(tmp_path / "out" / "provenance.duckdb"), "SELECT status FROM runs")
    assert [r["status"] for r in runs] == ["completed", "completed"]


def test_stale_state_is_replaced_and_stop_leaves_nothing(home):
    env = {"PREFECT_HOME": str(home)}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "voicebatch-server.json").write_text(json.dumps({"port": 9, "pid": dead.pid, "prefect_version": "0.0"}))
    started = run_cli("server", "start", env=env)
    assert started.returncode == 0 and started.stdout.startswith("started"), started.stdout + started.stderr
    pid = state(home)["pid"]
    assert pid != dead.pid and running(pid)
    assert run_cli("server", "status", env=env).returncode == 0
    stopped = run_cli("server", "stop", env=env)
    assert stopped.returncode == 0 and str(pid) in stopped.stdout
    assert not running(pid) and not (home / "voicebatch-server.json").exists()


def test_two_first_commands_start_one_server(home):
    env = cli_env({"PREFECT_HOME": str(home)})
    exe = Path(sys.executable).parent / "voicebatch"
    both = [subprocess.Popen([str(exe), "server", "start"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in both]
    assert sorted(o.split(":")[0] for o in outputs) == ["already running", "started"], outputs
    pid = state(home)["pid"]
    assert all(f"(pid {pid})" in o for o in outputs)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def server_children(pid: int) -> list[int]:
    """The children of `pid` running `prefect server start` (a child not yet past exec shows its parent's)."""
    found = []
    for child in children(pid):
        try:
            if b"server\0start" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_temporary_server_dies_with_a_killed_render(home, tmp_path):
    exe = Path(sys.executable).parent / "voicebatch"
    render = subprocess.Popen([str(exe), "render", str(ROOT / "manifests" / "demo-dialogue.yaml"), "--no-server",
                               "--out", str(tmp_path / "out")], env=cli_env({"PREFECT_HOME": str(home)}), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (server := children(render.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server, "the render started no temporary server"
    os.kill(render.pid, signal.SIGKILL)
    render.wait()
    deadline = time.monotonic() + 20
    while running(server[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(server[0]), f"the temporary server (pid {server[0]}) outlived its render"
    assert not (home / "voicebatch-server.json").exists()


STUCK = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "child = subprocess.Popen([sys.executable, '-c', {child!r}]); print(child.pid, flush=True); time.sleep(60)")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_server_that_does_not_stop_is_killed_with_its_child():
    """What a `prefect server start` stuck past its grace leaves: its uvicorn child must go with it."""
    from flows.local_server import stop_process

    stuck = STUCK.format(child="import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")
    server = subprocess.Popen([sys.executable, "-c", stuck], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(server.stdout.readline())
    stop_process(server.pid, grace=0.5)
    server.wait(timeout=10)
    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(child), f"the server's child (pid {child}) outlived it"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_stop_while_the_reused_server_starts_stops_it(home):
    """Ctrl-C while `server start` waits for the server it launched: nothing would ever name that server."""
    exe = Path(sys.executable).parent / "voicebatch"
    start = subprocess.Popen([str(exe), "server", "start"], env=cli_env({"PREFECT_HOME": str(home)}), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (server := server_children(start.pid)) and start.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    answered = (home / "voicebatch-server.json").exists()
    start.send_signal(signal.SIGINT)
    output = start.communicate(timeout=120)[0]
    assert server and not answered, f"the server was not caught starting: {output}"
    assert start.returncode == 130 and "Traceback" not in output, output
    assert not running(server[0]), f"the server (pid {server[0]}) outlived the stopped command"
    assert not (home / "voicebatch-server.json").exists()
