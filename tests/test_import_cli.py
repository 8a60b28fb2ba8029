"""`voicebatch import` end to end: the real command, reproducible bytes, refusals with exit 2, and an imported
manifest rendered by the real flow on the embedded engine."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from book_samples import add_encryption, build_epub
from conftest import run_cli
from flows.cli import main
from tasks.audio.wav import read_mono
from tasks.script.ingest import ingest
from tasks.script.plan import EngineFacts, plan_jobs


@pytest.fixture(scope="module")
def epub3(tmp_path_factory) -> Path:
    return build_epub(tmp_path_factory.mktemp("books") / "tide-clock.epub", 3)


def test_the_command_writes_a_valid_manifest_and_the_same_bytes_again(tmp_path, epub3, voices_dir):
    out = tmp_path / "manifests" / "tide.yaml"
    first = run_cli("import", str(epub3), "--out", str(out), "--dialogue", "joe")
    assert first.returncode == 0, first.stderr
    assert f"wrote {out}" in first.stdout and "3 chapters" in first.stdout and "skipped cover" in first.stdout
    written = out.read_bytes()
    text = written.decode()
    assert text.startswith("# Imported by voicebatch ") and "from tide-clock.epub (EPUB 3)" in text
    assert "# Language: en" in text and "#   - copyright: 'Copyright' (copyright.xhtml, 7 words)" in text
    script = ingest(out, voices_dir)  # the same validation as any manifest
    assert [c.title for c in script.chapters] == ["The Harbour", "The Storm", "The Keeper’s Log"]
    speakers = [(line.speaker, line.text) for line in script.chapters[1].lines]
    assert ("Dialogue", "“Get the lamps lit,”") in speakers and ("Narrator", "said Joe.") in speakers
    assert {s.voice for s in script.manifest.voices.values()} == {"ava", "joe"}

    # Another process, another copy of the same file elsewhere: byte for byte the same manifest.
    copy = tmp_path / "elsewhere" / epub3.name
    copy.parent.mkdir()
    shutil.copy(epub3, copy)
    again = run_cli("import", str(copy), "--out", str(out), "--dialogue", "joe")
    assert again.returncode == 0, again.stderr
    assert f"unchanged {out}" in again.stdout and out.read_bytes() == written


def _keys(manifest: Path, voices_dir: Path) -> list[str]:
    script = ingest(manifest, voices_dir)
    facts = {"hibari": EngineFacts("hibari", "hibari-tts", None, "1", frozenset({"seed"}))}
    return [job.key for job in plan_jobs(script, facts, {s: "hibari" for s in script.voices}, 60)]


def test_editing_the_source_changes_only_the_edited_chunks(tmp_path, voices_dir):
    source = tmp_path / "tides.md"
    paragraphs = ["The tide came in at six.", "The gulls followed the boats home.", "Night fell on the harbour."]
    source.write_text("# Tides\n\n" + "\n\n".join(paragraphs) + "\n\n# Night\n\nThe lamp was lit.\n")
    out = tmp_path / "tides.yaml"
    assert main(["import", str(source), "--out", str(out)]) == 0
    before = _keys(out, voices_dir)
    source.write_text(source.read_text().replace("gulls followed", "terns chased"))
    assert main(["import", str(source), "--out", str(out), "--force"]) == 0
    after = _keys(out, voices_dir)
    # Chunks: "Tides", its three paragraphs, "Night", its paragraph (headings are read aloud).
    assert len(before) == len(after) == 6
    assert [a == b for a, b in zip(before, after)] == [True, True, False, True, True, True]


def _refusals(tmp_path: Path, epub3: Path) -> dict[str, tuple[list[str], str]]:
    not_zip = tmp_path / "broken.epub"
    not_zip.write_bytes(b"this is not an epub")
    locked = tmp_path / "locked.epub"
    shutil.copy(epub3, locked)
    add_encryption(locked, [("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "EPUB/storm.xhtml")])
    pdf = tmp_path / "book.pdf"
    pdf.write_bytes(b"%PDF-1.7")
    return {
        "unknown extension": ([str(pdf)], "unknown book type '.pdf'; import .epub, .md or .txt"),
        "unreadable": ([str(not_zip)], "not a readable EPUB"),
        "drm": ([str(locked)], "the EPUB is DRM-protected"),
        "too large": ([str(epub3), "--max-mb", "0.001"], "over the import limit of 1048 bytes"),
        "unknown voice": ([str(epub3), "--voice", "nobody"], "--voice nobody: cannot import: unknown voice; voices in"),
        "missing": ([str(tmp_path / "absent.txt")], "cannot read the file"),
    }


def test_bad_books_exit_2_name_the_file_and_write_nothing(tmp_path, epub3, capsys):
    out = tmp_path / "out" / "m.yaml"
    for name, (args, expected) in _refusals(tmp_path, epub3).items():
        assert main(["import", *args, "--out", str(out)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err, (name, err)
        assert not out.parent.exists(), name


def test_an_edited_manifest_is_not_overwritten_without_force(tmp_path, epub3, capsys):
    out = tmp_path / "m.yaml"
    out.write_text("# my edits\n")
    assert main(["import", str(epub3), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_text() == "# my edits\n"
    assert main(["import", str(epub3), "--out", str(out), "--force"]) == 0
    assert yaml.safe_load(out.read_text())["title"] == "The Tide Clock"
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]  # no temporary file left behind


@pytest.mark.slow
def test_the_imported_manifest_renders_on_the_embedded_engine(tmp_path, epub3):
    from flows.render import render_manifest

    manifest = tmp_path / "tide.yaml"
    assert main(["import", str(epub3), "--out", str(manifest)]) == 0
    summary = render_manifest(manifest=str(manifest), output_dir=str(tmp_path / "out"))
    assert summary.status == "completed" and len(summary.chapters) == 3
    assert [Path(p).name for p in summary.chapters] == ["01-the-harbour.wav", "02-the-storm.wav", "03-the-keepers-log.wav"]
    for path in summary.chapters:
        audio, rate = read_mono(Path(path))
        assert len(audio) / rate > 2.0 and np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.01, path
