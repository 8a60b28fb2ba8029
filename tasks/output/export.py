"""Export: a chapter's takes assembled into its WAV, chapters into the whole-book WAV, names made safe."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from tasks.audio.assemble import assemble_book
from tasks.audio.wav import read_pcm16, write_wav_atomic
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import VoicebatchError


@dataclass(frozen=True)
class OutputFile:
    kind: str  # chapter or book
    chapter: int | None
    title: str
    path: str
    sha256: str
    duration: float


def slug(text: str, fallback: str) -> str:
    """A file-name-safe, lowercase ASCII form of a title."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].strip("-")
    return cleaned or fallback


def book_dir(output_dir: Path, title: str) -> Path:
    return output_dir / slug(title, "book")


def chapter_path(output_dir: Path, book_title: str, index: int, title: str) -> Path:
    return book_dir(output_dir, book_title) / f"{index + 1:02d}-{slug(title, 'chapter')}.wav"


class OutputTooLarge(VoicebatchError):
    """An output file would exceed the configured size limit."""


def check_size(path: Path, samples: int, max_mb: float) -> None:
    size_mb = (samples * 2 + 44) / 1024**2  # 16-bit mono WAV
    if size_mb > max_mb:
        raise OutputTooLarge(f"{path} would be {size_mb:.0f} MB, over VOICEBATCH_MAX_OUTPUT_MB={max_mb:.0f}; "
                             "split the chapter or raise the limit")


def export_book(chapters: list[OutputFile], path: Path, title: str, max_mb: float = 2048,
                room_tone_dbfs: float | None = None) -> OutputFile:
    """The chapters in order with a gap between them (room tone at that level, else digital silence)."""
    audio = assemble_book([read_pcm16(Path(c.path)) for c in chapters], room_tone_dbfs=room_tone_dbfs)
    check_size(path, audio.size, max_mb)
    digest = write_wav_atomic(path, audio)
    return OutputFile("book", None, title, str(path), digest, audio.size / SAMPLE_RATE)
