"""The process-wide warm pool: an engine loads once per process and stays loaded across tasks and flow runs.

Each device has one render lane (a lock): the models are not re-entrant, and two renders on one GPU
would only fight over it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from engine.base import Engine
from engine.registry import engine_class


@dataclass
class WarmEngine:
    engine: Engine
    load_seconds: float  # what this checkout of the pool cost: 0 when the engine was already warm


_engines: dict[tuple[str, str, str], Engine] = {}
_lanes: dict[str, threading.Lock] = {}
_pool_lock = threading.Lock()


def get_engine(name: str, device: str = "cpu", dtype: str = "auto") -> WarmEngine:
    """The loaded engine `name` for a device, loading it on first use."""
    key = (name, device, dtype)
    with _pool_lock:
        engine = _engines.get(key)
        if engine is not None:
            return WarmEngine(engine, 0.0)
        start = time.perf_counter()
        engine = engine_class(name)(device=device, dtype=dtype)
        engine.load()
        _engines[key] = engine
        return WarmEngine(engine, time.perf_counter() - start)


def render_lane(device: str) -> threading.Lock:
    """The lock that serialises renders on one device."""
    with _pool_lock:
        return _lanes.setdefault(device, threading.Lock())


def close_all() -> None:
    with _pool_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()
