"""The audio side of a render run, off the render lane: normalise each batch's takes as soon as it renders,
master each chapter whose takes changed once they are normalised, then the book WAV and the encoded files.
It runs in its own thread pool sized to the cores, so the render lane never waits for it. Chapter, book and
encoded files whose fingerprint (their takes' cache keys, pauses, loudness target, code versions) matches
the newest recorded one, and whose file is intact, are reused instead of written again."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from flows import steps
from flows.quality import QaOutcome
from flows.runners import remote_task_runner
from tasks.audio.loudness import LoudnessTarget
from tasks.core import out_folders
from tasks.core.files import sha256_file
from tasks.core.processes import usable_cores
from tasks.output.encode import NO_FFMPEG, find_ffmpeg
from tasks.output.export import OutputFile, book_dir, book_wav_skipped, chapter_path
from tasks.output.mastering import MasteredChapter, NormalisedTake, chapter_loudness_rows, normalised_take_path
from tasks.render import cache
from tasks.render.batch import BatchResult, Take
from tasks.script.ingest import Script
from tasks.script.plan import RenderBatch, RenderJob
from tasks.store.db import connect

MASTERING_VERSION = "8"  # bump when assembly or mastering changes the sound of a chapter (it is in fingerprints)


@dataclass
class Delivery:
    target: LoudnessTarget
    chapters: list[OutputFile]  # every complete chapter, written or reused, in order
    book: OutputFile | None  # None when a chapter is incomplete
    encoded: list[OutputFile]
    normalised: list[NormalisedTake]
    mastered: list[MasteredChapter]  # the chapters written by this run
    loudness_rows: list[dict]  # one per chapter (reused chapters: their newest recorded report)
    fingerprints: dict[str, str]  # output path -> fingerprint
    reused: set[str] = field(default_factory=set)  # output paths found up to date
    warnings: list[str] = field(default_factory=list)
    milestones: dict[str, float] = field(default_factory=dict)  # name -> perf_counter when it was reached
    qa: QaOutcome | None = None  # QA's outcome, when the run checked its takes
    chapters_encoded: int = 0  # chapter encodes (MP3 and AAC) this run made; unchanged chapters are reused
    joining: list[PrefectFuture] = field(default_factory=list)  # the book's M4B and MP3, still being joined

    @property
    def files(self) -> list[OutputFile]:
        return [*self.chapters, *([self.book] if self.book else []), *self.encoded]


def audio_workers() -> int:
    """Threads for audio work: one per core this process may use."""
    return usable_cores()


def fingerprints(script: Script, jobs: list[RenderJob], target: LoudnessTarget, out: Path) -> dict[str, str]:
    """Output path -> fingerprint, for every chapter, the book and the encoded files."""
    d = script.manifest.defaults
    common = {"pauses": [d.speaker_pause_duration, d.chunk_pause_duration], "target": asdict(target),
              "version": MASTERING_VERSION}
    prints, chapter_prints = {}, []
    takes_of: dict[int, list] = {}  # one pass over the jobs, not one per chapter
    for j in jobs:
        takes_of.setdefault(j.chapter, []).append((j.key, j.speaker, j.pause_after))
    for ch in script.chapters:
        keys = takes_of.get(ch.index, [])
        fp = cache.fingerprint({"takes": keys, "chapter": ch.index, **common})
        path = chapter_path(out, script.manifest.title, ch.index, ch.title)
        prints[str(path)] = fp
        prints[str(path.with_suffix(".mp3"))] = cache.fingerprint([fp, "mp3", script.manifest.title,
                                                                   script.manifest.author, len(script.chapters)])
        chapter_prints.append([fp, ch.title])
    book = book_path(script, out)
    book_fp = cache.fingerprint({"chapters": chapter_prints, "author": script.manifest.author, **common})
    prints[str(book)] = book_fp
    for suffix in (".m4b", ".mp3"):
        prints[str(book.with_suffix(suffix))] = cache.fingerprint([book_fp, suffix])
    return prints


def book_path(script: Script, out: Path) -> Path:
    directory = book_dir(out, script.manifest.title)
    return directory / f"{directory.name}.wav"


def _reused(kind: str, chapter: int | None, title: str, record: cache.CachedFile) -> OutputFile:
    return OutputFile(kind, chapter, title, record.path, record.sha256, record.duration or 0.0)


def _result(item: OutputFile | PrefectFuture) -> OutputFile:
    return item.result() if isinstance(item, PrefectFuture) else item


def deliver(script: Script, jobs: list[RenderJob], batches: list[RenderBatch], rendered: list[PrefectFuture],
            cached: BatchResult, out: Path, db: Path, force: bool, max_mb: float,
            logger: logging.Logger | logging.LoggerAdapter,
            settle: Callable[[], QaOutcome] | None = None) -> Delivery:
    """`rendered[i]` is the future of batch i's BatchResult; `cached` holds the takes reused from the cache.
    With `settle` (QA), every rendered take is normalised as soon as its batch lands, then `settle()` waits for
    QA's outcome (the kept takes: re-takes, cached takes); the chapters are mastered from the final jobs, and
    the outcome is returned in the delivery. The book's M4B and MP3 are joined by the flow's own task runner
    and returned unfinished (`Delivery.joining`), so that the run is recorded meanwhile (under a remote runner
    they are joined here, where the files are)."""
    manifest = script.manifest
    target = manifest.loudness.resolve()
    takes_dir = out_folders.takes_dir(out)
    ffmpeg = find_ffmpeg()
    warnings = [] if ffmpeg else [NO_FFMPEG]
    if not ffmpeg:
        logger.warning(NO_FFMPEG)

    # Mastering has its own threads: a chapter waiting for its takes never holds up the normalisation of
    # the batches it waits for, and it starts as soon as they are done.
    with ThreadPoolTaskRunner(max_workers=audio_workers()) as pool, \
            ThreadPoolTaskRunner(max_workers=audio_workers()) as mastering_pool:
        waits_for: dict[str, PrefectFuture] = {}  # take key -> the normalisation future that will write it
        # Under Dask, takes are normalised on the workers (where they were rendered); mastering stays here.
        normalise_on = (lambda task, params: task.submit(**params)) if remote_task_runner() else pool.submit

        def normalise_now(takes: list[Take]) -> None:
            for i in range(0, len(takes), 16):
                future = normalise_on(steps.normalise_takes, dict(takes=takes[i:i + 16], target=target,
                                                                 takes_dir=takes_dir))
                waits_for.update({t.key: future for t in takes[i:i + 16]})

        def normalise_batches(keys: set[str]) -> None:
            for batch, rendered_future in zip(batches, rendered):
                future = normalise_on(steps.normalise_batch, dict(result=rendered_future, target=target,
                                                                   takes_dir=takes_dir,
                                                                   keys={j.key for j in batch.jobs} & keys))
                waits_for.update({j.key: future for j in batch.jobs})

        qa = None
        if settle is None:
            prints, reusable, to_master, master_keys = _mastering_plan(script, jobs, target, out, db, force)
            ready = {} if force else _normalised_before(db, takes_dir, target,
                                                        {t.key for t in cached.takes if t.key in master_keys})
            normalise_now([t for t in cached.takes if t.key in master_keys and t.key not in ready])
            normalise_batches(master_keys)
        else:
            # A first take is almost always the kept one: normalising it now overlaps the render lane, and the
            # rare one QA replaces costs one wasted normalisation. Re-takes are normalised only when kept.
            normalise_batches({j.key for b in batches for j in b.jobs})
            qa = settle()
            jobs, kept = qa.final_jobs(jobs), list(qa.kept.values())
            prints, reusable, to_master, master_keys = _mastering_plan(script, jobs, target, out, db, force)
            ready = {} if force else _normalised_before(
                db, takes_dir, target, {t.key for t in kept if t.key in master_keys and t.key not in waits_for})
            normalise_now([t for t in kept if t.key in master_keys and t.key not in waits_for and t.key not in ready])
        paths = {ch.index: chapter_path(out, manifest.title, ch.index, ch.title) for ch in script.chapters}
        normalised_paths = {k: str(normalised_take_path(takes_dir, target, k)) for k in master_keys}
        # Each chapter is mastered as soon as its own takes are normalised, while later batches still render.
        # Every task gets only its own part of the plan: Prefect walks task inputs, so passing each one the whole
        # plan would cost chapters x lines.
        mastered_futures = {}
        jobs_of: dict[int, list[RenderJob]] = {}
        for job in jobs:
            jobs_of.setdefault(job.chapter, []).append(job)
        for ch in to_master:
            chapter_jobs = jobs_of.get(ch.index, [])
            waits = list({id(waits_for[j.key]): waits_for[j.key] for j in chapter_jobs if j.key in waits_for}.values())
            mastered_futures[ch.index] = mastering_pool.submit(steps.master_chapter, dict(
                jobs=chapter_jobs, normalised={j.key: normalised_paths[j.key] for j in chapter_jobs},
                path=paths[ch.index], index=ch.index, title=ch.title,
                speaker_pause=manifest.defaults.speaker_pause_duration,
                chunk_pause=manifest.defaults.chunk_pause_duration, target=target, max_mb=max_mb), wait_for=waits)
        # A render that raised surfaces here with its own error (the tasks waiting on it only say "not run").
        for future in rendered:
            future.result()
        used = {j.key for j in jobs}
        normalised = [n for f in [*dict.fromkeys(waits_for.values())] for n in f.result() if n.key in used]
        normalised += [n for n in ready.values() if n.key in used]
        milestones = {"takes_normalised": time.perf_counter()}
        mastered = {i: m for i, f in mastered_futures.items() if (m := f.result()) is not None}
        milestones["chapters_mastered"] = time.perf_counter()
        chapters, reused = [], set()
        for ch in script.chapters:
            if ch.index in mastered:
                chapters.append(mastered[ch.index].output)
            elif str(paths[ch.index]) in reusable:
                chapters.append(_reused("chapter", ch.index, ch.title, reusable[str(paths[ch.index])]))
                reused.add(chapters[-1].path)

        complete = len(chapters) == len(script.chapters)
        mp3s, aacs, encoded, encodes = [], [], [], 0
        for chapter in chapters:
            mp3 = str(Path(chapter.path).with_suffix(".mp3"))
            if mp3 in reusable and chapter.path in reused:
                mp3s.append(_reused("chapter_mp3", chapter.chapter, chapter.title, reusable[mp3]))
                reused.add(mp3)
            elif ffmpeg:
                mp3s.append(pool.submit(steps.encode_chapter_mp3, dict(
                    ffmpeg=ffmpeg, chapter=chapter, book_title=manifest.title, author=manifest.author,
                    track=chapter.chapter + 1, tracks=len(script.chapters), ceiling_dbtp=target.ceiling)))
                encodes += 1
            # The M4B's part of this chapter: AAC frames named after the chapter's fingerprint, so an unchanged
            # chapter is never encoded again, whatever else in the book changed.
            aac = takes_dir / "encoded" / f"{prints[chapter.path]}.aac"  # (and the notes of frame runs)
            if aac.is_file() and not force:
                aacs.append(OutputFile("chapter_aac", chapter.chapter, chapter.title, str(aac), "", chapter.duration))
            elif ffmpeg and complete:
                aacs.append(pool.submit(steps.encode_chapter_aac, dict(ffmpeg=ffmpeg, chapter=chapter, target=aac,
                                                                       ceiling_dbtp=target.ceiling)))
                encodes += 1
        book = None
        wav = book_path(script, out)
        skipped = book_wav_skipped(wav, chapters, max_mb) if complete else None
        if skipped:
            warnings.append(skipped)
            logger.warning(skipped)
        elif complete and str(wav) in reusable and not mastered:
            book = _reused("book", None, manifest.title, reusable[str(wav)])
            reused.add(book.path)
        elif complete:
            book = steps.export_book(chapters, wav, manifest.title,
                                     room_tone_dbfs=target.room_tone_dbfs if target.room_tone else None)
        milestones["book_written"] = time.perf_counter()
        encoded += [_result(f) for f in mp3s]
        joins = []
        meanwhile = not remote_task_runner()
        join = (lambda task, params: task.submit(**params)) if meanwhile else pool.submit
        if complete and ffmpeg:
            # Each book is joined as soon as its own chapters are encoded (the MP3s are, while AAC still encodes).
            for kind, suffix, parts in (("book_mp3", ".mp3", mp3s), ("book_m4b", ".m4b", aacs)):
                path = str(wav.with_suffix(suffix))
                if path in reusable and not encodes:
                    encoded.append(_reused(kind, None, manifest.title, reusable[path]))
                    reused.add(path)
                else:
                    joins.append(join(steps.join_book, dict(
                        ffmpeg=ffmpeg, parts=[_result(f) for f in parts], target=Path(path), title=manifest.title,
                        author=manifest.author, kind=kind, notes=takes_dir / "encoded")))
        if not meanwhile:
            encoded += [f.result() for f in joins]
            joins = []
            milestones["encoded"] = time.perf_counter()

    for m in mastered.values():
        if not m.report.passed:
            logger.warning("chapter %r misses %s: %s", m.output.title, target.describe(), "; ".join(m.report.problems))
    rows = chapter_loudness_rows("", list(mastered.values()), target)
    rows += _recorded_loudness(db, [c.path for c in chapters if c.path in reused])
    rows.sort(key=lambda r: r["chapter"])
    return Delivery(target, chapters, book, encoded, normalised, list(mastered.values()), rows, prints, reused,
                    warnings, milestones, qa, encodes, joins)


def takes_to_read(script: Script, jobs: list[RenderJob], out: Path, db: Path) -> set[str]:
    """The cache keys of the takes this run will read to assemble its chapters (every chapter not up to date)."""
    return _mastering_plan(script, jobs, script.manifest.loudness.resolve(), out, db, False)[3]


def _mastering_plan(script: Script, jobs: list[RenderJob], target: LoudnessTarget, out: Path, db: Path,
                    force: bool) -> tuple[dict[str, str], dict[str, cache.CachedFile], list, set[str]]:
    """Fingerprints of every output, the outputs found up to date, the chapters to master and their takes."""
    prints = fingerprints(script, jobs, target, out)
    reusable = {} if force else cache.reusable_outputs(db, prints)
    to_master = [ch for ch in script.chapters
                 if str(chapter_path(out, script.manifest.title, ch.index, ch.title)) not in reusable]
    chapters = {ch.index for ch in to_master}
    return prints, reusable, to_master, {j.key for j in jobs if j.chapter in chapters}


def _normalised_before(db: Path, takes_dir: Path, target: LoudnessTarget, keys: set[str]) -> dict[str, NormalisedTake]:
    """Takes normalised for this target by an earlier run whose files are still as recorded: their recorded
    levels, not normalised again (a chapter's 250 cached takes cost ~6 s on 2 cores). Not counted as this
    run's normalisations: no worker, no times."""
    if not keys or not Path(db).is_file():
        return {}
    with connect(db) as con:
        cur = con.execute("""
            SELECT key, path, sha256, mode, level_before, gain_db, level_after, true_peak_dbtp FROM take_levels
            WHERE key IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY key ORDER BY rowid DESC) = 1""", [sorted(keys)])
        rows = cur.fetchall()
    ready = {}
    for row in rows:
        take = NormalisedTake(*row)
        expected = normalised_take_path(takes_dir, target, take.key)
        if take.mode == target.mode and Path(take.path).resolve() == expected.resolve() and expected.is_file() \
                and sha256_file(expected) == take.sha256:
            ready[take.key] = take
    return ready


def _recorded_loudness(db: Path, paths: list[str]) -> list[dict]:
    """The newest loudness report of chapters reused as they were."""
    if not paths:
        return []

    with connect(db) as con:
        cur = con.execute("""
            SELECT * EXCLUDE (run_id) FROM chapter_loudness WHERE path IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY path ORDER BY rowid DESC) = 1""", [paths])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    for r in rows:
        r["run_id"] = ""
        if isinstance(r.get("problems"), list):
            r["problems"] = json.dumps(r["problems"])
    return rows
