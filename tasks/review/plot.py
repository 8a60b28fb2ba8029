"""Loudness over time for the review page: short-term loudness (BS.1770 K-weighting, 3 s windows) of a
chapter, plotted with matplotlib (Agg, no display) as an SVG."""
from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tasks.audio.bs1770 import float_chunks, k_weighted_sums

SHORT_TERM_SECONDS = 3.0  # EBU R128 short-term window
MAX_POINTS = 1500  # plot points per chapter: the hop grows with the chapter's length
MIN_HOP_SECONDS = 0.1
FLOOR_LUFS = -70.0  # BS.1770's absolute gate: quieter windows are drawn at the floor
LUFS_OFFSET = -0.691  # BS.1770: loudness = -0.691 + 10 log10(mean square of the K-weighted signal)


@dataclass(frozen=True)
class LoudnessCurve:
    label: str
    seconds: np.ndarray  # window centres
    lufs: np.ndarray


def short_term_loudness(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(window centre in seconds, short-term LUFS) for mono audio; a chapter shorter than the window is one
    window of its own length."""
    return short_term_loudness_of(float_chunks(np.asarray(audio)), np.size(audio), rate)


def short_term_loudness_of(pieces: Iterable[np.ndarray], samples: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """short_term_loudness of `samples` samples of audio given in pieces (a chapter read from its file block by
    block: a long chapter is never held whole)."""
    if samples == 0:
        return np.zeros(0), np.zeros(0)
    window = min(samples, int(SHORT_TERM_SECONDS * rate))
    hop = max(int(MIN_HOP_SECONDS * rate), (samples - window) // MAX_POINTS + 1)
    starts = np.arange(0, samples - window + 1, hop)
    mean_square = k_weighted_sums(pieces, rate, np.concatenate([starts, starts + window])).between(
        starts, starts + window) / window
    with np.errstate(divide="ignore"):
        lufs = LUFS_OFFSET + 10 * np.log10(mean_square)
    return (starts + window / 2) / rate, np.maximum(lufs, FLOOR_LUFS)


def loudness_svg(curves: list[LoudnessCurve], target_lufs: float | None = None) -> str:
    """A small line plot of the curves (one per run), with the target as a dashed line; the SVG document."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.2), dpi=96)
    # Fixed margins: a constrained layout costs as much as drawing the plot.
    figure.subplots_adjust(left=0.08, right=0.99, top=0.96, bottom=0.2)
    axes = figure.add_subplot()
    for curve in curves:
        axes.plot(curve.seconds, curve.lufs, linewidth=1.2, label=curve.label)
    if target_lufs is not None and math.isfinite(target_lufs):
        axes.axhline(target_lufs, color="0.4", linestyle="--", linewidth=0.8, label=f"target {target_lufs:g} LUFS")
    axes.set_xlabel("seconds")
    axes.set_ylabel("short-term LUFS")
    axes.grid(True, linewidth=0.3)
    if len(curves) > 1 or target_lufs is not None:
        axes.legend(fontsize="small", loc="lower right")
    buffer = io.StringIO()
    # Text as text (not glyph outlines) keeps the file small; a fixed salt keeps a re-run's bytes the same.
    with _svg_options():
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _svg_options():
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "voicebatch-review"})
