"""A stop asked for by a signal: the CLI sets it, work checks it between units (a batch, a chapter), so a run
stops taking new work at once while an engine call in flight finishes."""
from __future__ import annotations

import signal
import threading

from tasks.core.errors import VoicebatchError

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}  # 128 + the signal's number

_requested = threading.Event()
_signal = [signal.SIGINT]  # the signal that asked, for the exit code


class StopRequested(KeyboardInterrupt):
    """The process was asked to stop (SIGINT, SIGTERM or SIGHUP); a KeyboardInterrupt, so what handles one
    (Prefect marks its flow run crashed) handles this too."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + self.signum)


class Stopping(VoicebatchError):
    """Raised in a worker thread instead of starting new work once a stop was asked for."""


def request_stop(signum: int) -> None:
    _signal[0] = signum
    _requested.set()


def requested_by() -> int:
    """The signal that asked for the stop (SIGINT when none did)."""
    return _signal[0]


def stop_requested() -> bool:
    return _requested.is_set()


def clear() -> None:
    """Forget a stop (between cycles of a long-lived process that handled it)."""
    _requested.clear()


def raise_if_stopping() -> None:
    """In a worker thread, once a stop was asked for: no new unit of work starts (the main thread is already
    unwinding with StopRequested)."""
    if _requested.is_set():
        raise Stopping("stopped before starting: the process was asked to stop")
