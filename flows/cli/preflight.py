"""Checks every command that renders makes before Prefect starts, so a run that cannot finish never begins."""
from __future__ import annotations

import os
from pathlib import Path

from tasks.audio.wav import OutputWriteError
from tasks.store.db import connect


def preflight(output_dir: Path, database: Path) -> None:
    """Before Prefect starts: the output folder takes files, and the database opens (or says who holds it)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".voicebatch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputWriteError(f"cannot write to the output folder {output_dir}: {e.strerror or e}; make it "
                               "writable or choose another with --out / VOICEBATCH_OUTPUT_DIR") from None
    with connect(database):
        pass
