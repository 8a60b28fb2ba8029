"""A 200-line, 4-speaker manifest rendered several ways, side by side, same engine and seeds:

  (a) voicebatch's render flow (Prefect start-up reported apart; WAV only, as (b) writes, and again with
      MP3/M4B encoding when ffmpeg is present);
  (b) a plain loop: one process, the engine loaded once, lines in order, each take normalised inline and written;
  (b') the same loop followed by what (a) also delivers: the chapters mastered and the book WAV (same code);
  (d) (a)'s deliverable by hand on every core, no orchestration (threads, an engine each; the ceiling for a/b);
  (c) the old web UI's way: one request per line, the voice prompt prepared and the reference clip re-read
      and resampled per request, normalisation on the same thread, caches released after each request.

    .venv/bin/python bench/pipeline.py [--lines 200]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, lines_of, planned_lines, prepare_environment, save, write_manifest  # noqa: E402
from tasks.core.processes import usable_cores

ENGINE = "hibari"  # the embedded default: where orchestration overhead shows most


class CpuClock:
    """CPU seconds spent by this process and by its child processes (the Prefect server it started) while
    running: on a machine with few cores, a pipeline is only as fast as its CPU work allows."""

    def __enter__(self) -> "CpuClock":
        self.start, self.children_start = os.times(), self._children()
        return self

    def __exit__(self, *exc) -> None:
        end = os.times()
        self.process = end.user - self.start.user + end.system - self.start.system
        self.others = self._children() - self.children_start

    @staticmethod
    def _children() -> float:
        import psutil

        total = 0.0
        for child in psutil.Process().children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:  # gone meanwhile
                pass
        return total


def plain_loop(manifest: Path, out: Path) -> tuple[float, float]:
    """(b): load once, render each line, normalise it inline (BS.1770 to -19 LUFS, peak-limited), write it."""
    from engine.pool import warm_engine
    from tasks.audio.loudness import normalise, resolve_target
    from tasks.audio.wav import write_wav_atomic

    start = time.perf_counter()
    engine = warm_engine(ENGINE, "cpu", "auto", lane=90).engine  # its own instance: a cold load, like a new process
    target = resolve_target("audiobook")
    audio_seconds = 0.0
    for i, request in enumerate(lines_of(manifest, ENGINE)):
        audio = engine.render([request])[0]
        audio, _ = normalise(audio, target, 24_000)
        write_wav_atomic(out / f"{i:05d}.wav", audio)
        audio_seconds += audio.size / 24_000
    return time.perf_counter() - start, audio_seconds


def _render_normalised(lines: list, lane: int, target, out: Path, normalised: dict[str, str]) -> float:
    """Render `lines` ((job, request) pairs) in order on one engine instance, each take normalised inline and
    written as (a) writes its normalised takes; their paths go into `normalised`. Returns their audio seconds."""
    from engine.pool import warm_engine
    from tasks.audio.loudness import normalise
    from tasks.audio.wav import write_wav_atomic

    engine = warm_engine(ENGINE, "cpu", "auto", lane=lane).engine  # its own instance: a cold load
    seconds = 0.0
    for job, request in lines:
        audio, _ = normalise(engine.render([request])[0], target, 24_000)
        path = out / "takes" / f"{job.key}.wav"
        write_wav_atomic(path, audio, subtype="PCM_24")
        normalised[job.key] = str(path)
        seconds += audio.size / 24_000
    return seconds


def _chapters_and_book(script, lines: list, normalised: dict[str, str], target, out: Path, each=map) -> None:
    """What (a) delivers after the takes, with the flow's own code: every chapter mastered (through `each`, a
    map: serial or a pool's), then the book WAV."""
    from flows.deliver import book_path
    from tasks.output.export import chapter_path, export_book
    from tasks.output.mastering import master_chapter

    d = script.manifest.defaults
    chapters = list(each(lambda ch: master_chapter(
        [job for job, _ in lines if job.chapter == ch.index], normalised,
        chapter_path(out, script.manifest.title, ch.index, ch.title), ch.index, ch.title,
        d.speaker_pause_duration, d.chunk_pause_duration, target).output, script.chapters))
    export_book(chapters, book_path(script, out), script.manifest.title,
                room_tone_dbfs=target.room_tone_dbfs if target.room_tone else None)


def plain_loop_with_chapters(manifest: Path, out: Path) -> tuple[float, float]:
    """(b'): (b), then what (a) also delivers, in the same process after the loop: each chapter assembled from
    its normalised takes and mastered, and the book WAV; the same code as the flow's, no orchestration."""
    start = time.perf_counter()
    script, lines = planned_lines(manifest, ENGINE)
    target = script.manifest.loudness.resolve()
    normalised: dict[str, str] = {}
    audio_seconds = _render_normalised(lines, 92, target, out, normalised)
    _chapters_and_book(script, lines, normalised, target, out)
    return time.perf_counter() - start, audio_seconds


def two_lanes_by_hand(manifest: Path, out: Path) -> tuple[float, float]:
    """(d): the most any orchestration could get from this machine's cores for (a)'s deliverable: hand-written,
    no Prefect, no provenance, no raw-take cache. One thread per core, each with its own engine instance,
    renders every n-th line and normalises it inline; then the chapters are mastered side by side and the
    book written, with the flow's own code."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    lanes = usable_cores()
    script, lines = planned_lines(manifest, ENGINE)
    target = script.manifest.loudness.resolve()
    normalised: dict[str, str] = {}
    with ThreadPoolExecutor(lanes) as pool:
        audio_seconds = sum(pool.map(lambda n: _render_normalised(lines[n::lanes], 100 + n, target, out, normalised),
                                     range(lanes)))
        _chapters_and_book(script, lines, normalised, target, out, each=pool.map)
    return time.perf_counter() - start, audio_seconds


def old_web_ui(manifest: Path, out: Path) -> tuple[float, float]:
    """(c): per request: prepare the prompt, re-read and resample the voice's reference, render, normalise
    (RMS, as the old UI did) on the same thread, write, release caches."""
    import gc

    import soundfile as sf
    import soxr

    from engine.pool import warm_engine
    from tasks.audio.wav import write_wav_atomic

    start = time.perf_counter()
    engine = warm_engine(ENGINE, "cpu", "auto", lane=91).engine
    audio_seconds = 0.0
    for i, request in enumerate(lines_of(manifest, ENGINE)):
        reference, rate = sf.read(str(ROOT / "voices" / request.voice.voice_id / "reference.wav"), dtype="float32")
        soxr.resample(reference, rate, 24_000)  # the reference "encoded" again for every request
        audio = engine.render([request])[0]
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) or 1.0
        audio = np.clip(audio * (0.15 / rms), -1.0, 1.0)
        write_wav_atomic(out / f"{i:05d}.wav", audio)
        engine.clear_caches()
        gc.collect()
        audio_seconds += audio.size / 24_000
    return time.perf_counter() - start, audio_seconds


def flow_run(manifest: Path, out: Path, encode: bool) -> dict:
    from flows.render import render_manifest

    saved = os.environ["PATH"]
    if not encode:
        os.environ["PATH"] = str(Path(sys.executable).parent)  # no ffmpeg: WAV only, as the loop writes
    try:
        with CpuClock() as cpu:
            start = time.perf_counter()
            summary = render_manifest(str(manifest), engine=ENGINE, output_dir=str(out))
            total = time.perf_counter() - start
    finally:
        os.environ["PATH"] = saved
    from engine.pool import get_engine, lane_count
    from tasks.store.db import connect

    with connect(Path(summary.database)) as con:  # the takes' audio, as (b) and (c) count it: no pauses, no room tone
        take_audio = con.execute("SELECT sum(duration) FROM renders WHERE run_id = ?", [summary.run_id]).fetchone()[0]
    lanes = summary.lane_busy_seconds / summary.render_phase_seconds if summary.render_phase_seconds else 0
    lane_total = lane_count(get_engine(ENGINE, "cpu", "auto"))
    return {"total_s": total, "prefect_and_orchestration_s": total - summary.wall_seconds,
            "wall_s": summary.wall_seconds, "audio_s": take_audio, "load_s": summary.load_seconds,
            "lane_busy_s": summary.lane_busy_seconds, "render_phase_s": summary.render_phase_seconds,
            "lanes_in_use_avg": lanes, "lanes": lane_total,
            "lane_wait_s": lane_total * summary.render_phase_seconds - summary.lane_busy_seconds,
            "takes": summary.takes_rendered, "at": summary.milestones,
            "cpu_s": cpu.process + cpu.others, "server_cpu_s": cpu.others}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    scratch = prepare_environment()
    import flows  # noqa: F401

    manifest = write_manifest(scratch, args.lines, name="pipeline")
    # Prefect's temporary server starts on the first flow call: start it with a tiny run, timed apart.
    warmup = write_manifest(scratch, 4, name="warmup")
    startup_start = time.perf_counter()
    flow_run(warmup, scratch / "warmup", encode=False)
    prefect_startup = time.perf_counter() - startup_start

    with CpuClock() as b_cpu:
        b_wall, b_audio = plain_loop(manifest, scratch / "loop")
    b2_wall, _ = plain_loop_with_chapters(manifest, scratch / "loop-chapters")
    with CpuClock() as d_cpu:
        d_wall, _ = two_lanes_by_hand(manifest, scratch / "by-hand")
    c_wall, c_audio = old_web_ui(manifest, scratch / "old")
    a = flow_run(manifest, scratch / "flow", encode=False)
    a_enc = flow_run(manifest, scratch / "flow-encoded", encode=True)

    rate = lambda audio, wall: audio / wall  # noqa: E731
    a_rate, b_rate, c_rate = rate(a["audio_s"], a["wall_s"]), rate(b_audio, b_wall), rate(c_audio, c_wall)
    results = {
        "lines": args.lines, "engine": ENGINE,
        "prefect_startup_s (first flow call, apart)": round(prefect_startup, 2),
        "a_flow_wall_s": round(a["wall_s"], 2), "a_audio_s_per_s": round(a_rate, 1),
        "a_model_load_s": round(a["load_s"], 2), "a_render_lane_busy_s": round(a["lane_busy_s"], 2),
        "a_render_phase_s": round(a["render_phase_s"], 2),
        "a_lanes_in_use_avg": round(a["lanes_in_use_avg"], 2),
        "a_orchestration_per_line_ms": round(1000 * a["prefect_and_orchestration_s"] / args.lines, 2),
        "a_render_lanes": a["lanes"], "a_render_lane_wait_s": round(a["lane_wait_s"], 2),
        # (a) does more than (b): chapters mastered as a whole and the book. Where its time goes, from its start:
        "a_first_engine_call_at_s": round(a["at"].get("render_start", 0), 2),
        "a_last_engine_call_end_at_s": round(a["at"].get("render_end", 0), 2),
        "a_all_takes_normalised_at_s (like-for-like with b)": round(a["at"]["takes_normalised"], 2),
        "a_chapters_mastered_at_s": round(a["at"]["chapters_mastered"], 2),
        "a_book_written_at_s": round(a["at"]["book_written"], 2),
        "a_after_render_s (mastering, book, provenance)": round(a["wall_s"] - a["at"].get("render_end", 0), 2),
        "a_audio_s_per_s_to_takes_normalised": round(a["audio_s"] / a["at"]["takes_normalised"], 1),
        "a_with_mp3_m4b_wall_s": round(a_enc["wall_s"], 2),
        "a_with_mp3_m4b_encoded_at_s": round(a_enc["at"]["encoded"], 2),
        # CPU seconds, whole run (a: this process and the temporary Prefect server beside it). (a) does more work
        # than (b): chapters mastered as a whole and the book, plus orchestration and provenance; on this
        # machine's cores its wall time cannot go under its CPU work shared over them.
        "a_cpu_s": round(a["cpu_s"], 2), "a_prefect_server_cpu_s": round(a["server_cpu_s"], 2),
        "b_cpu_s": round(b_cpu.process + b_cpu.others, 2), "cores": usable_cores(),
        "ratio_a_over_b_at_best (b wall / (a cpu / cores))": round(b_wall / (a["cpu_s"] / usable_cores()), 2),
        "b_plain_loop_wall_s": round(b_wall, 2), "b_audio_s_per_s": round(b_rate, 1),
        "b2_plain_loop_with_chapters_and_book_wall_s": round(b2_wall, 2),
        "ratio_a_over_b2 (same deliverable: chapters and book WAV)": round(b2_wall / a["wall_s"], 2),
        # (d) bounds what orchestration could reach here: (a)'s deliverable on every core with nothing else.
        "d_two_lanes_by_hand_wall_s": round(d_wall, 2), "d_cpu_s": round(d_cpu.process + d_cpu.others, 2),
        "ratio_d_over_b (the most a/b could be on this machine)": round(b_wall / d_wall, 2),
        "ratio_a_over_d": round(d_wall / a["wall_s"], 2),
        "c_old_web_ui_wall_s": round(c_wall, 2), "c_audio_s_per_s": round(c_rate, 1),
        "ratio_a_over_b": round(a_rate / b_rate, 2), "ratio_a_over_c": round(a_rate / c_rate, 2),
        "ratio_a_takes_normalised_over_b": round(b_wall / a["at"]["takes_normalised"], 2),
    }
    for key, value in results.items():
        print(f"{key:48s} {value}")
    save("pipeline", results)


if __name__ == "__main__":
    main()
