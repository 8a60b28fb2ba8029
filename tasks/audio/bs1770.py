"""BS.1770-4 integrated loudness and EBU Tech 3342 loudness range, vectorised. The same K-weighting filters,
block bounds and gates as pyloudnorm (its filter designs are used as they are), but the signal is summed
once between block edges instead of once per block in a Python loop, and both filters run in one pass: a
chapter is measured in tens of milliseconds instead of seconds, which matters because normalisation
measures every take and every chapter several times. Pure numpy in and out."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
BLOCK_SECONDS, BLOCK_OVERLAP = 0.4, 0.75  # BS.1770 gating blocks
LRA_BLOCK_SECONDS, LRA_OVERLAP = 3.0, 0.97  # Tech 3342 short-term blocks, 10 per second
LRA_RELATIVE_GATE_LU = -20.0
LRA_PERCENTILES = (10, 95)
LRA_TRAILING_SILENCE_SECONDS = 1.5  # pyloudnorm appends this before reading short-term blocks


@lru_cache(maxsize=8)
def _k_weighting(rate: int) -> np.ndarray:
    """The two K-weighting biquads (pre-filter shelf, then RLB high-pass) as second-order sections."""
    from pyloudnorm.iirfilter import IIRfilter

    sections = []
    for stage in (IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, rate, "high_shelf"),
                  IIRfilter(0.0, 0.5, 38.0, rate, "high_pass")):
        b, a = np.asarray(stage.b, dtype=np.float64), np.asarray(stage.a, dtype=np.float64)
        sections.append(np.concatenate([b * stage.passband_gain / a[0], a / a[0]]))
    return np.array(sections)


def k_weighted_squares(audio: np.ndarray, rate: int) -> np.ndarray:
    """The K-weighted signal, squared."""
    from scipy.signal import sosfilt

    weighted = sosfilt(_k_weighting(rate), np.asarray(audio, dtype=np.float64))
    return np.square(weighted, out=weighted)


def block_mean_squares(squares: np.ndarray, rate: int, block: float, overlap: float) -> np.ndarray:
    """Mean square of every gating block, with pyloudnorm's block count and bounds (int of the same float
    expressions), so the same samples fall in each block. The signal is summed once, between consecutive
    block edges; each block is then a sum of a few of those pieces."""
    samples = squares.size
    step = 1.0 - overlap
    count = int(np.round(((samples / rate - block) / (block * step)))) + 1
    if count <= 0:
        return np.zeros(0)
    j = np.arange(count)
    lower = np.minimum((block * (j * step) * rate).astype(np.int64), samples)
    upper = np.minimum((block * (j * step + 1) * rate).astype(np.int64), samples)
    edges = np.unique(np.concatenate([lower, upper, [0, samples]]))
    pieces = np.add.reduceat(squares, edges[:-1]) if samples else np.zeros(0)
    running = np.concatenate([[0.0], np.cumsum(pieces)])  # running[i]: the sum up to edges[i]
    energy = running[np.searchsorted(edges, upper)] - running[np.searchsorted(edges, lower)]
    return np.maximum(energy, 0.0) / (block * rate)  # a difference of sums can dip below 0 by rounding


def _lufs(mean_square: np.ndarray | float) -> np.ndarray | float:
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(mean_square)


def gated_loudness(z: np.ndarray) -> float:
    """Integrated loudness from block mean squares: absolute gate, then the relative gate 10 LU under the
    absolutely-gated mean; -inf when no block passes."""
    loud = _lufs(z)
    above = z[loud >= ABSOLUTE_GATE_LUFS]
    if above.size == 0:
        return float("-inf")
    relative = _lufs(float(np.mean(above))) + RELATIVE_GATE_LU
    kept = z[(loud > relative) & (loud > ABSOLUTE_GATE_LUFS)]
    return float(_lufs(float(np.mean(kept)))) if kept.size else float("-inf")


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) of mono audio at least one gating block long."""
    return gated_loudness(block_mean_squares(k_weighted_squares(audio, rate), rate, BLOCK_SECONDS, BLOCK_OVERLAP))


def loudness_range(audio: np.ndarray, rate: int) -> float | None:
    """Tech 3342 loudness range (LU) from 3 s blocks ten per second; None when no block passes the gates."""
    return integrated_and_range(audio, rate)[1]


def integrated_and_range(audio: np.ndarray, rate: int) -> tuple[float, float | None]:
    """integrated_loudness (of audio at least one gating block long) and loudness_range, K-weighted once: the
    filter is causal, so the squares of the audio with LRA's trailing silence begin with the audio's own."""
    x = np.asarray(audio, dtype=np.float64)
    padded = np.concatenate([x, np.zeros(int(LRA_TRAILING_SILENCE_SECONDS * rate))])
    squares = k_weighted_squares(padded, rate)
    integrated = gated_loudness(block_mean_squares(squares[:x.size], rate, BLOCK_SECONDS, BLOCK_OVERLAP))
    return integrated, (range_of(squares, rate) if padded.size >= LRA_BLOCK_SECONDS * rate else None)


def range_of(squares: np.ndarray, rate: int) -> float | None:
    """Loudness range from the K-weighted squares of the audio with its trailing silence."""
    z = block_mean_squares(squares, rate, LRA_BLOCK_SECONDS, LRA_OVERLAP)
    loud = _lufs(z)
    loud = loud[loud >= ABSOLUTE_GATE_LUFS]
    if loud.size == 0:
        return None
    integrated = 10 * math.log10(float(np.sum(np.power(10, loud / 10))) / loud.size)
    kept = loud[loud >= integrated + LRA_RELATIVE_GATE_LU]
    if kept.size == 0:
        return None
    low, high = np.percentile(kept, LRA_PERCENTILES)
    return float(high - low)
