"""Speech engines behind one small interface. No Prefect and no database in here."""
import os

# What the user set, before the default below: `voicebatch doctor` reports it.
MPS_FALLBACK_FROM_USER = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
# Must be set before torch is imported anywhere in the process: ops MPS lacks then run on the CPU.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from engine.base import DecodingParams, EarlierTake, Engine, EngineInfo, RenderRequest, VoicePrompt  # noqa: E402
from engine.registry import available_engines, engine_class  # noqa: E402
from tasks.core.errors import EngineError, VoicebatchError  # noqa: E402

__all__ = [
    "DecodingParams", "EarlierTake", "Engine", "EngineInfo", "RenderRequest", "VoicePrompt",
    "EngineError", "VoicebatchError", "available_engines", "engine_class",
]
