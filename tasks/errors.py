"""Errors about the user's input: each names the file, the place in it and what would be accepted."""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserInputError


class ManifestError(UserInputError):
    """A manifest (or a script file it names) is malformed or inconsistent."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: manifest refused ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}")


class VoiceError(UserInputError):
    """A voice asset is missing or malformed."""
