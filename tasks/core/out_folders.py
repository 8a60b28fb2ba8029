"""The project's own folders under an output folder (the take cache, staged voices, review pages), kept in one
hidden `.voicebatch/` folder so that no book, whatever its title, can share them; and the move of the folders
older versions kept beside the books."""
from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

OWN_DIR = ".voicebatch"
_TEMP = re.compile(r"^\..*\.tmp")
# What each folder held in the old layout: a folder holding anything else is a user's (a book, a voice
# library under --out .) and is never moved.
_OLD_CONTENT = {
    "takes": re.compile(r"^([0-9a-f]{2}|normalised|encoded)$"),
    "voices": re.compile(r"^[0-9a-f]{64}\.(wav|json)$"),
    "review": re.compile(r"^(.+\.html|\.plots)$"),
}


def own_dir(out: Path) -> Path:
    return Path(out) / OWN_DIR


def takes_dir(out: Path) -> Path:
    return own_dir(out) / "takes"


def staging_dir(out: Path) -> Path:
    """Reference clips converted for the engines, content-addressed."""
    return own_dir(out) / "voices"


def review_dir(out: Path) -> Path:
    return own_dir(out) / "review"


def move_old_folders(out: Path) -> list[tuple[Path, Path]]:
    """Move `takes/`, `voices/` and `review/` of the old layout into `.voicebatch/` (each only when it holds
    nothing but what voicebatch wrote there, and its new place does not exist yet); the moves made."""
    moved = []
    for name, content in _OLD_CONTENT.items():
        old, new = Path(out) / name, own_dir(out) / name
        if not old.is_dir() or new.exists():
            continue
        entries = [p.name for p in old.iterdir() if not _TEMP.match(p.name)]
        if not entries or not all(content.match(e) for e in entries):
            log.info("%s is not voicebatch's own %s folder of an older version; left where it is", old, name)
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
        moved.append((old, new))
    return moved
