"""Reference preprocessing: every accepted format comes out 24 kHz mono float32 of the right length, bad clips
are refused with the file and the fix named, and a staged clip is never converted twice."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reference_clips import similarity, speech, stereo, write_clip
from tasks.voices.reference_audio import (ConversionSettings, ReferenceAudioError, find_staged, stage_reference,
    staged_key)

# (file name, rate, channels, soundfile subtype): the inputs, plus OGG and M4A
FORMATS = [
    ("stereo-44k.wav", 44_100, 2, "PCM_16"),
    ("float-48k.wav", 48_000, 1, "FLOAT"),
    ("eight-bit.wav", 22_050, 1, "PCM_U8"),
    ("clip.mp3", 44_100, 2, None),
    ("clip.flac", 48_000, 2, "PCM_24"),
    ("clip.ogg", 32_000, 1, "VORBIS"),
    ("clip.m4a", 44_100, 1, None),
]


@pytest.mark.parametrize("name,rate,channels,subtype", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_becomes_24k_mono_float_of_the_same_length(tmp_path, name, rate, channels, subtype):
    mono = speech(rate)
    source = write_clip(tmp_path / name, stereo(mono) if channels == 2 else mono, rate, subtype)
    staged = stage_reference(source, tmp_path / "staged")
    info = sf.info(staged.path)
    assert (info.samplerate, info.channels, info.subtype) == (24_000, 1, "FLOAT")
    assert staged.source_rate == rate and staged.source_channels == channels
    assert abs(info.duration - len(mono) / rate) <= 0.010
    assert abs(staged.duration - info.duration) < 1e-6
    audio, _ = sf.read(staged.path, dtype="float32")
    # Same speech, not just the same length (lossy codecs shift and smear a little, so no sample equality).
    assert similarity(audio, speech()) > (0.99 if name.endswith((".wav", ".flac")) else 0.9)
    if channels == 2 and subtype:  # lossless stereo: the downmix is the mean of the channels
        assert np.max(np.abs(audio)) == pytest.approx(0.75 * np.max(np.abs(speech())), rel=0.03)


def test_an_unchanged_clip_is_converted_once_and_found_by_content(tmp_path):
    source = write_clip(tmp_path / "a.flac", speech(48_000), 48_000, "PCM_24")
    first = stage_reference(source, tmp_path / "staged")
    stamp = os.stat(first.path).st_mtime_ns
    again = stage_reference(source, tmp_path / "staged")
    assert first.converted and not again.converted
    assert again.path == first.path and os.stat(again.path).st_mtime_ns == stamp
    moved = tmp_path / "elsewhere" / "renamed.flac"
    moved.parent.mkdir()
    shutil.copyfile(source, moved)
    assert stage_reference(moved, tmp_path / "staged").converted is False  # keyed by content, not by path
    assert find_staged(first.source_sha256, tmp_path / "staged").path == first.path


def test_conversion_settings_are_part_of_the_staged_key(tmp_path):
    source = write_clip(tmp_path / "a.wav", speech(), 24_000, "PCM_16")
    default = stage_reference(source, tmp_path / "staged")
    shorter = stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5))
    assert shorter.key != default.key and shorter.converted
    assert shorter.key == staged_key(default.source_sha256, ConversionSettings(max_seconds=5))


def test_a_long_clip_without_transcript_is_trimmed_at_a_quiet_point_and_says_so(tmp_path, caplog):
    source = write_clip(tmp_path / "long.wav", speech(), 24_000, "PCM_16")  # ~9.1 s
    with caplog.at_level(logging.WARNING, logger="tasks.voices.reference_audio"):
        staged = stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5))
    assert 5 - 3 <= staged.duration <= 5
    assert staged.trimmed_from == pytest.approx(len(speech()) / 24_000)
    assert "trimmed from 9.1 s" in caplog.text and str(source) in caplog.text
    audio, _ = sf.read(staged.path)
    assert abs(audio[-1]) < 1e-3  # faded out, no click


def test_a_long_clip_is_refused_under_the_refuse_policy_or_with_a_manual_transcript(tmp_path):
    source = write_clip(tmp_path / "long.wav", speech(), 24_000, "PCM_16")
    with pytest.raises(ReferenceAudioError, match=r"refused: 9\.1 s is over the 5 s maximum.*VOICEBATCH_REFERENCE_OVER_MAX=trim"):
        stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5, over_max="refuse"))
    with pytest.raises(ReferenceAudioError, match="manual transcript"):
        stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5), allow_trim=False)
    # A clip trimmed earlier (no transcript then) is refused once a manual transcript is added.
    stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5))
    with pytest.raises(ReferenceAudioError, match="manual transcript"):
        stage_reference(source, tmp_path / "staged", ConversionSettings(max_seconds=5), allow_trim=False)


def _bad_clips(tmp: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "text.wav").write_text("this is not audio\n" * 50)
    (tmp / "text.mp3").write_text("this is not audio either\n" * 50)
    (tmp / "notes.txt").write_text("hello")
    return {
        "empty": (tmp / "empty.wav", r"empty \(0 bytes\)"),
        "not audio (soundfile)": (tmp / "text.wav", "not a readable WAV audio file"),
        "not audio (ffmpeg)": (tmp / "text.mp3", "not a readable audio file"),
        "unsupported format": (tmp / "notes.txt", r"\.txt is not a supported reference format; use WAV, FLAC"),
        "silent": (write_clip(tmp / "silent.wav", np.zeros(3 * 24_000, np.float32), 24_000, "PCM_16"), "is silent"),
        "near silent": (write_clip(tmp / "hiss.flac", (rng.standard_normal(3 * 24_000) * 3e-4).astype(np.float32),
                                   24_000, "PCM_24"), "is silent"),
        "too short": (write_clip(tmp / "short.wav", speech()[24_000:24_000 + 18_000], 24_000, "PCM_16"),
                      r"0\.75 s long, shorter than the 1 s minimum"),
        "invalid samples": (write_clip(tmp / "nan.wav", np.full(2 * 24_000, np.nan, np.float32), 24_000, "FLOAT"),
                            "NaN"),
    }


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
    return _bad_clips(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["empty", "not audio (soundfile)", "not audio (ffmpeg)", "unsupported format",
                                  "silent", "near silent", "too short", "invalid samples"])
def test_bad_references_are_refused_naming_the_file(bad_clips, tmp_path, case):
    path, message = bad_clips[case]
    with pytest.raises(ReferenceAudioError, match=message) as caught:
        stage_reference(path, tmp_path / "staged")
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == 2
    assert not (tmp_path / "staged").exists() or not any((tmp_path / "staged").iterdir())


def test_without_ffmpeg_compressed_formats_are_refused_naming_those_that_work(tmp_path, monkeypatch):
    mp3 = write_clip(tmp_path / "a.mp3", speech(), 24_000)
    flac = write_clip(tmp_path / "a.flac", speech(), 24_000, "PCM_16")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(ReferenceAudioError, match="ffmpeg, which is not installed.*FLAC, OGG, WAV") as caught:
        stage_reference(mp3, tmp_path / "staged")
    assert "MP3" in str(caught.value)
    assert stage_reference(flac, tmp_path / "staged").duration > 1  # soundfile formats still work
