"""Small books built for the import tests: EPUBs written with ebooklib itself, Markdown and plain text.
Every expected title and text in the tests comes from the constants here."""
from __future__ import annotations

import zipfile
from pathlib import Path

AUTHOR = "Mara Quill"
TITLE = "The Tide Clock"

HARBOUR = ("Chapter One", "The harbour was quiet at dawn, and the boats lay still on the grey water.",
           "Ava counted them twice, as she always did, and wrote the number in her log.")
STORM = ("Chapter Two", "The storm came in the afternoon. Everyone remembered it for years.",
         "“Get the lamps lit,” said Joe. “The fog is coming.” Ava ran to the well-known stair.")
LOG = ("The Keeper’s Log", "The keeper's well-known log had one line for every day of the year.")


def _page(body: str) -> str:
    return f'<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><head><title>x</title></head><body>{body}</body></html>'


def _chapters(footnote_epub3: bool):
    """(file, nav title or None, body) of the three chapters; raw line breaks as a printed book's scan has them."""
    note = ('<sup><a epub:type="noteref" href="#fn1">1</a></sup>' if footnote_epub3
            else '<a href="notes.xhtml#n1"><sup>[1]</sup></a>')
    aside = '<aside epub:type="footnote" id="fn1"><p>Boats were counted at six.</p></aside>' if footnote_epub3 else ""
    harbour = (f"<h1>Chapter One</h1><p>The harbour was quiet at dawn, and the boats lay still on the grey water.{note}</p>"
               f"<p>Ava counted them twice, as she always did, and wrote the num-\nber in her log.</p>{aside}")
    storm = ("<h1>Chapter Two</h1><p>The storm came in the afternoon. Every-\n   one remem-\nbered it for years.</p>"
             "<p>“Get the lamps lit,” said Joe. “The fog is coming.” Ava ran to the well-\nknown stair.</p>")
    log = "<h2>The Keeper’s Log</h2><p>The keeper's well-known log had one line for every day of the year.</p>"
    return [("harbour.xhtml", "The Harbour", harbour), ("storm.xhtml", "The Storm", storm), ("log.xhtml", None, log)]


def build_epub(path: Path, version: int) -> Path:
    """EPUB 3 (nav with landmarks, epub:type sections) or EPUB 2 (NCX, OPF guide, package version 2.0)."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(f"voicebatch-test-{version}")
    book.set_title(TITLE)
    book.set_language("en")
    book.add_author(AUTHOR)
    cover = epub.EpubHtml(uid="cover", title="Cover", file_name="cover.xhtml", content=_page('<img src="c.png" alt=""/>'))
    title_page = epub.EpubHtml(uid="titlepage", title="Title", file_name="title.xhtml",
                               content=_page(f"<h1>{TITLE}</h1><p>by {AUTHOR}</p>"))
    rights = epub.EpubHtml(uid="rights", title="Copyright", file_name="copyright.xhtml",
                           content=_page('<section epub:type="copyright-page"><p>Copyright 2024 Mara Quill. '
                                         "All rights reserved.</p></section>"))
    docs = [epub.EpubHtml(uid=f.split(".")[0], title=t or "", file_name=f, content=_page(b))
            for f, t, b in _chapters(version == 3)]
    index = epub.EpubHtml(uid="index", title="Index", file_name="index.xhtml",
                          content=_page("<h1>Index</h1><p>boats, 1; fog, 2; lamps, 2</p>"))
    extra = []
    if version == 2:
        extra.append(epub.EpubHtml(uid="notes", title="Notes", file_name="notes.xhtml",
                                   content=_page('<h1>Notes</h1><p id="n1">1. Boats were counted at six.</p>')))
    for item in [cover, title_page, rights, *docs, index, *extra]:
        book.add_item(item)
    book.toc = [epub.Link("harbour.xhtml", "The Harbour", "harbour"), epub.Link("storm.xhtml", "The Storm", "storm")]
    book.add_item(epub.EpubNcx())
    if version == 3:
        book.add_item(epub.EpubNav())
        # Landmarks name the cover, title page and index; the copyright page says what it is by its epub:type.
        book.guide = [{"type": "cover", "href": "cover.xhtml", "title": "Cover"},
                      {"type": "titlepage", "href": "title.xhtml", "title": "Title Page"},
                      {"type": "index", "href": "index.xhtml", "title": "Index"}]
        book.spine = [cover, title_page, "nav", rights, *docs, index]
        epub.write_epub(str(path), book, {"epub2_guide": False})
    else:
        book.guide = [{"type": "cover", "href": "cover.xhtml", "title": "Cover"},
                      {"type": "title-page", "href": "title.xhtml", "title": "Title Page"},
                      {"type": "copyright-page", "href": "copyright.xhtml", "title": "Copyright"},
                      {"type": "index", "href": "index.xhtml", "title": "Index"},
                      {"type": "notes", "href": "notes.xhtml", "title": "Notes"}]
        book.spine = [cover, title_page, rights, *docs, index, *extra]
        epub.write_epub(str(path), book, {"epub3_landmark": False})
        _rewrite(path, "EPUB/content.opf", lambda opf: opf.replace('version="3.0"', 'version="2.0"', 1))
    return path


def _rewrite(path: Path, name: str, edit) -> None:
    """Replace one member of a zip (an EPUB), keeping the others and the mimetype first."""
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in members:
            if info.filename == name:
                data = edit(data.decode("utf-8")).encode("utf-8")
            dst.writestr(info, data)


def add_encryption(path: Path, entries: list[tuple[str, str]]) -> Path:
    """Add META-INF/encryption.xml listing (algorithm, path) entries; encrypted documents get scrambled bytes."""
    body = "".join(
        f'<EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"><EncryptionMethod Algorithm="{alg}"/>'
        f'<CipherData><CipherReference URI="{uri}"/></CipherData></EncryptedData>' for alg, uri in entries)
    xml = f'<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container">{body}</encryption>'
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    encrypted = {uri for alg, uri in entries if "embedding" not in alg}
    with zipfile.ZipFile(path, "w") as dst:
        for info, data in members:
            dst.writestr(info, bytes(reversed(data)) if info.filename in encrypted else data)
        dst.writestr("META-INF/encryption.xml", xml)
    return path
