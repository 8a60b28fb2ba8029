"""The demo manifests through the real flow: real Prefect runs, real DuckDB, real audio."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tasks.audio.assemble import FADE_SECONDS
from conftest import rows
from tasks.audio.wav import read_mono
from tasks.audio.loudness import PRESET_TARGETS

RATE = 24_000


def test_every_output_is_24k_mono_and_not_silent(demo_runs):
    _, runs = demo_runs
    for summary in runs.values():
        assert summary.status == "completed"
        for path in [*summary.chapters, summary.book]:
            info = sf.info(path)
            assert (info.samplerate, info.channels) == (RATE, 1), path
            audio, _ = read_mono(Path(path))
            rms_db = 20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
            assert rms_db > -40, (path, rms_db)
            assert np.max(np.abs(audio)) < 1.0


@pytest.mark.parametrize("name", ["demo-dialogue", "demo-audiobook"])
def test_chapters_hold_their_takes_in_manifest_order_with_the_pauses(demo_runs, root, name):
    out, runs = demo_runs
    summary = runs[name]
    manifest = yaml.safe_load((root / "manifests" / f"{name}.yaml").read_text())
    defaults = manifest.get("defaults", {})
    speaker_pause = defaults.get("speaker_pause_duration", 0.6)
    chunk_pause = defaults.get("chunk_pause_duration", 0.3)
    fade = int(FADE_SECONDS * RATE)
    for index, chapter_path in enumerate(summary.chapters):
        takes = rows(summary.database, "SELECT line, chunk, speaker, text, take_path, duration, cache_key FROM renders "
                     "WHERE run_id = ? AND chapter = ? ORDER BY line, chunk", [summary.run_id, index])
        spec = manifest["chapters"][index]
        if "lines" in spec:
            assert [t["text"] for t in takes] == [line["text"] for line in spec["lines"]]
            pauses = {i: line.get("pause_after") for i, line in enumerate(spec["lines"])}
        elif "script" in spec:
            script = (root / "manifests" / spec["script"]).read_text().splitlines()
            expected = [l.split("]", 1)[1].strip() for l in script if l.startswith("[")]
            assert [t["text"] for t in takes] == expected
            pauses = {}
        else:
            assert " ".join(t["text"] for t in takes).split() == spec["text"].split()
            pauses = {}
        (loud,) = rows(summary.database, "SELECT chapter_gain_db FROM chapter_loudness WHERE run_id = ? AND chapter = ?",
                       [summary.run_id, index])
        normalised = {r["key"]: r["path"] for r in rows(summary.database, "SELECT key, path FROM take_levels "
                                                                          "WHERE run_id = ?", [summary.run_id])}
        chapter_gain = 10 ** (loud["chapter_gain_db"] / 20)
        chapter, _ = read_mono(Path(chapter_path))
        head = round(PRESET_TARGETS["audiobook"].head_seconds * RATE)  # the demos use the default preset
        offset, expected_length = head, head
        for i, take in enumerate(takes):
            audio, _ = read_mono(Path(normalised[take["cache_key"]]))
            inner = slice(offset + fade, offset + len(audio) - fade)
            # The normalised take times the chapter's correction, under room tone at -75 dBFS: it sits here.
            np.testing.assert_allclose(chapter[inner], chapter_gain * audio[fade:len(audio) - fade], atol=0.02)
            assert np.median(np.abs(chapter[inner] - chapter_gain * audio[fade:len(audio) - fade])) < 1e-3
            gap = 0.0
            if i + 1 < len(takes):
                last_chunk = takes[i + 1]["line"] != take["line"]
                pause = pauses.get(take["line"]) if last_chunk else None
                gap = pause if pause is not None else (
                    chunk_pause if takes[i + 1]["speaker"] == take["speaker"] else speaker_pause)
                pause_audio = chapter[offset + len(audio): offset + len(audio) + round(gap * RATE)].astype(np.float64)
                assert 0 < np.sqrt(np.mean(pause_audio**2)) < 10 ** (-60 / 20)  # room tone: not silence, not loud
            offset += len(audio) + round(gap * RATE)
            expected_length += len(audio) + round(gap * RATE)
        assert len(chapter) >= expected_length
        assert len(chapter) / RATE >= sum(t["duration"] for t in takes)


def test_provenance_rows_match_the_run(demo_runs, root):
    from prefect.client.orchestration import get_client

    _, runs = demo_runs
    for name, summary in runs.items():
        manifest_path = root / "manifests" / f"{name}.yaml"
        (run,) = rows(summary.database, "SELECT * FROM runs WHERE run_id = ?", [summary.run_id])
        assert run["status"] == "completed" and run["ended_at"] >= run["started_at"]
        assert run["manifest_sha256"] == hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        assert run["manifest_path"] == str(manifest_path)
        assert run["device"] == "cpu"
        renders = rows(summary.database, "SELECT * FROM renders WHERE run_id = ?", [summary.run_id])
        assert run["takes_rendered"] == len({r["cache_key"] for r in renders}) == summary.takes_rendered
        for r in renders:
            assert hashlib.sha256(Path(r["take_path"]).read_bytes()).hexdigest() == r["take_sha256"]
            assert r["status"] == "rendered" and r["duration"] > 0.3 and r["render_seconds"] > 0
        outputs = rows(summary.database, "SELECT * FROM outputs WHERE run_id = ?", [summary.run_id])
        wavs = [o["path"] for o in outputs if o["kind"] in ("chapter", "book")]
        assert sorted(wavs) == sorted([*summary.chapters, summary.book])
        assert sorted(o["path"] for o in outputs if o["kind"] not in ("chapter", "book")) == sorted(summary.encoded)
        for o in outputs:
            assert hashlib.sha256(Path(o["path"]).read_bytes()).hexdigest() == o["sha256"]
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(run["flow_run_id"])
        assert flow_run.state.is_completed() and str(flow_run.id) == summary.run_id


def test_dialogue_speakers_use_their_own_engines_and_seeds(demo_runs):
    _, runs = demo_runs
    summary = runs["demo-dialogue"]
    by_speaker = rows(summary.database, "SELECT speaker, engine, any_value(seed) AS seed, any_value(params) AS params "
                      "FROM renders WHERE run_id = ? GROUP BY ALL ORDER BY speaker", [summary.run_id])
    assert [(r["speaker"], r["engine"], r["seed"]) for r in by_speaker] == [("Ava", "hibari", 1), ("Joe", "piper", 11)]
    assert '"temperature": 0.6' in by_speaker[1]["params"]


def test_run_milestones_are_in_order_and_the_takes_are_normalised_before_the_chapters(demo_runs):
    """The summary says when each step of the run was reached: the bench reads (a)'s time to normalised takes
    (the plain loop's deliverable) and what mastering and the book add after the last render from these."""
    _, runs = demo_runs
    for name, summary in runs.items():
        at = summary.milestones
        order = ["render_start", "render_end", "takes_normalised", "chapters_mastered", "book_written", "encoded",
                 "finished"]
        assert list(at) == order, (name, at)
        times = [at[k] for k in order]
        assert all(0 < a <= b for a, b in zip(times, times[1:])), (name, at)
        assert at["book_written"] <= summary.wall_seconds <= at["finished"]
        assert at["render_end"] - at["render_start"] == pytest.approx(summary.render_phase_seconds, abs=1e-6)
