"""One render lane per device across processes: a thread lock inside a process and an OS file lock between
processes, named per device, under a machine-wide lane folder (VOICEBATCH_LANE_DIR).

A file lock works with and without a Prefect server, ends with the process that holds it (a killed run
never leaves a stale slot, unlike a concurrency limit whose lease must expire), and is per machine, which
is what a device is: Dask or Prefect workers on several machines each get their own lanes.

Fair turns between processes: flock wakes a waiting process when the lane is let go but does not hand it
over, so a process whose next batch is already queued takes the lane straight back, and on a busy machine
another run could wait for the whole of the first run's renders. Each process therefore announces that it
waits (a shared lock on the device's `.queue` file, held while it waits for the lane), and a process about
to take the lane first waits until nobody else is announced (an exclusive lock on that file): a process that
has just rendered lets every process already waiting have its turn, so two runs alternate batch by batch.
Both locks are flocks, so a killed process never leaves a stale turn behind either.
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def default_lane_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"voicebatch-lanes-{os.getuid()}"


def lane_file(lane_dir: Path, device: str) -> Path:
    """The lock file of one device, e.g. `cuda-0.lock` for device `cuda:0`."""
    return lane_dir / (re.sub(r"[^A-Za-z0-9_.-]", "-", device) + ".lock")


def queue_file(lane_dir: Path, device: str) -> Path:
    """Where processes waiting for the device's lane announce themselves (see the module's note)."""
    return lane_file(lane_dir, device).with_suffix(".queue")


def thread_lock(device: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(device, threading.Lock())


@contextmanager
def device_lane(device: str, lane_dir: Path | None = None) -> Iterator[None]:
    """Hold the device's lane: no other thread of this process, and no other process on this machine using
    the same lane folder, renders or loads on `device` meanwhile. Processes take turns."""
    import fcntl

    with thread_lock(device):
        lane_dir = lane_dir or default_lane_dir()
        lane_dir.mkdir(parents=True, exist_ok=True)
        with open(queue_file(lane_dir, device), "a+b") as queue, open(lane_file(lane_dir, device), "a+b") as lane:
            # Wait until every process already waiting for the lane has had it; only one thread per process
            # gets here (the thread lock), so a process never waits on its own announcement.
            fcntl.flock(queue.fileno(), fcntl.LOCK_EX)
            fcntl.flock(queue.fileno(), fcntl.LOCK_SH)  # converted in place: others may announce now
            try:
                fcntl.flock(lane.fileno(), fcntl.LOCK_EX)
            finally:
                fcntl.flock(queue.fileno(), fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(lane.fileno(), fcntl.LOCK_UN)
