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
_loaded: set[tuple[str, str, str]] = set()
_lanes: dict[str, threading.Lock] = {}
_pool_lock = threading.Lock()


def get_engine(name: str, device: str = "cpu", dtype: str = "auto") -> Engine:
    """The process's engine `name` for a device, created on first use but not loaded: enough to describe it
    and plan with it, with no weights read (a run whose takes are all cached never loads a model)."""
    key = (name, device, dtype)
    with _pool_lock:
        if key not in _engines:
            _engines[key] = engine_class(name)(device=device, dtype=dtype)
        return _engines[key]


def warm_engine(name: str, device: str = "cpu", dtype: str = "auto") -> WarmEngine:
    """The loaded engine `name`, loading it on first use."""
    engine = get_engine(name, device, dtype)
    key = (name, device, dtype)
    with _pool_lock:
        if key in _loaded:
            return WarmEngine(engine, 0.0)
        start = time.perf_counter()
        engine.load()
        _loaded.add(key)
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
        _loaded.clear()
