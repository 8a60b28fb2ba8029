"""Acceptance for loudness and delivery, through the real flow: exported files measured by ffmpeg's ebur128
meter (not the library that normalised them), M4B/MP3 chapters read back with ffprobe, the report in
provenance, and a PATH without ffmpeg giving WAVs and a warning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from conftest import rows
from meters import ebur128, ffprobe
from tasks.output.encode import NO_FFMPEG
from tasks.audio.loudness import resolve_target

pytestmark = pytest.mark.usefixtures("ffmpeg_installed")
PROSE = ("The lamp room was warm, and the glass hummed faintly as the light turned. Ava wiped the lens with a soft "
         "cloth, the way her father had shown her, and watched the beam sweep over the grey water.")


def small_manifest(root: Path, folder: Path, name: str, loudness: dict | None) -> Path:
    """The dialogue demo's first chapter and a prose chapter, with a loudness block."""
    data = yaml.safe_load((root / "manifests/demo-dialogue.yaml").read_text())
    data["title"] = f"Dialogue {name}"
    data["author"] = "Test Author"
    data["chapters"] = [data["chapters"][0], {"title": "In the lamp room", "speaker": "Ava", "text": PROSE}]
    if loudness:
        data["loudness"] = loudness
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def preset_runs(demo_runs, tmp_path_factory, root):
    """Every preset rendered through the flow: the demos (audiobook, the default) plus podcast and broadcast."""
    from flows.render import render_manifest

    folder = tmp_path_factory.mktemp("presets")
    runs = {f"audiobook:{k}": v for k, v in demo_runs[1].items()}
    for preset in ("podcast", "broadcast"):
        path = small_manifest(root, folder, preset, {"preset": preset})
        runs[preset] = render_manifest(manifest=str(path), output_dir=str(folder / "out"))
    return runs


def target_of(name: str):
    return resolve_target(name.split(":")[0])


def test_every_chapter_meets_its_preset_on_an_independent_meter(preset_runs):
    for name, summary in preset_runs.items():
        target = target_of(name)
        mp3s = [p for p in summary.encoded if p.endswith(".mp3") and Path(p).stem != Path(summary.book).stem]
        assert len(mp3s) == len(summary.chapters)
        for path in [*summary.chapters, *mp3s]:
            m = ebur128(path)
            assert abs(m.integrated_lufs - target.target) <= 0.5, (name, path, m)
            assert m.true_peak_dbtp <= target.ceiling, (name, path, m)
            assert m.sample_peak_dbfs < 0, (name, path, m)
        for path in summary.chapters:
            pcm, _ = sf.read(path, dtype="int16")
            assert np.abs(pcm.astype(np.int32)).max() < 32767, (name, path)  # no sample at full scale


def test_book_files_hold_each_chapter_at_its_target_with_markers_at_the_joins(preset_runs):
    for name, summary in preset_runs.items():
        target = target_of(name)
        durations = [sf.info(p).frames / sf.info(p).samplerate for p in summary.chapters]
        # The encoded books join the encoded chapters back to back: each one adds its codec priming and padding
        # (ffmpeg's AAC: up to three frames, ~0.07 s); the exact marks are checked in tests/test_encode.py and
        # tests/test_longbook.py.
        starts = np.cumsum([0.0] + durations[:-1])
        titles = [r["title"] for r in summary.loudness]
        for suffix in (".m4b", ".mp3"):
            path = Path(summary.book).with_suffix(suffix)
            assert str(path) in summary.encoded
            info = ffprobe(path)
            tags = {k.lower(): v for k, v in info["format"]["tags"].items()}
            assert tags["title"] == tags["album"] and tags["artist"] in ("voicebatch demo", "Test Author")
            chapters = info["chapters"]
            assert [c["tags"]["title"] for c in chapters] == titles, (name, suffix)
            for c, start, duration in zip(chapters, starts, durations):
                assert 0 <= float(c["start_time"]) - start <= 0.1 * chapters.index(c), (name, suffix, c, start)
                m = ebur128(path, start=float(c["start_time"]), duration=duration)
                assert abs(m.integrated_lufs - target.target) <= 0.5, (name, suffix, c["tags"]["title"], m)
                assert m.true_peak_dbtp <= target.ceiling and m.sample_peak_dbfs < 0, (name, suffix, m)


def test_report_is_stored_and_passes_and_takes_sit_at_one_loudness(preset_runs):
    for name, summary in preset_runs.items():
        target = target_of(name)
        stored = rows(summary.database, "SELECT * FROM chapter_loudness WHERE run_id = ? ORDER BY chapter",
                      [summary.run_id])
        assert len(stored) == len(summary.chapters) == len(summary.loudness)
        for row, printed in zip(stored, summary.loudness):
            assert row["passed"] and row["problems"] == "[]", (name, row)
            assert row["preset"] == target.preset and row["integrated_lufs"] == pytest.approx(printed["integrated_lufs"])
            assert row["path"] in summary.chapters and row["loudness_range_lu"] > 0
            assert row["true_peak_dbtp"] <= target.ceiling and row["noise_floor_dbfs"] < -60
            independent = ebur128(row["path"])
            assert row["integrated_lufs"] == pytest.approx(independent.integrated_lufs, abs=0.2)
            assert row["loudness_range_lu"] == pytest.approx(independent.loudness_range_lu, abs=1.5)  # see README
        levels = rows(summary.database, "SELECT t.*, r.speaker FROM take_levels t JOIN renders r "
                      "ON r.run_id = t.run_id AND r.cache_key = t.key WHERE t.run_id = ?", [summary.run_id])
        assert {r["key"] for r in levels} == {r["cache_key"] for r in rows(
            summary.database, "SELECT cache_key FROM renders WHERE run_id = ?", [summary.run_id])}
        by_speaker = {}
        for r in levels:
            assert r["mode"] == "lufs" and abs(r["level_after"] - target.target) < 0.1, (name, r)
            by_speaker.setdefault(r["speaker"], []).append(r["level_after"])
        assert len(by_speaker) == 2  # both speakers, brought to the same loudness
        for r in levels[:3]:
            if sf.info(r["path"]).duration > 1.0:
                assert abs(ebur128(r["path"]).integrated_lufs - target.target) <= 0.5


def test_audiobook_chapters_meet_acx_rms_and_noise_floor_with_room_tone(preset_runs):
    acx = resolve_target("audiobook")
    for name, summary in preset_runs.items():
        if not name.startswith("audiobook"):
            continue
        for path in summary.chapters:
            audio, rate = sf.read(path, dtype="float64")
            rms = 20 * np.log10(np.sqrt(np.mean(audio**2)))
            assert -23 <= rms <= -18, (path, rms)
            head = audio[: int(0.5 * rate)]  # room tone before the first line: sound, under the noise floor
            head_rms = 20 * np.log10(np.sqrt(np.mean(head**2)))
            assert np.count_nonzero(head) > 0.9 * head.size and head_rms <= acx.noise_floor_max, (path, head_rms)


def test_without_ffmpeg_the_run_writes_wav_only_and_says_how_to_get_the_rest(demo_runs, root, tmp_path, monkeypatch):
    from flows.render import render_manifest

    path = small_manifest(root, tmp_path, "no-ffmpeg", {"preset": "podcast"})
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    summary = render_manifest(manifest=str(path), output_dir=str(tmp_path / "out"))
    assert summary.status == "completed" and summary.encoded == [] and summary.warnings == [NO_FFMPEG]
    assert "apt-get install ffmpeg" in NO_FFMPEG and "brew install ffmpeg" in NO_FFMPEG
    written = sorted(p.suffix for p in Path(summary.book).parent.iterdir())
    assert written == [".wav"] * 3
    assert all(r["passed"] for r in summary.loudness)
