"""Chapter mastering: the report is the reading of the exact 16-bit samples written; a chapter of takes that
are already normalised is written without a second gain, and one that is not is corrected first."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.base import DecodingParams
from tasks.audio.assemble import fade_edges, with_room_tone
from tasks.audio.wav import read_mono, read_pcm16, to_pcm16, write_wav_atomic
from tasks.audio.loudness import normalise, report, resolve_target
from tasks.output.mastering import CHAPTER_LEVEL_TOLERANCE_DB, master_chapter
from tasks.script.plan import RenderJob
from test_loudness import speechlike

RATE = 24_000


def chapter_of(folder: Path, takes: list[np.ndarray]) -> tuple[list[RenderJob], dict[str, str]]:
    jobs, paths = [], {}
    for i, audio in enumerate(takes):
        key = f"{i:02d}" + "0" * 62
        path = folder / f"{key}.wav"
        write_wav_atomic(path, audio, subtype="PCM_24")
        jobs.append(RenderJob(0, i, 0, "A" if i % 2 else "B", "v", "hibari", "text", DecodingParams(), None, "m", key))
        paths[key] = str(path)
    return jobs, paths


@pytest.mark.parametrize("preset", ["audiobook", "podcast"])
def test_a_chapter_already_on_target_is_written_as_assembled_and_measured_as_written(tmp_path, preset):
    target = resolve_target(preset)
    steady = (0.1 * np.random.default_rng(3).standard_normal(200 * RATE)).astype(np.float32)
    take, _ = normalise(steady, target, RATE)  # long and steady: the head and tail barely move the reading
    jobs, paths = chapter_of(tmp_path, [take])
    mastered = master_chapter(jobs, paths, tmp_path / "ch.wav", 0, "One", 0.6, 0.3, target)
    assert mastered.gain_db == 0.0
    as_assembled = with_room_tone(fade_edges(read_mono(Path(paths[jobs[0].key]))[0]),
                                  target.room_tone_dbfs if target.room_tone else None, target.head_seconds,
                                  target.tail_seconds, seed=0)
    assert np.array_equal(read_pcm16(tmp_path / "ch.wav"), to_pcm16(as_assembled))  # no second gain
    written, rate = read_mono(tmp_path / "ch.wav")
    assert mastered.report == report(written, target, rate)  # the file's own reading, to the last bit
    assert abs(mastered.report.integrated_lufs - target.target) < 0.02  # (all noise: no pauses for ACX to read)
    assert mastered.output.duration == written.size / RATE


@pytest.mark.parametrize("off_db,regained", [(0.06, False), (0.3, True)])
def test_a_chapter_a_few_hundredths_off_is_not_regained_and_one_further_off_is(tmp_path, off_db, regained):
    target = resolve_target("audiobook")
    steady = (0.1 * np.random.default_rng(3).standard_normal(200 * RATE)).astype(np.float32)
    take, _ = normalise(steady, target, RATE)
    jobs, paths = chapter_of(tmp_path, [take * np.float32(10 ** (off_db / 20))])
    mastered = master_chapter(jobs, paths, tmp_path / "ch.wav", 0, "One", 0.6, 0.3, target)
    assert (mastered.gain_db != 0.0) == regained
    assert abs(mastered.report.integrated_lufs - target.target) < (0.02 if regained else CHAPTER_LEVEL_TOLERANCE_DB)


def test_a_chapter_off_its_target_is_corrected_before_it_is_written(tmp_path):
    target = resolve_target("audiobook")
    takes = [speechlike(8.0, seed=s, level=0.01) for s in range(4)]  # never normalised: far under -19 LUFS
    jobs, paths = chapter_of(tmp_path, takes)
    mastered = master_chapter(jobs, paths, tmp_path / "ch.wav", 0, "One", 0.6, 0.3, target)
    assert mastered.gain_db > 5
    written, rate = read_mono(tmp_path / "ch.wav")
    assert mastered.report == report(written, target, rate)
    assert abs(mastered.report.integrated_lufs - target.target) < 0.1 and mastered.report.true_peak_dbtp <= target.ceiling


def test_a_chapter_with_a_missing_take_is_not_written(tmp_path):
    target = resolve_target("audiobook")
    jobs, paths = chapter_of(tmp_path, [speechlike(3.0, seed=1)])
    Path(paths[jobs[0].key]).unlink()
    assert master_chapter(jobs, paths, tmp_path / "ch.wav", 0, "One", 0.6, 0.3, target) is None
    assert not (tmp_path / "ch.wav").exists()
