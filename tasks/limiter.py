"""True peak (BS.1770-4 annex 2, oversampled) and a look-ahead limiter that brings peaks under a ceiling
by smooth gain reduction, never by clipping. Pure numpy/scipy: audio in, audio out."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

TRUE_PEAK_RATE = 192_000  # Hz: BS.1770-4 oversamples 48 kHz audio 4x; lower rates get a larger factor
LOOKAHEAD_SECONDS = 0.010  # gain reaches its floor this long before a peak and recovers as fast after it
BLOCK_SAMPLES = 1 << 16  # oversample in blocks so a long chapter never holds 8x its size in memory
_PAD = 64  # input samples of context each side of a block: more than the resampling filter's reach


def oversampling_factor(rate: int) -> int:
    return max(1, math.ceil(TRUE_PEAK_RATE / rate))


@lru_cache(maxsize=8)
def _interpolation_filter(factor: int) -> np.ndarray:
    """The low-pass that resample_poly would design for this factor, designed once instead of per block."""
    from scipy.signal import firwin

    return firwin(2 * 10 * factor + 1, 1.0 / factor, window=("kaiser", 5.0)).astype(np.float32)


def true_peak_envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """Per input sample, the largest magnitude of the oversampled signal between it and the next sample."""
    from scipy.signal import resample_poly

    x = np.asarray(audio, dtype=np.float32)  # float32 is ample for a peak reading and a third faster
    factor = oversampling_factor(rate)
    if factor == 1 or x.size == 0:
        return np.abs(x).astype(np.float64)
    env = np.empty(x.size, dtype=np.float64)
    for start in range(0, x.size, BLOCK_SAMPLES):
        stop = min(start + BLOCK_SAMPLES, x.size)
        lo, hi = max(0, start - _PAD), min(x.size, stop + _PAD)
        up = resample_poly(x[lo:hi], factor, 1, window=_interpolation_filter(factor))
        inner = np.abs(up[(start - lo) * factor:(stop - lo) * factor]).reshape(-1, factor)
        env[start:stop] = np.maximum(inner.max(axis=1), np.abs(x[start:stop]))
    return env


def true_peak_dbtp(audio: np.ndarray, rate: int) -> float:
    """Largest oversampled magnitude in dBTP (-inf for silence)."""
    peak = float(true_peak_envelope(audio, rate).max()) if np.size(audio) else 0.0
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def limit_true_peak(audio: np.ndarray, ceiling_dbtp: float, rate: int, envelope: np.ndarray | None = None,
                    lookahead: float = LOOKAHEAD_SECONDS) -> np.ndarray:
    """Peaks above the ceiling brought down by a smooth gain curve (minimum filter over the look-ahead, then a
    moving average of the same width, so the gain at every peak is at most what that peak needs). `envelope`
    (the audio's true_peak_envelope) saves recomputing it; the result is not verified: see enforce_ceiling."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    x = np.asarray(audio, dtype=np.float64)
    threshold = 10 ** (ceiling_dbtp / 20)
    env = true_peak_envelope(x, rate) if envelope is None else envelope
    if x.size == 0 or env.max() <= threshold:
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
    env = true_peak_envelope(out, rate)
    peak = float(env.max()) if out.size else 0.0
    if peak > threshold:
        out = limit_true_peak(out, ceiling_dbtp, rate, envelope=env).astype(np.float64)
        peak = float(true_peak_envelope(out, rate).max())
    if peak > threshold:
        out *= threshold * 0.995 / peak
        peak *= threshold * 0.995 / peak
    return out.astype(np.float32), (20 * math.log10(peak) if peak > 0 else float("-inf"))
