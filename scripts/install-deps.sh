#!/usr/bin/env bash
# Makes sure the header-only dependencies are present: installs the missing Debian/Ubuntu packages
# with apt-get (as root, or through sudo), otherwise stops with one message listing them.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
declare -A header_of=(
  [libcli11-dev]=CLI/CLI.hpp [libfmt-dev]=fmt/format.h [libxxhash-dev]=xxhash.h
  [doctest-dev]=doctest/doctest.h [nlohmann-json3-dev]=nlohmann/json.hpp)
missing=()
for pkg in "${!header_of[@]}"; do
  h="${header_of[$pkg]}"
  if [[ ! -f /usr/include/$h && ! -f /usr/local/include/$h && ! -f "$here/.deps/include/$h" ]]; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "glmrun: installing missing dependency packages: ${missing[*]}" >&2
if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); elif command -v sudo >/dev/null; then sudo_cmd=(sudo); else
  echo "glmrun: missing packages ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2; exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "glmrun: missing packages ${missing[*]} and no apt-get here; install them, or stage the headers with scripts/stage-deps.sh into .deps/include" >&2
  exit 1
fi
"${sudo_cmd[@]}" apt-get update -qq >&2 || true
if ! DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >&2; then
  echo "glmrun: could not install ${missing[*]}; install them by hand: apt-get install ${missing[*]}" >&2
  exit 1
fi
