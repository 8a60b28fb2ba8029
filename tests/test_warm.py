"""The warm process beside the reused server (flows/warm.py), through the real console script: a render handed
to it runs with the command's umask and exit code, a stop signal reaches it, a killed command stops it, a
command of another import-time environment runs on its own and replaces it, and `server stop` ends it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, run_cli, running, stop_local_server

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the warm process is on by default on Linux only; "
                                "the tests read /proc")
EXE = str(Path(sys.executable).parent / "voicebatch")
LINE = "The fog came in faster than I have ever seen it."


def status(env: dict) -> dict:
    return json.loads(run_cli("server", "status", "--json", env=env).stdout)


def wait_ready(env: dict, not_pid: int | None = None, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = status(env)
        if now["warm_ready"] and now["warm_pid"] != not_pid:
            return now["warm_pid"]
        time.sleep(0.5)
    raise AssertionError(f"no warm process became ready: {now}")


def descendants(pid: int) -> list[int]:
    found, parents = [], {pid}
    for _ in range(3):
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in parents:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        parents = set(found)
    return sorted(set(found))


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    home = tmp_path_factory.mktemp("warm-home")
    env = {"PREFECT_HOME": str(home), "VOICEBATCH_WARM": "1"}
    started = run_cli("server", "start", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    pid = wait_ready(env)
    yield env, home, pid
    now = status(env)
    stopped = run_cli("server", "stop", env=env)
    assert stopped.returncode == 0 and "stopped the warm process" in stopped.stdout, stopped.stdout
    assert now["warm_pid"] and not running(now["warm_pid"]) and not running(now["pid"])
    assert not status(env)["warm_pid"]
    stop_local_server(home)


def handed_off(home: Path) -> int:
    log = home / "voicebatch-warm.log"
    return log.read_text().count("handed off:") if log.exists() else 0


def dialogue(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("demo-dialogue.yaml", "demo-dialogue-scene2.txt"):
        shutil.copy(ROOT / "manifests" / name, folder / name)
    return folder / "demo-dialogue.yaml"


def test_an_edit_is_rendered_in_the_warm_process_with_the_commands_umask(warm, tmp_path):
    env, home, _ = warm
    manifest, out = dialogue(tmp_path / "script"), tmp_path / "out"
    first = run_cli("render", str(manifest), "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    manifest.write_text(manifest.read_text().replace(LINE, "The fog came in faster than ever."))
    before = handed_off(home)
    edited = subprocess.run([EXE, "render", str(manifest), "--out", str(out), "--json"], env=cli_env(env), cwd=ROOT,
                            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o027), timeout=300)
    assert edited.returncode == 0, edited.stderr
    assert handed_off(home) == before + 1
    summary = json.loads(edited.stdout)[0]
    assert summary["takes_rendered"] == 1 and summary["status"] == "completed"
    chapter = Path(summary["chapters"][0])
    assert chapter.stat().st_mode & 0o777 == 0o640  # 0644 under the warm process's own umask (022)


def test_a_refused_manifest_gives_its_error_and_exit_code_through_the_warm_process(warm, tmp_path):
    env, home, _ = warm
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nchapters: [\n")
    before = handed_off(home)
    refused = run_cli("render", str(bad), "--out", str(tmp_path / "out"), env=env)
    assert handed_off(home) == before + 1
    assert refused.returncode == 2 and f"{bad}: manifest refused" in refused.stderr, refused.stderr
    assert not (tmp_path / "out").exists()


def render_in_background(env: dict, out: Path) -> subprocess.Popen:
    return subprocess.Popen([EXE, "render", str(ROOT / "manifests" / "demo-audiobook.yaml"), "--force", "--out",
                             str(out)], env=cli_env(env), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_take(out: Path, process: subprocess.Popen) -> None:
    from tasks.core.out_folders import takes_dir

    deadline = time.monotonic() + 120
    while not list(takes_dir(out).rglob("*.wav")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the render ended before a take was written"


def wait_without_descendants(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not descendants(pid), f"the warm process still runs commands: {descendants(pid)}"


def test_ctrl_c_reaches_the_handed_off_render(warm, tmp_path):
    env, home, pid = warm
    before = handed_off(home)
    render = render_in_background(env, tmp_path / "out")
    wait_for_take(tmp_path / "out", render)
    assert handed_off(home) == before + 1 and descendants(pid)
    render.send_signal(signal.SIGINT)
    stderr = render.communicate(timeout=120)[1]
    assert render.returncode == 130 and "stopped by SIGINT" in stderr, stderr
    wait_without_descendants(pid)


def test_a_killed_command_stops_its_render(warm, tmp_path):
    env, home, pid = warm
    render = render_in_background(env, tmp_path / "out")
    wait_for_take(tmp_path / "out", render)
    render.kill()
    render.wait()
    wait_without_descendants(pid)
    from conftest import rows

    runs = rows(str(tmp_path / "out" / "provenance.duckdb"), "SELECT status FROM runs")
    assert [r["status"] for r in runs] == ["interrupted"]


def test_another_import_time_setting_runs_on_its_own_and_replaces_the_warm_process(warm, tmp_path):
    """Last in this file: it leaves a warm process of that other setting."""
    env, home, pid = warm
    other = {**env, "PREFECT_LOGGING_LEVEL": "ERROR"}
    before = handed_off(home)
    done = run_cli("render", str(dialogue(tmp_path / "script")), "--out", str(tmp_path / "out"), env=other)
    assert done.returncode == 0, done.stderr
    assert handed_off(home) == before  # ran in its own process
    assert wait_ready(other, not_pid=pid) != pid and not running(pid)
