"""True peak (BS.1770-4 annex 2, oversampled) and a look-ahead limiter that brings peaks under a ceiling
by smooth gain reduction, never by clipping. Pure numpy/scipy: audio in, audio out."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

TRUE_PEAK_RATE = 192_000  # Hz: BS.1770-4 oversamples 48 kHz audio 4x; lower rates get a larger factor
LOOKAHEAD_SECONDS = 0.010  # gain reaches its floor this long before a peak and recovers as fast after it
REACH = 10  # input samples each side that one oversampled point depends on (resample_poly's 10 per phase)
BLOCK_SAMPLES = 4096  # interpolate this many samples at a time: small enough to stay in cache


def oversampling_factor(rate: int) -> int:
    return max(1, math.ceil(TRUE_PEAK_RATE / rate))


@lru_cache(maxsize=8)
def _interpolation_filter(factor: int) -> np.ndarray:
    """The low-pass that resample_poly designs for this factor (a Kaiser-windowed sinc, 10 zero crossings a side)."""
    from scipy.signal import firwin

    return firwin(2 * REACH * factor + 1, 1.0 / factor, window=("kaiser", 5.0))


@lru_cache(maxsize=8)
def _phase_weights(factor: int) -> tuple[np.ndarray, float]:
    """Row p: the weights on x[n-REACH..n+REACH] giving the oversampled point n + p/factor (resample_poly's
    alignment); and the largest sum of absolute weights, which bounds how far any point between samples can
    exceed the largest sample around it."""
    h = _interpolation_filter(factor) * factor
    taps = 2 * REACH + 1
    weights = np.zeros((factor, taps))
    for p in range(factor):
        for d in range(taps):
            i = 2 * REACH * factor + p - factor * d
            if 0 <= i < h.size:
                weights[p, d] = h[i]
    return weights.astype(np.float32), float(np.abs(weights).sum(axis=1).max())


def true_peak_envelope(audio: np.ndarray, rate: int, floor: float | None = None) -> np.ndarray:
    """Per input sample, the largest magnitude of the oversampled signal between it and the next sample.
    With `floor`, blocks where no oversampled point can exceed it (the interpolation filter's gain bounds
    them by the largest sample nearby: pauses, room tone, quiet passages) are not interpolated and keep the
    samples' own magnitudes, also <= floor. So the maximum, and every value above `floor`, stay exact."""
    x = np.asarray(audio, dtype=np.float32)  # float32 is ample for a peak reading
    env = np.abs(x).astype(np.float64)
    factor = oversampling_factor(rate)
    if factor == 1 or x.size == 0:
        return env
    weights, gain_bound = _phase_weights(factor)
    blocks = -(-x.size // BLOCK_SAMPLES)
    if floor is None:
        todo = range(blocks)
    else:  # block maxima; a block's neighbours cover the REACH samples either side of it
        block_max = np.zeros(blocks + 2, np.float32)
        block_max[1:-1] = np.pad(np.abs(x), (0, blocks * BLOCK_SAMPLES - x.size)).reshape(blocks, -1).max(axis=1)
        nearby = np.maximum(np.maximum(block_max[:-2], block_max[1:-1]), block_max[2:])
        todo = np.flatnonzero(nearby * gain_bound > floor)
    padded = np.pad(x, REACH)
    taps = 2 * REACH + 1
    between = np.empty((factor, BLOCK_SAMPLES), np.float32)  # (phases, samples)
    term = np.empty_like(between)
    # The filter runs as one multiply-add per tap in a fixed order, not as a matrix product: a threaded BLAS
    # sums in an order that depends on its thread count and processor, and these values decide the limiter's
    # gain, so the written bytes would too. Elementwise IEEE operations give the same bytes everywhere.
    for b in todo:
        lo, hi = b * BLOCK_SAMPLES, min((b + 1) * BLOCK_SAMPLES, x.size)
        out, step = between[:, :hi - lo], term[:, :hi - lo]
        out.fill(0.0)
        for d in range(taps):  # padded[lo + d + i] is x[lo + i + d - REACH]
            np.multiply(weights[:, d, None], padded[None, lo + d:hi + d], out=step)
            out += step
        np.abs(out, out=out)
        np.maximum(env[lo:hi], np.maximum.reduce(out, axis=0), out=env[lo:hi])
    return env


def exact_above(audio: np.ndarray, threshold: float) -> float:
    """The floor under which a peak reading may be approximate when only the maximum and the values above
    `threshold` matter: the maximum stays exact because it is at least the largest sample."""
    return min(threshold, float(np.max(np.abs(audio)))) if np.size(audio) else threshold


def true_peak_dbtp(audio: np.ndarray, rate: int) -> float:
    """Largest oversampled magnitude in dBTP (-inf for silence)."""
    if not np.size(audio):
        return float("-inf")
    peak = float(true_peak_envelope(audio, rate, floor=float(np.max(np.abs(audio)))).max())
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def limit_true_peak(audio: np.ndarray, ceiling_dbtp: float, rate: int, envelope: np.ndarray | None = None,
                    lookahead: float = LOOKAHEAD_SECONDS) -> np.ndarray:
    """Peaks above the ceiling brought down by a smooth gain curve (minimum filter over the look-ahead, then a
    moving average of the same width, so the gain at every peak is at most what that peak needs). `envelope`
    (the audio's true_peak_envelope) saves recomputing it; the result is not verified: see enforce_ceiling."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    x = np.asarray(audio, dtype=np.float64)
    threshold = 10 ** (ceiling_dbtp / 20)
    if x.size == 0:
        return x.astype(np.float32)
    # Gain is only taken where the envelope is over threshold * 0.995, so it needs to be exact only there.
    env = true_peak_envelope(x, rate, floor=exact_above(x, threshold * 0.995)) if envelope is None else envelope
    if env.max() <= threshold:
        return x.astype(np.float32)
    # Aim a hair under the ceiling: the gain curve itself slightly reshapes inter-sample peaks.
    need = np.minimum(1.0, threshold * 0.995 / np.maximum(env, 1e-12))
    width = 2 * max(1, int(lookahead * rate)) + 1
    gain = uniform_filter1d(minimum_filter1d(need, width, mode="nearest"), width, mode="nearest")
    return (x * gain).astype(np.float32)


def enforce_ceiling(audio: np.ndarray, ceiling_dbtp: float, rate: int) -> tuple[np.ndarray, float]:
    """The audio with its true peak verified under the ceiling (what the limiter's curve left over removed by
    plain gain, never by clipping), and that true peak in dBTP."""
    out = np.asarray(audio, dtype=np.float64)
    threshold = 10 ** (ceiling_dbtp / 20)
    if not out.size:
        return out.astype(np.float32), float("-inf")
    env = true_peak_envelope(out, rate, floor=exact_above(out, threshold * 0.995))
    peak = float(env.max())
    if peak > threshold:
        out = limit_true_peak(out, ceiling_dbtp, rate, envelope=env).astype(np.float64)
        peak = float(true_peak_envelope(out, rate, floor=float(np.max(np.abs(out)))).max())
    if peak > threshold:
        out *= threshold * 0.995 / peak
        peak *= threshold * 0.995 / peak
    return out.astype(np.float32), (20 * math.log10(peak) if peak > 0 else float("-inf"))
