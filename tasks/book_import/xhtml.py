"""An EPUB content document (XHTML) as blocks of text, with the stdlib HTML parser.

Kept: the text of paragraphs, headings, list items and quotations, one block each. Dropped: scripts and
styles, images, page-break markers, footnote and endnote bodies, and note references ("¹", "[2]").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_BLOCKS = {"p", "div", "section", "article", "header", "footer", "main", "blockquote", "li", "ul", "ol", "dl",
           "dt", "dd", "pre", "table", "tr", "td", "th", "figure", "figcaption", "hr", "body", "aside",
           "h1", "h2", "h3", "h4", "h5", "h6"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_SKIPPED_TAGS = {"script", "style", "head", "svg", "math", "nav", "object", "audio", "video", "rp", "rt"}
_VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source", "image"}
# epub:type / role values whose element content is not read: note bodies and page-number markers.
_SKIPPED_TYPES = {"footnote", "footnotes", "endnote", "endnotes", "rearnote", "rearnotes", "note", "pagebreak",
                  "doc-footnote", "doc-endnotes", "doc-endnote", "doc-pagebreak", "noteref", "doc-noteref"}
_SKIPPED_CLASSES = {"pagenum", "page-number", "pagenumber", "footnote", "footnotes"}
# A note reference's whole text: "1", "[12]", "*", "†", "a".
_MARKER = re.compile(r"\[?(?:\d{1,3}|[*†‡§¶]{1,3}|[a-z])\]?")


@dataclass
class XhtmlDocument:
    title: str = ""  # the <title> element
    blocks: list[tuple[str, bool]] = field(default_factory=list)  # (raw text, is a heading)
    types: set[str] = field(default_factory=set)  # epub:type and role values on <body> and its children
    images: int = 0
    notes_dropped: int = 0


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.doc = XhtmlDocument()
        self.stack: list[str] = []
        self.skip_depth: int | None = None  # stack depth of the element whose content is skipped
        self.body_depth: int | None = None
        self.markers: list[tuple[int, list[str]]] = []  # (depth, text) of <sup> / <a href="#..."> being read
        self.current: list[str] = []
        self.in_heading = 0
        self.block_is_heading = False
        self.in_title = False

    def _flush(self) -> None:
        text = "".join(self.current)
        if text.strip():
            self.doc.blocks.append((text, self.block_is_heading))
        self.current = []
        self.block_is_heading = False

    def _write(self, text: str) -> None:
        if self.markers:
            self.markers[-1][1].append(text)
        else:
            self.current.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in _VOID:
            if self.skip_depth is None:
                if tag == "br":
                    self._write("\n")
                elif tag in ("img", "image"):
                    self.doc.images += 1
                elif tag == "hr":
                    self._flush()
            return
        self.stack.append(tag)
        depth = len(self.stack)
        types = set((a.get("epub:type", "") + " " + a.get("role", "")).split())
        if tag == "body":
            self.body_depth = depth
        if self.body_depth is not None and depth <= self.body_depth + 1:
            self.doc.types |= types
        if tag == "title":
            self.in_title = True
        if self.skip_depth is not None:
            return
        classes = set(a.get("class", "").split())
        if tag in _SKIPPED_TAGS or types & _SKIPPED_TYPES or classes & _SKIPPED_CLASSES:
            if types & {"footnote", "endnote", "rearnote", "note", "doc-footnote", "doc-endnote"}:
                self.doc.notes_dropped += 1
            self.skip_depth = depth
            return
        if tag in _BLOCKS:
            self._flush()
        if tag in _HEADINGS:
            self.in_heading += 1
            self.block_is_heading = True
        if tag == "sup" or (tag == "a" and "#" in a.get("href", "")):
            self.markers.append((depth, []))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag not in self.stack:
            return
        while self.stack:  # close anything left open inside it (tag soup)
            depth = len(self.stack)
            open_tag = self.stack.pop()
            self._close(open_tag, depth)
            if open_tag == tag:
                break

    def _close(self, tag: str, depth: int) -> None:
        if tag == "title":
            self.in_title = False
        if self.skip_depth is not None:
            if depth == self.skip_depth:
                self.skip_depth = None
            return
        if self.markers and self.markers[-1][0] == depth:
            _, parts = self.markers.pop()
            text = "".join(parts)
            if _MARKER.fullmatch(text.strip()):
                self.doc.notes_dropped += 1
            else:
                self._write(text)
        if tag in _HEADINGS:
            self.in_heading -= 1
        if tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.doc.title += data
        elif self.skip_depth is None and self.body_depth is not None:
            self._write(data)

    def close(self) -> None:
        super().close()
        while self.markers:
            self._write("".join(self.markers.pop()[1]))
        self._flush()


def parse_xhtml(content: bytes | str) -> XhtmlDocument:
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    parser = _Extractor()
    parser.feed(text)
    parser.close()
    return parser.doc


class _NavLinks(HTMLParser):
    """Links of one kind of <nav> (epub:type="landmarks" or "toc"): (epub:type of the link, href, text)."""

    def __init__(self, kind: str) -> None:
        super().__init__(convert_charrefs=True)
        self.kind = kind
        self.nav_depth = 0
        self.inside = False
        self.link: list | None = None
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "nav":
            self.nav_depth += 1
            if self.kind in a.get("epub:type", "").split():
                self.inside = True
        elif tag == "a" and self.inside:
            self.link = [a.get("epub:type", ""), a.get("href", ""), ""]

    def handle_endtag(self, tag):
        if tag == "nav":
            self.nav_depth -= 1
            self.inside = False
        elif tag == "a" and self.link is not None:
            self.links.append((self.link[0], self.link[1], " ".join(self.link[2].split())))
            self.link = None

    def handle_data(self, data):
        if self.link is not None:
            self.link[2] += data


def nav_links(content: bytes, kind: str) -> list[tuple[str, str, str]]:
    parser = _NavLinks(kind)
    parser.feed(content.decode("utf-8", errors="replace"))
    parser.close()
    return parser.links
