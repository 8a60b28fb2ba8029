"""The same manifest gives the same bytes whatever the number of BLAS/OpenMP threads of the process that
renders it: a take cache shared by machines with different core counts (or by Dask workers, which run with
one thread each) must record one sha256 per key."""
from __future__ import annotations

import hashlib
import os

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _delivered(out) -> dict[str, str]:
    """sha256 of every normalised take and every file of the book's folder (chapters, book, encodes)."""
    files = [*out.glob(".voicebatch/takes/normalised/*/??/*.wav"), *(out / "the-lighthouse-dialogue").rglob("*")]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_normalised_takes_chapters_and_book_are_the_same_bytes_under_any_thread_count(tmp_path, monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    counts = ["1", None] + (["4"] if (os.cpu_count() or 1) < 4 else [])  # None: the machine's default
    results = {}
    for count in counts:
        out = tmp_path / f"threads-{count or 'default'}"
        done = run_cli("render", str(ROOT / "manifests" / "demo-dialogue.yaml"), "--out", str(out),
                       env={name: count for name in THREAD_VARIABLES} if count else {})
        assert done.returncode == 0, done.stderr
        results[count] = _delivered(out)
    single = results["1"]
    assert any(name.startswith(".voicebatch/takes/normalised/") for name in single)
    assert any(name.startswith("the-lighthouse-dialogue/") and name.endswith(".wav") for name in single)
    for count, files in results.items():
        assert files.keys() == single.keys(), count
        differing = sorted(name for name in files if files[name] != single[name])
        assert not differing, f"{count or 'default'} threads wrote other bytes than 1 thread: {differing}"
