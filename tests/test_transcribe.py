"""Transcripts: real Whisper (tiny.en) hears the embedded engine's speech; a tiny random checkpoint runs the
mechanics; a manual transcript always wins; Whisper runs once per staged clip and model."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from engine.base import DecodingParams, RenderRequest, VoicePrompt
from reference_clips import SENTENCE, word_error_rate, write_clip
from engine import whisper as transcribe
from tasks.voices.reference_audio import ConversionSettings
from engine.whisper import TranscriptionError
from tasks.voices.preparation import prepare_voice
from tasks.script.voices import load_voice

def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("a b c d", "a b c d") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("a b", "a b c d") == 1.0


@pytest.fixture(scope="module")
def embedded_speech():
    """A clip the embedded engine speaks now, at its 24 kHz."""
    from engine.hibari import HibariEngine

    engine = HibariEngine()
    engine.load()
    prompt = VoicePrompt("test", "0" * 64, options=(("voice", "heart"),))
    return engine.render([RenderRequest(SENTENCE, prompt, DecodingParams(seed=3))])[0]


def test_whisper_tiny_en_transcribes_the_embedded_engines_speech(whisper_tiny_en, embedded_speech):
    heard = transcribe.transcribe(embedded_speech, 24_000, str(whisper_tiny_en), "cpu")
    assert word_error_rate(SENTENCE, heard.text) <= 0.1, heard.text
    assert heard.language == "en" and heard.model.startswith("file:")


def test_tiny_random_checkpoint_runs_the_mechanics_deterministically(tiny_whisper, embedded_speech):
    first = transcribe.transcribe(embedded_speech, 24_000, str(tiny_whisper), "cpu")
    again = transcribe.transcribe(embedded_speech, 24_000, str(tiny_whisper), "cpu")
    assert first.text and first.text == again.text
    assert first.model == again.model == transcribe.model_id(str(tiny_whisper))


def test_a_missing_checkpoint_is_an_error_that_names_the_fix(tmp_path):
    with pytest.raises(TranscriptionError, match="VOICEBATCH_WHISPER_MODEL.*transcript"):
        transcribe.transcribe(np.zeros(24_000, np.float32), 24_000, str(tmp_path / "nope.pt"), "cpu")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(TranscriptionError, match="cannot load Whisper model"):
        transcribe.transcribe(np.zeros(24_000, np.float32), 24_000, str(broken), "cpu")


def _voice(voices: Path, voice_id: str, clip: Path, transcript: str | None):
    folder = voices / voice_id
    folder.mkdir(parents=True)
    shutil.copyfile(clip, folder / clip.name)
    spec = {"name": voice_id, "reference": clip.name, **({"transcript": transcript} if transcript else {})}
    (folder / "voice.yaml").write_text(yaml.safe_dump(spec))
    return load_voice(voices, voice_id)


def _transcript_rows(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM voice_transcripts").fetchone()[0]
    finally:
        con.close()


def test_whisper_runs_once_per_clip_and_a_manual_transcript_wins(tmp_path, whisper_tiny_en, embedded_speech):
    clip = write_clip(tmp_path / "said.mp3", embedded_speech, 24_000)
    heard = _voice(tmp_path / "voices", "heard", clip, None)
    written = _voice(tmp_path / "voices", "written", clip, "My own words for this clip.")
    db, staging, model = tmp_path / "p.duckdb", tmp_path / "staged", str(whisper_tiny_en)

    first = prepare_voice(heard, staging, db, ConversionSettings(), model, "cpu")
    assert first.transcribed and first.transcript_source == "whisper"
    assert word_error_rate(SENTENCE, first.transcript) <= 0.1
    transcribe._models.clear()  # forget the loaded model: a second transcription would have to load it again
    again = prepare_voice(heard, staging, db, ConversionSettings(), model, "cpu")
    assert (again.transcript, again.transcribed, again.staged.converted) == (first.transcript, False, False)
    assert transcribe._models == {} and _transcript_rows(db) == 1

    manual = prepare_voice(written, staging, db, ConversionSettings(), model, "cpu")
    assert (manual.transcript, manual.transcript_source, manual.transcribed) == (
        "My own words for this clip.", "manual", False)
    assert transcribe._models == {} and _transcript_rows(db) == 1
