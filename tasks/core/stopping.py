"""A stop asked for by a signal: the CLI sets it, work checks it between units (a batch, a chapter), so a run
stops taking new work at once while an engine call in flight finishes."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from tasks.core.errors import VoicebatchError

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}  # 128 + the signal's number

_requested = threading.Event()
_signal = [signal.SIGINT]  # the signal that asked, for the exit code
_on_stop: list[Callable[[], None]] = []
_handler: list[Callable | None] = [None]  # the signal handler a command installed (the CLI's), if any
_deferring = [0]  # depth of deferred() blocks


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


def on_stop(callback: Callable[[], None]) -> None:
    """Call `callback` when a stop is asked for (e.g. to cancel queued work); it must not block."""
    _on_stop.append(callback)


def request_stop(signum: int) -> None:
    _signal[0] = signum
    _requested.set()
    for callback in _on_stop:
        try:
            callback()
        except Exception:  # noqa: BLE001 - a callback that fails must not keep the others from running
            pass


def handle_signals(handler: Callable) -> None:
    """Install `handler` for SIGINT, SIGTERM and SIGHUP, remembered so that a flow run can put it back."""
    _handler[0] = handler
    for signum in EXIT_CODES:
        signal.signal(signum, handler)


def reclaim_signals() -> None:
    """Put the command's handler back where another took a signal over: Prefect's flow engine installs its own
    SIGTERM handler for a flow run, which raises an exception that asks no work to stop. Nothing happens where
    no command installed one (a flow run by a Prefect worker keeps Prefect's) or off the main thread."""
    handler = _handler[0]
    if handler is None or threading.current_thread() is not threading.main_thread():
        return
    for signum in EXIT_CODES:
        if signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """A block a stop must not cut short, such as starting a child process (a stop inside Popen loses the
    process object, and with it the means to stop the child): the handler only asks for the stop, and
    StopRequested is raised when the block ends."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if _requested.is_set() and not _deferring[0]:
        raise StopRequested(_signal[0])


def deferring() -> bool:
    """Whether a signal handler must leave raising StopRequested to the end of a deferred() block."""
    return _deferring[0] > 0


def requested_by() -> int:
    """The signal that asked for the stop (SIGINT when none did)."""
    return _signal[0]


def stop_requested() -> bool:
    return _requested.is_set()


def raise_if_stopping() -> None:
    """In a worker thread, once a stop was asked for: no new unit of work starts (the main thread is already
    unwinding with StopRequested)."""
    if _requested.is_set():
        raise Stopping("stopped before starting: the process was asked to stop")
