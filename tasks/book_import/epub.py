"""EPUB (2 and 3) into a Book: chapters in spine order, titles from the navigation document or NCX (else the
chapter's first heading), front and back matter skipped by landmark, guide or epub:type and listed."""
from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from urllib.parse import unquote

from tasks.book_import.book import Book, BookChapter, BookImportError, SkippedPart, fold_dividers
from tasks.book_import.cleaning import clean_paragraph, hyphenated_words
from tasks.book_import.encryption import refuse_if_drm_protected
from tasks.book_import.xhtml import XhtmlDocument, nav_links, parse_xhtml

# Landmark, guide and epub:type values of matter a listener does not want read, with the name we list.
SKIPPED_KINDS = {
    "cover": "cover", "doc-cover": "cover",
    "titlepage": "title page", "title-page": "title page", "halftitlepage": "title page",
    "toc": "table of contents", "doc-toc": "table of contents", "landmarks": "table of contents",
    "loi": "list of illustrations", "lot": "list of tables",
    "copyright-page": "copyright", "copyright": "copyright", "imprint": "copyright",
    "colophon": "colophon", "doc-colophon": "colophon",
    "index": "index", "doc-index": "index",
    "footnotes": "notes", "endnotes": "notes", "rearnotes": "notes", "notes": "notes", "doc-endnotes": "notes",
}
MAX_UNCOMPRESSED_FACTOR = 20  # a zip that inflates beyond this many times the size limit is refused


def _file_key(href: str, base: str) -> str:
    """A link's target document, relative to the package folder, without its #fragment."""
    target = unquote(href.split("#", 1)[0])
    return posixpath.normpath(posixpath.join(base, target)) if target else ""


def _toc_titles(toc, base: str) -> dict[str, str]:
    """Document -> the first title the table of contents gives it (parents come before their children)."""
    titles: dict[str, str] = {}

    def walk(entries) -> None:
        for entry in entries:
            node, children = entry if isinstance(entry, tuple) else (entry, [])
            href, title = getattr(node, "href", None), " ".join((node.title or "").split())
            if href and title:
                titles.setdefault(_file_key(href, base), title)
            walk(children)

    walk(toc)
    return titles


def _matter_kinds(book, nav_item) -> dict[str, str]:
    """Document -> kind of matter named by EPUB 3 landmarks or the EPUB 2 guide."""
    kinds: dict[str, str] = {}
    if nav_item is not None:
        base = posixpath.dirname(nav_item.file_name)
        for types, href, _ in nav_links(nav_item.content, "landmarks"):
            for t in types.split():
                if t in SKIPPED_KINDS:
                    kinds.setdefault(_file_key(href, base), SKIPPED_KINDS[t])
    for ref in getattr(book, "guide", []) or []:
        t = (ref.get("type") or "").lower()
        if t in SKIPPED_KINDS and ref.get("href"):
            kinds.setdefault(_file_key(ref["href"], ""), SKIPPED_KINDS[t])
    return kinds


def _metadata(book, name: str) -> list[str]:
    return [" ".join(v.split()) for v, _ in book.get_metadata("DC", name) if v and v.strip()]


def _modified(book) -> str | None:
    for values in book.metadata.values():
        for value, attrs in [*values.get(None, []), *values.get("meta", [])]:
            if attrs.get("property") == "dcterms:modified" and value:
                return value.strip()
    dates = _metadata(book, "date")
    return dates[0] if dates else None


def _open(path: Path, max_bytes: int):
    from ebooklib import epub

    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
            if inflated > max_bytes * MAX_UNCOMPRESSED_FACTOR:
                raise BookImportError(path, f"it inflates to {inflated} bytes, more than {MAX_UNCOMPRESSED_FACTOR}x the "
                                            f"import limit of {max_bytes} bytes; raise VOICEBATCH_IMPORT_MAX_MB if it is genuine")
            refuse_if_drm_protected(path, archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise BookImportError(path, f"not a readable EPUB ({e}); an EPUB is a zip archive, check the file is complete") from None
    try:
        return epub.read_epub(str(path), {"ignore_ncx": True})
    except BookImportError:
        raise
    except Exception as e:  # a damaged package can fail anywhere inside the library
        raise BookImportError(path, f"not a readable EPUB ({type(e).__name__}: {e}); open it in an e-reader or "
                                    "re-export it, then import again") from None


def read_epub_book(path: Path, max_bytes: int, keep_matter: bool = False) -> Book:
    import ebooklib
    from ebooklib import epub

    book = _open(path, max_bytes)
    nav_item = next((i for i in book.get_items() if isinstance(i, epub.EpubNav)), None)
    ncx_item = next((i for i in book.get_items() if isinstance(i, epub.EpubNcx)), None)
    toc_base = "" if nav_item is not None or ncx_item is None else posixpath.dirname(ncx_item.file_name)
    titles = _toc_titles(book.toc, toc_base)
    matter = _matter_kinds(book, nav_item)

    parsed: list[tuple[str, XhtmlDocument, str | None]] = []  # (document, its content, kind of matter kept)
    skipped: list[SkippedPart] = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() not in (ebooklib.ITEM_DOCUMENT, ebooklib.ITEM_NAVIGATION):
            continue
        name = posixpath.normpath(item.file_name)
        doc = parse_xhtml(item.content)
        has_text = any(text.strip() for text, _ in doc.blocks)
        kind = (matter.get(name) or ("table of contents" if item is nav_item else None)
                or next((SKIPPED_KINDS[t] for t in sorted(doc.types) if t in SKIPPED_KINDS), None)
                or ("non-linear" if linear == "no" else None)
                or (None if has_text else "no text"))
        if kind and not (keep_matter and has_text):
            title = titles.get(name) or next((t for t, h in doc.blocks if h), None) or doc.title or name
            words = sum(len(t.split()) for t, _ in doc.blocks)
            skipped.append(SkippedPart(" ".join(title.split()), kind, name, words))
            continue
        parsed.append((name, doc, kind))

    keep = hyphenated_words("\n".join(text for _, doc, _ in parsed for text, _ in doc.blocks))
    chapters: list[BookChapter] = []
    notes: list[str] = []
    for name, doc, kind in parsed:
        blocks = [(clean_paragraph(text, keep), heading) for text, heading in doc.blocks]
        blocks = [(text, heading) for text, heading in blocks if text]
        paragraphs = tuple(text for text, _ in blocks)
        heading = next((text for text, is_heading in blocks if is_heading), None)
        title = titles.get(name) or heading or (kind.capitalize() if kind else None)
        if doc.images:
            notes.append(f"{name}: {doc.images} image(s) skipped")
        if title is None and chapters:  # no title anywhere: the previous chapter continues (a split file)
            prev = chapters[-1]
            chapters[-1] = BookChapter(prev.title, prev.paragraphs + paragraphs, prev.source, False)
            notes.append(f"{name}: no title in the navigation or a heading; joined to the chapter before it")
            continue
        if title is None:
            title = " ".join(doc.title.split()) or Path(name).stem
            notes.append(f"{name}: no title in the navigation or a heading; titled {title!r}")
        chapters.append(BookChapter(title[:500], paragraphs, name, bool(blocks) and all(h for _, h in blocks)))
    if not chapters:
        raise BookImportError(path, "the EPUB has no text to read (no chapter documents with text; a scanned, "
                                    "image-only book needs OCR first)")
    titles_meta, authors, languages = _metadata(book, "title"), _metadata(book, "creator"), _metadata(book, "language")
    version = "EPUB 3" if str(book.version or "").startswith("3") else "EPUB 2"
    return Book(title=(titles_meta[0] if titles_meta else path.stem)[:500], author=", ".join(authors)[:500] or None,
                language=languages[0] if languages else None, source_format=version,
                chapters=tuple(fold_dividers(chapters)), skipped=tuple(skipped), notes=tuple(notes),
                modified=_modified(book))
