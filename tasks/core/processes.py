"""This process as provenance and temporary files name it, whether another process is alive, and how many
cores this process may use."""
from __future__ import annotations

import os
import socket


def worker_name() -> str:
    """This process, as provenance names it: `host:pid` (renders on Dask workers or in the flow's own process
    are told apart by it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_alive(pid: int | None) -> bool:
    """Whether a process of this host with this pid is running (another user's counts as running)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS has one; macOS has not)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
