"""Checks every command that renders makes before Prefect starts, so a run that cannot finish never begins."""
from __future__ import annotations

import os
from pathlib import Path

from engine.whisper import require_local_model
from tasks.audio.wav import OutputWriteError
from tasks.core.out_folders import staging_dir
from tasks.core.settings import Settings
from tasks.script.ingest import Script
from tasks.store.db import connect
from tasks.voices.preparation import check_voice, conversion_settings


def check_script(script: Script, qa: bool | None, settings: Settings) -> None:
    """Before Prefect starts and before --out exists: every reference clip opens as usable audio, and QA's
    Whisper model (with --qa, or the manifest's qa.enabled) is on this machine, found without loading it."""
    conversion, staging = conversion_settings(settings), staging_dir(settings.output_dir)
    for voice in {v.id: v for v in script.voices.values()}.values():
        check_voice(voice, staging, conversion)
    if script.manifest.qa.enabled if qa is None else qa:
        require_local_model(settings.whisper_model, "render without --qa (and qa.enabled: false in the manifest)")


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
    with connect(database, check_size=True):  # the process's first connection: see connect()
        pass
