"""Is an EPUB DRM-protected? Read META-INF/encryption.xml: encrypted text is DRM, obfuscated fonts are not."""
from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

from tasks.book_import.book import BookImportError

ENCRYPTION_XML = "META-INF/encryption.xml"
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
# Font obfuscation (IDPF's and Adobe's) only scrambles embedded fonts against extraction; text stays readable.
FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_FONT_SUFFIXES = (".ttf", ".otf", ".woff", ".woff2", ".ttc")


def encrypted_resources(archive: zipfile.ZipFile) -> list[str]:
    """Paths inside the EPUB encrypted with anything other than font obfuscation."""
    if ENCRYPTION_XML not in archive.namelist():
        return []
    root = ElementTree.fromstring(archive.read(ENCRYPTION_XML))
    protected = []
    for data in root.iter(f"{_XMLENC}EncryptedData"):
        method = data.find(f"{_XMLENC}EncryptionMethod")
        algorithm = method.get("Algorithm", "") if method is not None else ""
        reference = data.find(f".//{_XMLENC}CipherReference")
        uri = reference.get("URI", "") if reference is not None else ""
        if algorithm in FONT_OBFUSCATION or uri.lower().endswith(_FONT_SUFFIXES):
            continue
        protected.append(uri or "(unnamed)")
    return protected


def refuse_if_drm_protected(path: Path, archive: zipfile.ZipFile) -> None:
    try:
        protected = encrypted_resources(archive)
    except ElementTree.ParseError as e:
        raise BookImportError(path, f"its {ENCRYPTION_XML} is malformed ({e}); the EPUB is damaged") from None
    if protected:
        shown = ", ".join(protected[:3]) + (f" and {len(protected) - 3} more" if len(protected) > 3 else "")
        raise BookImportError(path, f"the EPUB is DRM-protected: {len(protected)} file(s) are encrypted ({shown}), "
                                    "so their text cannot be read; import a DRM-free copy of the book")
