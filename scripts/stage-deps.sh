#!/usr/bin/env bash
# Copies the dependency headers into .deps/include (ignored by git) so that a machine without the
# Debian -dev packages (the GPU machine) can build: carry .deps with the device run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/install-deps.sh"
dst="$here/.deps/include"
rm -rf "$dst"; mkdir -p "$dst"
cp -r /usr/include/CLI /usr/include/fmt /usr/include/doctest /usr/include/nlohmann "$dst/"
cp /usr/include/xxhash.h "$dst/"
[[ -f /usr/include/xxh3.h ]] && cp /usr/include/xxh3.h "$dst/"
du -sh "$dst" >&2
