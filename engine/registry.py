"""Engines by name, imported lazily so a missing optional engine costs nothing until it is asked for."""
from __future__ import annotations

import importlib

from tasks.core.errors import EngineError

_ENGINES = {
    "higgs": ("engine.higgs", "HiggsEngine", None),
    "hibari": ("engine.hibari", "HibariEngine", None),
    "piper": ("engine.piper", "PiperEngine", "pip install 'voicebatch[piper]' (GPL-3.0 licensed)"),
    "test-faults": ("engine.testing", "FaultInjectingEngine", None),  # injects faults on request, for drills
}


def available_engines() -> list[str]:
    return sorted(name for name in _ENGINES if not name.startswith("test-"))


def engine_class(name: str):
    """The Engine subclass registered as `name`; EngineError when unknown or not installed."""
    if name not in _ENGINES:
        raise EngineError(f"unknown engine {name!r}; available engines: {', '.join(available_engines())}")
    module, cls, hint = _ENGINES[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as e:
        fix = f"; install it with: {hint}" if hint else ""
        raise EngineError(f"engine {name!r} is not installed ({e.name or e}){fix}") from e
