"""Loudness math: presets, BS.1770 measurement against known signals and ffmpeg's meter, normalisation in every
mode, the true-peak limiter (peaks down, never clipped), the report's checks, and room tone."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.audio.assemble import room_tone, with_room_tone
from tasks.audio.wav import write_wav_atomic
from tasks.audio.limiter import enforce_ceiling, limit_true_peak, true_peak_dbtp, true_peak_envelope
from tasks.audio.loudness import (ENCODE_MARGIN_DB, OLD_WEB_UI_RMS_DBFS, PRESET_TARGETS, check, integrated_lufs,
    noise_floor_dbfs, normalise, report, resolve_target, rms_dbfs)
from meters import ebur128

RATE = 24_000


def speechlike(seconds: float, seed: int, level: float = 0.05) -> np.ndarray:
    """Voiced bursts (harmonics of a wandering pitch) with pauses: a crest factor like speech's."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.repeat(rng.random(n // 2400 + 1) > 0.3, 2400)[:n] * rng.uniform(0.3, 1.0, n // 2400 + 1).repeat(2400)[:n]
    envelope = np.convolve(syllables, np.hanning(600) / np.hanning(600).sum(), mode="same")
    return (level * voice * envelope).astype(np.float32)


def test_presets_carry_the_published_numbers():
    assert (PRESET_TARGETS["podcast"].target, PRESET_TARGETS["podcast"].ceiling) == (-16.0, -1.0)
    assert (PRESET_TARGETS["broadcast"].target, PRESET_TARGETS["broadcast"].ceiling) == (-23.0, -1.0)
    book = PRESET_TARGETS["audiobook"]
    assert book.ceiling == -3.0 and book.rms_window == (-23.0, -18.0) and book.noise_floor_max == -60.0
    assert book.room_tone and 0.5 <= book.head_seconds <= 1.0 and 1.0 <= book.tail_seconds <= 5.0
    assert resolve_target().preset == "audiobook" and resolve_target().mode == "lufs"


def test_overrides_and_refusals():
    custom = resolve_target("custom", target=-20, ceiling=-2)
    assert (custom.mode, custom.target, custom.ceiling) == ("lufs", -20.0, -2.0)
    assert resolve_target("custom", mode="rms").target == pytest.approx(OLD_WEB_UI_RMS_DBFS)  # old web UI parity
    assert resolve_target("podcast", mode="peak").target == -1.0
    assert resolve_target("podcast", room_tone=True).room_tone
    with pytest.raises(ValueError, match="needs a target"):
        resolve_target("custom")
    with pytest.raises(ValueError, match="unknown preset 'loud'"):
        resolve_target("loud")
    with pytest.raises(ValueError, match="above the ceiling"):
        resolve_target("custom", mode="peak", target=-0.5, ceiling=-1)


def test_lufs_of_a_sine_matches_bs1770_and_ffmpeg(tmp_path):
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS, so -20 dBFS reads -23.01.
    t = np.arange(10 * RATE) / RATE
    sine = (0.1 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    # (0.05 LU of slack: at 24 kHz the K-weighting filter is not exactly flat at 1 kHz)
    assert integrated_lufs(sine, RATE) == pytest.approx(-23.01, abs=0.1)
    speech = speechlike(12, seed=3)
    path = tmp_path / "speech.wav"
    write_wav_atomic(path, speech, subtype="FLOAT")
    assert integrated_lufs(speech, RATE) == pytest.approx(ebur128(path).integrated_lufs, abs=0.15)


def test_a_take_shorter_than_a_gating_block_is_measured_not_refused():
    t = np.arange(int(0.2 * RATE)) / RATE
    short = (0.1 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    assert integrated_lufs(short, RATE) == pytest.approx(-23.01, abs=0.1)
    out, adj = normalise(short, resolve_target("podcast"), RATE)
    assert adj.after == pytest.approx(-16.0, abs=0.1) and len(out) == len(short)


def test_true_peak_sees_the_peak_between_samples():
    # A sine at a quarter of the rate, sampled 45 degrees off its crest: every sample is at 0.707 of the peak.
    n = np.arange(RATE)
    x = (0.9 * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(20 * np.log10(0.9 * 0.7071), abs=0.01)
    inner = true_peak_envelope(x, RATE)[RATE // 10:-RATE // 10]  # the sine's abrupt ends ring: read the middle
    assert 20 * np.log10(inner.max()) == pytest.approx(20 * np.log10(0.9), abs=0.05)
    assert true_peak_dbtp(x, RATE) >= 20 * np.log10(0.9) - 0.05  # never under-reads


@pytest.mark.parametrize("preset,mode", [("podcast", None), ("broadcast", None), ("audiobook", None),
                                         ("custom", "rms"), ("custom", "peak")])
def test_normalise_reaches_the_target_with_peaks_under_the_ceiling(preset, mode):
    target = resolve_target(preset, mode=mode)
    for seed, level in ((1, 0.01), (2, 0.3)):  # far too quiet and far too loud
        out, adj = normalise(speechlike(6, seed, level), target, RATE)
        measured = {"lufs": integrated_lufs(out, RATE), "rms": rms_dbfs(out), "peak": true_peak_dbtp(out, RATE)}
        aim = min(target.target, target.limit_at) if target.mode == "peak" else target.target
        assert measured[target.mode] == pytest.approx(aim, abs=0.1)
        assert adj.after == pytest.approx(measured[target.mode], abs=1e-6)
        assert true_peak_dbtp(out, RATE) <= target.ceiling - ENCODE_MARGIN_DB + 1e-6
        assert np.max(np.abs(out)) < 1.0


def test_limiter_reduces_gain_smoothly_and_never_clips():
    x = speechlike(4, seed=5, level=0.2)
    x[RATE:RATE + 5] = 1.8  # a spike far over full scale
    y = limit_true_peak(x, -1.0, RATE)
    assert true_peak_dbtp(y, RATE) <= -1.0 + 0.05
    # Gain, not clipping: where the input is not tiny, output/input is one smooth curve in (0, 1].
    mask = np.abs(x) > 1e-3
    gain = np.ones_like(x, dtype=np.float64)
    gain[mask] = y[mask] / x[mask]
    assert np.all(gain[mask] > 0) and np.all(gain[mask] <= 1 + 1e-5)
    idx = np.flatnonzero(mask)
    assert np.max(np.abs(np.diff(gain[idx]) / np.maximum(np.diff(idx), 1))) < 0.2
    far = slice(2 * RATE, 4 * RATE)  # away from the spike the audio is untouched
    np.testing.assert_allclose(y[far], x[far], atol=1e-6)
    quiet = speechlike(2, seed=6, level=0.01)
    np.testing.assert_array_equal(limit_true_peak(quiet, -1.0, RATE), quiet)


def test_enforce_ceiling_guarantees_the_ceiling():
    x = speechlike(3, seed=7, level=2.0)  # everything over full scale
    y, peak = enforce_ceiling(x, -3.0, RATE)
    assert peak <= -3.0 and true_peak_dbtp(y, RATE) == pytest.approx(peak, abs=1e-3)


def test_report_flags_what_misses_the_preset():
    book = resolve_target("audiobook")
    speech = normalise(speechlike(20, seed=8), book, RATE)[0]
    silent_pauses = report(speech, book, RATE)
    assert not silent_pauses.passed and any("digital silence" in p for p in silent_pauses.problems)
    toned = normalise(with_room_tone(speech, book.room_tone_dbfs, 0.75, 2.0), book, RATE)[0]
    good = report(toned, book, RATE)
    assert good.passed, good.problems
    assert good.noise_floor_dbfs == pytest.approx(book.room_tone_dbfs, abs=1.5) and good.loudness_range_lu is not None
    values = dict(integrated_lufs=-19.0, rms_dbfs=-24.0, true_peak_dbtp=-2.0, sample_peak_dbfs=0.0, noise_floor_dbfs=-50.0)
    problems = " | ".join(check(values, book))
    for piece in ("RMS -24.0 dBFS is outside -23 to -18", "true peak -2.00 dBTP is above the ceiling -3",
                  "clipped", "noise floor -50.0 dBFS is above -60"):
        assert piece in problems
    assert "lufs level -17.0 LUFS is outside -19 ± 0.5" in check({**values, "integrated_lufs": -17.0}, book)[0]


def test_room_tone_is_quiet_steady_and_repeatable():
    tone = room_tone(5 * RATE, -75.0, seed=1)
    assert rms_dbfs(tone) == pytest.approx(-75.0, abs=0.05)  # scaled by its expected power: chance moves 5 s ~0.04 dB
    assert rms_dbfs(room_tone(20 * 60 * RATE, -75.0, seed=2)) == pytest.approx(-75.0, abs=0.005)
    np.testing.assert_array_equal(tone, room_tone(5 * RATE, -75.0, seed=1))
    assert noise_floor_dbfs(tone, RATE) == pytest.approx(-75.0, abs=1.5)
    assert math.isinf(noise_floor_dbfs(with_room_tone(np.ones(RATE, np.float32), None, 1.0, 1.0), RATE))
    # 16-bit quantisation keeps it: room tone survives into the delivered WAV as sound, not zeros.
    assert np.count_nonzero(np.round(tone * 32767)) > 0.9 * tone.size


def test_the_audiobook_preset_flags_a_chapter_over_acx_120_minutes_with_the_fix():
    from tasks.audio.loudness import length_problems

    audiobook, podcast = resolve_target("audiobook"), resolve_target("podcast")
    assert length_problems(120 * 60, audiobook) == [] and length_problems(121 * 60, podcast) == []
    (problem,) = length_problems(121 * 60, audiobook)
    assert "121 minutes" in problem and "120 minutes" in problem and "split the chapter" in problem
