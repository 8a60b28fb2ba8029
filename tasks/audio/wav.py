"""Audio files on disk: atomic writes (temp file in the same folder, then rename) and reads."""
from __future__ import annotations

import errno
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import VoicebatchError
from tasks.core.files import write_bytes_atomic

PCM_PIECE_SAMPLES = 1 << 20


def write_wav_atomic(path: Path, audio: np.ndarray, subtype: str = "PCM_16", sample_rate: int = SAMPLE_RATE) -> str:
    """Write a mono WAV so that `path` is either absent or complete; returns its sha256."""
    # Encoded in memory first: libsndfile reports a short write (a full disk) as a bare assertion.
    encoded = io.BytesIO()
    # 16-bit samples are written as they are (a book copies its chapters' samples exactly); floats convert.
    data = audio if isinstance(audio, np.ndarray) and audio.dtype == np.int16 else np.asarray(audio, np.float32)
    sf.write(encoded, data, sample_rate, subtype=subtype, format="WAV")
    digest = hashlib.sha256(encoded.getbuffer()).hexdigest()  # the file's bytes, without reading them back
    try:
        write_bytes_atomic(Path(path), encoded.getbuffer())
    except OSError as e:
        raise OutputWriteError(f"cannot write {path}: {e.strerror or e}; {write_fix(e)}") from None
    return digest


class OutputWriteError(VoicebatchError):
    """An output or take file could not be written; nothing was left at its final path."""


def write_fix(err: OSError) -> str:
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the output folder writable or choose another with --out / VOICEBATCH_OUTPUT_DIR"
    return "free disk space (or raise the file-size limit) and run again; finished takes are kept"


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def mono_blocks(path: Path, size: int = PCM_PIECE_SAMPLES) -> tuple[int, int, Iterator[np.ndarray]]:
    """A WAV's sample count, its rate, and its samples (as read_mono reads them) block by block."""
    info = sf.info(str(path))
    blocks = (block.mean(axis=1) for block in sf.blocks(str(path), blocksize=size, dtype="float32", always_2d=True))
    return info.frames, info.samplerate, blocks


def read_pcm16(path: Path) -> np.ndarray:
    """A mono WAV's samples as 16-bit integers (a 16-bit file's own samples, untouched)."""
    audio, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1).round().astype(np.int16)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) as 16-bit integers, rounded to the nearest step of the scale reading uses
    (converted in pieces: a chapter needs no float temporaries of its whole length)."""
    audio = np.asarray(audio)
    samples = np.empty(audio.size, np.int16)
    for start in range(0, audio.size, PCM_PIECE_SAMPLES):
        piece = np.asarray(audio[start:start + PCM_PIECE_SAMPLES], np.float32) * np.float32(32768)
        samples[start:start + piece.size] = np.clip(np.rint(piece, out=piece), -32768, 32767)
    return samples.reshape(audio.shape)


def from_pcm16(samples: np.ndarray) -> np.ndarray:
    """16-bit samples as the floats that reading them from a WAV gives (read_mono)."""
    return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)  # one pass, no temporary (2**-15: exact)
