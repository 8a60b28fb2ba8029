"""Reference clips: decoded (soundfile, or ffmpeg for compressed formats), checked, downmixed, resampled to
24 kHz mono float32 with soxr, and staged content-addressed so an unchanged clip is converted only once."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tasks.audio.wav import write_wav_atomic
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import VoiceError
from tasks.core.files import sha256_file, write_text_atomic

log = logging.getLogger(__name__)

CONVERSION_VERSION = "1"  # bump when conversion changes the staged audio: it is part of the staged key
SOUNDFILE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG"}
FFMPEG_FORMATS = {".mp3": "MP3", ".m4a": "M4A"}
MIN_SECONDS = 1.0  # shorter clips carry too little of a voice to clone
FRAME_SECONDS = 0.02  # loudness is judged per 20 ms frame
ACTIVE_DBFS = -45.0  # a frame louder than this (RMS) counts as sound
MIN_ACTIVE_SECONDS = 0.5  # less sound than this in the whole clip: silent
TRIM_SEARCH_SECONDS = 3.0  # a trimmed clip ends at the quietest frame of its last 3 s, not mid-word
FADE_SECONDS = 0.01


class ReferenceAudioError(VoiceError):
    """A reference clip cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ConversionSettings:
    """What shapes the staged audio; all of it is in the staged key."""
    max_seconds: float = 30.0
    over_max: str = "trim"  # trim | refuse
    sample_rate: int = SAMPLE_RATE
    resampler: str = "soxr-VHQ"
    version: str = CONVERSION_VERSION


@dataclass(frozen=True)
class StagedReference:
    """A reference clip ready for an engine: 24 kHz mono float32 WAV at `path`."""
    path: str
    key: str  # sha256 of the source file's hash and the conversion settings
    source_sha256: str
    source_format: str
    source_rate: int
    source_channels: int
    duration: float
    trimmed_from: float | None  # the source duration when the clip was trimmed
    converted: bool  # False when this call found the clip already staged


def staged_key(source_sha256: str, settings: ConversionSettings) -> str:
    material = json.dumps({"source": source_sha256, "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def _ffmpeg_missing(path: Path, kind: str) -> ReferenceAudioError:
    return ReferenceAudioError(
        f"{path}: {kind} files are read with ffmpeg, which is not installed (not found on PATH); install ffmpeg "
        f"(apt-get install ffmpeg, brew install ffmpeg), or convert the clip to "
        f"{', '.join(sorted(set(SOUNDFILE_FORMATS.values())))}, which work without it")


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise _ffmpeg_missing(path, FFMPEG_FORMATS[path.suffix.lower()])
    with tempfile.TemporaryDirectory(prefix="voicebatch-decode-") as tmp:
        wav = Path(tmp) / "decoded.wav"
        # Native rate and channels kept: resampling and downmixing are ours, with one resampler for every format.
        done = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
                               "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", str(wav)],
                              capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file():
            detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            raise ReferenceAudioError(f"{path}: not a readable audio file (ffmpeg: {detail}); use a WAV, FLAC, "
                                      "OGG, MP3 or M4A recording of the voice")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio, rate


def decode(path: Path) -> tuple[np.ndarray, int, str]:
    """Samples (frames x channels, float32), sample rate and format name of an audio file."""
    import soundfile as sf

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SOUNDFILE_FORMATS and suffix not in FFMPEG_FORMATS:
        raise ReferenceAudioError(f"{path}: {suffix or 'no extension'} is not a supported reference format; use "
                                  "WAV, FLAC, OGG, MP3 or M4A")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ReferenceAudioError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ReferenceAudioError(f"{path}: the file is empty (0 bytes); record or copy the clip again")
    if suffix in FFMPEG_FORMATS:
        audio, rate = _decode_with_ffmpeg(path)
        return audio, rate, FFMPEG_FORMATS[suffix]
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ReferenceAudioError(f"{path}: not a readable {SOUNDFILE_FORMATS[suffix]} audio file ({e}); export "
                                  "the clip again as WAV, FLAC or OGG") from None
    return audio, rate, SOUNDFILE_FORMATS[suffix]


def _frame_dbfs(mono: np.ndarray, rate: int) -> np.ndarray:
    frame = max(1, int(rate * FRAME_SECONDS))
    usable = len(mono) // frame * frame
    if usable == 0:
        return np.array([-np.inf])
    frames = mono[:usable].reshape(-1, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(rms)


def check(path: Path, mono: np.ndarray, rate: int) -> None:
    """Refuse clips that cannot carry a voice: invalid samples, too short, silent."""
    if mono.size == 0:
        raise ReferenceAudioError(f"{path}: holds no audio samples; record or copy the clip again")
    if not np.all(np.isfinite(mono)):
        raise ReferenceAudioError(f"{path}: holds invalid (NaN or infinite) samples; export the clip again")
    seconds = len(mono) / rate
    if seconds < MIN_SECONDS:
        raise ReferenceAudioError(f"{path}: is {seconds:.2f} s long, shorter than the {MIN_SECONDS:.0f} s minimum; "
                                  "use a clip of 5 to 30 s of clear speech")
    active = float(np.sum(_frame_dbfs(mono, rate) > ACTIVE_DBFS)) * FRAME_SECONDS
    if active < MIN_ACTIVE_SECONDS:
        raise ReferenceAudioError(f"{path}: is silent (only {active:.2f} s louder than {ACTIVE_DBFS:.0f} dBFS in "
                                  f"{seconds:.1f} s); use a clip of clear speech")


def trim_point(mono: np.ndarray, rate: int, max_seconds: float) -> int:
    """The sample to cut at: the quietest 20 ms frame in the last few seconds before the maximum."""
    limit = int(max_seconds * rate)
    start = max(0, limit - int(TRIM_SEARCH_SECONDS * rate))
    levels = _frame_dbfs(mono[start:limit], rate)
    frame = max(1, int(rate * FRAME_SECONDS))
    return start + int(np.argmin(levels)) * frame + frame // 2


def _transcript_would_disagree(path: Path, seconds: float, settings: ConversionSettings) -> ReferenceAudioError:
    return ReferenceAudioError(f"{path}: refused: {seconds:.1f} s is over the {settings.max_seconds:g} s maximum, "
                               "and trimming it would cut words its manual transcript still has; cut the clip and "
                               f"its transcript together to under {settings.max_seconds:g} s, or raise "
                               "VOICEBATCH_REFERENCE_MAX_SECONDS")


def fit_length(mono: np.ndarray, rate: int, path: Path, settings: ConversionSettings,
               allow_trim: bool) -> tuple[np.ndarray, float | None]:
    """Trim or refuse a clip over the maximum, saying which; returns the clip and its original duration if cut."""
    seconds = len(mono) / rate
    if seconds <= settings.max_seconds:
        return mono, None
    if settings.over_max == "refuse":
        raise ReferenceAudioError(f"{path}: refused: {seconds:.1f} s is over the {settings.max_seconds:g} s maximum "
                                  f"(VOICEBATCH_REFERENCE_OVER_MAX=refuse); cut the clip to under "
                                  f"{settings.max_seconds:g} s, raise VOICEBATCH_REFERENCE_MAX_SECONDS, or set "
                                  "VOICEBATCH_REFERENCE_OVER_MAX=trim")
    if not allow_trim:
        raise _transcript_would_disagree(path, seconds, settings)
    cut = mono[:trim_point(mono, rate, settings.max_seconds)].copy()
    fade = min(len(cut), int(FADE_SECONDS * rate))
    cut[len(cut) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    log.warning("%s: trimmed from %.1f s to %.1f s (over the %g s maximum, VOICEBATCH_REFERENCE_MAX_SECONDS)",
                path, seconds, len(cut) / rate, settings.max_seconds)
    return cut, seconds


def convert(audio: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Downmix (mean of channels) and resample to `target_rate` mono float32 with soxr's best quality."""
    import soxr

    mono = np.asarray(audio, dtype=np.float32)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="VHQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def find_staged(source_sha256: str, staging_dir: Path,
                settings: ConversionSettings = ConversionSettings()) -> StagedReference | None:
    """The staged copy of a source with this hash under these settings, if it exists."""
    key = staged_key(source_sha256, settings)
    return _load_staged(Path(staging_dir) / f"{key}.wav", Path(staging_dir) / f"{key}.json")


def _load_staged(wav: Path, meta: Path) -> StagedReference | None:
    try:
        facts = json.loads(meta.read_text(encoding="utf-8"))
        if wav.is_file():
            return StagedReference(**{**facts, "path": str(wav), "converted": False})
    except (OSError, ValueError, TypeError):
        pass
    return None


def _usable_clip(source: Path, settings: ConversionSettings,
                 allow_trim: bool) -> tuple[np.ndarray, int, str, int, float | None]:
    """The clip decoded, downmixed at its own rate, checked and fitted to the maximum length: mono samples,
    rate, format, source channels and the duration it was trimmed from."""
    audio, rate, kind = decode(source)
    mono = convert(audio, rate, rate)  # downmix at the source rate: checks and trimming see what was recorded
    check(source, mono, rate)
    mono, trimmed_from = fit_length(mono, rate, source, settings, allow_trim)
    return mono, rate, kind, audio.shape[1], trimmed_from


def check_reference(source: Path, staging_dir: Path, settings: ConversionSettings, allow_trim: bool,
                    source_sha256: str) -> None:
    """Refuse a clip that staging would refuse, writing nothing: for checks before a run starts. A clip already
    staged under these settings passed them when it was staged."""
    found = find_staged(source_sha256, staging_dir, settings)
    if found is None:
        _usable_clip(Path(source), settings, allow_trim)
    elif found.trimmed_from is not None and not allow_trim:
        raise _transcript_would_disagree(Path(source), found.trimmed_from, settings)


def stage_reference(source: Path, staging_dir: Path, settings: ConversionSettings = ConversionSettings(),
                    allow_trim: bool = True, source_sha256: str | None = None) -> StagedReference:
    """The staged 24 kHz mono copy of `source`, converting it only when no copy with the same key exists."""
    source = Path(source)
    digest = source_sha256 or sha256_file(source)
    key = staged_key(digest, settings)
    wav, meta = staging_dir / f"{key}.wav", staging_dir / f"{key}.json"
    found = _load_staged(wav, meta)
    if found is not None:
        if found.trimmed_from is not None and not allow_trim:
            raise _transcript_would_disagree(source, found.trimmed_from, settings)
        return found
    mono, rate, kind, channels, trimmed_from = _usable_clip(source, settings, allow_trim)
    staged = convert(mono, rate, settings.sample_rate)
    write_wav_atomic(wav, staged, subtype="FLOAT", sample_rate=settings.sample_rate)
    result = StagedReference(str(wav), key, digest, kind, rate, channels, len(staged) / settings.sample_rate,
                             trimmed_from, True)
    write_text_atomic(meta, json.dumps({k: v for k, v in asdict(result).items() if k not in ("path", "converted")},
                                       sort_keys=True))
    return result
