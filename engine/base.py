"""The engine interface: one abstract render method, capability attributes and a nested Options model."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.lexicon import rewrite
from tasks.core.errors import EngineError


class DecodingParams(BaseModel):
    """Decoding settings of one render. Frozen and hashable: part of the grouping key and the cache key."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.7, gt=0, le=5, description="Sampling temperature, > 0.")
    top_k: int = Field(50, ge=1, le=100_000, description="Keep the k most likely tokens, >= 1.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass, in (0, 1].")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed; same seed and inputs give the same audio.")
    max_new_tokens: int = Field(2048, ge=1, le=100_000, description="Upper bound on generated audio frames.")
    ras_win_len: int = Field(7, ge=0, le=100, description="Repetition-aware sampling window (0 turns it off).")

    def honoured(self, names: frozenset[str]) -> dict[str, Any]:
        """The settings an engine honours: only these may enter its cache key."""
        return {k: v for k, v in self.model_dump().items() if k in names}


@dataclass(frozen=True)
class VoicePrompt:
    """What an engine needs of a voice: its staged reference, transcript and this engine's options."""
    voice_id: str
    content_hash: str
    reference: Path | None = None
    transcript: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class EarlierTake:
    """A take earlier in a context chain, to prompt with: the take as a prompt (its audio as the reference, its
    words as the transcript), the voice that spoke it, and that voice's speaker tag where the chain is a dialogue."""
    take: VoicePrompt
    voice: VoicePrompt
    tag: int | None = None


@dataclass(frozen=True)
class RenderRequest:
    """One chunk of text to speak with a voice and decoding settings."""
    text: str
    voice: VoicePrompt
    params: DecodingParams
    key: str = ""
    scene: str | None = None  # the manifest's scene description, for engines that honour "scene"
    # The manifest's pronunciations that occur in `text` (engine/lexicon.py): (term, "/phonemes/" or respelling).
    pronunciations: tuple[tuple[str, str], ...] = ()
    # Context chains (engines that honour "context"; the others ignore it): earlier takes to prompt with, oldest
    # first, and this request's speaker tag where its chain is a dialogue (None: one voice so far).
    context: tuple[EarlierTake, ...] = ()
    speaker_tag: int | None = None
    # What the engine measured while rendering this request, filled in by render() where it can (e.g.
    # "decode_steps": generated frames); left empty by engines that measure nothing. Not part of equality.
    measured: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class EngineInfo:
    """What provenance records about the engine that made a take."""
    engine: str
    model: str
    revision: str | None
    device: str
    dtype: str
    code_version: str
    versions: dict[str, str] = field(default_factory=dict)


class Engine(ABC):
    """A loaded speech engine. Engines render and describe themselves; they never write to the database."""
    id: ClassVar[str]
    code_version: ClassVar[str] = "1"  # bump when a code change alters the sound: it is part of the cache key
    honours: ClassVar[frozenset[str]] = frozenset()  # decoding settings that change the output
    batches: ClassVar[bool] = False  # whether render() gains from many requests at once
    seed_per_row: ClassVar[bool] = False  # one render call may mix seeds: each request samples from its own stream
    cpu_lanes: ClassVar[bool] = False  # single-threaded on the CPU: one instance per core can render side by side
    uses_reference: ClassVar[bool] = False  # whether render() speaks with the voice's reference clip and transcript
    batch_size: int = 16  # most jobs the flow hands render() at once; an engine may set its own per instance

    class Options(BaseModel):
        """Per-voice options for this engine (voice.yaml `engines.<id>`)."""
        model_config = ConfigDict(extra="forbid")

    def __init__(self, device: str = "cpu", dtype: str = "auto") -> None:
        self.device = device
        self.dtype = dtype

    def load(self) -> None:
        """Load weights; called once per process by the warm pool."""
    @abstractmethod
    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        """Speak each request; return one mono float32 array at SAMPLE_RATE per request, in order."""
    @abstractmethod
    def info(self) -> EngineInfo:
        """Model, device, dtype and versions, for provenance."""
    @classmethod
    def phoneme_alphabet(cls) -> frozenset[str] | None:
        """The symbols a `/phonemes/` pronunciation may use with this engine; None when it reads text only
        (then only respellings apply to it)."""
        return None

    def spoken_text(self, request: RenderRequest) -> str:
        """What the engine reads for a request: its text with the matching pronunciations applied (respellings
        here; an engine that reads phonemes overrides this)."""

        try:
            return rewrite(request.text, request.pronunciations)
        except ValueError as e:
            raise EngineError(f"{self.id}: {e}; give a plain-text respelling for it instead") from None

    def effective_options(self, voice: VoicePrompt) -> dict[str, Any]:
        """The options this engine will really use for a voice (after fallbacks): part of the cache key."""
        return self.Options(**dict(voice.options)).model_dump()

    def clear_caches(self) -> None:
        """Release per-job buffers."""
    def close(self) -> None:
        """Free the model."""
