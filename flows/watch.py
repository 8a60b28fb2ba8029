"""`voicebatch render MANIFEST --watch`: one process, engines kept warm, that renders the manifest again
(a flow run each time) whenever it, a script file it names or a voice folder it uses is saved. The take
cache decides what renders; a save that is refused is reported and the next save is awaited."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import watchfiles

from tasks.core.errors import VoicebatchError
from tasks.core.stopping import StopRequested, requested_by, stop_requested
from tasks.script.ingest import Script, ingest

DEBOUNCE_MS = 50  # an editor's save is a burst of events within a few ms; waiting longer only adds latency


@dataclass(frozen=True)
class Watched:
    """What a render of the manifest reads: its files, and the voice folders (anything under them counts)."""

    files: frozenset[Path]
    folders: frozenset[Path]

    def __contains__(self, path: Path) -> bool:
        return path in self.files or any(path.is_relative_to(f) for f in self.folders)

    @property
    def roots(self) -> set[Path]:
        """Folders to watch: editors save by writing a new file and renaming it, which a watch of the file
        itself would lose."""
        return {f.parent for f in self.files} | set(self.folders)


def watched(manifest: Path, script: Script | None) -> Watched:
    manifest = manifest.resolve()
    if script is None:
        return Watched(frozenset([manifest]), frozenset())
    scripts = {(manifest.parent / c.script).resolve() for c in script.manifest.chapters if c.script}
    return Watched(frozenset({manifest, *scripts}), frozenset(v.folder.resolve() for v in script.voices.values()))


def line_texts(script: Script) -> dict[str, tuple[str, str]]:
    """Each line's place (`ch1 l3`) -> (speaker, text)."""
    return {f"ch{c.index + 1} l{n + 1}": (line.speaker, line.text)
            for c in script.chapters for n, line in enumerate(c.lines)}


def changed_lines(before: Script | None, after: Script) -> list[str]:
    """The places of lines added or edited since `before` (all of them when there was none)."""
    old, new = (line_texts(before) if before else {}), line_texts(after)
    return [place for place, line in new.items() if old.get(place) != line]


def cycle_line(changed: list[str], summary, seconds: float) -> str:
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    chapters = ", ".join(Path(p).name for p in summary.chapters_rewritten) or "none"
    return (f"{time.strftime('%H:%M:%S')} {len(changed)} lines changed ({shown or 'none'}): "
            f"{summary.takes_rendered} takes rendered, {summary.takes_reused} reused; chapters rewritten: {chapters}; "
            f"{seconds:.2f} s")


def watch_manifest(manifest: Path, voices_dir: Path, render: Callable[[], object],
                   say: Callable[[str], None]) -> None:
    """Render now and after every save of what the manifest reads, until interrupted."""
    script = None
    while True:
        start = time.perf_counter()
        try:
            new_script = ingest(manifest, voices_dir)
            changed = changed_lines(script, new_script)
            summary = render()
            script = new_script
            say(cycle_line(changed, summary, time.perf_counter() - start))
        except VoicebatchError as e:
            say(f"{time.strftime('%H:%M:%S')} refused, waiting for the next save: {e}")
        targets = watched(manifest, script if script else None)
        say(f"watching {len(targets.files)} files and {len(targets.folders)} voice folders; Ctrl-C to stop")
        # watchfiles swallows the signal handler's StopRequested and ends the watch: raise it again here.
        for changes in watchfiles.watch(*targets.roots, debounce=DEBOUNCE_MS, step=DEBOUNCE_MS, raise_interrupt=False):
            if any(Path(path).resolve() in targets for _, path in changes):
                break
        if stop_requested():
            raise StopRequested(requested_by())
