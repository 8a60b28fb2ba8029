"""Voice preload in the render flow: references staged and transcripts settled before planning, once;
bad references refused before anything renders; keys of manual-transcript voices unchanged."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from tasks.core.settings import get_settings
from reference_clips import ROOT, SENTENCE, word_error_rate, write_clip
from engine import whisper as transcribe
from tasks.core.errors import VoiceError

pytestmark = pytest.mark.slow


def _write_voice(voices: Path, voice_id: str, clip: Path, transcript: str | None = None) -> None:
    folder = voices / voice_id
    folder.mkdir(parents=True)
    shutil.copyfile(clip, folder / clip.name)
    spec = {"name": voice_id.title(), "reference": clip.name, "engine": "hibari", "engines": {"hibari": {"voice": "heart"}}}
    if transcript:
        spec["transcript"] = transcript
    (folder / "voice.yaml").write_text(yaml.safe_dump(spec))


def _manifest(path: Path, voices: dict[str, str]) -> Path:
    speakers = list(voices)
    lines = [{"speaker": speakers[i % len(speakers)], "text": f"Preload test line {i + 1}."} for i in range(4)]
    path.write_text(yaml.safe_dump({"title": "Preload Test", "voices": voices,
                                    "chapters": [{"title": "One", "lines": lines}]}, sort_keys=False))
    return path


def _rows(db: Path, sql: str, params: list) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(sql, params)
        return [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory, whisper_tiny_en):
    """A voices folder with `ava` (manual transcript) and `nova` (an MP3 of the embedded engine's speech with no
    transcript), and the settings a run reads pointed at it, Whisper forced on for every voice."""
    from engine.base import DecodingParams, RenderRequest, VoicePrompt
    from engine.hibari import HibariEngine

    work = tmp_path_factory.mktemp("preload")
    voices = work / "voices"
    shutil.copytree(ROOT / "voices" / "ava", voices / "ava")
    engine = HibariEngine()
    spoken = engine.render([RenderRequest(SENTENCE, VoicePrompt("nova", "0" * 64), DecodingParams(seed=2))])[0]
    _write_voice(voices, "nova", write_clip(work / "nova.mp3", spoken, 24_000))
    settings = get_settings()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "voices_dir", voices)
        mp.setattr(settings, "whisper_model", str(whisper_tiny_en))
        mp.setattr(settings, "transcribe", "always")
        mp.setattr(settings, "device", "cpu")
        yield work, voices


@pytest.fixture(scope="module")
def two_runs(library):
    from flows.render import render_manifest

    work, _ = library
    manifest, out = _manifest(work / "m.yaml", {"Ava": "ava", "Nova": "nova"}), work / "out"
    first = render_manifest(str(manifest), output_dir=str(out))
    staged = {p: os.stat(p).st_mtime_ns for p in (out / ".voicebatch" / "voices").glob("*.wav")}
    transcribe._models.clear()  # a Whisper call in the second run would have to load the model again
    second = render_manifest(str(manifest), output_dir=str(out))
    return first, second, staged, out


def test_first_run_stages_every_reference_and_transcribes_the_voice_without_one(two_runs):
    first, _, staged, _ = two_runs
    rows = {r["voice_id"]: r for r in _rows(Path(first.database), "SELECT * FROM voices WHERE run_id = ?",
                                            [first.run_id])}
    assert set(rows) == {"ava", "nova"} and len(staged) == 2
    assert rows["ava"]["converted"] and rows["nova"]["converted"]
    assert (rows["ava"]["transcript_source"], rows["ava"]["transcribed"]) == ("manual", False)
    assert (rows["nova"]["transcript_source"], rows["nova"]["transcribed"]) == ("whisper", True)
    assert rows["nova"]["whisper_model"].startswith("file:")
    assert word_error_rate(SENTENCE, rows["nova"]["transcript"]) <= 0.1
    assert rows["nova"]["staged_path"] in {str(p) for p in staged}
    assert rows["nova"]["source_path"].endswith("nova.mp3") and rows["nova"]["duration"] > 1


def test_second_run_makes_zero_whisper_calls_and_zero_conversions(two_runs):
    first, second, staged, out = two_runs
    rows = _rows(Path(second.database), "SELECT * FROM voices WHERE run_id = ?", [second.run_id])
    assert len(rows) == 2
    assert sum(r["converted"] for r in rows) == 0 and sum(r["transcribed"] for r in rows) == 0
    assert transcribe._models == {}  # Whisper was not even loaded
    assert {p: os.stat(p).st_mtime_ns for p in (out / ".voicebatch" / "voices").glob("*.wav")} == staged
    assert _rows(Path(second.database), "SELECT count(*) AS n FROM voice_transcripts", [])[0]["n"] == 1
    assert second.takes_rendered == 0  # the Whisper transcript is stable, so the cache keys are too


def test_engines_get_the_staged_reference_and_the_settled_transcript(library, two_runs):
    from tasks.script.ingest import ingest
    from tasks.render.engines import prepare_engines
    from tasks.voices.preparation import conversion_settings, prepare_voice, with_prepared_voices

    work, voices = library
    first, _, _, out = two_runs
    script = ingest(work / "m.yaml", voices)
    settings = get_settings()
    prepared = {v.id: prepare_voice(v, out / ".voicebatch" / "voices", Path(first.database), conversion_settings(settings),
                                    settings.whisper_model, "cpu") for v in script.voices.values()}
    setup = prepare_engines(with_prepared_voices(script, prepared), None, "hibari", "cpu", "auto")
    nova = setup.prompts["hibari"]["nova"]
    assert nova.reference == Path(prepared["nova"].staged.path) and nova.reference.parent == out / ".voicebatch" / "voices"
    assert nova.transcript == prepared["nova"].transcript and nova.content_hash == script.voices["Nova"].content_hash


def test_manual_transcript_voices_keep_their_cache_keys(library, two_runs):
    """Preparing voices must not change the keys of voices with manual transcripts on engines that do not
    hear the reference (takes rendered before voice preparation existed stay valid)."""
    from engine.base import DecodingParams
    from tasks.script.ingest import ingest
    from tasks.script.plan import EngineFacts, cache_key
    from tasks.voices.preparation import conversion_settings, prepare_voice, with_prepared_voices

    work, voices = library
    first, _, _, out = two_runs
    script = ingest(work / "m.yaml", voices)
    settings = get_settings()
    prepared = {v.id: prepare_voice(v, out / ".voicebatch" / "voices", Path(first.database), conversion_settings(settings),
                                    None) for v in script.voices.values()}
    ready = with_prepared_voices(script, prepared)
    params = DecodingParams()
    plain = EngineFacts("hibari", "hibari-tts", "0.2.1", "1", frozenset({"seed"}))
    cloning = EngineFacts("cloner", "m", None, "1", frozenset(), uses_reference=True)
    assert cache_key("Hi.", ready.voices["Ava"], params, plain) == cache_key("Hi.", script.voices["Ava"], params, plain)
    # An engine that hears the clip keys on how it was staged, too.
    assert cache_key("Hi.", ready.voices["Ava"], params, cloning) != cache_key("Hi.", script.voices["Ava"], params,
                                                                               cloning)


def test_bad_references_are_refused_before_anything_renders(library, tmp_path):
    from flows.render import render_manifest

    work, voices = library
    _write_voice(voices, "hush", write_clip(tmp_path / "hush.wav", np.zeros(48_000, np.float32), 24_000, "PCM_16"),
                 "Nothing at all.")
    _write_voice(voices, "blip", write_clip(tmp_path / "blip.flac", np.full(12_000, 0.1, np.float32), 24_000, "PCM_16"),
                 "Hi.")
    manifest = _manifest(tmp_path / "bad.yaml", {"Ava": "ava", "Hush": "hush", "Blip": "blip"})
    out = tmp_path / "out"
    with pytest.raises(VoiceError) as caught:
        render_manifest(str(manifest), output_dir=str(out))
    message = str(caught.value)
    assert "2 voices cannot be used" in message
    assert f"{voices / 'hush' / 'hush.wav'}: is silent" in message
    assert f"{voices / 'blip' / 'blip.flac'}: is 0.50 s long, shorter than the 1 s minimum" in message
    run = _rows(out / "provenance.duckdb", "SELECT run_id, status FROM runs", [])
    assert [r["status"] for r in run] == ["failed"]
    assert _rows(out / "provenance.duckdb", "SELECT count(*) AS n FROM renders", [])[0]["n"] == 0
    assert not (out / ".voicebatch" / "takes").exists()
