"""The Prefect server a command talks to: PREFECT_API_URL's when set; otherwise a local `prefect server start`
that outlives the command and is reused by the next one (found through a state file in PREFECT_HOME), or,
with `--no-server` (VOICEBATCH_SERVER=temporary), a temporary one that ends with the command.

The reused server runs in its own session (a Ctrl-C in the terminal does not reach it), listens on loopback,
and keeps Prefect's own database in PREFECT_HOME, so its UI lists every run. A file lock makes commands that
start at once start one server. A temporary server gets a parent-death signal on Linux (prctl), so it ends
even when its command is SIGKILLed; other systems have no such signal, and there it is stopped only by the
command's own exit (any exit but SIGKILL).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import httpx
import prefect
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

from flows.server_check import require_api
from tasks.core.errors import VoicebatchError
from tasks.core.files import exclusive_lock, write_text_atomic
from tasks.core.processes import is_alive
from tasks.core.settings import get_settings
from tasks.core.stopping import deferred

STATE_NAME = "voicebatch-server.json"
LOCK_NAME = "voicebatch-server.lock"
LOG_NAME = "voicebatch-server.log"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ServerStartError(VoicebatchError):
    """The local Prefect server did not start."""


@dataclass(frozen=True)
class ServerState:
    """How to reach the reused server, as its state file records it."""

    port: int
    pid: int
    prefect_version: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def home() -> Path:
    return Path(PREFECT_HOME.value())


def read_state(folder: Path) -> ServerState | None:
    """The recorded server, or None when there is no state file or it cannot be read."""
    try:
        return ServerState(**json.loads((folder / STATE_NAME).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def answers(state: ServerState, timeout: float = 2.0) -> bool:
    """Whether the recorded server is alive, answers on its port, and runs this Prefect version."""
    if state.prefect_version != prefect.__version__ or not is_alive(state.pid):
        return False
    try:
        version = httpx.get(state.api_url + "/admin/version", timeout=timeout)
        return version.status_code == 200 and version.json() == prefect.__version__
    except (httpx.HTTPError, ValueError):
        return False


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there (0: any), else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ServerStartError("no free port on 127.0.0.1 for the Prefect server")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent ends (SIGKILL included)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(folder: Path, port: int, temporary: bool) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port, its output in PREFECT_HOME; the UI follows
    PREFECT_SERVER_API_PORT, not --port, so both are set."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(folder), PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    prefect_cli = Path(sys.executable).parent / "prefect"
    with open(folder / LOG_NAME, "ab") as log:
        return subprocess.Popen([str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                preexec_fn=_die_with_parent if temporary and sys.platform == "linux" else None)


def wait_until_healthy(process: subprocess.Popen, state: ServerState, folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"the Prefect server exited with code {process.returncode} while starting; its "
                                   f"log is {folder / LOG_NAME}")
        if answers(state):
            return
        time.sleep(0.2)
    stop_process(process.pid)
    raise ServerStartError(f"the Prefect server did not answer within {timeout:g} s (VOICEBATCH_SERVER_START_TIMEOUT); "
                           f"its log is {folder / LOG_NAME}")


def stop_process(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; returns once the process is gone. The SIGKILL goes to the
    server's process group (launched in a session of its own): `prefect server start` forwards a SIGTERM to its
    uvicorn child, but a SIGKILLed one would leave that child running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:  # our own child: reap it
                return
        except ChildProcessError:
            if not is_alive(pid):
                return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # not a group leader (or gone): the process alone
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_lock(folder: Path):
    return exclusive_lock(folder / LOCK_NAME)


def ensure_server(folder: Path | None = None) -> tuple[ServerState, bool]:
    """The reused server, started first when none answers (a stale one is stopped and its state replaced);
    whether this call started it."""
    folder = folder or home()
    with _start_lock(folder):
        state = read_state(folder)
        if state and answers(state):
            return state, False
        if state and is_alive(state.pid) and state.prefect_version != prefect.__version__:
            stop_process(state.pid)  # ours, of another Prefect version: it would serve another database schema
        state = _started(folder, free_port(get_settings().server_port), temporary=False)
        write_text_atomic(folder / STATE_NAME, json.dumps(asdict(state)))
        return state, True


def _started(folder: Path, port: int, temporary: bool) -> ServerState:
    """A server launched and answering. If the start fails or is stopped (a signal), the process is stopped
    before the error goes on: nothing else knows its pid yet, so nothing else would stop it."""
    process = None
    try:
        with deferred():  # a stop while it starts is raised once `process` is known, so it is stopped below
            process = launch(folder, port, temporary=temporary)
        state = ServerState(port, process.pid, prefect.__version__)
        wait_until_healthy(process, state, folder, get_settings().server_start_timeout)
        return state
    except BaseException:
        if process is not None:
            stop_process(process.pid)
        raise


def is_reused(api_url: str, folder: Path | None = None) -> bool:
    """Whether `api_url` is the reused local server's."""
    state = read_state(folder or home())
    return state is not None and state.api_url == api_url


def stop_server(folder: Path | None = None) -> ServerState | None:
    """Stop the reused server and forget it; the state it had, or None when none was recorded."""
    folder = folder or home()
    with _start_lock(folder):
        state = read_state(folder)
        if state and is_alive(state.pid):
            stop_process(state.pid)
        (folder / STATE_NAME).unlink(missing_ok=True)
        return state


@contextmanager
def temporary_server() -> Iterator[ServerState]:
    """A server for this command only, stopped when the block ends (and, on Linux, when this process dies)."""
    state = _started(home(), free_port(0), temporary=True)
    try:
        yield state
    finally:
        send_pending_records()
        stop_process(state.pid)


def send_pending_records(timeout: float = 5.0) -> None:
    """Send the logs and events Prefect still holds to the server before it stops: sent at exit instead, they
    would fail with an "Error logging to API" report, and the run's history would lack them."""
    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextmanager
def prefect_api(temporary: bool = False) -> Iterator[str]:
    """The API URL this command's flows use: PREFECT_API_URL's (checked), else a temporary server (with
    `temporary` or VOICEBATCH_SERVER=temporary), else the reused local one."""
    url = PREFECT_API_URL.value()
    if url:
        require_api()
        yield url
        return
    if temporary or get_settings().server == "temporary":
        with temporary_server() as state, temporary_settings({PREFECT_API_URL: state.api_url}):
            yield state.api_url
        return
    state, _ = ensure_server()
    with temporary_settings({PREFECT_API_URL: state.api_url}):
        yield state.api_url
