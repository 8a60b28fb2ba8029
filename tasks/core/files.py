"""Temporary files of atomic writes: named after the process that writes them, so that a later run can tell
the leftovers of a killed process (removed) from the files another live process is still writing (kept)."""
from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

_OWNER = re.compile(r"\.~(?P<host>[A-Za-z0-9_.-]+)~(?P<pid>\d+)~")


def _owner_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    return f".~{host}~{os.getpid()}~"


def make_temp_beside(target: Path) -> tuple[int, str]:
    """An open temporary file in `target`'s folder, for writing `target` and renaming it into place."""
    return tempfile.mkstemp(prefix=f".{target.name}{_owner_tag()}", suffix=".tmp", dir=target.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that `path` is either absent, as it was, or complete; raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files under `folder` whose writer was a process of this host that is gone (a run
    killed part-way); files of live processes, and of other hosts sharing the folder, are left alone."""
    if not folder.is_dir():
        return []
    host = _owner_tag().split("~")[1]
    removed = []
    for path in folder.rglob(".*.tmp"):
        owner = _OWNER.search(path.name)
        if owner is None or owner["host"] != host or _alive(int(owner["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
