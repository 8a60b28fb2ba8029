#!/usr/bin/env bash
# Installs the system tools a make target needs, when they are missing, with the platform's package manager:
#   ffmpeg    MP3/M4B export, MP3/M4A reference clips, and the tests' independent meters (ebur128, ffprobe)
#   chromium  the tests load the review page in real headless Chromium (over its DevTools protocol)
# Usage: tools/system-packages.sh TOOL...  Prints one line for what it installs and why; where it cannot
# install, it names the command to run and exits 1 before anything else runs.
set -euo pipefail

declare -A why=(
  [ffmpeg]="MP3/M4B export, MP3/M4A reference clips and the tests' loudness meters"
  [chromium]="the tests load the review page in headless Chromium"
)
missing=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

reasons=$(for tool in "${missing[@]}"; do printf '%s (%s); ' "$tool" "${why[$tool]:-needed}"; done)
reasons=${reasons%; }

refuse() {
  echo "error: missing ${missing[*]}: ${reasons}. Install with: $1" >&2
  exit 1
}

case "$(uname -s)" in
  Linux)
    command -v apt-get >/dev/null 2>&1 || refuse "your package manager (ffmpeg and chromium packages), then run make again"
    if [ "$(id -u)" -eq 0 ]; then
      sudo=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo)
    else
      refuse "sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    fi
    echo "installing ${missing[*]} with apt-get: ${reasons}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    ;;
  Darwin)
    command -v brew >/dev/null 2>&1 || refuse "Homebrew (https://brew.sh), then: brew install ffmpeg; brew install --cask chromium"
    echo "installing ${missing[*]} with Homebrew: ${reasons}"
    for tool in "${missing[@]}"; do
      if [ "$tool" = chromium ]; then brew install --cask chromium; else brew install "$tool"; fi
    done
    ;;
  *)
    refuse "your system's package manager, then run make again"
    ;;
esac

for tool in "${missing[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is still not on PATH after installing it; install it by hand" >&2; exit 1; }
done
