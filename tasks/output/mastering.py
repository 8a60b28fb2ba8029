"""Mastering: every take normalised to the target on its own (so speakers sit at one loudness), then each
assembled chapter checked and corrected to the target as a whole, written, and measured for the report."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from tasks.audio.assemble import Segment, add_room_tone, assemble_chapter
from tasks.audio.loudness import LoudnessReport, LoudnessTarget, normalise, on_target, report
from tasks.audio.wav import from_pcm16, read_mono, to_pcm16, write_wav_atomic
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.processes import worker_name
from tasks.output.export import OutputFile, check_size
from tasks.render.batch import BatchResult, Take
from tasks.script.plan import RenderJob


@dataclass(frozen=True)
class NormalisedTake:
    """A take after normalisation: where it is, and what was done to it (levels in the target's mode units)."""
    key: str
    path: str
    sha256: str
    mode: str
    level_before: float
    gain_db: float
    level_after: float
    true_peak_dbtp: float
    normalise_started_at: datetime | None = None
    normalise_ended_at: datetime | None = None
    worker: str | None = None  # the process that normalised it (tasks/core/processes.py)


@dataclass(frozen=True)
class MasteredChapter:
    output: OutputFile
    report: LoudnessReport
    gain_db: float  # the whole-chapter correction after assembly


# A chapter of takes normalised to the aim reads a few hundredths of a dB off it once pauses and room tone are
# in: far under what a listener hears (about 1 dB), and re-gaining it costs a limiter pass over the chapter.
CHAPTER_LEVEL_TOLERANCE_DB = 0.1
NORMALISATION_VERSION = 4  # bump when normalise() changes the bytes it writes: old normalised takes are then not reused


def target_id(target: LoudnessTarget) -> str:
    """A short content hash of the target and of the normalisation's version: normalised takes for different
    targets, or from a normalisation that wrote other bytes, never share a file."""
    identity = {**asdict(target), "normalisation_version": NORMALISATION_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def normalised_take_path(takes_dir: Path, target: LoudnessTarget, key: str) -> Path:
    return takes_dir / "normalised" / target_id(target) / key[:2] / f"{key}.wav"


def normalise_takes(takes: list[Take], target: LoudnessTarget, takes_dir: Path) -> list[NormalisedTake]:
    """Normalise one render batch's takes, each on its own, into float WAVs beside the raw takes."""
    done, worker = [], worker_name()
    for take in takes:
        started_at = datetime.now()
        audio, rate = read_mono(Path(take.path))
        out, adj = normalise(audio, target, rate)
        path = normalised_take_path(takes_dir, target, take.key)
        digest = write_wav_atomic(path, out, subtype="PCM_24", sample_rate=rate)  # float WAVs are timestamped
        done.append(NormalisedTake(take.key, str(path), digest, target.mode, adj.before, adj.gain_db, adj.after,
                                   adj.true_peak_dbtp, started_at, datetime.now(), worker))
    return done


def normalise_batch(result: BatchResult, target: LoudnessTarget, takes_dir: Path,
                    keys: set[str]) -> list[NormalisedTake]:
    """Normalise the takes of one render batch that go into chapters being mastered (`keys`)."""
    return normalise_takes([t for t in result.takes if t.key in keys], target, takes_dir)


def master_chapter(jobs: list[RenderJob], normalised: dict[str, str], path: Path, index: int, title: str,
                   speaker_pause: float, chunk_pause: float, target: LoudnessTarget,
                   max_mb: float = 2048) -> MasteredChapter | None:
    """Assemble a chapter from normalised takes, add head/tail and room tone, correct it to the target as a
    whole, write it as 16-bit WAV, and measure the file as written. None when a take is missing (it failed
    to render): a chapter with a hole is not written."""
    if any(not Path(normalised.get(job.key, "")).is_file() for job in jobs):
        return None
    segments = []
    for job in jobs:
        audio, _ = read_mono(Path(normalised[job.key]))
        segments.append(Segment(audio, job.speaker, job.line, job.pause_after))
    audio = assemble_chapter(segments, speaker_pause, chunk_pause, head=target.head_seconds, tail=target.tail_seconds)
    del segments  # the takes are in `audio` now: a long chapter need not be held twice
    if target.room_tone:  # one continuous bed under pauses and speech: the hiss never switches on and off
        add_room_tone(audio, target.room_tone_dbfs, seed=index)
    check_size(path, audio.size, max_mb, title)
    # Measured on the very 16-bit samples that are written. A chapter of takes normalised in LUFS is already on
    # target with its peaks under the ceiling: then that one reading is the report and nothing is re-gained.
    # The file is written while it is measured (it almost always stands; else it is written again).
    samples = to_pcm16(audio)
    with ThreadPoolExecutor(max_workers=1) as beside:
        written = beside.submit(write_wav_atomic, path, samples)
        measured = report(from_pcm16(samples), target, SAMPLE_RATE)
        digest = written.result()
    gain_db = 0.0
    if not on_target(measured, target, CHAPTER_LEVEL_TOLERANCE_DB):
        del samples  # only one whole-chapter copy beside the ones normalisation needs
        corrected, adj = normalise(audio, target, SAMPLE_RATE)
        del audio
        samples, gain_db = to_pcm16(corrected), adj.gain_db
        del corrected
        measured = report(from_pcm16(samples), target, SAMPLE_RATE)
        digest = write_wav_atomic(path, samples)
    output = OutputFile("chapter", index, title, str(path), digest, samples.size / SAMPLE_RATE)
    return MasteredChapter(output, measured, gain_db)


def take_level_rows(run_id: str, takes: list[NormalisedTake]) -> list[dict]:
    return [dict(run_id=run_id, **asdict(t)) for t in takes]


def chapter_loudness_rows(run_id: str, chapters: list[MasteredChapter], target: LoudnessTarget) -> list[dict]:
    rows = []
    for c in chapters:
        r = asdict(c.report)
        rows.append(dict(run_id=run_id, chapter=c.output.chapter, title=c.output.title, path=c.output.path,
                         preset=target.preset, mode=target.mode, target=target.target, ceiling=target.ceiling,
                         chapter_gain_db=c.gain_db, **{**r, "problems": json.dumps(list(c.report.problems))}))
    return rows
