"""`voicebatch voices list | add | show`: the voice library."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli.history import print_table
from tasks.core.out_folders import staging_dir
from tasks.core.settings import get_settings
from tasks.script.voices import load_voice
from tasks.voices.library import add_voice, describe_library, describe_voice
from tasks.voices.preparation import conversion_settings


def _context():
    settings = get_settings()
    return settings, staging_dir(settings.output_dir), conversion_settings(settings), settings.database


def cmd_list(args: argparse.Namespace) -> int:
    settings, staging, conversion, db = _context()
    voices = describe_library(settings.voices_dir, staging, conversion, db)
    if args.json:
        print(json.dumps(voices, indent=2, default=str))
    elif not voices:
        print(f"no voices in {settings.voices_dir}; add one with: voicebatch voices add ID FILE")
    else:
        print_table(["id", "name", "engine", "reference", "seconds", "transcript"], [
            (v["id"], v.get("name"), v.get("engine"), Path(v["reference"]).name if v.get("reference") else None,
             f"{v['staged']['duration']:.1f}" if v.get("staged") else None,
             v["transcript"]["source"] if "transcript" in v else f"error: {v['error']}") for v in voices])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings, staging, conversion, db = _context()
    info = describe_voice(load_voice(settings.voices_dir, args.voice_id), staging, conversion, db)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['id']}: {info['name']}  ({info['folder']})")
    print(f"  reference   {info['reference'] or 'none'}")
    if info["reference"]:
        print(f"  sha256      {info['reference_sha256']}")
    staged = info["staged"]
    if staged:
        trimmed = f", trimmed from {staged['trimmed_from']:.1f} s" if staged["trimmed_from"] else ""
        print(f"  audio       {staged['format']}, {staged['source_rate']} Hz, {staged['source_channels']} channel(s), "
              f"{staged['duration']:.2f} s{trimmed}")
        print(f"  staged      {staged['path']} (24 kHz mono float32)")
    elif info["reference"]:
        print("  staged      not yet (the next render, or `voicebatch voices add`, converts it)")
    t = info["transcript"]
    source = {"manual": "manual", "whisper": f"Whisper ({t['model']})",
              "none": "none yet (Whisper writes one when an engine needs it)"}[t["source"]]
    print(f"  transcript  {source}")
    if t["text"]:
        print(f"              {t['text']}")
    print(f"  engine      {info['engine'] or 'default'}")
    if info["defaults"]:
        print(f"  defaults    {json.dumps(info['defaults'])}")
    for name, options in info["engines"].items():
        print(f"  {name:<11} {json.dumps(options)}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    settings, staging, conversion, _ = _context()
    voice, staged = add_voice(settings.voices_dir, args.voice_id, args.file, staging, conversion,
                              transcript=args.transcript, name=args.name)
    if args.json:
        print(json.dumps({"id": voice.id, "folder": str(voice.folder), "reference": str(voice.reference),
                          "sha256": voice.content_hash, "duration": staged.duration,
                          "trimmed_from": staged.trimmed_from, "transcript": voice.transcript}, indent=2))
        return 0
    channels = {1: "mono", 2: "stereo"}.get(staged.source_channels, f"{staged.source_channels} channels")
    print(f"added voice {voice.id!r} in {voice.folder}")
    print(f"  reference  {voice.reference.name}: {staged.source_format}, {staged.source_rate} Hz {channels}, "
          f"{staged.duration:.2f} s" + (f" (trimmed from {staged.trimmed_from:.1f} s)" if staged.trimmed_from else ""))
    print(f"  transcript {'manual' if voice.transcript else 'none: Whisper writes one when an engine needs it'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    voices = sub.add_parser("voices", help="list, add and show voice assets")
    vsub = voices.add_subparsers(dest="voices_command", required=True)

    listing = vsub.add_parser("list", help="every voice in the voices folder")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)

    add = vsub.add_parser("add", help="add a voice from a reference clip (WAV, FLAC, OGG, MP3, M4A)")
    add.add_argument("voice_id", metavar="ID", help="the voice's id: its folder name under the voices folder")
    add.add_argument("file", type=Path, metavar="FILE", help="the reference clip, 1 to 30 s of clear speech")
    add.add_argument("--transcript", help="what the clip says, word for word (otherwise Whisper writes it)")
    add.add_argument("--name", help="display name (default: the id)")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(func=cmd_add)

    show = vsub.add_parser("show", help="one voice: reference, staged audio, transcript and its source, options")
    show.add_argument("voice_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_show)
