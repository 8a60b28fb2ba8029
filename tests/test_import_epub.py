"""EPUBs built with ebooklib (EPUB 3 with nav and landmarks, EPUB 2 with NCX and guide) imported back."""
from __future__ import annotations

import zipfile

import pytest

from book_samples import AUTHOR, HARBOUR, LOG, STORM, TITLE, add_encryption, build_epub
from tasks.book_import.book import BookImportError
from tasks.book_import.importer import ImportOptions, read_book


@pytest.fixture(scope="module", params=[3, 2], ids=["epub3-nav", "epub2-ncx"])
def epub_book(request, tmp_path_factory):
    path = build_epub(tmp_path_factory.mktemp("epub") / f"tide-{request.param}.epub", request.param)
    return request.param, read_book(path, ImportOptions())


def test_chapters_in_spine_order_with_titles_from_the_navigation_or_the_heading(epub_book):
    version, book = epub_book
    assert book.source_format == f"EPUB {version}"
    # "The Keeper’s Log" is in neither nav nor NCX: its title comes from its own heading.
    assert [c.title for c in book.chapters] == ["The Harbour", "The Storm", "The Keeper’s Log"]
    assert [c.paragraphs for c in book.chapters] == [HARBOUR, STORM, LOG]


def test_text_has_no_footnotes_and_joins_words_broken_at_line_ends(epub_book):
    _, book = epub_book
    text = " ".join(p for c in book.chapters for p in c.paragraphs)
    assert "Boats were counted" not in text and "water.1" not in text and "[1]" not in text
    assert "number" in text and "Everyone remembered" in text
    assert "well-known stair" in text  # written "well-known" elsewhere, so its hyphen is the word's own
    assert "“Get the lamps lit,” said Joe." in text  # smart quotes kept as they are


def test_front_and_back_matter_is_skipped_and_listed(epub_book):
    version, book = epub_book
    kinds = {s.source: s.kind for s in book.skipped}
    expected = {"cover.xhtml": "cover", "title.xhtml": "title page", "copyright.xhtml": "copyright",
                "index.xhtml": "index"}
    expected |= {"nav.xhtml": "table of contents"} if version == 3 else {"notes.xhtml": "notes"}
    assert kinds == expected
    assert next(s for s in book.skipped if s.kind == "copyright").words == 7


def test_metadata_from_the_package(epub_book):
    _, book = epub_book
    assert (book.title, book.author, book.language) == (TITLE, AUTHOR, "en")
    assert book.modified  # the package's own dcterms:modified, not the clock


def test_keep_matter_brings_front_matter_back_as_chapters(tmp_path):
    path = build_epub(tmp_path / "tide.epub", 3)
    book = read_book(path, ImportOptions(keep_matter=True))
    titles = [c.title for c in book.chapters]
    assert titles[0] == "The Tide Clock" and "Copyright" in titles and titles[-1] == "Index"
    assert {s.kind for s in book.skipped} == {"cover", "table of contents"}  # no text in them to keep


def test_encrypted_chapters_are_refused_as_drm(tmp_path):
    path = add_encryption(build_epub(tmp_path / "locked.epub", 3),
                          [("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/harbour.xhtml"),
                           ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/storm.xhtml")])
    with pytest.raises(BookImportError, match="DRM-protected: 2 file.*EPUB/harbour.xhtml.*DRM-free copy"):
        read_book(path, ImportOptions())


def test_font_obfuscation_alone_is_not_drm(tmp_path):
    path = build_epub(tmp_path / "fonts.epub", 3)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("EPUB/fonts/serif.otf", b"\x00" * 64)
    add_encryption(path, [("http://www.idpf.org/2008/embedding", "EPUB/fonts/serif.otf")])
    assert [c.title for c in read_book(path, ImportOptions()).chapters] == ["The Harbour", "The Storm", "The Keeper’s Log"]


def test_an_epub_without_text_is_refused(tmp_path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("scan")
    book.set_title("Scanned")
    page = epub.EpubHtml(uid="p1", file_name="p1.xhtml", content='<html><body><img src="p1.png"/></body></html>')
    book.add_item(page)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [page]
    epub.write_epub(str(tmp_path / "scan.epub"), book)
    with pytest.raises(BookImportError, match="no text to read"):
        read_book(tmp_path / "scan.epub", ImportOptions())


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_an_unreadable_epub_is_refused(tmp_path, content):
    path = tmp_path / "broken.epub"
    path.write_bytes(content)
    with pytest.raises(BookImportError, match="not a readable EPUB"):
        read_book(path, ImportOptions())


def test_a_zip_that_is_not_an_epub_is_refused(tmp_path):
    path = tmp_path / "other.epub"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(BookImportError, match="not a readable EPUB"):
        read_book(path, ImportOptions())
