"""Chapter assembly: takes joined with pauses and short fades at every join. Pure numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.audio.wav import to_pcm16
from tasks.core.audio_format import SAMPLE_RATE

FADE_SECONDS = 0.008  # long enough to hide a step at a join, short enough not to eat a consonant
CHAPTER_GAP_SECONDS = 2.0  # silence between chapters in the whole-book file
ROOM_TONE_CUTOFF_HZ = 1500.0  # a dull, even hiss: what a quiet room sounds like through a microphone
ROOM_TONE_LOOP_SAMPLES = 1 << 22  # 175 s at 24 kHz
ROOM_TONE_WARMUP_SAMPLES = 256  # the low-pass forgets its start within a few dozen samples


@dataclass(frozen=True)
class Segment:
    """One take in its place: who speaks, and the silence that follows it when set explicitly."""
    audio: np.ndarray
    speaker: str
    line: int
    pause_after: float | None


def fade_edges(audio: np.ndarray, seconds: float = FADE_SECONDS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of float32 `audio`, in place (and returned), so a take starts and ends
    at zero (no click at a join)."""
    n = min(int(seconds * rate), len(audio) // 2)
    if n:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def gap_after(current: Segment, following: Segment, speaker_pause: float, chunk_pause: float) -> float:
    """Seconds of silence between two takes: the line's own pause_after, else one pause between speakers
    and a shorter one between one speaker's consecutive takes."""
    if current.pause_after is not None:
        return current.pause_after
    return chunk_pause if current.speaker == following.speaker else speaker_pause


def assemble_chapter(segments: list[Segment], speaker_pause: float, chunk_pause: float,
                     rate: int = SAMPLE_RATE, head: float = 0.0, tail: float = 0.0) -> np.ndarray:
    """The chapter's audio: `head` seconds of silence, every take in order, faded at its edges, with the pauses
    between them, and `tail` seconds. Written into one array made once (each copy of a chapter costs a few
    tenths of a second)."""
    starts, at = [], round(head * rate)
    for i, seg in enumerate(segments):
        starts.append(at)
        at += len(seg.audio)
        if i + 1 < len(segments):
            at += round(gap_after(seg, segments[i + 1], speaker_pause, chunk_pause) * rate)
        elif seg.pause_after:
            at += round(seg.pause_after * rate)
    audio = np.zeros(at + round(tail * rate), np.float32)
    for start, seg in zip(starts, segments):
        piece = audio[start:start + len(seg.audio)]
        piece[:] = seg.audio
        fade_edges(piece, rate=rate)
    return audio


def room_tone(samples: int, level_dbfs: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Low-passed noise at an RMS level: the sound of a quiet room instead of digital silence. Deterministic
    for a seed, so a re-run writes the same file."""
    return add_room_tone(np.zeros(max(samples, 0), np.float32), level_dbfs, seed, rate)


def room_tone_loop(samples: int, level_dbfs: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """`samples` of white noise through a one-pole low-pass at the RMS level, made as one period of a loop:
    filtered as if the same noise had come just before, so its end runs on into its start without a step."""
    from scipy.signal import lfilter

    pole = float(np.exp(-2 * np.pi * ROOM_TONE_CUTOFF_HZ / rate))
    a, b = np.float32([1, -pole]), np.float32([1 - pole])
    white = np.random.default_rng(seed).standard_normal(samples, dtype=np.float32)
    _, state = lfilter(b, a, white[-ROOM_TONE_WARMUP_SAMPLES:], zi=np.zeros(1, np.float32))
    loop, _ = lfilter(b, a, white, zi=state)
    rms = float(np.sqrt(np.mean(np.square(loop, dtype=np.float64))))
    return (loop * np.float32(10 ** (level_dbfs / 20) / rms if rms > 0 else 0.0)).astype(np.float32)


def add_room_tone(audio: np.ndarray, level_dbfs: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Room tone added to float32 `audio` in place (and returned): one room_tone_loop of at most
    ROOM_TONE_LOOP_SAMPLES laid end to end under it. Making noise for a whole 24-minute chapter cost ~1 s of
    each one-line edit; repeated noise is recognised over periods of seconds, not of a three-minute loop."""
    if audio.size == 0:
        return audio
    loop = room_tone_loop(min(audio.size, ROOM_TONE_LOOP_SAMPLES), level_dbfs, seed, rate)
    for start in range(0, audio.size, loop.size):
        audio[start:start + loop.size] += loop[:audio.size - start]
    return audio


def with_room_tone(audio: np.ndarray, level_dbfs: float | None, head: float = 0.0, tail: float = 0.0,
                   seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio with `head` and `tail` seconds around it, and room tone under all of it (one continuous bed,
    so the hiss never switches on and off at a line). With no level, the padding is digital silence."""
    padded = np.concatenate([np.zeros(round(head * rate), np.float32), np.asarray(audio, np.float32),
                             np.zeros(round(tail * rate), np.float32)])
    if level_dbfs is None:
        return padded
    return add_room_tone(padded, level_dbfs, seed, rate)


def gap_audio(gap: float, room_tone_dbfs: float | None, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The pause between two chapters of the book: room tone at that level, else digital silence."""
    return with_room_tone(np.zeros(round(gap * rate), np.float32), room_tone_dbfs, rate=rate)


def assemble_book(chapters: list[np.ndarray], gap: float = CHAPTER_GAP_SECONDS, rate: int = SAMPLE_RATE,
                  room_tone_dbfs: float | None = None) -> np.ndarray:
    """The chapters with a gap between them; 16-bit chapters give a 16-bit book with their samples untouched."""
    silence = gap_audio(gap, room_tone_dbfs, rate)
    if chapters and chapters[0].dtype == np.int16:
        silence = to_pcm16(silence)
    parts: list[np.ndarray] = []
    for i, audio in enumerate(chapters):
        if i:
            parts.append(silence)
        parts.append(audio)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def measure(audio: np.ndarray, rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Duration (s), sample peak and RMS (dBFS; -inf for silence)."""
    audio = np.asarray(audio, dtype=np.float64)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    to_db = lambda x: 20 * np.log10(x) if x > 0 else float("-inf")  # noqa: E731
    return {"duration": audio.size / rate, "peak_dbfs": float(to_db(peak)), "rms_dbfs": float(to_db(rms))}
