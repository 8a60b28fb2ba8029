"""The fast meters read what the slow reference readings read: vectorised BS.1770 loudness and loudness range
against pyloudnorm's own loops, and the true-peak envelope (full, and pruned above a floor) against scipy's
resample_poly at the same factor and filter."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.audio import bs1770
from tasks.audio.limiter import _interpolation_filter, oversampling_factor, true_peak_dbtp, true_peak_envelope
from tasks.audio.loudness import integrated_lufs, loudness_range, normalise, resolve_target
from test_loudness import speechlike

RATE = 24_000


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    tone = (0.3 * np.sin(2 * np.pi * 997 * np.arange(4 * RATE) / RATE)).astype(np.float32)
    quiet_then_loud = np.concatenate([np.zeros(RATE), 1e-4 * rng.standard_normal(3 * RATE), tone])
    return {"speech": speechlike(12.0, seed=3, level=0.2), "noise": 0.01 * rng.standard_normal(5 * RATE),
            "gated": quiet_then_loud.astype(np.float32), "long speech": speechlike(40.0, seed=4, level=0.1)}


@pytest.mark.parametrize("name", list(signals()))
def test_loudness_and_range_match_pyloudnorm(name):
    import pyloudnorm

    x = signals()[name].astype(np.float64)
    meter = pyloudnorm.Meter(RATE)
    assert bs1770.integrated_loudness(x, RATE) == pytest.approx(meter.integrated_loudness(x), abs=1e-9)
    assert integrated_lufs(x, RATE) == pytest.approx(meter.integrated_loudness(x), abs=1e-9)
    assert loudness_range(x, RATE) == pytest.approx(pyloudnorm.Meter(RATE).loudness_range(x), abs=1e-7)


def test_meters_on_silence_and_short_audio():
    assert integrated_lufs(np.zeros(RATE), RATE) == float("-inf")
    assert bs1770.integrated_loudness(np.full(RATE, 1e-6), RATE) == float("-inf")  # every block under -70 LUFS
    assert loudness_range(np.zeros(RATE), RATE) is None
    assert loudness_range(np.full(100, 0.1), RATE) is None  # shorter than one 3 s block, even padded
    assert true_peak_dbtp(np.zeros(0), RATE) == float("-inf")


def reference_envelope(x: np.ndarray, rate: int) -> np.ndarray:
    """Per sample, the largest magnitude of scipy's oversampled signal from it up to the next sample."""
    from scipy.signal import resample_poly

    factor = oversampling_factor(rate)
    up = resample_poly(x.astype(np.float64), factor, 1, window=_interpolation_filter(factor))
    return np.maximum(np.abs(up).reshape(-1, factor).max(axis=1), np.abs(x))


@pytest.mark.parametrize("rate", [24_000, 44_100])
def test_true_peak_envelope_matches_resample_poly(rate):
    x = speechlike(6.0, seed=5, level=0.4)
    expected = reference_envelope(x, rate)
    assert np.max(np.abs(true_peak_envelope(x, rate) - expected)) < 1e-6
    floor = 0.6 * float(expected.max())
    pruned = true_peak_envelope(x, rate, floor=floor)
    above = expected > floor
    assert above.any() and not above.all()
    assert np.max(np.abs(pruned[above] - expected[above])) < 1e-6  # exact wherever it can matter
    assert np.all(pruned[~above] <= floor + 1e-6)
    assert true_peak_dbtp(x, rate) == pytest.approx(20 * np.log10(expected.max()), abs=1e-5)


def test_true_peak_between_samples_is_found_in_a_pruned_block():
    """A lone inter-sample peak (alternating full-scale samples) in a long silence: the pruning must not skip it."""
    x = np.zeros(5 * RATE, np.float32)
    x[3 * RATE:3 * RATE + 8] = 0.5 * np.array([1, 1, -1, -1, 1, 1, -1, -1], np.float32)
    assert true_peak_dbtp(x, RATE) == pytest.approx(20 * np.log10(reference_envelope(x, RATE).max()), abs=1e-5)
    assert true_peak_dbtp(x, RATE) > 20 * np.log10(0.5) + 0.5  # the peak between the samples is higher


def test_normalised_take_meets_the_target_on_the_reference_meters():
    import pyloudnorm

    target = resolve_target("audiobook")
    out, adj = normalise(speechlike(8.0, seed=9, level=0.6), target, RATE)
    assert pyloudnorm.Meter(RATE).integrated_loudness(out.astype(np.float64)) == pytest.approx(target.target, abs=0.1)
    assert 20 * np.log10(reference_envelope(out, RATE).max()) <= target.limit_at + 1e-4
    assert adj.true_peak_dbtp == pytest.approx(20 * np.log10(reference_envelope(out, RATE).max()), abs=1e-4)


@pytest.mark.parametrize("name", list(signals()))
def test_the_shared_k_weighting_pass_reads_the_integrated_loudness_exactly(name):
    # Its loudness range is what loudness_range() returns (checked against pyloudnorm above).
    x = signals()[name].astype(np.float64)
    assert bs1770.integrated_and_range(x, RATE)[0] == bs1770.integrated_loudness(x, RATE)


def test_audio_already_on_target_is_not_regained():
    target = resolve_target("audiobook")
    on_target, _ = normalise(speechlike(30.0, seed=5, level=0.2), target, RATE)
    again, adjustment = normalise(on_target, target, RATE)
    assert adjustment.gain_db == 0.0 and abs(adjustment.after - target.target) < 0.02
    assert np.array_equal(again, on_target)  # its peaks were already under the ceiling: nothing touched


@pytest.mark.parametrize("rate", [24_000, 44_100])
def test_a_peak_reading_of_any_stretch_is_the_envelopes_maximum(rate):
    """true_peak_between interpolates only the stretches that could hold the peak: on every span (edges of the
    signal, spans shorter than a stretch, a lone loud sample) it reads exactly the full envelope's maximum."""
    from tasks.audio.limiter import true_peak_between

    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(1, 2_000))
        x = (rng.standard_normal(n) * rng.uniform(0.01, 0.5)).astype(np.float32)
        if trial % 3 == 0:
            x[rng.integers(0, n)] *= 8
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo + 1, n + 1))
        assert true_peak_between(x, rate, lo, hi) == float(true_peak_envelope(x, rate)[lo:hi].max())
    x = speechlike(6.0, seed=5, level=0.4)
    whole = float(true_peak_envelope(x, rate).max())
    assert true_peak_between(x, rate, 0, x.size, at_least=0.5 * whole) == whole  # a lower peak found elsewhere


@pytest.mark.parametrize("rate", [24_000, 44_100])
def test_a_peak_reading_that_rules_out_points_one_by_one_keeps_the_peak(rate):
    """With a floor just under the true peak, nearly every point is ruled out by its bound (the weights on the
    two samples it lies between, and on the rest): the one that holds the peak never is, wherever it lies."""
    from tasks.audio import limiter
    from tasks.audio.limiter import true_peak_between

    rng = np.random.default_rng(12)
    for trial in range(200):
        n = int(rng.integers(64, 3_000))
        x = (rng.standard_normal(n) * 0.05).astype(np.float32)
        at = int(rng.integers(0, n - 1))
        x[at:at + 2] = rng.choice([-1, 1], 2) * rng.uniform(0.3, 0.9, 2)  # an inter-sample peak between them
        if trial % 3 == 1:
            x[at + 2:at + 6] = rng.choice([-1, 1], x[at + 2:at + 6].size) * 0.5  # and loud neighbours
        elif trial % 3 == 2:  # loud samples of alternating sign around two quiet ones: the peak lies between those
            around = np.r_[max(0, at - 8):at, at + 2:min(n, at + 10)]
            x[around] = np.where(around % 2, 0.5, -0.5)
            x[at:at + 2] = 0.0
        whole = float(true_peak_envelope(x, rate).max())
        assert true_peak_between(x, rate, 0, n, at_least=whole * 0.9999) == whole
    # The worst case the bound allows: samples of the signs of the weights of the phase that sums the most, so
    # that one point reaches the bound itself.
    weights, _ = limiter._phase_weights(limiter.oversampling_factor(rate))
    worst = np.sign(weights[np.abs(weights).sum(axis=1).argmax()])
    x = np.zeros(500, np.float32)
    x[200:200 + worst.size] = 0.3 * worst
    whole = float(true_peak_envelope(x, rate).max())
    assert whole > 0.3 * 2  # far above any sample: the far weights matter
    assert true_peak_between(x, rate, 0, x.size, at_least=whole * 0.9999) == whole


def test_the_true_peak_read_in_parts_is_the_wholes_to_the_bit(monkeypatch):
    """The report reads a chapter's true peak as two halves in two threads: their maximum is the whole's."""
    from tasks.audio import limiter
    from tasks.audio.loudness import report

    monkeypatch.setattr(limiter, "PEAK_PIECE_SAMPLES", 4096)  # many pieces per half, as in a chapter
    x = speechlike(20.0, seed=6, level=0.4)
    whole = float(true_peak_envelope(x, RATE).max())
    for middle in (1, 4095, x.size // 2, x.size - 1):
        parts = max(limiter.true_peak(x, RATE, 0, middle), limiter.true_peak(x, RATE, middle))
        assert parts == limiter.true_peak(x, RATE) == whole
    assert report(x, resolve_target("audiobook"), RATE).true_peak_dbtp == true_peak_dbtp(x, RATE)
