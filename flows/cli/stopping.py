"""Signals for the CLI: the first SIGINT, SIGTERM or SIGHUP asks work to stop and unwinds the command as
StopRequested (the run is closed as `interrupted`, a temporary server stopped); a second one exits at once."""
from __future__ import annotations

import os
import signal
import sys

from tasks.core.stopping import EXIT_CODES, StopRequested, request_stop, stop_requested


def _on_signal(signum: int, frame) -> None:
    if stop_requested():
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: stopped at once\n")
        os._exit(EXIT_CODES[signum])
    request_stop(signum)
    raise StopRequested(signum)


def install_handlers() -> None:
    for signum in EXIT_CODES:
        signal.signal(signum, _on_signal)


def stopped_line(stop: StopRequested, out) -> str:
    return (f"stopped by {signal.Signals(stop.signum).name}: every finished take is kept in {out}; "
            "run the same command again to resume")


def exit_now(code: int) -> None:
    """Exit once the run is closed and a temporary server stopped, skipping the interpreter's exit handlers:
    Prefect's drain its log and event queues to the server, seconds on a busy machine, and nothing is left
    that needs them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
