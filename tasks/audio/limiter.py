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
PEAK_STRETCH = 64  # samples a peak reading interpolates together or skips: short, so quiet ones are skipped
PEAK_STRETCHES_AT_ONCE = 256
PEAK_PIECE_SAMPLES = 256 * BLOCK_SAMPLES  # a peak reading holds an envelope of this many samples at a time


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
    x = np.asarray(audio, dtype=np.float32)  # float32 is ample for a peak reading, and it is what is computed
    env = np.abs(x)
    if env is x:  # np.abs of an empty array can hand back the array itself
        env = env.copy()
    factor = oversampling_factor(rate)
    if factor == 1 or x.size == 0:
        return env
    weights, gain_bound = _phase_weights(factor)
    blocks = -(-x.size // BLOCK_SAMPLES)
    if floor is None:
        todo = range(blocks)
    else:  # block maxima; a block's neighbours cover the REACH samples either side of it
        block_max = np.zeros(blocks + 2, np.float32)
        whole = x.size // BLOCK_SAMPLES * BLOCK_SAMPLES  # env holds |x| already: its blocks, then the rest
        block_max[1:1 + whole // BLOCK_SAMPLES] = env[:whole].reshape(-1, BLOCK_SAMPLES).max(axis=1)
        if whole < x.size:
            block_max[-2] = env[whole:].max()
        nearby = np.maximum(np.maximum(block_max[:-2], block_max[1:-1]), block_max[2:])
        todo = np.flatnonzero(nearby * gain_bound > floor)
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
        around = _around(x, lo, hi)
        for d in range(taps):  # around[d + i] is x[lo + i + d - REACH]
            np.multiply(weights[:, d, None], around[None, d:d + hi - lo], out=step)
            out += step
        np.abs(out, out=out)
        np.maximum(env[lo:hi], np.maximum.reduce(out, axis=0), out=env[lo:hi])
    return env


def _around(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """x[lo - REACH:hi + REACH], with zeros where that reaches past either end (a view where it does not)."""
    if lo >= REACH and hi + REACH <= x.size:
        return x[lo - REACH:hi + REACH]
    out = np.zeros(hi - lo + 2 * REACH, np.float32)
    start = max(0, lo - REACH)
    piece = x[start:hi + REACH]
    out[start - (lo - REACH):start - (lo - REACH) + piece.size] = piece
    return out


def exact_above(audio: np.ndarray, threshold: float) -> float:
    """The floor under which a peak reading may be approximate when only the maximum and the values above
    `threshold` matter: the maximum stays exact because it is at least the largest sample."""
    return min(threshold, largest_magnitude(audio)) if np.size(audio) else threshold


def largest_magnitude(audio: np.ndarray) -> float:
    """max(|audio|) without an |audio| copy of a whole chapter."""
    return max(float(np.max(audio)), -float(np.min(audio)))


def true_peak_between(audio: np.ndarray, rate: int, lo: int, hi: int, at_least: float = 0.0) -> float:
    """Largest oversampled magnitude between samples lo and hi of `audio` (0 for none), read with the samples
    around them: the points within REACH of either end of `audio` are only right at the true ends of a
    signal, so a signal read in blocks measures each block's middle, with its neighbours' samples as context.
    Only the maximum is computed: a point is interpolated only where the samples around it could, by the
    filter's weights, reach above the largest sample (and above `at_least`, a peak already found elsewhere: a
    result under it is a lower bound, not the exact peak). Stretches of PEAK_STRETCH samples are ruled out
    first by their largest sample (about seven in eight of a speech chapter), then the points of the rest one
    by one, by the two samples they lie between and the largest around them (about one point in 35 of a
    24-minute chapter is left to interpolate)."""
    if hi <= lo:
        return 0.0
    x = np.asarray(audio)  # not converted whole: a caller reads a long signal a piece at a time
    peak = largest_magnitude(x[lo:hi])
    factor = oversampling_factor(rate)
    if factor == 1:
        return peak
    weights, _ = _phase_weights(factor)
    gain_bound, near_weight, far_weight = _bounds(factor)
    n, width = hi - lo, PEAK_STRETCH + 2 * REACH
    stretches = -(-n // PEAK_STRETCH)
    # seg[j] is x[lo - REACH + j], zero past either end of the signal; stretch k's points read seg[kS:kS + width].
    seg = np.zeros((stretches + 1) * PEAK_STRETCH, np.float32)
    start, end = max(0, lo - REACH), min(x.size, lo + stretches * PEAK_STRETCH + REACH)
    seg[start - (lo - REACH):end - (lo - REACH)] = x[start:end]
    block_max = np.abs(seg).reshape(-1, PEAK_STRETCH).max(axis=1)
    reach = np.maximum(block_max[:-1], block_max[1:])  # width <= 2 stretches: a stretch and the next cover it
    floor = max(peak, at_least)
    todo = np.flatnonzero(reach * gain_bound > floor)
    taps = 2 * REACH + 1
    for first in range(0, todo.size, PEAK_STRETCHES_AT_ONCE):
        which = todo[first:first + PEAK_STRETCHES_AT_ONCE]
        around = seg[(which * PEAK_STRETCH)[:, None] + np.arange(width)]  # (stretches, width)
        size = np.abs(around)
        # Point i of a stretch lies between around[i + REACH] and around[i + REACH + 1]; its window is
        # around[i:i + taps]. Its largest possible magnitude: the weights on those two samples times the larger
        # of them, plus all other weights times the largest sample of the window.
        between = np.maximum(size[:, REACH:REACH + PEAK_STRETCH], size[:, REACH + 1:REACH + 1 + PEAK_STRETCH])
        bound = near_weight * between + far_weight * _window_max(size, taps, PEAK_STRETCH)
        if which[-1] == stretches - 1 and n % PEAK_STRETCH:
            bound[-1, n % PEAK_STRETCH:] = 0.0  # points past hi are another block's
        rows, points = np.nonzero(bound > floor)
        if rows.size == 0:
            continue
        windows = around[rows, points + np.arange(taps)[:, None]]  # (taps, points): row d is tap d's sample
        out = np.zeros((factor, rows.size), np.float32)
        term = np.empty_like(out)
        # One multiply-add per tap in a fixed order, as true_peak_envelope does: the same values on every machine.
        for d in range(taps):
            np.multiply(weights[:, d, None], windows[d], out=term)
            out += term
        peak = max(peak, float(out.max()), -float(out.min()))
    return peak


@lru_cache(maxsize=8)
def _bounds(factor: int) -> tuple[np.float32, np.float32, np.float32]:
    """The largest sums, over the phases, of the absolute weights: on all samples, on the two samples a point
    lies between, and on all the others; each a little larger than it is, because the float32 sums that test
    against them, and the interpolated points themselves, are rounded."""
    weights, gain_bound = _phase_weights(factor)
    size = np.abs(weights.astype(np.float64))
    near = size[:, REACH:REACH + 2].sum(axis=1)
    return tuple(np.float32(bound * (1 + 1e-4)) for bound in
                 (gain_bound, near.max(), (size.sum(axis=1) - near).max()))


def _window_max(size: np.ndarray, width: int, count: int) -> np.ndarray:
    """Row by row, the largest of size[:, i:i + width] for i < count, by doubling windows (size[:, :count +
    width - 1] is read)."""
    span, m = 1, size
    while 2 * span <= width:
        m = np.maximum(m[:, :m.shape[1] - span], m[:, span:])
        span *= 2
    return np.maximum(m[:, :count], m[:, width - span:width - span + count])


def true_peak(audio: np.ndarray, rate: int, lo: int = 0, hi: int | None = None) -> float:
    """Largest oversampled magnitude (0 for silence) between samples lo and hi (default: all of it), read piece
    by piece, so a chapter is never interpolated whole. The maximum of the readings of parts of a signal is the
    reading of the whole, to the bit."""
    audio = np.asarray(audio)
    hi = audio.size if hi is None else hi
    peak = 0.0
    for start in range(lo, hi, PEAK_PIECE_SAMPLES):
        peak = max(peak, true_peak_between(audio, rate, start, min(hi, start + PEAK_PIECE_SAMPLES), peak))
    return peak


def true_peak_dbtp(audio: np.ndarray, rate: int, lo: int = 0, hi: int | None = None) -> float:
    """Largest oversampled magnitude in dBTP (-inf for silence), of samples lo to hi as true_peak reads them."""
    peak = true_peak(audio, rate, lo, hi)
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def limit_true_peak(audio: np.ndarray, ceiling_dbtp: float, rate: int, envelope: np.ndarray | None = None,
                    lookahead: float = LOOKAHEAD_SECONDS, envelope_scale: float = 1.0,
                    in_place: bool = False) -> np.ndarray:
    """Peaks above the ceiling brought down by a smooth gain curve (minimum filter over the look-ahead, then a
    moving average of the same width, so the gain at every peak is at most what that peak needs). `envelope`
    (the true_peak_envelope of the audio, or of the audio before a gain of `envelope_scale`) saves recomputing
    it; the result is not verified: see enforce_ceiling. The curve is computed only around the peaks that
    need it (elsewhere the gain is 1), so a chapter with a few loud peaks costs a few short stretches. With
    `in_place` (and float32 audio) the audio itself is limited and returned, not a copy."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    out = np.asarray(audio, dtype=np.float32) if in_place else np.array(audio, dtype=np.float32)
    threshold = 10 ** (ceiling_dbtp / 20)
    if out.size == 0:
        return out
    if envelope is None:  # gain is only taken where the envelope is over threshold * 0.995: exact there
        envelope, envelope_scale = true_peak_envelope(out, rate, floor=exact_above(out, threshold * 0.995)), 1.0
    if float(envelope.max()) * envelope_scale <= threshold:
        return out
    # Where the curve dips under 1: a float32 pre-selection, then the float64 test the curve itself makes.
    near = np.flatnonzero(envelope > threshold * 0.995 / envelope_scale * 0.999)
    over = near[envelope[near].astype(np.float64) * envelope_scale > threshold * 0.995]
    width = 2 * max(1, int(lookahead * rate)) + 1
    margin = 2 * width  # beyond the filters' reach: the curve is 1 at a stretch's edges, as it is past them
    breaks = np.flatnonzero(np.diff(over) > 2 * margin)
    for first, last in zip(over[np.r_[0, breaks + 1]], over[np.r_[breaks, over.size - 1]]):
        lo, hi = max(0, first - margin), min(out.size, last + margin + 1)
        env = envelope[lo:hi].astype(np.float64) * envelope_scale
        # Aim a hair under the ceiling: the gain curve itself slightly reshapes inter-sample peaks.
        need = np.minimum(1.0, threshold * 0.995 / np.maximum(env, 1e-12))
        gain = uniform_filter1d(minimum_filter1d(need, width, mode="nearest"), width, mode="nearest")
        out[lo:hi] = out[lo:hi].astype(np.float64) * gain
    return out


def enforce_ceiling(audio: np.ndarray, ceiling_dbtp: float, rate: int) -> tuple[np.ndarray, float]:
    """The audio with its true peak verified under the ceiling (what the limiter's curve left over removed by
    plain gain, never by clipping), and that true peak in dBTP. Float32 audio already under the ceiling is
    returned as it is, not copied."""
    out = np.asarray(audio, dtype=np.float32)
    threshold = 10 ** (ceiling_dbtp / 20)
    if not out.size:
        return out, float("-inf")
    env = true_peak_envelope(out, rate, floor=exact_above(out, threshold * 0.995))
    peak = float(env.max())
    if peak <= threshold:
        return out, 20 * math.log10(peak) if peak > 0 else float("-inf")
    out = limit_true_peak(out, ceiling_dbtp, rate, envelope=env)
    del env
    peak = true_peak(out, rate)
    if peak > threshold:
        out = (out * np.float64(threshold * 0.995 / peak)).astype(np.float32)
        peak *= threshold * 0.995 / peak
    return out, 20 * math.log10(peak)
