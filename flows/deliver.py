"""The audio side of a render run, off the render lane: normalise each batch's takes as soon as it renders,
master each chapter once its takes are normalised, then the book WAV and the encoded files. All of it runs
in its own thread pool sized to the cores, so the render lane never waits for it."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import steps
from tasks.encode import NO_FFMPEG, find_ffmpeg
from tasks.export import OutputFile, book_dir, chapter_path
from tasks.ingest import Script
from tasks.loudness import LoudnessTarget
from tasks.mastering import MasteredChapter, NormalisedTake, normalised_take_path
from tasks.plan import RenderBatch, RenderJob
from tasks.render import Take


@dataclass
class Delivery:
    target: LoudnessTarget
    normalised: list[NormalisedTake]
    mastered: list[MasteredChapter]
    book: OutputFile
    encoded: list[OutputFile]
    warnings: list[str]

    @property
    def chapters(self) -> list[OutputFile]:
        return [m.output for m in self.mastered]


def audio_workers() -> int:
    """Threads for audio work: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def deliver(script: Script, jobs: list[RenderJob], batches: list[RenderBatch],
            rendered: list[PrefectFuture | list[Take]], out: Path,
            logger: logging.Logger | logging.LoggerAdapter) -> Delivery:
    """`rendered[i]` holds batch i's takes, or a future of them."""
    manifest = script.manifest
    target = manifest.loudness.resolve()
    takes_dir = out / "takes"
    # Every job's normalised path is known before it exists, so chapters can be submitted up front.
    normalised_paths = {j.key: str(normalised_take_path(takes_dir, target, j.key)) for j in jobs}
    batch_of = {job.key: b.index for b in batches for job in b.jobs}
    ffmpeg = find_ffmpeg()
    # Submission order is dependency order, so a worker waiting on a future never waits on queued work.
    with ThreadPoolTaskRunner(max_workers=audio_workers()) as pool:
        norm_futures = [pool.submit(steps.normalise_takes, dict(takes=r, target=target, takes_dir=takes_dir))
                        for r in rendered]
        chapter_futures = []
        for ch in script.chapters:
            chapter_jobs = [j for j in jobs if j.chapter == ch.index]
            waits = [norm_futures[i] for i in sorted({batch_of[j.key] for j in chapter_jobs})]
            chapter_futures.append(pool.submit(steps.master_chapter, dict(
                jobs=chapter_jobs, normalised=normalised_paths, path=chapter_path(out, manifest.title, ch.index, ch.title),
                index=ch.index, title=ch.title, speaker_pause=manifest.defaults.speaker_pause_duration,
                chunk_pause=manifest.defaults.chunk_pause_duration, target=target), wait_for=waits))
        mastered, encodes = [], []
        for i, future in enumerate(chapter_futures):
            mastered.append(future.result())
            if ffmpeg:
                encodes.append(pool.submit(steps.encode_chapter_mp3, dict(
                    ffmpeg=ffmpeg, chapter=mastered[-1].output, book_title=manifest.title, author=manifest.author,
                    track=i + 1, tracks=len(chapter_futures), ceiling_dbtp=target.ceiling)))
        chapters = [m.output for m in mastered]
        directory = book_dir(out, manifest.title)
        book = steps.export_book(chapters, directory / f"{directory.name}.wav", manifest.title,
                                 room_tone_dbfs=target.room_tone_dbfs if target.room_tone else None)
        warnings = []
        if ffmpeg:
            encodes += [pool.submit(steps.encode_book, dict(ffmpeg=ffmpeg, book=book, chapters=chapters,
                                                            author=manifest.author, kind=kind,
                                                            ceiling_dbtp=target.ceiling))
                        for kind in ("book_m4b", "book_mp3")]
        else:
            warnings.append(NO_FFMPEG)
            logger.warning(NO_FFMPEG)
        encoded = [f.result() for f in encodes]
        normalised = [n for f in norm_futures for n in f.result()]
    for m in mastered:
        if not m.report.passed:
            logger.warning("chapter %r misses %s: %s", m.output.title, target.describe(), "; ".join(m.report.problems))
    return Delivery(target, normalised, mastered, book, encoded, warnings)
