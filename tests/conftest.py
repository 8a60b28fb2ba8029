"""Shared fixtures: a private Prefect home per test session, the repo's demo voices, real renders."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_PREFECT_HOME = tempfile.mkdtemp(prefix="voicebatch-prefect-")
# Before Prefect is imported anywhere in the test process: its own database, offline, no analytics.
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# The temporary server says goodbye from atexit, after pytest has closed the captured streams.
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.pop("PREFECT_API_URL", None)
os.environ["VOICEBATCH_VOICES_DIR"] = str(ROOT / "voices")


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


@pytest.fixture(scope="session")
def tiny_higgs(tmp_path_factory) -> Path:
    """A tiny random Higgs checkpoint built once per session; VOICEBATCH_HIGGS_MODEL points at it meanwhile."""
    from engine.settings import get_settings
    from engine.tiny_higgs import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-higgs"))
    before = os.environ.get("VOICEBATCH_HIGGS_MODEL")
    os.environ["VOICEBATCH_HIGGS_MODEL"] = str(path)
    get_settings.cache_clear()
    yield path
    if before is None:
        os.environ.pop("VOICEBATCH_HIGGS_MODEL", None)
    else:
        os.environ["VOICEBATCH_HIGGS_MODEL"] = before
    get_settings.cache_clear()


def run_cli(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real `voicebatch` console script in a child process."""
    exe = Path(sys.executable).parent / "voicebatch"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
