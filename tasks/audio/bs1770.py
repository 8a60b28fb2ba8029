"""BS.1770-4 integrated loudness and EBU Tech 3342 loudness range, vectorised. The same K-weighting filters,
block bounds and gates as pyloudnorm (its filter designs are used as they are), but every block's energy is
a difference of two running sums instead of a sum per block in a Python loop, and both filters run in one
pass: a chapter is measured in tens of milliseconds instead of seconds, which matters because normalisation
measures every take and every chapter several times. The audio streams through the filters in pieces, so a
long chapter is measured without float64 copies of all of it. Pure numpy in and out."""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
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


def k_weighted_sums(pieces: Iterable[np.ndarray], rate: int, positions: np.ndarray) -> "RunningSums":
    """The running sums of the K-weighted signal's squares at `positions`, from the audio given in pieces
    (the filter's state carried from piece to piece): nothing the length of the audio is held."""
    from scipy.signal import sosfilt

    sums = RunningSums(positions)
    sos = _k_weighting(rate)
    state = np.zeros((sos.shape[0], 2))
    for piece in pieces:
        weighted, state = sosfilt(sos, np.asarray(piece, dtype=np.float64), zi=state)
        sums.add(np.square(weighted, out=weighted))
    return sums


CHUNK_SAMPLES = 1 << 20  # long audio goes through the filters this many samples at a time (~44 s at 24 kHz)


def float_chunks(audio: np.ndarray, size: int = CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """The audio as float64 pieces in order: a chapter is measured without a float64 copy of all of it."""
    for start in range(0, audio.size, size):
        yield np.asarray(audio[start:start + size], dtype=np.float64)


def block_bounds(samples: int, rate: int, block: float, overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end sample of every gating block, with pyloudnorm's block count and bounds (int of the same
    float expressions), so the same samples fall in each block."""
    step = 1.0 - overlap
    count = int(np.round(((samples / rate - block) / (block * step)))) + 1
    if count <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    j = np.arange(count)
    lower = np.minimum((block * (j * step) * rate).astype(np.int64), samples)
    upper = np.minimum((block * (j * step + 1) * rate).astype(np.int64), samples)
    return lower, upper


class RunningSums:
    """The sum of a signal from its start up to each of some sample positions, fed to it piece by piece: every
    block's energy is then a difference of two such sums, and the signal is never held whole."""

    def __init__(self, positions: np.ndarray):
        self.positions = np.unique(positions)
        self.sums = np.zeros(self.positions.size)
        self.total, self.offset = 0.0, 0

    def add(self, values: np.ndarray) -> None:
        start, end = self.offset, self.offset + values.size
        lo, hi = np.searchsorted(self.positions, [start, end], side="right")  # positions in (start, end]
        running = np.cumsum(values)
        if hi > lo:
            self.sums[lo:hi] = self.total + running[self.positions[lo:hi] - start - 1]
        self.total += float(running[-1]) if running.size else 0.0
        self.offset = end

    def between(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        at = lambda p: self.sums[np.searchsorted(self.positions, p)]  # noqa: E731
        return np.maximum(at(upper) - at(lower), 0.0)  # a difference of sums can dip below 0 by rounding


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
    return _measured(audio, rate, with_range=False)[0]


def loudness_range(audio: np.ndarray, rate: int) -> float | None:
    """Tech 3342 loudness range (LU) from 3 s blocks ten per second; None when no block passes the gates."""
    return integrated_and_range(audio, rate)[1]


def integrated_and_range(audio: np.ndarray, rate: int) -> tuple[float, float | None]:
    """integrated_loudness (of audio at least one gating block long) and loudness_range, K-weighted once: the
    filter is causal, so the squares of the audio with LRA's trailing silence begin with the audio's own."""
    return _measured(audio, rate, with_range=True)


def _measured(audio: np.ndarray, rate: int, with_range: bool) -> tuple[float, float | None]:
    """One streaming pass of the K-weighting filter (its state carried from piece to piece) feeding the
    running sums that the gating blocks, and with `with_range` the short-term blocks, are read from."""
    samples, trailing = audio.size, int(LRA_TRAILING_SILENCE_SECONDS * rate)
    gate = block_bounds(samples, rate, BLOCK_SECONDS, BLOCK_OVERLAP)
    short_term = (block_bounds(samples + trailing, rate, LRA_BLOCK_SECONDS, LRA_OVERLAP)
                  if with_range and samples + trailing >= LRA_BLOCK_SECONDS * rate else None)
    pieces = float_chunks(audio)
    if short_term is not None:
        pieces = itertools.chain(pieces, [np.zeros(trailing)])
    sums = k_weighted_sums(pieces, rate, np.concatenate([*gate, *(short_term or ())]))
    integrated = gated_loudness(sums.between(*gate) / (BLOCK_SECONDS * rate))
    if short_term is None:
        return integrated, None
    return integrated, range_from_blocks(sums.between(*short_term) / (LRA_BLOCK_SECONDS * rate))


def range_from_blocks(z: np.ndarray) -> float | None:
    """Loudness range from the mean squares of the short-term blocks."""
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
