"""The warm process itself (flows/warm.py says what it is for): everything a render imports is imported with
this module, the small CPU engines are loaded, and then it serves commands until it is no longer wanted."""
from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

import prefect.flow_engine  # noqa: F401  (a flow's first call imports them)
import prefect.task_engine  # noqa: F401

from engine.pool import load_lanes
from engine.registry import available_engines, engine_class
from flows import ENVIRONMENT_AT_START, local_server, warm
from flows.cli import main as cli_main
from flows.handoff import WARM_STATE, environment_key, read_warm_state, receive_message, send_message
from flows.render import RENDER_IMPORTS, REVIEW_IMPORTS
from tasks.core.errors import VoicebatchError
from tasks.core.files import adopt_umask, write_text_atomic
from tasks.core.processes import is_alive
from tasks.core.settings import get_settings

CHECK_EVERY_S = 5.0  # how often an idle warm process checks that it is still wanted


def _preload() -> None:
    """What a render would import (beyond this module's imports) and load at its start."""
    import importlib

    for module in (*RENDER_IMPORTS, *REVIEW_IMPORTS):
        importlib.import_module(module)
    settings = get_settings()
    for name in available_engines():
        try:
            if engine_class(name).cpu_lanes:
                load_lanes(name, settings.device, settings.dtype)
        except VoicebatchError as error:  # not installed: its commands load nothing here either
            print(f"not preloaded: {error}", flush=True)
        except Exception:  # noqa: BLE001 - a command that needs it loads it (and reports what fails) itself
            print(f"not preloaded: {name}", flush=True)
            traceback.print_exc()
    get_settings.cache_clear()  # each command reads its own settings


def main() -> None:
    folder = Path(sys.argv[1])
    command = serve(folder)
    if command is None:
        return
    # In a handed-off command's process: run it as the console script would, Prefect's exit handlers included,
    # but end without the interpreter's own teardown, which crashed (SIGSEGV) in such a process after the
    # command had done its work: some native library's state copied by the fork does not survive it.
    try:
        code = _run_command(*command)
    except SystemExit as stop:
        code = stop.code
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit status 1
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    threading._shutdown()  # what the interpreter does first at exit: wait for non-daemon threads
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(folder: Path) -> tuple[dict, list[int], dict] | None:
    """Listen until stopped or no longer wanted. Returns only in a handed-off command's process, with its
    request, descriptors and the variables the imports set."""
    me = os.getpid()
    key = environment_key(ENVIRONMENT_AT_START, os.getcwd())
    started = time.perf_counter()
    _preload()
    # What the imports made (~350,000 objects) is kept out of the garbage collector's passes: in a handed-off
    # command every full pass walked them all, and wrote to each, so the system copied their pages from this
    # process one by one. A 9,000-line manifest took 0.75 s to read in a command, 0.28 s after this.
    gc.freeze()
    added = {name: value for name, value in os.environ.items() if name not in ENVIRONMENT_AT_START}
    path = warm.socket_path(folder)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(CHECK_EVERY_S)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # each supervisor is reaped by the system
    try:
        with warm.lock(folder):
            if (read_warm_state(folder) or {}).get("pid") != me:
                return None  # replaced while it loaded
            write_text_atomic(folder / WARM_STATE, json.dumps({"pid": me, "key": key, "socket": str(path),
                                                               "started": time.time()}))
        print(f"ready in {time.perf_counter() - started:.1f} s: pid {me}, {path}", flush=True)
        while True:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                if not _still_wanted(folder, me):
                    return None
                continue
            request = _handed_off(connection, listener, key, added)
            if request is not None:
                return request
    finally:
        if os.getpid() == me:
            listener.close()
            path.unlink(missing_ok=True)


def _still_wanted(folder: Path, me: int) -> bool:
    server = local_server.read_state(folder)
    return (read_warm_state(folder) or {}).get("pid") == me and server is not None and is_alive(server.pid)


def _handed_off(connection: socket.socket, listener: socket.socket, key: str,
                added: dict) -> tuple[dict, list[int], dict] | None:
    """Fork a supervisor for one request; in the command's own process (a fork of it) the request."""
    fds: list[int] = []
    try:
        connection.settimeout(10)
        request, fds = receive_message(connection, max_fds=3)
        if request is None or request.get("key") != key or len(fds) != 3:
            send_message(connection, {"refused": "another environment"})
            raise OSError("refused")
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        connection.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        try:
            listener.close()
            if _supervise(connection, fds) == 0:
                return request, fds, added
        except BaseException:  # noqa: BLE001 - the supervisor must never return into the serving loop
            traceback.print_exc()
        os._exit(70)
    for fd in fds:
        os.close(fd)
    connection.close()
    print(f"{time.strftime('%H:%M:%S')} handed off: {' '.join(request['argv'])}", flush=True)
    return None


def _supervise(connection: socket.socket, fds: list[int]) -> int:
    """Fork the command's process (0 in it) and, here, report its exit status; stop it if the command that
    handed it off goes away."""
    wake_read, wake_write = os.pipe()
    for fd in (wake_read, wake_write):
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so that the wake-up descriptor is written
    signal.set_wakeup_fd(wake_write)
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        os.close(wake_read)
        os.close(wake_write)
        connection.close()
        return 0
    for fd in fds:
        os.close(fd)
    connection.settimeout(None)
    send_message(connection, {"pid": pid})
    watched = [connection, wake_read]
    while True:
        readable, _, _ = select.select(watched, [], [])
        if wake_read in readable:
            while True:
                try:
                    if not os.read(wake_read, 512):
                        break
                except BlockingIOError:
                    break
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            try:
                send_message(connection, {"exit": 128 - code if code < 0 else code})
            except OSError:
                pass
            os._exit(0)
        if connection in readable and not connection.recv(1):  # the handing-off command was killed
            os.kill(pid, signal.SIGTERM)
            watched = [wake_read]


def _run_command(request: dict, fds: list[int], added: dict) -> int:
    """Become the handed-off command: its descriptors, environment, folder and umask, then the CLI."""
    warm.running_a_handed_off_command()
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    for name, value in added.items():
        os.environ.setdefault(name, value)
    os.chdir(request["cwd"])
    adopt_umask(request["umask"])
    sys.argv = [request["argv0"], *request["argv"]]
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    return cli_main(request["argv"])
