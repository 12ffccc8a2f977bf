#!/usr/bin/env bash
# Build a local Debian bookworm image with debootstrap + docker import, once.
# Usage: build-base-image.sh [RECIPE]   (RECIPE = a folder under docker/ with packages.txt;
# default "base"). The image is tagged isletnet-<RECIPE>:<recipe-hash> and :latest; it is
# rebuilt only when this script or the recipe's packages.txt changes. Production builds pass a public image
# as BASE_IMAGE instead and never run this.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
recipe="${1:-base}"
packages_file="$here/docker/$recipe/packages.txt"
[ -f "$packages_file" ] || { echo "no recipe docker/$recipe/packages.txt" >&2; exit 2; }
recipe_hash=$(cat "$0" "$packages_file" | sha256sum | cut -c1-12)
image="isletnet-$recipe:$recipe_hash"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
  docker tag "$image" "isletnet-$recipe:latest"
  echo "image $image is up to date"
  exit 0
fi

include=$(grep -v '^\s*#' "$packages_file" | grep -v '^\s*$' | paste -sd, -)
rootfs=$(mktemp -d /var/tmp/isletnet-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm into $rootfs (a few minutes, once)"
debootstrap --variant=minbase --include="$include" bookworm "$rootfs" "$mirror" >/dev/null
# Keep the image small: package lists and caches are of no use inside it.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# Services start their own daemons; the distribution's init scripts must not.
rm -f "$rootfs"/etc/nginx/sites-enabled/default
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$image" >/dev/null
docker tag "$image" "isletnet-$recipe:latest"
echo "built $image"
