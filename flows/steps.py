"""The pipeline's Prefect tasks: each calls one plain function of tasks/ and carries its name, run name and
retries. Inputs are scripts, plans and paths; engines stay in the process-wide warm pool, never in a task's
inputs. Results are not persisted (NO_CACHE): takes and outputs are files with their own content hashes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Collection, Iterable

from prefect import task
from prefect.cache_policies import NO_CACHE

from engine.base import VoicePrompt
from tasks.audio.loudness import LoudnessTarget
from tasks.core.stopping import raise_if_stopping
from tasks.output import encode, export, mastering
from tasks.output.export import OutputFile
from tasks.output.mastering import MasteredChapter, NormalisedTake
from tasks.qa import check as qa_check
from tasks.qa.check import QaBatch, QaPlan
from tasks.render import batch as batch_rendering
from tasks.render import cache, engines, records
from tasks.render.batch import BatchResult, Take, TakeLimits
from tasks.render.engines import EngineSetup
from tasks.review import page as review_page
from tasks.script import ingest
from tasks.script.ingest import Script
from tasks.script.plan import RenderBatch, RenderJob
from tasks.script.voices import Voice
from tasks.sweep import score as sweep_score
from tasks.voices import preparation as voice_prep
from tasks.voices.preparation import PreparedVoice
from tasks.voices.reference_audio import ConversionSettings

_plain = dict(cache_policy=NO_CACHE, persist_result=False)


_checked: dict[tuple[Path, Path], Script] = {}


def checked_before_the_run(path: Path, voices_dir: Path, script: Script) -> None:
    """The script the command has just read and checked, for its flow run's ingest to take once instead of
    reading it again (half a second for a 9,000-line book); the run renders the manifest as it was checked."""
    _checked[(Path(path).resolve(), Path(voices_dir).resolve())] = script


@task(name="ingest", **_plain)
def ingest_manifest(path: Path, voices_dir: Path) -> Script:
    checked = _checked.pop((Path(path).resolve(), Path(voices_dir).resolve()), None)
    return checked if checked is not None else ingest.ingest(path, voices_dir)


@task(name="prepare voice", task_run_name="voice: {voice.id}", **_plain)
def prepare_voice(voice: Voice, staging: Path, db: Path, conversion: ConversionSettings, whisper_model: str | None,
                  device: str) -> PreparedVoice:
    return voice_prep.prepare_voice(voice, staging, db, conversion, whisper_model, device)


@task(name="choose engines", **_plain)
def prepare_engines(script: Script, requested: str | None, default: str, device: str, dtype: str,
                    speaker_engine: dict[str, str]) -> EngineSetup:
    return engines.prepare_engines(script, requested, default, device, dtype, speaker_engine)


@task(name="load engines", **_plain)
def load_engines(names: list[str], device: str, dtype: str) -> float:
    return engines.load_engines(names, device, dtype)


@task(name="find cached takes", **_plain)
def find_cached_takes(db: Path, takes_dir: Path, keys: Iterable[str],
                      verify: Collection[str] = ()) -> tuple[dict[str, dict], list[dict]]:
    return cache.find_takes(db, takes_dir, keys, verify)


@task(name="render", task_run_name="render {batch.name}", **_plain)
def render_batch(batch: RenderBatch, prompts: dict[str, VoicePrompt], takes_dir: Path, device: str, dtype: str,
                 limits: TakeLimits, scene: str | None) -> BatchResult:
    """No retries here: a failing batch is split and retried inside, down to single jobs (tasks/render/batch.py)."""
    return batch_rendering.render_batch(batch, prompts, takes_dir, device, dtype, limits, scene)


@task(name="record takes", retries=2, retry_delay_seconds=1, **_plain)
def record_batch(result: BatchResult, engine_of: dict[str, str], run_id: str, db: Path,
                 on_recorded: Callable[[int], None] | None) -> int:
    """Retried: recording a take twice leaves one row, and a database busy past its wait may be free again."""
    return records.record_batch(result, engine_of, run_id, db, on_recorded)


@task(name="normalise takes", **_plain)
def normalise_takes(takes: list[Take], target: LoudnessTarget, takes_dir: Path) -> list[NormalisedTake]:
    raise_if_stopping()
    return mastering.normalise_takes(takes, target, takes_dir)


@task(name="normalise batch", **_plain)
def normalise_batch(result: BatchResult, target: LoudnessTarget, takes_dir: Path, keys: set[str]) -> list[NormalisedTake]:
    raise_if_stopping()
    return mastering.normalise_batch(result, target, takes_dir, keys)


@task(name="master chapter", task_run_name="master: {title}", **_plain)
def master_chapter(jobs: list[RenderJob], normalised: dict[str, str], path: Path, index: int, title: str,
                   speaker_pause: float, chunk_pause: float, target: LoudnessTarget, max_mb: float) -> MasteredChapter | None:
    raise_if_stopping()
    return mastering.master_chapter(jobs, normalised, path, index, title, speaker_pause, chunk_pause, target, max_mb)


@task(name="assemble book", **_plain)
def export_book(chapters: list[OutputFile], path: Path, title: str, room_tone_dbfs: float | None) -> OutputFile:
    raise_if_stopping()
    return export.export_book(chapters, path, title, room_tone_dbfs)


@task(name="encode chapter mp3", retries=1, **_plain)
def encode_chapter_mp3(ffmpeg: str, chapter: OutputFile, book_title: str, author: str | None, track: int,
                       tracks: int, ceiling_dbtp: float | None) -> OutputFile:
    """Retried once: ffmpeg writes into a temporary file renamed into place, so a second try starts clean."""
    raise_if_stopping()
    return encode.encode_chapter_mp3(ffmpeg, chapter, book_title, author, track, tracks, ceiling_dbtp)


@task(name="encode chapter aac", retries=1, **_plain)
def encode_chapter_aac(ffmpeg: str, chapter: OutputFile, target: Path, ceiling_dbtp: float | None) -> OutputFile:
    """Retried once, as the chapter MP3s are."""
    raise_if_stopping()
    return encode.encode_chapter_aac(ffmpeg, chapter, target, ceiling_dbtp)


@task(name="join book", task_run_name="join {kind}", retries=1, **_plain)
def join_book(ffmpeg: str, parts: list[OutputFile], target: Path, title: str, author: str | None,
              kind: str, notes: Path | None = None) -> OutputFile:
    """Retried once, as the chapter MP3s are."""
    raise_if_stopping()
    return encode.join_book(ffmpeg, parts, target, title, author, kind, notes)


@task(name="qa: transcribe and score takes", **_plain)
def check_takes(result: BatchResult, jobs: dict[str, RenderJob], retakes: dict[str, list[RenderJob]], plan: QaPlan,
                run_id: str, db: Path, takes_dir: Path, prompts: dict[str, dict[str, VoicePrompt]], device: str,
                dtype: str, take_limits: TakeLimits, scene: str | None) -> QaBatch:
    return qa_check.check_batch(result, jobs, retakes, plan, run_id, db, takes_dir, prompts, device, dtype,
                                take_limits, scene)


@task(name="sweep: score takes", **_plain)
def score_sweep_takes(result: BatchResult, texts: dict[str, str], plan: QaPlan | None, db: Path) -> dict[str, dict[str, Any]]:
    return sweep_score.score_takes(result, texts, plan, db)


@task(name="review page", **_plain)
def write_review_page(db_path: Path, run_ids: list[str]) -> Path:
    return review_page.write_review_page(db_path, run_ids)
