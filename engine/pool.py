"""The process-wide warm pool: an engine loads once per process and stays loaded across tasks and flow runs.

Each device has one render lane (a lock): the models are not re-entrant, and two renders on one GPU
would only fight over it. An engine that runs single-threaded on the CPU (`Engine.cpu_lanes`) gets one lane
per core instead, each with its own instance, so a 2-core machine renders two batches at once.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from engine.base import Engine
from engine.registry import engine_class


@dataclass
class WarmEngine:
    engine: Engine
    load_seconds: float  # what this checkout of the pool cost: 0 when the engine was already warm


_engines: dict[tuple, Engine] = {}
_loaded: set[tuple] = set()
_lanes: dict[str, threading.Lock] = {}
_free_cpu_lanes: dict[str, queue.Queue] = {}
_pool_lock = threading.Lock()


def get_engine(name: str, device: str = "cpu", dtype: str = "auto", lane: int = 0) -> Engine:
    """The process's engine `name` for a device, created on first use but not loaded: enough to describe it
    and plan with it, with no weights read (a run whose takes are all cached never loads a model)."""
    key = (name, device, dtype, lane)
    with _pool_lock:
        if key not in _engines:
            _engines[key] = engine_class(name)(device=device, dtype=dtype)
        return _engines[key]


def warm_engine(name: str, device: str = "cpu", dtype: str = "auto", lane: int = 0) -> WarmEngine:
    """The loaded engine `name`, loading it on first use."""
    engine = get_engine(name, device, dtype, lane)
    key = (name, device, dtype, lane)
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


def lane_count(engine: Engine) -> int:
    """Render lanes for an engine: one per core for single-threaded CPU engines, else one per device."""
    if not (engine.cpu_lanes and engine.device == "cpu"):
        return 1
    from engine.settings import get_settings

    if get_settings().cpu_lanes:
        return get_settings().cpu_lanes
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def load_lanes(name: str, device: str = "cpu", dtype: str = "auto") -> float:
    """Load the engine in every lane it will render in; seconds spent (0 when all were warm)."""
    first = warm_engine(name, device, dtype)
    return first.load_seconds + sum(warm_engine(name, device, dtype, lane).load_seconds
                                    for lane in range(1, lane_count(first.engine)))


@contextmanager
def checkout(name: str, device: str = "cpu", dtype: str = "auto") -> Iterator[Engine]:
    """A loaded engine `name` in a free render lane of its device, held for the block."""
    first = warm_engine(name, device, dtype).engine
    count = lane_count(first)
    if count == 1:
        with render_lane(first.device):
            yield first
        return
    with _pool_lock:
        free = _free_cpu_lanes.get(first.device)
        if free is None or free.maxsize != count:
            free = _free_cpu_lanes[first.device] = queue.Queue(maxsize=count)
            for lane in range(count):
                free.put(lane)
    lane = free.get()
    try:
        with render_lane(f"{first.device}#{lane}"):
            yield warm_engine(name, device, dtype, lane).engine
    finally:
        free.put(lane)


def close_all() -> None:
    with _pool_lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()
        _loaded.clear()
        _free_cpu_lanes.clear()
