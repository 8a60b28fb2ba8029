"""Leftover temporary files: those of a killed writer are removed by the next run; a live writer's are kept."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tasks.core.files import make_temp_beside, remove_stale_temp_files


def test_only_the_temp_files_of_dead_processes_of_this_host_are_removed(tmp_path):
    takes = tmp_path / "takes"
    takes.mkdir()
    # A writer that dies (SIGKILL-style: no clean-up) with its temporary file open.
    code = ("import os, sys; from pathlib import Path; from tasks.core.files import make_temp_beside; "
            "fd, tmp = make_temp_beside(Path(sys.argv[1])); print(tmp); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", code, str(takes / "a.wav")], capture_output=True, text=True,
                          check=True, cwd=os.getcwd())
    dead = takes / os.path.basename(done.stdout.strip())
    fd, live = make_temp_beside(takes / "b.wav")  # this process: alive
    os.close(fd)
    foreign = takes / ".c.wav.~otherhost~1~x.tmp"  # another machine sharing the folder
    foreign.write_bytes(b"")
    finished = takes / "d.wav"
    finished.write_bytes(b"RIFF")
    assert dead.exists()

    removed = remove_stale_temp_files(tmp_path)

    assert removed == [dead] and not dead.exists()
    assert os.path.exists(live) and foreign.exists() and finished.exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_a_text_file_is_written_whole_and_a_failed_write_leaves_nothing_behind(tmp_path):
    from tasks.core.files import write_text_atomic

    target = tmp_path / "pages" / "review.html"
    write_text_atomic(target, "<p>one</p>")
    write_text_atomic(target, "<p>two</p>")
    assert target.read_text(encoding="utf-8") == "<p>two</p>"
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "\ud800 unpaired")  # fails while writing the temporary file
    assert target.read_text(encoding="utf-8") == "<p>two</p>" and sorted(p.name for p in target.parent.iterdir()) == ["review.html"]
