"""What every run does first: where it writes, its id and clock, and its voices prepared and recorded."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger
from prefect.runtime import flow_run

from engine.errors import EngineError, UserInputError, VoicebatchError
from engine.registry import engine_class
from engine.settings import Settings, get_settings
from tasks import steps, voice_prep, voice_records
from tasks.errors import VoiceError
from tasks.ingest import Script
from tasks.temp_files import remove_stale_temp_files


@dataclass(frozen=True)
class RunPlace:
    out: Path  # the output folder
    db: Path  # the provenance database
    takes_dir: Path
    run_id: str  # the Prefect flow run's id (a fresh one outside a flow run)
    started: float  # time.perf_counter() at the run's start


def run_place(output_dir: str | None, settings: Settings) -> RunPlace:
    """The run's places, once the temporary files of killed runs there are gone (they never become outputs)."""
    out = Path(output_dir) if output_dir else settings.output_dir
    stale = remove_stale_temp_files(out)
    if stale:
        get_run_logger().info("removed %d temporary files left by a killed run", len(stale))
    return RunPlace(out, settings.db_path or out / "provenance.duckdb", out / "takes",
                    str(flow_run.get_id() or uuid.uuid4()), time.perf_counter())


def preload_voices(script: Script, speaker_engine: dict[str, str], out: Path, db: Path, run_id: str) -> Script:
    """Stage every voice's reference and settle its transcript, one task per voice in parallel, before
    planning: a bad clip is refused before anything renders. Whisper runs for voices whose engine speaks
    with the reference (every voice with VOICEBATCH_TRANSCRIBE=always)."""
    settings = get_settings()
    hearing = {v.id for s, v in script.voices.items()
               if settings.transcribe == "always" or engine_class(speaker_engine[s]).uses_reference}
    conversion = voice_prep.conversion_settings(settings)
    futures = {voice.id: steps.prepare_voice.submit(
        voice, voice_prep.staging_dir(out), db, conversion, settings.whisper_model if voice.id in hearing else None,
        settings.device) for voice in {v.id: v for v in script.voices.values()}.values()}
    prepared, problems = {}, []
    for voice_id, future in futures.items():
        try:
            prepared[voice_id] = future.result()
        except VoicebatchError as e:
            problems.append(e)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        kind = VoiceError if all(isinstance(p, UserInputError) for p in problems) else EngineError
        raise kind(f"{len(problems)} voices cannot be used:\n" + "\n".join(f"  - {p}" for p in problems))
    voice_records.record_run_voices(db, voice_prep.run_voice_rows(run_id, script, prepared, datetime.now()))
    return voice_prep.with_prepared_voices(script, prepared)
