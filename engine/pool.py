"""The process-wide warm pool: an engine loads once per process and stays loaded across tasks and flow runs.

Each device has one render lane (engine/lane.py: a thread lock and a file lock per device, shared by every
process on the machine): the models are not re-entrant, and two renders on one GPU would only fight over it.
Loading also happens in the lane, so two processes never load onto one device at once. An engine that runs
single-threaded on the CPU (`Engine.cpu_lanes`) gets one lane per core instead (`cpu#0`, `cpu#1`, ...), each
with its own instance, so a 2-core machine renders two batches at once.
"""
from __future__ import annotations

import queue
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Iterator

from engine.base import Engine
from engine.lane import device_lane, thread_lock
from engine.registry import engine_class
from tasks.core.processes import usable_cores
from tasks.core.settings import get_settings


@dataclass
class WarmEngine:
    engine: Engine
    load_seconds: float  # what this checkout of the pool cost: 0 when the engine was already warm


_engines: dict[tuple, Engine] = {}
_loaded: set[tuple] = set()
_free_cpu_lanes: dict[str, queue.LifoQueue] = {}  # last in, first out: one caller at a time keeps one lane
_pool_lock = threading.Lock()
load_counts: dict[tuple, int] = {}  # loads per engine and lane in this process: a warm pool keeps each at 1


def get_engine(name: str, device: str = "cpu", dtype: str = "auto", lane: int = 0) -> Engine:
    """The process's engine `name` for a device, created on first use but not loaded: enough to describe it
    and plan with it, with no weights read (a run whose takes are all cached never loads a model)."""
    key = (name, device, dtype, lane)
    with _pool_lock:
        if key not in _engines:
            _engines[key] = engine_class(name)(device=device, dtype=dtype)
        return _engines[key]


def lane_name(engine: Engine, lane: int) -> str:
    return f"{engine.device}#{lane}" if lane_count(engine) > 1 else engine.device


def warm_engine(name: str, device: str = "cpu", dtype: str = "auto", lane: int = 0) -> WarmEngine:
    """The loaded engine `name` (in one of its lanes), loading it on first use."""
    engine = get_engine(name, device, dtype, lane)
    key = (name, device, dtype, lane)
    with _pool_lock:
        if key in _loaded:
            return WarmEngine(engine, 0.0)
        start = time.perf_counter()
        with render_lane(lane_name(engine, lane)):
            engine.load()
        _loaded.add(key)
        load_counts[key] = load_counts.get(key, 0) + 1
        return WarmEngine(engine, time.perf_counter() - start)


def lane_count(engine: Engine) -> int:
    """Render lanes for an engine: one per core for single-threaded CPU engines, else one per device."""
    if not (engine.cpu_lanes and engine.device == "cpu"):
        return 1

    return get_settings().cpu_lanes or usable_cores()


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
            free = _free_cpu_lanes[first.device] = queue.LifoQueue(maxsize=count)
            for lane in reversed(range(count)):
                free.put(lane)
    lane = free.get()
    try:
        engine = warm_engine(name, device, dtype, lane).engine
        with render_lane(lane_name(engine, lane)):
            yield engine
    finally:
        free.put(lane)


def lane_lock(device: str) -> threading.Lock:
    """This process's lock for one device (the in-process half of its render lane)."""
    return thread_lock(device)


def render_lane(device: str) -> AbstractContextManager:
    """The device's render lane, shared with every process on this machine (VOICEBATCH_LANE_DIR)."""
    return device_lane(device, get_settings().lane_dir)


def loaded_counts() -> dict[str, int]:
    """How many times each engine was loaded in this process, by "name/device/dtype" (all lanes together)."""
    with _pool_lock:
        counts: dict[str, int] = {}
        for (name, device, dtype, _lane), n in load_counts.items():
            counts["/".join((name, device, dtype))] = counts.get("/".join((name, device, dtype)), 0) + n
        return counts
