"""requirements.lock is what `make test` installed: the environment running the suite agrees with it."""
from __future__ import annotations

import re
from importlib import metadata

from conftest import ROOT


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin (name==version)"
            pins[_canonical(name)] = version
    return pins


def _installed() -> dict[str, str]:
    return {_canonical(d.metadata["Name"]): d.version.split("+")[0] for d in metadata.distributions()}


def test_every_installed_package_is_locked_at_its_installed_version():
    locked, installed = _locked(), _installed()
    assert "torch" in locked and "prefect" in locked and "duckdb" in locked
    own = {"voicebatch", "pip", "setuptools", "wheel"}
    unlocked = sorted(set(installed) - set(locked) - own)
    assert not unlocked, f"installed but not in requirements.lock (run make upgrade): {unlocked}"
    differing = {name: (locked[name], installed[name]) for name in locked
                 if name in installed and locked[name] != installed[name]}
    assert not differing, f"locked version != installed version (rm -rf .venv && make test): {differing}"
