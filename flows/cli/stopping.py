"""Signals for the CLI: the first SIGINT, SIGTERM or SIGHUP asks work to stop and unwinds the command as
StopRequested (the run is closed as `interrupted`, a temporary server stopped); a second one exits at once."""
from __future__ import annotations

import logging
import os
import signal
import sys

from tasks.core.stopping import (EXIT_CODES, StopRequested, deferring, handle_signals, request_stop, requested_by,
                                 stop_requested)


def _on_signal(signum: int, frame) -> None:
    if stop_requested():
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: stopped at once\n")
        os._exit(EXIT_CODES[signum])
    request_stop(signum)
    for handler in logging.getLogger().handlers:  # Prefect's console handler, once Prefect has set up logging
        handler.addFilter(_not_a_run_error)
    if not deferring():  # else raised when the deferred block ends
        raise StopRequested(signum)


def _not_a_run_error(record: logging.LogRecord) -> bool:
    """After a stop, Prefect's run loggers report what it did (tasks not started or cancelled, the flow run
    crashed) as errors: the terminal gets the one line that says what was kept instead, Prefect's API (its UI)
    still gets them."""
    return record.levelno < logging.ERROR or not record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))


def install_handlers() -> None:
    handle_signals(_on_signal)


def as_stop(error: BaseException) -> StopRequested | None:
    """The stop that `error` is part of, if a signal asked for one: StopRequested itself, or whatever it turned
    into on its way up (Prefect, stopped while it sets up a task run, raises `ValueError: Task run is not set`
    from its own clean-up; a worker thread raises Stopping)."""
    if isinstance(error, StopRequested):
        return error
    return StopRequested(requested_by()) if stop_requested() else None


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
