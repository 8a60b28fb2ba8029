"""Codec frames of encoded chapters, read without decoding: ADTS AAC and MPEG-1 Layer III frames, counted (a
chapter's encoded sample count, priming and padding included) and copied out without container headers (ID3
tags, the LAME Info frame), so that chapters join into one book by stream copy."""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterator

from tasks.core.errors import VoicebatchError

AAC_FRAME_SAMPLES = 1024
MP3_FRAME_SAMPLES = 1152
AAC_PRIMING = 1024  # samples ffmpeg's AAC encoder puts before the audio (its encoder delay)
MP3_PRIMING = 576  # LAME's encoder delay (decoders remove their own 529-sample delay themselves)
_MP3_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]  # MPEG-1 Layer III
_MP3_RATES = [44_100, 48_000, 32_000]


class FrameError(VoicebatchError):
    """An encoded chapter is not the stream of frames its encoder should have written."""


def _skip_id3v2(f: BinaryIO) -> None:
    head = f.read(10)
    if head[:3] == b"ID3" and len(head) == 10:
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        f.seek(10 + size + (10 if head[5] & 0x10 else 0))
    else:
        f.seek(0)


def mp3_frames(path: Path) -> Iterator[bytes]:
    """The audio frames of an MPEG-1 Layer III file, without its ID3 tags and its Xing/Info frame."""
    with open(path, "rb") as f:
        _skip_id3v2(f)
        first = True
        while len(header := f.read(4)) == 4:
            if header[:3] == b"TAG":  # an ID3v1 tag ends the file
                break
            if header[0] != 0xFF or (header[1] & 0xFE) != 0xFA or not 0 < header[2] >> 4 < 15 or header[2] & 0x0C == 0x0C:
                raise FrameError(f"{path}: not a constant-bit-rate MPEG-1 Layer III frame at byte {f.tell() - 4}")
            kbps, rate = _MP3_KBPS[header[2] >> 4], _MP3_RATES[(header[2] >> 2) & 3]
            frame = header + f.read(144_000 * kbps // rate + ((header[2] >> 1) & 1) - 4)
            if not (first and (b"Info" in frame[:64] or b"Xing" in frame[:64])):
                yield frame
            first = False


def adts_frames(path: Path) -> Iterator[bytes]:
    """The frames of an ADTS AAC file, one raw block of 1024 samples each (as ffmpeg writes them)."""
    with open(path, "rb") as f:
        while len(header := f.read(7)) == 7:
            if header[0] != 0xFF or (header[1] & 0xF6) != 0xF0 or header[6] & 3:
                raise FrameError(f"{path}: not an ADTS frame of one raw block at byte {f.tell() - 7}")
            length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
            yield header + f.read(length - 7)


def frames_of(path: Path) -> Iterator[bytes]:
    return adts_frames(path) if Path(path).suffix == ".aac" else mp3_frames(path)


def frame_samples(path: Path) -> int:
    return AAC_FRAME_SAMPLES if Path(path).suffix == ".aac" else MP3_FRAME_SAMPLES


def priming(path: Path) -> int:
    return AAC_PRIMING if Path(path).suffix == ".aac" else MP3_PRIMING


def encoded_samples(path: Path) -> int:
    """Samples the file's frames hold, priming and padding included."""
    return sum(1 for _ in frames_of(path)) * frame_samples(path)
