"""A fault-injecting engine for tests and drills: the embedded hibari engine, except where the text asks
for a fault. It is registered like any engine (`--engine test-faults`), so the pipeline's fault handling
is exercised through its real code path.

Markers in a line's text: `FAULT:exception`, `FAULT:oom` (fails while batched with other jobs, renders
alone), `FAULT:nan`, `FAULT:empty`, `FAULT:long` (ten minutes of audio), `FAULT:mps` (an MPS-only op
failure when the engine runs on "mps"; renders on "cpu"), `FAULT:garbled@SEED` (rendered with that seed, the
take speaks another line's words instead; with any other seed, the line without the marker: what a re-take
with the next seed fixes).
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from engine.base import EngineInfo, RenderRequest
from engine.hibari import HibariEngine
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import EngineError

GARBLED = re.compile(r"\s*FAULT:garbled@(\d+)")
OTHER_LINE = "Nobody had written to the lighthouse in years, and now there were two letters on the table."


class InjectedFault(EngineError):
    """A fault raised on purpose."""


class FaultInjectingEngine(HibariEngine):
    id = "test-faults"
    calls: list[int] = []  # batch sizes of every render() call, for tests to read

    def __init__(self, device: str = "cpu", dtype: str = "auto") -> None:
        super().__init__(device, dtype)
        self.device = device if device in ("cpu", "mps") else "cpu"

    def render(self, requests: Sequence[RenderRequest]) -> list[np.ndarray]:
        type(self).calls.append(len(requests))
        texts = [r.text for r in requests]
        if any("FAULT:exception" in t for t in texts):
            raise InjectedFault("injected exception")
        if len(requests) > 1 and any("FAULT:oom" in t for t in texts):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if self.device == "mps" and any("FAULT:mps" in t for t in texts):
            raise NotImplementedError("The operator 'aten::_fft_r2c' is not currently implemented for the MPS device")
        requests = [self._garbled(r) for r in requests]
        out = []
        for req, audio in zip(requests, super().render(requests)):
            if "FAULT:nan" in req.text:
                audio = np.full_like(audio, np.nan)
            elif "FAULT:empty" in req.text:
                audio = np.zeros(0, np.float32)
            elif "FAULT:long" in req.text:
                audio = np.resize(audio, SAMPLE_RATE * 600)
            out.append(audio)
        return out

    @staticmethod
    def _garbled(request: RenderRequest) -> RenderRequest:
        match = GARBLED.search(request.text)
        if match is None:
            return request
        spoken = OTHER_LINE if int(match.group(1)) == request.params.seed else GARBLED.sub("", request.text)
        return replace(request, text=spoken)

    def info(self) -> EngineInfo:
        info = super().info()
        info.engine, info.device = self.id, self.device
        return info
