"""Reference clips in every accepted format, made from the demo voice `ava` (speech by the embedded engine)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tasks.qa.score import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "voices" / "ava" / "reference.wav"  # 24 kHz mono, ~9.1 s
# What the embedded engine is asked to say in transcription tests.
SENTENCE = ("The old harbour master counted seven boats before the storm arrived, "
            "and he lit the lamps along the northern pier.")


def speech(rate: int = 24_000) -> np.ndarray:
    audio, source_rate = sf.read(str(SPEECH), dtype="float32")
    return audio if rate == source_rate else soxr.resample(audio, source_rate, rate, quality="VHQ")


def write_clip(path: Path, audio: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """WAV, FLAC or OGG through soundfile; MP3 and M4A through ffmpeg from a temporary WAV."""
    path = Path(path)
    if path.suffix in (".mp3", ".m4a"):
        wav = path.with_suffix(".src.wav")
        sf.write(str(wav), audio, rate, subtype="PCM_16")
        codec = ["-c:a", "libmp3lame", "-b:a", "128k"] if path.suffix == ".mp3" else ["-c:a", "aac", "-b:a", "128k"]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), *codec, str(path)], check=True)
        wav.unlink()
    else:
        sf.write(str(path), audio, rate, subtype=subtype)
    return path


def stereo(mono: np.ndarray) -> np.ndarray:
    """Left as recorded, right at half level: the downmix is 0.75 of the mono clip."""
    return np.stack([mono, mono * 0.5], axis=1)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two clips at the same rate (1.0: the same up to a gain)."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
