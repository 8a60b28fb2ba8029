"""Typed errors. The CLI turns any VoicebatchError into one message and an exit code."""


class VoicebatchError(Exception):
    """An error a user can act on; its message says what went wrong and how to fix it."""

    exit_code = 1


class UserInputError(VoicebatchError):
    """Bad input (manifest, voice, path): refused before anything renders."""

    exit_code = 2


class EngineError(VoicebatchError):
    """An engine could not load or render."""
