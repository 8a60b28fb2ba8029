"""Chapter assembly: takes joined with pauses and short fades at every join. Pure numpy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.audio.wav import to_pcm16
from tasks.core.audio_format import SAMPLE_RATE

FADE_SECONDS = 0.008  # long enough to hide a step at a join, short enough not to eat a consonant
CHAPTER_GAP_SECONDS = 2.0  # silence between chapters in the whole-book file
ROOM_TONE_CUTOFF_HZ = 1500.0  # a dull, even hiss: what a quiet room sounds like through a microphone
ROOM_TONE_PIECE_SAMPLES = 1 << 20


@dataclass(frozen=True)
class Segment:
    """One take in its place: who speaks, and the silence that follows it when set explicitly."""
    audio: np.ndarray
    speaker: str
    line: int
    pause_after: float | None


def fade_edges(audio: np.ndarray, seconds: float = FADE_SECONDS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Raised-cosine fade-in and fade-out so a take starts and ends at zero (no click at a join)."""
    n = min(int(seconds * rate), len(audio) // 2)
    if n == 0:
        return audio.astype(np.float32, copy=True)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    out = audio.astype(np.float32, copy=True)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def gap_after(current: Segment, following: Segment, speaker_pause: float, chunk_pause: float) -> float:
    """Seconds of silence between two takes: the line's own pause_after, else one pause between speakers
    and a shorter one between one speaker's consecutive takes."""
    if current.pause_after is not None:
        return current.pause_after
    return chunk_pause if current.speaker == following.speaker else speaker_pause


def assemble_chapter(segments: list[Segment], speaker_pause: float, chunk_pause: float,
                     rate: int = SAMPLE_RATE) -> np.ndarray:
    """The chapter's audio: every take in order, faded at its edges, with the pauses between them."""
    parts: list[np.ndarray] = []
    for i, seg in enumerate(segments):
        parts.append(fade_edges(seg.audio, rate=rate))
        if i + 1 < len(segments):
            parts.append(np.zeros(round(gap_after(seg, segments[i + 1], speaker_pause, chunk_pause) * rate), np.float32))
        elif seg.pause_after:
            parts.append(np.zeros(round(seg.pause_after * rate), np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def room_tone(samples: int, level_dbfs: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Low-passed noise at an RMS level: the sound of a quiet room instead of digital silence. Deterministic
    for a seed, so a re-run writes the same file."""
    return add_room_tone(np.zeros(max(samples, 0), np.float32), level_dbfs, seed, rate)


def add_room_tone(audio: np.ndarray, level_dbfs: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """room_tone() added to float32 `audio` in place (and returned), made in pieces: a chapter-long bed is
    never held whole. White noise through a one-pole low-pass has the expected power (1 - pole) / (1 + pole)
    per unit of white power, so it is scaled by that, made once (measuring it first cost a second pass: 0.7 s
    a chapter); chance moves the level of a 5-second stretch by ~0.04 dB, of a chapter by ~0.003 dB."""
    from scipy.signal import lfilter

    if audio.size == 0:
        return audio
    pole = float(np.exp(-2 * np.pi * ROOM_TONE_CUTOFF_HZ / rate))
    scale = np.float32(10 ** (level_dbfs / 20) / np.sqrt((1 - pole) / (1 + pole)))
    rng, state = np.random.default_rng(seed), np.zeros(1, np.float32)
    for start in range(0, audio.size, ROOM_TONE_PIECE_SAMPLES):
        white = rng.standard_normal(min(ROOM_TONE_PIECE_SAMPLES, audio.size - start), dtype=np.float32)
        noise, state = lfilter(np.float32([1 - pole]), np.float32([1, -pole]), white, zi=state)
        noise *= scale
        audio[start:start + noise.size] += noise
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
