"""One render lane per device across processes: a thread lock inside a process and an OS file lock between
processes, named per device, under a machine-wide lane folder (VOICEBATCH_LANE_DIR).

A file lock works with and without a Prefect server, ends with the process that holds it (a killed run
never leaves a stale slot, unlike a concurrency limit whose lease must expire), and is per machine, which
is what a device is: Dask or Prefect workers on several machines each get their own lanes.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_released: dict[str, float] = {}  # device -> when this process last let go of its lane (monotonic seconds)
# flock wakes waiting processes but does not hand the lock over: a process whose next batch is already queued
# would take the lane back before a woken process is scheduled and could starve it. A short pause after
# letting go gives the others their turn; it costs a few ms per batch.
HANDOFF_SECONDS = 0.005


def default_lane_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"voicebatch-lanes-{os.getuid()}"


def lane_file(lane_dir: Path, device: str) -> Path:
    """The lock file of one device, e.g. `cuda-0.lock` for device `cuda:0`."""
    return lane_dir / (re.sub(r"[^A-Za-z0-9_.-]", "-", device) + ".lock")


def thread_lock(device: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(device, threading.Lock())


@contextmanager
def device_lane(device: str, lane_dir: Path | None = None) -> Iterator[None]:
    """Hold the device's lane: no other thread of this process, and no other process on this machine using
    the same lane folder, renders or loads on `device` meanwhile."""
    with thread_lock(device):
        lane_dir = lane_dir or default_lane_dir()
        lane_dir.mkdir(parents=True, exist_ok=True)
        pause = _released.get(device, 0.0) + HANDOFF_SECONDS - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        with open(lane_file(lane_dir, device), "a+b") as handle:
            _lock(handle)
            try:
                yield
            finally:
                _unlock(handle)
                _released[device] = time.monotonic()


def _lock(handle) -> None:
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def _unlock(handle) -> None:
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
