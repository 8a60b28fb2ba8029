"""The warm process beside the reused local Prefect server, started, stopped and shown from here (it runs
flows/warm_server.py). It imports the CLI, Prefect and what a render needs, loads the small CPU engines
(those with `cpu_lanes`) once, and then forks one process per `voicebatch render` handed to it
(flows/launch.py). The fork starts with all of that in place, in the command's own working folder,
environment, umask and terminal (its stdin, stdout and stderr are the command's, passed over a Unix socket),
and exits with the command's exit code, which goes back to the command.

Each handed-off command has a supervisor (a second fork) that waits for it and reports its exit status
however it ends (os._exit and signals included), and stops it with SIGTERM if the command that handed it off
is killed. The command's own process forwards SIGINT, SIGTERM and SIGHUP to it.

The first command that uses the reused server starts the warm process in the background; `voicebatch server
stop` stops it with the server, and it exits by itself when the server's record goes or another warm process
replaces it. A command whose code, Python, packages or import-time settings differ from the warm process's
runs on its own and replaces the warm process for the next one. VOICEBATCH_WARM=0 turns it off.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows import ENVIRONMENT_AT_START, local_server
from flows.handoff import WARM_STATE, environment_key, read_warm_state, warm_enabled
from tasks.core.files import exclusive_lock, write_text_atomic
from tasks.core.processes import is_alive

LOCK_NAME = "voicebatch-warm.lock"
LOG_NAME = "voicebatch-warm.log"
RETRY_AFTER_S = 600  # a warm process that died while it started is not started again for the same environment sooner
_in_handed_off_command = False


def running_a_handed_off_command() -> None:
    """Called in a command the warm process runs: it starts no other warm process."""
    global _in_handed_off_command
    _in_handed_off_command = True


def _is_warm_process(pid: int | None) -> bool:
    """Whether `pid` runs and, where /proc tells (Linux), is a warm process: a recorded pid the system has given
    to another process since is neither reused nor stopped."""
    if not is_alive(pid):
        return False
    try:
        return b"flows.warm_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()


def socket_path(folder: Path) -> Path:
    """A short path (Unix socket paths are limited to ~100 bytes) in a folder only this user can enter: whoever
    connects runs commands as this user."""
    private = Path(tempfile.gettempdir()) / f"voicebatch-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    status = private.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise OSError(f"{private} is not private to this user (owner {status.st_uid}, mode "
                      f"{oct(status.st_mode & 0o777)}); remove it and run the command again")
    return private / f"warm-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}.sock"


def lock(folder: Path):
    """Held while the warm process of `folder` is started, replaced or stopped."""
    return exclusive_lock(folder / LOCK_NAME)


def ensure_warm(folder: Path) -> None:
    """Start a warm process for this environment in the background unless one runs for it already (one of
    another environment is stopped first). Returns at once: commands use it once it says it is ready."""
    if _in_handed_off_command or not warm_enabled(os.environ):
        return
    key = environment_key(ENVIRONMENT_AT_START, os.getcwd())
    with lock(folder):
        state = read_warm_state(folder)
        if state and _is_warm_process(state.get("pid")):
            if state.get("key") == key:
                return
            local_server.stop_process(state["pid"], grace=5)
        elif (state and state.get("key") == key and not state.get("socket")
              and time.time() - state.get("started", 0) < RETRY_AFTER_S):
            return  # it died while it started, a moment ago, for this same environment: its log says why
        with open(folder / LOG_NAME, "ab") as log:
            process = subprocess.Popen([sys.executable, "-P", "-c", "from flows.warm_server import main; main()",
                                        str(folder)], env=ENVIRONMENT_AT_START, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        write_text_atomic(folder / WARM_STATE, json.dumps({"pid": process.pid, "key": key, "socket": None,
                                                           "started": time.time()}))


def stop_warm(folder: Path) -> dict | None:
    """Stop the warm process and forget it; the state it had, or None when none was recorded."""
    with lock(folder):
        state = read_warm_state(folder)
        if state and _is_warm_process(state.get("pid")):
            local_server.stop_process(state["pid"], grace=5)
        (folder / WARM_STATE).unlink(missing_ok=True)
        return state


def warm_status(folder: Path) -> dict:
    state = read_warm_state(folder) or {}
    alive = _is_warm_process(state.get("pid"))
    return {"warm_pid": state.get("pid") if alive else None, "warm_ready": bool(alive and state.get("socket"))}
