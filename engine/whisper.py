"""Transcripts for reference clips from openai-whisper, loaded lazily, once per process and device."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.device import choose_device
from tasks.core.errors import EngineError
from tasks.core.files import sha256_file

WHISPER_RATE = 16_000  # Hz; what Whisper's feature extractor expects

_models: dict[tuple[str, str], object] = {}
# One transcription at a time per process: Whisper is not re-entrant, and two loads of one model waste memory.
_lock = threading.Lock()
_model_ids: dict[tuple[str, int, int], str] = {}


class TranscriptionError(EngineError):
    """Whisper could not load or produced no transcript."""


@dataclass(frozen=True)
class Transcription:
    text: str
    language: str | None
    model: str  # model identity: an official name, or "file:<sha256>" of a checkpoint
    seconds: float


def whisper_cache_dir() -> Path:
    """Where openai-whisper keeps downloaded models."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def is_checkpoint_path(name: str) -> bool:
    import whisper

    return name not in whisper.available_models()


def local_model_file(name: str) -> Path | None:
    """The file the model `name` loads from, when it is on this machine; None when it would be downloaded."""
    if is_checkpoint_path(name):
        path = Path(name).expanduser()
        return path if path.is_file() else None
    import whisper

    cached = whisper_cache_dir() / os.path.basename(whisper._MODELS[name])
    return cached if cached.is_file() else None


def require_local_model(name: str, instead: str) -> None:
    """Refuse, without loading it, a model that is neither a checkpoint file here nor already downloaded."""
    if local_model_file(name) is None:
        raise TranscriptionError(f"Whisper model {name!r} is not on this machine (neither a checkpoint file nor "
                                 f"downloaded into {whisper_cache_dir()}); download it once while online, set "
                                 f"VOICEBATCH_WHISPER_MODEL to a local checkpoint file, or {instead}")


def model_id(name: str) -> str:
    """What identifies the model in the transcript cache: the official name, or the checkpoint's content hash
    (a path can be overwritten with other weights)."""
    if not is_checkpoint_path(name):
        return name
    path = Path(name).expanduser()
    try:
        st = path.stat()
    except OSError:
        raise TranscriptionError(_missing_message(name)) from None
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if stamp not in _model_ids:
        _model_ids[stamp] = "file:" + sha256_file(path)
    return _model_ids[stamp]


def _missing_message(name: str) -> str:
    return (f"Whisper model {name!r} is neither an official model name nor an existing checkpoint file; set "
            "VOICEBATCH_WHISPER_MODEL to a name such as turbo or base.en, or to a checkpoint path, or write the "
            "transcript in the voice's voice.yaml")


def _load(name: str, device: str):
    import whisper

    if is_checkpoint_path(name) and not Path(name).expanduser().is_file():
        raise TranscriptionError(_missing_message(name))
    try:
        # Loaded on the CPU first: its sparse alignment-heads buffer cannot move to MPS, a dense copy can.
        model = whisper.load_model(str(Path(name).expanduser()) if is_checkpoint_path(name) else name, device="cpu",
                                   download_root=str(whisper_cache_dir()))
    except Exception as e:  # urllib, torch and pickle errors alike: all mean "no usable model here"
        raise TranscriptionError(
            f"cannot load Whisper model {name!r} ({type(e).__name__}: {e}); download it once while online, set "
            "VOICEBATCH_WHISPER_MODEL to a local checkpoint, or write the transcript in the voice's voice.yaml"
        ) from None
    if device != "cpu":
        model.alignment_heads = model.alignment_heads.to_dense()
        model = model.to(device)
    return model


def whisper_model(name: str, device: str):
    """The process's Whisper model `name` on `device`, loaded on first use."""
    key = (name, device)
    if key not in _models:
        _models[key] = _load(name, device)
    return _models[key]


def transcribe(audio, rate: int, name: str, device_setting: str = "auto", where: str = "reference") -> Transcription:
    """What a mono float32 clip says, by Whisper (greedy decoding, no timestamps: deterministic and fast)."""
    import soxr

    clip = soxr.resample(audio, rate, WHISPER_RATE, quality="VHQ") if rate != WHISPER_RATE else audio
    identity = model_id(name)
    device = choose_device(device_setting)
    with _lock:
        model = whisper_model(name, device)
        start = time.perf_counter()
        result = model.transcribe(clip.astype("float32"), temperature=0.0, condition_on_previous_text=False,
                                  without_timestamps=True, fp16=device.startswith("cuda"), verbose=None)
        seconds = time.perf_counter() - start
    text = " ".join(result.get("text", "").split())
    if not text:
        raise TranscriptionError(f"{where}: Whisper ({name}) heard no words in it; write what it says as "
                                 "`transcript:` in the voice's voice.yaml")
    return Transcription(text, result.get("language"), identity, seconds)
