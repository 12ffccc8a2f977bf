#!/usr/bin/env bash
# Fill build/wheelhouse with wheels of every service image's runtime dependencies
# (services/*/requirements.txt), so image builds install with `pip install --no-index` and need
# no network. Versions are pinned to what the project's .venv has (the versions the tests ran
# with); the host's Python 3.11 matches Debian bookworm's, so host wheels fit the images.
# Skipped when the requirement files, the pins and this script are unchanged (hash in
# build/wheelhouse/.inputs-hash). Usage: scripts/build-wheelhouse.sh [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
python="${PYTHON:-$here/.venv/bin/python}"
wheelhouse=build/wheelhouse
mkdir -p build

requirements=$(mktemp) constraints=$(mktemp)
trap 'rm -f "$requirements" "$constraints"' EXIT
cat services/*/requirements.txt | sed 's/#.*//' | grep -v '^\s*$' | sort -u > "$requirements"
# Pins: exact versions from the venv, except the project itself (installed editable).
"$python" -m pip freeze --exclude-editable --all 2>/dev/null | grep '==' | grep -v -i '^isletops==' > "$constraints" || true

inputs_hash=$(cat "$0" "$requirements" "$constraints" | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && [ "$(cat "$wheelhouse/.inputs-hash" 2>/dev/null)" = "$inputs_hash" ]; then
  echo "wheelhouse $wheelhouse is up to date"
  exit 0
fi

echo "building the wheelhouse in $wheelhouse (downloads from PyPI, once)"
staging="$wheelhouse.tmp"
rm -rf "$staging"
mkdir -p "$staging"
# Reuse wheels we already have: pip takes them from --find-links before downloading.
find_links=()
[ -d "$wheelhouse" ] && find_links=(--find-links "$wheelhouse")
"$python" -m pip wheel -q --disable-pip-version-check --prefer-binary \
  "${find_links[@]}" --wheel-dir "$staging" -r "$requirements" -c "$constraints"
echo "$inputs_hash" > "$staging/.inputs-hash"
rm -rf "$wheelhouse"
mv "$staging" "$wheelhouse"
echo "wheelhouse ready: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"
