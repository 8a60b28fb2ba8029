"""The embedded default engine: hibari-tts, a small ONNX model whose `heart` voice ships in the wheel."""
from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import version
from typing import Sequence

import numpy as np
from pydantic import Field

from engine.base import Engine, EngineInfo, RenderRequest, VoicePrompt
from engine.lexicon import rewrite
from tasks.core.errors import EngineError
from tasks.core.stopping import raise_if_stopping

log = logging.getLogger(__name__)
BUNDLED_VOICE = "heart"


@lru_cache(maxsize=1)
def _hibari_alphabet() -> frozenset[str]:
    """The model's phoneme symbols (its vocabulary), read from the package's assets without loading the model."""
    import json
    from importlib.resources import files

    return frozenset(json.loads(files("hibari").joinpath("assets", "vocab.json").read_text(encoding="utf-8")))


class HibariEngine(Engine):
    cpu_lanes = True  # one onnxruntime thread per instance
    id = "hibari"
    code_version = "1"
    honours = frozenset({"seed"})  # temperature, top_k/top_p and token limits mean nothing to it
    _resolved: dict[str, str] = {}  # process-wide: every lane's instance resolves (and warns) once per voice

    class Options(Engine.Options):
        voice: str = Field(BUNDLED_VOICE, description="hibari voice name; only 'heart' works offline.")
        speed: float = Field(1.0, ge=0.5, le=2.0, description="Speaking rate (1.0 = the model's own pace).")

    def __init__(self, device: str = "cpu", dtype: str = "auto") -> None:
        super().__init__("cpu", "float32")  # onnxruntime on the CPU, whatever the machine has
        self._models: dict[str, object] = {}

    def load(self) -> None:
        self._model(BUNDLED_VOICE)

    def _resolve(self, name: str) -> str:
        """The voice that will really speak: a voice that cannot be had offline falls back to the bundled one."""
        if name in self._resolved:
            return self._resolved[name]
        from hibari.voices import VOICES, voice_path

        if name not in VOICES:
            raise EngineError(f"hibari has no voice {name!r}; its voices: {', '.join(VOICES)}")
        resolved = name
        try:
            voice_path(name)  # downloads once into hibari's cache when online
        except RuntimeError as e:
            log.warning("hibari voice %r is not available (%s); using the bundled %r voice instead. "
                        "Copy the voice file into hibari's cache (HIBARI_HOME) to use it offline.",
                        name, str(e).split(" (")[0], BUNDLED_VOICE)
            resolved = BUNDLED_VOICE
        self._resolved[name] = resolved
        return resolved

    def _model(self, name: str):
        if name not in self._models:
            from hibari import Hibari
            from hibari.voices import VOICES

            # Spelling-to-sound rules load in ~0.4 s; voices of one accent share them.
            british = VOICES[name]["british"]
            g2p = next((m.g2p for m in self._models.values() if VOICES[m.voice]["british"] == british), None)
            self._models[name] = Hibari(voice=name, threads=1, g2p=g2p)
        return self._models[name]

    @classmethod
    def phoneme_alphabet(cls) -> frozenset[str]:
        return _hibari_alphabet()

    def spoken_text(self, request: RenderRequest) -> str:
        """Respellings as text, phonemes through hibari's own inline form `[words](/phonemes/)`."""
        return rewrite(request.text, request.pronunciations, lambda words, phonemes: f"[{words}](/{phonemes}/)")

    def effective_options(self, voice: VoicePrompt) -> dict:
        opts = self.Options(**dict(voice.options))
        return {"voice": self._resolve(opts.voice), "speed": opts.speed}

    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        out = []
        for req in requests:
            raise_if_stopping()  # a stop asked for cancels the rest of the batch (finished takes of it are lost)
            opts = self.effective_options(req.voice)
            model = self._model(opts["voice"])
            audio = model(self.spoken_text(req), speed=opts["speed"], seed=req.params.seed)
            out.append(np.asarray(audio, dtype=np.float32))
        return out

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.id, model="hibari-tts", revision=version("hibari-tts"), device="cpu",
                          dtype="float32", code_version=self.code_version,
                          versions={"hibari-tts": version("hibari-tts"), "onnxruntime": version("onnxruntime")})

