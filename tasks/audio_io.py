"""Audio files on disk: atomic writes (temp file in the same folder, then rename) and reads."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.base import SAMPLE_RATE, sha256_file


def write_wav_atomic(path: Path, audio: np.ndarray, subtype: str = "PCM_16", sample_rate: int = SAMPLE_RATE) -> str:
    """Write a mono WAV so that `path` is either absent or complete; returns its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, np.asarray(audio, dtype=np.float32), sample_rate, subtype=subtype, format="WAV")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_file(path)


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate
