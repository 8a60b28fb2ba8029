"""Independent meters for tests: ffmpeg's ebur128 filter and ffprobe, never the library that normalised."""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Ebur128:
    integrated_lufs: float
    loudness_range_lu: float
    true_peak_dbtp: float
    sample_peak_dbfs: float


def _number(text: str, label: str, unit: str) -> float:
    match = re.search(rf"{label}:\s+(-?inf|-?[\d.]+)\s+{unit}", text)
    if not match:
        raise AssertionError(f"ffmpeg ebur128 printed no {label} ({unit}):\n{text[-2000:]}")
    return float(match.group(1))


def ebur128(path: Path | str, start: float | None = None, duration: float | None = None) -> Ebur128:
    """ffmpeg's EBU R128 meter over a file (or a stretch of it): integrated, LRA, true and sample peak."""
    window = [*(["-ss", f"{start:.3f}"] if start is not None else []),
              *(["-t", f"{duration:.3f}"] if duration is not None else [])]
    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-nostdin", *window, "-i", str(path),
                           "-af", "ebur128=peak=true+sample", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = done.stderr[done.stderr.rindex("Summary:"):]
    true_peak = summary[summary.index("True peak:"):]
    sample_peak = summary[summary.index("Sample peak:"):]
    return Ebur128(_number(summary, "I", "LUFS"), _number(summary, "LRA", "LU"),
                   _number(true_peak, "Peak", "dBFS"), _number(sample_peak, "Peak", "dBFS"))


def ffprobe(path: Path | str) -> dict:
    done = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of", "json",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def decode(path: Path | str, rate: int) -> np.ndarray:
    """An encoded file as a player hears it: mono float samples at `rate`, decoded by ffmpeg."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f",
                           "f32le", "-"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    return np.frombuffer(done.stdout, dtype=np.float32)
