"""Typed errors, in one place. The CLI turns any VoicebatchError into one message and an exit code; each
message names the file, the place in it and the fix."""
from __future__ import annotations

from pathlib import Path


class VoicebatchError(Exception):
    """An error a user can act on; its message says what went wrong and how to fix it."""
    exit_code = 1


class UserInputError(VoicebatchError):
    """Bad input (manifest, voice, path): refused before anything renders."""
    exit_code = 2


class EngineError(VoicebatchError):
    """An engine could not load or render."""


class ManifestError(UserInputError):
    """A manifest (or a script file it names) is malformed or inconsistent."""
    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: manifest refused ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}")


class VoiceError(UserInputError):
    """A voice asset is missing or malformed."""
