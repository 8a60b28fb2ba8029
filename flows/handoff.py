"""What the console script (flows/launch.py) and the warm process (flows/warm.py, flows/warm_server.py)
share: where the warm process is recorded, what must match for it to run a command, and their messages.
Only the standard library: the console script imports this before it knows whether it needs anything else."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
from pathlib import Path

WARM_STATE = "voicebatch-warm.json"
# What the warm process fixed when it imported Prefect, torch, transformers and the engines: a command whose
# values differ runs in its own process. VOICEBATCH_* settings are read per command and need no match.
IMPORT_TIME_VARIABLES = ("PREFECT_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "CUDA_", "PYTORCH_", "TORCH", "HF_",
                         "TRANSFORMERS_", "HIBARI", "ORT_", "LD_", "DYLD_")
# Prefect also reads its settings from these files in the working folder.
PREFECT_FILES = (".env", "prefect.toml")
CODE_FOLDERS = ("engine", "tasks", "flows")


def prefect_home(environ) -> Path:
    return Path(environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def warm_enabled(environ) -> bool:
    """VOICEBATCH_WARM; on by default on Linux only. Elsewhere it is opt-in (VOICEBATCH_WARM=1): macOS's
    system frameworks are not safe to use in a fork of a process that has loaded them, and it is untested there."""
    default = "1" if sys.platform == "linux" else "0"
    return environ.get("VOICEBATCH_WARM", default).strip().lower() not in ("0", "false", "no", "off")


def code_root() -> Path:
    return Path(__file__).resolve().parent.parent


def environment_key(environ, cwd: str) -> str:
    """What a warm process must share with a command to run it: this Python and its installed packages, this
    checkout's code as it is on disk, and the settings read at import time."""
    digest = hashlib.sha256()
    # The environment's folder, not the interpreter's path: a console script and `python -c` in one virtual
    # environment may name it through different links.
    digest.update(f"{os.path.realpath(sys.prefix)}\0{sys.version}\0{code_root()}\0".encode())
    for name in sorted(environ):
        if name.startswith(IMPORT_TIME_VARIABLES):
            digest.update(f"{name}={environ[name]}\0".encode())
    for name in PREFECT_FILES:
        digest.update(f"{name}:{_stamp(Path(cwd) / name)}\0".encode())
    for entry in sys.path:
        if entry.endswith("site-packages"):  # pip changes the folder when it installs or removes a package
            digest.update(f"{os.path.realpath(entry)}:{_stamp(Path(entry))}\0".encode())
    for folder in CODE_FOLDERS:
        for parent, dirs, files in os.walk(code_root() / folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    digest.update(f"{parent}/{name}:{_stamp(Path(parent) / name)}\0".encode())
    return digest.hexdigest()


def _stamp(path: Path) -> str:
    try:
        status = path.stat()
    except OSError:
        return "-"
    return f"{status.st_mtime_ns}:{status.st_size}"


def read_warm_state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / WARM_STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def send_message(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    """One JSON message, length first; `fds` travel with it."""
    data = json.dumps(message).encode()
    data = struct.pack("!I", len(data)) + data
    sent = socket.send_fds(sock, [data], fds) if fds else sock.send(data)
    sock.sendall(data[sent:])


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """The next message and the descriptors that came with it; (None, []) when the peer closed first."""
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        if max_fds and not fds:
            chunk, fds, _flags, _address = socket.recv_fds(sock, 65536, max_fds)
        else:
            chunk = sock.recv(65536)
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None, []
        data += chunk
    return json.loads(data[4:]), fds
