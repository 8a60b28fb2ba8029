"""`voicebatch render MANIFEST --watch` through the real CLI in a subprocess: an edited line re-renders that
take only and rewrites its chapter; a broken save is refused and the next good save renders; SIGINT exits 0
leaving no temporary file."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT, cli_env, rows


class Watcher:
    """The watching process and its output lines, read on a thread."""

    def __init__(self, manifest: Path, out: Path) -> None:
        exe = Path(sys.executable).parent / "voicebatch"
        self.process = subprocess.Popen([str(exe), "render", str(manifest), "--watch", "--out", str(out)],
                                        env=cli_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def wait_for(self, count: int, word: str, timeout: float = 240) -> list[str]:
        """The output once `word` has appeared on `count` lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(word in line for line in self.lines) >= count:
                return list(self.lines)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {count} lines with {word!r}: {''.join(self.lines)}")


def test_watch_rerenders_the_edited_line_and_survives_a_bad_save(tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    shutil.copy(ROOT / "manifests" / "demo-dialogue.yaml", folder / "dialogue.yaml")
    shutil.copy(ROOT / "manifests" / "demo-dialogue-scene2.txt", folder)
    manifest, out = folder / "dialogue.yaml", tmp_path / "out"
    chapter_one = out / "the-lighthouse-dialogue" / "01-at-the-harbour.wav"
    chapter_two = out / "the-lighthouse-dialogue" / "02-up-the-stairs.wav"
    watcher = Watcher(manifest, out)
    try:
        watcher.wait_for(1, "watching")
        first = (chapter_one.read_bytes(), chapter_two.read_bytes())

        good = manifest.read_text()
        manifest.write_text(good.replace("The fog came in faster", "The mist came in faster"))
        lines = watcher.wait_for(2, "watching")
        assert "1 lines changed (ch1 l2): 1 takes rendered, 7 reused" in "".join(lines)
        assert chapter_one.read_bytes() != first[0] and chapter_two.read_bytes() == first[1]
        runs = rows(str(out / "provenance.duckdb"), "SELECT run_id FROM runs ORDER BY started_at")
        rendered = rows(str(out / "provenance.duckdb"), "SELECT text FROM renders WHERE run_id = ? AND NOT cache_hit",
                        [runs[-1]["run_id"]])
        assert [r["text"] for r in rendered] == ["The mist came in faster than I have ever seen it. I could not see the bow."]

        manifest.write_text("title: [unfinished\n")
        assert "refused, waiting for the next save" in "".join(watcher.wait_for(3, "watching"))
        manifest.write_text(good.replace("The fog came in faster", "The haze came in faster"))
        assert "1 takes rendered, 7 reused" in watcher.wait_for(4, "watching")[-2]
    finally:
        watcher.process.send_signal(signal.SIGINT)
        watcher.process.wait(timeout=60)
    assert watcher.process.returncode == 0, "".join(watcher.lines)
    assert "Traceback" not in "".join(watcher.lines)
    assert not list(out.rglob("*.tmp*"))
