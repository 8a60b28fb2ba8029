"""The manifest's pronunciation lexicon at planning time: each speaker's entries (the manifest's, under the
speaker's own), and the checks of entries against the engines that will say them, before anything renders."""
from __future__ import annotations

import json
import logging

from engine.lexicon import is_phonemes, matching_entries, occurs, phonemes_of
from engine.registry import engine_class
from tasks.core.errors import ManifestError
from tasks.script.engine_choice import speaker_engines
from tasks.script.manifest import Manifest

log = logging.getLogger(__name__)


def speaker_lexicons(manifest: Manifest) -> dict[str, dict[str, str]]:
    """Speaker -> the pronunciations that apply to their lines: the manifest's, with the speaker's own over them."""
    return {speaker: {**manifest.pronunciations, **voice.pronunciations} for speaker, voice in manifest.voices.items()}


def _where(manifest: Manifest, speaker: str, term: str) -> str:
    quoted = json.dumps(term, ensure_ascii=False)
    own = speaker in manifest.voices and term in manifest.voices[speaker].pronunciations
    return f"voices.{speaker}.pronunciations[{quoted}]" if own else f"pronunciations[{quoted}]"


def check_pronunciations(script, requested_engine: str | None, default_engine: str) -> None:
    """Refuse (ManifestError, exit 2) a phoneme entry whose symbols are outside the alphabet of an engine that
    says it; warn about a phoneme entry on lines whose engine reads text only (planning leaves it out there: the
    script's words are said, so one manifest still renders on every engine) and about entries no line uses (a
    typo in a key matches nothing). Runs before anything is recorded or rendered; loads no model."""

    manifest = script.manifest
    if not manifest.pronunciations and not any(v.pronunciations for v in manifest.voices.values()):
        return
    speaker_engine = speaker_engines(script, requested_engine, default_engine)
    alphabets = {name: engine_class(name).phoneme_alphabet() for name in set(speaker_engine.values())}
    lexicons = speaker_lexicons(manifest)
    problems: dict[str, str] = {}
    text_only: dict[str, tuple[str, str]] = {}  # entry -> (a speaker, its engine) that cannot say its phonemes
    for chapter in script.chapters:
        for line in chapter.lines:
            engine = speaker_engine[line.speaker]
            alphabet = alphabets[engine]
            for term, said in matching_entries(line.text, lexicons[line.speaker]):
                if not is_phonemes(said):
                    continue
                where = _where(manifest, line.speaker, term)
                if alphabet is None:
                    text_only.setdefault(where, (line.speaker, engine))
                    continue
                unknown = sorted(set(phonemes_of(said)) - alphabet)
                if unknown:
                    problems.setdefault(where, (
                        f"{where}: {''.join(unknown)!r} {'is' if len(unknown) == 1 else 'are'} not in engine "
                        f"{engine}'s phoneme alphabet (got {said!r}); use its symbols (for hibari misaki's, as in "
                        f"/ɡˈʌl ɹˈɑk/) or a plain-text respelling"))
    if problems:
        raise ManifestError(script.path, list(problems.values()))
    for where, (speaker, engine) in text_only.items():
        log.warning("%s: %s gives phonemes, but %s's engine %s reads text only: %s says the script's own words "
                    "there; give voices.%s.pronunciations a plain-text respelling to change that",
                    script.path, where, speaker, engine, speaker, speaker)
    _warn_unused(script)


def _warn_unused(script) -> None:
    manifest = script.manifest
    terms = {(t, None) for t in manifest.pronunciations}
    terms |= {(t, s) for s, v in manifest.voices.items() for t in v.pronunciations}
    if not terms:
        return
    spoken: dict[str | None, list[str]] = {}
    for chapter in script.chapters:
        for line in chapter.lines:
            spoken.setdefault(line.speaker, []).append(line.text)
            spoken.setdefault(None, []).append(line.text)
    for term, speaker in sorted(terms, key=lambda ts: (ts[0], ts[1] or "")):
        if not any(occurs(term, text) for text in spoken.get(speaker, [])):
            who = f"{speaker}'s lines" if speaker else "the script"
            log.warning("%s: %s matches no words in %s (matching is case-sensitive, whole words); "
                        "check its spelling or remove it", script.path, _where(manifest, speaker or "", term), who)
