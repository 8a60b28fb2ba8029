"""`--dialogue`: quoted speech for a second voice, the rest for the narrator. Pure functions.

The rule, whole: text between “curly double quotes” or a pair of "straight double quotes" is speech,
quote marks included; an opening quote with no closing one in the same paragraph runs to the paragraph's
end (the book convention for speech continued in the next paragraph). Single quotes are not speech marks
here, because they are also apostrophes. Stray punctuation between quotes joins the part before it.
"""
from __future__ import annotations

import re

_SPEECH = re.compile(r"“[^”]*(?:”|$)|\"[^\"]*(?:\"|$)")


def split_dialogue(paragraph: str) -> list[tuple[bool, str]]:
    """(is speech, text) parts of one paragraph, in order, with neighbours of the same kind merged."""
    parts: list[tuple[bool, str]] = []
    position = 0
    for m in _SPEECH.finditer(paragraph):
        parts.append((False, paragraph[position:m.start()]))
        parts.append((True, m.group()))
        position = m.end()
    parts.append((False, paragraph[position:]))
    out: list[tuple[bool, str]] = []
    for speech, text in parts:
        text = text.strip()
        if not text:
            continue
        if not any(c.isalnum() for c in text):  # "." or "—" between two quotes: not worth a take of its own
            if out:
                out[-1] = (out[-1][0], out[-1][1] + text)
            continue
        if out and out[-1][0] == speech:
            out[-1] = (speech, f"{out[-1][1]} {text}")
        else:
            out.append((speech, text))
    return out
