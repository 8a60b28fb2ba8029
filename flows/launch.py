"""The `voicebatch` console script. A `voicebatch render` hands itself to the warm process beside the reused
local Prefect server (flows/warm.py) when one is ready for this code and environment: the command then starts
with Prefect imported and the small CPU engines loaded, instead of spending ~2.5 s on that first. Anything
else (no warm process, another checkout or Python, other Prefect settings, VOICEBATCH_WARM=0, other
commands) runs in this process as before.

Only the standard library and tasks/core/files are imported here: the point is to cost nothing before the
handoff.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

from flows.handoff import environment_key, prefect_home, read_warm_state, receive_message, send_message, warm_enabled
from tasks.core.files import current_umask

HANDED_OFF = ("render",)
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _temporary_server(argv: list[str], environ) -> bool:
    """`--no-server` (or an abbreviation argparse accepts) or VOICEBATCH_SERVER=temporary: a command that is to
    leave nothing running is not handed to what it would leave running."""
    flags = (arg.split("=", 1)[0] for arg in argv[1:])
    return environ.get("VOICEBATCH_SERVER") == "temporary" or any(
        len(flag) > 5 and "--no-server".startswith(flag) for flag in flags)


def run_warm(argv: list[str], environ=os.environ) -> int | None:
    """Run the command in the warm process and return its exit code; None when no warm process takes it."""
    if not argv or argv[0] not in HANDED_OFF or not warm_enabled(environ) or _temporary_server(argv, environ):
        return None
    state = read_warm_state(prefect_home(environ))
    if not state or not state.get("socket"):
        return None
    cwd = os.getcwd()
    key = environment_key(environ, cwd)
    if state.get("key") != key:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(10)
        sock.connect(state["socket"])
        send_message(sock, {"argv": argv, "argv0": sys.argv[0], "cwd": cwd, "env": dict(environ),
                            "umask": current_umask(), "key": key}, [0, 1, 2])
        started, _ = receive_message(sock)
    except OSError:
        sock.close()
        return None
    if not started or "pid" not in started:  # refused (it was about to be replaced) or gone
        sock.close()
        return None
    return _wait(sock, started["pid"])


def _wait(sock: socket.socket, pid: int) -> int:
    """Forward this terminal's stop signals to the command until its exit code comes."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    sock.settimeout(None)
    finished, _ = receive_message(sock)  # a forwarded signal does not interrupt it (PEP 475)
    if finished is None:
        print("voicebatch: the warm process ended without the command's exit status; see "
              f"{prefect_home(os.environ) / 'voicebatch-warm.log'}", file=sys.stderr)
        return 1
    return int(finished["exit"])


def main() -> int:
    code = run_warm(sys.argv[1:])
    if code is not None:
        return code
    from flows.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
