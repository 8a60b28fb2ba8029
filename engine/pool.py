"""The process-wide warm pool: an engine loads once per process and stays loaded across tasks and flow runs.

Each device has one render lane (engine/lane.py: a thread lock and a file lock per device, shared by every
process on the machine): the models are not re-entrant, and two renders on one GPU would only fight over it.
Loading also happens in the lane, so two processes never load onto one device at once.
"""
from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass

from engine.base import Engine
from engine.lane import device_lane, thread_lock
from engine.registry import engine_class


@dataclass
class WarmEngine:
    engine: Engine
    load_seconds: float  # what this checkout of the pool cost: 0 when the engine was already warm


_engines: dict[tuple[str, str, str], Engine] = {}
_loaded: set[tuple[str, str, str]] = set()
_pool_lock = threading.Lock()
load_counts: dict[tuple[str, str, str], int] = {}  # loads per engine in this process: a warm pool keeps it at 1


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
        with render_lane(engine.device):
            engine.load()
        _loaded.add(key)
        load_counts[key] = load_counts.get(key, 0) + 1
        return WarmEngine(engine, time.perf_counter() - start)


def lane_lock(device: str) -> threading.Lock:
    """This process's lock for one device (the in-process half of its render lane)."""
    return thread_lock(device)


def render_lane(device: str) -> AbstractContextManager:
    """The device's render lane, shared with every process on this machine (VOICEBATCH_LANE_DIR)."""
    from engine.settings import get_settings

    return device_lane(device, get_settings().lane_dir)


def loaded_counts() -> dict[str, int]:
    """How many times each engine was loaded in this process, by "name/device/dtype" (for Dask workers)."""
    with _pool_lock:
        return {"/".join(key): n for key, n in load_counts.items()}


def close_all() -> None:
    with _pool_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()
        _loaded.clear()
